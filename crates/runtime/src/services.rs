//! Services at the node's API: registrations go to the core as commands (it
//! authorizes, signs and audits them); reads come from the store a few at a time.

use crate::api::unexpected;
use crate::node::Node;
use crate::query::{cursor_of, limit_of, Listing, PageQuery, ReadKind};
use cascade_access::Principal;
use cascade_core::{Command, CommandError, OwnService, Reply, StateStore};
use cascade_protocol::service::{Service, ServiceDraft};
use cascade_store::ServiceFilter;

impl Node {
    /// Registers a service (`id` none) or updates one of this node's active ones.
    pub async fn save_service(
        &self,
        by: Principal,
        id: Option<String>,
        draft: ServiceDraft,
        upstream: String,
    ) -> Result<OwnService, CommandError> {
        self.service_change(by, Command::SaveService { id, draft: Box::new(draft), upstream }).await
    }

    /// Retires one of this node's services.
    pub async fn retire_service(&self, by: Principal, id: String) -> Result<OwnService, CommandError> {
        self.service_change(by, Command::RetireService { id }).await
    }

    async fn service_change(&self, by: Principal, command: Command) -> Result<OwnService, CommandError> {
        match self.execute(by, command).await? {
            Reply::Service(own) => Ok(*own),
            other => Err(unexpected(other)),
        }
    }

    /// A page of the services this node knows, filtered.
    pub async fn services(
        &self,
        filter: ServiceFilter,
        page: PageQuery,
    ) -> Result<Listing<Service>, CommandError> {
        let after = cursor_of(page.cursor.as_deref())?;
        let limit = limit_of(page.limit);
        let page = self
            .read(ReadKind::Directory, move |store| store.services_page(&filter, after.as_ref(), limit))
            .await?;
        Ok(Listing::of(page, |s| s))
    }

    /// A service by id, with its upstream when it is one of this node's.
    pub async fn service(&self, id: String) -> Result<Option<(Service, Option<String>)>, CommandError> {
        self.read(ReadKind::Directory, move |store| {
            let Some(service) = store.service(&id)? else { return Ok(None) };
            Ok(Some((service, store.upstream(&id)?)))
        })
        .await
    }
}
