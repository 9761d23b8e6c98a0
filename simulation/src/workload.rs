//! The catalog changes a simulation asks for, as node-core commands: new entries
//! (a draft saved, then published), updates of published entries, withdrawals,
//! republications and service registrations for published entries — the same
//! commands the admin interface sends.

use cascade_core::Command;
use cascade_protocol::catalog::{EntryDraft, EntryStatus, ShareType};
use cascade_protocol::org::Organization;
use cascade_protocol::service::{Endpoint, EntryRef, ServiceDraft, ServiceKind};
use cascade_protocol::{NodeId, Scope};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// The organization every simulated node registers and publishes for.
pub(crate) fn provider_of(node: NodeId) -> Organization {
    Organization {
        credit_code: Organization::government_code(node, 1),
        name: format!("{node} data bureau"),
        division: node,
        parent: None,
    }
}

/// A valid draft of `node`'s organization with an explicit code. Its share type
/// follows its number: half unconditional, a quarter conditional, a quarter not shared.
pub(crate) fn draft(node: NodeId, code: &str) -> EntryDraft {
    let number: u64 = code.rsplit('/').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let share_type = match number % 4 {
        0 | 1 => ShareType::Unconditional,
        2 => ShareType::Conditional,
        _ => ShareType::NotShared,
    };
    EntryDraft {
        code: Some(code.to_string()),
        name: format!("{node} resource {code}"),
        classification: "3".into(),
        provider: provider_of(node).credit_code,
        summary: "simulated resource".into(),
        format: cascade_protocol::catalog::ResourceFormat::Database,
        data_items: vec![cascade_protocol::catalog::DataItem {
            name: "统一社会信用代码".into(),
            data_type: cascade_protocol::catalog::DataType::Char,
            length: Some(18),
        }],
        share_type,
        share_condition: (share_type == ShareType::Conditional).then(|| "for audits only".to_string()),
        not_shared_basis: (share_type == ShareType::NotShared).then(|| "《统计法》第九条".to_string()),
        share_mode: cascade_protocol::catalog::ShareMode::Platform,
        open_type: cascade_protocol::catalog::OpenType::Closed,
        open_condition: None,
        update_cycle: cascade_protocol::catalog::UpdateCycle::Daily,
        publish_date: None,
        related_codes: vec![],
    }
}

/// A service of `node`'s organization for its entry `code`.
pub(crate) fn service(node: NodeId, code: &str) -> ServiceDraft {
    ServiceDraft {
        name: format!("{node} service for {code}"),
        entry: EntryRef { origin: node, code: code.to_string() },
        provider: provider_of(node).credit_code,
        kind: ServiceKind::Query,
        endpoints: vec![Endpoint { method: "GET".into(), path: "/records/{id}".into() }],
        sensitivity: 2,
        rate_limit_per_minute: 600,
    }
}

/// One change, as the commands that make it.
#[derive(Clone, Debug)]
pub(crate) enum Change {
    /// A new entry: save the draft, then publish it.
    New(EntryDraft, Scope),
    /// Update a published entry (a new version at once).
    Update(EntryDraft),
    /// Withdraw a published entry.
    Withdraw(String),
    /// Publish a withdrawn entry again.
    Republish(String),
    /// Register a service for a published entry.
    Service(ServiceDraft),
}

impl Change {
    /// The commands, in order.
    pub(crate) fn commands(self) -> Vec<Command> {
        match self {
            Change::New(draft, scope) => {
                let code = draft.code.clone().unwrap_or_default();
                vec![Command::SaveEntry(Box::new(draft)), Command::PublishEntry { code, scope: Some(scope) }]
            }
            Change::Update(draft) => vec![Command::SaveEntry(Box::new(draft))],
            Change::Withdraw(code) => vec![Command::WithdrawEntry { code }],
            Change::Republish(code) => vec![Command::PublishEntry { code, scope: None }],
            Change::Service(draft) => vec![Command::SaveService {
                id: None,
                draft: Box::new(draft),
                upstream: "http://upstream.sim/".into(),
            }],
        }
    }
}

/// Draws changes from a seed, remembering each node's entries.
pub(crate) struct Workload {
    rng: StdRng,
    entries: BTreeMap<NodeId, Vec<(String, EntryStatus)>>,
}

impl Workload {
    pub(crate) fn new(seed: u64) -> Workload {
        Workload { rng: StdRng::seed_from_u64(seed), entries: BTreeMap::new() }
    }

    /// A published entry of a node other than `not`, if the workload made one.
    pub(crate) fn entry_elsewhere(&mut self, not: NodeId) -> Option<EntryRef> {
        let nodes: Vec<NodeId> = self.entries.keys().copied().filter(|n| *n != not).collect();
        if nodes.is_empty() {
            return None;
        }
        let origin = nodes[self.rng.gen_range(0..nodes.len())];
        let entries = self.entries.get(&origin)?;
        let (code, status) = &entries[self.rng.gen_range(0..entries.len())];
        (*status == EntryStatus::Published).then(|| EntryRef { origin, code: code.clone() })
    }

    /// A published entry of `node`, if the workload made one.
    pub(crate) fn own_published(&mut self, node: NodeId) -> Option<String> {
        let published: Vec<&String> = self
            .entries
            .get(&node)?
            .iter()
            .filter(|(_, s)| *s == EntryStatus::Published)
            .map(|(code, _)| code)
            .collect();
        let code = published.get(self.rng.gen_range(0..published.len().max(1)))?;
        Some(code.to_string())
    }

    /// Draws `len` bytes from the workload's seed.
    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        self.rng.fill(&mut out[..]);
        out
    }

    /// Draws from the workload's seed: a number below `n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        self.rng.gen_range(0..n)
    }

    /// Draws from the workload's seed: true one time in `n`.
    pub(crate) fn one_in(&mut self, n: u32) -> bool {
        self.rng.gen_ratio(1, n)
    }

    /// The next change at `node`: two in three publish a new entry; the others
    /// update, withdraw or republish one of the node's entries, or register a
    /// service for a published one.
    pub(crate) fn next_change(&mut self, node: NodeId, scope: Scope) -> Change {
        let entries = self.entries.entry(node).or_default();
        if !entries.is_empty() && self.rng.gen_ratio(1, 10) {
            let i = self.rng.gen_range(0..entries.len());
            if let (code, EntryStatus::Published) = &entries[i] {
                return Change::Service(service(node, code));
            }
        }
        if entries.is_empty() || self.rng.gen_ratio(2, 3) {
            let code = format!("3/{:06}", entries.len() + 1);
            entries.push((code.clone(), EntryStatus::Published));
            return Change::New(draft(node, &code), scope);
        }
        let i = self.rng.gen_range(0..entries.len());
        let (code, status) = &mut entries[i];
        let change = match status {
            EntryStatus::Published if self.rng.gen_bool(0.5) => Change::Withdraw(code.clone()),
            EntryStatus::Published => Change::Update(draft(node, code)),
            _ => Change::Republish(code.clone()),
        };
        *status = if matches!(change, Change::Withdraw(_)) {
            EntryStatus::Withdrawn
        } else {
            EntryStatus::Published
        };
        change
    }
}
