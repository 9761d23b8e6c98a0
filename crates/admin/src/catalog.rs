//! Catalog routes.

use crate::auth::authorize;
use crate::error::ApiError;
use crate::routes::{parse_json, query, AppState};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use cascade_access::{Permission, Principal};
use cascade_protocol::catalog::EntryDraft;
use cascade_protocol::NodeId;
use cascade_runtime::{CatalogQuery, PublishOptions};
use serde::Deserialize;
use serde_json::json;

// Catalog changes are authorized and audited by the node itself, inside the
// group commit that applies them (see `Node::save_entry_as`): the check sees the
// entry exactly as the change finds it, and no change goes unaudited.

pub(crate) async fn save(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let draft: EntryDraft = parse_json(&body)?;
    let saved = state.node.save_entry_as(draft, who).await?;
    let status = if saved.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(saved)).into_response())
}

pub(crate) async fn publish(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(code): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let options: PublishOptions =
        if body.is_empty() { PublishOptions::default() } else { parse_json(&body)? };
    Ok(Json(state.node.publish_as(&code, options, who).await?).into_response())
}

pub(crate) async fn withdraw(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.node.withdraw_as(&code, who).await?).into_response())
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    q: Result<Query<CatalogQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &who, Permission::Read).await?;
    let entries = state.node.list_catalog(&query(q)?)?;
    Ok(Json(json!({"count": entries.len(), "entries": entries})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntryQuery {
    origin: Option<NodeId>,
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(code): Path<String>,
    q: Result<Query<EntryQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &who, Permission::Read).await?;
    let q = query(q)?;
    Ok(Json(state.node.get_entry(&code, q.origin)?).into_response())
}
