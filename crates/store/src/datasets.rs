//! Reading dataset versions: one, the latest, or all of an entry's.

use crate::keys::{dataset_key, dataset_prefix};
use crate::read::corrupt;
use crate::{backend, Store};
use cascade_core::StoreError;
use cascade_protocol::dataset::Manifest;
use cascade_protocol::{DeltaBody, NodeId};

/// Most versions one listing returns (the newest ones).
pub const MAX_VERSIONS_LISTED: usize = 1_000;

impl Store {
    fn manifest_row(&self, origin: NodeId, key: &[u8], value: &[u8]) -> Result<Manifest, StoreError> {
        match self.pointed_body(key, origin, value)? {
            DeltaBody::Dataset(m) => Ok(m),
            _ => Err(corrupt(key, "not a dataset version")),
        }
    }

    /// A version of `origin`'s entry `code`, the latest when `version` is none.
    pub(crate) fn manifest_of(
        &self,
        origin: NodeId,
        code: &str,
        version: Option<u64>,
    ) -> Result<Option<Manifest>, StoreError> {
        let found = match version {
            Some(v) => {
                let key = dataset_key(origin, code, v);
                self.db.get(&key).map_err(backend)?.map(|value| (key, value))
            }
            None => self
                .db
                .scan_prefix(dataset_prefix(origin, code))
                .next_back()
                .transpose()
                .map_err(backend)?
                .map(|(k, v)| (k.to_vec(), v)),
        };
        found.map(|(key, value)| self.manifest_row(origin, &key, &value)).transpose()
    }

    /// Every version this node knows, entry by entry, oldest first within an
    /// entry (for garbage collection).
    pub fn all_versions(&self) -> Result<Vec<Manifest>, StoreError> {
        self.db
            .scan_prefix([crate::keys::DATASET])
            .map(|row| {
                let (key, value) = row.map_err(backend)?;
                let origin = crate::keys::origin_at(&key, 1)?;
                self.manifest_row(origin, &key, &value)
            })
            .collect()
    }

    /// The versions of `origin`'s entry `code`, newest first (at most
    /// `MAX_VERSIONS_LISTED`).
    pub fn versions(&self, origin: NodeId, code: &str) -> Result<Vec<Manifest>, StoreError> {
        self.newest_versions(origin, code, MAX_VERSIONS_LISTED)
    }

    /// The newest `n` versions of `origin`'s entry `code`, newest first.
    pub fn newest_versions(&self, origin: NodeId, code: &str, n: usize) -> Result<Vec<Manifest>, StoreError> {
        self.db
            .scan_prefix(dataset_prefix(origin, code))
            .rev()
            .take(n)
            .map(|row| {
                let (key, value) = row.map_err(backend)?;
                self.manifest_row(origin, &key, &value)
            })
            .collect()
    }
}
