//! Cascade protocol: the wire types, a bounded codec, signed deltas, catalog
//! rules and the sync engine as a pure state machine (events in, actions out;
//! no sockets, no clock, no disk), the way quinn-proto is to quinn.

pub mod catalog;
pub mod codec;
pub mod delta;
pub mod division;
pub mod engine;
pub mod ids;
pub mod membership;
pub mod message;
pub mod org;

pub use codec::{decode, encode, CodecError, MAX_FRAME_BYTES};
pub use delta::{Delta, DeltaBody, DeltaError, Hash, Revocation, GENESIS_HASH};
pub use engine::{Action, Engine, EngineError, Event, RejectReason, Rejection, SignatureCache};
pub use ids::{LogId, NodeId, Scope, Tier};
pub use membership::{Member, MembershipVerifier};
pub use message::{Frame, VersionVector, ALPN};
