//! The catalog index: every materialized entry and own draft, in memory, by its
//! store key, with what listings filter on (origin, scope, status, share type) and
//! its searchable text (code, name and summary, lower-cased). A listing walks it
//! instead of decoding stored deltas, a text search is a substring scan of short
//! strings (a few ms for tens of thousands of entries), and an entry is found by
//! its code without a scan. Built when the store opens; kept current by `apply`.

use crate::keys::{CATALOG, OWN};
use cascade_protocol::catalog::{CatalogEntry, EntryStatus, ShareType};
use cascade_protocol::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// What the index holds of one entry (its code is the tail of its key).
#[derive(Debug)]
struct Slot {
    origin: NodeId,
    status: EntryStatus,
    share_type: ShareType,
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
        let slot =
            Slot { origin, status: entry.status, share_type: entry.share_type, text: searchable(entry) };
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
        let finder = filter.q.as_ref().map(|q| memchr::memmem::Finder::new(q.as_bytes()));
        let mut page = KeyPage { keys: Vec::new(), next: None };
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
                if page.keys.len() == limit || examined == budget {
                    // More remain: the next page starts after the last key looked at.
                    page.next = last.map(<[u8]>::to_vec);
                    return (page, examined);
                }
                examined += 1;
                last = Some(key);
                if filter.passes(slot.origin, slot.status, slot.share_type, &slot.text, finder.as_ref()) {
                    page.keys.push(key.to_vec());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{catalog_key, own_key};
    use cascade_protocol::catalog::EntryDraft;
    use cascade_protocol::Scope;

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
        for key in &keys {
            let origin = if key == &keys[0] { qingdao } else { jinan };
            index.put(
                key.clone(),
                origin,
                &entry(std::str::from_utf8(&key[6..]).expect("a code"), "企业年报"),
            );
        }
        // A draft is listed, never found by code.
        index.put(own_key("3/000001"), jinan, &entry("3/000001", "草稿"));
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
    }
}
