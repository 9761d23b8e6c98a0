//! Reads of the admin interface: materialized views, the audit log, accounts, the
//! neighbourhood and metrics. Reads never go through the core; scans run on the
//! blocking pool so they cannot stall the async workers.

use crate::node::Node;
use cascade_core::audit::{AuditFilter, AuditRecord, AuditVerification};
use cascade_core::{Account, CommandError, LinkRole, StoreError};
use cascade_metrics::{Collect, Exposition, Float, Kind};
use cascade_protocol::catalog::{EntryStatus, FieldError, ShareType};
use cascade_protocol::limits::MAX_LIST;
use cascade_protocol::{NodeId, Tier};
use cascade_store::{CatalogRow, OrganizationRow, Store};
use serde::{Deserialize, Serialize};

/// Filters of the federated catalog listing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogQuery {
    /// Only entries originated by this node.
    pub origin: Option<NodeId>,
    /// Only entries whose origin is at this tier.
    pub tier: Option<Tier>,
    /// Only entries of this share type.
    pub share_type: Option<ShareType>,
    /// "published" (default), "withdrawn", "draft" (own drafts) or "all".
    pub status: Option<String>,
    /// Case-insensitive text in code, name or summary.
    pub q: Option<String>,
}

/// A token as listed (never its secret).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TokenInfo {
    /// Its id.
    pub id: String,
    /// The account it acts as.
    pub username: String,
    /// What it is for.
    pub label: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// A neighbour this node should have, and how it is doing.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
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

fn unavailable(e: StoreError) -> CommandError {
    CommandError::Unavailable(e.to_string())
}

impl Node {
    /// Runs a read on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, CommandError> {
        let store = self.store().clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| CommandError::Unavailable(format!("a read failed: {e}")))?
            .map_err(unavailable)
    }

    /// The federated catalog as this node sees it, filtered (at most `MAX_LIST`).
    pub async fn catalog(&self, query: CatalogQuery) -> Result<Vec<CatalogRow>, CommandError> {
        let status = query.status.clone().unwrap_or_else(|| "published".into());
        if !["published", "withdrawn", "draft", "all"].contains(&status.as_str()) {
            return Err(FieldError {
                field: "status".into(),
                reason: "one of published, withdrawn, draft, all".into(),
            }
            .into());
        }
        let me = self.identity().id;
        self.read(move |store| {
            let wanted = |s: EntryStatus| status == "all" || s.as_str() == status;
            let needle = query.q.as_ref().map(|q| q.to_lowercase());
            let keep = |row: &CatalogRow| {
                let entry = &row.entry;
                query.tier.is_none_or(|t| t == row.origin.tier())
                    && query.share_type.is_none_or(|s| s == entry.share_type)
                    && wanted(entry.status)
                    && needle.as_ref().is_none_or(|n| {
                        entry.code.to_lowercase().contains(n)
                            || entry.name.to_lowercase().contains(n)
                            || entry.summary.to_lowercase().contains(n)
                    })
            };
            let mut out = Vec::new();
            for row in store.catalog(query.origin) {
                let row = row?;
                if keep(&row) {
                    out.push(row);
                    if out.len() >= MAX_LIST {
                        return Ok(out);
                    }
                }
            }
            if (status == "draft" || status == "all") && query.origin.is_none_or(|o| o == me) {
                for item in store.own_entries() {
                    let (scope, entry) = item?;
                    let row = CatalogRow { origin: me, scope, entry };
                    if row.entry.status == EntryStatus::Draft && keep(&row) && out.len() < MAX_LIST {
                        out.push(row);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// One entry: this node's own working copy if it has one, else the federated
    /// entry with that code (`origin` picks one when several nodes use the code).
    pub async fn entry(&self, code: String, origin: Option<NodeId>) -> Result<CatalogRow, CommandError> {
        let me = self.identity().id;
        let lookup = code.clone();
        let found = self
            .read(move |store| {
                use cascade_core::StateStore;
                if origin.is_none_or(|o| o == me) {
                    if let Some((scope, entry)) = store.own_entry(&lookup)? {
                        return Ok(vec![CatalogRow { origin: me, scope, entry }]);
                    }
                }
                match origin {
                    Some(origin) => store.catalog_entry(origin, &lookup),
                    None => store
                        .catalog(None)
                        .filter(|r| r.as_ref().map_or(true, |r| r.entry.code == lookup))
                        .collect(),
                }
            })
            .await?;
        let mut found = found;
        match found.len() {
            0 => Err(CommandError::NotFound(format!("no catalog entry {code}"))),
            1 => Ok(found.remove(0)),
            n => Err(CommandError::Conflict(format!("{code} is used by {n} nodes; add ?origin="))),
        }
    }

    /// Organizations this node knows, filtered (at most `MAX_LIST`).
    pub async fn organizations(
        &self,
        origin: Option<NodeId>,
        division: Option<NodeId>,
    ) -> Result<Vec<OrganizationRow>, CommandError> {
        self.read(move |store| {
            let mut out = Vec::new();
            for row in store.organizations() {
                let row = row?;
                if origin.is_none_or(|o| o == row.origin)
                    && division.is_none_or(|d| d == row.organization.division)
                {
                    out.push(row);
                    if out.len() >= MAX_LIST {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    /// Every registration of one organization.
    pub async fn organization(&self, code: String) -> Result<Vec<OrganizationRow>, CommandError> {
        self.read(move |store| store.organization(&code)).await
    }

    /// Audit records matching `filter`.
    pub async fn audit(&self, filter: AuditFilter) -> Result<Vec<AuditRecord>, CommandError> {
        self.read(move |store| store.audit_query(&filter)).await
    }

    /// Walks the whole audit chain.
    pub async fn verify_audit(&self) -> Result<AuditVerification, CommandError> {
        self.read(|store| store.audit_verify()).await
    }

    /// Every account.
    pub async fn accounts(&self) -> Result<Vec<Account>, CommandError> {
        self.read(|store| {
            Ok(store
                .accounts()?
                .into_iter()
                .map(|a| Account {
                    username: a.username,
                    organization: a.organization,
                    roles: a.roles,
                    created_at: a.created_at,
                })
                .collect())
        })
        .await
    }

    /// API tokens, optionally of one account (at most `MAX_LIST`).
    pub async fn tokens(&self, username: Option<String>) -> Result<Vec<TokenInfo>, CommandError> {
        self.read(move |store| {
            let mut out = Vec::new();
            for token in store.tokens() {
                let t = token?;
                if t.kind == cascade_access::TokenKind::Api
                    && username.as_ref().is_none_or(|u| *u == t.username)
                {
                    out.push(TokenInfo {
                        id: t.id,
                        username: t.username,
                        label: t.label,
                        created_at: t.created_at,
                        revoked: t.revoked,
                    });
                }
            }
            Ok(out)
        })
        .await
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
        out.single(
            "cascade_store_bytes",
            Kind::Gauge,
            "Size of the node's store on disk, in bytes.",
            self.store_bytes(),
        );
    }
}
