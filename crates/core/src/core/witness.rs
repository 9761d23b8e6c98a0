//! Witnessed audit: the node signs its audit log's head into its federation log
//! (an `AuditCheckpoint` delta), which every node holding that log keeps. A
//! later audit log shorter than a checkpoint, or different at its record, was
//! truncated or rewritten: the engine refuses to sign a checkpoint that goes
//! back (as every witness would refuse it), and `/api/v1/audit/verify` checks
//! the stored log against the latest checkpoint.

use super::Core;
use crate::command::{CommandError, Reply};
use crate::store::StateStore;
use cascade_protocol::{AuditCheckpoint, DeltaBody, EngineError, RejectReason, Scope};

/// How often a growing audit log is checkpointed: each checkpoint is a delta
/// every node keeps, so a federation of 365 nodes makes one every 1.6 s at most.
pub(crate) const AUDIT_CHECKPOINT_MS: u64 = 600_000;

/// Fewest milliseconds between two checkpoints asked for by hand (an auditor's
/// script cannot make the node flood the federation with them).
pub(crate) const MIN_CHECKPOINT_GAP_MS: u64 = 10_000;

/// When audit checkpoints were and are next made.
#[derive(Debug, Default)]
pub(crate) struct Checkpointing {
    /// The last one made or tried by hand or on time (unix ms).
    tried_ms: Option<u64>,
    /// When the next one is due on time (unix ms).
    due_ms: u64,
    /// The records the last one covered.
    records: u64,
}

impl Checkpointing {
    /// The first due a period after boot, after the latest `own` checkpoint.
    pub(crate) fn at_boot(now_ms: u64, own: Option<AuditCheckpoint>) -> Checkpointing {
        Checkpointing {
            tried_ms: None,
            due_ms: now_ms + AUDIT_CHECKPOINT_MS,
            records: own.map_or(0, |c| c.records),
        }
    }

    fn tried(&mut self, now_ms: u64) {
        self.tried_ms = Some(now_ms);
        self.due_ms = now_ms + AUDIT_CHECKPOINT_MS;
    }
}

impl<S: StateStore> Core<S> {
    /// Signs the audit log's head into the federation log now.
    pub(crate) fn checkpoint_audit(&mut self) -> Result<Reply, CommandError> {
        if let Some(tried) = self.checkpointing.tried_ms.filter(|t| self.now_ms < t + MIN_CHECKPOINT_GAP_MS) {
            return Err(CommandError::TooSoon {
                what: format!("one audit checkpoint per {} s", MIN_CHECKPOINT_GAP_MS / 1000),
                retry_after_s: (tried + MIN_CHECKPOINT_GAP_MS - self.now_ms).div_ceil(1000),
            });
        }
        // Never sign over a log that no longer holds what was witnessed.
        if let Some(last) = self.engine.checkpoint(self.me) {
            let why = match self.store.audit_hash(last.records)? {
                Some(hash) if hash == last.head => None,
                Some(_) => Some(format!("audit record {} is not the one witnessed: rewritten", last.records)),
                None => Some(format!("audit record {} was witnessed and is gone: truncated", last.records)),
            };
            if let Some(why) = why {
                self.checkpointing.tried(self.now_ms);
                self.audit("node", None, "audit.tampered", why.clone());
                return Err(CommandError::Conflict(why));
            }
        }
        let checkpoint =
            AuditCheckpoint { records: self.audit.len(), head: self.audit.head(), at_ms: self.now_ms };
        let mut actions = Vec::new();
        let result =
            self.engine.originate(Scope::Federation, DeltaBody::AuditCheckpoint(checkpoint), &mut actions);
        self.take(actions);
        match result {
            Ok(delta) => {
                self.checkpointing.tried(self.now_ms);
                self.checkpointing.records = checkpoint.records;
                let detail = format!("records 1..={} witnessed at #{}", checkpoint.records, delta.seq);
                self.audit("node", None, "audit.checkpoint", detail);
                Ok(Reply::Checkpoint { checkpoint, delta_seq: delta.seq })
            }
            Err(EngineError::Refused(RejectReason::Invalid(why))) => {
                // Behind its own witnessed checkpoint: the log lost or changed records.
                self.checkpointing.tried(self.now_ms);
                self.audit("node", None, "audit.tampered", why.clone());
                Err(CommandError::Conflict(why))
            }
            Err(e) => Err(Self::refused(e, "audit")),
        }
    }

    /// On a tick: a checkpoint when one is due and the log grew since the last
    /// (by more than that checkpoint's own record).
    pub(super) fn checkpoint_if_due(&mut self) {
        let Checkpointing { due_ms, records, .. } = self.checkpointing;
        if self.now_ms < due_ms {
            return;
        }
        // A checkpoint's own audit record follows the records it covers.
        let grew = self.audit.len() > records + u64::from(records > 0);
        if grew && !self.engine.recovering() {
            // Due on time, whatever the last one by hand; a refusal is audited
            // where it happens.
            self.checkpointing.tried_ms = None;
            let _ = self.checkpoint_audit();
        }
        // Whatever happened, the next is a period away (never a tick loop).
        self.checkpointing.due_ms = self.now_ms + AUDIT_CHECKPOINT_MS;
    }

    /// When the next checkpoint is due (unix ms).
    pub(super) fn checkpoint_deadline(&self) -> u64 {
        self.checkpointing.due_ms
    }
}
