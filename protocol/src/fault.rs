//! Who is at fault: every error of a node belongs to one of four classes (the way
//! rustls groups its errors), and each class is answered differently — a
//! misbehaving peer is dropped, an incompatible one refused, a caller told what to
//! fix, a local failure reported as unavailability.

use crate::ids::NodeId;
use crate::membership::CertificateError;

/// The class of an error, by who caused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// A neighbour broke the protocol on its link (malformed or oversized frames, a
    /// second Hello). Deltas it relays that fail their checks are rejected one by
    /// one (`RejectReason`), since the fault may be their origin's.
    PeerMisbehaved,
    /// A neighbour may not, or cannot, talk to this node (not a member, wrong
    /// place in the tree, revoked).
    PeerIncompatible,
    /// The caller of the admin interface asked for something invalid or forbidden.
    Caller,
    /// This node failed (its store, its engine).
    Local,
}

impl Fault {
    /// A short stable label for metrics and audit records.
    pub fn label(self) -> &'static str {
        match self {
            Fault::PeerMisbehaved => "peer_misbehaved",
            Fault::PeerIncompatible => "peer_incompatible",
            Fault::Caller => "caller",
            Fault::Local => "local",
        }
    }
}

/// Ways a neighbour broke the protocol on its link.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Misbehaviour {
    /// A frame's bytes are not a valid frame.
    #[error("malformed frame: {0}")]
    MalformedFrame(String),
    /// A frame announced more bytes than the frame limit.
    #[error("frame of {len} bytes exceeds the limit")]
    OversizedFrame {
        /// The announced length.
        len: usize,
    },
    /// A Deltas frame held more deltas than a batch may.
    #[error("batch of {deltas} deltas exceeds the limit")]
    BatchTooLarge {
        /// How many it held.
        deltas: usize,
    },
    /// A Hello named more logs than a Hello may.
    #[error("hello names {logs} logs, over the limit")]
    HelloTooLarge {
        /// How many it named.
        logs: usize,
    },
    /// A second Hello on one link.
    #[error("second Hello on one link")]
    SecondHello,
    /// It relayed a stream of deltas that fail checks every honest relay makes.
    #[error("relayed {count} deltas that fail the checks every node makes")]
    InvalidDeltas {
        /// How many.
        count: u32,
    },
    /// It sent a routed message (or an acknowledgement) every honest node would
    /// refuse: malformed, badly signed, stale, or off its route.
    #[error("bad routed message: {0}")]
    BadRouted(String),
}

/// Why a neighbour may not, or can no longer, be linked with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Incompatibility {
    /// It presented no certificate.
    #[error("no certificate presented")]
    NoCertificate,
    /// Its certificate does not make it a member.
    #[error("not a member: {0}")]
    NotMember(#[from] CertificateError),
    /// It is a member but not a child of this node.
    #[error("{node} names {parent:?} as parent, not this node")]
    NotChild {
        /// Who it is.
        node: NodeId,
        /// The parent its certificate names.
        parent: Option<NodeId>,
    },
    /// The node dialed is not the one expected.
    #[error("expected {expected}, found {found}")]
    WrongNode {
        /// The node that was dialed.
        expected: NodeId,
        /// The node that answered.
        found: NodeId,
    },
    /// It was revoked.
    #[error("{node} is revoked{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Revoked {
        /// Who.
        node: NodeId,
        /// Why, when known.
        reason: Option<String>,
    },
    /// An operator (or a simulated partition) blocked the link.
    #[error("the link to {0} is blocked")]
    Blocked(NodeId),
    /// A newer link of the same neighbour replaced this one.
    #[error("replaced by a newer link")]
    Replaced,
    /// It was dropped for relaying junk and is refused for a while.
    #[error("{node} is refused until {until_ms} ms (it relayed invalid deltas)")]
    Quarantined {
        /// Who.
        node: NodeId,
        /// Unix ms the refusal lasts until.
        until_ms: u64,
    },
    /// A live link with the same node exists: a second one is refused.
    #[error("{0} is already linked")]
    AlreadyLinked(NodeId),
    /// The TLS handshake failed (no certificate, a foreign root, a wrong protocol,
    /// or it did not finish in time).
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The address failed handshakes too often: it is turned away before any
    /// cryptography for a while.
    #[error("too many failed handshakes from this address")]
    Throttled,
}

impl Incompatibility {
    /// A short stable label for metrics and audit tallies.
    pub fn label(&self) -> &'static str {
        match self {
            Incompatibility::NoCertificate => "no_certificate",
            Incompatibility::NotMember(_) => "not_member",
            Incompatibility::NotChild { .. } => "not_child",
            Incompatibility::WrongNode { .. } => "wrong_node",
            Incompatibility::Revoked { .. } => "revoked",
            Incompatibility::Blocked(_) => "blocked",
            Incompatibility::Replaced => "replaced",
            Incompatibility::Quarantined { .. } => "quarantined",
            Incompatibility::AlreadyLinked(_) => "already_linked",
            Incompatibility::Handshake(_) => "handshake_failed",
            Incompatibility::Throttled => "throttled",
        }
    }
}

/// An error caused by a neighbour.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The neighbour broke the protocol.
    #[error("peer misbehaved: {0}")]
    Misbehaved(#[from] Misbehaviour),
    /// The neighbour may not be linked with.
    #[error("peer incompatible: {0}")]
    Incompatible(#[from] Incompatibility),
}

impl PeerError {
    /// A short stable label.
    pub fn label(&self) -> &'static str {
        match self {
            PeerError::Misbehaved(m) => match m {
                Misbehaviour::MalformedFrame(_) => "malformed_frame",
                Misbehaviour::OversizedFrame { .. } => "oversized_frame",
                Misbehaviour::BatchTooLarge { .. } => "batch_too_large",
                Misbehaviour::HelloTooLarge { .. } => "hello_too_large",
                Misbehaviour::SecondHello => "second_hello",
                Misbehaviour::InvalidDeltas { .. } => "invalid_deltas",
                Misbehaviour::BadRouted(_) => "bad_routed",
            },
            PeerError::Incompatible(i) => i.label(),
        }
    }

    /// Its class.
    pub fn fault(&self) -> Fault {
        match self {
            PeerError::Misbehaved(_) => Fault::PeerMisbehaved,
            PeerError::Incompatible(_) => Fault::PeerIncompatible,
        }
    }
}
