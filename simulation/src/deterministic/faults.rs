//! Faults the scenario asks for: a crash (whatever was not durable is lost), a
//! restart, and a key rotation.

use super::{derived_key, node_identity, KeySource, Sched, Simulator, EPOCH_SECS};
use crate::SimError;
use cascade_protocol::{NodeId, Tier};

impl Simulator {
    /// The nodes `id` shares a link with.
    pub(super) fn neighbours(&self, id: NodeId) -> Vec<NodeId> {
        self.links
            .keys()
            .filter(|(a, b)| *a == id || *b == id)
            .map(|(a, b)| if *a == id { *b } else { *a })
            .collect()
    }

    pub(super) fn crash(&mut self, id: NodeId) {
        for peer in self.neighbours(id) {
            self.link_down(id, peer, false);
        }
        if let Some(node) = self.nodes.get_mut(&id) {
            if let Some(core) = node.core.take() {
                let mut store = core.into_store();
                store.crash();
                node.resting = Some(store);
            }
            node.life += 1;
            node.tick_at = None;
            node.flushing = None;
            node.tickets.clear();
        }
    }

    /// Gives `id` a new key and certificate, as its operator would: stop, swap the
    /// files, restart with the previous key so that it hands its logs over.
    pub(super) fn rekey(&mut self, id: NodeId) -> Result<(), SimError> {
        let setup = |e: cascade_certs::CertError| SimError::Setup(e.to_string());
        let node = self.nodes.get(&id).ok_or_else(|| SimError::Scenario(format!("no node {id}")))?;
        let (tier, rotations) = (node.tier, node.rotations + 1);
        let parent = self.parents.get(&id).copied().flatten();
        let name = id.to_string();
        let identity = node_identity(id, tier, parent, &name).map_err(setup)?;
        let source = KeySource::Given {
            key: Box::new(derived_key(self.seed, &format!("node/{id}/{rotations}"))),
            not_before: EPOCH_SECS - 86_400,
        };
        let issuer = match (tier, parent) {
            (Tier::Municipal, Some(parent)) => self.cas.get(&parent),
            _ => Some(&self.root),
        };
        let creds = issuer
            .ok_or_else(|| SimError::Setup(format!("no CA for {id}")))?
            .issue_from(&identity, &source)
            .map_err(setup)?;
        let key = creds.signing_key().map_err(setup)?;
        if self.alive(id) {
            self.crash(id);
        }
        if let Some(node) = self.nodes.get_mut(&id) {
            node.previous_key = Some(std::mem::replace(&mut node.key, key));
            node.chain = creds.chain;
            node.rotations = rotations;
        }
        self.restart(id)
    }

    pub(super) fn restart(&mut self, id: NodeId) -> Result<(), SimError> {
        self.boot(id)?;
        for peer in self.neighbours(id) {
            let at = self.now + self.network.reconnect_ms;
            self.schedule(at, Sched::Reconnect { a: id, b: peer });
        }
        Ok(())
    }
}
