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
use cascade_core::SavedEntry;
use cascade_protocol::catalog::EntryDraft;
use cascade_protocol::{NodeId, Scope};
use cascade_runtime::CatalogQuery;
use cascade_store::CatalogRow;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Options of a publish.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishOptions {
    /// How far the entry travels; fixed at first publication. Default federation-wide.
    #[serde(default)]
    scope: Option<Scope>,
}

#[utoipa::path(post, path = "/api/v1/catalog", tag = "catalog", request_body = EntryDraft,
    responses(
        (status = 201, description = "A new draft, its code assigned.", body = SavedEntry),
        (status = 200, description = "An own entry updated (a published one is published anew).", body = SavedEntry)))]
pub(crate) async fn save(
    State(state): State<AppState>,
    Caller(who): Caller,
    JsonBody(draft): JsonBody<EntryDraft>,
) -> Result<Response, ApiError> {
    let saved = state.node.save_entry(who, draft).await?;
    let status = if saved.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(saved)).into_response())
}

#[utoipa::path(post, path = "/api/v1/catalog/{code}/publish", tag = "catalog",
    request_body(content = Option<PublishOptions>, description = "Optional."),
    params(("code" = String, Path, description = "The resource code (percent-encode its `/`).")),
    responses((status = 200, description = "Published, durable; it travels by its scope.", body = SavedEntry)))]
pub(crate) async fn publish(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(code): Path<String>,
    OptionalJsonBody(options): OptionalJsonBody<PublishOptions>,
) -> Result<Json<SavedEntry>, ApiError> {
    let options = options.unwrap_or_default();
    Ok(Json(state.node.publish(who, &code, options.scope).await?))
}

#[utoipa::path(post, path = "/api/v1/catalog/{code}/withdraw", tag = "catalog",
    params(("code" = String, Path, description = "The resource code.")),
    responses((status = 200, description = "Withdrawn, federation-wide.", body = SavedEntry)))]
pub(crate) async fn withdraw(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(code): Path<String>,
) -> Result<Json<SavedEntry>, ApiError> {
    Ok(Json(state.node.withdraw(who, &code).await?))
}

/// A page of the catalog.
#[derive(Serialize, ToSchema)]
pub(crate) struct CatalogPage {
    /// The entries, in index order.
    entries: Vec<CatalogRow>,
    /// How many are on this page.
    returned: usize,
    /// Pass as `cursor` for the next page; none on the last.
    next: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/catalog", tag = "catalog", params(CatalogQuery),
    responses((status = 200, description = "The federated catalog as this node holds it.", body = CatalogPage)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
    q: Result<Query<CatalogQuery>, QueryRejection>,
) -> Result<Json<CatalogPage>, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    let page = state.node.catalog(query(q)?).await?;
    Ok(Json(CatalogPage { returned: page.items.len(), entries: page.items, next: page.next }))
}

/// Which entry, when several nodes use a code.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EntryQuery {
    /// The node that published it.
    origin: Option<NodeId>,
}

#[utoipa::path(get, path = "/api/v1/catalog/{code}", tag = "catalog",
    params(("code" = String, Path, description = "The resource code."), EntryQuery),
    responses((status = 200, description = "This node's own entry, else the federated one.", body = CatalogRow)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(code): Path<String>,
    q: Result<Query<EntryQuery>, QueryRejection>,
) -> Result<Json<CatalogRow>, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    let q = query(q)?;
    Ok(Json(state.node.entry(code, q.origin).await?))
}
