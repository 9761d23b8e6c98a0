//! The audit log: records by seq (`A`), and index rows (`X`) by kind, by the kind's
//! first segment, by actor and by organization, so that a query reads only what
//! could match. Times need no index: records never go back in time (the core's
//! chain says so), so the seqs of a time range are found by bisection.

use crate::keys::{audit_key, seq_of, AUDIT, AUDIT_INDEX, AUDIT_KEY_LEN};
use crate::{backend, Store};
use cascade_core::audit::{self, AuditFilter, AuditPage, AuditRecord, AuditVerification, IndexFields, Walk};
use cascade_core::StoreError;
use cascade_protocol::limits::{MAX_AUDIT_EXAMINED, MAX_LIST};

/// Index tags: which field an index row is for.
const BY_KIND: u8 = b'k';
const BY_GROUP: u8 = b'g';
const BY_ACTOR: u8 = b'a';
const BY_ORG: u8 = b'o';

/// The rows before the seq: prefix, tag, value length (2), value.
fn index_prefix(tag: u8, value: &str) -> Vec<u8> {
    // Values are audit labels, cut to `MAX_AUDIT_LABEL_BYTES` when sealed.
    let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
    let mut key = vec![AUDIT_INDEX, tag];
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(&value.as_bytes()[..usize::from(len)]);
    key
}

fn index_key(tag: u8, value: &str, seq: u64) -> Vec<u8> {
    let mut key = index_prefix(tag, value);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The first segment of a kind ("catalog" of "catalog.publish").
fn group_of(kind: &str) -> &str {
    kind.split('.').next().unwrap_or(kind)
}

/// The index rows of one record.
pub(crate) fn index_rows(seq: u64, fields: &IndexFields) -> Vec<Vec<u8>> {
    let mut rows = vec![
        index_key(BY_KIND, &fields.kind, seq),
        index_key(BY_GROUP, group_of(&fields.kind), seq),
        index_key(BY_ACTOR, &fields.actor, seq),
    ];
    if let Some(org) = &fields.org {
        rows.push(index_key(BY_ORG, org, seq));
    }
    rows
}

/// The index a query walks: the most selective its filter allows.
fn plan(filter: &AuditFilter) -> Option<Vec<u8>> {
    if let Some(kind) = filter.kind.as_deref().filter(|k| !k.ends_with('.')) {
        return Some(index_prefix(BY_KIND, kind));
    }
    if let Some(actor) = &filter.actor {
        return Some(index_prefix(BY_ACTOR, actor));
    }
    if let Some(org) = &filter.org {
        return Some(index_prefix(BY_ORG, org));
    }
    filter.kind.as_deref().map(|prefix| index_prefix(BY_GROUP, group_of(prefix)))
}

impl Store {
    /// The seq of the newest record (0 when the log is empty).
    fn audit_head(&self) -> Result<u64, StoreError> {
        match self.db.scan_prefix([AUDIT]).next_back() {
            None => Ok(0),
            Some(kv) => seq_of(&kv.map_err(backend)?.0, AUDIT_KEY_LEN),
        }
    }

    /// The time of record `seq`, if it is there and decodes.
    fn audit_time(&self, seq: u64) -> Result<Option<u64>, StoreError> {
        let value = self.db.get(audit_key(seq)).map_err(backend)?;
        Ok(value.and_then(|v| audit::decode(seq, &v).ok()).map(|d| d.record.at_ms))
    }

    /// The first seq in `1..=head` whose record is at or after `at_ms` (`head + 1`
    /// if none), by bisection. A record that does not decode counts as late, so a
    /// damaged record is never skipped over.
    fn audit_seq_from(&self, at_ms: u64, head: u64) -> Result<u64, StoreError> {
        let (mut lo, mut hi) = (1, head + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.audit_time(mid)?.is_some_and(|t| t < at_ms) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// A page of the audit records matching `filter`, walked as `walk` says: at most
    /// its limit (capped at `MAX_LIST`), reading at most `MAX_AUDIT_EXAMINED`
    /// records, with the cursor of the next page when it stopped early. Records
    /// that do not decode are left out (`audit_verify` reports them).
    pub fn audit_query(&self, filter: &AuditFilter, walk: Walk) -> Result<AuditPage, StoreError> {
        let limit = filter.limit.min(MAX_LIST);
        let head = self.audit_head()?;
        let mut lo = 1;
        let mut hi = head;
        if let Some(since) = filter.since_ms {
            lo = lo.max(self.audit_seq_from(since, head)?);
        }
        if let Some(until) = filter.until_ms {
            hi = hi.min(self.audit_seq_from(until.saturating_add(1), head)?.saturating_sub(1));
        }
        match walk {
            Walk::Forward { after } => lo = lo.max(after.saturating_add(1)),
            Walk::Backward { before } => hi = hi.min(before.saturating_sub(1)),
        }
        let mut page = AuditPage { records: Vec::new(), next: None };
        if limit == 0 || lo > hi {
            return Ok(page);
        }
        // The seqs to read, from the index the filter allows or the log itself.
        let seqs: Box<dyn DoubleEndedIterator<Item = Result<u64, StoreError>>> = match plan(filter) {
            Some(prefix) => {
                let len = prefix.len() + 8;
                let (mut from, mut to) = (prefix.clone(), prefix);
                from.extend_from_slice(&lo.to_be_bytes());
                to.extend_from_slice(&hi.to_be_bytes());
                Box::new(self.db.range(from..=to).map(move |kv| seq_of(&kv.map_err(backend)?.0, len)))
            }
            None => Box::new(
                self.db
                    .range(audit_key(lo)..=audit_key(hi))
                    .map(|kv| seq_of(&kv.map_err(backend)?.0, AUDIT_KEY_LEN)),
            ),
        };
        let mut seqs: Box<dyn Iterator<Item = Result<u64, StoreError>>> = match walk {
            Walk::Forward { .. } => seqs,
            Walk::Backward { .. } => Box::new(seqs.rev()),
        };
        let mut examined = 0;
        while let Some(seq) = seqs.next() {
            let seq = seq?;
            if examined == MAX_AUDIT_EXAMINED {
                // Out of budget: the next page starts at this seq.
                let resume = match walk {
                    Walk::Forward { .. } => seq.saturating_sub(1),
                    Walk::Backward { .. } => seq.saturating_add(1),
                };
                page.next = Some(walk.cursor_after(resume));
                break;
            }
            examined += 1;
            let record = self.db.get(audit_key(seq)).map_err(backend)?;
            let record: Option<AuditRecord> = record
                .and_then(|v| audit::decode(seq, &v).ok())
                .map(|d| d.record)
                .filter(|r| filter.matches(r));
            if let Some(record) = record {
                page.records.push(record);
                if page.records.len() == limit {
                    if seqs.next().is_some() {
                        page.next = Some(walk.cursor_after(seq));
                    }
                    break;
                }
            }
        }
        if matches!(walk, Walk::Backward { .. }) {
            page.records.reverse();
        }
        Ok(page)
    }

    /// Walks the whole audit chain and reports the first break.
    pub fn audit_verify(
        &self,
        checkpoint: Option<cascade_protocol::AuditCheckpoint>,
    ) -> Result<AuditVerification, StoreError> {
        let mut verifier = audit::Verifier::new().against(checkpoint);
        for kv in self.db.scan_prefix([AUDIT]) {
            let (key, value) = kv.map_err(backend)?;
            verifier.next(seq_of(&key, AUDIT_KEY_LEN).ok(), &value);
        }
        Ok(verifier.finish())
    }

    /// Writes the index rows of every stored record (a store of format 2 had none).
    pub(crate) fn index_audit_log(&self) -> Result<u64, StoreError> {
        /// Records indexed per sled batch.
        const CHUNK: usize = 4096;
        let mut batch = sled::Batch::default();
        let (mut pending, mut indexed) = (0, 0);
        for kv in self.db.scan_prefix([AUDIT]) {
            let (key, value) = kv.map_err(backend)?;
            let seq = seq_of(&key, AUDIT_KEY_LEN)?;
            // A damaged record stays unindexed; `audit_verify` reports it.
            let Ok(decoded) = audit::decode(seq, &value) else { continue };
            let r = decoded.record;
            let fields = IndexFields { at_ms: r.at_ms, actor: r.actor, org: r.org, kind: r.kind };
            for row in index_rows(seq, &fields) {
                batch.insert(row, &[]);
            }
            pending += 1;
            indexed += 1;
            if pending == CHUNK {
                self.db.apply_batch(std::mem::take(&mut batch)).map_err(backend)?;
                pending = 0;
            }
        }
        self.db.apply_batch(batch).map_err(backend)?;
        Ok(indexed)
    }
}
