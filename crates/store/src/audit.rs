//! The node's hash-chained audit log: who did what, when, in one sled tree.
//!
//! Layout: one record per key, the key being the record's seq as 8 bytes big endian
//! (seqs start at 1 and are contiguous). The value is the record's 32-byte hash
//! followed by the serde_json bytes of its body (everything but the hash). The
//! hash is blake3 over [`DOMAIN`] followed by exactly those body bytes, and every
//! body carries `prev`, the hash of the record before it (all zeros for seq 1).
//! Changing, removing or reordering a record therefore breaks the chain at that
//! record, which [`AuditLog::verify`] reports.
//!
//! Durability: appends are not flushed here; the caller flushes the database.

use crate::StoreError;
use cascade_protocol::codec::CodecError;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// Domain separator of record hashes.
const DOMAIN: &[u8] = b"cascade/audit/v1\0";
/// Length of a record hash, stored in front of each record body.
const HASH_LEN: usize = 32;
/// The `prev` of the first record.
const ZERO_HASH: [u8; HASH_LEN] = [0; HASH_LEN];
/// Longest actor, org or kind kept, in bytes: longer values are cut (at a char
/// boundary) so that an oversized label never makes an audit append fail.
const MAX_LABEL_BYTES: usize = 256;
/// Longest detail kept, in bytes; longer details are cut like labels.
const MAX_DETAIL_BYTES: usize = 4096;
/// Records a query returns when the filter does not say.
const DEFAULT_QUERY_LIMIT: usize = 100;
/// Most records one query returns, whatever the filter asks for.
const MAX_QUERY_LIMIT: usize = 1000;

/// One event a caller appends to the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Who acted: "account:alice", "token:bootstrap", "peer:370100", "node", ...
    pub actor: String,
    /// The organization the event concerns, if any.
    pub org: Option<String>,
    /// What happened, dotted: "login.success", "delta.rejected", "peer.refused", ...
    pub kind: String,
    /// Free-form detail.
    pub detail: String,
}

/// One stored audit record, as returned by queries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Position in the log, from 1, contiguous.
    pub seq: u64,
    /// When the event was appended, in ms since the Unix epoch (the caller's clock).
    pub at_ms: u64,
    /// Who acted.
    pub actor: String,
    /// The organization the event concerns, if any.
    pub org: Option<String>,
    /// What happened.
    pub kind: String,
    /// Free-form detail.
    pub detail: String,
    /// Hex of the previous record's hash (all zeros for seq 1).
    pub prev: String,
    /// Hex of this record's hash, as stored.
    pub hash: String,
}

/// Which records a query returns. Every field is optional when deserialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditFilter {
    /// Only records with `at_ms >= since_ms`.
    pub since_ms: Option<u64>,
    /// Only records with `at_ms <= until_ms`.
    pub until_ms: Option<u64>,
    /// Only records of exactly this actor.
    pub actor: Option<String>,
    /// Only records of exactly this organization.
    pub org: Option<String>,
    /// Only records of this kind: exact, or a prefix when it ends with '.'
    /// ("delta." matches "delta.accepted" and "delta.rejected").
    pub kind: Option<String>,
    /// Only records with a seq above this one, oldest first (paging forward).
    /// Without it, a query returns the newest matching records.
    pub after_seq: Option<u64>,
    /// Most records returned: 100 by default, capped at 1000.
    pub limit: usize,
}

impl Default for AuditFilter {
    fn default() -> Self {
        AuditFilter {
            since_ms: None,
            until_ms: None,
            actor: None,
            org: None,
            kind: None,
            after_seq: None,
            limit: DEFAULT_QUERY_LIMIT,
        }
    }
}

impl AuditFilter {
    fn matches(&self, r: &AuditRecord) -> bool {
        self.since_ms.is_none_or(|t| r.at_ms >= t)
            && self.until_ms.is_none_or(|t| r.at_ms <= t)
            && self.actor.as_ref().is_none_or(|a| *a == r.actor)
            && self.org.as_ref().is_none_or(|o| r.org.as_ref() == Some(o))
            && self.kind.as_ref().is_none_or(|k| {
                if k.ends_with('.') {
                    r.kind.starts_with(k.as_str())
                } else {
                    *k == r.kind
                }
            })
    }
}

/// The outcome of walking the whole log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditVerification {
    /// How many records the log holds.
    pub records: u64,
    /// Whether the whole chain holds.
    pub ok: bool,
    /// The seq of the first record where the chain breaks (for a missing record,
    /// the missing seq).
    pub first_break: Option<u64>,
    /// Why the chain breaks there.
    pub reason: Option<String>,
}

/// What is stored for a record after its hash: everything but the hash.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    seq: u64,
    at_ms: u64,
    actor: String,
    org: Option<String>,
    kind: String,
    detail: String,
    prev: String,
}

/// The last record of the log: appends continue after it.
struct Head {
    seq: u64,
    /// The hash the next record must name as `prev`.
    hash: [u8; HASH_LEN],
}

struct Inner {
    tree: sled::Tree,
    /// Serializes appends.
    head: Mutex<Head>,
}

/// The hash-chained audit log of a node. Cheap to clone (shared state).
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

fn record_hash(body: &[u8]) -> [u8; HASH_LEN] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(DOMAIN);
    hasher.update(body);
    *hasher.finalize().as_bytes()
}

/// The hash a record stored as `value` hands on to its successor: its stored hash,
/// or, when the value is too short to hold one, the hash of the whole value (the
/// chain then breaks at that record anyway).
fn stored_hash(value: &[u8]) -> [u8; HASH_LEN] {
    value
        .get(..HASH_LEN)
        .and_then(|h| <[u8; HASH_LEN]>::try_from(h).ok())
        .unwrap_or_else(|| record_hash(value))
}

fn key_seq(key: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes)
}

fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// A decoded record, with the hash recomputed over its stored body.
struct Decoded {
    record: AuditRecord,
    stored: [u8; HASH_LEN],
    computed: [u8; HASH_LEN],
}

fn decode_record(seq: u64, value: &[u8]) -> Result<Decoded, String> {
    if value.len() < HASH_LEN {
        return Err(format!("record {seq} is {} bytes, too short", value.len()));
    }
    let (stored, body_bytes) = value.split_at(HASH_LEN);
    let stored = stored_hash(stored);
    let body: Body =
        serde_json::from_slice(body_bytes).map_err(|e| format!("record {seq} does not decode: {e}"))?;
    if body.seq != seq {
        return Err(format!("record {seq} says it is seq {}", body.seq));
    }
    let record = AuditRecord {
        seq,
        at_ms: body.at_ms,
        actor: body.actor,
        org: body.org,
        kind: body.kind,
        detail: body.detail,
        prev: body.prev,
        hash: super::hex(&stored),
    };
    Ok(Decoded { record, stored, computed: record_hash(body_bytes) })
}

impl AuditLog {
    /// Opens the log kept in `tree`, loading its head from the last record. A
    /// damaged last record does not stop the log: appends continue after the
    /// highest seq, and `verify` reports the damage.
    pub(crate) fn open(tree: sled::Tree) -> Result<AuditLog, StoreError> {
        let mut head = Head { seq: 0, hash: ZERO_HASH };
        for kv in tree.iter().rev() {
            let (key, value) = kv?;
            // A key that is not a seq is foreign: verify reports it, appends skip it.
            if let Some(seq) = key_seq(&key) {
                head = Head { seq, hash: stored_hash(&value) };
                break;
            }
        }
        Ok(AuditLog { inner: Arc::new(Inner { tree, head: Mutex::new(head) }) })
    }

    /// Appends `entries` (in order, all stamped `at_ms`) atomically after the
    /// current head. Over-long labels and details are cut to their limits. Not yet
    /// durable: the caller flushes the database.
    pub fn append(&self, at_ms: u64, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        // The head is only replaced after a successful write, so a poisoned lock
        // still guards a consistent head.
        let mut head = self.inner.head.lock().unwrap_or_else(|e| e.into_inner());
        let mut seq = head.seq;
        let mut prev = head.hash;
        let mut batch = sled::Batch::default();
        for entry in entries {
            seq = seq.checked_add(1).ok_or_else(|| StoreError::Corrupt {
                key: super::hex(&seq.to_be_bytes()),
                source: CodecError::Encode("audit seq exhausted".into()),
            })?;
            let body = Body {
                seq,
                at_ms,
                actor: cut(entry.actor, MAX_LABEL_BYTES),
                org: entry.org.map(|o| cut(o, MAX_LABEL_BYTES)),
                kind: cut(entry.kind, MAX_LABEL_BYTES),
                detail: cut(entry.detail, MAX_DETAIL_BYTES),
                prev: super::hex(&prev),
            };
            let body = serde_json::to_vec(&body).map_err(|e| CodecError::Encode(e.to_string()))?;
            let hash = record_hash(&body);
            let mut value = Vec::with_capacity(HASH_LEN + body.len());
            value.extend_from_slice(&hash);
            value.extend_from_slice(&body);
            batch.insert(&seq.to_be_bytes(), value);
            prev = hash;
        }
        self.inner.tree.apply_batch(batch)?;
        *head = Head { seq, hash: prev };
        Ok(())
    }

    /// How many records the log holds (its highest seq).
    pub fn len(&self) -> u64 {
        self.inner.head.lock().map_or_else(|p| p.into_inner().seq, |h| h.seq)
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records matching `filter`, in seq order (newest last), at most its limit
    /// (capped at 1000). With `after_seq`, the first matches after it; without, the
    /// newest matches. Records that do not decode are left out (`verify` reports
    /// them).
    pub fn query(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let limit = filter.limit.min(MAX_QUERY_LIMIT);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let decode = |kv: sled::Result<(sled::IVec, sled::IVec)>| -> Result<Option<AuditRecord>, StoreError> {
            let (key, value) = kv?;
            Ok(key_seq(&key)
                .and_then(|seq| decode_record(seq, &value).ok())
                .map(|d| d.record)
                .filter(|r| filter.matches(r)))
        };
        match filter.after_seq {
            Some(after) => {
                let Some(from) = after.checked_add(1) else { return Ok(out) };
                for kv in self.inner.tree.range(from.to_be_bytes()..) {
                    if let Some(r) = decode(kv)? {
                        out.push(r);
                        if out.len() == limit {
                            break;
                        }
                    }
                }
            }
            None => {
                for kv in self.inner.tree.iter().rev() {
                    if let Some(r) = decode(kv)? {
                        out.push(r);
                        if out.len() == limit {
                            break;
                        }
                    }
                }
                out.reverse();
            }
        }
        Ok(out)
    }

    /// Walks every record in order, recomputing the chain: reports the first
    /// record that does not decode, is missing, names the wrong `prev`, or whose
    /// stored hash does not match its body.
    pub fn verify(&self) -> Result<AuditVerification, StoreError> {
        let mut records = 0u64;
        let mut expected_seq = 1u64;
        let mut prev = ZERO_HASH;
        let mut broken: Option<(u64, String)> = None;
        for kv in self.inner.tree.iter() {
            let (key, value) = kv?;
            records += 1;
            if broken.is_some() {
                continue;
            }
            let Some(seq) = key_seq(&key) else {
                broken = Some((expected_seq, format!("malformed key {}", super::hex(&key))));
                continue;
            };
            if seq != expected_seq {
                broken = Some((expected_seq, format!("record {expected_seq} is missing (next is {seq})")));
                continue;
            }
            match decode_record(seq, &value) {
                Err(reason) => broken = Some((seq, reason)),
                Ok(d) if d.computed != d.stored => {
                    broken = Some((seq, format!("record {seq}: stored hash does not match its body")))
                }
                Ok(d) if d.record.prev != super::hex(&prev) => {
                    broken = Some((seq, format!("record {seq}: prev does not match record {}", seq - 1)))
                }
                Ok(d) => {
                    prev = d.stored;
                    expected_seq = seq.saturating_add(1);
                }
            }
        }
        let (first_break, reason) = match broken {
            Some((seq, reason)) => (Some(seq), Some(reason)),
            None => (None, None),
        };
        Ok(AuditVerification { records, ok: first_break.is_none(), first_break, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn entry(actor: &str, org: Option<&str>, kind: &str, detail: &str) -> AuditEntry {
        AuditEntry { actor: actor.into(), org: org.map(Into::into), kind: kind.into(), detail: detail.into() }
    }

    /// Five records: seqs 1-3 at 1000 ms, 4-5 at 2000 ms.
    fn fill(store: &Store) {
        store
            .audit()
            .append(
                1000,
                vec![
                    entry("account:alice", None, "login.success", "from 10.0.0.1"),
                    entry("account:bob", None, "login.failure", "bad password"),
                    entry("account:alice", Some("org-a"), "catalog.publish", "3/000001 v1"),
                ],
            )
            .unwrap();
        store
            .audit()
            .append(
                2000,
                vec![
                    entry("peer:370100", Some("org-a"), "delta.accepted", "370100/F 1..3"),
                    entry("peer:370200", Some("org-b"), "delta.rejected", "bad signature"),
                ],
            )
            .unwrap();
    }

    fn seqs(store: &Store, filter: AuditFilter) -> Vec<u64> {
        store.audit().query(&filter).unwrap().iter().map(|r| r.seq).collect()
    }

    fn flip(store: &Store, seq: u64, at: impl Fn(usize) -> usize) {
        let tree = store.db.open_tree("audit").unwrap();
        let mut value = tree.get(seq.to_be_bytes()).unwrap().unwrap().to_vec();
        let i = at(value.len());
        value[i] ^= 0x01;
        tree.insert(seq.to_be_bytes(), value).unwrap();
    }

    #[test]
    fn append_and_query_filters() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fill(&store);
        let all = store.audit().query(&AuditFilter::default()).unwrap();
        assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
        assert_eq!(all[2].actor, "account:alice");
        assert_eq!(all[2].org.as_deref(), Some("org-a"));
        assert_eq!(all[2].kind, "catalog.publish");
        assert_eq!(all[2].detail, "3/000001 v1");
        assert_eq!(all[3].at_ms, 2000);
        assert_eq!(all[0].prev, "0".repeat(64));
        for pair in all.windows(2) {
            assert_eq!(pair[1].prev, pair[0].hash);
        }

        let f = |g: fn(&mut AuditFilter)| {
            let mut filter = AuditFilter::default();
            g(&mut filter);
            seqs(&store, filter)
        };
        assert_eq!(f(|f| f.kind = Some("delta.".into())), vec![4, 5]);
        assert_eq!(f(|f| f.kind = Some("login.failure".into())), vec![2]);
        assert_eq!(f(|f| f.kind = Some("login".into())), Vec::<u64>::new());
        assert_eq!(f(|f| f.actor = Some("account:alice".into())), vec![1, 3]);
        assert_eq!(f(|f| f.org = Some("org-a".into())), vec![3, 4]);
        assert_eq!(f(|f| f.since_ms = Some(1500)), vec![4, 5]);
        assert_eq!(f(|f| f.until_ms = Some(1500)), vec![1, 2, 3]);
        assert_eq!(f(|f| f.limit = 2), vec![4, 5]);
        assert_eq!(f(|f| f.limit = 0), Vec::<u64>::new());
        assert_eq!(
            f(|f| {
                f.after_seq = Some(1);
                f.limit = 2
            }),
            vec![2, 3]
        );
        assert_eq!(
            f(|f| {
                f.after_seq = Some(2);
                f.actor = Some("account:alice".into())
            }),
            vec![3]
        );
        assert_eq!(f(|f| f.after_seq = Some(u64::MAX)), Vec::<u64>::new());

        let parsed: AuditFilter = serde_json::from_str(r#"{"kind":"delta."}"#).unwrap();
        assert_eq!(parsed.limit, DEFAULT_QUERY_LIMIT);
        assert_eq!(parsed.kind.as_deref(), Some("delta."));

        // Nothing to append is a no-op.
        store.audit().append(3000, vec![]).unwrap();
        assert_eq!(store.audit().verify().unwrap().records, 5);
    }

    #[test]
    fn the_limit_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let entries = (0..MAX_QUERY_LIMIT + 5).map(|i| entry("node", None, "x.y", &i.to_string())).collect();
        store.audit().append(1, entries).unwrap();
        let filter: AuditFilter = serde_json::from_str(r#"{"limit":5000}"#).unwrap();
        let got = store.audit().query(&filter).unwrap();
        assert_eq!(got.len(), MAX_QUERY_LIMIT);
        assert_eq!(got.last().unwrap().seq, MAX_QUERY_LIMIT as u64 + 5);
    }

    #[test]
    fn over_long_fields_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let long = "é".repeat(MAX_DETAIL_BYTES);
        store.audit().append(1, vec![entry(&long, Some(&long), &long, &long)]).unwrap();
        let r = &store.audit().query(&AuditFilter::default()).unwrap()[0];
        assert_eq!(r.actor.len(), MAX_LABEL_BYTES);
        assert_eq!(r.org.as_ref().unwrap().len(), MAX_LABEL_BYTES);
        assert_eq!(r.detail.len(), MAX_DETAIL_BYTES);
        assert!(store.audit().verify().unwrap().ok);
    }

    #[test]
    fn an_intact_log_verifies_and_continues_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let empty = store.audit().verify().unwrap();
            assert_eq!(empty, AuditVerification { records: 0, ok: true, first_break: None, reason: None });
            fill(&store);
            let v = store.audit().verify().unwrap();
            assert_eq!(v, AuditVerification { records: 5, ok: true, first_break: None, reason: None });
            store.db.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        store.audit().append(3000, vec![entry("node", None, "node.started", "")]).unwrap();
        let all = store.audit().query(&AuditFilter::default()).unwrap();
        assert_eq!(all.len(), 6);
        assert_eq!(all[5].seq, 6);
        assert_eq!(all[5].prev, all[4].hash);
        assert!(store.audit().verify().unwrap().ok);
    }

    #[test]
    fn a_flipped_byte_breaks_the_chain_at_that_record() {
        // A byte of the stored hash, of the body's middle, of the body's end.
        let positions: [fn(usize) -> usize; 3] =
            [|_| 3, |len| HASH_LEN + (len - HASH_LEN) / 2, |len| len - 2];
        for at in positions {
            let dir = tempfile::tempdir().unwrap();
            {
                let store = Store::open(dir.path()).unwrap();
                fill(&store);
                flip(&store, 3, at);
                let v = store.audit().verify().unwrap();
                assert!(!v.ok);
                assert_eq!(v.records, 5);
                assert_eq!(v.first_break, Some(3), "{v:?}");
                assert!(v.reason.is_some());
                // Queries still work; the damaged record may be left out.
                assert!(store.audit().query(&AuditFilter::default()).unwrap().len() >= 4);
                store.db.flush().unwrap();
            }
            let store = Store::open(dir.path()).unwrap();
            store.audit().append(3000, vec![entry("node", None, "node.started", "")]).unwrap();
            let last = store.audit().query(&AuditFilter { limit: 1, ..Default::default() }).unwrap();
            assert_eq!(last[0].seq, 6);
            let v = store.audit().verify().unwrap();
            assert_eq!((v.records, v.first_break), (6, Some(3)), "{v:?}");
        }
    }

    #[test]
    fn a_damaged_last_record_does_not_stop_appends() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            fill(&store);
            store.db.open_tree("audit").unwrap().insert(5u64.to_be_bytes(), &b"garbage"[..]).unwrap();
            store.db.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        store.audit().append(3000, vec![entry("node", None, "node.started", "")]).unwrap();
        let last = store.audit().query(&AuditFilter { limit: 1, ..Default::default() }).unwrap();
        assert_eq!(last[0].seq, 6);
        let v = store.audit().verify().unwrap();
        assert_eq!((v.records, v.ok, v.first_break), (6, false, Some(5)), "{v:?}");
    }

    #[test]
    fn a_removed_or_reordered_record_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fill(&store);
        let tree = store.db.open_tree("audit").unwrap();
        let two = tree.remove(2u64.to_be_bytes()).unwrap().unwrap();
        let v = store.audit().verify().unwrap();
        assert_eq!((v.records, v.first_break), (4, Some(2)), "{v:?}");

        // Record 2 put back under seq 3's key: its body names the wrong seq.
        tree.insert(2u64.to_be_bytes(), tree.get(3u64.to_be_bytes()).unwrap().unwrap()).unwrap();
        tree.insert(3u64.to_be_bytes(), two).unwrap();
        let v = store.audit().verify().unwrap();
        assert_eq!((v.records, v.first_break), (5, Some(2)), "{v:?}");
    }
}
