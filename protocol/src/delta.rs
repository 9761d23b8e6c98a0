//! Signed deltas: the entries of every origin's append-only, hash-chained logs.

use crate::catalog::CatalogEntry;
use crate::codec::{self, CodecError};
use crate::ids::{LogId, NodeId, Scope};
use crate::limits::{DELTA_OVERHEAD, MAX_BODY_BYTES};
use crate::signature::Item;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// A BLAKE3 digest.
pub type Hash = [u8; 32];

/// The `prev` of the first delta of every log.
pub const GENESIS_HASH: Hash = [0; 32];

/// Domain separator of delta signatures: a delta signature can never be replayed as
/// a signature over anything else this key signs (TLS handshakes, other messages).
const SIGN_DOMAIN: &[u8] = b"cascade/delta-signature/v1\0";
/// Domain separator of the chain hash (v2: the hash covers content, not the
/// signature).
const HASH_DOMAIN: &[u8] = b"cascade/delta-hash/v2\0";

/// One log entry, stored and relayed verbatim.
///
/// Every delta is authenticated by its origin's signature: its own, or that of a
/// later delta of the same log. A delta's chain hash covers its content (header
/// and body, not its signature), and each delta names the chain hash of the one
/// before it, so a signature over delta `n` vouches for every delta up to `n`
/// (the way a signed commit vouches for its history). An origin signs the last
/// delta of each log in each group commit (a run of unsigned deltas before it is
/// bounded by `MAX_RUN_DELTAS` and `MAX_RUN_BYTES`), and a run always travels in
/// one frame with the signed delta that closes it: nothing is stored before the
/// signature that covers it has been verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// The log (origin and scope) this delta belongs to.
    pub log: LogId,
    /// Position in the log, from 1.
    pub seq: u64,
    /// Chain hash of the previous delta of the log (`GENESIS_HASH` for seq 1).
    pub prev: Hash,
    /// The encoded `DeltaBody`, exactly as signed.
    pub body: Vec<u8>,
    /// Ed25519 signature of the origin over `signing_bytes()`, or empty when a
    /// later delta's signature covers this one.
    pub signature: Vec<u8>,
}

/// What a delta says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeltaBody {
    /// First delta of every log: the origin's certificate chain (DER, leaf first),
    /// which binds its signing key to its node id, tier and parent.
    Join {
        /// DER certificates, leaf first, root excluded.
        chain: Vec<Vec<u8>>,
    },
    /// A catalog entry's new state (published, updated or withdrawn).
    Catalog(CatalogEntry),
    /// A parent (or the national node) revokes a node's membership.
    Revoke(Revocation),
    /// The origin registers (or updates) an organization in its subtree.
    Organization(crate::org::Organization),
    /// The origin hands its log over to a new key: the new certificate chain (same
    /// node, tier and parent), in a delta signed with the key it replaces. Every
    /// later delta of the log is signed with the new key.
    Rekey {
        /// DER certificates, leaf first, root excluded.
        chain: Vec<Vec<u8>>,
    },
    /// A service interface's new state (registered, updated or retired), always
    /// federation-scoped; its upstream stays at the origin.
    Service(crate::service::Service),
    /// A version of one of the origin's entries' dataset, in the entry's scope.
    Dataset(crate::dataset::Manifest),
    /// The head of the origin's audit log, signed into its federation log so that
    /// every node holding that log witnesses it: a later audit log shorter than
    /// this, or different at this record, was truncated or rewritten.
    AuditCheckpoint(AuditCheckpoint),
}

/// A witnessed audit log head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCheckpoint {
    /// How many records the log held (the seq of its last record).
    pub records: u64,
    /// The stored hash of that last record.
    pub head: Hash,
    /// When the checkpoint was made (unix ms).
    pub at_ms: u64,
}

/// A signed statement that a node is no longer a member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The revoked node.
    pub node: NodeId,
    /// Per scope, the last seq of the revoked node's log that stays valid: the
    /// revoker's head at the time of revocation. Anything later is rejected everywhere.
    pub cutoff: Vec<(Scope, u64)>,
    /// Why, for operators.
    pub reason: String,
}

impl Revocation {
    /// The last valid seq of the revoked node's log in `scope`, if the revoker
    /// could see that log (the national node never sees province-scoped logs).
    pub fn cutoff_for(&self, scope: Scope) -> Option<u64> {
        self.cutoff.iter().find(|(s, _)| *s == scope).map(|(_, seq)| *seq)
    }
}

/// Why a delta could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// Encoding or bounded decoding failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The signature is not 64 bytes or does not verify.
    #[error("bad signature")]
    BadSignature,
}

/// Checks that `run` is a stretch of one log, each delta chained to the one before,
/// ending with a signed delta whose signature verifies under `key`: then every
/// delta of the run is authenticated. `verify` checks the closing signature (so a
/// caller can memoize it).
pub fn verify_run(
    run: &[std::sync::Arc<Delta>],
    verify: impl FnOnce(&Delta) -> Result<(), DeltaError>,
) -> Result<(), DeltaError> {
    let last = run.last().ok_or(DeltaError::BadSignature)?;
    if !last.is_signed() || run[..run.len() - 1].iter().any(|d| d.is_signed()) {
        return Err(DeltaError::BadSignature);
    }
    for pair in run.windows(2) {
        let linked =
            pair[1].log == pair[0].log && pair[1].seq == pair[0].seq + 1 && pair[1].prev == pair[0].hash();
        if !linked {
            return Err(DeltaError::BadSignature);
        }
    }
    verify(last)
}

impl Delta {
    /// Builds a delta without a signature (a later delta's will cover it): the
    /// body is encoded exactly once, here.
    pub fn unsigned(log: LogId, seq: u64, prev: Hash, body: &DeltaBody) -> Result<Delta, DeltaError> {
        let body = codec::encode(body)?;
        if body.len() > MAX_BODY_BYTES {
            return Err(CodecError::TooLarge { len: body.len(), limit: MAX_BODY_BYTES }.into());
        }
        Ok(Delta { log, seq, prev, body, signature: Vec::new() })
    }

    /// Builds and signs a delta.
    pub fn sign(
        key: &SigningKey,
        log: LogId,
        seq: u64,
        prev: Hash,
        body: &DeltaBody,
    ) -> Result<Delta, DeltaError> {
        let mut delta = Delta::unsigned(log, seq, prev, body)?;
        delta.seal(key);
        Ok(delta)
    }

    /// Signs this delta (its content, and so every delta its chain leads back to).
    pub fn seal(&mut self, key: &SigningKey) {
        self.signature = key.sign(&self.signing_bytes()).to_bytes().to_vec();
    }

    /// Whether it carries a signature of its own.
    pub fn is_signed(&self) -> bool {
        !self.signature.is_empty()
    }

    /// Its encoded size (what it adds to a frame), computed without encoding.
    pub fn encoded_len(&self) -> usize {
        DELTA_OVERHEAD - 64 + self.body.len() + self.signature.len()
    }

    /// The exact bytes the origin signs: domain, header, body.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SIGN_DOMAIN.len() + 45 + self.body.len());
        out.extend_from_slice(SIGN_DOMAIN);
        out.extend_from_slice(&self.header());
        out.extend_from_slice(&self.body);
        out
    }

    /// origin, scope, seq and prev, as signed.
    fn header(&self) -> [u8; 45] {
        let mut h = [0u8; 45];
        h[..4].copy_from_slice(&self.log.origin.code().to_be_bytes());
        h[4] = match self.log.scope {
            Scope::Federation => 0,
            Scope::Province => 1,
        };
        h[5..13].copy_from_slice(&self.seq.to_be_bytes());
        h[13..].copy_from_slice(&self.prev);
        h
    }

    /// The signature as a typed value, if it has the right length.
    pub fn signature(&self) -> Result<Signature, DeltaError> {
        let bytes: [u8; 64] = self.signature.as_slice().try_into().map_err(|_| DeltaError::BadSignature)?;
        Ok(Signature::from_bytes(&bytes))
    }

    /// Verifies its own signature against the origin's key, under the rule of
    /// `crate::signature` (strict encodings, no small-order points, the cofactored
    /// equation: the rule batches agree with). An unsigned delta has none to
    /// verify: see `verify_run`.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), DeltaError> {
        let message = self.signing_bytes();
        crate::signature::verify(&Item { key, message: &message, signature: &self.signature })
            .map_err(|_| DeltaError::BadSignature)
    }

    /// The chain hash of this delta's content: the next delta's `prev`.
    pub fn hash(&self) -> Hash {
        let mut h = blake3::Hasher::new();
        h.update(HASH_DOMAIN);
        h.update(SIGN_DOMAIN);
        h.update(&self.header());
        h.update(&self.body);
        *h.finalize().as_bytes()
    }

    /// Decodes the body, bounded by `MAX_BODY_BYTES`.
    pub fn decode_body(&self) -> Result<DeltaBody, DeltaError> {
        Ok(codec::decode(&self.body, MAX_BODY_BYTES)?)
    }
}
