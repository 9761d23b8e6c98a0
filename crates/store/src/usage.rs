//! Usage records (全流程监控): one per call per node it crossed, kept in a sled
//! tree of their own, in order of arrival, the oldest dropped beyond a bound.
//! They are a log of what happened, not state any decision reads: written in
//! batches by the gateway, outside the core's group commits.

use crate::{backend, decode, Store};
use cascade_core::StoreError;
use cascade_protocol::codec;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;

/// Usage records a node keeps: beyond, the oldest go (~300 bytes each, so at
/// most ~300 MB; a busy hub's operator exports them before they go).
pub const USAGE_KEPT: u64 = 1_000_000;
/// Records one listing reads at most, whatever its filters: the bound on the
/// work one request costs.
pub const MAX_USAGE_SCAN: usize = 100_000;
/// Largest stored record (paths are at most 2 KiB, errors a few hundred bytes).
const MAX_USAGE_BYTES: usize = 16 * 1024;
/// Name of the sled tree.
pub(crate) const USAGE_TREE: &str = "usage";

/// One hop's record of one call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// The call.
    pub call: String,
    /// The service.
    pub service: String,
    /// Who called (an account at the consumer's node).
    pub caller: String,
    /// The consumer organization (the grantee).
    pub consumer: String,
    /// `consumer`, `relay` or `provider`.
    pub role: String,
    /// Method and path.
    pub endpoint: String,
    /// HTTP status, or 0 when the call broke off.
    pub status: u16,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// Request body bytes through this hop.
    pub bytes_in: u64,
    /// Response body bytes through this hop.
    pub bytes_out: u64,
    /// When the request reached this hop (unix ms).
    pub request_in_ms: u64,
    /// When it left this hop (forwarded, or sent upstream).
    pub request_out_ms: Option<u64>,
    /// When the answer's head reached this hop.
    pub response_in_ms: Option<u64>,
    /// When the answer's last byte left this hop.
    pub response_out_ms: Option<u64>,
}

/// Which usage records a listing wants (every field optional).
#[derive(Clone, Debug, Default)]
pub struct UsageFilter {
    /// Of this service.
    pub service: Option<String>,
    /// In this role.
    pub role: Option<String>,
    /// Of this consumer organization.
    pub consumer: Option<String>,
    /// By this caller.
    pub caller: Option<String>,
    /// With this status.
    pub status: Option<u16>,
    /// Of this call.
    pub call: Option<String>,
    /// Arrived at or after this time (unix ms).
    pub since_ms: Option<u64>,
    /// Stored before this cursor (from an earlier page's `next`).
    pub before: Option<UsageCursor>,
}

/// Where a listing of usage records stopped: the next page starts below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageCursor([u8; 16]);

impl std::fmt::Display for UsageCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (ms, n) = self.0.split_at(8);
        let word = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
        write!(f, "{}-{}", word(ms), word(n))
    }
}

impl std::str::FromStr for UsageCursor {
    type Err = String;

    fn from_str(s: &str) -> Result<UsageCursor, String> {
        let bad = || format!("{s:?} is not a usage cursor (ms-n)");
        let (ms, n) = s.split_once('-').ok_or_else(bad)?;
        let ms: u64 = ms.parse().map_err(|_| bad())?;
        let n: u64 = n.parse().map_err(|_| bad())?;
        Ok(UsageCursor::new(ms, n))
    }
}

impl UsageCursor {
    fn new(ms: u64, n: u64) -> UsageCursor {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&ms.to_be_bytes());
        key[8..].copy_from_slice(&n.to_be_bytes());
        UsageCursor(key)
    }
}

impl UsageFilter {
    fn admits(&self, r: &UsageRecord) -> bool {
        let is = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        is(&self.service, &r.service)
            && is(&self.role, &r.role)
            && is(&self.consumer, &r.consumer)
            && is(&self.caller, &r.caller)
            && is(&self.call, &r.call)
            && self.status.is_none_or(|s| s == r.status)
    }
}

impl Store {
    fn usage_tree(&self) -> Result<sled::Tree, StoreError> {
        self.db.open_tree(USAGE_TREE).map_err(backend)
    }

    /// Appends usage records, then drops the oldest beyond `USAGE_KEPT`.
    pub fn record_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        let tree = self.usage_tree()?;
        let mut batch = sled::Batch::default();
        for record in records {
            let bytes = codec::encode(record).map_err(|e| StoreError::Backend(e.to_string()))?;
            let n = self.db.generate_id().map_err(backend)?;
            batch.insert(&UsageCursor::new(record.request_in_ms, n).0, bytes);
        }
        tree.apply_batch(batch).map_err(backend)?;
        let count =
            self.usage_count.fetch_add(records.len() as u64, Ordering::Relaxed) + records.len() as u64;
        if count > USAGE_KEPT {
            let mut dropped = 0;
            for key in tree.iter().keys().take((count - USAGE_KEPT) as usize) {
                tree.remove(key.map_err(backend)?).map_err(backend)?;
                dropped += 1;
            }
            self.usage_count.fetch_sub(dropped, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Counts the stored usage records (once, at open).
    pub(crate) fn count_usage(&self) -> Result<u64, StoreError> {
        Ok(self.usage_tree()?.len() as u64)
    }

    /// The newest usage records `filter` admits, newest first, at most `limit`,
    /// reading at most `MAX_USAGE_SCAN` records; and where to page on from, if
    /// the listing stopped before the records ran out.
    pub fn usage(
        &self,
        filter: &UsageFilter,
        limit: usize,
    ) -> Result<(Vec<UsageRecord>, Option<UsageCursor>), StoreError> {
        let tree = self.usage_tree()?;
        let low = UsageCursor::new(filter.since_ms.unwrap_or(0), 0).0;
        let high = filter.before.map_or([0xff; 16], |c| c.0);
        let mut out = Vec::new();
        let mut last: Option<UsageCursor> = None;
        for (scanned, kv) in tree.range(low.as_slice()..high.as_slice()).rev().enumerate() {
            if scanned == MAX_USAGE_SCAN || out.len() == limit {
                // Records remain below the last one read: the next page starts there.
                return Ok((out, last));
            }
            let (key, value) = kv.map_err(backend)?;
            last = Some(UsageCursor(key.as_ref().try_into().unwrap_or([0; 16])));
            let record: UsageRecord = decode(&key, &value, MAX_USAGE_BYTES)?;
            if filter.admits(&record) {
                out.push(record);
            }
        }
        Ok((out, None))
    }
}
