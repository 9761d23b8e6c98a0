//! Federations on one machine: topology files, the PKI of a local federation,
//! the launcher that runs a whole topology in one process (`cascade up`, the
//! real-mode simulator, end-to-end tests), and nodes run as processes of their
//! own (`cascade up --processes`, the simulator's process crash mode).

mod launcher;
pub mod pki;
pub mod processes;
pub mod topology;

pub use launcher::{Federation, LaunchOptions, ManifestNode, RunningNode};
