//! Routed messages: the primitive beside the replicated logs. A routed message is
//! signed by the node that sends it, addressed to one node, and carried hop by
//! hop along the tree (up to the common ancestor, then down). Every hop stores it
//! durably before acknowledging it to the hop before, resends it after reconnects
//! and restarts until the next hop acknowledges, and remembers its id so that it
//! is forwarded and delivered once however often it arrives.

use crate::codec::{self, CodecError};
use crate::limits::{MAX_CLOCK_SKEW_S, MAX_ROUTED_BYTES, ROUTED_TTL_S};
use crate::signature::Item;
use crate::workflow::{self, ApplicationRequest, Decision};
use crate::{FieldError, NodeId};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

const SIGN_DOMAIN: &[u8] = b"cascade/routed-signature/v1\0";

/// Most tiers a route may climb: the tree has three, this leaves room and stops a
/// loop in a (corrupt) parent relation.
const MAX_ROUTE_DEPTH: usize = 16;

/// A routed message's id: its sender and the sender's counter.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
pub struct MessageId {
    /// The sending (and signing) node.
    pub from: NodeId,
    /// Goes up by one with every message the sender sends.
    pub seq: u64,
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.from, self.seq)
    }
}

/// What a routed message says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoutedBody {
    /// Consumer → provider: an application.
    Apply(ApplicationRequest),
    /// Consumer → provider: withdraw a pending application.
    Withdraw {
        /// The application.
        application: String,
    },
    /// Provider → consumer: where an application stands now.
    Decision(Decision),
    /// Provider → consumer: a grant is revoked.
    Revoke {
        /// The grant.
        grant: String,
        /// Why (required).
        reason: String,
    },
}

impl RoutedBody {
    /// A short name, for logs, audit and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            RoutedBody::Apply(_) => "apply",
            RoutedBody::Withdraw { .. } => "withdraw",
            RoutedBody::Decision(_) => "decision",
            RoutedBody::Revoke { .. } => "revoke",
        }
    }

    fn validate(&self) -> Result<(), FieldError> {
        match self {
            RoutedBody::Apply(a) => a.validate(),
            RoutedBody::Withdraw { application } => workflow::check_withdrawal(application),
            RoutedBody::Decision(d) => d.validate(),
            RoutedBody::Revoke { grant, reason } => workflow::check_revocation(grant, reason),
        }
    }
}

/// A signed message for one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routed {
    /// Its id (naming the signer).
    pub id: MessageId,
    /// The node it is for.
    pub to: NodeId,
    /// When it was sent (unix s, the sender's clock).
    pub sent_at: u64,
    /// What it says.
    pub body: RoutedBody,
    /// Ed25519 by `id.from` over all of the above.
    pub signature: Vec<u8>,
}

/// Why a routed message is refused. Every one of these means its sender or a relay
/// broke the protocol: honest nodes never produce them.
#[derive(Debug, thiserror::Error)]
pub enum RoutedError {
    /// Larger than `MAX_ROUTED_BYTES`, or not encodable.
    #[error("routed message too large or unencodable: {0}")]
    Size(String),
    /// A field breaks the workflow rules.
    #[error("routed message malformed: {0}")]
    Malformed(FieldError),
    /// The signature does not verify with the sender's key.
    #[error("routed message {0}: bad signature")]
    BadSignature(MessageId),
    /// Sent too long ago, or in the future.
    #[error("routed message {0}: outside its time to live")]
    Stale(MessageId),
}

impl Routed {
    fn signing_bytes(
        id: MessageId,
        to: NodeId,
        sent_at: u64,
        body: &RoutedBody,
    ) -> Result<Vec<u8>, CodecError> {
        let mut out = SIGN_DOMAIN.to_vec();
        out.extend(codec::encode(&(id, to, sent_at, body))?);
        Ok(out)
    }

    /// Signs a message with the sender's key (`id.from` must be the key's node).
    pub fn sign(
        key: &SigningKey,
        id: MessageId,
        to: NodeId,
        sent_at: u64,
        body: RoutedBody,
    ) -> Result<Routed, RoutedError> {
        let bytes =
            Self::signing_bytes(id, to, sent_at, &body).map_err(|e| RoutedError::Size(e.to_string()))?;
        let signature = key.sign(&bytes).to_bytes().to_vec();
        let routed = Routed { id, to, sent_at, body, signature };
        routed.check_form()?;
        Ok(routed)
    }

    /// Size and field rules (no key needed).
    pub fn check_form(&self) -> Result<(), RoutedError> {
        let len = codec::encode(self).map_err(|e| RoutedError::Size(e.to_string()))?.len();
        if len > MAX_ROUTED_BYTES {
            return Err(RoutedError::Size(format!("{len} bytes, the limit is {MAX_ROUTED_BYTES}")));
        }
        self.body.validate().map_err(RoutedError::Malformed)
    }

    /// Everything a hop checks before storing a message: form, signature by one of
    /// the sender's `keys` (its current one, or one it held before a rotation), and
    /// time to live at unix time `now`.
    pub fn check<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k VerifyingKey>,
        now: u64,
    ) -> Result<(), RoutedError> {
        self.check_form()?;
        let bytes = Self::signing_bytes(self.id, self.to, self.sent_at, &self.body)
            .map_err(|e| RoutedError::Size(e.to_string()))?;
        let signed_by =
            |key| crate::signature::verify(&Item { key, message: &bytes, signature: &self.signature });
        if !keys.into_iter().any(|key| signed_by(key).is_ok()) {
            return Err(RoutedError::BadSignature(self.id));
        }
        if self.sent_at > now + MAX_CLOCK_SKEW_S || self.expires_at() <= now {
            return Err(RoutedError::Stale(self.id));
        }
        Ok(())
    }

    /// When every hop may forget it (unix s).
    pub fn expires_at(&self) -> u64 {
        self.sent_at.saturating_add(ROUTED_TTL_S)
    }
}

/// Where a message for `to` goes from `me`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// It is for `me`.
    Here,
    /// To this neighbour.
    Via(NodeId),
    /// Nowhere: `to` is unknown, or the tree does not reach it.
    Unroutable,
}

/// The next hop from `me` to `to` in the tree `parent_of` describes (`None` for a
/// node it does not know): down to the child whose subtree holds `to`, else up to
/// `me`'s parent — also when `to` is not known here yet, since an ancestor that
/// knows it routes it down.
pub fn next_hop(me: NodeId, to: NodeId, parent_of: impl Fn(NodeId) -> Option<Option<NodeId>>) -> Route {
    if me == to {
        return Route::Here;
    }
    // Walk up from `to`: meeting `me` means `to` is below; the node just before is the child.
    let mut current = to;
    for _ in 0..MAX_ROUTE_DEPTH {
        match parent_of(current) {
            None | Some(None) => break,
            Some(Some(parent)) if parent == me => return Route::Via(current),
            Some(Some(parent)) => current = parent,
        }
    }
    match parent_of(me) {
        Some(Some(parent)) => Route::Via(parent),
        _ => Route::Unroutable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::Resource;
    use std::collections::HashMap;

    fn n(code: u32) -> NodeId {
        NodeId::new(code).unwrap()
    }

    fn tree() -> HashMap<NodeId, Option<NodeId>> {
        // national 100000; provinces 370000, 440000; cities 370100, 370200, 440100.
        let mut t = HashMap::new();
        t.insert(n(100000), None);
        t.insert(n(370000), Some(n(100000)));
        t.insert(n(440000), Some(n(100000)));
        t.insert(n(370100), Some(n(370000)));
        t.insert(n(370200), Some(n(370000)));
        t.insert(n(440100), Some(n(440000)));
        t
    }

    fn path(from: NodeId, to: NodeId) -> Vec<NodeId> {
        let t = tree();
        let mut hops = vec![from];
        let mut at = from;
        loop {
            match next_hop(at, to, |id| t.get(&id).copied()) {
                Route::Here => return hops,
                Route::Via(next) => {
                    hops.push(next);
                    at = next;
                    assert!(hops.len() < 10, "a loop");
                }
                Route::Unroutable => panic!("unroutable at {at}"),
            }
        }
    }

    #[test]
    fn routes_climb_to_the_common_ancestor_then_descend() {
        assert_eq!(path(n(370100), n(370100)), vec![n(370100)]);
        assert_eq!(path(n(370100), n(370200)), vec![n(370100), n(370000), n(370200)]);
        assert_eq!(path(n(370100), n(440100)), vec![n(370100), n(370000), n(100000), n(440000), n(440100)]);
        assert_eq!(path(n(100000), n(440100)), vec![n(100000), n(440000), n(440100)]);
        assert_eq!(path(n(440100), n(100000)), vec![n(440100), n(440000), n(100000)]);
        // A node not known yet goes up, until a node that knows nothing above it.
        let t = tree();
        assert_eq!(next_hop(n(370100), n(510100), |id| t.get(&id).copied()), Route::Via(n(370000)));
        assert_eq!(next_hop(n(100000), n(510100), |id| t.get(&id).copied()), Route::Unroutable);
    }

    fn message(key: &SigningKey) -> Routed {
        let body = RoutedBody::Withdraw { application: "370100-a1".into() };
        Routed::sign(key, MessageId { from: n(370100), seq: 1 }, n(440100), 1_000, body).unwrap()
    }

    #[test]
    fn a_message_is_checked_for_signature_and_time() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let m = message(&key);
        let mine = key.verifying_key();
        assert!(m.check([&mine], 1_000).is_ok());
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert!(matches!(m.check([&other], 1_000), Err(RoutedError::BadSignature(_))));
        assert!(m.check([&other, &mine], 1_000).is_ok(), "signed before a key rotation");
        assert!(matches!(m.check([], 1_000), Err(RoutedError::BadSignature(_))), "no key known");
        let mut redirected = m.clone();
        redirected.to = n(370200);
        assert!(matches!(redirected.check([&mine], 1_000), Err(RoutedError::BadSignature(_))));
        assert!(matches!(m.check([&mine], 1_000 + ROUTED_TTL_S), Err(RoutedError::Stale(_))));
        assert!(matches!(m.check([&mine], 0), Err(RoutedError::Stale(_))), "from the future");
    }

    #[test]
    fn malformed_and_oversized_messages_are_refused_before_any_signature_work() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let mut m = message(&key);
        m.body = RoutedBody::Revoke { grant: "440100-g1".into(), reason: " ".into() };
        assert!(matches!(m.check_form(), Err(RoutedError::Malformed(e)) if e.field == "reason"));
        m.body = RoutedBody::Apply(ApplicationRequest {
            id: "370100-a1".into(),
            resource: Resource::Service("440100-7".into()),
            consumer: "11370100MB0000002X".into(),
            applicant: "alice".into(),
            purpose: "x".into(),
            period_days: 30,
            consumer_log_head: 1,
        });
        m.signature = vec![0; 200_000];
        assert!(matches!(m.check_form(), Err(RoutedError::Size(_))));
    }
}
