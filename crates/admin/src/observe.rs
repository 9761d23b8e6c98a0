//! Health, readiness, audit and metrics.

use crate::auth::authorize;
use crate::error::ApiError;
use crate::metrics::{self, NodeMetrics, PeerMetrics};
use crate::routes::{query, AppState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use cascade_access::{Permission, Principal};
use cascade_store::AuditFilter;
use serde_json::json;

pub(crate) async fn health(State(state): State<AppState>) -> Response {
    match state.node.failure() {
        None => Json(json!({"status": "ok"})).into_response(),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "failed", "error": reason})))
            .into_response(),
    }
}

/// Ready when the node works (store open, engine running) and its parent link is
/// up, or it is the national node.
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    let node = &state.node;
    if let Some(reason) = node.failure() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"ready": false, "reason": reason})))
            .into_response();
    }
    match node.identity().parent {
        None => Json(json!({"ready": true})).into_response(),
        Some(parent) if node.snapshot().peers.get(&parent).is_some_and(|p| p.state == "connected") => {
            Json(json!({"ready": true})).into_response()
        }
        Some(parent) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": format!("no link to parent {parent}")})),
        )
            .into_response(),
    }
}

pub(crate) async fn audit_query(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    q: Result<Query<AuditFilter>, QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &who, Permission::Audit).await?;
    let records =
        state.node.store().audit().query(&query(q)?).map_err(cascade_runtime::CatalogError::from)?;
    Ok(Json(json!({"count": records.len(), "records": records})).into_response())
}

pub(crate) async fn audit_verify(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Response, ApiError> {
    authorize(&state, &who, Permission::Audit).await?;
    let store = state.node.store().clone();
    let report = tokio::task::spawn_blocking(move || store.audit().verify())
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(cascade_runtime::CatalogError::from)?;
    Ok(Json(report).into_response())
}

pub(crate) async fn metrics_view(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
) -> Result<Response, ApiError> {
    authorize(&state, &who, Permission::Audit).await?;
    let node = &state.node;
    let me = node.identity();
    let snap = node.snapshot();
    let (frames_out, bytes_out) = node.traffic();
    let ids = crate::federation::neighbours(me, &snap);
    let peers = ids
        .into_iter()
        .map(|(id, role)| {
            let p = snap.peers.get(&id);
            PeerMetrics {
                id: id.to_string(),
                role,
                connected: p.is_some_and(|p| p.state == "connected"),
                lag_deltas: p.map_or(0, |p| p.lag_deltas),
                lag_seconds: p.map_or(0, |p| p.lag_seconds) as f64,
            }
        })
        .collect();
    let node_metrics = NodeMetrics {
        peers,
        deltas_in: snap.deltas_in,
        deltas_out: snap.deltas_out,
        deltas_originated: snap.deltas_originated,
        rejected: snap.rejected,
        frames_out,
        bytes_out,
        store_bytes: node.store().size_on_disk().unwrap_or(0),
        audit_records: node.store().audit().len(),
    };
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], metrics::render(&node_metrics, &state.http))
        .into_response())
}
