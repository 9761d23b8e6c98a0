//! The `cascade` binary's library: topologies, a local federation's PKI and the
//! launcher that runs a whole topology in one process.

pub mod federation;
pub mod pki;
pub mod topology;
