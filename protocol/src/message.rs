//! Frames exchanged between neighbours on the sync stream, and the one rule that
//! cuts deltas into frames.

use crate::delta::Delta;
use crate::ids::LogId;
use crate::limits::{MAX_BATCH_BYTES, MAX_BATCH_DELTAS};
use crate::routed::{MessageId, Routed};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// ALPN of the sync protocol; bump the version on any incompatible change.
pub const ALPN: &[u8] = b"cascade/4";

/// A version vector: for each log, the highest contiguous seq held.
pub type VersionVector = Vec<(LogId, u64)>;

/// One message on the sync stream. Deltas are shared (`Arc`), so that one delta
/// pushed to several neighbours, persisted and relayed is never copied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// First frame each way: what the sender holds (logs visible to the receiver only).
    Hello {
        /// The sender's version vector.
        vv: VersionVector,
    },
    /// Deltas, in log order within each log.
    Deltas(Vec<Arc<Delta>>),
    /// Ask the receiver to (re)send a log from `from` on: the sender saw a gap.
    Need {
        /// The log.
        log: LogId,
        /// The first missing seq.
        from: u64,
    },
    /// A routed message for the receiver or beyond it (see `routed`).
    Routed(Arc<Routed>),
    /// The receiver's routed messages the sender has made durable (and taken over).
    RoutedAck(Vec<MessageId>),
}

/// Cuts a stream of deltas into `Frame::Deltas` of at most `MAX_BATCH_DELTAS`
/// deltas and `MAX_BATCH_BYTES` bytes, never separating a run of unsigned deltas
/// from the signed delta that covers it: the one batching rule of every sender.
#[derive(Debug, Default)]
pub struct Batcher {
    batch: Vec<Arc<Delta>>,
    bytes: usize,
    /// Unsigned deltas waiting for the signed delta that closes their run.
    run: Vec<Arc<Delta>>,
    run_bytes: usize,
}

impl Batcher {
    /// An empty batcher.
    pub fn new() -> Batcher {
        Batcher::default()
    }

    /// Adds a delta; returns the full frame to send first when the delta (with the
    /// run it closes) does not fit.
    pub fn push(&mut self, delta: Arc<Delta>) -> Option<Frame> {
        let size = delta.encoded_len();
        if !delta.is_signed() {
            self.run_bytes += size;
            self.run.push(delta);
            return None;
        }
        let (count, bytes) = (self.run.len() + 1, self.run_bytes + size);
        let full = !self.batch.is_empty()
            && (self.batch.len() + count > MAX_BATCH_DELTAS || self.bytes + bytes > MAX_BATCH_BYTES);
        let out = if full { self.take_batch() } else { None };
        self.batch.append(&mut self.run);
        self.batch.push(delta);
        self.bytes += bytes;
        self.run_bytes = 0;
        out
    }

    fn take_batch(&mut self) -> Option<Frame> {
        self.bytes = 0;
        (!self.batch.is_empty()).then(|| Frame::Deltas(std::mem::take(&mut self.batch)))
    }

    /// A frame of what is left, if anything; call until it answers `None`. (A run
    /// no signed delta closed goes out as it is, within the limits; its receiver
    /// refuses it. Honest senders never leave one.)
    pub fn finish(&mut self) -> Option<Frame> {
        while let Some(first) = self.run.first() {
            let size = first.encoded_len();
            if !self.batch.is_empty()
                && (self.batch.len() == MAX_BATCH_DELTAS || self.bytes + size > MAX_BATCH_BYTES)
            {
                return self.take_batch();
            }
            self.run_bytes -= size;
            self.bytes += size;
            self.batch.push(self.run.remove(0));
        }
        self.take_batch()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::{DeltaBody, GENESIS_HASH};
    use crate::ids::{NodeId, Scope};
    use crate::limits::FRAME_OVERHEAD;
    use ed25519_dalek::SigningKey;

    fn delta(body_len: usize) -> Arc<Delta> {
        let key = SigningKey::from_bytes(&[5; 32]);
        let log = LogId { origin: NodeId::new(370100).unwrap(), scope: Scope::Province };
        let body = DeltaBody::Join { chain: vec![vec![7; body_len]] };
        Arc::new(Delta::sign(&key, log, 1, GENESIS_HASH, &body).unwrap())
    }

    #[test]
    fn encoded_len_matches_the_codec() {
        let d = delta(100);
        assert_eq!(d.encoded_len(), crate::codec::encode(&*d).unwrap().len());
        let frame = Frame::Deltas(vec![d.clone(), d.clone()]);
        assert_eq!(crate::codec::encode(&frame).unwrap().len(), FRAME_OVERHEAD + 2 * d.encoded_len());
    }

    #[test]
    fn a_run_is_never_separated_from_the_signed_delta_that_closes_it() {
        let mut unsigned = Delta::clone(&delta(10));
        unsigned.signature.clear();
        let unsigned = Arc::new(unsigned);
        let signed = delta(10);
        let mut batcher = Batcher::new();
        let mut frames = Vec::new();
        // Fill a batch to one short of full, then a run of three and its closer.
        for _ in 0..MAX_BATCH_DELTAS - 1 {
            frames.extend(batcher.push(signed.clone()));
        }
        for _ in 0..3 {
            assert!(batcher.push(unsigned.clone()).is_none());
        }
        frames.extend(batcher.push(signed.clone()));
        frames.extend(batcher.finish());
        let sizes: Vec<usize> =
            frames.iter().map(|f| if let Frame::Deltas(ds) = f { ds.len() } else { 0 }).collect();
        assert_eq!(sizes, vec![MAX_BATCH_DELTAS - 1, 4], "the run moved to the next frame whole");
    }

    #[test]
    fn batches_respect_both_limits_and_keep_order() {
        let big = delta(200 * 1024);
        let mut batcher = Batcher::new();
        let mut frames = Vec::new();
        for _ in 0..12 {
            frames.extend(batcher.push(big.clone()));
        }
        frames.extend(batcher.finish());
        assert_eq!(frames.len(), 3, "five 200 KiB deltas per MiB");
        for frame in &frames {
            let bytes = crate::codec::encode(frame).unwrap().len();
            assert!(bytes <= FRAME_OVERHEAD + MAX_BATCH_BYTES, "{bytes}");
        }
        let small = delta(10);
        let mut frames = Vec::new();
        for _ in 0..(MAX_BATCH_DELTAS * 2 + 1) {
            frames.extend(batcher.push(small.clone()));
        }
        frames.extend(batcher.finish());
        let sizes: Vec<usize> = frames
            .iter()
            .map(|f| match f {
                Frame::Deltas(ds) => ds.len(),
                _ => 0,
            })
            .collect();
        assert_eq!(sizes, vec![MAX_BATCH_DELTAS, MAX_BATCH_DELTAS, 1]);
    }
}
