//! Fork-free recovery after a power loss. sled's flush survives a killed process
//! but not necessarily a power cut, so a node can come back holding fewer of its
//! own deltas than its neighbours do. Were it to originate at once, it would sign
//! a second delta at a position its neighbours hold another one at, and be
//! flagged as forked. So a node that restarts with logs of its own originates
//! nothing until it has heard from the neighbours that hold them: its parent
//! (which sees all of a city's logs) and, for a node with children, a child
//! (only they see a province's province-scoped log); their Hellos say how far
//! its logs go, and anything it lacks comes back by ordinary sync, checked like
//! any delta. The engine refuses to originate while any own log is behind a
//! neighbour's copy, and a key hand-over waits until none is.

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
    /// Its parent, whose Hello it waits for.
    parent: Option<NodeId>,
    /// Whether it also waits for a child's Hello.
    child: bool,
}

/// The hand-over to a new key and the Join a boot does, put off until the
/// node's own logs are whole again (signing into them earlier would fork them).
pub(crate) struct HandOver(Option<SigningKey>);

impl<S: StateStore> Core<S> {
    /// Whether a node booting with this engine should wait before originating:
    /// it has a log of its own (so neighbours may hold more of it) and someone to
    /// ask.
    pub(super) fn needs_recovery(&self) -> bool {
        let own = self.engine.head(LogId { origin: self.me, scope: Scope::Federation }) > 0;
        own && (self.engine.me().parent.is_some() || self.has_children())
    }

    fn has_children(&self) -> bool {
        self.engine.members().any(|m| m.parent == Some(self.me))
    }

    /// Holds originating back until `settle_recovery` lets it go.
    pub(super) fn begin_recovery(&mut self, previous_key: Option<SigningKey>) {
        self.engine.set_recovering(true);
        let (parent, child) = (self.engine.me().parent, self.has_children());
        self.recovery = Some(Recovery { since_ms: self.now_ms, parent, child });
        self.hand_over = Some(HandOver(previous_key));
    }

    /// Ends the wait once the neighbours asked have said Hello (what they hold
    /// of this node's logs is then known to the engine, and on its way back), or
    /// once `RECOVERY_WAIT_MS` passed; then, once no own log is behind a
    /// neighbour's copy, hands the logs over to a new key and joins, as a boot
    /// without recovery does at once.
    pub(super) fn settle_recovery(&mut self) {
        if let Some(recovery) = &self.recovery {
            let greeted: Vec<NodeId> = self.engine.peers().filter(|(_, g)| *g).map(|(id, _)| id).collect();
            let parent = recovery.parent.is_none_or(|p| greeted.contains(&p));
            let is_child = |id: &NodeId| self.engine.member(*id).is_some_and(|m| m.parent == Some(self.me));
            let child = !recovery.child || greeted.iter().any(is_child);
            let heard = parent && child;
            if !heard && self.now_ms < recovery.since_ms + RECOVERY_WAIT_MS {
                return;
            }
            self.recovery = None;
            self.engine.set_recovering(false);
            let behind = self.engine.own_behind();
            let detail = match (heard, behind.is_empty()) {
                (true, true) => "no neighbour holds more of this node's logs than it does".to_string(),
                (true, false) => format!("catching up its own logs from its neighbours: {behind:?}"),
                (false, _) => {
                    format!(
                        "no neighbour answered in {} s: its own store is taken as it is",
                        RECOVERY_WAIT_MS / 1000
                    )
                }
            };
            self.audit("node", None, "node.recovered", detail);
        }
        if self.hand_over.is_none() || !self.engine.own_behind().is_empty() {
            return;
        }
        let Some(HandOver(previous_key)) = self.hand_over.take() else { return };
        if let Err(e) = self.hand_over_and_join(previous_key.as_ref()) {
            // The engine refuses every origination into a log still signed with
            // the old key, so nothing is signed wrongly meanwhile.
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
            waiting_for: self.recovery.as_ref().and_then(|r| r.parent),
            waiting_for_child: self.recovery.as_ref().is_some_and(|r| r.child),
            behind,
        })
    }
}
