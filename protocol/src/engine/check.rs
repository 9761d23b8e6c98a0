//! The admission rules: what makes a delta acceptable, checked against the
//! engine's state without changing it.

use super::types::RejectReason;
use super::{Engine, Head};
use crate::delta::{Delta, DeltaBody, Hash, Revocation, GENESIS_HASH};
use crate::ids::{LogId, NodeId, Scope, Tier, NATIONAL};
use crate::limits::{MAX_BODY_BYTES, MAX_CHAIN_CERTS, MAX_REVOCATION_REASON_BYTES};
use crate::membership::{CertificateError, Member};

/// The time a delta is checked at.
#[derive(Clone, Copy, Debug)]
pub(super) enum Clock {
    /// A delta arriving now: revocations apply.
    Live,
    /// Re-reading the store: the delta was valid when admitted.
    Restoring,
}

/// Outcome of checking one incoming delta. Not boxed: one is built per delta on
/// the hot path and consumed at once.
#[allow(clippy::large_enum_variant)]
pub(super) enum Check {
    /// Valid and next in its log.
    Accept(Accepted),
    /// Already held.
    Duplicate,
    /// Comes after a missing delta.
    Gap,
}

/// A delta found valid: its decoded body, its chain hash and, for a Join, the
/// member it makes known.
pub(super) struct Accepted {
    pub(super) body: DeltaBody,
    pub(super) hash: Hash,
    pub(super) joined: Option<Member>,
}

impl Engine {
    /// Checks a delta against the current state without changing it. The signature
    /// is checked before the body is even parsed, except for a Join, whose body
    /// carries the key. `authenticated` says a later delta's signature, already
    /// verified, covers this one (an unsigned delta is refused otherwise).
    pub(super) fn check(
        &self,
        clock: Clock,
        delta: &Delta,
        authenticated: bool,
    ) -> Result<Check, RejectReason> {
        let log = delta.log;
        if delta.body.len() > MAX_BODY_BYTES {
            return Err(RejectReason::Invalid("body too large".into()));
        }
        if !log.visible_at(self.me.id) {
            return Err(RejectReason::OutOfScope);
        }
        let head = self.heads.get(&log).copied().unwrap_or(Head { seq: 0, hash: GENESIS_HASH });
        let signed_by = |key: &ed25519_dalek::VerifyingKey, hash: &Hash| {
            if authenticated {
                Ok(())
            } else if delta.is_signed() {
                self.verify_signature(delta, key, hash)
            } else {
                Err(RejectReason::BadSignature)
            }
        };
        if delta.seq == head.seq && delta.hash() != head.hash {
            // Same position, different content: a fork if the origin really signed it.
            let key = self.log_keys.get(&log).ok_or(RejectReason::BrokenChain)?;
            signed_by(key, &delta.hash())?;
            return Err(RejectReason::Fork);
        }
        if delta.seq <= head.seq {
            return Ok(Check::Duplicate);
        }
        if delta.seq > head.seq + 1 {
            return Ok(Check::Gap);
        }
        if delta.prev != head.hash {
            return Err(RejectReason::BrokenChain);
        }
        let hash = delta.hash();
        let (body, joined) = if delta.seq == 1 {
            let body = delta.decode_body().map_err(|e| RejectReason::Invalid(e.to_string()))?;
            let DeltaBody::Join { chain } = &body else {
                return Err(RejectReason::Invalid("a log must start with a Join".into()));
            };
            let member = self.check_join(log, chain)?;
            // A Join carries its own signature: it is where the key comes from.
            if !delta.is_signed() {
                return Err(RejectReason::BadSignature);
            }
            self.verify_signature(delta, &member.key, &hash)?;
            (body, Some(member))
        } else {
            // Every log starts with a Join, so a known head implies a known key.
            let key =
                self.log_keys.get(&log).ok_or_else(|| RejectReason::Invalid("log never joined".into()))?;
            signed_by(key, &hash)?;
            let body = delta.decode_body().map_err(|e| RejectReason::Invalid(e.to_string()))?;
            let rekeyed = match &body {
                DeltaBody::Join { .. } => {
                    return Err(RejectReason::Invalid("Join after the start of a log".into()));
                }
                // The key it replaces vouches for it alone (never inside a run, so
                // that every run is verified with one key).
                DeltaBody::Rekey { .. } if !delta.is_signed() => {
                    return Err(RejectReason::Invalid("a hand-over must carry its own signature".into()));
                }
                DeltaBody::Rekey { chain } => Some(self.check_rekey(log, chain)?),
                _ => None,
            };
            (body, rekeyed)
        };
        self.check_not_revoked(clock, log, delta.seq)?;
        self.check_body(log, &body)?;
        Ok(Check::Accept(Accepted { body, hash, joined }))
    }

    /// A Join's chain must make its holder the member whose log it starts.
    fn check_join(&self, log: LogId, chain: &[Vec<u8>]) -> Result<Member, RejectReason> {
        if chain.len() > MAX_CHAIN_CERTS {
            return Err(RejectReason::NotMember(CertificateError::ChainTooLong(chain.len())));
        }
        // As of when it was issued (within its issuer's validity): a log outlives
        // its certificate, and a node catching up years later still reads it.
        let member = self.verifier.verify_chain(chain, None).map_err(RejectReason::NotMember)?;
        if member.id != log.origin {
            return Err(RejectReason::WrongOrigin(format!(
                "certificate names {} but the log is {}'s",
                member.id, log.origin
            )));
        }
        let known = self.known_keys.get(&member.id);
        if known.is_some_and(|keys| !keys.iter().any(|k| **k == member.key)) {
            return Err(RejectReason::WrongOrigin("a key this node never held".into()));
        }
        Ok(member)
    }

    /// A hand-over names a new certificate of the same node (same tier and parent)
    /// with a key the log is not signed with yet.
    pub(super) fn check_rekey(&self, log: LogId, chain: &[Vec<u8>]) -> Result<Member, RejectReason> {
        if chain.len() > MAX_CHAIN_CERTS {
            return Err(RejectReason::NotMember(CertificateError::ChainTooLong(chain.len())));
        }
        let member = self.verifier.verify_chain(chain, None).map_err(RejectReason::NotMember)?;
        let known =
            self.members.get(&log.origin).ok_or_else(|| RejectReason::Invalid("log never joined".into()))?;
        if member.id != known.id || member.tier != known.tier || member.parent != known.parent {
            return Err(RejectReason::WrongOrigin(format!(
                "a hand-over of {} to a certificate of {} ({:?} under {:?})",
                log.origin, member.id, member.tier, member.parent
            )));
        }
        if self.log_keys.get(&log).is_some_and(|k| **k == member.key) {
            return Err(RejectReason::Invalid("a hand-over to the key the log already has".into()));
        }
        Ok(member)
    }

    /// A revoked origin's deltas after its cutoff are refused (history admitted
    /// before stays readable when restoring).
    pub(super) fn check_not_revoked(&self, clock: Clock, log: LogId, seq: u64) -> Result<(), RejectReason> {
        if let (Clock::Live, Some(cutoffs)) = (clock, self.revoked.get(&log.origin)) {
            if seq > cutoffs.of(log.scope) {
                return Err(RejectReason::Revoked);
            }
        }
        Ok(())
    }

    /// The rules every body must satisfy, wherever it comes from (this node's own
    /// changes included, so that it never signs what others would refuse).
    pub(super) fn check_body(&self, log: LogId, body: &DeltaBody) -> Result<(), RejectReason> {
        match body {
            DeltaBody::Join { .. } => Ok(()),
            DeltaBody::Rekey { chain } => self.check_rekey(log, chain).map(|_| ()),
            DeltaBody::Catalog(entry) => {
                entry.validate().map_err(|e| RejectReason::Invalid(e.to_string()))?;
                if !self.is_registered_at(&entry.provider, log.origin) {
                    return Err(RejectReason::Invalid(format!(
                        "provider {} is not an organization registered at {}",
                        entry.provider, log.origin
                    )));
                }
                Ok(())
            }
            DeltaBody::Revoke(rev) => {
                check_revocation_authority(log.origin, self.members.get(&log.origin), rev)
            }
            DeltaBody::Organization(org) => {
                org.validate().map_err(|e| RejectReason::Invalid(e.to_string()))?;
                org.check_registrar(log.origin).map_err(|e| RejectReason::Invalid(e.to_string()))
            }
            DeltaBody::AuditCheckpoint(checkpoint) => {
                if log.scope != Scope::Federation {
                    return Err(RejectReason::Invalid(
                        "an audit checkpoint is witnessed federation-wide".into(),
                    ));
                }
                if checkpoint.records == 0 {
                    return Err(RejectReason::Invalid(
                        "an audit checkpoint covers at least one record".into(),
                    ));
                }
                match self.checkpoints.get(&log.origin) {
                    Some(last) if checkpoint.records < last.records => Err(RejectReason::Invalid(format!(
                        "the audit log of {} went back from {} records to {}: truncated",
                        log.origin, last.records, checkpoint.records
                    ))),
                    Some(last) if checkpoint.records == last.records && checkpoint.head != last.head => {
                        Err(RejectReason::Invalid(format!(
                            "the audit log of {} changed at record {}: rewritten",
                            log.origin, last.records
                        )))
                    }
                    _ => Ok(()),
                }
            }
            DeltaBody::Service(service) => {
                if log.scope != Scope::Federation {
                    return Err(RejectReason::Invalid("a service is registered federation-wide".into()));
                }
                service.validate(log.origin).map_err(|e| RejectReason::Invalid(e.to_string()))?;
                if !self.is_registered_at(&service.draft.provider, log.origin) {
                    return Err(RejectReason::Invalid(format!(
                        "provider {} is not an organization registered at {}",
                        service.draft.provider, log.origin
                    )));
                }
                Ok(())
            }
            DeltaBody::Dataset(manifest) => {
                manifest.validate(log.origin).map_err(|e| RejectReason::Invalid(e.to_string()))
            }
        }
    }
}

/// A revocation is valid when issued by the national node (holder of the root) or by
/// the revoked node's province (its parent), and never by a node about itself.
fn check_revocation_authority(
    revoker: NodeId,
    member: Option<&Member>,
    rev: &Revocation,
) -> Result<(), RejectReason> {
    if rev.node == revoker {
        return Err(RejectReason::Invalid("a node cannot revoke itself".into()));
    }
    if rev.cutoff.len() > 2 || rev.reason.len() > MAX_REVOCATION_REASON_BYTES {
        return Err(RejectReason::Invalid("malformed revocation".into()));
    }
    let is_parent =
        member.is_some_and(|m| m.tier == Tier::Provincial) && rev.node.province() == Some(revoker);
    if revoker == NATIONAL || is_parent {
        Ok(())
    } else {
        Err(RejectReason::Invalid(format!("{revoker} may not revoke {}", rev.node)))
    }
}
