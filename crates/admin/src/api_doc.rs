//! The admin API's OpenAPI 3.1 document, generated from the code: every
//! documented route is registered through `utoipa_axum::routes!` from the
//! handler's own `#[utoipa::path]` (so a route cannot be served without being
//! described, nor described without being served), and every schema is derived
//! from the Rust type the handler serializes or parses. Served at
//! `GET /api/v1/openapi.json`, without authentication.

use crate::error::ErrorBody;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// The scheme every authenticated route asks for.
const BEARER: &str = "bearer";

/// The document's title, version and description; routes and schemas are added
/// as the router is built.
pub(crate) fn base() -> OpenApi {
    use utoipa::openapi::{InfoBuilder, OpenApiBuilder};
    let info = InfoBuilder::new()
        .title("Cascade admin API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "The admin HTTP interface of a Cascade node. Every route but health, readiness, login and \
             this document requires `Authorization: Bearer <token>` (the node's bootstrap token, a login \
             session or an API token). Errors are `{\"error\", \"status\", \"field\"?}` with the status of \
             who is at fault: 4xx for the caller, 503 (with `Retry-After` when waiting helps) for the node. \
             The service gateway (`/gateway/{service}/{path}`) carries each service's own API and is not \
             described here; neither are the open-data faces (DCAT-AP at `/open/`, CKAN at `/api/3/action/`).",
        ))
        .build();
    OpenApiBuilder::new().info(info).build()
}

/// Adds what every operation shares once the routes are in: the bearer scheme
/// (required unless the operation says otherwise) and the error responses.
pub(crate) fn finish(mut api: OpenApi) -> OpenApi {
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    components.schemas.insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    let error = |what: &str| {
        let content = ContentBuilder::new()
            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(ErrorBody::name()))));
        RefOr::T(
            ResponseBuilder::new().description(what).content("application/json", content.build()).build(),
        )
    };
    api.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    for item in api.paths.paths.values_mut() {
        for op in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten() {
            let responses = &mut op.responses.responses;
            responses
                .entry("4XX".into())
                .or_insert_with(|| error("The caller's fault: the error says what."));
            responses.entry("5XX".into()).or_insert_with(|| error("The node's fault, or it is busy."));
        }
    }
    api
}

/// `GET /api/v1/openapi.json`: the document, serialized once.
pub(crate) fn handler(api: OpenApi) -> impl Fn() -> std::future::Ready<Response> + Clone {
    let json: Arc<str> = api.to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")).into();
    move || {
        let body = json.to_string();
        std::future::ready(([(header::CONTENT_TYPE, "application/json")], body).into_response())
    }
}
