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

/// Checks a certificate chain against the federation root. Implemented by
/// `cascade-certs`; pure computation, so the engine stays free of I/O.
pub trait MembershipVerifier: Send + Sync {
    /// Verifies `chain` (DER, leaf first, root excluded) at unix time `now` and
    /// returns the member it names. `None` checks validity as of the chain's own
    /// issuance (for deltas admitted in the past, whose certificates may since have
    /// expired).
    fn verify_chain(&self, chain: &[Vec<u8>], now: Option<u64>) -> Result<Member, String>;
}
