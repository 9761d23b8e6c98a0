//! Catalog operations of a node: drafts stay local; publishing, updating a
//! published entry and withdrawing are signed deltas, acknowledged once durable.

use crate::node::{Node, NodeError};
use cascade_access::Principal;
use cascade_protocol::catalog::{
    resource_code, validate_resource_code, CatalogEntry, EntryDraft, EntryStatus, FieldError, ShareType,
};
use cascade_protocol::{NodeId, Scope, Tier};
use serde::{Deserialize, Serialize};

/// Most entries one listing returns.
pub const MAX_LIST: usize = 1000;

/// Errors of catalog operations, each meaning one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The entry breaks a rule (422).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// No such entry (404).
    #[error("no catalog entry {0}")]
    NotFound(String),
    /// The request conflicts with the entry's state (409).
    #[error("{0}")]
    Conflict(String),
    /// The caller may not make this change (403).
    #[error("{0}")]
    Forbidden(String),
    /// The node failed (500).
    #[error(transparent)]
    Node(#[from] NodeError),
}

impl From<cascade_store::StoreError> for CatalogError {
    fn from(e: cascade_store::StoreError) -> Self {
        CatalogError::Node(NodeError::Store(e))
    }
}

/// The result of saving a draft.
#[derive(Debug, Serialize)]
pub struct SavedEntry {
    /// The entry as stored.
    #[serde(flatten)]
    pub entry: CatalogEntry,
    /// Its scope.
    pub scope: Scope,
    /// Whether it was created (rather than updated).
    #[serde(skip)]
    pub created: bool,
    /// The seq of the delta that published this state, when it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta_seq: Option<u64>,
}

/// Options of a publish.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishOptions {
    /// How far the entry travels; fixed at first publication. Default federation-wide.
    #[serde(default)]
    pub scope: Option<Scope>,
}

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

/// One entry of the federated view.
#[derive(Debug, Serialize)]
pub struct ViewEntry {
    /// The node that published it.
    pub origin: NodeId,
    /// Its scope.
    pub scope: Scope,
    /// The entry.
    #[serde(flatten)]
    pub entry: CatalogEntry,
}

/// The tier of a node, read from its division code (the PKI enforces the same rule).
pub fn tier_of(id: NodeId) -> Tier {
    if id.province().is_none() {
        Tier::National
    } else if id.province() == Some(id) {
        Tier::Provincial
    } else {
        Tier::Municipal
    }
}

/// A change to this node's own catalog. Decided inside the engine task, so that
/// concurrent changes to one entry are serialized and versions never repeat.
#[derive(Debug)]
pub(crate) enum CatalogOp {
    /// Create or update an own entry.
    Save(EntryDraft),
    /// Publish an own draft or withdrawn entry.
    Publish(String, PublishOptions),
    /// Withdraw an own published entry.
    Withdraw(String),
}

/// What a `CatalogOp` decided.
pub(crate) struct Decision {
    /// The entry's new state and scope.
    pub(crate) saved: SavedEntry,
    /// Whether the new state is a delta (else it stays local: a draft).
    pub(crate) emit: bool,
}

/// Decides the outcome of `op` given the current own entries (`current`) and a
/// source of fresh code sequence numbers. Pure apart from those two.
pub(crate) fn decide(
    op: CatalogOp,
    me: NodeId,
    current: impl Fn(&str) -> Result<Option<(Scope, CatalogEntry)>, CatalogError>,
    mut next_seq: impl FnMut() -> Result<u64, CatalogError>,
    registered_here: impl Fn(&str) -> Result<bool, CatalogError>,
) -> Result<Decision, CatalogError> {
    let own = |code: &str| current(code)?.ok_or_else(|| CatalogError::NotFound(code.to_string()));
    let publish = |scope, entry| {
        Ok(Decision { saved: SavedEntry { entry, scope, created: false, delta_seq: None }, emit: true })
    };
    match op {
        CatalogOp::Save(draft) => {
            draft.validate()?;
            if !registered_here(&draft.provider)? {
                return Err(CatalogError::Invalid(FieldError {
                    field: "provider".into(),
                    reason: format!("{} is not an organization registered at {me}", draft.provider),
                }));
            }
            let existing = match &draft.code {
                Some(code) => current(code)?,
                None => None,
            };
            let Some((scope, old)) = existing else {
                let code = match &draft.code {
                    Some(code) => code.clone(),
                    None => fresh_code(&draft.classification, &current, &mut next_seq)?,
                };
                validate_resource_code(&code)
                    .map_err(|reason| FieldError { field: "code".into(), reason })?;
                let entry = CatalogEntry::from_draft(draft, code, 0, EntryStatus::Draft);
                let saved = SavedEntry { entry, scope: Scope::Federation, created: true, delta_seq: None };
                return Ok(Decision { saved, emit: false });
            };
            match old.status {
                EntryStatus::Draft | EntryStatus::Withdrawn => {
                    let entry = CatalogEntry::from_draft(draft, old.code, old.version, EntryStatus::Draft);
                    Ok(Decision {
                        saved: SavedEntry { entry, scope, created: false, delta_seq: None },
                        emit: false,
                    })
                }
                EntryStatus::Published => {
                    let entry =
                        CatalogEntry::from_draft(draft, old.code, old.version + 1, EntryStatus::Published);
                    publish(scope, entry)
                }
            }
        }
        CatalogOp::Publish(code, options) => {
            let (scope, mut entry) = own(&code)?;
            if entry.status == EntryStatus::Published {
                return Err(CatalogError::Conflict(format!("{code} is already published")));
            }
            let scope = match (entry.version, options.scope) {
                (0, Some(requested)) => requested,
                (_, Some(requested)) if requested != scope => {
                    return Err(CatalogError::Conflict(format!(
                        "{code} was published with scope {}; the scope cannot change",
                        scope.as_str()
                    )))
                }
                _ => scope,
            };
            if scope == Scope::Province && me.province().is_none() {
                return Err(CatalogError::Conflict("the national node has no province scope".into()));
            }
            entry.validate()?;
            entry.version += 1;
            entry.status = EntryStatus::Published;
            publish(scope, entry)
        }
        CatalogOp::Withdraw(code) => {
            let (scope, mut entry) = own(&code)?;
            if entry.status != EntryStatus::Published {
                return Err(CatalogError::Conflict(format!("{code} is not published")));
            }
            entry.version += 1;
            entry.status = EntryStatus::Withdrawn;
            publish(scope, entry)
        }
    }
}

/// Most sequence numbers tried for a fresh resource code; only operator-chosen
/// codes can be in the way, so a handful of tries is already plenty.
const MAX_CODE_TRIES: usize = 1000;

/// The next generated resource code not already used by an own entry.
fn fresh_code(
    classification: &str,
    current: &impl Fn(&str) -> Result<Option<(Scope, CatalogEntry)>, CatalogError>,
    next_seq: &mut impl FnMut() -> Result<u64, CatalogError>,
) -> Result<String, CatalogError> {
    for _ in 0..MAX_CODE_TRIES {
        let code = resource_code(classification, next_seq()?);
        if current(&code)?.is_none() {
            return Ok(code);
        }
    }
    Err(CatalogError::Conflict("no free resource code; give one explicitly".into()))
}

impl Node {
    /// Creates or updates an own entry. A draft (or withdrawn entry) is saved
    /// locally; an update of a published entry publishes a new version at once.
    pub async fn save_entry(&self, draft: EntryDraft) -> Result<SavedEntry, CatalogError> {
        self.catalog_op(CatalogOp::Save(draft), None).await
    }

    /// Publishes an own draft or withdrawn entry as a new version.
    pub async fn publish(&self, code: &str, options: PublishOptions) -> Result<SavedEntry, CatalogError> {
        self.catalog_op(CatalogOp::Publish(code.to_string(), options), None).await
    }

    /// Withdraws an own published entry (a new version with status withdrawn).
    pub async fn withdraw(&self, code: &str) -> Result<SavedEntry, CatalogError> {
        self.catalog_op(CatalogOp::Withdraw(code.to_string()), None).await
    }

    /// `save_entry` on behalf of `by`: its role and organization are checked against
    /// the entry as this change finds it (old and new provider), and the change or
    /// the refusal is audited in the same durable group.
    pub async fn save_entry_as(&self, draft: EntryDraft, by: Principal) -> Result<SavedEntry, CatalogError> {
        self.catalog_op(CatalogOp::Save(draft), Some(by)).await
    }

    /// `publish` on behalf of `by` (see `save_entry_as`).
    pub async fn publish_as(
        &self,
        code: &str,
        options: PublishOptions,
        by: Principal,
    ) -> Result<SavedEntry, CatalogError> {
        self.catalog_op(CatalogOp::Publish(code.to_string(), options), Some(by)).await
    }

    /// `withdraw` on behalf of `by` (see `save_entry_as`).
    pub async fn withdraw_as(&self, code: &str, by: Principal) -> Result<SavedEntry, CatalogError> {
        self.catalog_op(CatalogOp::Withdraw(code.to_string()), Some(by)).await
    }

    /// The federated catalog as this node sees it, filtered.
    pub fn list_catalog(&self, query: &CatalogQuery) -> Result<Vec<ViewEntry>, CatalogError> {
        let status = query.status.as_deref().unwrap_or("published");
        let wanted = |s: EntryStatus| status == "all" || s.as_str() == status;
        if !["published", "withdrawn", "draft", "all"].contains(&status) {
            return Err(CatalogError::Invalid(FieldError {
                field: "status".into(),
                reason: "one of published, withdrawn, draft, all".into(),
            }));
        }
        let needle = query.q.as_ref().map(|q| q.to_lowercase());
        let keep = |origin: NodeId, entry: &CatalogEntry| {
            query.origin.is_none_or(|o| o == origin)
                && query.tier.is_none_or(|t| t == tier_of(origin))
                && query.share_type.is_none_or(|s| s == entry.share_type)
                && wanted(entry.status)
                && needle.as_ref().is_none_or(|n| {
                    entry.code.to_lowercase().contains(n)
                        || entry.name.to_lowercase().contains(n)
                        || entry.summary.to_lowercase().contains(n)
                })
        };
        let mut out = Vec::new();
        for item in self.store().catalog() {
            let (origin, scope, entry) = item?;
            if keep(origin, &entry) {
                out.push(ViewEntry { origin, scope, entry });
            }
            if out.len() >= MAX_LIST {
                return Ok(out);
            }
        }
        if status == "draft" || status == "all" {
            let me = self.identity().id;
            for item in self.store().own_entries() {
                let (scope, entry) = item?;
                if entry.status == EntryStatus::Draft && keep(me, &entry) && out.len() < MAX_LIST {
                    out.push(ViewEntry { origin: me, scope, entry });
                }
            }
        }
        Ok(out)
    }

    /// One entry: this node's own working copy if it has one, else the federated
    /// entry with that code (`origin` picks one when several nodes use the code).
    pub fn get_entry(&self, code: &str, origin: Option<NodeId>) -> Result<ViewEntry, CatalogError> {
        let me = self.identity().id;
        if origin.is_none_or(|o| o == me) {
            if let Some((scope, entry)) = self.store().own_entry(code)? {
                return Ok(ViewEntry { origin: me, scope, entry });
            }
        }
        let mut found = Vec::new();
        for item in self.store().catalog() {
            let (o, scope, entry) = item?;
            if entry.code == code && origin.is_none_or(|want| want == o) {
                found.push(ViewEntry { origin: o, scope, entry });
            }
        }
        match found.len() {
            0 => Err(CatalogError::NotFound(code.to_string())),
            1 => Ok(found.remove(0)),
            _ => {
                Err(CatalogError::Conflict(format!("{code} is used by {} nodes; add ?origin=", found.len())))
            }
        }
    }
}
