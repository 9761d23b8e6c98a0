//! One Cascade node on tokio: the driver that runs the node core (`cascade-core`)
//! with the QUIC transport, the sled store and the clock, the links to its
//! neighbours, and the API its admin interface calls. Every decision is the
//! core's; this crate executes effects and answers reads.

mod admission;
mod api;
mod config;
mod datasets;
mod dialer;
mod driver;
mod faults;
mod files;
mod gateway;
mod links;
mod login;
pub mod memory;
mod node;
mod open;
mod query;
mod services;
mod workflow;

pub use api::{IssuedToken, PasswordChange};
pub use config::{AdminTls, CertPaths, DatasetConfig, GatewayConfig, NodeConfig, WorkflowConfig};
pub use datasets::{
    Content, DatasetCounters, FetchView, SubscriptionRequest, FETCH_IN_FLIGHT, GC_GRACE, MAX_CONTENT_STREAMS,
    MAX_CONTENT_STREAMS_PER_ACCOUNT,
};
pub use driver::Applied;
pub use faults::TransportCounters;
pub use files::check_secret;
pub use gateway::{CallFailure, CallRequest, CallResponse, FORWARDED_HEADERS};
pub use login::LoginError;
pub use node::{Node, NodeError, CHUNK_DIR, STORE_DIR, TOKEN_FILE};
pub use open::{OpenEntry, OpenPage, OpenSearch, MAX_OPEN_VERSIONS};
pub use query::{CatalogQuery, Listing, Neighbour, PageQuery, TokenInfo};
