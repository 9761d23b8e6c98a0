//! The admin HTTP interface of a Cascade node (axum, JSON).
//!
//! Every route under `/api` (and `/metrics`) requires `Authorization: Bearer
//! <token>` — the node's bootstrap token, a login session or an API token — read
//! by one extractor ([`Caller`]). Handlers turn HTTP into the node core's
//! commands, which authorize, apply and audit each change in the group commit
//! that makes it durable, or into reads. Errors are `{"error": "...", ...}` with
//! the status of who is at fault: 4xx for the caller, 503 for a local failure.

mod caller;
mod catalog;
mod error;
mod federation;
pub mod metrics;
mod observe;
mod people;
mod routes;

pub use caller::Caller;
pub use error::ApiError;
pub use routes::router;

/// Serves the admin interface of `node` on `listener` until `shutdown` resolves.
pub async fn serve(
    node: cascade_runtime::Node,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(node)).with_graceful_shutdown(shutdown).await
}
