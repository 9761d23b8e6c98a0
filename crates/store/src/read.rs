//! Queries of the admin interface: materialized views read back.

use crate::catalog_index::{self, CatalogFilter};
use crate::keys::*;
use crate::{backend, decode, entry_of, hex, own_of, Store};
use cascade_access::TokenKind;
use cascade_core::{AccountRecord, StoreError, TokenRecord};
use cascade_protocol::catalog::CatalogEntry;
use cascade_protocol::limits::{MAX_CATALOG_EXAMINED, MAX_DIRECTORY_EXAMINED, MAX_FRAME_BYTES, MAX_LIST};
use cascade_protocol::org::Organization;
use cascade_protocol::{DeltaBody, LogId, NodeId, Scope};
use serde::Serialize;
use std::ops::Bound;

/// Entries of the catalog index looked at per turn of its lock: about a
/// millisecond, so a commit never waits long for a search.
const TURN: usize = 8192;

/// Most index entries one counting search walks (about 50 ms without text):
/// a national catalog's open entries many times over.
const MAX_CATALOG_COUNTED: usize = 2_000_000;

/// One entry of the federated catalog as materialized here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CatalogRow {
    /// The node that published it.
    pub origin: NodeId,
    /// Its scope.
    pub scope: Scope,
    /// When this node stored this version (unix ms): none for own drafts and for
    /// rows stored before the time was kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_ms: Option<u64>,
    /// The entry.
    #[serde(flatten)]
    pub entry: CatalogEntry,
}

/// A page of a listing, and where the next one starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, in the listing's order.
    pub items: Vec<T>,
    /// Pass back to continue; none when the listing is complete.
    pub next: Option<Cursor>,
}

/// A window of a counted catalog search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Entries that pass the filter (those counted, when not `counted_all`).
    pub count: usize,
    /// Whether every entry was looked at (false past `MAX_CATALOG_COUNTED`).
    pub counted_all: bool,
    /// The window's rows, in key order.
    pub rows: Vec<CatalogRow>,
}

/// Where a listing stopped: the store key of the last row it looked at, shown to
/// callers as hex. A cursor names a place, not a row: rows added or removed
/// meanwhile do not make a page repeat or skip others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor(Vec<u8>);

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Cursor, String> {
        let bad = || format!("cursor {s:?} is not one this node gave");
        if !s.len().is_multiple_of(2) || s.len() > 2 * 512 {
            return Err(bad());
        }
        (0..s.len())
            .step_by(2)
            .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<Vec<u8>>>()
            .map(Cursor)
            .ok_or_else(bad)
    }
}

/// One registration of an organization.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrganizationRow {
    /// The node it is registered at.
    pub origin: NodeId,
    /// The organization.
    pub organization: Organization,
}

pub(crate) fn corrupt(key: &[u8], reason: &str) -> StoreError {
    StoreError::Corrupt { key: hex(key), reason: reason.into() }
}

fn seq_value(key: &[u8], value: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(value).map(u64::from_be_bytes).map_err(|_| corrupt(key, "bad pointer"))
}

/// A catalog row's value: the seq of the delta that set it, then when this node
/// stored it (unix ms). Rows written before the time was kept hold the seq only.
pub(crate) fn catalog_value(seq: u64, stored_ms: u64) -> [u8; 16] {
    let mut value = [0; 16];
    value[..8].copy_from_slice(&seq.to_be_bytes());
    value[8..].copy_from_slice(&stored_ms.to_be_bytes());
    value
}

/// Reads a catalog row's value: the seq and, when kept, the time it was stored.
fn catalog_value_of(key: &[u8], value: &[u8]) -> Result<(u64, Option<u64>), StoreError> {
    match value.len() {
        8 => Ok((seq_value(key, value)?, None)),
        16 => Ok((seq_value(key, &value[..8])?, Some(seq_value(key, &value[8..])?))),
        _ => Err(corrupt(key, "bad catalog row")),
    }
}

impl Store {
    pub(crate) fn catalog_row(&self, key: &[u8], value: &[u8]) -> Result<CatalogRow, StoreError> {
        let origin = origin_at(key, 1)?;
        let scope = key.get(5).copied().and_then(scope_of).ok_or_else(|| corrupt(key, "bad scope in key"))?;
        let (seq, stored_ms) = catalog_value_of(key, value)?;
        let delta = self.pointed(key, LogId { origin, scope }, seq)?;
        Ok(CatalogRow { origin, scope, stored_ms, entry: entry_of(key, &delta.body)? })
    }

    /// The body of the delta of `origin` that a (scope, seq) pointer names.
    pub(crate) fn pointed_body(
        &self,
        key: &[u8],
        origin: NodeId,
        value: &[u8],
    ) -> Result<DeltaBody, StoreError> {
        let (scope, seq) = value.split_first().ok_or_else(|| corrupt(key, "empty pointer"))?;
        let scope = scope_of(*scope).ok_or_else(|| corrupt(key, "bad scope"))?;
        let delta = self.pointed(key, LogId { origin, scope }, seq_value(key, seq)?)?;
        decode::<DeltaBody>(key, &delta.body, MAX_FRAME_BYTES)
    }

    fn organization_row(&self, key: &[u8], value: &[u8]) -> Result<OrganizationRow, StoreError> {
        let origin = origin_at(key, key.len().saturating_sub(4))?;
        match self.pointed_body(key, origin, value)? {
            DeltaBody::Organization(organization) => Ok(OrganizationRow { origin, organization }),
            _ => Err(corrupt(key, "not an organization")),
        }
    }

    /// A page of the catalog listing: materialized entries by origin, scope and
    /// code, then own drafts when wanted; after `after` (a previous page's `next`).
    /// Walks the in-memory index in short turns, looking at most at
    /// `MAX_CATALOG_EXAMINED` entries, then reads only the rows it returns.
    pub fn catalog_page(
        &self,
        filter: &CatalogFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<CatalogRow>, StoreError> {
        let limit = limit.min(MAX_LIST);
        let ranges = catalog_index::ranges(filter, self.me);
        let mut filter = filter.clone();
        filter.q = filter.q.map(|q| q.to_lowercase());
        let mut keys = Vec::new();
        let mut next = after.map(|c| c.0.clone());
        let mut budget = MAX_CATALOG_EXAMINED;
        while keys.len() < limit && budget > 0 {
            let turn = TURN.min(budget);
            let index = self.catalog.read().unwrap_or_else(|p| p.into_inner());
            let (page, examined) = index.page(&filter, &ranges, next.as_deref(), limit - keys.len(), turn);
            drop(index);
            keys.extend(page.keys);
            budget -= examined;
            next = page.next;
            if next.is_none() {
                break;
            }
        }
        Ok(Page { items: self.catalog_rows(keys, &filter)?, next: next.map(Cursor) })
    }

    /// A window of the catalog in key order, and how many entries pass `filter`
    /// in all: `skip` passing entries are passed over, then at most `limit` read.
    /// The whole index is walked (in short turns, at most
    /// `MAX_CATALOG_COUNTED` entries); only the window's rows are read.
    pub fn catalog_window(
        &self,
        filter: &CatalogFilter,
        skip: usize,
        limit: usize,
    ) -> Result<Window, StoreError> {
        let limit = limit.min(MAX_LIST);
        let ranges = catalog_index::ranges(filter, self.me);
        let mut filter = filter.clone();
        filter.q = filter.q.map(|q| q.to_lowercase());
        let (mut count, mut keys, mut next) = (0usize, Vec::new(), None::<Vec<u8>>);
        let mut budget = MAX_CATALOG_COUNTED;
        loop {
            let index = self.catalog.read().unwrap_or_else(|p| p.into_inner());
            let (stopped, examined) =
                index.walk(&filter, &ranges, next.as_deref(), TURN.min(budget), |key| {
                    if count >= skip && keys.len() < limit {
                        keys.push(key.to_vec());
                    }
                    count += 1;
                    true
                });
            drop(index);
            budget -= examined;
            next = stopped;
            if next.is_none() {
                break;
            }
            if budget == 0 {
                break;
            }
        }
        Ok(Window { count, counted_all: next.is_none(), rows: self.catalog_rows(keys, &filter)? })
    }

    /// Reads the rows of `keys`, keeping those that still pass `filter` (its `q`
    /// lower-cased): a row may have changed since the index was walked.
    fn catalog_rows(
        &self,
        keys: Vec<Vec<u8>>,
        filter: &CatalogFilter,
    ) -> Result<Vec<CatalogRow>, StoreError> {
        let mut items = Vec::with_capacity(keys.len());
        for key in keys {
            // A draft published meanwhile is gone from the store before the index.
            let Some(value) = self.db.get(&key).map_err(backend)? else { continue };
            let row = match key.first() {
                Some(&CATALOG) => self.catalog_row(&key, &value)?,
                _ => {
                    let (scope, entry) = own_of(&key, &value)?;
                    CatalogRow { origin: self.me, scope, stored_ms: None, entry }
                }
            };
            if filter.admits(&key, row.origin, &row.entry, row.stored_ms.unwrap_or(0)) {
                items.push(row);
            }
        }
        Ok(items)
    }

    /// Every materialized entry with this code (one per origin and scope using it).
    pub fn catalog_by_code(&self, code: &str) -> Result<Vec<CatalogRow>, StoreError> {
        let keys = self.catalog.read().unwrap_or_else(|p| p.into_inner()).keys_of_code(code);
        let mut rows = Vec::new();
        for key in keys {
            if let Some(value) = self.db.get(&key).map_err(backend)? {
                rows.push(self.catalog_row(&key, &value)?);
            }
        }
        Ok(rows)
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

    /// How many entries the catalog index holds (materialized and own drafts).
    pub fn catalog_len(&self) -> usize {
        self.catalog.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Walks the rows under `prefix` after `after`, keeping what `keep` returns,
    /// until `limit` are kept or `MAX_DIRECTORY_EXAMINED` rows were looked at.
    pub(crate) fn scan_page<T>(
        &self,
        prefix: &[u8],
        after: Option<&Cursor>,
        limit: usize,
        mut keep: impl FnMut(&[u8], &[u8]) -> Result<Option<T>, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        let limit = limit.min(MAX_LIST);
        let from = match after {
            Some(c) if c.0.as_slice() >= prefix => Bound::Excluded(c.0.clone()),
            _ => Bound::Included(prefix.to_vec()),
        };
        let mut end = prefix.to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let mut page = Page { items: Vec::new(), next: None };
        let mut last: Option<Vec<u8>> = None;
        for (examined, kv) in self.db.range((from, Bound::Excluded(end))).enumerate() {
            let (key, value) = kv.map_err(backend)?;
            if page.items.len() == limit || examined == MAX_DIRECTORY_EXAMINED {
                page.next = last.map(Cursor);
                return Ok(page);
            }
            if let Some(item) = keep(&key, &value)? {
                page.items.push(item);
            }
            last = Some(key.to_vec());
        }
        Ok(page)
    }

    /// A page of the registrations this node knows, by credit code, optionally of
    /// one origin or division.
    pub fn organizations_page(
        &self,
        origin: Option<NodeId>,
        division: Option<NodeId>,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<OrganizationRow>, StoreError> {
        self.scan_page(&[ORG], after, limit, |key, value| {
            if origin.is_some_and(|o| Ok(o) != origin_at(key, key.len().saturating_sub(4))) {
                return Ok(None);
            }
            let row = self.organization_row(key, value)?;
            Ok(division.is_none_or(|d| d == row.organization.division).then_some(row))
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

    /// A page of the accounts, by username.
    pub fn accounts_page(
        &self,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<AccountRecord>, StoreError> {
        self.scan_page(&[ACCOUNT], after, limit, |key, value| decode(key, value, MAX_FRAME_BYTES).map(Some))
    }

    /// A page of the tokens of one kind, by id, optionally of one account.
    pub fn tokens_page(
        &self,
        kind: TokenKind,
        username: Option<&str>,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<TokenRecord>, StoreError> {
        self.scan_page(&[TOKEN], after, limit, |key, value| {
            let token: TokenRecord = decode(key, value, MAX_FRAME_BYTES)?;
            Ok((token.kind == kind && username.is_none_or(|u| u == token.username)).then_some(token))
        })
    }
}
