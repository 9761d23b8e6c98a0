//! The node core of Cascade: every decision about a node's state in one pure
//! state machine, driven by the tokio runtime and by the deterministic simulator
//! alike (the way quinn-proto is driven by quinn).
//!
//! ```text
//!   link up/down, frames ─┐                          ┌─ Commit (write batch, flush)
//!   commands (+principal) ─┼─► Core::handle ─► poll ─┼─ Send / SendRange / Close
//!   commit completions  ──┘        │                 └─ Reply (after its commit)
//!                                  ▼
//!                  sync engine · catalog, organization and access rules
//!                  authorization · audit chain · group commit
//!                                  │ reads
//!                                  ▼
//!                         StateStore (sled, or MemoryStore)
//! ```

pub mod audit;
mod base;
mod calendar;
mod calls;
mod catalog;
mod command;
mod core;
mod dataset;
mod memory;
mod redial;
mod service;
mod status;
mod store;
mod tally;
mod workflow;

pub use crate::core::{BootError, Core, Effect, Identity, Input, LinkId, Ticket};
pub use base::MAX_USERNAME_BYTES;
pub use calendar::{Calendar, DEFAULT_DUE_WORKING_DAYS};
pub use calls::{Admitted, CallGate, CallRefusal, CALL_WINDOW_MS, MAX_CALLS_REMEMBERED, MAX_RATE_WINDOWS};
pub use command::{Account, Command, CommandError, OwnService, Reply, SavedEntry};
pub use dataset::{admit_chunk, ChunkRefusal};
pub use memory::{MemoryStore, AUDIT_KEPT};
pub use redial::{LinkEnd, Redial};
pub use status::{
    BehindLog, CommitCounters, LinkRole, PeerFaults, PeerStatus, RecoveryStatus, Rejections, RoutedCounters,
    RoutedPending, Status, SyncCounters, VvEntry,
};
pub use store::{
    AccountRecord, BootState, Materialize, Meta, OwnWrite, RelayRecord, StateStore, StoreError, TokenRecord,
    WriteBatch,
};
pub use workflow::{awaiting, Application, Approval, GrantRecord};
