//! One Cascade node: drives the sans-IO sync engine with the QUIC transport, the
//! sled store and the clock. Catalog operations of the admin interface go through
//! here so that every change becomes a signed, durable delta.

mod catalog;
mod config;
mod engine_task;
mod faults;
mod links;
mod node;
mod organizations;
mod status;

pub use catalog::{tier_of, CatalogError, CatalogQuery, PublishOptions, SavedEntry, ViewEntry};
pub use config::{CertPaths, NodeConfig};
pub use engine_task::Applied;
pub use node::{Node, NodeError, STORE_DIR, TOKEN_FILE};
pub use status::{PeerStatus, Snapshot};
