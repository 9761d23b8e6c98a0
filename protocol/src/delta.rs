//! Signed deltas: the entries of every origin's append-only, hash-chained logs.

use crate::catalog::CatalogEntry;
use crate::codec::{self, CodecError};
use crate::ids::{LogId, NodeId, Scope};
use crate::limits::{DELTA_OVERHEAD, MAX_BODY_BYTES};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// A BLAKE3 digest.
pub type Hash = [u8; 32];

/// The `prev` of the first delta of every log.
pub const GENESIS_HASH: Hash = [0; 32];

/// Domain separator of delta signatures: a delta signature can never be replayed as
/// a signature over anything else this key signs (TLS handshakes, other messages).
const SIGN_DOMAIN: &[u8] = b"cascade/delta-signature/v1\0";
/// Domain separator of the chain hash.
const HASH_DOMAIN: &[u8] = b"cascade/delta-hash/v1\0";

/// One signed log entry, stored and relayed verbatim.
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
    /// Ed25519 signature of the origin over `signing_bytes()`.
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

impl Delta {
    /// Builds and signs a delta: the body is encoded exactly once, here.
    pub fn sign(
        key: &SigningKey,
        log: LogId,
        seq: u64,
        prev: Hash,
        body: &DeltaBody,
    ) -> Result<Delta, DeltaError> {
        let body = codec::encode(body)?;
        if body.len() > MAX_BODY_BYTES {
            return Err(CodecError::TooLarge { len: body.len(), limit: MAX_BODY_BYTES }.into());
        }
        let mut delta = Delta { log, seq, prev, body, signature: Vec::new() };
        delta.signature = key.sign(&delta.signing_bytes()).to_bytes().to_vec();
        Ok(delta)
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

    /// Verifies the signature against the origin's key.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), DeltaError> {
        key.verify_strict(&self.signing_bytes(), &self.signature()?).map_err(|_| DeltaError::BadSignature)
    }

    /// The chain hash of this delta: the next delta's `prev`.
    pub fn hash(&self) -> Hash {
        let mut h = blake3::Hasher::new();
        h.update(HASH_DOMAIN);
        h.update(SIGN_DOMAIN);
        h.update(&self.header());
        h.update(&self.body);
        h.update(&self.signature);
        *h.finalize().as_bytes()
    }

    /// Decodes the body, bounded by `MAX_BODY_BYTES`.
    pub fn decode_body(&self) -> Result<DeltaBody, DeltaError> {
        Ok(codec::decode(&self.body, MAX_BODY_BYTES)?)
    }
}
