//! Simulation of a Cascade federation.
//!
//! Two modes share one scenario language and one invariant checker:
//! * **deterministic**: the real node core of every node (sync engine, group
//!   commit, rules, authorization, audit) over an in-memory store, on a simulated
//!   clock and network, all randomness (keys too) from one seed — a failing seed
//!   replays exactly;
//! * **real**: every node of a topology in this process over real QUIC on
//!   127.0.0.1 with real sled folders, faults applied at the transport.

mod calls;
mod datasets;
pub mod deterministic;
pub mod invariants;
pub mod real;
pub mod report;
pub mod scenario;
mod workload;

pub use calls::CallTally;
pub use datasets::DatasetTally;
pub use report::Report;
pub use scenario::Scenario;

/// Why a simulation could not run (a violated invariant is a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Building the federation failed.
    #[error("setup: {0}")]
    Setup(String),
    /// The scenario asks for something impossible here.
    #[error("scenario: {0}")]
    Scenario(String),
    /// A real node failed.
    #[error("node: {0}")]
    Node(String),
}
