//! Catalog routes. Changes are authorized and audited by the node core, inside
//! the group commit that applies them: the check sees the entry exactly as the
//! change finds it (old and new provider).

use crate::body::{JsonBody, OptionalJsonBody};
use crate::caller::Caller;
use crate::error::ApiError;
use crate::routes::{query, AppState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cascade_access::Permission;
use cascade_protocol::catalog::EntryDraft;
use cascade_protocol::{NodeId, Scope};
use cascade_runtime::CatalogQuery;
use serde::Deserialize;
use serde_json::json;

/// Options of a publish.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishOptions {
    /// How far the entry travels; fixed at first publication. Default federation-wide.
    #[serde(default)]
    scope: Option<Scope>,
}

pub(crate) async fn save(
    State(state): State<AppState>,
    Caller(who): Caller,
    JsonBody(draft): JsonBody<EntryDraft>,
) -> Result<Response, ApiError> {
    let saved = state.node.save_entry(who, draft).await?;
    let status = if saved.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(saved)).into_response())
}

pub(crate) async fn publish(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(code): Path<String>,
    OptionalJsonBody(options): OptionalJsonBody<PublishOptions>,
) -> Result<Response, ApiError> {
    let options = options.unwrap_or_default();
    Ok(Json(state.node.publish(who, &code, options.scope).await?).into_response())
}

pub(crate) async fn withdraw(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.node.withdraw(who, &code).await?).into_response())
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
    q: Result<Query<CatalogQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    let page = state.node.catalog(query(q)?).await?;
    Ok(Json(json!({"entries": page.items, "returned": page.items.len(), "next": page.next})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntryQuery {
    origin: Option<NodeId>,
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(code): Path<String>,
    q: Result<Query<EntryQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    let q = query(q)?;
    Ok(Json(state.node.entry(code, q.origin).await?).into_response())
}
