//! Process docking at the node's API: applications, decisions and revocations go
//! to the core as commands (it authorizes, routes and audits them); listings come
//! from the store a few at a time.

use crate::api::unexpected;
use crate::node::Node;
use crate::query::{cursor_of, limit_of, Listing, PageQuery, ReadKind};
use cascade_access::{Principal, Role};
use cascade_core::{Application, Command, CommandError, GrantRecord, Reply, StateStore};
use cascade_store::{Side, WorkflowFilter};

impl Node {
    /// Runs a workflow command that answers with an application.
    pub async fn application_change(
        &self,
        by: Principal,
        command: Command,
    ) -> Result<Application, CommandError> {
        match self.execute(by, command).await? {
            Reply::Application(a) => Ok(*a),
            other => Err(unexpected(other)),
        }
    }

    /// Revokes a grant this node issued.
    pub async fn revoke_grant(
        &self,
        by: Principal,
        id: String,
        reason: String,
    ) -> Result<GrantRecord, CommandError> {
        match self.execute(by, Command::RevokeGrant { id, reason }).await? {
            Reply::Grant(g) => Ok(*g),
            other => Err(unexpected(other)),
        }
    }

    /// The organization whose applications and grants `who` may see: all of this
    /// node's for administrators and auditors, else its own organization's.
    fn visible_to(who: &Principal) -> Result<Option<String>, CommandError> {
        if who.has(Role::Admin) || who.has(Role::Auditor) {
            return Ok(None);
        }
        who.organization
            .clone()
            .map(Some)
            .ok_or_else(|| CommandError::Forbidden("the account has no organization".into()))
    }

    /// A page of this node's applications on one side, as `who` may see them.
    pub async fn applications(
        &self,
        who: &Principal,
        side: Side,
        state: Option<cascade_protocol::workflow::State>,
        overdue: bool,
        page: PageQuery,
    ) -> Result<Listing<Application>, CommandError> {
        let filter = WorkflowFilter {
            me: self.config().id,
            side,
            organization: Self::visible_to(who)?,
            state,
            overdue_at: overdue.then(|| crate::driver::unix_millis() / 1000),
        };
        let after = cursor_of(page.cursor.as_deref())?;
        let limit = limit_of(page.limit);
        let page = self
            .read(ReadKind::Directory, move |store| store.applications_page(&filter, after.as_ref(), limit))
            .await?;
        Ok(Listing::of(page, |a| a))
    }

    /// One application, if `who` may see it.
    pub async fn application(
        &self,
        who: &Principal,
        id: String,
    ) -> Result<Option<Application>, CommandError> {
        let org = Self::visible_to(who)?;
        let found = self.read(ReadKind::Directory, move |store| store.application(&id)).await?;
        Ok(found.filter(|a| org.as_ref().is_none_or(|o| *o == a.consumer || Some(o) == a.provider.as_ref())))
    }

    /// A page of the grants this node issued (provider side) or holds (consumer side).
    pub async fn grants(
        &self,
        who: &Principal,
        side: Side,
        page: PageQuery,
    ) -> Result<Listing<GrantRecord>, CommandError> {
        let filter = WorkflowFilter {
            me: self.config().id,
            side,
            organization: Self::visible_to(who)?,
            state: None,
            overdue_at: None,
        };
        let after = cursor_of(page.cursor.as_deref())?;
        let limit = limit_of(page.limit);
        let page = self
            .read(ReadKind::Directory, move |store| store.grants_page(&filter, after.as_ref(), limit))
            .await?;
        Ok(Listing::of(page, |g| g))
    }
}
