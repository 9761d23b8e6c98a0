//! Fork-free recovery after a power loss. sled's flush survives a killed process
//! but not necessarily a power cut, so a node can come back holding fewer of its
//! own deltas than its neighbours do. Were it to originate at once, it would sign
//! a second delta at a position its neighbours hold another one at, and be
//! flagged as forked. So a node that restarts with logs of its own originates
//! nothing until it has heard from the neighbour that holds the most of them (its
//! parent; for the national node, any child), whose Hello says how far they go;
//! anything it lacks comes back by ordinary sync, checked like any delta. The
//! engine also refuses to originate in any own log a neighbour holds more of.

use super::Core;
use crate::status::{BehindLog, RecoveryStatus};
use crate::store::StateStore;
use cascade_protocol::{LogId, NodeId, Scope};
use ed25519_dalek::SigningKey;

/// How long a restarted node waits for the neighbour it asks before it takes
/// its own store's word: long enough for a parent restarting at the same time
/// (a whole rack after a power cut) to come back and link, short enough that a
/// node whose parent is gone for good is not read-only for long.
pub(crate) const RECOVERY_WAIT_MS: u64 = 30_000;

/// A node waiting to hear its own heads.
pub(crate) struct Recovery {
    since_ms: u64,
    /// The neighbour to hear from: the parent, or (`None`) any neighbour.
    ask: Option<NodeId>,
    /// The key to hand the node's logs over from, once recovered.
    previous_key: Option<SigningKey>,
}

impl<S: StateStore> Core<S> {
    /// Whether a node booting with this engine should wait before originating:
    /// it has a log of its own (so neighbours may hold more of it) and someone to
    /// ask.
    pub(super) fn needs_recovery(&self) -> bool {
        let own = self.engine.head(LogId { origin: self.me, scope: Scope::Federation }) > 0;
        let parent = self.engine.me().parent.is_some();
        own && (parent || self.engine.members().any(|m| m.parent == Some(self.me)))
    }

    /// Holds originating back until `settle_recovery` lets it go.
    pub(super) fn begin_recovery(&mut self, previous_key: Option<SigningKey>) {
        self.engine.set_recovering(true);
        let ask = self.engine.me().parent;
        self.recovery = Some(Recovery { since_ms: self.now_ms, ask, previous_key });
    }

    /// Ends the wait once the neighbour asked has said Hello (what it holds of
    /// this node's logs is then known to the engine, and on its way back), or
    /// once `RECOVERY_WAIT_MS` passed; then hands the logs over to a new key and
    /// joins, as a boot without recovery does at once.
    pub(super) fn settle_recovery(&mut self) {
        let Some(recovery) = &self.recovery else { return };
        let heard = self.engine.peers().any(|(id, greeted)| greeted && recovery.ask.is_none_or(|a| a == id));
        let timed_out = self.now_ms >= recovery.since_ms + RECOVERY_WAIT_MS;
        if !heard && !timed_out {
            return;
        }
        let Some(recovery) = self.recovery.take() else { return };
        self.engine.set_recovering(false);
        let behind = self.engine.own_behind();
        let detail = match (heard, behind.is_empty()) {
            (true, true) => "a neighbour holds no more of this node's logs than it does".to_string(),
            (true, false) => format!("catching up its own logs from its neighbours: {behind:?}"),
            (false, _) => format!(
                "no neighbour answered in {} s: its own store is taken as it is",
                RECOVERY_WAIT_MS / 1000
            ),
        };
        self.audit("node", None, "node.recovered", detail);
        if let Err(e) = self.hand_over_and_join(recovery.previous_key.as_ref()) {
            // Behind a neighbour's copy: the hand-over waits for the next restart,
            // and the engine refuses every origination until the logs are back.
            self.audit("node", None, "node.recovery_incomplete", e.to_string());
        }
    }

    /// When the wait ends at the latest (unix ms).
    pub(super) fn recovery_deadline(&self) -> Option<u64> {
        self.recovery.as_ref().map(|r| r.since_ms + RECOVERY_WAIT_MS)
    }

    /// What the API shows while a node is recovering.
    pub(super) fn recovery_status(&self) -> Option<RecoveryStatus> {
        let behind: Vec<BehindLog> = self
            .engine
            .own_behind()
            .into_iter()
            .map(|(scope, held, announced)| BehindLog { scope, held, announced })
            .collect();
        if self.recovery.is_none() && behind.is_empty() {
            return None;
        }
        Some(RecoveryStatus {
            waiting_since: self.recovery.as_ref().map(|r| r.since_ms / 1000),
            waiting_for: self.recovery.as_ref().and_then(|r| r.ask),
            behind,
        })
    }
}
