//! Reads of the admin interface: materialized views, the audit log, accounts, the
//! neighbourhood and metrics. Reads never go through the core; they run on the
//! blocking pool, a few of each kind at a time, each walking an index and looking
//! at a bounded number of rows, and every listing is a page with a cursor.

use crate::node::Node;
use cascade_access::TokenKind;
use cascade_core::audit::{AuditFilter, AuditPage, AuditVerification};
use cascade_core::{Account, CommandError, LinkRole, StoreError, TokenRecord};
use cascade_metrics::{Collect, Exposition, Float, Kind};
use cascade_protocol::catalog::{EntryStatus, OpenType, ResourceFormat, ShareType, UpdateCycle};
use cascade_protocol::limits::{
    MAX_CONCURRENT_AUDIT_READS, MAX_CONCURRENT_CATALOG_READS, MAX_CONCURRENT_DIRECTORY_READS,
    MAX_CONCURRENT_OPEN_READS, MAX_LIST, READ_WAIT_MS,
};
use cascade_protocol::{NodeId, Tier};
use cascade_store::{CatalogFilter, CatalogRow, Cursor, OrganizationRow, Page, Store};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Filters of the federated catalog listing, and where to start.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CatalogQuery {
    /// Only entries originated by this node.
    pub origin: Option<NodeId>,
    /// Only entries whose origin is at this tier.
    pub tier: Option<Tier>,
    /// Only entries of this provider (credit code).
    pub provider: Option<String>,
    /// Only entries of this share type.
    pub share_type: Option<ShareType>,
    /// Only entries of this open type.
    pub open_type: Option<OpenType>,
    /// Only entries of this format.
    pub format: Option<ResourceFormat>,
    /// Only entries of this update cycle.
    pub update_cycle: Option<UpdateCycle>,
    /// "published" (default), "withdrawn", "draft" (own drafts) or "all".
    pub status: Option<String>,
    /// Case-insensitive text in code, name or summary.
    pub q: Option<String>,
    /// The `next` of the previous page.
    pub cursor: Option<String>,
    /// Most entries on the page (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// Where a listing starts and how much of it to return.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// The `next` of the previous page.
    pub cursor: Option<String>,
    /// Most items on the page (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// Items a page holds when the caller does not say.
const DEFAULT_PAGE: usize = 100;

/// Longest text search accepted, in characters.
const MAX_SEARCH_CHARS: usize = 200;

/// A page of a listing as the admin interface shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Listing<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; none when this is the last.
    pub next: Option<String>,
}

impl<T> Listing<T> {
    pub(crate) fn of<U>(page: Page<U>, f: impl FnMut(U) -> T) -> Listing<T> {
        Listing { items: page.items.into_iter().map(f).collect(), next: page.next.map(|c| c.to_string()) }
    }
}

/// A token as listed (never its secret).
#[derive(Clone, Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct TokenInfo {
    /// Its id.
    pub id: String,
    /// The account it acts as.
    pub username: String,
    /// What it is for.
    pub label: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds, for sessions.
    pub expires_at: Option<u64>,
    /// Whether it was revoked.
    pub revoked: bool,
}

impl From<TokenRecord> for TokenInfo {
    fn from(t: TokenRecord) -> TokenInfo {
        TokenInfo {
            id: t.id,
            username: t.username,
            label: t.label,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked: t.revoked,
        }
    }
}

/// A neighbour this node should have, and how it is doing.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Neighbour {
    /// Its id.
    pub id: NodeId,
    /// Parent or child.
    pub role: LinkRole,
    /// "connected", "syncing", "disconnected" or "revoked".
    pub state: &'static str,
    /// Unix seconds of its last frame, while linked.
    pub last_frame_at: Option<u64>,
    /// Deltas it lacks, as far as this node knows.
    pub lag_deltas: u64,
    /// Seconds since it was last in sync.
    pub lag_seconds: u64,
}

/// What a read is, for its concurrency limit.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ReadKind {
    Audit,
    Catalog,
    Directory,
    /// The public open-data face.
    Open,
}

/// How many reads of each kind may run at once (see `limits`).
/// A permit travels with its work onto the blocking pool: a caller that goes away
/// mid-read frees no turn before the read itself ends.
pub(crate) struct Reads {
    audit: Arc<Semaphore>,
    catalog: Arc<Semaphore>,
    directory: Arc<Semaphore>,
    open: Arc<Semaphore>,
}

impl Default for Reads {
    fn default() -> Reads {
        Reads {
            audit: Arc::new(Semaphore::new(MAX_CONCURRENT_AUDIT_READS)),
            catalog: Arc::new(Semaphore::new(MAX_CONCURRENT_CATALOG_READS)),
            directory: Arc::new(Semaphore::new(MAX_CONCURRENT_DIRECTORY_READS)),
            open: Arc::new(Semaphore::new(MAX_CONCURRENT_OPEN_READS)),
        }
    }
}

fn unavailable(e: StoreError) -> CommandError {
    CommandError::Unavailable(e.to_string())
}

pub(crate) fn cursor_of(cursor: Option<&str>) -> Result<Option<Cursor>, CommandError> {
    cursor.map(|c| c.parse::<Cursor>().map_err(|e| CommandError::field("cursor", e))).transpose()
}

pub(crate) fn limit_of(limit: Option<usize>) -> usize {
    limit.unwrap_or(DEFAULT_PAGE).min(MAX_LIST)
}

impl Node {
    /// Runs a read on the blocking pool, when one of its kind may start: a read
    /// that waits longer than `READ_WAIT_MS` is answered `Busy`.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        kind: ReadKind,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, CommandError> {
        let reads = self.reads();
        let semaphore = match kind {
            ReadKind::Audit => &reads.audit,
            ReadKind::Catalog => &reads.catalog,
            ReadKind::Directory => &reads.directory,
            ReadKind::Open => &reads.open,
        };
        let wait = std::time::Duration::from_millis(READ_WAIT_MS);
        let permit = tokio::time::timeout(wait, semaphore.clone().acquire_owned())
            .await
            .map_err(|_| CommandError::Busy(format!("too many {kind:?} reads in progress").to_lowercase()))?
            .map_err(|_| CommandError::Busy("the node is stopping".into()))?;
        let store = self.store().clone();
        tokio::task::spawn_blocking(move || {
            let result = f(&store);
            drop(permit);
            result
        })
        .await
        .map_err(|e| CommandError::Unavailable(format!("a read failed: {e}")))?
        .map_err(unavailable)
    }

    /// A page of the federated catalog as this node sees it, filtered.
    pub async fn catalog(&self, query: CatalogQuery) -> Result<Listing<CatalogRow>, CommandError> {
        let statuses = match query.status.as_deref().unwrap_or("published") {
            "published" => vec![EntryStatus::Published],
            "withdrawn" => vec![EntryStatus::Withdrawn],
            "draft" => vec![EntryStatus::Draft],
            "all" => vec![EntryStatus::Published, EntryStatus::Withdrawn, EntryStatus::Draft],
            _ => return Err(CommandError::field("status", "one of published, withdrawn, draft, all")),
        };
        if query.q.as_ref().is_some_and(|q| q.chars().count() > MAX_SEARCH_CHARS) {
            return Err(CommandError::field("q", format!("at most {MAX_SEARCH_CHARS} characters")));
        }
        let after = cursor_of(query.cursor.as_deref())?;
        let limit = limit_of(query.limit);
        let filter = CatalogFilter {
            origin: query.origin,
            tier: query.tier,
            provider: query.provider.filter(|p| !p.is_empty()),
            share_type: query.share_type,
            open_type: query.open_type,
            format: query.format,
            update_cycle: query.update_cycle,
            statuses,
            q: query.q.filter(|q| !q.is_empty()),
            ..CatalogFilter::default()
        };
        let page = self
            .read(ReadKind::Catalog, move |store| store.catalog_page(&filter, after.as_ref(), limit))
            .await?;
        Ok(Listing::of(page, |row| row))
    }

    /// One entry: this node's own working copy if it has one, else the federated
    /// entry with that code (`origin` picks one when several nodes use the code).
    pub async fn entry(&self, code: String, origin: Option<NodeId>) -> Result<CatalogRow, CommandError> {
        let me = self.identity().id;
        let lookup = code.clone();
        let mut found = self
            .read(ReadKind::Catalog, move |store| {
                use cascade_core::StateStore;
                if origin.is_none_or(|o| o == me) {
                    if let Some((scope, entry)) = store.own_entry(&lookup)? {
                        return Ok(vec![CatalogRow { origin: me, scope, stored_ms: None, entry }]);
                    }
                }
                match origin {
                    Some(origin) => store.catalog_entry(origin, &lookup),
                    None => store.catalog_by_code(&lookup),
                }
            })
            .await?;
        match found.len() {
            0 => Err(CommandError::NotFound(format!("no catalog entry {code}"))),
            1 => Ok(found.remove(0)),
            n => Err(CommandError::Conflict(format!("{code} is used by {n} nodes; add ?origin="))),
        }
    }

    /// A page of the organizations this node knows, filtered.
    pub async fn organizations(
        &self,
        origin: Option<NodeId>,
        division: Option<NodeId>,
        page: PageQuery,
    ) -> Result<Listing<OrganizationRow>, CommandError> {
        let after = cursor_of(page.cursor.as_deref())?;
        let limit = limit_of(page.limit);
        let page = self
            .read(ReadKind::Directory, move |store| {
                store.organizations_page(origin, division, after.as_ref(), limit)
            })
            .await?;
        Ok(Listing::of(page, |row| row))
    }

    /// Every registration of one organization.
    pub async fn organization(&self, code: String) -> Result<Vec<OrganizationRow>, CommandError> {
        self.read(ReadKind::Directory, move |store| store.organization(&code)).await
    }

    /// A page of audit records matching `filter`.
    pub async fn audit(&self, filter: AuditFilter) -> Result<AuditPage, CommandError> {
        let walk = filter.walk().map_err(|e| CommandError::field("cursor", e))?;
        self.read(ReadKind::Audit, move |store| store.audit_query(&filter, walk)).await
    }

    /// Walks the whole audit chain, and checks it against this node's latest
    /// witnessed checkpoint.
    pub async fn verify_audit(&self) -> Result<AuditVerification, CommandError> {
        let checkpoint = self.status().audit_checkpoint;
        self.read(ReadKind::Audit, move |store| store.audit_verify(checkpoint)).await
    }

    /// A page of the accounts.
    pub async fn accounts(&self, page: PageQuery) -> Result<Listing<Account>, CommandError> {
        let after = cursor_of(page.cursor.as_deref())?;
        let limit = limit_of(page.limit);
        let page =
            self.read(ReadKind::Directory, move |store| store.accounts_page(after.as_ref(), limit)).await?;
        Ok(Listing::of(page, |a| Account {
            username: a.username,
            organization: a.organization,
            roles: a.roles,
            created_at: a.created_at,
            disabled: a.disabled,
        }))
    }

    /// A page of the tokens of one kind (API tokens or sessions), optionally of
    /// one account.
    pub async fn tokens(
        &self,
        kind: TokenKind,
        username: Option<String>,
        page: PageQuery,
    ) -> Result<Listing<TokenInfo>, CommandError> {
        let after = cursor_of(page.cursor.as_deref())?;
        let limit = limit_of(page.limit);
        let page = self
            .read(ReadKind::Directory, move |store| {
                store.tokens_page(kind, username.as_deref(), after.as_ref(), limit)
            })
            .await?;
        Ok(Listing::of(page, TokenInfo::from))
    }

    /// Every neighbour this node should have: its parent, then its children (known
    /// from their certificates or linked now), by id.
    pub fn neighbours(&self) -> Vec<Neighbour> {
        let status = self.status();
        let mut ids: Vec<(NodeId, LinkRole)> =
            self.identity().parent.map(|p| (p, LinkRole::Parent)).into_iter().collect();
        let mut children: Vec<NodeId> = status.children.iter().copied().collect();
        for (id, p) in &status.peers {
            if p.role == LinkRole::Child && !children.contains(id) {
                children.push(*id);
            }
        }
        children.sort();
        ids.extend(children.into_iter().map(|c| (c, LinkRole::Child)));
        ids.into_iter()
            .map(|(id, role)| {
                let p = status.peers.get(&id);
                let state = if status.revoked.contains(&id) {
                    "revoked"
                } else {
                    p.map_or("disconnected", |p| p.state)
                };
                Neighbour {
                    id,
                    role,
                    state,
                    last_frame_at: p.and_then(|p| p.last_frame_at),
                    lag_deltas: p.map_or(0, |p| p.lag_deltas),
                    lag_seconds: p.map_or(0, |p| p.lag_seconds),
                }
            })
            .collect()
    }

    /// Size of the store on disk, in bytes.
    pub fn store_bytes(&self) -> u64 {
        self.store().size_on_disk().unwrap_or(0)
    }
}

/// Per-neighbour gauges.
struct Neighbours(Vec<Neighbour>);

impl Collect for Neighbours {
    fn collect(&self, out: &mut Exposition) {
        let connected: Vec<&Neighbour> = self.0.iter().filter(|n| n.state == "connected").collect();
        out.single("cascade_peers_connected", Kind::Gauge, "Neighbours with a session up.", connected.len());
        out.family(
            "cascade_peer_connected",
            Kind::Gauge,
            "Whether the session with a neighbour is up (1) or not (0).",
        );
        for n in &self.0 {
            let id = n.id.to_string();
            out.sample(
                "cascade_peer_connected",
                &[("peer", &id), ("role", n.role.as_str())],
                u8::from(n.state == "connected"),
            );
        }
        out.family("cascade_sync_lag_deltas", Kind::Gauge, "Deltas not yet in sync with a neighbour.");
        for n in &self.0 {
            out.sample("cascade_sync_lag_deltas", &[("peer", &n.id.to_string())], n.lag_deltas);
        }
        out.family("cascade_sync_lag_seconds", Kind::Gauge, "Seconds since a neighbour was last in sync.");
        for n in &self.0 {
            out.sample(
                "cascade_sync_lag_seconds",
                &[("peer", &n.id.to_string())],
                Float(n.lag_seconds as f64),
            );
        }
    }
}

impl Collect for Node {
    fn collect(&self, out: &mut Exposition) {
        out.add(&Neighbours(self.neighbours())).add(&self.status()).add(&self.traffic());
        out.add(&self.dataset_counters());
        out.single(
            "cascade_store_bytes",
            Kind::Gauge,
            "Size of the node's store on disk, in bytes.",
            self.store_bytes(),
        );
        let calls = self.call_metrics();
        out.family(
            "cascade_calls_total",
            Kind::Counter,
            "Service calls this node saw, by its role in them (consumer, relay, provider), the service and the status answered (0: broke off).",
        );
        for ((role, service, status), count) in &calls.calls {
            let labels =
                [("role", role.as_str()), ("service", service.as_str()), ("status", &status.to_string())];
            out.sample("cascade_calls_total", &labels, count);
        }
        out.family(
            "cascade_call_duration_seconds",
            Kind::Histogram,
            "Seconds from a call reaching this node to its answer's head reaching it, by this node's role: at a relay, the time the call spent from this hop on.",
        );
        for (role, histogram) in &calls.latency {
            histogram.write(out, "cascade_call_duration_seconds", &[("role", role)]);
        }
        out.single(
            "cascade_usage_records_dropped_total",
            Kind::Counter,
            "Usage records dropped before they were written (the store fell behind).",
            calls.usage_dropped,
        );
    }
}
