//! Service routes (服务接口): a provider's catalogers register, update and retire
//! services of their organization; everyone signed in lists them. The core
//! authorizes, signs and audits each change in the commit that applies it. A
//! service's upstream is shown only at its own node, to an administrator or an
//! account of its provider.

use crate::body::JsonBody;
use crate::caller::Caller;
use crate::error::ApiError;
use crate::routes::{parse_json, query, AppState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cascade_access::{Permission, Principal, Role};
use cascade_protocol::service::{Service, ServiceDraft, ServiceStatus};
use cascade_protocol::NodeId;
use cascade_runtime::PageQuery;
use cascade_store::ServiceFilter;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// A service as the API shows it: its registration's fields at the top level,
/// with the upstream when the caller may see it.
fn view(service: &Service, upstream: Option<&str>) -> Value {
    let mut out = serde_json::to_value(&service.draft).unwrap_or_else(|_| json!({}));
    if let Some(fields) = out.as_object_mut() {
        fields.insert("id".into(), json!(service.id));
        fields.insert("origin".into(), json!(Service::origin_of(&service.id)));
        fields.insert("version".into(), json!(service.version));
        fields.insert("status".into(), json!(service.status));
        if let Some(upstream) = upstream {
            fields.insert("upstream".into(), json!(upstream));
        }
    }
    out
}

/// Whether `who` may see the upstream of a service of `provider`.
fn sees_upstream(who: &Principal, provider: &str) -> bool {
    who.has(Role::Admin) || who.organization.as_deref() == Some(provider)
}

/// A registration body: the draft's fields and `upstream`.
pub(crate) fn draft_of(mut body: Map<String, Value>) -> Result<(ServiceDraft, String), ApiError> {
    let upstream = match body.remove("upstream") {
        Some(Value::String(u)) => u,
        Some(_) => return Err(ApiError::field("upstream", "a URL string")),
        None => return Err(ApiError::field("upstream", "missing field `upstream`")),
    };
    let draft =
        serde_json::to_vec(&body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok((parse_json(&draft)?, upstream))
}

pub(crate) async fn register(
    State(state): State<AppState>,
    Caller(who): Caller,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Response, ApiError> {
    let (draft, upstream) = draft_of(body)?;
    let own = state.node.save_service(who, None, draft, upstream).await?;
    Ok((StatusCode::CREATED, Json(view(&own.service, Some(&own.upstream)))).into_response())
}

pub(crate) async fn update(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Response, ApiError> {
    let (draft, upstream) = draft_of(body)?;
    let own = state.node.save_service(who, Some(id), draft, upstream).await?;
    Ok(Json(view(&own.service, Some(&own.upstream))).into_response())
}

pub(crate) async fn retire(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let own = state.node.retire_service(who, id).await?;
    Ok(Json(view(&own.service, Some(&own.upstream))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServiceQuery {
    origin: Option<NodeId>,
    provider: Option<String>,
    status: Option<ServiceStatus>,
    cursor: Option<String>,
    limit: Option<usize>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
    q: Result<Query<ServiceQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    let q = query(q)?;
    let filter = ServiceFilter { origin: q.origin, provider: q.provider, status: q.status };
    let page = state.node.services(filter, PageQuery { cursor: q.cursor, limit: q.limit }).await?;
    let items: Vec<Value> = page.items.iter().map(|s| view(s, None)).collect();
    Ok(Json(json!({"services": items, "returned": items.len(), "next": page.next})).into_response())
}

pub(crate) async fn get(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    let Some((service, upstream)) = state.node.service(id.clone()).await? else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no service {id}")));
    };
    let upstream = upstream.filter(|_| sees_upstream(&who, &service.draft.provider));
    Ok(Json(view(&service, upstream.as_deref())).into_response())
}
