//! Federations on one machine: topology files, the PKI of a local federation, and
//! the launcher that runs a whole topology in one process (`cascade up`, the
//! real-mode simulator, end-to-end tests).

mod launcher;
pub mod pki;
pub mod topology;

pub use launcher::{Federation, LaunchOptions, ManifestNode, RunningNode};
