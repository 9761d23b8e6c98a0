//! Frames exchanged between neighbours on the sync stream.

use crate::delta::Delta;
use crate::ids::LogId;
use serde::{Deserialize, Serialize};

/// ALPN of the sync protocol; bump the version on any incompatible change.
pub const ALPN: &[u8] = b"cascade/1";

/// Most deltas in one `Frame::Deltas`: keeps one frame's verification work bounded.
pub const MAX_BATCH_DELTAS: usize = 512;

/// Target encoded size of one `Frame::Deltas` (a quarter of the frame limit).
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// A version vector: for each log, the highest contiguous seq held.
pub type VersionVector = Vec<(LogId, u64)>;

/// One message on the sync stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// First frame each way: what the sender holds (logs visible to the receiver only).
    Hello {
        /// The sender's version vector.
        vv: VersionVector,
    },
    /// Deltas, in log order within each log.
    Deltas(Vec<Delta>),
    /// Ask the receiver to (re)send a log from `from` on: the sender saw a gap.
    Need {
        /// The log.
        log: LogId,
        /// The first missing seq.
        from: u64,
    },
}
