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
use cascade_runtime::{Neighbour, PageQuery};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Deltas through this node.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeltaCounts {
    /// Received from neighbours and accepted.
    #[serde(rename = "in")]
    received: u64,
    /// Sent to neighbours.
    out: u64,
    /// Originated here.
    originated: u64,
    /// Refused, by reason.
    rejected: cascade_core::Rejections,
}

/// This node, its links and its logs.
#[derive(Serialize, ToSchema)]
pub(crate) struct NodeView {
    /// Its division code.
    id: NodeId,
    /// The division's name.
    name: String,
    /// Its tier.
    tier: cascade_protocol::Tier,
    /// Its parent, none at the national node.
    parent: Option<NodeId>,
    /// Children known from their certificates.
    children: Vec<NodeId>,
    /// The parent and children with each link's state and lag.
    peers: Vec<Neighbour>,
    /// Where it listens for QUIC.
    quic_addr: String,
    /// The head of every log held.
    version_vector: Vec<cascade_core::VvEntry>,
    /// Revoked nodes.
    revoked: Vec<NodeId>,
    /// Delta counters.
    deltas: DeltaCounts,
    /// Links ended because of the peer.
    peer_faults: cascade_core::PeerFaults,
    /// Group commits.
    commits: cascade_core::CommitCounters,
    /// Set while the node learns its own logs back from its neighbours.
    recovering: Option<cascade_core::RecoveryStatus>,
}

#[utoipa::path(get, path = "/api/v1/node", tag = "federation",
    responses((status = 200, description = "This node, its links and its logs.", body = NodeView)))]
pub(crate) async fn node_view(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Json<NodeView>, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    let node = &state.node;
    let me = node.identity();
    let status = node.status();
    Ok(Json(NodeView {
        id: me.id,
        name: me.name.clone(),
        tier: me.tier,
        parent: me.parent,
        children: status.children.iter().copied().collect(),
        peers: node.neighbours(),
        quic_addr: node.quic_addr().to_string(),
        version_vector: status.version_vector.clone(),
        revoked: status.revoked.iter().copied().collect(),
        deltas: DeltaCounts {
            received: status.sync.deltas_in,
            out: status.sync.deltas_out,
            originated: status.sync.deltas_originated,
            rejected: status.rejected.clone(),
        },
        peer_faults: status.peer_faults.clone(),
        commits: status.commits.clone(),
        recovering: status.recovering.clone(),
    }))
}

/// The links of this node.
#[derive(Serialize, ToSchema)]
pub(crate) struct SyncView {
    /// The parent and children with each link's state and lag.
    peers: Vec<Neighbour>,
}

#[utoipa::path(get, path = "/api/v1/sync", tag = "federation",
    responses((status = 200, description = "Each link's state and lag.", body = SyncView)))]
pub(crate) async fn sync_view(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Json<SyncView>, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    Ok(Json(SyncView { peers: state.node.neighbours() }))
}

/// This node's division and the divisions below it.
#[derive(Serialize, ToSchema)]
pub(crate) struct DivisionsView {
    /// This node's division.
    division: Option<&'static division::Division>,
    /// Every division in its subtree.
    subtree: Vec<&'static division::Division>,
}

#[utoipa::path(get, path = "/api/v1/divisions", tag = "federation",
    responses((status = 200, description = "This node's division and its subtree (GB/T 2260).", body = DivisionsView)))]
pub(crate) async fn divisions(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Json<DivisionsView>, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    let me = state.node.identity().id;
    let subtree: Vec<_> =
        division::table().iter().filter(|d| d.code != me && division::in_subtree(me, d.code)).collect();
    Ok(Json(DivisionsView { division: division::find(me), subtree }))
}

/// Which organizations to list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct OrgQuery {
    /// Only those registered at this node.
    origin: Option<NodeId>,
    /// Only those of this division.
    division: Option<NodeId>,
    /// The `next` of the previous page.
    cursor: Option<String>,
    /// Most on the page (default 100, at most 1000).
    limit: Option<usize>,
}

/// A page of organizations.
#[derive(Serialize, ToSchema)]
pub(crate) struct OrganizationsPage {
    /// The organizations, each with the node that registered it.
    organizations: Vec<cascade_store::OrganizationRow>,
    /// How many are on this page.
    returned: usize,
    /// Pass as `cursor` for the next page; none on the last.
    next: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/organizations", tag = "base", params(OrgQuery),
    responses((status = 200, description = "Organizations replicated to this node.", body = OrganizationsPage)))]
pub(crate) async fn list_organizations(
    State(state): State<AppState>,
    Caller(who): Caller,
    q: Result<Query<OrgQuery>, QueryRejection>,
) -> Result<Json<OrganizationsPage>, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    let q = query(q)?;
    let page = PageQuery { cursor: q.cursor, limit: q.limit };
    let page = state.node.organizations(q.origin, q.division, page).await?;
    Ok(Json(OrganizationsPage { returned: page.items.len(), organizations: page.items, next: page.next }))
}

/// One organization and where it is registered.
#[derive(Serialize, ToSchema)]
pub(crate) struct OrganizationView {
    /// The first node that registered it.
    origin: NodeId,
    /// The organization.
    organization: Organization,
    /// Every node that registered the code.
    registered_at: Vec<NodeId>,
}

#[utoipa::path(get, path = "/api/v1/organizations/{code}", tag = "base",
    params(("code" = String, Path, description = "Unified social credit code.")),
    responses((status = 200, description = "The organization.", body = OrganizationView)))]
pub(crate) async fn get_organization(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(code): Path<String>,
) -> Result<Json<OrganizationView>, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    let claims = state.node.organization(code.clone()).await?;
    let Some(first) = claims.first() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no organization {code}")));
    };
    let registered_at: Vec<NodeId> = claims.iter().map(|c| c.origin).collect();
    Ok(Json(OrganizationView {
        origin: first.origin,
        organization: first.organization.clone(),
        registered_at,
    }))
}

#[utoipa::path(post, path = "/api/v1/organizations", tag = "base", request_body = Organization,
    responses((status = 201, description = "Registered here; the registration replicates everywhere.", body = Organization)))]
pub(crate) async fn register_organization(
    State(state): State<AppState>,
    Caller(who): Caller,
    JsonBody(org): JsonBody<Organization>,
) -> Result<Response, ApiError> {
    let org = state.node.register_organization(who, org).await?;
    Ok((StatusCode::CREATED, Json(org)).into_response())
}

/// Why a node is revoked.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RevokeRequest {
    /// Recorded in the signed revocation and the audit log.
    reason: String,
}

/// A revocation made.
#[derive(Serialize, ToSchema)]
pub(crate) struct Revoked {
    /// The node revoked.
    revoked: NodeId,
    /// The delta of this node's log that carries it.
    delta_seq: u64,
}

#[utoipa::path(post, path = "/api/v1/nodes/{id}/revoke", tag = "federation", request_body = RevokeRequest,
    params(("id" = String, Path, description = "The node's division code: a child, or below it.")),
    responses((status = 200, description = "Revoked, federation-wide.", body = Revoked)))]
pub(crate) async fn revoke(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<RevokeRequest>,
) -> Result<Json<Revoked>, ApiError> {
    let id: NodeId =
        id.parse().map_err(|e: cascade_protocol::IdError| ApiError::field("id", e.to_string()))?;
    let delta_seq = state.node.revoke(who, id, request.reason).await?;
    Ok(Json(Revoked { revoked: id, delta_seq }))
}
