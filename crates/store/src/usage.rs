//! Usage records (全流程监控): one per call per node it crossed, kept in a sled
//! tree of their own in chunks, in the order they were written, the oldest
//! dropped beyond a bound. They are a log of what happened, not state any
//! decision reads: written by the gateway a chunk at a time (one sled insert,
//! not one per record), outside the core's group commits.

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
/// Records in one stored chunk, at most (~200 KB; its count fits the key's two bytes).
const CHUNK_RECORDS: usize = 512;
/// Largest stored chunk (a record's path is at most 2 KiB, its error a few
/// hundred bytes).
const MAX_CHUNK_BYTES: usize = CHUNK_RECORDS * 8 * 1024;
/// Name of the sled tree.
pub(crate) const USAGE_TREE: &str = "usage";

/// One hop's record of one call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// Of calls that reached the node at or after this time (unix ms).
    pub since_ms: Option<u64>,
    /// Written before this cursor (from an earlier page's `next`).
    pub before: Option<UsageCursor>,
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
            && self.since_ms.is_none_or(|since| r.request_in_ms >= since)
    }
}

/// Where a listing of usage records stopped: the next page starts below it (a
/// chunk, by when it was written and a sequence number, and a record in it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageCursor {
    chunk: [u8; 16],
    index: usize,
}

impl std::fmt::Display for UsageCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (ms, n) = self.chunk.split_at(8);
        let word = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
        write!(f, "{}-{}-{}", word(ms), word(n), self.index)
    }
}

impl std::str::FromStr for UsageCursor {
    type Err = String;

    fn from_str(s: &str) -> Result<UsageCursor, String> {
        let bad = || format!("{s:?} is not a usage cursor (ms-n-i)");
        let mut parts = s.splitn(3, '-').map(|p| p.parse::<u64>().map_err(|_| bad()));
        let (Some(ms), Some(n), Some(index)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let index = usize::try_from(index?).ok().filter(|i| *i <= CHUNK_RECORDS).ok_or_else(bad)?;
        Ok(UsageCursor { chunk: chunk_id(ms?, n?), index })
    }
}

/// A chunk's id: when it was written (unix ms) and a sequence number.
fn chunk_id(ms: u64, n: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&ms.to_be_bytes());
    id[8..].copy_from_slice(&n.to_be_bytes());
    id
}

/// A chunk's key: its id and how many records it holds, so that counting and
/// dropping chunks reads keys only.
fn chunk_key(id: [u8; 16], records: usize) -> [u8; 18] {
    let mut key = [0u8; 18];
    key[..16].copy_from_slice(&id);
    key[16..].copy_from_slice(&(records as u16).to_be_bytes());
    key
}

/// The id and the record count of a chunk's key.
fn chunk_of(key: &[u8]) -> ([u8; 16], u64) {
    let id = key.get(..16).and_then(|k| <[u8; 16]>::try_from(k).ok()).unwrap_or([0; 16]);
    let records = key.get(16..18).and_then(|k| <[u8; 2]>::try_from(k).ok()).map_or(0, u16::from_be_bytes);
    (id, u64::from(records))
}

impl Store {
    /// Appends usage records (written at `now_ms`), then drops the oldest
    /// chunks beyond `USAGE_KEPT` records.
    pub fn record_usage(&self, records: &[UsageRecord], now_ms: u64) -> Result<(), StoreError> {
        self.record_usage_keeping(records, now_ms, USAGE_KEPT)
    }

    /// As `record_usage`, keeping `kept` records.
    pub(crate) fn record_usage_keeping(
        &self,
        records: &[UsageRecord],
        now_ms: u64,
        kept: u64,
    ) -> Result<(), StoreError> {
        for chunk in records.chunks(CHUNK_RECORDS) {
            let bytes = codec::encode(&chunk).map_err(|e| StoreError::Backend(e.to_string()))?;
            let n = self.db.generate_id().map_err(backend)?;
            self.usage.insert(chunk_key(chunk_id(now_ms, n), chunk.len()), bytes).map_err(backend)?;
        }
        let count =
            self.usage_count.fetch_add(records.len() as u64, Ordering::Relaxed) + records.len() as u64;
        let mut over = count.saturating_sub(kept);
        while over > 0 {
            let Some((key, _)) = self.usage.pop_min().map_err(backend)? else { break };
            let (_, dropped) = chunk_of(&key);
            self.usage_count.fetch_sub(dropped, Ordering::Relaxed);
            over = over.saturating_sub(dropped.max(1));
        }
        Ok(())
    }

    /// Counts the stored usage records (once, at open), from the chunks' keys.
    pub(crate) fn count_usage(&self) -> Result<u64, StoreError> {
        let mut count = 0;
        for key in self.usage.iter().keys() {
            count += chunk_of(&key.map_err(backend)?).1;
        }
        Ok(count)
    }

    /// The newest usage records `filter` admits, newest first, at most `limit`,
    /// reading at most `MAX_USAGE_SCAN` records; and where to page on from, if
    /// the listing stopped before the records ran out.
    pub fn usage(
        &self,
        filter: &UsageFilter,
        limit: usize,
    ) -> Result<(Vec<UsageRecord>, Option<UsageCursor>), StoreError> {
        // A chunk holds only calls that reached the node before it was written.
        let low = chunk_id(filter.since_ms.unwrap_or(0), 0);
        let high = filter.before.map_or([0xff; 18], |c| chunk_key(c.chunk, 0xffff));
        let mut out = Vec::new();
        let mut scanned = 0;
        for kv in self.usage.range(low.as_slice()..=high.as_slice()).rev() {
            let (key, value) = kv.map_err(backend)?;
            let chunk: Vec<UsageRecord> = decode(&key, &value, MAX_CHUNK_BYTES)?;
            let (id, _) = chunk_of(&key);
            let end = match filter.before {
                Some(c) if c.chunk == id => c.index.min(chunk.len()),
                _ => chunk.len(),
            };
            for (index, record) in chunk.into_iter().enumerate().take(end).rev() {
                if scanned == MAX_USAGE_SCAN || out.len() == limit {
                    return Ok((out, Some(UsageCursor { chunk: id, index: index + 1 })));
                }
                scanned += 1;
                if filter.admits(&record) {
                    out.push(record);
                }
            }
        }
        Ok((out, None))
    }
}
