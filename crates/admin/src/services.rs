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
use cascade_protocol::service::{Endpoint, EntryRef, Service, ServiceDraft, ServiceKind, ServiceStatus};
use cascade_protocol::NodeId;
use cascade_runtime::PageQuery;
use cascade_store::ServiceFilter;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, ToSchema};

/// A service as the API shows it: its registration's fields at the top level,
/// with the upstream when the caller may see it. (Spelled out rather than a
/// flattened `ServiceDraft`: the draft refuses unknown fields, so its schema
/// would forbid these.)
#[derive(Serialize, ToSchema)]
pub(crate) struct ServiceView {
    /// `{origin}-{n}`.
    id: String,
    /// The node it is registered at.
    origin: Option<NodeId>,
    /// Goes up with every change.
    version: u64,
    /// Active or retired.
    status: ServiceStatus,
    /// Its name.
    name: String,
    /// The catalog entry it serves.
    entry: EntryRef,
    /// Credit code of the provider organization.
    provider: String,
    /// Query or verify.
    kind: ServiceKind,
    /// The operations offered.
    endpoints: Vec<Endpoint>,
    /// Sensitivity level, 1 (lowest) to 4.
    sensitivity: u8,
    /// Calls per minute each consumer may make, unless its grant says otherwise.
    rate_limit_per_minute: u32,
    /// Where its own node forwards calls: only there, to an admin or an account of its provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<String>,
}

fn view(service: &Service, upstream: Option<&str>) -> ServiceView {
    let draft = service.draft.clone();
    ServiceView {
        id: service.id.clone(),
        origin: Service::origin_of(&service.id),
        version: service.version,
        status: service.status,
        name: draft.name,
        entry: draft.entry,
        provider: draft.provider,
        kind: draft.kind,
        endpoints: draft.endpoints,
        sensitivity: draft.sensitivity,
        rate_limit_per_minute: draft.rate_limit_per_minute,
        upstream: upstream.map(str::to_string),
    }
}

/// The body of a registration or update: the registration's fields and
/// `upstream`. `draft_of` reads it as a map and splits it, so that a bad field
/// is named by its path; its schema is the registration's with `upstream` added.
pub(crate) struct ServiceBody;

impl utoipa::PartialSchema for ServiceBody {
    fn schema() -> RefOr<Schema> {
        let mut schema = <ServiceDraft as utoipa::PartialSchema>::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            let upstream = ObjectBuilder::new().schema_type(Type::String).description(Some(
                "Where this node forwards calls (`http://host:port`): it stays here, never in the signed registration.",
            ));
            object.properties.insert("upstream".into(), upstream.into());
            object.required.push("upstream".into());
            object.description = Some("A service's registration and its upstream.".into());
        }
        schema
    }
}

impl ToSchema for ServiceBody {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        <ServiceDraft as ToSchema>::schemas(schemas);
    }
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

#[utoipa::path(post, path = "/api/v1/services", tag = "services", request_body = ServiceBody,
    responses((status = 201, description = "Registered and signed; the registration travels.", body = ServiceView)))]
pub(crate) async fn register(
    State(state): State<AppState>,
    Caller(who): Caller,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Response, ApiError> {
    let (draft, upstream) = draft_of(body)?;
    let own = state.node.save_service(who, None, draft, upstream).await?;
    Ok((StatusCode::CREATED, Json(view(&own.service, Some(&own.upstream)))).into_response())
}

#[utoipa::path(put, path = "/api/v1/services/{id}", tag = "services", request_body = ServiceBody,
    params(("id" = String, Path, description = "The service's id.")),
    responses((status = 200, description = "Updated (a new version).", body = ServiceView)))]
pub(crate) async fn update(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Json<ServiceView>, ApiError> {
    let (draft, upstream) = draft_of(body)?;
    let own = state.node.save_service(who, Some(id), draft, upstream).await?;
    Ok(Json(view(&own.service, Some(&own.upstream))))
}

#[utoipa::path(post, path = "/api/v1/services/{id}/retire", tag = "services",
    params(("id" = String, Path, description = "The service's id.")),
    responses((status = 200, description = "Retired, federation-wide.", body = ServiceView)))]
pub(crate) async fn retire(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<ServiceView>, ApiError> {
    let own = state.node.retire_service(who, id).await?;
    Ok(Json(view(&own.service, Some(&own.upstream))))
}

/// Which services to list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ServiceQuery {
    /// Only those registered at this node.
    origin: Option<NodeId>,
    /// Only those of this provider (credit code).
    provider: Option<String>,
    /// Only active or only retired ones.
    status: Option<ServiceStatus>,
    /// The `next` of the previous page.
    cursor: Option<String>,
    /// Most on the page (default 100, at most 1000).
    limit: Option<usize>,
}

/// A page of services.
#[derive(Serialize, ToSchema)]
pub(crate) struct ServicesPage {
    /// The services (never an upstream).
    services: Vec<ServiceView>,
    /// How many are on this page.
    returned: usize,
    /// Pass as `cursor` for the next page; none on the last.
    next: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/services", tag = "services", params(ServiceQuery),
    responses((status = 200, description = "Every service in the federation.", body = ServicesPage)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    Caller(who): Caller,
    q: Result<Query<ServiceQuery>, QueryRejection>,
) -> Result<Json<ServicesPage>, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    let q = query(q)?;
    let filter = ServiceFilter { origin: q.origin, provider: q.provider, status: q.status };
    let page = state.node.services(filter, PageQuery { cursor: q.cursor, limit: q.limit }).await?;
    let services: Vec<ServiceView> = page.items.iter().map(|s| view(s, None)).collect();
    Ok(Json(ServicesPage { returned: services.len(), services, next: page.next }))
}

#[utoipa::path(get, path = "/api/v1/services/{id}", tag = "services",
    params(("id" = String, Path, description = "The service's id.")),
    responses((status = 200, description = "The service.", body = ServiceView)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<ServiceView>, ApiError> {
    state.node.check(&who, Permission::Read).await?;
    let Some((service, upstream)) = state.node.service(id.clone()).await? else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no service {id}")));
    };
    let upstream = upstream.filter(|_| sees_upstream(&who, &service.draft.provider));
    Ok(Json(view(&service, upstream.as_deref())))
}
