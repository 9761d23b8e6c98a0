//! Operator- and simulator-controlled faults, and the transport's counters.

use cascade_metrics::counters;
use cascade_protocol::NodeId;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

/// Faults applied at this node: blocked neighbours, a send delay, and a store
/// that refuses writes (to show how the node reports a local failure).
#[derive(Debug, Default)]
pub(crate) struct Faults {
    blocked: RwLock<BTreeSet<NodeId>>,
    delay_ms: AtomicU64,
    store_fails: AtomicBool,
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

    pub(crate) fn fail_store(&self) {
        self.store_fails.store(true, Ordering::Relaxed);
    }

    pub(crate) fn store_fails(&self) -> bool {
        self.store_fails.load(Ordering::Relaxed)
    }
}

counters! {
    /// What this node's transport did.
    pub struct TransportCounters {
        /// Frames sent to neighbours.
        frames_out => counter "cascade_frames_out_total",
        /// Bytes sent to neighbours.
        bytes_out => counter "cascade_bytes_out_total",
        /// Incoming connections refused (no certificate, not a member, revoked, ...).
        handshakes_refused => counter "cascade_handshakes_refused_total",
        /// Of those, turned away before any cryptography (the address kept failing).
        handshakes_throttled => counter "cascade_handshakes_throttled_total",
        /// Connections this node opened to its parent.
        parent_dials => counter "cascade_parent_dials_total",
        /// How long this node waits before dialing its parent again, after the
        /// last attempt ended (0 while linked).
        parent_redial_wait_ms => gauge "cascade_parent_redial_wait_milliseconds",
    }
}

/// Frames and bytes this node wrote to its neighbours, and connections it refused.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    frames: AtomicU64,
    bytes: AtomicU64,
    refused: AtomicU64,
    throttled: AtomicU64,
    parent_dials: AtomicU64,
    parent_wait_ms: AtomicU64,
}

impl Traffic {
    pub(crate) fn record(&self, bytes: usize) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn handshake_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn handshake_throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// A dial of the parent begins.
    pub(crate) fn parent_dial(&self) {
        self.parent_dials.fetch_add(1, Ordering::Relaxed);
        self.parent_wait_ms.store(0, Ordering::Relaxed);
    }

    /// The next dial of the parent is `ms` away.
    pub(crate) fn parent_wait(&self, ms: u64) {
        self.parent_wait_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn counters(&self) -> TransportCounters {
        TransportCounters {
            frames_out: self.frames.load(Ordering::Relaxed),
            bytes_out: self.bytes.load(Ordering::Relaxed),
            handshakes_refused: self.refused.load(Ordering::Relaxed),
            handshakes_throttled: self.throttled.load(Ordering::Relaxed),
            parent_dials: self.parent_dials.load(Ordering::Relaxed),
            parent_redial_wait_ms: self.parent_wait_ms.load(Ordering::Relaxed),
        }
    }
}
