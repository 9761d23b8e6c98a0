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
use cascade_core::LinkRole;
use cascade_metrics::{Exposition, CONTENT_TYPE};
use serde_json::json;

pub(crate) async fn health(State(state): State<AppState>) -> Response {
    match state.node.failure() {
        None => Json(json!({"status": "ok"})).into_response(),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "failed", "error": reason})))
            .into_response(),
    }
}

/// Ready when the node works (store open, core running) and its parent link is
/// up, or it is the national node.
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    let node = &state.node;
    if let Some(reason) = node.failure() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"ready": false, "reason": reason})))
            .into_response();
    }
    let parent = node.neighbours().into_iter().find(|n| n.role == LinkRole::Parent);
    match parent {
        None => Json(json!({"ready": true})).into_response(),
        Some(p) if p.state == "connected" => Json(json!({"ready": true})).into_response(),
        Some(p) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": format!("no link to parent {}", p.id)})),
        )
            .into_response(),
    }
}

pub(crate) async fn audit_query(
    State(state): State<AppState>,
    Caller(who): Caller,
    q: Result<Query<AuditFilter>, QueryRejection>,
) -> Result<Response, ApiError> {
    state.node.check(&who, Permission::Audit).await?;
    let page = state.node.audit(query(q)?).await?;
    Ok(Json(json!({"records": page.records, "returned": page.records.len(), "next": page.next}))
        .into_response())
}

pub(crate) async fn audit_verify(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    state.node.check(&who, Permission::Audit).await?;
    Ok(Json(state.node.verify_audit().await?).into_response())
}

/// `POST /api/v1/audit/checkpoints`: signs the audit log's head into the
/// node's federation log, where every node holding that log witnesses it (201).
pub(crate) async fn audit_checkpoint(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    let (checkpoint, delta_seq) = state.node.checkpoint_audit(who).await?;
    let body = json!({
        "records": checkpoint.records,
        "head": checkpoint.head.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "at": checkpoint.at_ms / 1000,
        "delta_seq": delta_seq,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub(crate) async fn metrics_view(
    State(state): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    state.node.check(&who, Permission::Audit).await?;
    let mut out = Exposition::new();
    out.add(&state.node).add(&*state.http);
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], out.finish()).into_response())
}
