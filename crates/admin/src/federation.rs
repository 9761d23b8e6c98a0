//! Node, sync, divisions, organizations and revocation routes.

use crate::auth::{audit, authorize};
use crate::error::ApiError;
use crate::routes::{parse_json, query, AppState};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use cascade_access::{Permission, Principal};
use cascade_protocol::org::Organization;
use cascade_protocol::{division, NodeId};
use cascade_runtime::{tier_of, Snapshot};
use serde::Deserialize;
use serde_json::{json, Value};

/// Most organizations one listing returns.
const MAX_LIST: usize = 1000;

/// Longest revocation reason (the engine refuses longer ones).
const MAX_REASON_BYTES: usize = 1000;

/// Every neighbour this node should have: its parent, then its children (known
/// from their certificates or linked now), by id.
pub(crate) fn neighbours(me: &cascade_certs::NodeIdentity, snap: &Snapshot) -> Vec<(NodeId, &'static str)> {
    let mut ids: Vec<(NodeId, &'static str)> = me.parent.map(|p| (p, "parent")).into_iter().collect();
    let mut children: Vec<NodeId> = snap.children.iter().copied().collect();
    for (id, p) in &snap.peers {
        if p.role == "child" && !children.contains(id) {
            children.push(*id);
        }
    }
    children.sort();
    ids.extend(children.into_iter().map(|c| (c, "child")));
    ids
}

/// Every neighbour with its state.
fn peers(state: &AppState) -> Vec<Value> {
    let snap = state.node.snapshot();
    neighbours(state.node.identity(), &snap)
        .into_iter()
        .map(|(id, role)| {
            let p = snap.peers.get(&id);
            let state =
                if snap.revoked.contains(&id) { "revoked" } else { p.map_or("disconnected", |p| p.state) };
            json!({"id": id, "role": role, "state": state,
                "last_frame_at": p.and_then(|p| p.last_frame_at),
                "lag_deltas": p.map_or(0, |p| p.lag_deltas),
                "lag_seconds": p.map_or(0, |p| p.lag_seconds)})
        })
        .collect()
}

pub(crate) async fn node_view(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Response, ApiError> {
    authorize(&state, &who, Permission::Read).await?;
    let node = &state.node;
    let me = node.identity();
    let snap = node.snapshot();
    let children: Vec<NodeId> = snap.children.iter().copied().collect();
    Ok(Json(json!({
        "id": me.id,
        "name": me.name,
        "tier": me.tier,
        "parent": me.parent,
        "children": children,
        "peers": peers(&state),
        "quic_addr": node.quic_addr().to_string(),
        "version_vector": snap.version_vector,
        "revoked": snap.revoked,
        "deltas": {"in": snap.deltas_in, "out": snap.deltas_out, "originated": snap.deltas_originated, "rejected": snap.rejected},
    }))
    .into_response())
}

pub(crate) async fn sync_view(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Response, ApiError> {
    authorize(&state, &who, Permission::Read).await?;
    Ok(Json(json!({"peers": peers(&state)})).into_response())
}

pub(crate) async fn divisions(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Response, ApiError> {
    authorize(&state, &who, Permission::Read).await?;
    let me = state.node.identity().id;
    let table = division::table();
    let own = table.iter().find(|d| d.code == me).cloned();
    let subtree: Vec<_> =
        table.into_iter().filter(|d| d.code != me && division::in_subtree(me, d.code)).collect();
    Ok(Json(json!({"division": own, "subtree": subtree})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrgQuery {
    origin: Option<NodeId>,
    division: Option<NodeId>,
}

pub(crate) async fn list_organizations(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    q: Result<Query<OrgQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &who, Permission::Read).await?;
    let q = query(q)?;
    let orgs: Vec<Value> = state
        .node
        .organizations(q.origin)?
        .into_iter()
        .filter(|(_, o)| q.division.is_none_or(|d| d == o.division))
        .take(MAX_LIST)
        .map(|(origin, org)| json!({"origin": origin, "organization": org}))
        .collect();
    Ok(Json(json!({"count": orgs.len(), "organizations": orgs})).into_response())
}

pub(crate) async fn get_organization(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &who, Permission::Read).await?;
    let claims = state.node.store().organization(&code).map_err(cascade_runtime::CatalogError::from)?;
    let Some((origin, org)) = claims.first().cloned() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no organization {code}")));
    };
    let registered_at: Vec<NodeId> = claims.iter().map(|(o, _)| *o).collect();
    Ok(Json(json!({"origin": origin, "organization": org, "registered_at": registered_at})).into_response())
}

pub(crate) async fn register_organization(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &who, Permission::RegisterOrganization).await?;
    let org: Organization = parse_json(&body)?;
    let org = state.node.register_organization(org).await?;
    audit(
        &state,
        &who,
        "organization.register",
        format!("{} {} ({})", org.credit_code, org.name, org.division),
    )
    .await;
    Ok((StatusCode::CREATED, Json(org)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeRequest {
    reason: String,
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &who, Permission::Revoke).await?;
    let id: NodeId = id.parse().map_err(|e: String| ApiError::field("id", e))?;
    let request: RevokeRequest = parse_json(&body)?;
    if request.reason.trim().is_empty() || request.reason.len() > MAX_REASON_BYTES {
        return Err(ApiError::field(
            "reason",
            format!("a revocation needs a reason of 1..{MAX_REASON_BYTES} bytes"),
        ));
    }
    let me = state.node.identity();
    let allowed = id != me.id && (me.id.province().is_none() || id.province() == Some(me.id));
    if !allowed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{} may only revoke its own children ({} is a {} node)", me.id, id, tier_of(id).as_str()),
        ));
    }
    let delta = state
        .node
        .revoke(id, request.reason.clone())
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, e))?;
    audit(&state, &who, "node.revoke", format!("{id}: {}", request.reason)).await;
    Ok(Json(json!({"revoked": id, "delta_seq": delta.seq})).into_response())
}
