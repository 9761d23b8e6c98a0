//! Operator- and simulator-controlled link faults, and traffic counters.

use cascade_protocol::NodeId;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

/// Faults applied at this node's transport: blocked neighbours and a send delay.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    blocked: RwLock<BTreeSet<NodeId>>,
    delay_ms: AtomicU64,
}

impl Faults {
    pub(crate) fn set_blocked(&self, peer: NodeId, blocked: bool) {
        let mut set = self.blocked.write().unwrap_or_else(|p| p.into_inner());
        if blocked {
            set.insert(peer);
        } else {
            set.remove(&peer);
        }
    }

    pub(crate) fn is_blocked(&self, peer: NodeId) -> bool {
        self.blocked.read().map(|s| s.contains(&peer)).unwrap_or(false)
    }

    pub(crate) fn set_delay(&self, delay: Duration) {
        self.delay_ms.store(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(crate) fn delay(&self) -> Option<Duration> {
        match self.delay_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

/// Frames and bytes this node wrote to its neighbours.
#[derive(Debug, Default)]
pub struct Traffic {
    frames: AtomicU64,
    bytes: AtomicU64,
}

impl Traffic {
    pub(crate) fn record(&self, bytes: usize) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// (frames, bytes) sent so far.
    pub fn totals(&self) -> (u64, u64) {
        (self.frames.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }
}
