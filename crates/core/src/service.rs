//! Service registrations decided by the core: a provider's cataloger (or an
//! administrator) registers, updates and retires its services; each version is a
//! signed delta of this node, and the upstream URL stays in this node's store.

use crate::command::{CommandError, OwnService, Reply};
use crate::core::Core;
use crate::store::StateStore;
use cascade_access::{Permission, Principal};
use cascade_protocol::catalog::EntryStatus;
use cascade_protocol::service::{Service, ServiceDraft, ServiceStatus};
use cascade_protocol::{DeltaBody, Scope};

/// Longest upstream URL, in bytes.
const MAX_UPSTREAM_BYTES: usize = 512;

/// An upstream is an absolute `http` or `https` URL with a host and no spaces.
fn check_upstream(upstream: &str) -> Result<(), CommandError> {
    let rest = upstream.strip_prefix("http://").or_else(|| upstream.strip_prefix("https://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    let fine = upstream.len() <= MAX_UPSTREAM_BYTES
        && host.is_some_and(|h| !h.is_empty())
        && !upstream.chars().any(|c| c.is_whitespace() || c.is_control());
    if fine {
        Ok(())
    } else {
        Err(CommandError::field(
            "upstream",
            format!("an http:// or https:// URL of at most {MAX_UPSTREAM_BYTES} bytes"),
        ))
    }
}

impl<S: StateStore> Core<S> {
    /// A service as this node sees it, this group's changes included.
    pub(crate) fn service(&self, id: &str) -> Result<Option<Service>, CommandError> {
        if let Some(s) = self.unstored(|w| w.services.get(id).cloned()) {
            return Ok(Some(s));
        }
        Ok(self.store.service(id)?)
    }

    fn upstream(&self, id: &str) -> Result<Option<String>, CommandError> {
        if let Some(u) = self.unstored(|w| w.upstreams.get(id).cloned()) {
            return Ok(Some(u));
        }
        Ok(self.store.upstream(id)?)
    }

    /// One of this node's services, refused unless `by` may edit it.
    fn own_service(&mut self, by: &Principal, id: &str, what: &str) -> Result<Service, CommandError> {
        let service = self
            .service(id)?
            .filter(|s| Service::origin_of(&s.id) == Some(self.me))
            .ok_or_else(|| CommandError::NotFound(format!("no service {id} of this node")))?;
        self.authorize(by, Permission::EditCatalog { provider: &service.draft.provider }, what)?;
        if service.status == ServiceStatus::Retired {
            return Err(CommandError::Conflict(format!("{id} is retired")));
        }
        Ok(service)
    }

    pub(crate) fn save_service(
        &mut self,
        by: &Principal,
        id: Option<String>,
        draft: ServiceDraft,
        upstream: String,
    ) -> Result<Reply, CommandError> {
        let kind = if id.is_some() { "service.update" } else { "service.register" };
        let what = format!("{kind} {}", id.as_deref().unwrap_or("(new)"));
        let before = match &id {
            Some(id) => Some(self.own_service(by, id, &what)?),
            None => None,
        };
        self.authorize(by, Permission::EditCatalog { provider: &draft.provider }, &what)?;
        draft.validate()?;
        check_upstream(&upstream)?;
        // A service serves one of this node's published entries, of its provider.
        let entry = match draft.entry.origin == self.me {
            true => self.own_entry(&draft.entry.code)?,
            false => None,
        };
        match entry {
            Some((_, e)) if e.status == EntryStatus::Published && e.provider == draft.provider => {}
            Some(_) => {
                return Err(CommandError::field("entry", "must be a published entry of the same provider"));
            }
            None => return Err(CommandError::field("entry", "must be a published entry of this node")),
        }
        let service = match before {
            Some(old) => {
                Service { id: old.id, version: old.version + 1, status: ServiceStatus::Active, draft }
            }
            None => {
                let id = Service::id_for(self.me, self.engine.next_seq(Scope::Federation));
                Service { id, version: 1, status: ServiceStatus::Active, draft }
            }
        };
        self.emit_service(by, kind, service, upstream)
    }

    pub(crate) fn retire_service(&mut self, by: &Principal, id: String) -> Result<Reply, CommandError> {
        let mut service = self.own_service(by, &id, &format!("service.retire {id}"))?;
        let upstream = self.upstream(&id)?.unwrap_or_default();
        service.version += 1;
        service.status = ServiceStatus::Retired;
        self.emit_service(by, "service.retire", service, upstream)
    }

    /// Signs a service's new version and records it (and its upstream) in this group.
    fn emit_service(
        &mut self,
        by: &Principal,
        kind: &str,
        service: Service,
        upstream: String,
    ) -> Result<Reply, CommandError> {
        let expected = self.engine.next_seq(Scope::Federation);
        let mut actions = Vec::new();
        let result =
            self.engine.originate(Scope::Federation, DeltaBody::Service(service.clone()), &mut actions);
        self.take(actions);
        let delta = result.map_err(|e| Self::refused(e, "service"))?;
        if service.version == 1 && delta.seq != expected {
            // The id named a seq the registration did not get: never expected.
            return Err(CommandError::Unavailable(format!(
                "invariant: service {} registered at seq {}",
                service.id, delta.seq
            )));
        }
        self.group.written.services.insert(service.id.clone(), service.clone());
        self.group.written.upstreams.insert(service.id.clone(), upstream.clone());
        self.group.batch.upstreams.push((service.id.clone(), upstream.clone()));
        let detail = format!(
            "{} v{} {} provider {} entry {}:{}",
            service.id,
            service.version,
            service.status.as_str(),
            service.draft.provider,
            service.draft.entry.origin,
            service.draft.entry.code
        );
        self.audit_by(by, kind, detail);
        Ok(Reply::Service(Box::new(OwnService { service, upstream })))
    }
}
