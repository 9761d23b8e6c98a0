//! Service calls through the gateway (服务对接): a call travels on its own QUIC
//! stream of the existing links, hop by hop to the provider's node, as a head
//! signed by the consumer's node (the caller, the grant it presents, what it
//! asks) and a body of data frames; the answer comes back the same way.
//!
//! Everything after the signed head is authenticated with a key only the two
//! ends of the call can derive (`PairKey`: X25519 of one node's key with the
//! other's, hashed with BLAKE3): every body frame carries a keyed BLAKE3 tag over
//! its place in the body and its bytes, the last frame binds the body's length,
//! and the answer's head is tagged by the node giving it. A receiver releases a
//! frame's bytes only once its tag holds, so bodies stream without being held
//! whole, and a relay that alters, drops, reorders or cuts a byte is caught
//! before the byte is used. One Ed25519 signature per call (the head, which the
//! provider can show to anyone) instead of one per checkpoint and answer: a MAC
//! costs a BLAKE3 pass, a signature and its verification ~60 µs of a core.

use crate::ids::Tier;
use crate::ids::NATIONAL;
use crate::routed::{next_hop, Route};
use crate::service::Endpoint;
use crate::signature::{verify, Item};
use crate::workflow::Grant;
use crate::{codec, NodeId};
use bytes::Bytes;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Largest encoded head (a grant with 32 endpoints, a path, a few headers).
pub const MAX_CALL_HEAD_BYTES: usize = 64 * 1024;
/// Most body bytes in one data frame: what a receiver holds, at most, before the
/// frame's tag vouches for it (and a QUIC stream moves 64 KiB in one go).
pub const CALL_CHUNK_BYTES: usize = 64 * 1024;
/// Most headers a call carries each way (only end-to-end ones are forwarded).
pub const MAX_CALL_HEADERS: usize = 32;
/// Longest path (with its query), in bytes.
pub const MAX_CALL_PATH_BYTES: usize = 2048;
/// Bytes of a body frame before its data: kind (1), length or total (8), tag (32).
pub const FRAME_HEAD_BYTES: usize = 41;

const HEAD_DOMAIN: &[u8] = b"cascade/call-head/v1\0";
const REPLY_DOMAIN: &[u8] = b"cascade/call-reply/v2\0";
const BODY_DOMAIN: &[u8] = b"cascade/call-body/v2\0";
const PAIR_CONTEXT: &str = "cascade 2026-11 call pair key v1";

/// A key two nodes share for the calls between them, derived from their node
/// keys (the same Ed25519 keys, read as X25519 keys: Thormarker, "On using the
/// same key pair for Ed25519 and an X25519 based KEM", 2021). Either end derives
/// it from its own signing key and the other's verifying key; no relay can.
#[derive(Clone, PartialEq, Eq)]
pub struct PairKey([u8; 32]);

impl std::fmt::Debug for PairKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PairKey(..)")
    }
}

impl PairKey {
    /// The key `mine` shares with the holder of `theirs`; none for a weak
    /// (small-order) key, with which the secret would be guessable.
    pub fn derive(mine: &SigningKey, theirs: &VerifyingKey) -> Option<PairKey> {
        if theirs.is_weak() {
            return None;
        }
        let shared = theirs.to_montgomery().mul_clamped(mine.to_scalar_bytes()).to_bytes();
        if shared == [0; 32] {
            return None;
        }
        Some(PairKey::hashed(&shared, mine.verifying_key(), theirs))
    }

    /// The key a node shares with itself, for the calls it serves its own
    /// consumers (its own key needs no check).
    pub fn own(key: &SigningKey) -> PairKey {
        let public = key.verifying_key();
        let shared = public.to_montgomery().mul_clamped(key.to_scalar_bytes()).to_bytes();
        PairKey::hashed(&shared, public, &public)
    }

    fn hashed(shared: &[u8; 32], mine: VerifyingKey, theirs: &VerifyingKey) -> PairKey {
        let (a, b) = (mine.to_bytes(), theirs.to_bytes());
        let (low, high) = if a <= b { (a, b) } else { (b, a) };
        let mut hasher = blake3::Hasher::new_derive_key(PAIR_CONTEXT);
        hasher.update(shared).update(&low).update(&high);
        PairKey(*hasher.finalize().as_bytes())
    }

    fn tag(&self, domain: &[u8], value: &impl Serialize) -> Option<[u8; 32]> {
        let encoded = codec::encode(value).ok()?;
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        hasher.update(domain).update(&encoded);
        Some(*hasher.finalize().as_bytes())
    }

    /// The key of one body of one call.
    fn body(&self, id: CallId, direction: Direction) -> [u8; 32] {
        self.tag(BODY_DOMAIN, &(id, direction as u8)).unwrap_or([0; 32])
    }
}

/// A call's id: the consumer's node, when it started, and a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CallId {
    /// The consumer's node.
    pub node: NodeId,
    /// Unix ms at the consumer's node.
    pub started_ms: u64,
    /// A counter of that node.
    pub n: u64,
}

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", self.node, self.started_ms, self.n)
    }
}

/// What a call asks, signed by the consumer's node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallHead {
    /// The call.
    pub id: CallId,
    /// The service called.
    pub service: String,
    /// The provider's node.
    pub provider_node: NodeId,
    /// HTTP method.
    pub method: String,
    /// The path below the service, with its query (`/persons/42?full=1`).
    pub path: String,
    /// End-to-end request headers (content type, accept, ...).
    pub headers: Vec<(String, String)>,
    /// Who calls (an account of the consumer's node).
    pub caller: String,
    /// The grant presented, as the provider signed it.
    pub grant: Grant,
    /// Ed25519 by the consumer's node over all of the above.
    pub signature: Vec<u8>,
}

/// The answer's head, tagged by the node that gives it (the provider's, or a
/// relay that could not forward the call) with the key it shares with the
/// consumer's node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyHead {
    /// The call.
    pub id: CallId,
    /// The node answering.
    pub by: NodeId,
    /// HTTP status for the caller.
    pub status: u16,
    /// End-to-end response headers.
    pub headers: Vec<(String, String)>,
    /// Why the call failed, when it did before reaching the upstream.
    pub error: Option<String>,
    /// Keyed BLAKE3, with the pair key of `by` and the consumer's node, over all of the above.
    pub tag: [u8; 32],
}

/// What follows a head on a call stream, each way: data, then the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallFrame {
    /// Body bytes (1 to `CALL_CHUNK_BYTES`), tagged with their offset.
    Data {
        /// The bytes.
        bytes: Bytes,
        /// Keyed BLAKE3 over the frame's offset in the body and its bytes.
        tag: [u8; 32],
    },
    /// The body ends here.
    End {
        /// Body bytes in all.
        total: u64,
        /// Keyed BLAKE3 over the total.
        tag: [u8; 32],
    },
}

/// A body frame's head as read off the wire, before its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameHead {
    /// `len` bytes of data follow.
    Data {
        /// Data bytes that follow (1 to `CALL_CHUNK_BYTES`).
        len: usize,
        /// Their tag.
        tag: [u8; 32],
    },
    /// The end; nothing follows.
    End {
        /// Body bytes in all.
        total: u64,
        /// Its tag.
        tag: [u8; 32],
    },
}

impl CallFrame {
    /// The frame's head on the wire (its data, if any, follows).
    pub fn head(&self) -> [u8; FRAME_HEAD_BYTES] {
        let (kind, n, tag) = match self {
            CallFrame::Data { bytes, tag } => (0u8, bytes.len() as u64, tag),
            CallFrame::End { total, tag } => (1u8, *total, tag),
        };
        let mut out = [0u8; FRAME_HEAD_BYTES];
        out[0] = kind;
        out[1..9].copy_from_slice(&n.to_be_bytes());
        out[9..].copy_from_slice(tag);
        out
    }
}

impl FrameHead {
    /// Reads a frame head; a data length outside 1..=`CALL_CHUNK_BYTES` or an
    /// unknown kind is malformed (nothing more is read for it).
    pub fn parse(bytes: &[u8; FRAME_HEAD_BYTES]) -> Result<FrameHead, CallError> {
        let mut n = [0u8; 8];
        n.copy_from_slice(&bytes[1..9]);
        let n = u64::from_be_bytes(n);
        let mut tag = [0u8; 32];
        tag.copy_from_slice(&bytes[9..]);
        match bytes[0] {
            0 if (1..=CALL_CHUNK_BYTES as u64).contains(&n) => Ok(FrameHead::Data { len: n as usize, tag }),
            0 => Err(CallError::Malformed(format!("a data frame of {n} bytes"))),
            1 => Ok(FrameHead::End { total: n, tag }),
            k => Err(CallError::Malformed(format!("frame kind {k}"))),
        }
    }
}

/// Which way a body goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Consumer to provider.
    Request,
    /// Provider to consumer.
    Response,
}

/// Why a call failed a check.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallError {
    /// A signature or tag does not verify: a relay altered something.
    #[error("tampered: {0}")]
    Tampered(String),
    /// The stream broke the call protocol.
    #[error("malformed call: {0}")]
    Malformed(String),
}

impl CallHead {
    fn signing_bytes(&self) -> Result<Vec<u8>, CallError> {
        let unsigned = CallHead { signature: Vec::new(), ..self.clone() };
        let mut bytes = HEAD_DOMAIN.to_vec();
        bytes.extend(codec::encode(&unsigned).map_err(|e| CallError::Malformed(e.to_string()))?);
        Ok(bytes)
    }

    /// Signs it with the consumer node's key.
    pub fn sign(mut self, key: &SigningKey) -> Result<CallHead, CallError> {
        self.signature = key.sign(&self.signing_bytes()?).to_bytes().to_vec();
        Ok(self)
    }

    /// The one of `keys` (the consumer node's) that signed it as it is, if any.
    pub fn signer<'k>(&self, keys: impl IntoIterator<Item = &'k VerifyingKey>) -> Option<&'k VerifyingKey> {
        let bytes = self.signing_bytes().ok()?;
        keys.into_iter()
            .find(|key| verify(&Item { key, message: &bytes, signature: &self.signature }).is_ok())
    }

    /// Form rules: sizes, a known method, a path below the service.
    pub fn check_form(&self) -> Result<(), CallError> {
        let bad = |what: &str| Err(CallError::Malformed(what.to_string()));
        if !crate::service::METHODS.contains(&self.method.as_str()) {
            return bad("method");
        }
        if !path_is_clean(&self.path) {
            return bad("path");
        }
        if self.headers.len() > MAX_CALL_HEADERS {
            return bad("too many headers");
        }
        self.grant.validate().map_err(|e| CallError::Malformed(e.to_string()))
    }
}

impl ReplyHead {
    fn untagged(&self) -> ReplyHead {
        ReplyHead { tag: [0; 32], ..self.clone() }
    }

    /// Tags it with the key the answering node shares with the consumer's.
    pub fn seal(mut self, key: &PairKey) -> ReplyHead {
        self.tag = key.tag(REPLY_DOMAIN, &self.untagged()).unwrap_or([0; 32]);
        self
    }

    /// The one of `keys` (those the consumer's node shares with `by`) whose tag it
    /// carries as it is, if any.
    pub fn opener<'k>(&self, keys: impl IntoIterator<Item = &'k PairKey>) -> Option<&'k PairKey> {
        let untagged = self.untagged();
        keys.into_iter().find(|k| k.tag(REPLY_DOMAIN, &untagged).is_some_and(|t| t == self.tag))
    }
}

fn data_tag(key: &[u8; 32], offset: u64, bytes: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_keyed(key);
    hasher.update(&[0]).update(&offset.to_be_bytes()).update(bytes);
    *hasher.finalize().as_bytes()
}

fn end_tag(key: &[u8; 32], total: u64) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_keyed(key);
    hasher.update(&[1]).update(&total.to_be_bytes());
    *hasher.finalize().as_bytes()
}

/// Cuts a body into tagged data frames.
pub struct BodySealer {
    key: [u8; 32],
    offset: u64,
}

impl BodySealer {
    /// A sealer for one body of one call, with the pair key of its two ends.
    pub fn new(key: &PairKey, id: CallId, direction: Direction) -> BodySealer {
        BodySealer { key: key.body(id, direction), offset: 0 }
    }

    /// The frames for the next bytes of the body (none for no bytes).
    pub fn frames(&mut self, bytes: Bytes) -> Vec<CallFrame> {
        let mut out = Vec::with_capacity(bytes.len().div_ceil(CALL_CHUNK_BYTES));
        let mut at = 0;
        while at < bytes.len() {
            let chunk = bytes.slice(at..(at + CALL_CHUNK_BYTES).min(bytes.len()));
            at += chunk.len();
            let tag = data_tag(&self.key, self.offset, &chunk);
            self.offset += chunk.len() as u64;
            out.push(CallFrame::Data { bytes: chunk, tag });
        }
        out
    }

    /// The last frame: the body ends.
    pub fn end(&self) -> CallFrame {
        CallFrame::End { total: self.offset, tag: end_tag(&self.key, self.offset) }
    }
}

/// The tag a frame carries, by kind.
#[derive(Clone, Copy)]
enum Tagged {
    Data([u8; 32]),
    End([u8; 32]),
}

/// Checks a body frame by frame, releasing each frame's bytes once its tag holds.
pub struct BodyOpener {
    /// The body keys of the pair keys the sender may have used; the first to
    /// open a frame is the only one tried from then on.
    keys: Vec<[u8; 32]>,
    offset: u64,
    ended: bool,
}

impl BodyOpener {
    /// An opener for one body of one call, with the pair keys its sender may use.
    pub fn new<'k>(
        keys: impl IntoIterator<Item = &'k PairKey>,
        id: CallId,
        direction: Direction,
    ) -> BodyOpener {
        BodyOpener {
            keys: keys.into_iter().map(|k| k.body(id, direction)).collect(),
            offset: 0,
            ended: false,
        }
    }

    /// Whether the end frame came and held.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Takes one frame; returns its bytes (none for the end) once its tag holds.
    pub fn frame(&mut self, frame: CallFrame) -> Result<Bytes, CallError> {
        if self.ended {
            return Err(CallError::Malformed("a frame after the end".into()));
        }
        let at = self.offset;
        let (expected, bytes) = match frame {
            CallFrame::Data { bytes, tag } => {
                if bytes.is_empty() || bytes.len() > CALL_CHUNK_BYTES {
                    return Err(CallError::Malformed(format!("a data frame of {} bytes", bytes.len())));
                }
                (Tagged::Data(tag), bytes)
            }
            CallFrame::End { total, tag } if total == at => (Tagged::End(tag), Bytes::new()),
            CallFrame::End { total, .. } => {
                return Err(CallError::Tampered(format!("the body ends at byte {total}, not {at}")));
            }
        };
        let holds = |key: &[u8; 32]| match expected {
            Tagged::Data(tag) => data_tag(key, at, &bytes) == tag,
            Tagged::End(tag) => end_tag(key, at) == tag,
        };
        let Some(found) = self.keys.iter().position(holds) else {
            return Err(CallError::Tampered(format!("the body at byte {at} is not what was sent")));
        };
        if self.keys.len() > 1 {
            self.keys = vec![self.keys[found]];
        }
        if bytes.is_empty() {
            self.ended = true;
        }
        self.offset += bytes.len() as u64;
        Ok(bytes)
    }
}

/// Whether a call's path (with its query) can be sent to an upstream as it is:
/// it starts with `/`, has no `.` or `..` segment (plain or percent-encoded), no
/// backslash, fragment, whitespace or control character, and fits the limit. An
/// upstream URL resolves such segments, which would lead a granted template
/// (`/persons/{id}`) out of its subtree.
pub fn path_is_clean(path: &str) -> bool {
    let (path_only, _) = path.split_once('?').unwrap_or((path, ""));
    let dot = |segment: &str| {
        let s = segment.to_ascii_lowercase().replace("%2e", ".");
        s == "." || s == ".."
    };
    path.starts_with('/')
        && path.len() <= MAX_CALL_PATH_BYTES
        && !path.chars().any(|c| c == '\\' || c == '#' || c.is_whitespace() || c.is_control())
        && !path_only.to_ascii_lowercase().contains("%2f")
        && !path_only.to_ascii_lowercase().contains("%5c")
        && !path_only.split('/').any(dot)
}

/// Whether a concrete path (query aside) fits a template (`{name}` is one segment).
pub fn path_matches(template: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or("");
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) if ts.starts_with('{') && ts.ends_with('}') => {
                if ps.is_empty() {
                    return false;
                }
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return false,
        }
    }
}

/// Whether a call of `method` on `path` is among `endpoints`.
pub fn endpoint_allowed(endpoints: &[Endpoint], method: &str, path: &str) -> bool {
    path_is_clean(path) && endpoints.iter().any(|e| e.method == method && path_matches(&e.path, path))
}

/// The parent of a node in the tree the PKI enforces (a city's is its province,
/// a province's the national node).
pub fn tree_parent(id: NodeId) -> Option<NodeId> {
    match id.tier() {
        Tier::National => None,
        Tier::Provincial => Some(NATIONAL),
        Tier::Municipal => id.province(),
    }
}

/// The next hop of a call from `me` to `to`.
pub fn call_next_hop(me: NodeId, to: NodeId) -> Route {
    next_hop(me, to, |id| Some(tree_parent(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> CallId {
        CallId { node: NodeId::new(370100).unwrap(), started_ms: 1, n: 1 }
    }

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn pair() -> (PairKey, PairKey) {
        let (a, b) = (SigningKey::from_bytes(&[1; 32]), SigningKey::from_bytes(&[2; 32]));
        (PairKey::derive(&a, &b.verifying_key()).unwrap(), PairKey::derive(&b, &a.verifying_key()).unwrap())
    }

    /// Seals `data` in pieces of `piece`, opens it frame by frame after `meddle`
    /// had its way with the frames; returns what was released, or the first error.
    fn round_trip(
        data: &[u8],
        piece: usize,
        meddle: impl Fn(&mut Vec<CallFrame>),
    ) -> Result<Vec<u8>, CallError> {
        let (sender, receiver) = pair();
        let mut sealer = BodySealer::new(&sender, id(), Direction::Request);
        let mut frames = Vec::new();
        for part in data.chunks(piece.max(1)) {
            frames.extend(sealer.frames(Bytes::copy_from_slice(part)));
        }
        frames.push(sealer.end());
        meddle(&mut frames);
        let mut opener = BodyOpener::new([&receiver], id(), Direction::Request);
        let mut out = Vec::new();
        for frame in frames {
            out.extend(opener.frame(frame)?);
        }
        if !opener.ended() {
            return Err(CallError::Malformed("no end".into()));
        }
        Ok(out)
    }

    #[test]
    fn both_ends_derive_one_pair_key_and_a_third_node_another() {
        let (a, b) = pair();
        assert_eq!(a, b);
        let c = SigningKey::from_bytes(&[3; 32]);
        assert_ne!(PairKey::derive(&c, &SigningKey::from_bytes(&[1; 32]).verifying_key()).unwrap(), a);
        // A small-order key would make the shared secret guessable.
        let weak = VerifyingKey::from_bytes(&[0; 32]).unwrap();
        assert!(weak.is_weak());
        assert!(PairKey::derive(&c, &weak).is_none());
        assert_eq!(PairKey::own(&c), PairKey::derive(&c, &c.verifying_key()).unwrap());
    }

    #[test]
    fn a_body_streams_frame_by_frame_intact() {
        for len in [0, 1, 70_000, CALL_CHUNK_BYTES, 3 * CALL_CHUNK_BYTES + 5] {
            let data = body(len);
            assert_eq!(round_trip(&data, 10_000, |_| {}).unwrap(), data, "{len} bytes");
        }
    }

    #[test]
    fn an_altered_dropped_reordered_or_cut_body_is_caught_before_release() {
        let data = body(3 * CALL_CHUNK_BYTES);
        let flip = |f: &mut Vec<CallFrame>| {
            if let CallFrame::Data { bytes, .. } = &mut f[1] {
                let mut b = bytes.to_vec();
                b[7] ^= 1;
                *bytes = Bytes::from(b);
            }
        };
        let drop = |f: &mut Vec<CallFrame>| {
            f.remove(1);
        };
        let swap = |f: &mut Vec<CallFrame>| f.swap(0, 1);
        let cut = |f: &mut Vec<CallFrame>| {
            let end = f.pop().unwrap();
            f.pop();
            f.push(end);
        };
        for (what, meddle) in
            [("flip", &flip as &dyn Fn(&mut Vec<CallFrame>)), ("drop", &drop), ("swap", &swap), ("cut", &cut)]
        {
            let err = round_trip(&data, 100_000, meddle).unwrap_err();
            assert!(matches!(err, CallError::Tampered(_)), "{what}: {err}");
        }
    }

    #[test]
    fn frame_heads_round_trip_and_oversized_frames_are_refused() {
        let frame = CallFrame::Data { bytes: Bytes::from_static(b"abc"), tag: [9; 32] };
        assert_eq!(FrameHead::parse(&frame.head()).unwrap(), FrameHead::Data { len: 3, tag: [9; 32] });
        let end = CallFrame::End { total: 1 << 40, tag: [8; 32] };
        assert_eq!(FrameHead::parse(&end.head()).unwrap(), FrameHead::End { total: 1 << 40, tag: [8; 32] });
        let mut huge = frame.head();
        huge[1..9].copy_from_slice(&(CALL_CHUNK_BYTES as u64 + 1).to_be_bytes());
        assert!(matches!(FrameHead::parse(&huge), Err(CallError::Malformed(_))));
        let mut empty = frame.head();
        empty[1..9].copy_from_slice(&0u64.to_be_bytes());
        assert!(FrameHead::parse(&empty).is_err());
        let mut kind = frame.head();
        kind[0] = 7;
        assert!(FrameHead::parse(&kind).is_err());
    }

    #[test]
    fn heads_open_only_as_sealed_and_signed() {
        let (a, b) = pair();
        let reply =
            ReplyHead { id: id(), by: id().node, status: 200, headers: vec![], error: None, tag: [0; 32] };
        let sealed = reply.seal(&a);
        assert!(sealed.opener([&b]).is_some());
        let mut changed = sealed.clone();
        changed.status = 403;
        assert!(changed.opener([&b]).is_none());
        let other = PairKey::derive(
            &SigningKey::from_bytes(&[5; 32]),
            &SigningKey::from_bytes(&[6; 32]).verifying_key(),
        )
        .unwrap();
        assert!(sealed.opener([&other]).is_none());
    }

    #[test]
    fn templates_match_one_segment_per_placeholder() {
        assert!(path_matches("/persons/{id}", "/persons/42"));
        assert!(path_matches("/persons/{id}", "/persons/42?full=1"));
        assert!(!path_matches("/persons/{id}", "/persons/"));
        assert!(!path_matches("/persons/{id}", "/persons/42/secrets"));
        assert!(!path_matches("/persons/{id}", "/companies/42"));
        assert!(path_matches("/stats", "/stats"));
    }

    #[test]
    fn paths_that_would_leave_a_granted_template_are_refused() {
        let persons = [Endpoint { method: "GET".into(), path: "/persons/{id}".into() }];
        assert!(endpoint_allowed(&persons, "GET", "/persons/42?full=1"));
        for sneaky in [
            "/persons/..",
            "/persons/%2e%2E",
            "/persons/.",
            "/persons/..\\admin",
            "/persons/x%2F..%2Fadmin",
            "/persons/x%5cadmin",
            "/persons/42#frag",
            "/persons/4 2",
            "persons/42",
        ] {
            assert!(!endpoint_allowed(&persons, "GET", sneaky), "{sneaky}");
        }
    }

    #[test]
    fn calls_follow_the_tree_of_division_codes() {
        let n = |c| NodeId::new(c).unwrap();
        assert_eq!(call_next_hop(n(370100), n(440100)), Route::Via(n(370000)));
        assert_eq!(call_next_hop(n(370000), n(440100)), Route::Via(n(100000)));
        assert_eq!(call_next_hop(n(100000), n(440100)), Route::Via(n(440000)));
        assert_eq!(call_next_hop(n(440000), n(440100)), Route::Via(n(440100)));
        assert_eq!(call_next_hop(n(370100), n(370200)), Route::Via(n(370000)));
        assert_eq!(call_next_hop(n(370000), n(370200)), Route::Via(n(370200)));
        assert_eq!(call_next_hop(n(440100), n(440100)), Route::Here);
    }
}
