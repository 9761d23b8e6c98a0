//! Events counted, not each written: a stream of like events (the same actor, kind
//! and reason) writes one audit record when it starts and one summary when its
//! window closes, whatever its rate. A peer or a stranger can cost the audit log at
//! most two records per window per tally, and there are at most `MAX_TALLIES` of
//! each kind (so a flood of one kind never pushes another's actors into the
//! overflow tally).

use cascade_protocol::limits::{AUDIT_TALLY_MS, MAX_AUDIT_LABEL_BYTES, MAX_TALLIES};
use std::collections::{BTreeMap, HashMap};

/// What identifies a stream of like events.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    actor: String,
    kind: &'static str,
    reason: String,
}

/// An open window.
#[derive(Debug)]
struct Window {
    since_ms: u64,
    /// Events after the first, in this window.
    more: u64,
    /// The organization the actor acts for, if any.
    org: Option<String>,
}

/// An audit record to write: actor, organization, kind, detail.
pub(crate) type Record = (String, Option<String>, &'static str, String);

/// The open windows.
#[derive(Debug, Default)]
pub(crate) struct Tallies {
    windows: BTreeMap<Key, Window>,
    /// Open windows by kind.
    per_kind: HashMap<&'static str, usize>,
}

/// The actor events beyond `MAX_TALLIES` of a kind are counted under (the first
/// record of the overflow names the actor that opened it).
const OVERFLOW: &str = "others";

impl Tallies {
    /// Counts one event at `now_ms`; returns the record to write now when it opens a
    /// window (the first of its kind for a while), else nothing.
    pub(crate) fn count(
        &mut self,
        now_ms: u64,
        actor: String,
        org: Option<String>,
        kind: &'static str,
        reason: &str,
        detail: String,
    ) -> Option<Record> {
        // The actor may come from a stranger: kept as the audit record will keep
        // it, so a window costs at most a label's bytes.
        let actor = crate::audit::cut(actor, MAX_AUDIT_LABEL_BYTES);
        let reason = crate::audit::cut(reason.to_string(), MAX_AUDIT_LABEL_BYTES);
        let mut key = Key { actor, kind, reason };
        let mut detail = detail;
        let open = self.per_kind.get(kind).copied().unwrap_or(0);
        if !self.windows.contains_key(&key) && open >= MAX_TALLIES {
            detail = format!("{}: {detail}", key.actor);
            key.actor = OVERFLOW.into();
        }
        match self.windows.get_mut(&key) {
            Some(window) => {
                window.more += 1;
                None
            }
            None => {
                let record = (key.actor.clone(), org.clone(), kind, detail);
                self.windows.insert(key, Window { since_ms: now_ms, more: 0, org });
                *self.per_kind.entry(kind).or_default() += 1;
                Some(record)
            }
        }
    }

    /// Closes the windows older than `AUDIT_TALLY_MS`: a summary for each that
    /// counted more than its first event.
    pub(crate) fn expire(&mut self, now_ms: u64) -> Vec<Record> {
        self.close(now_ms, false)
    }

    /// Closes every window, old or not (the node is stopping).
    pub(crate) fn close_all(&mut self, now_ms: u64) -> Vec<Record> {
        self.close(now_ms, true)
    }

    fn close(&mut self, now_ms: u64, all: bool) -> Vec<Record> {
        let mut out = Vec::new();
        let per_kind = &mut self.per_kind;
        self.windows.retain(|key, window| {
            if !all && now_ms < window.since_ms + AUDIT_TALLY_MS {
                return true;
            }
            if let Some(n) = per_kind.get_mut(key.kind) {
                *n = n.saturating_sub(1);
            }
            if window.more > 0 {
                let seconds = now_ms.saturating_sub(window.since_ms) / 1000;
                let detail = format!("{} more ({}) in the last {seconds} s", window.more, key.reason);
                out.push((key.actor.clone(), window.org.clone(), key.kind, detail));
            }
            false
        });
        out
    }

    /// When the oldest window closes.
    pub(crate) fn deadline(&self) -> Option<u64> {
        self.windows.values().map(|w| w.since_ms + AUDIT_TALLY_MS).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_writes_two_records_per_window_and_tallies_are_bounded() {
        let mut t = Tallies::default();
        let first = t.count(0, "peer:a".into(), None, "peer.refused", "revoked", "x".into());
        assert!(first.is_some());
        for i in 1..1000 {
            assert!(t.count(i, "peer:a".into(), None, "peer.refused", "revoked", "x".into()).is_none());
        }
        assert_eq!(t.deadline(), Some(AUDIT_TALLY_MS));
        assert!(t.expire(AUDIT_TALLY_MS - 1).is_empty());
        let summary = t.expire(AUDIT_TALLY_MS);
        assert_eq!(summary.len(), 1);
        assert!(summary[0].3.starts_with("999 more (revoked)"), "{:?}", summary);
        assert_eq!(t.deadline(), None);
        // Many actors: at most MAX_TALLIES windows, the rest counted together.
        for i in 0..(MAX_TALLIES + 50) {
            t.count(0, format!("peer:{i}"), None, "peer.refused", "revoked", String::new());
        }
        assert_eq!(t.windows.len(), MAX_TALLIES + 1, "one more window counts all the others");
        // Another kind is not crowded out, and its actor keeps its name.
        let denied = t.count(0, "account:li".into(), Some("org".into()), "access.denied", "Read", "x".into());
        assert_eq!(denied, Some(("account:li".into(), Some("org".into()), "access.denied", "x".into())));
        // An overflow's first record names the actor that opened it.
        let t2 = &mut Tallies::default();
        for i in 0..MAX_TALLIES {
            t2.count(0, format!("peer:{i}"), None, "peer.refused", "revoked", String::new());
        }
        let over = t2.count(0, "peer:late".into(), None, "peer.refused", "revoked", "why".into());
        assert_eq!(over, Some(("others".into(), None, "peer.refused", "peer:late: why".into())));
    }

    #[test]
    fn stopping_closes_every_window_with_its_summary() {
        let mut t = Tallies::default();
        for i in 0..3 {
            t.count(i, "peer:a".into(), None, "peer.refused", "revoked", "x".into());
        }
        t.count(5, "peer:b".into(), None, "peer.refused", "revoked", "x".into());
        let summaries = t.close_all(10);
        assert_eq!(summaries.len(), 1, "only a window that counted more says so: {summaries:?}");
        assert!(summaries[0].3.starts_with("2 more (revoked)"), "{summaries:?}");
        assert_eq!(t.deadline(), None);
    }
}
