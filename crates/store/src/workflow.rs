//! Reading applications and grants: pages of them, as an inbox, an outbox, or the
//! grants a node issued or holds.

use crate::keys::{APPLICATION, GRANT};
use crate::read::{Cursor, Page};
use crate::{decode, Store};
use cascade_core::{Application, GrantRecord, StoreError};
use cascade_protocol::limits::MAX_FRAME_BYTES;
use cascade_protocol::workflow::{Resource, State};
use cascade_protocol::NodeId;

/// Which side of a node's applications a listing shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// What this node's consumers asked for (applications), or hold (grants).
    Consumer,
    /// What others asked of this node's providers, or what it issued.
    Provider,
}

/// Which applications or grants a listing shows.
#[derive(Clone, Debug)]
pub struct WorkflowFilter {
    /// This node.
    pub me: NodeId,
    /// The side.
    pub side: Side,
    /// Only those of this organization (the consumer's on the consumer side, the
    /// provider's on the provider side); all when none.
    pub organization: Option<String>,
    /// Only applications in this state.
    pub state: Option<State>,
    /// Only applications past their due time at this unix time.
    pub overdue_at: Option<u64>,
}

impl WorkflowFilter {
    fn admits(&self, a: &Application) -> bool {
        let (node, org) = match self.side {
            Side::Consumer => (a.consumer_node, Some(&a.consumer)),
            Side::Provider => (a.provider_node, a.provider.as_ref()),
        };
        node == self.me
            && self.organization.as_ref().is_none_or(|o| Some(o) == org)
            && self.state.is_none_or(|s| s == a.state)
            && self.overdue_at.is_none_or(|now| a.is_overdue(now))
    }

    fn admits_grant(&self, g: &GrantRecord) -> bool {
        let (node, org) = match self.side {
            Side::Consumer => (g.grant.grantee_node, &g.grant.grantee),
            Side::Provider => (g.grant.provider_node, &g.grant.provider),
        };
        node == self.me && self.organization.as_ref().is_none_or(|o| o == org)
    }
}

impl Store {
    /// A page of applications, by id, after `after`.
    pub fn applications_page(
        &self,
        filter: &WorkflowFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<Application>, StoreError> {
        self.scan_page(&[APPLICATION], after, limit, |key, value| {
            let a: Application = decode(key, value, MAX_FRAME_BYTES)?;
            Ok(filter.admits(&a).then_some(a))
        })
    }

    /// A page of grants, by id, after `after`.
    pub fn grants_page(
        &self,
        filter: &WorkflowFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<GrantRecord>, StoreError> {
        self.scan_page(&[GRANT], after, limit, |key, value| {
            let g: GrantRecord = decode(key, value, MAX_FRAME_BYTES)?;
            Ok(filter.admits_grant(&g).then_some(g))
        })
    }

    /// The grants `org` (any organization of this node when none) holds at
    /// `me` for `resource`, oldest first.
    pub fn grants_for(
        &self,
        me: NodeId,
        org: Option<&str>,
        resource: &Resource,
    ) -> Result<Vec<GrantRecord>, StoreError> {
        let filter = WorkflowFilter {
            me,
            side: Side::Consumer,
            organization: org.map(str::to_string),
            state: None,
            overdue_at: None,
        };
        let mut found = Vec::new();
        let mut after = None;
        loop {
            let page = self.grants_page(&filter, after.as_ref(), cascade_protocol::limits::MAX_LIST)?;
            found.extend(page.items.into_iter().filter(|g| g.grant.resource == *resource));
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(found),
            }
        }
    }
}
