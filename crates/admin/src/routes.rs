//! Routes and handlers.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cascade_protocol::catalog::EntryDraft;
use cascade_protocol::NodeId;
use cascade_runtime::{tier_of, CatalogQuery, Node, PublishOptions};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tracing::{info, info_span, Instrument};

type AppState = Arc<Node>;

/// The admin router of a node.
pub fn router(node: Arc<Node>) -> Router {
    let api = Router::new()
        .route("/node", get(node_view))
        .route("/catalog", get(list_catalog).post(save_entry))
        .route("/catalog/{code}", get(get_entry))
        .route("/catalog/{code}/publish", post(publish))
        .route("/catalog/{code}/withdraw", post(withdraw))
        .route("/nodes/{id}/revoke", post(revoke))
        .route_layer(middleware::from_fn_with_state(node.clone(), authenticate));
    Router::new()
        .route("/healthz", get(health))
        .nest("/api/v1", api)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(DefaultBodyLimit::max(crate::MAX_BODY_BYTES))
        .layer(middleware::from_fn(trace_request))
        .with_state(node)
}

async fn health(State(node): State<AppState>) -> Response {
    match node.failure() {
        None => Json(json!({"status": "ok"})).into_response(),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "failed", "error": reason})))
            .into_response(),
    }
}

async fn trace_request(request: Request, next: Next) -> Response {
    let span = info_span!("http", method = %request.method(), path = %request.uri().path());
    async move {
        let response = next.run(request).await;
        info!(status = response.status().as_u16(), "request");
        response
    }
    .instrument(span)
    .await
}

async fn authenticate(State(node): State<AppState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(token) if bool::from(token.as_bytes().ct_eq(node.admin_token().as_bytes())) => {
            next.run(request).await
        }
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "invalid bearer token").into_response(),
        None => {
            ApiError::new(StatusCode::UNAUTHORIZED, "missing Authorization: Bearer <token>").into_response()
        }
    }
}

/// Parses a JSON body, naming the offending field on a data error.
fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            let field = if path == "." { inner.to_string() } else { path };
            let field = missing_field(&inner.to_string()).unwrap_or(field);
            ApiError::field(field, inner.to_string())
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {inner}"))
        }
    })
}

/// serde reports a missing field at the parent path; name the field itself.
fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_string())
}

async fn node_view(State(node): State<AppState>) -> Json<serde_json::Value> {
    let me = node.identity();
    let snap = node.snapshot();
    let mut peers = Vec::new();
    if let Some(parent) = me.parent {
        let state = snap.peers.get(&parent).map_or("disconnected", |p| p.state);
        peers.push(json!({"id": parent, "role": "parent", "state": state,
            "last_frame_at": snap.peers.get(&parent).and_then(|p| p.last_frame_at)}));
    }
    let mut children: Vec<NodeId> = snap.children.iter().copied().collect();
    for (id, p) in &snap.peers {
        if p.role == "child" && !children.contains(id) {
            children.push(*id);
        }
    }
    children.sort();
    for child in &children {
        let state = if snap.revoked.contains(child) {
            "revoked"
        } else {
            snap.peers.get(child).map_or("disconnected", |p| p.state)
        };
        peers.push(json!({"id": child, "role": "child", "state": state,
            "last_frame_at": snap.peers.get(child).and_then(|p| p.last_frame_at)}));
    }
    Json(json!({
        "id": me.id,
        "name": me.name,
        "tier": me.tier,
        "parent": me.parent,
        "children": children,
        "peers": peers,
        "quic_addr": node.quic_addr().to_string(),
        "version_vector": snap.version_vector,
        "revoked": snap.revoked,
        "deltas": {"in": snap.deltas_in, "originated": snap.deltas_originated, "rejected": snap.rejected},
    }))
}

async fn save_entry(State(node): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let draft: EntryDraft = parse_json(&body)?;
    let saved = node.save_entry(draft).await?;
    let status = if saved.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(saved)).into_response())
}

async fn publish(
    State(node): State<AppState>,
    Path(code): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let options: PublishOptions =
        if body.is_empty() { PublishOptions::default() } else { parse_json(&body)? };
    Ok(Json(node.publish(&code, options).await?).into_response())
}

async fn withdraw(State(node): State<AppState>, Path(code): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(node.withdraw(&code).await?).into_response())
}

async fn list_catalog(
    State(node): State<AppState>,
    query: Result<Query<CatalogQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let entries = node.list_catalog(&query)?;
    Ok(Json(json!({"count": entries.len(), "entries": entries})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryQuery {
    origin: Option<NodeId>,
}

async fn get_entry(
    State(node): State<AppState>,
    Path(code): Path<String>,
    query: Result<Query<EntryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    Ok(Json(node.get_entry(&code, query.origin)?).into_response())
}

/// Longest revocation reason (the engine refuses longer ones).
const MAX_REASON_BYTES: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    reason: String,
}

async fn revoke(
    State(node): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id: NodeId = id.parse().map_err(|e: String| ApiError::field("id", e))?;
    let request: RevokeRequest = parse_json(&body)?;
    if request.reason.trim().is_empty() || request.reason.len() > MAX_REASON_BYTES {
        return Err(ApiError::field(
            "reason",
            format!("a revocation needs a reason of 1..{MAX_REASON_BYTES} bytes"),
        ));
    }
    let me = node.identity();
    let allowed = id != me.id && (me.id.province().is_none() || id.province() == Some(me.id));
    if !allowed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{} may only revoke its own children ({} is a {} node)", me.id, id, tier_of(id).as_str()),
        ));
    }
    let delta = node
        .revoke(id, request.reason)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, e))?;
    info!(revoked = %id, seq = delta.seq, "node revoked");
    Ok(Json(json!({"revoked": id, "delta_seq": delta.seq})).into_response())
}
