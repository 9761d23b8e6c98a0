//! The catalog index: every materialized entry and own draft, in memory, by its
//! store key, with what listings filter on (origin, scope, status, provider,
//! share type, open type, format, update cycle, when it was stored here) and
//! its searchable text (code, name and summary, lower-cased). A listing walks it
//! instead of decoding stored deltas, a text search is a substring scan of short
//! strings (a few ms for tens of thousands of entries), and an entry is found by
//! its code without a scan. Built when the store opens; kept current by `apply`.

use crate::keys::scope_of;
use crate::keys::{CATALOG, OWN};
use cascade_protocol::catalog::{
    CatalogEntry, EntryStatus, OpenType, ResourceFormat, ShareType, UpdateCycle,
};
use cascade_protocol::{NodeId, Scope};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// What the index holds of one entry (its code is the tail of its key).
#[derive(Debug)]
struct Slot {
    origin: NodeId,
    status: EntryStatus,
    /// The provider's credit code.
    provider: Box<str>,
    share_type: ShareType,
    open_type: OpenType,
    format: ResourceFormat,
    update_cycle: UpdateCycle,
    /// When this node stored this version (unix ms; 0 for own drafts and rows
    /// stored before the time was kept).
    stored_ms: u64,
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
    /// Only entries of this provider (credit code).
    pub provider: Option<String>,
    /// Only entries of this share type.
    pub share_type: Option<ShareType>,
    /// Only entries of this format.
    pub format: Option<ResourceFormat>,
    /// Only entries of this update cycle.
    pub update_cycle: Option<UpdateCycle>,
    /// Only entries of these statuses (own drafts only when `Draft` is among them).
    pub statuses: Vec<EntryStatus>,
    /// Case-insensitive text in code, name or summary.
    pub q: Option<String>,
    /// Only entries of this open type.
    pub open_type: Option<OpenType>,
    /// Only materialized entries of this scope (own drafts have none).
    pub scope: Option<Scope>,
    /// Only entries this node stored at or after this time (unix ms).
    pub stored_since_ms: Option<u64>,
}

/// The keys of one page, and the key to continue after when the walk stopped early.
pub(crate) struct KeyPage {
    pub(crate) keys: Vec<Vec<u8>>,
    pub(crate) next: Option<Vec<u8>>,
}

/// The index. Every national node holds the whole federated catalog in it, so
/// each entry costs little besides its searchable text: keys are boxed slices,
/// and the by-code lookup holds the code once with the 5 key bytes between the
/// kind and the code (origin and scope) instead of a set per code.
#[derive(Debug, Default)]
pub(crate) struct CatalogIndex {
    slots: BTreeMap<Box<[u8]>, Slot>,
    /// Materialized entries by code: the code, then the origin and scope bytes
    /// of its key (several origins, and both scopes, may use one code).
    by_code: BTreeSet<(Box<str>, [u8; 5])>,
}

/// A materialized entry's key split into its origin-and-scope bytes and its
/// code; `None` for own drafts' keys (and anything malformed).
fn code_of(key: &[u8]) -> Option<(&str, [u8; 5])> {
    if key.first() != Some(&CATALOG) {
        return None;
    }
    let middle: [u8; 5] = key.get(1..6)?.try_into().ok()?;
    Some((std::str::from_utf8(key.get(6..)?).ok()?, middle))
}

impl CatalogFilter {
    /// Whether an entry of `origin` with these fields passes (`text` and `q`
    /// lower-cased; `origin` itself is chosen by the key ranges walked).
    fn passes(&self, key: &[u8], slot: &Slot, finder: Option<&memchr::memmem::Finder<'_>>) -> bool {
        self.statuses.contains(&slot.status)
            && self.tier.is_none_or(|t| t == slot.origin.tier())
            && self.provider.as_deref().is_none_or(|p| p == &*slot.provider)
            && self.share_type.is_none_or(|s| s == slot.share_type)
            && self.format.is_none_or(|f| f == slot.format)
            && self.update_cycle.is_none_or(|u| u == slot.update_cycle)
            && self.open_type.is_none_or(|o| o == slot.open_type)
            && self.scope.is_none_or(|s| scope_in(key) == Some(s))
            && self.stored_since_ms.is_none_or(|t| slot.stored_ms >= t)
            && finder.is_none_or(|f| f.find(slot.text.as_bytes()).is_some())
    }

    /// Whether a row read from the store passes: it may have changed since the
    /// index was walked (`q` lower-cased).
    pub(crate) fn admits(&self, key: &[u8], origin: NodeId, entry: &CatalogEntry, stored_ms: u64) -> bool {
        let finder = self.q.as_ref().map(|q| memchr::memmem::Finder::new(q.as_bytes()));
        self.passes(key, &Slot::new(origin, entry, stored_ms), finder.as_ref())
    }

    /// Whether a materialized row passes (its `q`, if any, lower-cased).
    pub fn admits_row(&self, row: &crate::CatalogRow) -> bool {
        let key = crate::keys::catalog_key(row.origin, row.scope, &row.entry.code);
        self.admits(&key, row.origin, &row.entry, row.stored_ms.unwrap_or(0))
    }
}

/// The scope of a materialized entry's key; `None` for own drafts' keys.
fn scope_in(key: &[u8]) -> Option<Scope> {
    if key.first() != Some(&CATALOG) {
        return None;
    }
    key.get(5).copied().and_then(scope_of)
}

impl Slot {
    fn new(origin: NodeId, entry: &CatalogEntry, stored_ms: u64) -> Slot {
        Slot {
            origin,
            status: entry.status,
            provider: entry.provider.as_str().into(),
            share_type: entry.share_type,
            open_type: entry.open_type,
            format: entry.format,
            update_cycle: entry.update_cycle,
            stored_ms,
            text: searchable(entry),
        }
    }
}

fn searchable(entry: &CatalogEntry) -> Box<str> {
    format!("{}\n{}\n{}", entry.code, entry.name, entry.summary).to_lowercase().into_boxed_str()
}

impl CatalogIndex {
    /// Records the entry stored under `key` at `stored_ms`.
    pub(crate) fn put(&mut self, key: Vec<u8>, origin: NodeId, entry: &CatalogEntry, stored_ms: u64) {
        let slot = Slot::new(origin, entry, stored_ms);
        if let Some((code, middle)) = code_of(&key) {
            self.by_code.insert((code.into(), middle));
        }
        self.slots.insert(key.into_boxed_slice(), slot);
    }

    /// Forgets the entry stored under `key` (a draft that was published).
    pub(crate) fn remove(&mut self, key: &[u8]) {
        if self.slots.remove(key).is_some() {
            if let Some((code, middle)) = code_of(key) {
                self.by_code.remove(&(Box::from(code), middle));
            }
        }
    }

    /// The keys of materialized entries with this code.
    pub(crate) fn keys_of_code(&self, code: &str) -> Vec<Vec<u8>> {
        let code: Box<str> = code.into();
        let range = (code.clone(), [0; 5])..=(code.clone(), [u8::MAX; 5]);
        self.by_code
            .range(range)
            .map(|(_, middle)| {
                let mut key = Vec::with_capacity(6 + code.len());
                key.push(CATALOG);
                key.extend_from_slice(middle);
                key.extend_from_slice(code.as_bytes());
                key
            })
            .collect()
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
        let mut keys = Vec::new();
        let (next, examined) = self.walk(filter, ranges, after, budget, |key| {
            if keys.len() == limit {
                return false;
            }
            keys.push(key.to_vec());
            true
        });
        (KeyPage { keys, next }, examined)
    }

    /// Walks keys after `after` within `ranges`, in key order, handing each that
    /// passes `filter` to `take` until it answers `false` (that key is not taken)
    /// or `budget` keys were looked at. Answers where to continue when it stopped
    /// early (after the last key taken or looked at), and how many it looked at.
    pub(crate) fn walk(
        &self,
        filter: &CatalogFilter,
        ranges: &[(Vec<u8>, Vec<u8>)],
        after: Option<&[u8]>,
        budget: usize,
        mut take: impl FnMut(&[u8]) -> bool,
    ) -> (Option<Vec<u8>>, usize) {
        let finder = filter.q.as_ref().map(|q| memchr::memmem::Finder::new(q.as_bytes()));
        let mut examined = 0;
        let mut last: Option<&[u8]> = None;
        for (start, end) in ranges {
            let from = match after {
                Some(a) if a >= start.as_slice() => Bound::Excluded(a),
                _ => Bound::Included(start.as_slice()),
            };
            if matches!(from, Bound::Excluded(a) if a >= end.as_slice()) {
                continue;
            }
            for (key, slot) in self.slots.range::<[u8], _>((from, Bound::Excluded(end.as_slice()))) {
                // Stopping with more to come: continue after the last key looked
                // at (or where this walk began, having looked at none).
                let resume = || last.or(after).map(<[u8]>::to_vec).or_else(|| Some(start.clone()));
                if examined == budget {
                    return (resume(), examined);
                }
                if filter.passes(key, slot, finder.as_ref()) && !take(key) {
                    return (resume(), examined);
                }
                examined += 1;
                last = Some(key);
            }
        }
        (None, examined)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{catalog_key, own_key};
    use cascade_protocol::catalog::EntryDraft;

    fn entry(code: &str, name: &str) -> CatalogEntry {
        let draft: EntryDraft = serde_json::from_value(serde_json::json!({
            "name": name, "classification": "3", "provider": "91350100M000100Y43", "summary": "Summary",
            "format": "database", "data_items": [], "share_type": "unconditional", "share_mode": "platform",
            "open_type": "closed", "update_cycle": "daily"}))
        .expect("a draft");
        CatalogEntry::from_draft(draft, code.into(), 1, EntryStatus::Published)
    }

    fn nid(s: &str) -> NodeId {
        s.parse().expect("a division")
    }

    #[test]
    fn a_code_finds_every_origin_and_scope_and_forgets_what_was_removed() {
        let (jinan, qingdao) = (nid("370100"), nid("370200"));
        let mut index = CatalogIndex::default();
        let keys = [
            catalog_key(qingdao, Scope::Federation, "3/000001"),
            catalog_key(jinan, Scope::Province, "3/000001"),
            catalog_key(jinan, Scope::Federation, "3/000001"),
            catalog_key(jinan, Scope::Federation, "3/000002"),
        ];
        for (n, key) in (1..).zip(&keys) {
            let origin = if key == &keys[0] { qingdao } else { jinan };
            let mut entry = entry(std::str::from_utf8(&key[6..]).expect("a code"), "企业年报");
            if n > 1 {
                entry.open_type = OpenType::Open;
            }
            if n == 4 {
                entry.provider = "11370100MB0000001A".into();
                entry.format = ResourceFormat::Spreadsheet;
                entry.update_cycle = UpdateCycle::Monthly;
            }
            index.put(key.clone(), origin, &entry, n * 1_000);
        }
        // A draft is listed, never found by code.
        index.put(own_key("3/000001"), jinan, &entry("3/000001", "草稿"), 0);
        let mut expected = vec![keys[0].clone(), keys[1].clone(), keys[2].clone()];
        expected.sort();
        assert_eq!(index.keys_of_code("3/000001"), expected);
        assert_eq!(index.keys_of_code("3/000002"), vec![keys[3].clone()]);
        assert!(index.keys_of_code("3/00000").is_empty());
        assert_eq!(index.len(), 5);

        index.remove(&keys[1]);
        index.remove(&own_key("3/000001"));
        let mut expected = vec![keys[0].clone(), keys[2].clone()];
        expected.sort();
        assert_eq!(index.keys_of_code("3/000001"), expected);
        assert_eq!(index.len(), 3);

        // Pages walk key order, resume after the last key looked at, and filter.
        let filter = CatalogFilter {
            statuses: vec![EntryStatus::Published],
            q: Some("企业".into()),
            ..CatalogFilter::default()
        };
        let ranges = ranges(&filter, jinan);
        let (first, examined) = index.page(&filter, &ranges, None, 2, 100);
        assert_eq!((first.keys.len(), examined), (2, 2));
        let (rest, _) = index.page(&filter, &ranges, first.next.as_deref(), 2, 100);
        assert_eq!(rest.keys.len(), 1);
        assert!(rest.next.is_none());
        let mut all = first.keys;
        all.extend(rest.keys);
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(all, sorted);

        // The open-data view: open, federation-wide, stored since a time.
        let open = CatalogFilter {
            statuses: vec![EntryStatus::Published, EntryStatus::Draft],
            open_type: Some(OpenType::Open),
            scope: Some(Scope::Federation),
            ..CatalogFilter::default()
        };
        let ranges = super::ranges(&open, jinan);
        let keys_of = |filter: &CatalogFilter| index.page(filter, &ranges, None, 10, 100).0.keys;
        assert_eq!(keys_of(&open), vec![keys[2].clone(), keys[3].clone()]);
        let since = CatalogFilter { stored_since_ms: Some(3_500), ..open.clone() };
        assert_eq!(keys_of(&since), vec![keys[3].clone()]);
        let province = CatalogFilter { scope: Some(Scope::Province), ..open };
        assert!(keys_of(&province).is_empty(), "index removed the province row");

        // The console's filters: provider, format and update cycle, each alone.
        let any = CatalogFilter { statuses: vec![EntryStatus::Published], ..CatalogFilter::default() };
        let by_provider = CatalogFilter { provider: Some("11370100MB0000001A".into()), ..any.clone() };
        assert_eq!(keys_of(&by_provider), vec![keys[3].clone()]);
        let by_format = CatalogFilter { format: Some(ResourceFormat::Database), ..any.clone() };
        let mut databases = vec![keys[0].clone(), keys[2].clone()];
        databases.sort();
        assert_eq!(keys_of(&by_format), databases);
        let by_cycle = CatalogFilter { update_cycle: Some(UpdateCycle::Monthly), ..any };
        assert_eq!(keys_of(&by_cycle), vec![keys[3].clone()]);
    }
}
