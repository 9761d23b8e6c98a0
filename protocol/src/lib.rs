//! Cascade protocol: the wire types, a bounded codec, signed deltas, catalog
//! rules, the limits of a node and the sync engine as a pure state machine
//! (events in, actions out; no sockets, no clock, no disk), the way quinn-proto is
//! to quinn.

pub mod call;
pub mod catalog;
pub mod civil;
pub mod codec;
pub mod dataset;
pub mod delta;
pub mod division;
pub mod engine;
pub mod fault;
pub mod ids;
pub mod limits;
pub mod membership;
pub mod message;
pub mod org;
pub mod routed;
pub mod service;
pub mod signature;
pub mod workflow;

pub use catalog::FieldError;
pub use codec::{decode, encode, CodecError};
pub use delta::{AuditCheckpoint, Delta, DeltaBody, DeltaError, Hash, Revocation, GENESIS_HASH};
pub use engine::{Action, Admitted, Engine, EngineError, Event, RejectReason, Rejection, SignatureCache};
pub use fault::{Fault, Incompatibility, Misbehaviour, PeerError};
pub use ids::{IdError, LogId, NodeId, Scope, Tier};
pub use membership::{CertificateError, Member, MembershipVerifier};
pub use message::{Batcher, Frame, VersionVector, ALPN};
