//! The admin HTTP interface of a Cascade node (axum, JSON).
//!
//! Every route under `/api` requires `Authorization: Bearer <token>`; errors are
//! `{"error": "...", ...}` with the matching status.

mod error;
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
