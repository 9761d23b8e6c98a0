//! Upgrades a store of an earlier format in place, when it opens.
//!
//! Format 2 → 3: accounts gained `disabled` and `generation`, tokens `generation`
//! (records are bincode: fields cannot be added without rewriting them), and the
//! audit log gained its index rows.
//!
//! Format 3 → 4: a catalog row's value gained when this node stored it (16 bytes
//! instead of 8). Format 4 reads the old rows as they are ("time unknown"), so
//! the upgrade only writes the new number: what it guards against is an older
//! binary opening a store with new rows, which it now refuses by number instead
//! of calling the rows corrupt. (Format 2 upgrades straight to 4.)

use crate::keys::{ACCOUNT, FORMAT_KEY, TOKEN};
use crate::{backend, decode, Store, FORMAT};
use cascade_access::{Role, TokenKind};
use cascade_core::{AccountRecord, StoreError, TokenRecord};
use cascade_protocol::codec;
use cascade_protocol::limits::MAX_FRAME_BYTES;
use serde::Deserialize;

/// An account as format 2 stored it.
#[derive(Deserialize)]
struct AccountV2 {
    username: String,
    organization: String,
    roles: Vec<Role>,
    password_hash: String,
    created_at: u64,
}

/// A token as format 2 stored it.
#[derive(Deserialize)]
struct TokenV2 {
    id: String,
    kind: TokenKind,
    username: String,
    label: String,
    secret_hash: String,
    created_at: u64,
    expires_at: Option<u64>,
    revoked: bool,
}

impl Store {
    /// Rewrites a format 2 store as format 3. Crash-safe: the audit index rows are
    /// written first (idempotent, and unread while the format says 2), then the
    /// rewritten records and the new format number in one atomic batch, so a store
    /// is never left with format 3 records under format 2.
    pub(crate) fn upgrade_from_2(&self) -> Result<(), StoreError> {
        let indexed = self.index_audit_log()?;
        let mut batch = sled::Batch::default();
        let mut rewritten = 0;
        for kv in self.db.scan_prefix([ACCOUNT]) {
            let (key, value) = kv.map_err(backend)?;
            let a: AccountV2 = decode(&key, &value, MAX_FRAME_BYTES)?;
            let record = AccountRecord {
                username: a.username,
                organization: a.organization,
                roles: a.roles,
                password_hash: a.password_hash,
                created_at: a.created_at,
                disabled: false,
                generation: 0,
            };
            batch.insert(key, codec::encode(&record)?);
            rewritten += 1;
        }
        for kv in self.db.scan_prefix([TOKEN]) {
            let (key, value) = kv.map_err(backend)?;
            let t: TokenV2 = decode(&key, &value, MAX_FRAME_BYTES)?;
            let record = TokenRecord {
                id: t.id,
                kind: t.kind,
                username: t.username,
                label: t.label,
                secret_hash: t.secret_hash,
                created_at: t.created_at,
                expires_at: t.expires_at,
                revoked: t.revoked,
                generation: 0,
            };
            batch.insert(key, codec::encode(&record)?);
            rewritten += 1;
        }
        batch.insert(FORMAT_KEY, &FORMAT.to_be_bytes());
        self.db.apply_batch(batch).map_err(backend)?;
        self.db.flush().map_err(backend)?;
        tracing::info!(rewritten, indexed, "store upgraded from format 2 to {FORMAT}");
        Ok(())
    }

    /// Marks a format 3 store as format 4 (its rows read as they are).
    pub(crate) fn upgrade_from_3(&self) -> Result<(), StoreError> {
        self.db.insert(FORMAT_KEY, &FORMAT.to_be_bytes()).map_err(backend)?;
        self.db.flush().map_err(backend)?;
        tracing::info!("store upgraded from format 3 to {FORMAT}");
        Ok(())
    }
}
