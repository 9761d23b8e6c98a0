//! Reads of the open-data face: published, federation-wide entries whose open
//! type is open, with their newest dataset versions, their active services and
//! their provider's name. Public and unauthenticated, so every read is bounded
//! (a window of at most `MAX_LIST` entries, `MAX_OPEN_VERSIONS` versions each)
//! and runs under its own concurrency limit.

use crate::node::Node;
use crate::query::ReadKind;
use cascade_core::{CommandError, StoreError};
use cascade_protocol::catalog::{EntryStatus, OpenType};
use cascade_protocol::dataset::Manifest;
use cascade_protocol::limits::MAX_LIST;
use cascade_protocol::org::Organization;
use cascade_protocol::service::Service;
use cascade_protocol::{NodeId, Scope};
use cascade_store::{CatalogFilter, CatalogRow, Cursor, Store};
use std::collections::BTreeMap;

/// Dataset versions shown per open entry (the newest): the open face is a
/// catalog, not an archive; older versions stay listed in the admin API.
pub const MAX_OPEN_VERSIONS: usize = 10;

/// Organizations one listing walks past (its `offset` included): the
/// directory's rows are decoded one by one, so a listing deep into a national
/// directory is refused rather than walked for every request.
pub const MAX_OPEN_ORGANIZATIONS_WALKED: usize = 20_000;

/// Which open entries a search wants, and which window of them.
#[derive(Clone, Debug, Default)]
pub struct OpenSearch {
    /// Case-insensitive text in code, name or summary.
    pub q: Option<String>,
    /// Only entries this node stored at or after this time (unix ms).
    pub stored_since_ms: Option<u64>,
    /// Matching entries passed over first (in key order: origin, then code).
    pub skip: usize,
    /// Most entries returned (at most `MAX_LIST`).
    pub limit: usize,
}

/// An open entry and what the open face publishes with it.
#[derive(Clone, Debug)]
pub struct OpenEntry {
    /// The entry as materialized here.
    pub row: CatalogRow,
    /// Its provider, when this node knows the organization.
    pub provider: Option<Organization>,
    /// Its newest dataset versions, newest first.
    pub versions: Vec<Manifest>,
    /// Its active services.
    pub services: Vec<Service>,
}

/// A window of the open catalog.
#[derive(Clone, Debug)]
pub struct OpenPage {
    /// Open entries matching the search (counted up to the store's bound).
    pub count: usize,
    /// The window's entries, by origin then code.
    pub entries: Vec<OpenEntry>,
}

fn open_filter(q: Option<String>, stored_since_ms: Option<u64>) -> CatalogFilter {
    CatalogFilter {
        statuses: vec![EntryStatus::Published],
        open_type: Some(OpenType::Open),
        scope: Some(Scope::Federation),
        stored_since_ms,
        q: q.filter(|q| !q.is_empty()),
        ..CatalogFilter::default()
    }
}

/// Adds to each row its provider, newest versions and active services.
fn enrich(store: &Store, rows: Vec<CatalogRow>) -> Result<Vec<OpenEntry>, StoreError> {
    let mut providers: BTreeMap<String, Option<Organization>> = BTreeMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let provider = match providers.get(&row.entry.provider) {
            Some(known) => known.clone(),
            None => {
                let found =
                    store.organization(&row.entry.provider)?.into_iter().next().map(|r| r.organization);
                providers.insert(row.entry.provider.clone(), found.clone());
                found
            }
        };
        let versions = store.newest_versions(row.origin, &row.entry.code, MAX_OPEN_VERSIONS)?;
        let services = store.active_services_of(row.origin, &row.entry.code)?;
        out.push(OpenEntry { row, provider, versions, services });
    }
    Ok(out)
}

impl Node {
    /// A window of the open catalog, counted.
    pub async fn open_catalog(&self, search: OpenSearch) -> Result<OpenPage, CommandError> {
        let filter = open_filter(search.q, search.stored_since_ms);
        let (skip, limit) = (search.skip, search.limit.min(MAX_LIST));
        self.read(ReadKind::Open, move |store| {
            let window = store.catalog_window(&filter, skip, limit)?;
            let entries = enrich(store, window.rows)?;
            Ok(OpenPage { count: window.count, entries })
        })
        .await
    }

    /// One open entry; `NotFound` unless it is published federation-wide and open.
    pub async fn open_entry(&self, origin: NodeId, code: String) -> Result<OpenEntry, CommandError> {
        let missing = format!("no open entry {code} of {origin}");
        let filter = open_filter(None, None);
        let found = self
            .read(ReadKind::Open, move |store| {
                let rows = store.catalog_entry(origin, &code)?;
                enrich(store, rows.into_iter().filter(|r| filter.admits_row(r)).collect())
            })
            .await?;
        found.into_iter().next().ok_or(CommandError::NotFound(missing))
    }

    /// The ids (origin, code) of a window of the open catalog, and how many
    /// open entries there are: what a listing of names needs, nothing more read.
    pub async fn open_ids(
        &self,
        skip: usize,
        limit: usize,
    ) -> Result<(usize, Vec<(NodeId, String)>), CommandError> {
        let filter = open_filter(None, None);
        let limit = limit.min(MAX_LIST);
        self.read(ReadKind::Open, move |store| {
            let window = store.catalog_window(&filter, skip, limit)?;
            Ok((window.count, window.rows.into_iter().map(|r| (r.origin, r.entry.code)).collect()))
        })
        .await
    }

    /// A window of the organizations this node knows, by credit code; an
    /// `offset` past `MAX_OPEN_ORGANIZATIONS_WALKED` is refused.
    pub async fn open_organizations(
        &self,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<Organization>, CommandError> {
        if skip >= MAX_OPEN_ORGANIZATIONS_WALKED {
            return Err(CommandError::field(
                "offset",
                format!(
                    "at most {MAX_OPEN_ORGANIZATIONS_WALKED}: find one organization with organization_show"
                ),
            ));
        }
        let limit = limit.min(MAX_LIST);
        self.read(ReadKind::Open, move |store| {
            let (mut out, mut seen, mut after) = (Vec::new(), 0usize, None::<Cursor>);
            let mut last = String::new();
            loop {
                let page = store.organizations_page(None, None, after.as_ref(), MAX_LIST)?;
                for row in page.items {
                    // Registered at several nodes: listed once (rows come by credit code).
                    if row.organization.credit_code == last {
                        continue;
                    }
                    last.clone_from(&row.organization.credit_code);
                    if seen >= skip && out.len() < limit {
                        out.push(row.organization);
                    }
                    seen += 1;
                }
                match page.next {
                    Some(next) if out.len() < limit && seen < MAX_OPEN_ORGANIZATIONS_WALKED => {
                        after = Some(next)
                    }
                    _ => return Ok(out),
                }
            }
        })
        .await
    }

    /// One organization by credit code.
    pub async fn open_organization(&self, credit_code: String) -> Result<Organization, CommandError> {
        let missing = format!("no organization {credit_code}");
        self.read(ReadKind::Open, move |store| store.organization(&credit_code))
            .await?
            .into_iter()
            .next()
            .map(|row| row.organization)
            .ok_or(CommandError::NotFound(missing))
    }
}
