//! The admin HTTP interface of a Cascade node (axum, JSON).
//!
//! Every node serves the web console at `/` (embedded files; a client of this
//! API). Every route under `/api/v1` (and `/metrics`) requires `Authorization: Bearer
//! <token>` — the node's bootstrap token, a login session or an API token — read
//! by one extractor ([`Caller`]). The open-data face (`/open/...` and CKAN's
//! `/api/3/action/...`) is public and read-only, and shows only open entries. Handlers turn HTTP into the node core's
//! commands, which authorize, apply and audit each change in the group commit
//! that makes it durable, or into reads. Errors are `{"error": "...", ...}` with
//! the status of who is at fault: 4xx for the caller, 503 for a local failure.

mod access_log;
mod api_doc;
mod bodies;
mod body;
mod caller;
mod catalog;
mod console;
mod datasets;
mod error;
mod federation;
mod gateway;
pub mod metrics;
mod observe;
mod open;
mod people;
mod routes;
mod serve;
mod services;
pub mod tls;
mod workflow;

pub use bodies::parse_every_body;
pub use caller::{Caller, ClientAddr};
pub use error::ApiError;
pub use routes::router;
pub use serve::{serve, HEADER_READ_TIMEOUT, MAX_CONNECTIONS, MAX_HEADER_BYTES, REQUEST_TIMEOUT};
