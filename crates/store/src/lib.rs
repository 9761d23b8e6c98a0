//! The sled store of one node: every log it holds, the materialized federated
//! catalog and organizations, its own entries, accounts, tokens and the audit
//! chain — all in one sled tree under one-byte key prefixes, so that a group
//! commit's `WriteBatch` applies atomically.
//!
//! The store keeps what the core decided: materialized rows index the admitted
//! deltas (by log and seq), so a body is stored once, never re-encoded; an own
//! entry's working copy is its draft, or else its latest signed delta. It knows no
//! catalog or access rule. Durability: `flush` waits for sled's flush, which survives a killed
//! process (see the README for power loss).

mod audit_log;
mod catalog_index;
mod datasets;
mod fetches;
mod keys;
mod read;
mod relayed;
mod services;
mod subscriptions;
mod upgrade;
mod usage;
mod workflow;

pub use catalog_index::CatalogFilter;
pub use datasets::MAX_VERSIONS_LISTED;
pub use fetches::{FetchJob, FetchState, FETCHES_KEPT, MAX_FETCHES_LISTED};
pub use keys::audit_key;
pub use read::{CatalogRow, Cursor, OrganizationRow, Page, Window};
pub use relayed::{RelayCursor, RelayFilter};
pub use services::ServiceFilter;
pub use subscriptions::{Subscription, MAX_SUBSCRIPTIONS};
pub use usage::{UsageCursor, UsageFilter, UsageRecord, MAX_USAGE_SCAN, USAGE_KEPT};
pub use workflow::{Side, WorkflowFilter};

use cascade_core::audit;
use cascade_core::{
    AccountRecord, Application, BootState, GrantRecord, Materialize, Meta, OwnWrite, StateStore, StoreError,
    TokenRecord, WriteBatch,
};
use cascade_protocol::catalog::CatalogEntry;
use cascade_protocol::limits::{MAX_DELTA_BYTES, MAX_FRAME_BYTES, MAX_ROUTED_BYTES};
use cascade_protocol::routed::{MessageId, Routed};
use cascade_protocol::service::Service;
use cascade_protocol::{codec, Delta, DeltaBody, LogId, NodeId, Scope};
use catalog_index::CatalogIndex;
use keys::*;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// The format of the stored records; bumped on any incompatible change.
pub const FORMAT: u32 = 4;

/// How often, and how far apart, opening retries a store still locked by a
/// crashed instance in the same process: 50 x 100 ms.
const LOCK_TRIES: u32 = 50;
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8], limit: usize) -> Result<T, StoreError> {
    codec::decode(bytes, limit).map_err(|e| StoreError::Corrupt { key: hex(key), reason: e.to_string() })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An entry stored as its catalog delta body, decoded.
fn entry_of(key: &[u8], body: &[u8]) -> Result<CatalogEntry, StoreError> {
    match decode::<DeltaBody>(key, body, MAX_FRAME_BYTES)? {
        DeltaBody::Catalog(entry) => Ok(entry),
        _ => Err(StoreError::Corrupt { key: hex(key), reason: "not a catalog entry".into() }),
    }
}

/// A materialized row's value: where its delta is (scope, seq).
fn pointer(scope: Scope, seq: u64) -> [u8; 9] {
    let mut value = [scope_byte(scope); 9];
    value[1..].copy_from_slice(&seq.to_be_bytes());
    value
}

/// One node's persistent state. Cheap to clone (shared).
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// The node whose store this is (its own entries are its materialized rows).
    me: NodeId,
    /// The catalog index, in memory (see `catalog_index`).
    catalog: Arc<RwLock<CatalogIndex>>,
    /// The active services by entry, in memory (see `services`).
    services: Arc<RwLock<services::ServiceIndex>>,
    /// The usage records' tree (see `usage`), and how many records it holds
    /// (counted at open from the chunks' keys, then kept up to date).
    usage: sled::Tree,
    usage_count: Arc<std::sync::atomic::AtomicU64>,
}

/// sled's own default cache size, for stores opened without a setting.
pub const DEFAULT_CACHE_BYTES: u64 = 1 << 30;

impl Store {
    /// Opens (or creates) the store in `path`, with sled's default cache (see
    /// `open_cached`).
    pub fn open(path: &Path, me: NodeId) -> Result<Store, StoreError> {
        Store::open_cached(path, me, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the store in `path`, letting sled cache at most about
    /// `cache_bytes` of it in memory. When the folder is still locked by a
    /// crashed instance of this node in the same process (its tasks are being
    /// torn down), waits for the lock a bounded while. A store of another format
    /// is refused with what to do about it.
    pub fn open_cached(path: &Path, me: NodeId, cache_bytes: u64) -> Result<Store, StoreError> {
        let mut tries = 0;
        let db = loop {
            let config = sled::Config::new().path(path).mode(sled::Mode::HighThroughput);
            match config.cache_capacity(cache_bytes).open() {
                Ok(db) => break db,
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock") && tries < LOCK_TRIES =>
                {
                    tries += 1;
                    std::thread::sleep(LOCK_RETRY);
                }
                Err(e) => return Err(backend(e)),
            }
        };
        let usage = db.open_tree(usage::USAGE_TREE).map_err(backend)?;
        let store = Store {
            db,
            me,
            catalog: Arc::default(),
            services: Arc::default(),
            usage,
            usage_count: Arc::default(),
        };
        store.check_format()?;
        store.index_catalog()?;
        store.index_services()?;
        let usage = store.count_usage()?;
        store.usage_count.store(usage, std::sync::atomic::Ordering::Relaxed);
        Ok(store)
    }

    /// Builds the catalog index from the stored rows.
    fn index_catalog(&self) -> Result<(), StoreError> {
        let mut index = CatalogIndex::default();
        for kv in self.db.scan_prefix([CATALOG]) {
            let (key, value) = kv.map_err(backend)?;
            let row = self.catalog_row(&key, &value)?;
            index.put(key.to_vec(), row.origin, &row.entry, row.stored_ms.unwrap_or(0));
        }
        for kv in self.db.scan_prefix([OWN]) {
            let (key, value) = kv.map_err(backend)?;
            index.put(key.to_vec(), self.me, &own_of(&key, &value)?.1, 0);
        }
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = index;
        Ok(())
    }

    /// Whether the folder holds no sled tree but the default one and the usage
    /// records' (a fresh folder, not another program's store).
    fn only_own_trees(&self) -> bool {
        self.db
            .tree_names()
            .iter()
            .all(|n| n.as_ref() == b"__sled__default" || n.as_ref() == usage::USAGE_TREE.as_bytes())
    }

    fn check_format(&self) -> Result<(), StoreError> {
        let hint = "move this data folder aside and start the node again: it re-joins and catches up its \
                    neighbours' logs (its own drafts, accounts and audit log stay in the old folder)";
        match self.db.get(FORMAT_KEY).map_err(backend)? {
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_ref()).map(u32::from_be_bytes).unwrap_or(0);
                if found == 2 {
                    self.upgrade_from_2()?;
                } else if found == 3 {
                    self.upgrade_from_3()?;
                } else if found != FORMAT {
                    return Err(StoreError::Format { found, expected: FORMAT, hint });
                }
            }
            None if self.db.is_empty() && self.usage.is_empty() && self.only_own_trees() => {
                self.db.insert(FORMAT_KEY, &FORMAT.to_be_bytes()).map_err(backend)?;
            }
            None => return Err(StoreError::Format { found: 1, expected: FORMAT, hint }),
        }
        Ok(())
    }

    /// The head seq of a log in the store (0 when empty).
    pub fn head(&self, log: LogId) -> Result<u64, StoreError> {
        match self.db.scan_prefix(log_prefix(log)).next_back() {
            None => Ok(0),
            Some(kv) => {
                let (key, _) = kv.map_err(backend)?;
                seq_of(&key, LOG_KEY_LEN)
            }
        }
    }

    /// Applies one group commit's writes atomically. Refuses a batch that would
    /// leave a hole in a log or make it go backwards. Not yet durable: `flush`.
    pub fn apply(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        let mut sled_batch = sled::Batch::default();
        let mut heads: HashMap<LogId, u64> = HashMap::new();
        for delta in &batch.deltas {
            let head = match heads.get(&delta.log) {
                Some(h) => *h,
                None => self.head(delta.log)?,
            };
            if delta.seq != head + 1 {
                return Err(StoreError::OutOfOrder { log: delta.log, expected: head + 1, got: delta.seq });
            }
            heads.insert(delta.log, delta.seq);
            sled_batch.insert(log_key(delta.log, delta.seq), codec::encode(&**delta)?);
        }
        for row in &batch.materialize {
            match row {
                Materialize::Catalog { log, entry, delta, stored_ms } => sled_batch.insert(
                    catalog_key(log.origin, log.scope, &entry.code),
                    &read::catalog_value(delta.seq, *stored_ms),
                ),
                Materialize::Service { service, delta } => sled_batch
                    .insert(service_key(&service.id), pointer(delta.log.scope, delta.seq).as_slice()),
                Materialize::Dataset { manifest, delta } => sled_batch.insert(
                    dataset_key(manifest.entry.origin, &manifest.entry.code, manifest.version),
                    pointer(delta.log.scope, delta.seq).as_slice(),
                ),
                Materialize::Organization { origin, code, delta } => {
                    sled_batch.insert(org_key(code, *origin), pointer(delta.log.scope, delta.seq).as_slice())
                }
            }
        }
        for (code, own) in &batch.own {
            match own {
                OwnWrite::Draft { scope, entry } => {
                    let mut value = vec![scope_byte(*scope)];
                    value.extend_from_slice(&codec::encode(&DeltaBody::Catalog(entry.clone()))?);
                    sled_batch.insert(own_key(code), value);
                }
                OwnWrite::Signed { replaces_draft: true, .. } => sled_batch.remove(own_key(code)),
                OwnWrite::Signed { replaces_draft: false, .. } => {}
            }
        }
        for account in &batch.accounts {
            sled_batch.insert(account_key(&account.username), codec::encode(account)?);
        }
        for token in &batch.tokens {
            sled_batch.insert(token_key(&token.id), codec::encode(token)?);
        }
        for id in &batch.forget_tokens {
            sled_batch.remove(token_key(id));
        }
        for (id, upstream) in &batch.upstreams {
            sled_batch.insert(upstream_key(id), upstream.as_bytes());
        }
        for record in &batch.audit {
            sled_batch.insert(audit_key(record.seq).to_vec(), record.value.as_slice());
            for row in audit_log::index_rows(record.seq, &record.index) {
                sled_batch.insert(row, &[]);
            }
        }
        for (hop, message) in &batch.outbox {
            sled_batch.insert(outbox_key(*hop, message.id), codec::encode(&**message)?);
        }
        for (hop, id) in &batch.outbox_done {
            sled_batch.remove(outbox_key(*hop, *id));
        }
        for (id, until) in &batch.seen {
            sled_batch.insert(seen_key(*id), &until.to_be_bytes());
        }
        if let Some(before) = batch.sweep_seen {
            // Hourly, and only ids older than their time to live: a scan of the table.
            for kv in self.db.scan_prefix([SEEN]) {
                let (key, value) = kv.map_err(backend)?;
                let until = <[u8; 8]>::try_from(value.as_ref()).map(u64::from_be_bytes).unwrap_or(0);
                if until < before {
                    sled_batch.remove(key);
                }
            }
            // Relay records as old as a message may live: the oldest, in key order.
            let cut = before.saturating_sub(cascade_protocol::limits::ROUTED_TTL_S).saturating_mul(1000);
            let mut end = vec![RELAYED];
            end.extend_from_slice(&cut.to_be_bytes());
            for key in self.db.range(vec![RELAYED]..end).keys() {
                sled_batch.remove(key.map_err(backend)?);
            }
        }
        for r in &batch.relayed {
            sled_batch.insert(relayed_key(r.at_ms, r.message), codec::encode(r)?);
            if let Some(grant) = r.revoked_grant() {
                sled_batch.insert([&[REVOKED], grant.as_bytes()].concat(), &[]);
            }
        }
        for a in &batch.applications {
            sled_batch.insert(application_key(&a.id), codec::encode(a)?);
        }
        for g in &batch.grants {
            sled_batch.insert(grant_key(&g.grant.id), codec::encode(g)?);
        }
        if let Some(meta) = &batch.meta {
            sled_batch.insert(META_KEY, codec::encode(meta)?);
        }
        self.db.apply_batch(sled_batch).map_err(backend)?;
        // The index follows the store (never leads it: a listing reads the rows).
        let mut index = self.catalog.write().unwrap_or_else(|p| p.into_inner());
        for row in &batch.materialize {
            if let Materialize::Catalog { log, entry, stored_ms, .. } = row {
                index.put(catalog_key(log.origin, log.scope, &entry.code), log.origin, entry, *stored_ms);
            }
        }
        for (code, own) in &batch.own {
            match own {
                OwnWrite::Draft { entry, .. } => index.put(own_key(code), self.me, entry, 0),
                OwnWrite::Signed { replaces_draft: true, .. } => index.remove(&own_key(code)),
                OwnWrite::Signed { replaces_draft: false, .. } => {}
            }
        }
        drop(index);
        let mut services = self.services.write().unwrap_or_else(|p| p.into_inner());
        for row in &batch.materialize {
            if let Materialize::Service { service, .. } = row {
                services.put(service);
            }
        }
        Ok(())
    }

    /// Waits until everything applied so far is on disk. Blocking: call it off the
    /// async workers. (sled's `flush_async` deadlocks when several databases flush
    /// concurrently — sled issues #1241, #1308 — which a federation in one process
    /// does.)
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(backend)
    }

    /// The delta a materialized row points at.
    fn pointed(&self, key: &[u8], log: LogId, seq: u64) -> Result<Delta, StoreError> {
        let value = self.db.get(log_key(log, seq)).map_err(backend)?.ok_or_else(|| StoreError::Corrupt {
            key: hex(key),
            reason: format!("points at missing {log} #{seq}"),
        })?;
        decode(key, &value, MAX_DELTA_BYTES)
    }

    /// The stored deltas `from..=to` of a log, in order.
    pub fn range(
        &self,
        log: LogId,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = Result<Delta, StoreError>> + '_ {
        self.db.range(log_key(log, from)..=log_key(log, to)).map(|kv| {
            let (key, value) = kv.map_err(backend)?;
            decode(&key, &value, MAX_DELTA_BYTES)
        })
    }

    /// Every stored delta, log by log, each log in order.
    pub fn all_deltas(&self) -> impl Iterator<Item = Result<Delta, StoreError>> + '_ {
        self.db.scan_prefix([LOG]).map(|kv| {
            let (key, value) = kv.map_err(backend)?;
            decode(&key, &value, MAX_DELTA_BYTES)
        })
    }

    /// Size of the store on disk, in bytes.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(backend)
    }
}

impl StateStore for Store {
    fn own_entry(&self, code: &str) -> Result<Option<(Scope, CatalogEntry)>, StoreError> {
        let key = own_key(code);
        if let Some(v) = self.db.get(&key).map_err(backend)? {
            return own_of(&key, &v).map(Some);
        }
        Ok(self.catalog_entry(self.me, code)?.into_iter().next().map(|row| (row.scope, row.entry)))
    }

    fn account(&self, username: &str) -> Result<Option<AccountRecord>, StoreError> {
        let key = account_key(username);
        self.db.get(&key).map_err(backend)?.map(|v| decode(&key, &v, MAX_FRAME_BYTES)).transpose()
    }

    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let key = token_key(id);
        self.db.get(&key).map_err(backend)?.map(|v| decode(&key, &v, MAX_FRAME_BYTES)).transpose()
    }

    fn service(&self, id: &str) -> Result<Option<Service>, StoreError> {
        self.service_by_id(id)
    }

    fn manifest(
        &self,
        origin: NodeId,
        code: &str,
        version: Option<u64>,
    ) -> Result<Option<cascade_protocol::dataset::Manifest>, StoreError> {
        self.manifest_of(origin, code, version)
    }

    fn revocation_relayed(&self, grant: &str) -> Result<bool, StoreError> {
        self.db.contains_key([&[REVOKED], grant.as_bytes()].concat()).map_err(backend)
    }

    fn upstream(&self, id: &str) -> Result<Option<String>, StoreError> {
        let key = upstream_key(id);
        let value = self.db.get(&key).map_err(backend)?;
        value.map(|v| String::from_utf8(v.to_vec()).map_err(|_| read::corrupt(&key, "not UTF-8"))).transpose()
    }

    fn seen(&self, id: MessageId) -> Result<bool, StoreError> {
        self.db.contains_key(seen_key(id)).map_err(backend)
    }

    fn application(&self, id: &str) -> Result<Option<Application>, StoreError> {
        let key = application_key(id);
        self.db.get(&key).map_err(backend)?.map(|v| decode(&key, &v, MAX_FRAME_BYTES)).transpose()
    }

    fn grant(&self, id: &str) -> Result<Option<GrantRecord>, StoreError> {
        let key = grant_key(id);
        self.db.get(&key).map_err(backend)?.map(|v| decode(&key, &v, MAX_FRAME_BYTES)).transpose()
    }

    fn audit_hash(&self, seq: u64) -> Result<Option<[u8; 32]>, StoreError> {
        Ok(self.db.get(audit_key(seq)).map_err(backend)?.map(|v| cascade_core::audit::stored_hash(&v)))
    }

    fn boot(&self) -> Result<BootState, StoreError> {
        let meta: Meta = match self.db.get(META_KEY).map_err(backend)? {
            // Format 3 before the workflow kept the resource-code counter alone.
            Some(v) if v.len() == 8 => Meta { code_seq: decode(META_KEY, &v, 8)?, ..Meta::default() },
            Some(v) => decode(META_KEY, &v, MAX_FRAME_BYTES)?,
            None => Meta::default(),
        };
        let mut outbox = Vec::new();
        for kv in self.db.scan_prefix([OUTBOX]) {
            let (key, value) = kv.map_err(backend)?;
            if key.len() != OUTBOX_KEY_LEN {
                return Err(read::corrupt(&key, "malformed outbox key"));
            }
            let hop = origin_at(&key, 1)?;
            let message: Routed = decode(&key, &value, MAX_ROUTED_BYTES)?;
            outbox.push((hop, Arc::new(message)));
        }
        let (audit_head, audit_head_at_ms) = match self.db.scan_prefix([AUDIT]).next_back() {
            None => (None, 0),
            Some(kv) => {
                let (key, value) = kv.map_err(backend)?;
                let seq = seq_of(&key, AUDIT_KEY_LEN)?;
                // A damaged head still continues the chain (verification finds it).
                let at_ms = audit::decode(seq, &value).map_or(0, |d| d.record.at_ms);
                (Some((seq, audit::stored_hash(&value))), at_ms)
            }
        };
        let accounts = self.db.scan_prefix([ACCOUNT]).count();
        let mut sessions = Vec::new();
        for kv in self.db.scan_prefix([TOKEN]) {
            let (key, value) = kv.map_err(backend)?;
            // An unreadable token opens nothing (authentication reads it again and
            // fails); it must not stop the node.
            let token: TokenRecord = match decode(&key, &value, MAX_FRAME_BYTES) {
                Ok(token) => token,
                Err(e) => {
                    tracing::warn!(error = %e, "an unreadable token record was skipped");
                    continue;
                }
            };
            if token.kind == cascade_access::TokenKind::Session {
                sessions.push((token.username, token.id, token.expires_at.unwrap_or(0)));
            }
        }
        let mut pending = Vec::new();
        for kv in self.db.scan_prefix([APPLICATION]) {
            let (key, value) = kv.map_err(backend)?;
            let application: Application = decode(&key, &value, MAX_FRAME_BYTES)?;
            pending.extend(
                cascade_core::awaiting(&application).filter(|_| application.provider_node == self.me),
            );
        }
        Ok(BootState { meta, audit_head, audit_head_at_ms, sessions, accounts, outbox, pending })
    }

    fn deltas(&self) -> Box<dyn Iterator<Item = Result<Delta, StoreError>> + '_> {
        Box::new(self.all_deltas())
    }
}

/// An own entry as stored: scope byte, then its catalog delta body.
fn own_of(key: &[u8], value: &[u8]) -> Result<(Scope, CatalogEntry), StoreError> {
    let (scope, body) =
        value.split_first().ok_or_else(|| StoreError::Corrupt { key: hex(key), reason: "empty".into() })?;
    let scope =
        scope_of(*scope).ok_or_else(|| StoreError::Corrupt { key: hex(key), reason: "bad scope".into() })?;
    Ok((scope, entry_of(key, body)?))
}

#[cfg(test)]
mod tests;
