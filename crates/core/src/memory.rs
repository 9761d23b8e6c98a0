//! An in-memory store: the deterministic simulator (and tests) run the very same
//! core over it. A batch applies at once; it survives a crash only once the driver
//! reports it durable, exactly as a sled group commit does.

use crate::audit::{self, AuditRecord, SealedRecord};
use crate::store::{AccountRecord, BootState, Meta, StateStore, StoreError, TokenRecord, WriteBatch};
use crate::workflow::{Application, GrantRecord};
use cascade_protocol::catalog::CatalogEntry;
use cascade_protocol::routed::{MessageId, Routed};
use cascade_protocol::service::Service;
use cascade_protocol::{Delta, LogId, NodeId, Scope};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// Audit records kept for inspection per node (the chain's head and length are
/// always kept; a simulation of hundreds of nodes cannot keep every record).
pub const AUDIT_KEPT: usize = 4096;

/// Everything but the logs: small, and copied whole on a crash.
#[derive(Clone, Default)]
struct State {
    own: BTreeMap<String, (Scope, CatalogEntry)>,
    accounts: BTreeMap<String, AccountRecord>,
    tokens: BTreeMap<String, TokenRecord>,
    /// Services by id: the delta of the latest version, shared with the log (as
    /// the sled store keeps a pointer), decoded when read.
    services: BTreeMap<String, Arc<Delta>>,
    upstreams: BTreeMap<String, String>,
    /// Grants whose revocation this node relayed.
    revoked_relayed: std::collections::BTreeSet<String>,
    /// Dataset versions by entry (origin, code) and version: the delta, as for services.
    versions: BTreeMap<(NodeId, String), BTreeMap<u64, Arc<Delta>>>,
    /// Routed messages waiting for each next hop, in order.
    outbox: BTreeMap<NodeId, Vec<Arc<Routed>>>,
    /// Ids of routed messages seen, with when they may be forgotten.
    seen: HashMap<MessageId, u64>,
    applications: BTreeMap<String, Application>,
    grants: BTreeMap<String, GrantRecord>,
    meta: Meta,
    audit_head: Option<(u64, [u8; 32])>,
    audit_head_at_ms: u64,
    audit_recent: VecDeque<SealedRecord>,
    /// The stored hash of every record, by seq - 1.
    audit_hashes: Vec<[u8; 32]>,
    /// The first record that did not chain onto the one before it, if any.
    audit_break: Option<String>,
}

impl State {
    fn apply(&mut self, batch: &WriteBatch) {
        for (code, own) in &batch.own {
            let (scope, entry) = own.entry();
            self.own.insert(code.clone(), (scope, entry.clone()));
        }
        for a in &batch.accounts {
            self.accounts.insert(a.username.clone(), a.clone());
        }
        for t in &batch.tokens {
            self.tokens.insert(t.id.clone(), t.clone());
        }
        for id in &batch.forget_tokens {
            self.tokens.remove(id);
        }
        for row in &batch.materialize {
            match row {
                crate::store::Materialize::Service { service, delta } => {
                    self.services.insert(service.id.clone(), delta.clone());
                }
                crate::store::Materialize::Dataset { manifest, delta } => {
                    let entry = (manifest.entry.origin, manifest.entry.code.clone());
                    self.versions.entry(entry).or_default().insert(manifest.version, delta.clone());
                }
                _ => {}
            }
        }
        for r in &batch.relayed {
            if let Some(grant) = r.revoked_grant() {
                self.revoked_relayed.insert(grant.to_string());
            }
        }
        for (id, upstream) in &batch.upstreams {
            self.upstreams.insert(id.clone(), upstream.clone());
        }
        for (hop, message) in &batch.outbox {
            self.outbox.entry(*hop).or_default().push(message.clone());
        }
        for (hop, id) in &batch.outbox_done {
            if let Some(q) = self.outbox.get_mut(hop) {
                q.retain(|m| m.id != *id);
            }
        }
        self.outbox.retain(|_, q| !q.is_empty());
        for (id, until) in &batch.seen {
            self.seen.insert(*id, *until);
        }
        if let Some(before) = batch.sweep_seen {
            self.seen.retain(|_, until| *until >= before);
        }
        for a in &batch.applications {
            self.applications.insert(a.id.clone(), a.clone());
        }
        for g in &batch.grants {
            self.grants.insert(g.grant.id.clone(), g.clone());
        }
        if let Some(meta) = batch.meta {
            self.meta = meta;
        }
        for record in &batch.audit {
            if self.audit_break.is_none() {
                self.audit_break = chain_break(self.audit_head, record);
            }
            self.audit_head = Some((record.seq, audit::stored_hash(&record.value)));
            if record.seq as usize == self.audit_hashes.len() + 1 {
                self.audit_hashes.push(audit::stored_hash(&record.value));
            }
            self.audit_head_at_ms = record.index.at_ms;
            if self.audit_recent.len() == AUDIT_KEPT {
                self.audit_recent.pop_front();
            }
            self.audit_recent.push_back(record.clone());
        }
    }
}

/// Why `record` does not continue the chain whose last record is `head`, if it does not.
fn chain_break(head: Option<(u64, [u8; 32])>, record: &SealedRecord) -> Option<String> {
    let (seq, hash) = head.unwrap_or((0, [0; 32]));
    let mut verifier = audit::Verifier::resume(seq, hash);
    verifier.next(Some(record.seq), &record.value);
    verifier.finish().reason
}

/// The in-memory store of one simulated node.
#[derive(Default)]
pub struct MemoryStore {
    /// Every log as applied; the first `durable_len` deltas of each are durable.
    logs: BTreeMap<LogId, Vec<Arc<Delta>>>,
    durable_len: HashMap<LogId, usize>,
    volatile: State,
    durable: State,
    pending: VecDeque<(u64, WriteBatch)>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Applies a group's batch (visible at once, durable only after `made_durable`).
    /// A batch that would leave a hole in a log changes nothing.
    pub fn apply(&mut self, group: u64, batch: WriteBatch) -> Result<(), StoreError> {
        let mut heads: HashMap<LogId, u64> = HashMap::new();
        for d in &batch.deltas {
            let head =
                *heads.entry(d.log).or_insert_with(|| self.logs.get(&d.log).map_or(0, |l| l.len() as u64));
            if d.seq != head + 1 {
                return Err(StoreError::OutOfOrder { log: d.log, expected: head + 1, got: d.seq });
            }
            heads.insert(d.log, d.seq);
        }
        for d in &batch.deltas {
            self.logs.entry(d.log).or_default().push(d.clone());
        }
        self.volatile.apply(&batch);
        self.pending.push_back((group, batch));
        Ok(())
    }

    /// Makes every batch up to `group` durable.
    pub fn made_durable(&mut self, group: u64) -> Result<(), StoreError> {
        while self.pending.front().is_some_and(|(g, _)| *g <= group) {
            if let Some((_, batch)) = self.pending.pop_front() {
                for d in &batch.deltas {
                    self.durable_len.insert(d.log, d.seq as usize);
                }
                self.durable.apply(&batch);
            }
        }
        Ok(())
    }

    /// The durable applications (consumer's and provider's), by id.
    pub fn applications(&self) -> impl Iterator<Item = &Application> + '_ {
        self.durable.applications.values()
    }

    /// The ids of the durable services, in order.
    pub fn service_ids(&self) -> impl Iterator<Item = &String> + '_ {
        self.durable.services.keys()
    }

    /// The durable grants, by id.
    pub fn grants(&self) -> impl Iterator<Item = &GrantRecord> + '_ {
        self.durable.grants.values()
    }

    /// A crash: whatever was not made durable is gone.
    pub fn crash(&mut self) {
        self.pending.clear();
        let durable = &self.durable_len;
        self.logs.retain(|log, deltas| {
            deltas.truncate(durable.get(log).copied().unwrap_or(0));
            !deltas.is_empty()
        });
        self.volatile = self.durable.clone();
    }

    /// A stored delta (durable or not yet).
    pub fn delta(&self, log: LogId, seq: u64) -> Option<&Arc<Delta>> {
        let index = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.logs.get(&log)?.get(index)
    }

    /// The durable logs, log by log.
    pub fn durable_logs(&self) -> impl Iterator<Item = (&LogId, &[Arc<Delta>])> + '_ {
        self.logs.iter().filter_map(|(log, deltas)| {
            let len = self.durable_len.get(log).copied().unwrap_or(0);
            (len > 0).then(|| (log, &deltas[..len.min(deltas.len())]))
        })
    }

    /// The newest durable audit records (up to `AUDIT_KEPT`), oldest first.
    pub fn durable_audit(&self) -> Vec<AuditRecord> {
        self.durable
            .audit_recent
            .iter()
            .filter_map(|r| audit::decode(r.seq, &r.value).ok().map(|d| d.record))
            .collect()
    }

    /// The first durable audit record that did not chain onto its predecessor.
    pub fn audit_break(&self) -> Option<&str> {
        self.durable.audit_break.as_deref()
    }

    /// How many audit records are durable.
    pub fn durable_audit_len(&self) -> u64 {
        self.durable.audit_head.map_or(0, |(seq, _)| seq)
    }
}

impl StateStore for MemoryStore {
    fn own_entry(&self, code: &str) -> Result<Option<(Scope, CatalogEntry)>, StoreError> {
        Ok(self.volatile.own.get(code).cloned())
    }

    fn account(&self, username: &str) -> Result<Option<AccountRecord>, StoreError> {
        Ok(self.volatile.accounts.get(username).cloned())
    }

    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self.volatile.tokens.get(id).cloned())
    }

    fn service(&self, id: &str) -> Result<Option<Service>, StoreError> {
        let Some(delta) = self.volatile.services.get(id) else { return Ok(None) };
        match delta.decode_body() {
            Ok(cascade_protocol::DeltaBody::Service(service)) => Ok(Some(service)),
            _ => Err(StoreError::Corrupt { key: id.to_string(), reason: "not a service delta".into() }),
        }
    }

    fn manifest(
        &self,
        origin: NodeId,
        code: &str,
        version: Option<u64>,
    ) -> Result<Option<cascade_protocol::dataset::Manifest>, StoreError> {
        let Some(versions) = self.volatile.versions.get(&(origin, code.to_string())) else { return Ok(None) };
        let delta = match version {
            Some(v) => versions.get(&v),
            None => versions.values().next_back(),
        };
        let Some(delta) = delta else { return Ok(None) };
        match delta.decode_body() {
            Ok(cascade_protocol::DeltaBody::Dataset(m)) => Ok(Some(m)),
            _ => Err(StoreError::Corrupt { key: code.to_string(), reason: "not a dataset delta".into() }),
        }
    }

    fn revocation_relayed(&self, grant: &str) -> Result<bool, StoreError> {
        Ok(self.volatile.revoked_relayed.contains(grant))
    }

    fn upstream(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.volatile.upstreams.get(id).cloned())
    }

    fn seen(&self, id: MessageId) -> Result<bool, StoreError> {
        Ok(self.volatile.seen.contains_key(&id))
    }

    fn application(&self, id: &str) -> Result<Option<Application>, StoreError> {
        Ok(self.volatile.applications.get(id).cloned())
    }

    fn grant(&self, id: &str) -> Result<Option<GrantRecord>, StoreError> {
        Ok(self.volatile.grants.get(id).cloned())
    }

    fn audit_hash(&self, seq: u64) -> Result<Option<[u8; 32]>, StoreError> {
        Ok(seq.checked_sub(1).and_then(|i| self.volatile.audit_hashes.get(i as usize)).copied())
    }

    fn boot(&self) -> Result<BootState, StoreError> {
        Ok(BootState {
            meta: self.volatile.meta,
            audit_head: self.volatile.audit_head,
            audit_head_at_ms: self.volatile.audit_head_at_ms,
            sessions: self
                .volatile
                .tokens
                .values()
                .filter(|t| t.kind == cascade_access::TokenKind::Session)
                .map(|t| (t.username.clone(), t.id.clone(), t.expires_at.unwrap_or(0)))
                .collect(),
            accounts: self.volatile.accounts.len(),
            outbox: self
                .volatile
                .outbox
                .iter()
                .flat_map(|(hop, q)| q.iter().map(|m| (*hop, m.clone())))
                .collect(),
            pending: self.volatile.applications.values().filter_map(crate::workflow::awaiting).collect(),
        })
    }

    fn deltas(&self) -> Box<dyn Iterator<Item = Result<Delta, StoreError>> + '_> {
        Box::new(self.logs.values().flatten().map(|d| Ok(Delta::clone(d))))
    }
}
