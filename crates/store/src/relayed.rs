//! The workflow messages a node relayed (`RelayRecord`, written by the core's
//! group commits): what a hub's operator sees of the applications, decisions
//! and revocations passing through, newest first.

use crate::keys::RELAYED;
use crate::usage::MAX_USAGE_SCAN;
use crate::{backend, decode, Store};
use cascade_core::{RelayRecord, StoreError};

/// Largest stored record (a routed message's texts are bounded well below).
const MAX_RELAYED_BYTES: usize = 64 * 1024;
/// A relay record's key without its prefix: when (8 bytes) and the message (12).
const KEY_BYTES: usize = 20;

/// Which relay records a listing wants (every field optional).
#[derive(Clone, Debug, Default)]
pub struct RelayFilter {
    /// About this application (or grant).
    pub subject: Option<String>,
    /// Of this kind (`apply`, `withdraw`, `decision`, `revoke`).
    pub kind: Option<String>,
    /// Stored below this cursor (from an earlier page's `next`).
    pub before: Option<RelayCursor>,
}

/// Where a listing of relay records stopped: the next page starts below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayCursor([u8; KEY_BYTES]);

impl std::fmt::Display for RelayCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::str::FromStr for RelayCursor {
    type Err = String;

    fn from_str(s: &str) -> Result<RelayCursor, String> {
        let bad = || format!("{s:?} is not a cursor of relayed messages");
        if s.len() != KEY_BYTES * 2 || !s.is_ascii() {
            return Err(bad());
        }
        let mut key = [0u8; KEY_BYTES];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(RelayCursor(key))
    }
}

impl Store {
    /// The newest relay records `filter` admits, newest first, at most `limit`,
    /// reading at most `MAX_USAGE_SCAN` records; and where to page on from, if
    /// the listing stopped before the records ran out.
    pub fn relayed(
        &self,
        filter: &RelayFilter,
        limit: usize,
    ) -> Result<(Vec<RelayRecord>, Option<RelayCursor>), StoreError> {
        let mut high = vec![RELAYED];
        match filter.before {
            Some(c) => high.extend_from_slice(&c.0),
            None => high.extend_from_slice(&[0xff; KEY_BYTES]),
        }
        let mut out = Vec::new();
        let mut last = None;
        for (scanned, kv) in self.db.range(vec![RELAYED]..high).rev().enumerate() {
            if scanned == MAX_USAGE_SCAN || out.len() == limit {
                return Ok((out, last));
            }
            let (key, value) = kv.map_err(backend)?;
            last = key.get(1..).and_then(|k| <[u8; KEY_BYTES]>::try_from(k).ok()).map(RelayCursor);
            let record: RelayRecord = decode(&key, &value, MAX_RELAYED_BYTES)?;
            let is = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
            if is(&filter.subject, &record.subject) && is(&filter.kind, &record.kind) {
                out.push(record);
            }
        }
        Ok((out, None))
    }
}
