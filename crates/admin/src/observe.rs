//! Health, readiness, audit and metrics.

use crate::caller::Caller;
use crate::error::ApiError;
use crate::routes::{query, AppState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cascade_access::Permission;
use cascade_core::audit::AuditFilter;
use cascade_core::audit::{AuditRecord, AuditVerification};
use cascade_core::LinkRole;
use cascade_metrics::{Exposition, CONTENT_TYPE};
use serde::Serialize;
use utoipa::ToSchema;

/// Whether the node works.
#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    /// `ok` or `failed`.
    status: &'static str,
    /// Why it failed (the node core stopped on a store failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[utoipa::path(get, path = "/healthz", tag = "observe", security(()),
    responses(
        (status = 200, description = "The node works.", body = Health),
        (status = 503, description = "The node core stopped; the reason.", body = Health)))]
pub(crate) async fn health(State(state): State<AppState>) -> Response {
    match state.node.failure() {
        None => Json(Health { status: "ok", error: None }).into_response(),
        Some(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(Health { status: "failed", error: Some(reason) }))
                .into_response()
        }
    }
}

/// Whether the node is ready to serve.
#[derive(Serialize, ToSchema)]
pub(crate) struct Readiness {
    /// Ready or not.
    ready: bool,
    /// Why not.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Ready when the node works (store open, core running) and its parent link is
/// up, or it is the national node.
#[utoipa::path(get, path = "/readyz", tag = "observe", security(()),
    responses(
        (status = 200, description = "Ready.", body = Readiness),
        (status = 503, description = "Not ready, and why.", body = Readiness)))]
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    let node = &state.node;
    let not_ready = |reason: String| {
        (StatusCode::SERVICE_UNAVAILABLE, Json(Readiness { ready: false, reason: Some(reason) }))
    };
    if let Some(reason) = node.failure() {
        return not_ready(reason).into_response();
    }
    let parent = node.neighbours().into_iter().find(|n| n.role == LinkRole::Parent);
    match parent {
        Some(p) if p.state != "connected" => not_ready(format!("no link to parent {}", p.id)).into_response(),
        _ => Json(Readiness { ready: true, reason: None }).into_response(),
    }
}

/// A page of the audit log.
#[derive(Serialize, ToSchema)]
pub(crate) struct AuditPage {
    /// The records, oldest first.
    records: Vec<AuditRecord>,
    /// How many are on this page.
    returned: usize,
    /// Pass as `cursor` (with the same filter) for the next page; none on the last.
    next: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "observe", params(AuditFilter),
    responses((status = 200, description = "Audit records (admins and auditors).", body = AuditPage)))]
pub(crate) async fn audit_query(
    State(state): State<AppState>,
    Caller(who): Caller,
    q: Result<Query<AuditFilter>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    state.node.check(&who, Permission::Audit).await?;
    let page = state.node.audit(query(q)?).await?;
    Ok(Json(AuditPage { returned: page.records.len(), records: page.records, next: page.next }))
}

#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "observe",
    responses((status = 200, description = "The hash chain checked from its first record.", body = AuditVerification)))]
pub(crate) async fn audit_verify(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Json<AuditVerification>, ApiError> {
    state.node.check(&who, Permission::Audit).await?;
    Ok(Json(state.node.verify_audit().await?))
}

/// An audit checkpoint signed into the node's federation log.
#[derive(Serialize, ToSchema)]
pub(crate) struct Checkpoint {
    /// Records covered.
    records: u64,
    /// The chain's head, hex.
    head: String,
    /// When (unix s).
    at: u64,
    /// The delta that carries it.
    delta_seq: u64,
}

/// `POST /api/v1/audit/checkpoints`: signs the audit log's head into the
/// node's federation log, where every node holding that log witnesses it (201).
#[utoipa::path(post, path = "/api/v1/audit/checkpoints", tag = "observe",
    responses((status = 201, description = "Signed; every node holding the log witnesses it.", body = Checkpoint)))]
pub(crate) async fn audit_checkpoint(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    let (checkpoint, delta_seq) = state.node.checkpoint_audit(who).await?;
    let body = Checkpoint {
        records: checkpoint.records,
        head: checkpoint.head.iter().map(|b| format!("{b:02x}")).collect(),
        at: checkpoint.at_ms / 1000,
        delta_seq,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[utoipa::path(get, path = "/metrics", tag = "observe",
    responses((status = 200, description = "Prometheus text format (admins and auditors).", content_type = "text/plain", body = String)))]
pub(crate) async fn metrics_view(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    state.node.check(&who, Permission::Audit).await?;
    let mut out = Exposition::new();
    out.add(&state.node).add(&*state.http);
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], out.finish()).into_response())
}
