//! The audit log's record format and chain: who did what, when. The core is its
//! only writer — it seals each record into the chain inside the group commit that
//! applies the change the record describes; stores keep the sealed bytes.
//!
//! A record is stored as its 32-byte hash followed by the JSON bytes of its body
//! (everything but the hash). The hash is blake3 over [`DOMAIN`] followed by
//! exactly those body bytes, and every body carries `prev`, the hash of the record
//! before it (all zeros for seq 1). Changing, removing or reordering a record
//! breaks the chain at that record, which [`Verifier`] reports.

use cascade_protocol::limits::{MAX_AUDIT_DETAIL_BYTES, MAX_AUDIT_LABEL_BYTES};
use serde::{Deserialize, Serialize};

/// Domain separator of record hashes.
const DOMAIN: &[u8] = b"cascade/audit/v1\0";
/// Length of a record hash, stored in front of each record body.
pub const HASH_LEN: usize = 32;
/// The `prev` of the first record.
const ZERO_HASH: [u8; HASH_LEN] = [0; HASH_LEN];

/// One event to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Who acted: "account:alice", "token:bootstrap", "federation", "node", ...
    pub actor: String,
    /// The organization the event concerns, if any.
    pub org: Option<String>,
    /// What happened, dotted: "login.success", "delta.rejected", "peer.refused", ...
    pub kind: String,
    /// Free-form detail.
    pub detail: String,
}

/// A record sealed into the chain: its seq and the exact bytes to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecord {
    /// Its position, from 1, contiguous.
    pub seq: u64,
    /// Hash followed by body.
    pub value: Vec<u8>,
    /// What a store indexes it by.
    pub index: IndexFields,
}

/// The fields of a record a store indexes (as sealed: cut to their limits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexFields {
    /// When.
    pub at_ms: u64,
    /// Who.
    pub actor: String,
    /// For which organization.
    pub org: Option<String>,
    /// What.
    pub kind: String,
}

/// One stored audit record, as queries return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Position in the log, from 1, contiguous.
    pub seq: u64,
    /// When the event was recorded, in ms since the Unix epoch (the core's clock).
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

fn record_hash(body: &[u8]) -> [u8; HASH_LEN] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(DOMAIN);
    hasher.update(body);
    *hasher.finalize().as_bytes()
}

pub(crate) fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The head of the chain: appends continue after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chain {
    seq: u64,
    hash: [u8; HASH_LEN],
    /// The time of the last record sealed since boot: records never go back in
    /// time, so a store can find a time by bisecting seqs.
    at_ms: u64,
}

impl Chain {
    /// A chain continuing after `head` (seq and stored hash of the last record).
    pub fn after(head: Option<(u64, [u8; HASH_LEN])>) -> Chain {
        match head {
            Some((seq, hash)) => Chain { seq, hash, at_ms: 0 },
            None => Chain { seq: 0, hash: ZERO_HASH, at_ms: 0 },
        }
    }

    /// The same chain, stamping no record before `at_ms` (the time of the last
    /// record stored, read back at boot: a clock set back across a restart cannot
    /// break the log's time order).
    pub fn not_before(self, at_ms: u64) -> Chain {
        Chain { at_ms: self.at_ms.max(at_ms), ..self }
    }

    /// How many records the chain holds.
    pub fn len(&self) -> u64 {
        self.seq
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.seq == 0
    }

    /// The stored hash of the last record (zeros when there is none).
    pub fn head(&self) -> [u8; HASH_LEN] {
        self.hash
    }

    /// Seals `event` as the next record, stamped `at_ms` (or the time of the record
    /// before, if the clock went back). Over-long labels and details are cut to
    /// their limits, so sealing never fails on content.
    pub fn seal(&mut self, at_ms: u64, event: AuditEvent) -> SealedRecord {
        let seq = self.seq + 1;
        let at_ms = at_ms.max(self.at_ms);
        let body = Body {
            seq,
            at_ms,
            actor: cut(event.actor, MAX_AUDIT_LABEL_BYTES),
            org: event.org.map(|o| cut(o, MAX_AUDIT_LABEL_BYTES)),
            kind: cut(event.kind, MAX_AUDIT_LABEL_BYTES),
            detail: cut(event.detail, MAX_AUDIT_DETAIL_BYTES),
            prev: hex::encode(self.hash),
        };
        // A struct of strings and integers always serializes.
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let hash = record_hash(&bytes);
        let mut value = Vec::with_capacity(HASH_LEN + bytes.len());
        value.extend_from_slice(&hash);
        value.extend_from_slice(&bytes);
        *self = Chain { seq, hash, at_ms };
        let index = IndexFields { at_ms, actor: body.actor, org: body.org, kind: body.kind };
        SealedRecord { seq, value, index }
    }
}

/// The hash a record stored as `value` hands on to its successor: its stored hash,
/// or, when the value is too short to hold one, the hash of the whole value (the
/// chain then breaks at that record anyway).
pub fn stored_hash(value: &[u8]) -> [u8; HASH_LEN] {
    value
        .get(..HASH_LEN)
        .and_then(|h| <[u8; HASH_LEN]>::try_from(h).ok())
        .unwrap_or_else(|| record_hash(value))
}

/// A record decoded from its stored bytes, with the hash recomputed over its body.
pub struct Decoded {
    /// The record.
    pub record: AuditRecord,
    stored: [u8; HASH_LEN],
    computed: [u8; HASH_LEN],
}

/// Decodes the record stored at `seq`.
pub fn decode(seq: u64, value: &[u8]) -> Result<Decoded, String> {
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
        hash: hex::encode(stored),
    };
    Ok(Decoded { record, stored, computed: record_hash(body_bytes) })
}

/// Which records a query returns. Every field is optional when deserialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default, deny_unknown_fields)]
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
    /// ("delta." matches "delta.rejected").
    pub kind: Option<String>,
    /// Only records with a seq above this one, oldest first (paging forward).
    /// Without it, a query returns the newest matching records.
    pub after_seq: Option<u64>,
    /// Where the previous page left off: its `next` (the same filter otherwise).
    pub cursor: Option<String>,
    /// Most records returned: 100 by default, capped at `limits::MAX_LIST`.
    pub limit: usize,
}

/// Which way a query walks the log, and from where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    /// Oldest first, from the seq after this one.
    Forward {
        /// Records up to this seq are skipped.
        after: u64,
    },
    /// Newest first, from the seq before this one (then returned oldest first).
    Backward {
        /// Records from this seq on are skipped.
        before: u64,
    },
}

impl Walk {
    /// The cursor that continues a walk after `seq`.
    pub fn cursor_after(self, seq: u64) -> String {
        match self {
            Walk::Forward { .. } => format!("a{seq}"),
            Walk::Backward { .. } => format!("b{seq}"),
        }
    }
}

/// A page of a query: the records, and the cursor of the next page when the
/// query stopped before the end (a full page, or its cap on examined records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditPage {
    /// The records, oldest first.
    pub records: Vec<AuditRecord>,
    /// Pass as `cursor` to continue; none when the log holds no more matches.
    pub next: Option<String>,
}

/// Records a query returns when the filter does not say.
const DEFAULT_QUERY_LIMIT: usize = 100;

impl Default for AuditFilter {
    fn default() -> Self {
        AuditFilter {
            since_ms: None,
            until_ms: None,
            actor: None,
            org: None,
            kind: None,
            after_seq: None,
            cursor: None,
            limit: DEFAULT_QUERY_LIMIT,
        }
    }
}

impl AuditFilter {
    /// Which way to walk: a cursor wins over `after_seq`; neither is newest first.
    pub fn walk(&self) -> Result<Walk, String> {
        let bad = || format!("cursor {:?} is not one this node gave", self.cursor.as_deref().unwrap_or(""));
        match self.cursor.as_deref() {
            Some(c) => {
                let seq = c.get(1..).and_then(|n| n.parse::<u64>().ok()).ok_or_else(bad)?;
                match c.as_bytes().first() {
                    Some(b'a') => Ok(Walk::Forward { after: seq }),
                    Some(b'b') => Ok(Walk::Backward { before: seq }),
                    _ => Err(bad()),
                }
            }
            None => Ok(match self.after_seq {
                Some(after) => Walk::Forward { after },
                None => Walk::Backward { before: u64::MAX },
            }),
        }
    }

    /// Whether `r` passes the filter (paging aside).
    pub fn matches(&self, r: &AuditRecord) -> bool {
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
    /// The check against the latest checkpoint this node signed into its
    /// federation log (kept by every node holding that log), if there is one.
    pub witnessed: Option<WitnessedCheck>,
}

/// The stored log against a witnessed checkpoint: a shorter log was truncated,
/// a different hash at the checkpoint's record means the history was rewritten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WitnessedCheck {
    /// Records the checkpoint covers.
    pub records: u64,
    /// When it was made (unix s).
    pub at: u64,
    /// Whether the stored log still holds exactly those records.
    pub ok: bool,
    /// Why not.
    pub reason: Option<String>,
}

/// Walks stored records in key order and reports the first one that does not
/// decode, is missing, names the wrong `prev`, or whose hash does not match.
#[derive(Debug)]
pub struct Verifier {
    records: u64,
    expected_seq: u64,
    prev: [u8; HASH_LEN],
    broken: Option<(u64, String)>,
    /// The witnessed checkpoint, and the stored hash found at its record.
    witnessed: Option<(cascade_protocol::AuditCheckpoint, Option<[u8; HASH_LEN]>)>,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier { records: 0, expected_seq: 1, prev: ZERO_HASH, broken: None, witnessed: None }
    }
}

impl Verifier {
    /// A verifier at the start of the log.
    pub fn new() -> Verifier {
        Verifier::default()
    }

    /// A verifier continuing after record `seq` whose stored hash is `hash`.
    pub fn resume(seq: u64, hash: [u8; HASH_LEN]) -> Verifier {
        Verifier { records: seq, expected_seq: seq + 1, prev: hash, broken: None, witnessed: None }
    }

    /// Also checks the log against `checkpoint`.
    pub fn against(self, checkpoint: Option<cascade_protocol::AuditCheckpoint>) -> Verifier {
        Verifier { witnessed: checkpoint.map(|c| (c, None)), ..self }
    }

    /// Feeds the next stored record (`seq` is `None` when its key is malformed).
    pub fn next(&mut self, seq: Option<u64>, value: &[u8]) {
        self.records += 1;
        if let Some((checkpoint, found)) = &mut self.witnessed {
            if seq == Some(checkpoint.records) {
                *found = Some(stored_hash(value));
            }
        }
        if self.broken.is_some() {
            return;
        }
        let expected = self.expected_seq;
        let Some(seq) = seq else {
            self.broken = Some((expected, "malformed key".into()));
            return;
        };
        if seq != expected {
            self.broken = Some((expected, format!("record {expected} is missing (next is {seq})")));
            return;
        }
        match decode(seq, value) {
            Err(reason) => self.broken = Some((seq, reason)),
            Ok(d) if d.computed != d.stored => {
                self.broken = Some((seq, format!("record {seq}: stored hash does not match its body")))
            }
            Ok(d) if d.record.prev != hex::encode(self.prev) => {
                self.broken = Some((seq, format!("record {seq}: prev does not match record {}", seq - 1)))
            }
            Ok(d) => {
                self.prev = d.stored;
                self.expected_seq = seq.saturating_add(1);
            }
        }
    }

    /// The verdict.
    pub fn finish(self) -> AuditVerification {
        let (first_break, reason) = match self.broken {
            Some((seq, reason)) => (Some(seq), Some(reason)),
            None => (None, None),
        };
        let witnessed = self.witnessed.map(|(checkpoint, found)| {
            let reason = match found {
                None => Some(format!(
                    "the log holds {} records; the checkpoint witnessed {}: its tail was cut",
                    self.records, checkpoint.records
                )),
                Some(hash) if hash != checkpoint.head => Some(format!(
                    "record {} is not the one witnessed: the history was rewritten",
                    checkpoint.records
                )),
                Some(_) => None,
            };
            WitnessedCheck {
                records: checkpoint.records,
                at: checkpoint.at_ms / 1000,
                ok: reason.is_none(),
                reason,
            }
        });
        let ok = first_break.is_none() && witnessed.as_ref().is_none_or(|w| w.ok);
        AuditVerification { records: self.records, ok, first_break, reason, witnessed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str) -> AuditEvent {
        AuditEvent { actor: "account:alice".into(), org: None, kind: kind.into(), detail: "d".into() }
    }

    fn verify(records: &[(Option<u64>, Vec<u8>)]) -> AuditVerification {
        let mut v = Verifier::new();
        for (seq, value) in records {
            v.next(*seq, value);
        }
        v.finish()
    }

    #[test]
    fn a_sealed_chain_verifies_and_any_change_breaks_it_where_it_happened() {
        let mut chain = Chain::after(None);
        let sealed: Vec<SealedRecord> =
            (0..5).map(|i| chain.seal(1000 + i, event("login.success"))).collect();
        assert_eq!(chain.len(), 5);
        let good: Vec<(Option<u64>, Vec<u8>)> =
            sealed.iter().map(|s| (Some(s.seq), s.value.clone())).collect();
        assert!(verify(&good).ok);
        let decoded = decode(3, &good[2].1).unwrap().record;
        assert_eq!((decoded.seq, decoded.at_ms, decoded.kind.as_str()), (3, 1002, "login.success"));

        let mut flipped = good.clone();
        let middle = flipped[2].1.len() / 2;
        flipped[2].1[middle] ^= 1;
        assert_eq!(verify(&flipped).first_break, Some(3));
        let mut missing = good.clone();
        missing.remove(1);
        assert_eq!(verify(&missing).first_break, Some(2));
        let mut swapped = good.clone();
        swapped.swap(3, 4);
        assert_eq!(verify(&swapped).first_break, Some(4));
        // Resealing a changed record breaks the next record's prev.
        let mut other = Chain::after(None);
        let mut resealed = good.clone();
        for (i, s) in (0..3)
            .map(|i| other.seal(1000 + i, event(if i == 1 { "x" } else { "login.success" })))
            .enumerate()
        {
            resealed[i].1 = s.value;
        }
        assert_eq!(verify(&resealed).first_break, Some(4));
    }

    #[test]
    fn labels_are_cut_not_refused_and_the_chain_continues_after_a_head() {
        let mut chain = Chain::after(None);
        let long =
            AuditEvent { actor: "é".repeat(1000), org: None, kind: "k".into(), detail: "x".repeat(10_000) };
        let first = chain.seal(1, long);
        let record = decode(1, &first.value).unwrap().record;
        assert!(record.actor.len() <= MAX_AUDIT_LABEL_BYTES && record.detail.len() == MAX_AUDIT_DETAIL_BYTES);
        let mut resumed = Chain::after(Some((1, stored_hash(&first.value))));
        let second = resumed.seal(2, event("k"));
        assert!(verify(&[(Some(1), first.value), (Some(2), second.value)]).ok);
    }

    #[test]
    fn a_chain_resumed_after_a_restart_never_stamps_before_its_last_record() {
        let mut chain = Chain::after(Some((7, [1; HASH_LEN]))).not_before(5_000);
        let sealed = chain.seal(1_000, event("k")); // the clock was set back
        assert_eq!(decode(8, &sealed.value).unwrap().record.at_ms, 5_000);
        assert_eq!(chain.seal(9_000, event("k")).index.at_ms, 9_000);
    }
}
