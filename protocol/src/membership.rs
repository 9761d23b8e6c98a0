//! Federation membership: who a node is, as proven by its certificate chain.

use crate::ids::{NodeId, Tier};
use ed25519_dalek::VerifyingKey;

/// A verified member of the federation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its node id (division code).
    pub id: NodeId,
    /// Its tier.
    pub tier: Tier,
    /// The parent named in its certificate (`None` for the national node).
    pub parent: Option<NodeId>,
    /// Its human name, from the certificate.
    pub name: String,
    /// Its delta-signing key (the certificate's public key).
    pub key: VerifyingKey,
}

/// Why a certificate chain does not make its holder a member.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// No certificate at all.
    #[error("empty certificate chain")]
    EmptyChain,
    /// Longer than a Join may carry.
    #[error("certificate chain of {0} certificates is too long")]
    ChainTooLong(usize),
    /// A certificate does not parse.
    #[error("unparseable certificate: {0}")]
    Unparseable(String),
    /// The chain does not lead to the federation root (or is not valid at the time).
    #[error("certificate does not chain to the federation root: {0}")]
    NotChained(String),
    /// The identity extension is missing or malformed.
    #[error("identity: {0}")]
    Identity(String),
    /// The chain's shape breaks the tree (a city not certified by its province...).
    #[error("{0}")]
    WrongShape(String),
    /// The key is not an Ed25519 key.
    #[error("node keys must be Ed25519")]
    NotEd25519,
    /// The federation root itself is unusable.
    #[error("federation root: {0}")]
    Root(String),
}

/// Checks a certificate chain against the federation root. Implemented by
/// `cascade-certs`; pure computation, so the engine stays free of I/O.
pub trait MembershipVerifier: Send + Sync {
    /// Verifies `chain` (DER, leaf first, root excluded) at unix time `now` and
    /// returns the member it names. `None` checks validity as of the chain's own
    /// issuance (for deltas admitted in the past, whose certificates may since have
    /// expired).
    fn verify_chain(&self, chain: &[Vec<u8>], now: Option<u64>) -> Result<Member, CertificateError>;
}
