//! The catalog changes a simulation publishes: new entries, updates, withdrawals
//! and republications, each a valid entry with a version one above the last.

use cascade_protocol::catalog::{CatalogEntry, EntryDraft, EntryStatus};
use cascade_protocol::NodeId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

/// The organization every simulated node registers and publishes for.
pub(crate) fn provider_of(node: NodeId) -> cascade_protocol::org::Organization {
    cascade_protocol::org::Organization {
        credit_code: cascade_protocol::org::Organization::government_code(node, 1),
        name: format!("{node} data bureau"),
        division: node,
        parent: None,
    }
}

/// Generates changes from a seed.
pub(crate) struct Workload {
    rng: StdRng,
    template: EntryDraft,
    entries: BTreeMap<NodeId, Vec<(String, u64, EntryStatus)>>,
}

impl Workload {
    pub(crate) fn new(seed: u64) -> Workload {
        let template = EntryDraft {
            code: None,
            name: String::new(),
            classification: "3".into(),
            provider: String::new(),
            summary: "simulated resource".into(),
            format: cascade_protocol::catalog::ResourceFormat::Database,
            data_items: vec![cascade_protocol::catalog::DataItem {
                name: "统一社会信用代码".into(),
                data_type: cascade_protocol::catalog::DataType::Char,
                length: Some(18),
            }],
            share_type: cascade_protocol::catalog::ShareType::Unconditional,
            share_condition: None,
            not_shared_basis: None,
            share_mode: cascade_protocol::catalog::ShareMode::Platform,
            open_type: cascade_protocol::catalog::OpenType::Closed,
            open_condition: None,
            update_cycle: cascade_protocol::catalog::UpdateCycle::Daily,
            publish_date: None,
            related_codes: vec![],
        };
        Workload { rng: StdRng::seed_from_u64(seed), template, entries: BTreeMap::new() }
    }

    /// The next change at `node`: two in three publish a new entry; the others
    /// update, withdraw or republish one of the node's entries.
    pub(crate) fn next_change(&mut self, node: NodeId) -> CatalogEntry {
        let entries = self.entries.entry(node).or_default();
        let fresh = entries.is_empty() || self.rng.gen_ratio(2, 3);
        let (code, version, status) = if fresh {
            let code = format!("3/{:06}", entries.len() + 1);
            entries.push((code.clone(), 1, EntryStatus::Published));
            (code, 1, EntryStatus::Published)
        } else {
            let i = self.rng.gen_range(0..entries.len());
            let (code, version, status) = &mut entries[i];
            *version += 1;
            *status = match status {
                EntryStatus::Published if self.rng.gen_bool(0.5) => EntryStatus::Withdrawn,
                _ => EntryStatus::Published,
            };
            (code.clone(), *version, *status)
        };
        let mut draft = self.template.clone();
        draft.provider = provider_of(node).credit_code;
        draft.name = format!("{node} resource {code} v{version}");
        CatalogEntry::from_draft(draft, code, version, status)
    }
}
