//! Reading services: one by id, a filtered page of them, or the active ones
//! of a catalog entry (through an in-memory index of the active services by
//! entry, built when the store opens and kept current by `apply`).

use crate::keys::{service_key, SERVICE};
use crate::read::{corrupt, Cursor, Page};
use crate::{backend, Store};
use cascade_core::StoreError;
use cascade_protocol::service::{Service, ServiceStatus};
use cascade_protocol::{DeltaBody, NodeId};
use std::collections::{BTreeSet, HashMap};

/// The active services by the entry they serve: (origin, code, service id).
#[derive(Debug, Default)]
pub(crate) struct ServiceIndex {
    active: BTreeSet<(NodeId, Box<str>, Box<str>)>,
    /// Each indexed service's entry, to forget it when it changes.
    entry_of: HashMap<Box<str>, (NodeId, Box<str>)>,
}

impl ServiceIndex {
    /// Records a service's latest version.
    pub(crate) fn put(&mut self, service: &Service) {
        if let Some((origin, code)) = self.entry_of.remove(service.id.as_str()) {
            self.active.remove(&(origin, code, service.id.as_str().into()));
        }
        if service.status == ServiceStatus::Active {
            let (origin, code) =
                (service.draft.entry.origin, Box::<str>::from(service.draft.entry.code.as_str()));
            self.active.insert((origin, code.clone(), service.id.as_str().into()));
            self.entry_of.insert(service.id.as_str().into(), (origin, code));
        }
    }

    /// The ids of the active services of `origin`'s entry `code`.
    fn of_entry(&self, origin: NodeId, code: &str) -> Vec<String> {
        let code: Box<str> = code.into();
        let from = (origin, code.clone(), Box::<str>::from(""));
        self.active
            .range(from..)
            .take_while(|(o, c, _)| *o == origin && *c == code)
            .map(|(_, _, id)| id.to_string())
            .collect()
    }
}

/// Which services a listing shows.
#[derive(Clone, Debug, Default)]
pub struct ServiceFilter {
    /// Only services of this node.
    pub origin: Option<NodeId>,
    /// Only services of this provider organization.
    pub provider: Option<String>,
    /// Only services of this status (both when none).
    pub status: Option<ServiceStatus>,
}

impl ServiceFilter {
    fn admits(&self, service: &Service) -> bool {
        self.provider.as_ref().is_none_or(|p| *p == service.draft.provider)
            && self.status.is_none_or(|s| s == service.status)
    }
}

impl Store {
    /// A service's latest version, if this node holds it.
    pub(crate) fn service_by_id(&self, id: &str) -> Result<Option<Service>, StoreError> {
        let key = service_key(id);
        match self.db.get(&key).map_err(backend)? {
            Some(value) => self.service_row(&key, &value).map(Some),
            None => Ok(None),
        }
    }

    fn service_row(&self, key: &[u8], value: &[u8]) -> Result<Service, StoreError> {
        let id = std::str::from_utf8(&key[1..]).map_err(|_| corrupt(key, "service id not UTF-8"))?;
        let origin = Service::origin_of(id).ok_or_else(|| corrupt(key, "malformed service id"))?;
        match self.pointed_body(key, origin, value)? {
            DeltaBody::Service(service) if service.id == id => Ok(service),
            _ => Err(corrupt(key, "not this service")),
        }
    }

    /// Builds the index of active services from the stored rows.
    pub(crate) fn index_services(&self) -> Result<(), StoreError> {
        let mut index = ServiceIndex::default();
        for kv in self.db.scan_prefix([SERVICE]) {
            let (key, value) = kv.map_err(backend)?;
            index.put(&self.service_row(&key, &value)?);
        }
        *self.services.write().unwrap_or_else(|p| p.into_inner()) = index;
        Ok(())
    }

    /// The active services of `origin`'s catalog entry `code`, by id.
    pub fn active_services_of(&self, origin: NodeId, code: &str) -> Result<Vec<Service>, StoreError> {
        let ids = self.services.read().unwrap_or_else(|p| p.into_inner()).of_entry(origin, code);
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            // Retired meanwhile: the index follows the store, never leads it.
            if let Some(service) = self.service_by_id(&id)?.filter(|s| s.status == ServiceStatus::Active) {
                found.push(service);
            }
        }
        Ok(found)
    }

    /// A page of services, by id (so by origin first), after `after`.
    pub fn services_page(
        &self,
        filter: &ServiceFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<Service>, StoreError> {
        let prefix = match filter.origin {
            // Every id of one origin starts with its code and a dash.
            Some(origin) => service_key(&format!("{origin}-")),
            None => vec![SERVICE],
        };
        self.scan_page(&prefix, after, limit, |key, value| {
            let service = self.service_row(key, value)?;
            Ok(filter.admits(&service).then_some(service))
        })
    }
}
