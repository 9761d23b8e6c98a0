//! sled-backed state of one node: every log it holds, the materialized federated
//! catalog, and its own working copies (drafts) of catalog entries.
//!
//! Everything lives in one sled tree under one-byte key prefixes, so that a batch
//! of accepted deltas, their materialization and the node's own entry update are
//! applied atomically (`apply_batch`). Durability: `flush` waits for sled's flush
//! (survives a killed process; see the README for power loss).

use cascade_protocol::catalog::CatalogEntry;
use cascade_protocol::codec::{self, CodecError};
use cascade_protocol::delta::MAX_BODY_BYTES;
use cascade_protocol::org::Organization;
use cascade_protocol::{Delta, DeltaBody, LogId, NodeId, Scope, MAX_FRAME_BYTES};
use std::path::Path;

mod audit;
pub use audit::{AuditEntry, AuditFilter, AuditLog, AuditRecord, AuditVerification};

const LOG: u8 = b'L';
const CATALOG: u8 = b'C';
const OWN: u8 = b'O';
const ORG: u8 = b'R';
/// Node metadata records live under `M`.
const CODE_SEQ: &[u8] = b"Mcode-seq";

/// How often, and how far apart, opening retries a store still locked by a
/// crashed instance in the same process: 50 x 100 ms.
const LOCK_TRIES: u32 = 50;
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// Largest stored delta record: body plus header and signature.
const MAX_DELTA_RECORD: usize = MAX_BODY_BYTES + 1024;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record does not decode: the files are damaged.
    #[error("corrupt record {key}: {source}")]
    Corrupt {
        /// Hex of the key.
        key: String,
        /// Decoding error.
        source: CodecError,
    },
    /// A value could not be encoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A log would get a hole or go backwards: refuses to store.
    #[error("log {log}: expected seq {expected}, got {got}")]
    OutOfOrder {
        /// The log.
        log: LogId,
        /// The next seq the store expects.
        expected: u64,
        /// What was offered.
        got: u64,
    },
}

/// One node's persistent state.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    audit: AuditLog,
}

fn scope_byte(scope: Scope) -> u8 {
    match scope {
        Scope::Federation => 0,
        Scope::Province => 1,
    }
}

fn log_prefix(log: LogId) -> [u8; 6] {
    let o = log.origin.code().to_be_bytes();
    [LOG, o[0], o[1], o[2], o[3], scope_byte(log.scope)]
}

fn log_key(log: LogId, seq: u64) -> Vec<u8> {
    let mut key = log_prefix(log).to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn catalog_key(origin: NodeId, code: &str) -> Vec<u8> {
    let mut key = vec![CATALOG];
    key.extend_from_slice(&origin.code().to_be_bytes());
    key.extend_from_slice(code.as_bytes());
    key
}

fn org_key(credit_code: &str, node: NodeId) -> Vec<u8> {
    let mut key = vec![ORG];
    key.extend_from_slice(credit_code.as_bytes());
    key.push(0);
    key.extend_from_slice(&node.code().to_be_bytes());
    key
}

fn own_key(code: &str) -> Vec<u8> {
    let mut key = vec![OWN];
    key.extend_from_slice(code.as_bytes());
    key
}

fn decode<T: serde::de::DeserializeOwned>(key: &[u8], bytes: &[u8], limit: usize) -> Result<T, StoreError> {
    codec::decode(bytes, limit).map_err(|source| StoreError::Corrupt { key: hex(key), source })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// Opens (or creates) the store in `path`. When the folder is still locked by a
    /// crashed instance of this node in the same process (its tasks are being torn
    /// down), waits for the lock a bounded while.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut tries = 0;
        loop {
            match sled::Config::new().path(path).mode(sled::Mode::HighThroughput).open() {
                Ok(db) => {
                    let audit = AuditLog::open(db.open_tree("audit")?)?;
                    return Ok(Store { db, audit });
                }
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock") && tries < LOCK_TRIES =>
                {
                    tries += 1;
                    std::thread::sleep(LOCK_RETRY);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The hash-chained audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The head seq of a log in the store (0 when empty).
    pub fn head(&self, log: LogId) -> Result<u64, StoreError> {
        match self.db.scan_prefix(log_prefix(log)).next_back() {
            None => Ok(0),
            Some(kv) => {
                let (key, _) = kv?;
                let seq: [u8; 8] = key[6..14].try_into().map_err(|_| StoreError::Corrupt {
                    key: hex(&key),
                    source: CodecError::Decode("short log key".into()),
                })?;
                Ok(u64::from_be_bytes(seq))
            }
        }
    }

    /// Atomically appends accepted deltas (in log order), materializes their catalog
    /// changes, and records this node's own entry update, if any. Not yet durable:
    /// call `flush` before acknowledging.
    pub fn apply(&self, deltas: &[Delta], own: &[&(Scope, CatalogEntry)]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut heads: std::collections::HashMap<LogId, u64> = Default::default();
        let mut versions: std::collections::HashMap<Vec<u8>, Option<u64>> = Default::default();
        for delta in deltas {
            let head = match heads.get(&delta.log) {
                Some(h) => *h,
                None => self.head(delta.log)?,
            };
            if delta.seq != head + 1 {
                return Err(StoreError::OutOfOrder { log: delta.log, expected: head + 1, got: delta.seq });
            }
            heads.insert(delta.log, delta.seq);
            batch.insert(log_key(delta.log, delta.seq), codec::encode(delta)?);
            let body = delta.decode_body();
            if let Ok(DeltaBody::Organization(org)) = &body {
                batch.insert(
                    org_key(&org.credit_code, delta.log.origin),
                    codec::encode(&(delta.log.origin, org))?,
                );
            }
            if let Ok(DeltaBody::Catalog(entry)) = body {
                let key = catalog_key(delta.log.origin, &entry.code);
                // Never let an older version replace a newer one.
                let newer = match versions.get(&key) {
                    Some(v) => *v,
                    None => self.catalog_version(&key)?,
                };
                if newer.is_some_and(|v| v > entry.version) {
                    continue;
                }
                versions.insert(key.clone(), Some(entry.version));
                batch.insert(key, codec::encode(&(delta.log.scope, entry))?);
            }
        }
        for own in own {
            batch.insert(own_key(&own.1.code), codec::encode(own)?);
        }
        self.db.apply_batch(batch)?;
        Ok(())
    }

    /// Waits until everything applied so far is on disk.
    ///
    /// Runs sled's synchronous `flush` on the blocking pool: `flush_async` of sled
    /// 0.34 deadlocks when several databases flush concurrently (sled issues #1241,
    /// #1308), which is exactly what a federation in one process does.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let db = self.db.clone();
        match tokio::task::spawn_blocking(move || db.flush()).await {
            Ok(result) => {
                result?;
                Ok(())
            }
            Err(e) => Err(StoreError::Sled(sled::Error::ReportableBug(format!("flush task: {e}")))),
        }
    }

    /// The stored deltas `from..=to` of a log, in order.
    pub fn range(
        &self,
        log: LogId,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = Result<Delta, StoreError>> + '_ {
        self.db.range(log_key(log, from)..=log_key(log, to)).map(|kv| {
            let (key, value) = kv?;
            decode(&key, &value, MAX_DELTA_RECORD)
        })
    }

    /// Every stored delta, log by log, each log in order (for restoring the engine).
    pub fn all_deltas(&self) -> impl Iterator<Item = Result<Delta, StoreError>> + '_ {
        self.db.scan_prefix([LOG]).map(|kv| {
            let (key, value) = kv?;
            decode(&key, &value, MAX_DELTA_RECORD)
        })
    }

    /// The federated catalog as materialized here: (origin, scope, entry).
    pub fn catalog(&self) -> impl Iterator<Item = Result<(NodeId, Scope, CatalogEntry), StoreError>> + '_ {
        self.db.scan_prefix([CATALOG]).map(|kv| {
            let (key, value) = kv?;
            let origin = key
                .get(1..5)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .and_then(|b| NodeId::new(u32::from_be_bytes(b)).ok())
                .ok_or_else(|| StoreError::Corrupt {
                    key: hex(&key),
                    source: CodecError::Decode("bad origin in key".into()),
                })?;
            let (scope, entry) = decode(&key, &value, MAX_FRAME_BYTES)?;
            Ok((origin, scope, entry))
        })
    }

    fn catalog_version(&self, key: &[u8]) -> Result<Option<u64>, StoreError> {
        match self.db.get(key)? {
            None => Ok(None),
            Some(v) => {
                let (_, entry): (Scope, CatalogEntry) = decode(key, &v, MAX_FRAME_BYTES)?;
                Ok(Some(entry.version))
            }
        }
    }

    /// One materialized catalog entry.
    pub fn catalog_entry(
        &self,
        origin: NodeId,
        code: &str,
    ) -> Result<Option<(Scope, CatalogEntry)>, StoreError> {
        let key = catalog_key(origin, code);
        match self.db.get(&key)? {
            None => Ok(None),
            Some(v) => Ok(Some(decode(&key, &v, MAX_FRAME_BYTES)?)),
        }
    }

    /// Every registration of an organization, with the node that made it.
    pub fn organization(&self, credit_code: &str) -> Result<Vec<(NodeId, Organization)>, StoreError> {
        let mut prefix = vec![ORG];
        prefix.extend_from_slice(credit_code.as_bytes());
        prefix.push(0);
        self.db
            .scan_prefix(prefix)
            .map(|kv| {
                let (key, value) = kv?;
                decode(&key, &value, MAX_FRAME_BYTES)
            })
            .collect()
    }

    /// The organization as registered by `node`, if it registered it.
    pub fn organization_at(
        &self,
        credit_code: &str,
        node: NodeId,
    ) -> Result<Option<Organization>, StoreError> {
        let key = org_key(credit_code, node);
        match self.db.get(&key)? {
            None => Ok(None),
            Some(v) => Ok(Some(decode::<(NodeId, Organization)>(&key, &v, MAX_FRAME_BYTES)?.1)),
        }
    }

    /// Every registered organization this node knows, with the node it is registered at.
    pub fn organizations(&self) -> impl Iterator<Item = Result<(NodeId, Organization), StoreError>> + '_ {
        self.db.scan_prefix([ORG]).map(|kv| {
            let (key, value) = kv?;
            decode(&key, &value, MAX_FRAME_BYTES)
        })
    }

    /// This node's own working copy of an entry (any status), with its scope.
    pub fn own_entry(&self, code: &str) -> Result<Option<(Scope, CatalogEntry)>, StoreError> {
        let key = own_key(code);
        match self.db.get(&key)? {
            None => Ok(None),
            Some(v) => Ok(Some(decode(&key, &v, MAX_FRAME_BYTES)?)),
        }
    }

    /// Every own entry (drafts included), with its scope.
    pub fn own_entries(&self) -> impl Iterator<Item = Result<(Scope, CatalogEntry), StoreError>> + '_ {
        self.db.scan_prefix([OWN]).map(|kv| {
            let (key, value) = kv?;
            decode(&key, &value, MAX_FRAME_BYTES)
        })
    }

    /// Takes the next resource-code sequence number of this node (atomic).
    pub fn next_code_seq(&self) -> Result<u64, StoreError> {
        let next = self.db.update_and_fetch(CODE_SEQ, |old| {
            let n = old.and_then(|b| <[u8; 8]>::try_from(b).ok()).map_or(0, u64::from_be_bytes);
            Some((n + 1).to_be_bytes().to_vec())
        })?;
        let bytes = next.as_deref().and_then(|b| <[u8; 8]>::try_from(b).ok()).unwrap_or_default();
        Ok(u64::from_be_bytes(bytes))
    }

    /// A named sled tree of this store, for state kept beside the logs (accounts).
    pub fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(name)?)
    }

    /// Size of the store on disk, in bytes.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cascade_protocol::catalog::{CatalogEntry, EntryDraft, EntryStatus};
    use cascade_protocol::{DeltaBody, GENESIS_HASH};
    use ed25519_dalek::SigningKey;

    fn entry(version: u64) -> CatalogEntry {
        let draft = EntryDraft {
            code: None,
            name: format!("v{version}"),
            classification: "3".into(),
            provider: "91350100M000100Y43".into(),
            summary: "s".into(),
            format: cascade_protocol::catalog::ResourceFormat::ElectronicFile,
            data_items: vec![],
            share_type: cascade_protocol::catalog::ShareType::Unconditional,
            share_condition: None,
            not_shared_basis: None,
            share_mode: cascade_protocol::catalog::ShareMode::Platform,
            open_type: cascade_protocol::catalog::OpenType::Closed,
            open_condition: None,
            update_cycle: cascade_protocol::catalog::UpdateCycle::Daily,
            publish_date: None,
            related_codes: vec![],
        };
        CatalogEntry::from_draft(draft, "3/000001".into(), version, EntryStatus::Published)
    }

    fn chain(n: u64) -> Vec<Delta> {
        let key = SigningKey::from_bytes(&[3; 32]);
        let log = LogId { origin: "370100".parse().unwrap(), scope: Scope::Federation };
        let mut prev = GENESIS_HASH;
        (1..=n)
            .map(|seq| {
                let d = Delta::sign(&key, log, seq, prev, &DeltaBody::Catalog(entry(seq))).unwrap();
                prev = d.hash();
                d
            })
            .collect()
    }

    #[tokio::test]
    async fn logs_survive_reopen_and_refuse_holes() {
        let dir = tempfile::tempdir().unwrap();
        let deltas = chain(5);
        {
            let store = Store::open(dir.path()).unwrap();
            store.apply(&deltas[..3], &[]).unwrap();
            let err = store.apply(&deltas[4..], &[]).unwrap_err();
            assert!(matches!(err, StoreError::OutOfOrder { expected: 4, got: 5, .. }), "{err}");
            store.flush().await.unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.head(deltas[0].log).unwrap(), 3);
        let back: Vec<Delta> = store.range(deltas[0].log, 2, 3).map(Result::unwrap).collect();
        assert_eq!(back, deltas[1..3].to_vec());
        let (_, materialized) = store.catalog_entry(deltas[0].log.origin, "3/000001").unwrap().unwrap();
        assert_eq!(materialized.version, 3);
    }

    #[test]
    fn an_older_version_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = SigningKey::from_bytes(&[3; 32]);
        let log = LogId { origin: "370100".parse().unwrap(), scope: Scope::Federation };
        let d1 = Delta::sign(&key, log, 1, GENESIS_HASH, &DeltaBody::Catalog(entry(5))).unwrap();
        let d2 = Delta::sign(&key, log, 2, d1.hash(), &DeltaBody::Catalog(entry(4))).unwrap();
        store.apply(&[d1, d2], &[]).unwrap();
        let (_, e) = store.catalog_entry(log.origin, "3/000001").unwrap().unwrap();
        assert_eq!(e.version, 5);
    }

    #[test]
    fn a_damaged_record_is_reported_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let deltas = chain(1);
        store.apply(&deltas, &[]).unwrap();
        store.db.insert(log_key(deltas[0].log, 1), &b"garbage"[..]).unwrap();
        let err = store.all_deltas().next().unwrap().unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    }
}
