//! The admin HTTP interface of a Cascade node (axum, JSON).
//!
//! Every route under `/api` (and `/metrics`) requires `Authorization: Bearer
//! <token>` — the node's bootstrap token, a login session or an API token — and
//! checks the caller's role and organization; every change is written to the
//! node's hash-chained audit log. Errors are `{"error": "...", ...}` with the
//! matching status.

mod auth;
mod catalog;
mod error;
mod federation;
pub mod metrics;
mod observe;
mod people;
mod routes;

pub use error::ApiError;
pub use routes::router;

/// Largest request body accepted: a catalog entry with 1,000 data items is far below.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Serves the admin interface of `node` on `listener` until `shutdown` resolves.
pub async fn serve(
    node: std::sync::Arc<cascade_runtime::Node>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(node)).with_graceful_shutdown(shutdown).await
}
