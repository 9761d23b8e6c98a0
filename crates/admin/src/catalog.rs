//! Catalog routes.

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
use cascade_protocol::catalog::EntryDraft;
use cascade_protocol::NodeId;
use cascade_runtime::{CatalogQuery, PublishOptions};
use serde::Deserialize;
use serde_json::json;

/// The provider of this node's own entry `code` (404 when there is none).
fn own_provider(state: &AppState, code: &str) -> Result<String, ApiError> {
    let me = state.node.identity().id;
    let entry = state.node.get_entry(code, Some(me))?;
    Ok(entry.entry.provider)
}

pub(crate) async fn save(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let draft: EntryDraft = parse_json(&body)?;
    authorize(&state, &who, Permission::EditCatalog { provider: &draft.provider }).await?;
    if let Some(code) = &draft.code {
        // Changing an entry's provider must not move another organization's entry.
        if let Ok(old) = own_provider(&state, code) {
            authorize(&state, &who, Permission::EditCatalog { provider: &old }).await?;
        }
    }
    let saved = state.node.save_entry(draft).await?;
    audit(
        &state,
        &who,
        "catalog.save",
        format!("{} v{} {}", saved.entry.code, saved.entry.version, saved.entry.status.as_str()),
    )
    .await;
    let status = if saved.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(saved)).into_response())
}

pub(crate) async fn publish(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(code): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let provider = own_provider(&state, &code)?;
    authorize(&state, &who, Permission::EditCatalog { provider: &provider }).await?;
    let options: PublishOptions =
        if body.is_empty() { PublishOptions::default() } else { parse_json(&body)? };
    let saved = state.node.publish(&code, options).await?;
    audit(
        &state,
        &who,
        "catalog.publish",
        format!("{code} v{} {}", saved.entry.version, saved.scope.as_str()),
    )
    .await;
    Ok(Json(saved).into_response())
}

pub(crate) async fn withdraw(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let provider = own_provider(&state, &code)?;
    authorize(&state, &who, Permission::EditCatalog { provider: &provider }).await?;
    let saved = state.node.withdraw(&code).await?;
    audit(&state, &who, "catalog.withdraw", format!("{code} v{}", saved.entry.version)).await;
    Ok(Json(saved).into_response())
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
