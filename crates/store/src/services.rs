//! Reading services: one by id, or a filtered page of them.

use crate::keys::{service_key, SERVICE};
use crate::read::{corrupt, Cursor, Page};
use crate::{backend, Store};
use cascade_core::StoreError;
use cascade_protocol::service::{Service, ServiceStatus};
use cascade_protocol::{DeltaBody, NodeId};

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
