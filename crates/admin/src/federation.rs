//! Node, sync, divisions, organizations and revocation routes.

use crate::body::JsonBody;
use crate::caller::Caller;
use crate::error::ApiError;
use crate::routes::{query, AppState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cascade_access::Permission;
use cascade_protocol::org::Organization;
use cascade_protocol::{division, NodeId};
use cascade_runtime::PageQuery;
use serde::Deserialize;
use serde_json::json;

pub(crate) async fn node_view(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    let node = &state.node;
    let me = node.identity();
    let status = node.status();
    Ok(Json(json!({
        "id": me.id,
        "name": me.name,
        "tier": me.tier,
        "parent": me.parent,
        "children": status.children,
        "peers": node.neighbours(),
        "quic_addr": node.quic_addr().to_string(),
        "version_vector": status.version_vector,
        "revoked": status.revoked,
        "deltas": {
            "in": status.sync.deltas_in,
            "out": status.sync.deltas_out,
            "originated": status.sync.deltas_originated,
            "rejected": status.rejected,
        },
        "peer_faults": status.peer_faults,
        "commits": status.commits,
        "recovering": status.recovering,
    }))
    .into_response())
}

pub(crate) async fn sync_view(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    Ok(Json(json!({"peers": state.node.neighbours()})).into_response())
}

pub(crate) async fn divisions(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    let me = state.node.identity().id;
    let subtree: Vec<_> =
        division::table().iter().filter(|d| d.code != me && division::in_subtree(me, d.code)).collect();
    Ok(Json(json!({"division": division::find(me), "subtree": subtree})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrgQuery {
    origin: Option<NodeId>,
    division: Option<NodeId>,
    cursor: Option<String>,
    limit: Option<usize>,
}

pub(crate) async fn list_organizations(
    State(state): State<AppState>,
    Caller(who): Caller,
    q: Result<Query<OrgQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    let q = query(q)?;
    let page = PageQuery { cursor: q.cursor, limit: q.limit };
    let page = state.node.organizations(q.origin, q.division, page).await?;
    Ok(Json(json!({"organizations": page.items, "returned": page.items.len(), "next": page.next}))
        .into_response())
}

pub(crate) async fn get_organization(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    let claims = state.node.organization(code.clone()).await?;
    let Some(first) = claims.first() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no organization {code}")));
    };
    let registered_at: Vec<NodeId> = claims.iter().map(|c| c.origin).collect();
    Ok(Json(
        json!({"origin": first.origin, "organization": first.organization, "registered_at": registered_at}),
    )
    .into_response())
}

pub(crate) async fn register_organization(
    State(state): State<AppState>,
    Caller(who): Caller,
    JsonBody(org): JsonBody<Organization>,
) -> Result<Response, ApiError> {
    let org = state.node.register_organization(who, org).await?;
    Ok((StatusCode::CREATED, Json(org)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeRequest {
    reason: String,
}

pub(crate) async fn revoke(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<RevokeRequest>,
) -> Result<Response, ApiError> {
    let id: NodeId =
        id.parse().map_err(|e: cascade_protocol::IdError| ApiError::field("id", e.to_string()))?;
    let delta_seq = state.node.revoke(who, id, request.reason).await?;
    Ok(Json(json!({"revoked": id, "delta_seq": delta_seq})).into_response())
}
