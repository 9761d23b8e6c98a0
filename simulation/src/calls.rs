//! Service calls in the deterministic simulator. A consumer calls with a grant
//! it holds (or, as an adversary would, with a forged, borrowed or stretched
//! one); the call reaches the provider if every hop on its path is up, and the
//! provider's node decides through the node core's call gate, as the runtime's
//! gateway does. Every admission is checked against a ledger the simulator keeps
//! on its own: the grant verifies with the provider's keys, names the calling
//! node and the service, covers the endpoint, is current, and its revocation
//! had not been acknowledged before the call.

use cascade_core::{CallGate, MemoryStore};
use cascade_protocol::call::{endpoint_allowed, CallHead, CallId};
use cascade_protocol::workflow::{Grant, Resource};
use cascade_protocol::NodeId;
use ed25519_dalek::VerifyingKey;
use std::collections::{BTreeMap, HashMap};

/// What a caller does to a call, the adversary's vocabulary included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Meddle {
    /// An honest call with a grant it holds.
    Honest,
    /// The grant's expiry pushed a year on (its signature kept).
    Stretched,
    /// Another node presents the grant as its own.
    Borrowed(NodeId),
    /// An endpoint the grant does not cover.
    Outside,
}

/// Calls made, by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CallTally {
    /// Admitted by the provider's node.
    pub served: u64,
    /// Refused by the provider's node.
    pub refused: u64,
    /// Not delivered: a node or link on the path was down.
    pub unreachable: u64,
}

/// The simulator's side of calls: each node's gate, and the ledger admissions
/// are checked against.
#[derive(Default)]
pub(crate) struct Calls {
    gates: BTreeMap<NodeId, CallGate>,
    /// Grant id → when (unix ms) its provider acknowledged revoking it.
    revoked: HashMap<String, u64>,
    next: u64,
    pub(crate) tally: CallTally,
    /// Calls served without a valid grant.
    pub(crate) violations: Vec<String>,
}

impl Calls {
    /// `id` (re)started at `now_ms`: its gate starts afresh, as a process's does.
    pub(crate) fn booted(&mut self, id: NodeId, now_ms: u64) {
        self.gates.insert(id, CallGate::new(now_ms));
    }

    /// The provider acknowledged revoking `grant` at `now_ms`.
    pub(crate) fn revoked(&mut self, grant: String, now_ms: u64) {
        self.revoked.entry(grant).or_insert(now_ms);
    }

    /// When the provider acknowledged revoking `grant` (unix ms), if it did.
    pub(crate) fn revoked_at(&self, grant: &str) -> Option<u64> {
        self.revoked.get(grant).copied()
    }

    /// The head of a call from `consumer` with `grant`, as `meddle` makes it.
    pub(crate) fn head(&mut self, consumer: NodeId, grant: &Grant, meddle: Meddle, now_ms: u64) -> CallHead {
        self.next += 1;
        let mut grant = grant.clone();
        let mut node = consumer;
        let mut path = "/records/7".to_string();
        match meddle {
            Meddle::Honest => {}
            Meddle::Stretched => grant.expires_at += 365 * 86_400,
            Meddle::Borrowed(other) => node = other,
            Meddle::Outside => path = "/admin/export".into(),
        }
        let service = match &grant.resource {
            Resource::Service(s) => s.clone(),
            Resource::Entry(e) => format!("{}/{}", e.origin, e.code),
        };
        CallHead {
            id: CallId { node, started_ms: now_ms, n: self.next },
            service,
            provider_node: grant.provider_node,
            method: "GET".into(),
            path,
            headers: Vec::new(),
            caller: "simulated caller".into(),
            grant,
            signature: Vec::new(),
        }
    }

    /// The call `head` reaches its provider (when `delivered`), whose store is
    /// `state` and whose keys are `keys`; the provider's gate decides, and an
    /// admission is checked against the ledger.
    pub(crate) fn call(
        &mut self,
        head: &CallHead,
        provider: Option<(&MemoryStore, Vec<VerifyingKey>)>,
        delivered: bool,
        now_ms: u64,
    ) {
        let (Some((state, keys)), true) = (provider, delivered) else {
            self.tally.unreachable += 1;
            return;
        };
        let me = head.provider_node;
        let Some(gate) = self.gates.get(&me) else {
            self.tally.unreachable += 1;
            return;
        };
        if gate.admit(state, me, head, now_ms).is_err() {
            self.tally.refused += 1;
            return;
        }
        self.tally.served += 1;
        let grant = &head.grant;
        let mut wrong = Vec::new();
        if !grant.verify(&keys) {
            wrong.push("not signed by its provider".to_string());
        }
        if grant.grantee_node != head.id.node {
            wrong.push(format!("held by {}", grant.grantee_node));
        }
        if grant.resource != Resource::Service(head.service.clone()) {
            wrong.push(format!("for {}", grant.resource));
        }
        if !endpoint_allowed(&grant.endpoints, &head.method, &head.path) {
            wrong.push(format!("not covering {}", head.path));
        }
        if !grant.is_current(now_ms / 1000) {
            wrong.push("expired".into());
        }
        if let Some(at) = self.revoked.get(&grant.id).filter(|at| **at <= now_ms) {
            wrong.push(format!("revoked at {at}"));
        }
        if !wrong.is_empty() {
            self.violations.push(format!(
                "{me} served call {} of {} with grant {}: {}",
                head.id,
                head.id.node,
                grant.id,
                wrong.join(", ")
            ));
        }
    }
}
