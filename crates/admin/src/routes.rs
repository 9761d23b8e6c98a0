//! The router.

use crate::access_log::AccessTally;
use crate::error::ApiError;
use crate::metrics::{self, HttpMetrics};
use crate::{catalog, datasets, federation, gateway, observe, people, services, workflow};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, get};
use axum::Router;
use cascade_protocol::limits::MAX_REQUEST_BODY_BYTES;
use cascade_runtime::Node;
use std::sync::Arc;
use tracing::{debug, info_span, Instrument};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub(crate) node: Node,
    pub(crate) http: Arc<HttpMetrics>,
}

/// The admin router of a node.
pub fn router(node: Node) -> Router {
    app(node).0
}

/// The admin router of a node and the tally its access log summarizes.
pub(crate) fn app(node: Node) -> (Router, Arc<AccessTally>) {
    let access = Arc::new(AccessTally::new(node.identity().id.to_string()));
    let state = AppState { node, http: Arc::new(HttpMetrics::default()) };
    // Calls and dataset contents stream their bodies: no body limit (the
    // gateway's own cap applies) and no request time-out.
    let (calls, calls_api) = OpenApiRouter::new()
        .route("/gateway/{service}/{*path}", any(gateway::call))
        .routes(routes!(datasets::list, datasets::push))
        .routes(routes!(datasets::content))
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn(crate::serve::head_limit))
        .layer(middleware::from_fn_with_state(access.clone(), trace_request))
        .layer(middleware::from_fn_with_state(state.http.clone(), metrics::track))
        .split_for_parts();
    let (router, mut api) = OpenApiRouter::with_openapi(crate::api_doc::base())
        .routes(routes!(observe::health))
        .routes(routes!(observe::ready))
        .routes(routes!(people::login))
        .routes(routes!(people::logout))
        .routes(routes!(people::whoami))
        .routes(routes!(federation::node_view))
        .routes(routes!(federation::sync_view))
        .routes(routes!(federation::divisions))
        .routes(routes!(federation::list_organizations, federation::register_organization))
        .routes(routes!(federation::get_organization))
        .routes(routes!(federation::revoke))
        .routes(routes!(catalog::list, catalog::save))
        .routes(routes!(catalog::get))
        .routes(routes!(catalog::publish))
        .routes(routes!(catalog::withdraw))
        .routes(routes!(services::list, services::register))
        .routes(routes!(services::get, services::update))
        .routes(routes!(services::retire))
        .routes(routes!(workflow::list, workflow::apply))
        .routes(routes!(workflow::get))
        .routes(routes!(workflow::approve))
        .routes(routes!(workflow::reject))
        .routes(routes!(workflow::withdraw))
        .routes(routes!(workflow::grants))
        .routes(routes!(workflow::revoke))
        .routes(routes!(datasets::get))
        .routes(routes!(datasets::fetch))
        .routes(routes!(datasets::jobs))
        .routes(routes!(datasets::job))
        .routes(routes!(datasets::subscriptions, datasets::subscribe))
        .routes(routes!(datasets::unsubscribe))
        .routes(routes!(gateway::usage))
        .routes(routes!(workflow::relayed))
        .routes(routes!(people::list_accounts, people::create_account))
        .routes(routes!(people::set_password))
        .routes(routes!(people::disable_account))
        .routes(routes!(people::enable_account))
        .routes(routes!(people::list_tokens, people::create_token))
        .routes(routes!(people::revoke_token))
        .routes(routes!(people::list_sessions))
        .routes(routes!(people::end_session))
        .routes(routes!(observe::audit_query))
        .routes(routes!(observe::audit_verify))
        .routes(routes!(observe::audit_checkpoint))
        .routes(routes!(observe::metrics_view))
        .split_for_parts();
    // The streaming routes join after the layers above: never the time limit,
    // and their own tracing and metrics only (once).
    api.merge(calls_api);
    let api = crate::api_doc::finish(api);
    let router = router
        .route("/api/v1/openapi.json", get(crate::api_doc::handler(api)))
        .merge(crate::open::routes())
        .merge(crate::console::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "this route does not take that method")
        })
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .layer(middleware::from_fn(crate::serve::time_limit))
        .layer(middleware::from_fn(crate::serve::head_limit))
        .layer(middleware::from_fn_with_state(access.clone(), trace_request))
        .layer(middleware::from_fn_with_state(state.http.clone(), metrics::track))
        .merge(calls)
        .with_state(state);
    (router, access)
}

/// A span per request; the request itself logged at debug and counted for the
/// access log's summary.
async fn trace_request(State(access): State<Arc<AccessTally>>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let span = info_span!("http", %method, path = %request.uri().path());
    async move {
        let response = next.run(request).await;
        let (status, seconds) = (response.status().as_u16(), started.elapsed().as_secs_f64());
        debug!(status, ms = (seconds * 1000.0).round() as u64, "request");
        access.record(method.as_str(), route.as_deref().unwrap_or("unmatched"), status, seconds);
        response
    }
    .instrument(span)
    .await
}

/// Parses a JSON body, naming the offending field on a data error.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
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

/// Parses a query string, answering 400 on a bad one.
pub(crate) fn query<T: serde::de::DeserializeOwned>(
    q: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    q.map(|axum::extract::Query(t)| t).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
}
