//! The router.

use crate::access_log::AccessTally;
use crate::error::ApiError;
use crate::metrics::{self, HttpMetrics};
use crate::{catalog, datasets, federation, gateway, observe, people, services, workflow};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{any, delete, get, post};
use axum::Router;
use cascade_protocol::limits::MAX_REQUEST_BODY_BYTES;
use cascade_runtime::Node;
use std::sync::Arc;
use tracing::{debug, info_span, Instrument};

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
    let calls = Router::new()
        .route("/gateway/{service}/{*path}", any(gateway::call))
        .route("/api/v1/datasets/{origin}/{code}/versions", get(datasets::list).put(datasets::push))
        .route("/api/v1/datasets/{origin}/{code}/versions/{version}/content", get(datasets::content))
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn(crate::serve::head_limit))
        .layer(middleware::from_fn_with_state(access.clone(), trace_request))
        .layer(middleware::from_fn_with_state(state.http.clone(), metrics::track));
    let router = Router::new()
        .route("/healthz", get(observe::health))
        .route("/readyz", get(observe::ready))
        .route("/api/v1/login", post(people::login))
        .route("/api/v1/logout", post(people::logout))
        .route("/api/v1/whoami", get(people::whoami))
        .route("/api/v1/node", get(federation::node_view))
        .route("/api/v1/sync", get(federation::sync_view))
        .route("/api/v1/divisions", get(federation::divisions))
        .route(
            "/api/v1/organizations",
            get(federation::list_organizations).post(federation::register_organization),
        )
        .route("/api/v1/organizations/{code}", get(federation::get_organization))
        .route("/api/v1/nodes/{id}/revoke", post(federation::revoke))
        .route("/api/v1/catalog", get(catalog::list).post(catalog::save))
        .route("/api/v1/catalog/{code}", get(catalog::get))
        .route("/api/v1/catalog/{code}/publish", post(catalog::publish))
        .route("/api/v1/catalog/{code}/withdraw", post(catalog::withdraw))
        .route("/api/v1/services", get(services::list).post(services::register))
        .route("/api/v1/services/{id}", get(services::get).put(services::update))
        .route("/api/v1/services/{id}/retire", post(services::retire))
        .route("/api/v1/applications", get(workflow::list).post(workflow::apply))
        .route("/api/v1/applications/{id}", get(workflow::get))
        .route("/api/v1/applications/{id}/approve", post(workflow::approve))
        .route("/api/v1/applications/{id}/reject", post(workflow::reject))
        .route("/api/v1/applications/{id}/withdraw", post(workflow::withdraw))
        .route("/api/v1/grants", get(workflow::grants))
        .route("/api/v1/grants/{id}/revoke", post(workflow::revoke))
        .route("/api/v1/datasets/{origin}/{code}/versions/{version}", get(datasets::get))
        .route("/api/v1/datasets/{origin}/{code}/versions/{version}/fetch", post(datasets::fetch))
        .route("/api/v1/fetches", get(datasets::jobs))
        .route("/api/v1/fetches/{id}", get(datasets::job))
        .route("/api/v1/subscriptions", get(datasets::subscriptions).post(datasets::subscribe))
        .route("/api/v1/subscriptions/{id}", delete(datasets::unsubscribe))
        .route("/api/v1/usage", get(gateway::usage))
        .route("/api/v1/relayed", get(workflow::relayed))
        .route("/api/v1/accounts", get(people::list_accounts).post(people::create_account))
        .route("/api/v1/accounts/{username}/password", post(people::set_password))
        .route("/api/v1/accounts/{username}/disable", post(people::disable_account))
        .route("/api/v1/accounts/{username}/enable", post(people::enable_account))
        .route("/api/v1/tokens", get(people::list_tokens).post(people::create_token))
        .route("/api/v1/tokens/{id}", delete(people::revoke_token))
        .route("/api/v1/sessions", get(people::list_sessions))
        .route("/api/v1/sessions/{id}", delete(people::revoke_token))
        .route("/api/v1/audit", get(observe::audit_query))
        .route("/api/v1/audit/verify", get(observe::audit_verify))
        .route("/api/v1/audit/checkpoints", post(observe::audit_checkpoint))
        .route("/metrics", get(observe::metrics_view))
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
