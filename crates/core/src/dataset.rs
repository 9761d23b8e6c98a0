//! Dataset versions decided by the core: a cataloger of an entry's provider
//! publishes a version of the entry's data; the core numbers it, links it to the
//! previous one and signs its manifest into the entry's log (so it travels as far
//! as the entry does). The chunks were stored by the driver before the command,
//! and stay at this node until someone fetches them.

use crate::command::{CommandError, Reply};
use crate::core::Core;
use crate::store::StateStore;
use cascade_access::Permission;
use cascade_access::Principal;
use cascade_protocol::catalog::EntryStatus;
use cascade_protocol::dataset::Manifest;
use cascade_protocol::service::EntryRef;
use cascade_protocol::DeltaBody;

impl<S: StateStore> Core<S> {
    /// The latest version of one of this node's entries, this group's included.
    fn latest_version(&self, code: &str) -> Result<Option<Manifest>, CommandError> {
        if let Some(m) = self.unstored(|w| w.versions.get(code).cloned()) {
            return Ok(Some(m));
        }
        Ok(self.store.manifest(self.me, code, None)?)
    }

    /// Publishes `content` (a manifest whose entry, version, previous version and
    /// time the core fills in) as the next version of the entry `code`.
    pub(crate) fn publish_version(
        &mut self,
        by: &Principal,
        code: String,
        mut content: Manifest,
    ) -> Result<Reply, CommandError> {
        let what = format!("dataset.publish {code}");
        let (scope, entry) = self
            .own_entry(&code)?
            .ok_or_else(|| CommandError::NotFound(format!("no entry {code} of this node")))?;
        self.authorize(by, Permission::EditCatalog { provider: &entry.provider }, &what)?;
        if entry.status != EntryStatus::Published {
            return Err(CommandError::Conflict(format!("{code} is not published")));
        }
        let latest = self.latest_version(&code)?;
        content.entry = EntryRef { origin: self.me, code: code.clone() };
        content.version = latest.as_ref().map_or(1, |m| m.version + 1);
        content.previous = latest.map(|m| m.content_hash);
        content.published_ms = self.now_ms;
        content.validate(self.me).map_err(|e| CommandError::field("content", e.0))?;
        let mut actions = Vec::new();
        let result = self.engine.originate(scope, DeltaBody::Dataset(content.clone()), &mut actions);
        self.take(actions);
        result.map_err(|e| Self::refused(e, "content"))?;
        self.group.written.versions.insert(code.clone(), content.clone());
        let detail = format!(
            "{}:{} v{} {} bytes in {} chunks, {}",
            self.me,
            code,
            content.version,
            content.size,
            content.chunks,
            cascade_chunks::store::hex(&content.content_hash)
        );
        self.audit_by(by, "dataset.publish", detail);
        Ok(Reply::Dataset(Box::new(content)))
    }
}

/// Why a chunk request is refused (by the origin or by a hop on the way).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkRefusal {
    /// 400 malformed, 403 no valid grant, 404 no such version here.
    pub status: u16,
    /// Why, for people (the requester sees it).
    pub reason: String,
}

fn refuse(status: u16, reason: impl Into<String>) -> ChunkRefusal {
    ChunkRefusal { status, reason: reason.into() }
}

/// Decides whether `me` serves (or passes on) the chunk request `req`, by its
/// records in `state` at unix time `now`: the version must be known here, and
/// the grant presented must be the origin's (`signed` says whether its
/// signature verified under the origin's keys), current, for the requesting node
/// and this entry. The origin itself also requires its own record of the grant,
/// unrevoked. Whether the chunk belongs to the version is the caller's to check
/// against the version's chunk list (returned, with the manifest).
pub fn admit_chunk(
    state: &impl StateStore,
    me: cascade_protocol::NodeId,
    req: &cascade_protocol::dataset::ChunkRequest,
    signed: bool,
    now: u64,
) -> Result<Manifest, ChunkRefusal> {
    use cascade_protocol::workflow::Resource;
    let entry = &req.entry;
    let manifest = state
        .manifest(entry.origin, &entry.code, Some(req.version))
        .map_err(|e| refuse(503, e.to_string()))?
        .ok_or_else(|| {
            refuse(404, format!("{me} knows no version {} of {}:{}", req.version, entry.origin, entry.code))
        })?;
    if req.requester == me && req.requester == entry.origin {
        return Ok(manifest);
    }
    let grant = req
        .grant
        .as_ref()
        .ok_or_else(|| refuse(403, format!("no grant presented for {}:{}", entry.origin, entry.code)))?;
    if grant.provider_node != entry.origin || !signed {
        return Err(refuse(403, format!("grant {} is not signed by {}", grant.id, entry.origin)));
    }
    if !grant.is_current(now) {
        return Err(refuse(403, format!("grant {} expired at {}", grant.id, grant.expires_at)));
    }
    if grant.grantee_node != req.requester {
        return Err(refuse(403, format!("grant {} belongs to node {}", grant.id, grant.grantee_node)));
    }
    if grant.resource != Resource::Entry(entry.clone()) {
        return Err(refuse(403, format!("grant {} is for {}", grant.id, grant.resource)));
    }
    if me != entry.origin && state.revocation_relayed(&grant.id).map_err(|e| refuse(503, e.to_string()))? {
        return Err(refuse(
            403,
            format!("grant {} was revoked (its revocation passed through {me})", grant.id),
        ));
    }
    if me == entry.origin {
        let record = state
            .grant(&grant.id)
            .map_err(|e| refuse(503, e.to_string()))?
            .filter(|r| r.grant == *grant)
            .ok_or_else(|| {
                refuse(403, format!("grant {} is not one this node signed as presented", grant.id))
            })?;
        if let Some(at) = record.revoked_at {
            return Err(refuse(403, format!("grant {} was revoked at {at}", grant.id)));
        }
    }
    Ok(manifest)
}

impl<S: StateStore> Core<S> {
    /// A consumer starts fetching a version: allowed to an account of the
    /// organization the grant `grant` names as grantee (or an administrator),
    /// while the grant is valid and covers the entry; audited. Answers the grant
    /// to present along the way.
    pub(crate) fn start_fetch(
        &mut self,
        by: &Principal,
        grant: String,
        entry: EntryRef,
        version: u64,
    ) -> Result<Reply, CommandError> {
        let what = format!("dataset.fetch {}:{} v{version}", entry.origin, entry.code);
        let record = self.entry_grant(by, &grant, &entry, &what)?;
        self.audit_by(by, "dataset.fetch", format!("{what} with grant {grant}"));
        Ok(Reply::Grant(Box::new(record)))
    }

    /// A consumer subscribes to an entry's versions (or ends a subscription):
    /// allowed as a fetch is, with a grant valid now; audited. Answers the grant.
    pub(crate) fn subscribe(
        &mut self,
        by: &Principal,
        grant: String,
        entry: EntryRef,
        on: bool,
    ) -> Result<Reply, CommandError> {
        let kind = if on { "dataset.subscribe" } else { "dataset.unsubscribe" };
        let what = format!("{kind} {}:{}", entry.origin, entry.code);
        let record = match on {
            true => self.entry_grant(by, &grant, &entry, &what)?,
            // Ending one needs no valid grant: only that it is the caller's.
            false => {
                self.grant(&grant)?.ok_or_else(|| CommandError::NotFound(format!("no grant {grant}")))?
            }
        };
        self.audit_by(by, kind, format!("{what} with grant {grant}"));
        Ok(Reply::Grant(Box::new(record)))
    }

    /// The grant `grant` this node holds for `entry`, if `by` may use it: an
    /// account of its grantee organization (or an administrator), while it is
    /// valid. A refusal is audited.
    fn entry_grant(
        &mut self,
        by: &Principal,
        grant: &str,
        entry: &EntryRef,
        what: &str,
    ) -> Result<crate::workflow::GrantRecord, CommandError> {
        use cascade_protocol::workflow::Resource;
        let record = self
            .grant(grant)?
            .filter(|r| r.grant.grantee_node == self.me)
            .ok_or_else(|| CommandError::NotFound(format!("this node holds no grant {grant}")))?;
        let ours = by.organization.as_deref() == Some(record.grant.grantee.as_str());
        if !ours && !by.has(cascade_access::Role::Admin) {
            self.denied(by, format!("{what}: the grant is {}'s", record.grant.grantee));
            return Err(CommandError::Forbidden(format!("grant {grant} is not your organization's")));
        }
        if !record.is_valid(self.now_s()) || record.grant.resource != Resource::Entry(entry.clone()) {
            return Err(CommandError::Forbidden(format!("grant {grant} does not cover this entry now")));
        }
        Ok(record)
    }

    /// Audits a chunk request refused at this node, by tally of the neighbour it
    /// came from (a flood costs a summary, not a record per request).
    pub(crate) fn chunk_refused(&mut self, peer: cascade_protocol::NodeId, reason: &str, detail: String) {
        self.tally(format!("peer:{peer}"), "dataset.chunk_refused", reason, detail);
    }
}
