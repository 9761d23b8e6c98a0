//! Queries of the admin interface: materialized views read back.

use crate::keys::*;
use crate::{backend, decode, entry_of, hex, own_of, Store};
use cascade_core::{AccountRecord, StoreError, TokenRecord};
use cascade_protocol::catalog::CatalogEntry;
use cascade_protocol::limits::MAX_FRAME_BYTES;
use cascade_protocol::org::Organization;
use cascade_protocol::{DeltaBody, LogId, NodeId, Scope};
use serde::Serialize;

/// One entry of the federated catalog as materialized here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CatalogRow {
    /// The node that published it.
    pub origin: NodeId,
    /// Its scope.
    pub scope: Scope,
    /// The entry.
    #[serde(flatten)]
    pub entry: CatalogEntry,
}

/// One registration of an organization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OrganizationRow {
    /// The node it is registered at.
    pub origin: NodeId,
    /// The organization.
    pub organization: Organization,
}

fn corrupt(key: &[u8], reason: &str) -> StoreError {
    StoreError::Corrupt { key: hex(key), reason: reason.into() }
}

fn seq_value(key: &[u8], value: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(value).map(u64::from_be_bytes).map_err(|_| corrupt(key, "bad pointer"))
}

impl Store {
    fn catalog_row(&self, key: &[u8], value: &[u8]) -> Result<CatalogRow, StoreError> {
        let origin = origin_at(key, 1)?;
        let scope = key.get(5).copied().and_then(scope_of).ok_or_else(|| corrupt(key, "bad scope in key"))?;
        let delta = self.pointed(key, LogId { origin, scope }, seq_value(key, value)?)?;
        Ok(CatalogRow { origin, scope, entry: entry_of(key, &delta.body)? })
    }

    fn organization_row(&self, key: &[u8], value: &[u8]) -> Result<OrganizationRow, StoreError> {
        let origin = origin_at(key, key.len().saturating_sub(4))?;
        let (scope, seq) = value.split_first().ok_or_else(|| corrupt(key, "empty pointer"))?;
        let scope = scope_of(*scope).ok_or_else(|| corrupt(key, "bad scope"))?;
        let delta = self.pointed(key, LogId { origin, scope }, seq_value(key, seq)?)?;
        match decode::<DeltaBody>(key, &delta.body, MAX_FRAME_BYTES)? {
            DeltaBody::Organization(organization) => Ok(OrganizationRow { origin, organization }),
            _ => Err(corrupt(key, "not an organization")),
        }
    }

    /// The federated catalog as materialized here, by origin, then scope, then code;
    /// only `origin`'s entries when given.
    pub fn catalog(
        &self,
        origin: Option<NodeId>,
    ) -> impl Iterator<Item = Result<CatalogRow, StoreError>> + '_ {
        let prefix = origin.map_or_else(|| vec![CATALOG], catalog_prefix);
        self.db.scan_prefix(prefix).map(|kv| {
            let (key, value) = kv.map_err(backend)?;
            self.catalog_row(&key, &value)
        })
    }

    /// The entry `code` of `origin`, in whichever scope it was published.
    pub fn catalog_entry(&self, origin: NodeId, code: &str) -> Result<Vec<CatalogRow>, StoreError> {
        let mut rows = Vec::new();
        for scope in [Scope::Federation, Scope::Province] {
            let key = catalog_key(origin, scope, code);
            if let Some(value) = self.db.get(&key).map_err(backend)? {
                rows.push(self.catalog_row(&key, &value)?);
            }
        }
        Ok(rows)
    }

    /// Every own draft, with its scope (published and withdrawn own entries are in
    /// `catalog(Some(me))`).
    pub fn own_entries(&self) -> impl Iterator<Item = Result<(Scope, CatalogEntry), StoreError>> + '_ {
        self.db.scan_prefix([OWN]).map(|kv| {
            let (key, value) = kv.map_err(backend)?;
            own_of(&key, &value)
        })
    }

    /// Every registration this node knows, by credit code.
    pub fn organizations(&self) -> impl Iterator<Item = Result<OrganizationRow, StoreError>> + '_ {
        self.db.scan_prefix([ORG]).map(|kv| {
            let (key, value) = kv.map_err(backend)?;
            self.organization_row(&key, &value)
        })
    }

    /// Every registration of one organization, by node.
    pub fn organization(&self, credit_code: &str) -> Result<Vec<OrganizationRow>, StoreError> {
        self.db
            .scan_prefix(org_prefix(credit_code))
            .map(|kv| {
                let (key, value) = kv.map_err(backend)?;
                self.organization_row(&key, &value)
            })
            .collect()
    }

    /// Every account.
    pub fn accounts(&self) -> Result<Vec<AccountRecord>, StoreError> {
        self.db
            .scan_prefix([ACCOUNT])
            .map(|kv| {
                let (key, value) = kv.map_err(backend)?;
                decode(&key, &value, MAX_FRAME_BYTES)
            })
            .collect()
    }

    /// Every token (sessions and API tokens).
    pub fn tokens(&self) -> impl Iterator<Item = Result<TokenRecord, StoreError>> + '_ {
        self.db.scan_prefix([TOKEN]).map(|kv| {
            let (key, value) = kv.map_err(backend)?;
            decode(&key, &value, MAX_FRAME_BYTES)
        })
    }
}
