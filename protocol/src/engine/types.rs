//! What goes into and comes out of the sync engine.

use crate::delta::{Delta, DeltaBody, DeltaError};
use crate::fault::PeerError;
use crate::ids::{LogId, NodeId};
use crate::membership::CertificateError;
use crate::message::Frame;
use std::fmt;
use std::sync::Arc;

/// Something that happened to the node.
#[derive(Debug)]
pub enum Event {
    /// A neighbour's connection is up (identity already checked by the transport).
    PeerUp {
        /// The neighbour.
        peer: NodeId,
    },
    /// A neighbour's connection is gone.
    PeerDown {
        /// The neighbour.
        peer: NodeId,
    },
    /// A neighbour sent a frame.
    Frame {
        /// The neighbour.
        peer: NodeId,
        /// What it sent.
        frame: Frame,
    },
}

/// A delta the engine admitted, with its body decoded once (by the check that
/// admitted it, or never encoded twice for an own delta).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// The delta, as stored and relayed.
    pub delta: Arc<Delta>,
    /// What it says.
    pub body: DeltaBody,
}

/// Something the driver must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Make these admitted deltas durable, in order, before any later `Send` is
    /// executed or any change acknowledged.
    Persist(Vec<Admitted>),
    /// Send a frame to a neighbour.
    Send {
        /// The neighbour.
        peer: NodeId,
        /// The frame.
        frame: Frame,
    },
    /// Stream the stored deltas `from..=to` of `log` to a neighbour, in batches.
    SendRange {
        /// The neighbour.
        peer: NodeId,
        /// The log.
        log: LogId,
        /// First seq to send.
        from: u64,
        /// Last seq to send.
        to: u64,
    },
    /// A delta was refused: count it and log it. Nothing was stored or forwarded.
    Reject(Rejection),
    /// Drop the connection to a neighbour.
    Disconnect {
        /// The neighbour.
        peer: NodeId,
        /// Why.
        reason: PeerError,
    },
}

/// A refused delta, for counters and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The neighbour that sent it.
    pub peer: NodeId,
    /// Its claimed log.
    pub log: LogId,
    /// Its claimed seq.
    pub seq: u64,
    /// Why it was refused.
    pub reason: RejectReason,
}

/// Why a delta was refused. Every reason is the misbehaviour of its origin or of
/// a relay: a correct node never signs or forwards such a delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    /// The signature does not verify against the origin's certified key.
    BadSignature,
    /// `prev` does not match the hash of the delta before it.
    BrokenChain,
    /// The Join's certificate names another node, or the key changed.
    WrongOrigin(String),
    /// The Join's certificate chain does not lead to the federation root.
    NotMember(CertificateError),
    /// The origin was revoked before this delta.
    Revoked,
    /// A province-scoped delta outside its province.
    OutOfScope,
    /// The origin signed two different deltas at the same position (equivocation).
    Fork,
    /// The body is malformed or violates a rule.
    Invalid(String),
}

impl RejectReason {
    /// Every label, in a fixed order (for metrics that show each reason, even at zero).
    pub const LABELS: [&'static str; 8] = [
        "bad_signature",
        "broken_chain",
        "wrong_origin",
        "not_member",
        "revoked",
        "out_of_scope",
        "fork",
        "invalid",
    ];

    /// Its position in `LABELS`.
    pub fn index(&self) -> usize {
        match self {
            RejectReason::BadSignature => 0,
            RejectReason::BrokenChain => 1,
            RejectReason::WrongOrigin(_) => 2,
            RejectReason::NotMember(_) => 3,
            RejectReason::Revoked => 4,
            RejectReason::OutOfScope => 5,
            RejectReason::Fork => 6,
            RejectReason::Invalid(_) => 7,
        }
    }

    /// A short stable label for metrics.
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::WrongOrigin(s) => write!(f, "wrong origin: {s}"),
            RejectReason::NotMember(e) => write!(f, "not a member: {e}"),
            RejectReason::Invalid(s) => write!(f, "invalid: {s}"),
            other => f.write_str(other.label()),
        }
    }
}

/// Errors of the engine's own operations.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// This node's own certificate chain does not verify or does not match its key.
    #[error("own identity: {0}")]
    Identity(CertificateError),
    /// A delta could not be built.
    #[error(transparent)]
    Delta(#[from] DeltaError),
    /// A delta this node was asked to originate would be rejected by everyone;
    /// nothing was changed.
    #[error("refused to originate: {0}")]
    Refused(RejectReason),
    /// This node's logs are signed with another key than its certificate's, and
    /// the key they are signed with was not given to hand them over.
    #[error(
        "{log} is signed with key {signed_with}, not this certificate's; give the previous key \
         (certs.previous_key) so the node can hand its logs over to the new one"
    )]
    NeedsPreviousKey {
        /// A log of this node.
        log: LogId,
        /// Hex of the key it is signed with now.
        signed_with: String,
    },
    /// This node is learning its own logs back from its neighbours (after a
    /// restart, or because one holds more of them than it does): it originates
    /// nothing until then, so as never to sign two deltas at one position.
    #[error("{}", match behind {
        Some((log, held, there)) => format!("recovering: a neighbour holds {log} up to #{there}, this node up to #{held}"),
        None => "recovering: waiting to hear from a neighbour how far this node's own logs go".to_string(),
    })]
    Recovering {
        /// The first own log behind a neighbour's copy: (log, held here, held there).
        behind: Option<(LogId, u64, u64)>,
    },
    /// A stored delta failed verification while restoring state: the store is corrupt.
    #[error("stored delta {log} #{seq} is invalid: {reason}")]
    CorruptStore {
        /// The log.
        log: LogId,
        /// The seq.
        seq: u64,
        /// What is wrong with it.
        reason: RejectReason,
    },
}
