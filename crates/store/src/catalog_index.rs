//! The catalog index: every materialized entry and own draft, in memory, by its
//! store key, with what listings filter on (origin, scope, status, share type) and
//! its searchable text (code, name and summary, lower-cased). A listing walks it
//! instead of decoding stored deltas, a text search is a substring scan of short
//! strings (a few ms for tens of thousands of entries), and an entry is found by
//! its code without a scan. Built when the store opens; kept current by `apply`.

use crate::keys::{CATALOG, OWN};
use cascade_protocol::catalog::{CatalogEntry, EntryStatus, ShareType};
use cascade_protocol::NodeId;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

/// What the index holds of one entry.
#[derive(Debug)]
struct Slot {
    origin: NodeId,
    status: EntryStatus,
    share_type: ShareType,
    code: String,
    /// Code, name and summary, lower-cased, separated by newlines.
    text: Box<str>,
}

/// Which entries a listing wants.
#[derive(Clone, Debug, Default)]
pub struct CatalogFilter {
    /// Only entries originated by this node.
    pub origin: Option<NodeId>,
    /// Only entries whose origin is at this tier.
    pub tier: Option<cascade_protocol::Tier>,
    /// Only entries of this share type.
    pub share_type: Option<ShareType>,
    /// Only entries of these statuses (own drafts only when `Draft` is among them).
    pub statuses: Vec<EntryStatus>,
    /// Case-insensitive text in code, name or summary.
    pub q: Option<String>,
}

/// The keys of one page, and the key to continue after when the walk stopped early.
pub(crate) struct KeyPage {
    pub(crate) keys: Vec<Vec<u8>>,
    pub(crate) next: Option<Vec<u8>>,
}

/// The index.
#[derive(Debug, Default)]
pub(crate) struct CatalogIndex {
    slots: BTreeMap<Vec<u8>, Slot>,
    /// Keys of materialized entries by code (several origins may use one code).
    by_code: HashMap<String, BTreeSet<Vec<u8>>>,
}

impl CatalogFilter {
    /// Whether an entry of `origin` with these fields passes (`text` and `q`
    /// lower-cased; `origin` itself is chosen by the key ranges walked).
    fn passes(
        &self,
        origin: NodeId,
        status: EntryStatus,
        share_type: ShareType,
        text: &str,
        finder: Option<&memchr::memmem::Finder<'_>>,
    ) -> bool {
        self.statuses.contains(&status)
            && self.tier.is_none_or(|t| t == origin.tier())
            && self.share_type.is_none_or(|s| s == share_type)
            && finder.is_none_or(|f| f.find(text.as_bytes()).is_some())
    }

    /// Whether a row read from the store passes: it may have changed since the
    /// index was walked (`q` lower-cased).
    pub(crate) fn admits(&self, origin: NodeId, entry: &CatalogEntry) -> bool {
        let finder = self.q.as_ref().map(|q| memchr::memmem::Finder::new(q.as_bytes()));
        self.passes(origin, entry.status, entry.share_type, &searchable(entry), finder.as_ref())
    }
}

fn searchable(entry: &CatalogEntry) -> Box<str> {
    format!("{}\n{}\n{}", entry.code, entry.name, entry.summary).to_lowercase().into_boxed_str()
}

impl CatalogIndex {
    /// Records the entry stored under `key`.
    pub(crate) fn put(&mut self, key: Vec<u8>, origin: NodeId, entry: &CatalogEntry) {
        let slot = Slot {
            origin,
            status: entry.status,
            share_type: entry.share_type,
            code: entry.code.clone(),
            text: searchable(entry),
        };
        if key.first() == Some(&CATALOG) {
            self.by_code.entry(slot.code.clone()).or_default().insert(key.clone());
        }
        self.slots.insert(key, slot);
    }

    /// Forgets the entry stored under `key` (a draft that was published).
    pub(crate) fn remove(&mut self, key: &[u8]) {
        if let Some(slot) = self.slots.remove(key) {
            if let Some(keys) = self.by_code.get_mut(&slot.code) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_code.remove(&slot.code);
                }
            }
        }
    }

    /// The keys of materialized entries with this code.
    pub(crate) fn keys_of_code(&self, code: &str) -> Vec<Vec<u8>> {
        self.by_code.get(code).map(|keys| keys.iter().cloned().collect()).unwrap_or_default()
    }

    /// How many entries it holds.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Walks keys after `after` (all when `None`) within `ranges`, in key order,
    /// keeping those that pass `filter` (its `q` already lower-cased), until
    /// `limit` are kept or `budget` keys were looked at; says how many it looked at.
    pub(crate) fn page(
        &self,
        filter: &CatalogFilter,
        ranges: &[(Vec<u8>, Vec<u8>)],
        after: Option<&[u8]>,
        limit: usize,
        budget: usize,
    ) -> (KeyPage, usize) {
        let finder = filter.q.as_ref().map(|q| memchr::memmem::Finder::new(q.as_bytes()));
        let mut page = KeyPage { keys: Vec::new(), next: None };
        let mut examined = 0;
        let mut last: Option<&Vec<u8>> = None;
        for (start, end) in ranges {
            let from = match after {
                Some(a) if a >= start.as_slice() => Bound::Excluded(a.to_vec()),
                _ => Bound::Included(start.clone()),
            };
            if matches!(&from, Bound::Excluded(a) if a >= end) {
                continue;
            }
            for (key, slot) in self.slots.range((from, Bound::Excluded(end.clone()))) {
                if page.keys.len() == limit || examined == budget {
                    // More remain: the next page starts after the last key looked at.
                    page.next = last.cloned();
                    return (page, examined);
                }
                examined += 1;
                last = Some(key);
                if filter.passes(slot.origin, slot.status, slot.share_type, &slot.text, finder.as_ref()) {
                    page.keys.push(key.clone());
                }
            }
        }
        (page, examined)
    }
}

/// The key ranges a listing walks, in order: materialized entries (of `origin`
/// only, when given), then own drafts when they are wanted.
pub(crate) fn ranges(filter: &CatalogFilter, me: NodeId) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    match filter.origin {
        Some(origin) => {
            let start = crate::keys::catalog_prefix(origin);
            let mut end = start.clone();
            // Origins are 4-byte codes far below u32::MAX: the next one bounds the range.
            let next = origin.code().saturating_add(1).to_be_bytes();
            end.truncate(1);
            end.extend_from_slice(&next);
            out.push((start, end));
        }
        None => out.push((vec![CATALOG], vec![CATALOG + 1])),
    }
    if filter.statuses.contains(&EntryStatus::Draft) && filter.origin.is_none_or(|o| o == me) {
        out.push((vec![OWN], vec![OWN + 1]));
    }
    out
}
