//! What the simulated people of each node do when their turn comes: publish and
//! edit catalog entries, apply, decide, withdraw and revoke, and call services
//! with the grants they hold (now and then as an adversary would).

use super::{provider_of, store_of, Purpose, Simulator, CALL_BURST};
use crate::calls::Meddle;
use cascade_access::Principal;
use cascade_core::{Approval, Command};
use cascade_protocol::call::call_next_hop;
use cascade_protocol::routed::Route;
use cascade_protocol::service::Service;
use cascade_protocol::workflow::{Grant, Resource, State};
use cascade_protocol::{NodeId, Scope, Tier};

impl Simulator {
    pub(super) fn publish(&mut self, id: NodeId, scope: Scope) {
        let Some(node) = self.nodes.get(&id) else { return };
        if node.core.is_none() {
            return;
        }
        let scope = if node.tier == Tier::National { Scope::Federation } else { scope };
        let at = self.now;
        if self.workload.one_in(4) {
            if let Some(command) = self.workflow_step(id) {
                let purpose = match &command {
                    Command::RevokeGrant { id, .. } => Purpose::Revoke(id.clone()),
                    _ => Purpose::Workflow,
                };
                self.submit(id, Principal::node(), command, purpose);
                return;
            }
        }
        if self.workload.one_in(3) && (0..CALL_BURST).all(|_| self.call(id)) {
            return;
        }
        // Fetches under way go on, and a version not fetched yet is fetched,
        // whatever else the turn brings.
        self.advance_fetches(id);
        self.fetch_version(id);
        if self.workload.one_in(4) && self.publish_version(id) {
            return;
        }
        for command in self.workload.next_change(id, scope).commands() {
            self.submit(id, Principal::node(), command, Purpose::Change(at));
        }
    }

    /// What `id`'s people do next in the workflow, as they see it: decide a pending
    /// application of theirs, sometimes withdraw one or revoke a grant, else apply
    /// for an entry of another node.
    pub(super) fn workflow_step(&mut self, id: NodeId) -> Option<Command> {
        let store = self.nodes.get(&id).and_then(store_of)?;
        let inbox = store.applications().find(|a| a.provider_node == id && a.state == State::Pending);
        if let Some(a) = inbox {
            let id = a.id.clone();
            return Some(if self.workload.one_in(3) {
                Command::Reject { id, reason: "purpose outside the consumer's duties".into() }
            } else {
                Command::Approve { id, approval: Approval::default() }
            });
        }
        let outbox = store.applications().find(|a| a.consumer_node == id && a.state == State::Pending);
        if let Some(a) = outbox.filter(|a| !a.withdraw_requested).map(|a| a.id.clone()) {
            if self.workload.one_in(3) {
                return Some(Command::Withdraw { id: a });
            }
        }
        // Grants for services first: their revocation races the calls made with them.
        let issued = store.grants().filter(|g| g.grant.provider_node == id && g.revoked_at.is_none());
        let issued = issued.max_by_key(|g| matches!(g.grant.resource, Resource::Service(_)));
        if let Some(g) = issued.map(|g| g.grant.id.clone()) {
            if self.workload.one_in(4) {
                return Some(Command::RevokeGrant { id: g, reason: "the consumer's duties changed".into() });
            }
        }
        let service = store
            .service_ids()
            .filter(|s| Service::origin_of(s).is_some_and(|origin| origin != id))
            .nth(self.workload.below(8));
        let resource = match service {
            Some(service) if self.workload.one_in(2) => Resource::Service(service.clone()),
            _ => Resource::Entry(self.workload.entry_elsewhere(id)?),
        };
        Some(Command::Apply {
            resource,
            consumer: provider_of(id).credit_code,
            purpose: "simulated audit".into(),
            period_days: 30,
        })
    }

    /// A call by `id`'s consumers with a service grant they hold, now and then
    /// meddled with as an adversary would; false if they hold none.
    pub(super) fn call(&mut self, id: NodeId) -> bool {
        let Some(store) = self.nodes.get(&id).and_then(store_of) else { return false };
        let held: Vec<_> = store
            .grants()
            .filter(|g| g.grant.grantee_node == id && matches!(g.grant.resource, Resource::Service(_)))
            .map(|g| g.grant.clone())
            .collect();
        if held.is_empty() {
            return false;
        }
        let grant = held[self.workload.below(held.len())].clone();
        let meddle = match self.workload.below(8) {
            0 => Meddle::Stretched,
            1 => Meddle::Outside,
            2 => {
                let others: Vec<NodeId> = self.nodes.keys().copied().filter(|n| *n != id).collect();
                Meddle::Borrowed(others[self.workload.below(others.len())])
            }
            _ => Meddle::Honest,
        };
        // Now and then its provider revokes it while it is in use: the grantee
        // calls with it again the moment the revocation is acknowledged.
        let provider = grant.provider_node;
        if meddle == Meddle::Honest && self.alive(provider) && self.workload.one_in(6) {
            let revoke = Command::RevokeGrant { id: grant.id.clone(), reason: "revoked while in use".into() };
            self.submit(provider, Principal::node(), revoke, Purpose::Revoke(grant.id.clone()));
        }
        self.call_with(id, &grant, meddle);
        true
    }

    /// A call by `id`'s consumers with `grant`, as `meddle` makes it.
    pub(super) fn call_with(&mut self, id: NodeId, grant: &Grant, meddle: Meddle) {
        let now = self.unix_ms();
        let head = self.calls.head(id, grant, meddle, now);
        let delivered = self.path_is_up(head.id.node, head.provider_node);
        let provider = self.nodes.get(&head.provider_node).and_then(|n| n.core.as_ref()).map(|core| {
            (core.store(), core.engine().keys_of(head.provider_node).copied().collect::<Vec<_>>())
        });
        self.calls.call(&head, provider, delivered, now);
    }

    /// Whether every node and link on the tree path from `from` to `to` is up.
    pub(super) fn path_is_up(&self, from: NodeId, to: NodeId) -> bool {
        let mut at = from;
        loop {
            if !self.alive(at) {
                return false;
            }
            match call_next_hop(at, to) {
                Route::Here => return true,
                Route::Via(hop) => {
                    let (x, y) = (at.min(hop), at.max(hop));
                    let up =
                        self.links.get(&(x, y)).or(self.links.get(&(y, x))).is_some_and(|l| l.id.is_some());
                    if !up {
                        return false;
                    }
                    at = hop;
                }
                Route::Unroutable => return false,
            }
        }
    }
}
