//! Verifying that a certificate chain leads to the federation root.

use crate::identity::NodeIdentity;
use cascade_protocol::{CertificateError, Member, MembershipVerifier, Tier};
use rustls_pki_types::{CertificateDer, UnixTime};
use std::time::Duration;

/// Verifies node certificate chains against the federation root.
#[derive(Clone, Debug)]
pub struct FederationVerifier {
    root: Vec<u8>,
}

impl FederationVerifier {
    /// A verifier trusting the given root certificate (DER).
    pub fn new(root_der: Vec<u8>) -> Result<Self, CertificateError> {
        webpki::anchor_from_trusted_cert(&CertificateDer::from(root_der.as_slice()))
            .map_err(|e| CertificateError::Root(format!("{e:?}")))?;
        Ok(FederationVerifier { root: root_der })
    }

    /// The root certificate (DER).
    pub fn root_der(&self) -> &[u8] {
        &self.root
    }

    /// Verifies `chain` (leaf first, root excluded) and returns the leaf's identity
    /// and raw Ed25519 public key.
    pub fn verify(&self, chain: &[Vec<u8>], now: u64) -> Result<(NodeIdentity, [u8; 32]), CertificateError> {
        let (leaf, intermediates) = chain.split_first().ok_or(CertificateError::EmptyChain)?;
        let root = CertificateDer::from(self.root.as_slice());
        let anchor =
            webpki::anchor_from_trusted_cert(&root).map_err(|e| CertificateError::Root(format!("{e:?}")))?;
        let leaf_der = CertificateDer::from(leaf.as_slice());
        let ee = webpki::EndEntityCert::try_from(&leaf_der)
            .map_err(|e| CertificateError::Unparseable(format!("{e:?}")))?;
        let intermediates: Vec<CertificateDer<'_>> =
            intermediates.iter().map(|c| CertificateDer::from(c.as_slice())).collect();
        ee.verify_for_usage(
            &[webpki::ring::ED25519],
            &[anchor],
            &intermediates,
            UnixTime::since_unix_epoch(Duration::from_secs(now)),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| CertificateError::NotChained(format!("{e:?}")))?;
        let identity = NodeIdentity::from_der(leaf).map_err(CertificateError::Identity)?;
        // The chain's shape must follow the tree: cities are certified by their own
        // province, national and provincial nodes by the root.
        match identity.tier {
            Tier::Municipal => {
                let shape = |s: String| CertificateError::WrongShape(s);
                let issuer =
                    chain.get(1).ok_or_else(|| shape("a city's chain must include its province".into()))?;
                let issuer = NodeIdentity::from_der(issuer).map_err(CertificateError::Identity)?;
                if issuer.tier != Tier::Provincial || Some(issuer.id) != identity.parent {
                    return Err(shape(format!(
                        "{} is certified by {}, not by its parent",
                        identity.id, issuer.id
                    )));
                }
                if chain.len() != 2 {
                    return Err(shape("a city's chain must be exactly city, province".into()));
                }
            }
            Tier::National | Tier::Provincial => {
                if chain.len() != 1 {
                    let reason = "national and provincial nodes are certified by the root";
                    return Err(CertificateError::WrongShape(reason.into()));
                }
            }
        }
        let key = ed25519_key(leaf)?;
        Ok((identity, key))
    }
}

/// The first second at which every certificate of `chain` is valid.
fn issued_at(chain: &[Vec<u8>]) -> Result<u64, CertificateError> {
    let mut at = 0u64;
    for der in chain {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| CertificateError::Unparseable(e.to_string()))?;
        let not_before = u64::try_from(cert.validity().not_before.timestamp()).unwrap_or(0);
        at = at.max(not_before);
    }
    Ok(at + 1)
}

fn ed25519_key(der: &[u8]) -> Result<[u8; 32], CertificateError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| CertificateError::Unparseable(e.to_string()))?;
    let spki = cert.public_key();
    if spki.algorithm.algorithm.to_id_string() != "1.3.101.112" {
        return Err(CertificateError::NotEd25519);
    }
    spki.subject_public_key.data.as_ref().try_into().map_err(|_| CertificateError::NotEd25519)
}

impl MembershipVerifier for FederationVerifier {
    fn verify_chain(&self, chain: &[Vec<u8>], now: Option<u64>) -> Result<Member, CertificateError> {
        let now = match now {
            Some(now) => now,
            None => issued_at(chain)?,
        };
        let (identity, key) = self.verify(chain, now)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| CertificateError::NotEd25519)?;
        Ok(Member { id: identity.id, tier: identity.tier, parent: identity.parent, name: identity.name, key })
    }
}
