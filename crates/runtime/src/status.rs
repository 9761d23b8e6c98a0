//! A snapshot of the node's sync state, refreshed by the engine task after every
//! group of events and read by the admin interface and the transport's admission.

use cascade_protocol::{NodeId, Scope};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One neighbour as seen now.
#[derive(Clone, Debug, Serialize)]
pub struct PeerStatus {
    /// The neighbour.
    pub id: NodeId,
    /// "parent" or "child".
    pub role: &'static str,
    /// "connected", "syncing" (waiting for its Hello) or "disconnected".
    pub state: &'static str,
    /// Unix seconds of the last frame received, if any.
    pub last_frame_at: Option<u64>,
    /// Deltas this node holds that the neighbour may hold and (as far as we know) lacks.
    pub lag_deltas: u64,
    /// Seconds since the neighbour was last fully in sync (0 when in sync).
    pub lag_seconds: u64,
}

/// One log's head.
#[derive(Clone, Debug, Serialize)]
pub struct VvEntry {
    /// The origin of the log.
    pub origin: NodeId,
    /// Its scope.
    pub scope: Scope,
    /// The highest contiguous seq held.
    pub seq: u64,
}

/// The sync state of a node.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    /// Neighbours currently linked.
    pub peers: BTreeMap<NodeId, PeerStatus>,
    /// Version vector: head seq of every log held.
    pub version_vector: Vec<VvEntry>,
    /// Children known from their certificates (connected or not).
    pub children: BTreeSet<NodeId>,
    /// Revoked nodes.
    pub revoked: BTreeSet<NodeId>,
    /// Deltas accepted from neighbours.
    pub deltas_in: u64,
    /// Deltas this node originated.
    pub deltas_originated: u64,
    /// Deltas sent to neighbours.
    pub deltas_out: u64,
    /// Deltas rejected, by reason label.
    pub rejected: BTreeMap<String, u64>,
}
