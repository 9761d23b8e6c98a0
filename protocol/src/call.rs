//! Service calls through the gateway (服务对接): a call travels on its own QUIC
//! stream of the existing links, hop by hop to the provider's node, as a signed
//! head (the caller, the grant it presents, what it asks) and a body of data
//! frames with signed checkpoints; the answer comes back the same way, signed by
//! the node that gives it. A receiver holds at most one checkpoint's worth of
//! body before the checkpoint's signature vouches for it, so bodies stream
//! without being buffered whole, and a relay that alters a byte is caught before
//! the byte is used.

use crate::ids::Tier;
use crate::ids::NATIONAL;
use crate::routed::{next_hop, Route};
use crate::service::Endpoint;
use crate::workflow::Grant;
use crate::{codec, NodeId};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// Largest encoded head (a grant with 32 endpoints, a path, a few headers).
pub const MAX_CALL_HEAD_BYTES: usize = 64 * 1024;
/// Bytes of body in one data frame.
pub const CALL_CHUNK_BYTES: usize = 64 * 1024;
/// Body bytes between signed checkpoints: what a receiver holds, at most, before
/// it may pass them on (four signatures and verifications a MiB: ~0.3 s of one
/// core per GiB, against a bounded ¼ MiB held per call).
pub const CHECKPOINT_BYTES: u64 = 256 * 1024;
/// Largest encoded body frame.
pub const MAX_CALL_FRAME_BYTES: usize = CALL_CHUNK_BYTES + 1024;
/// Most headers a call carries each way (only end-to-end ones are forwarded).
pub const MAX_CALL_HEADERS: usize = 32;
/// Longest path (with its query), in bytes.
pub const MAX_CALL_PATH_BYTES: usize = 2048;

const HEAD_DOMAIN: &[u8] = b"cascade/call-head/v1\0";
const REPLY_DOMAIN: &[u8] = b"cascade/call-reply/v1\0";
const BODY_DOMAIN: &[u8] = b"cascade/call-body/v1\0";

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

/// The answer's head, signed by the node that gives it: the provider's, or a
/// relay that could not forward the call.
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
    /// Ed25519 by `by` over all of the above.
    pub signature: Vec<u8>,
}

/// What follows a head on a call stream, each way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallFrame {
    /// Body bytes (at most `CALL_CHUNK_BYTES`).
    Data(Vec<u8>),
    /// The sender vouches for the body so far (`offset` bytes).
    Checkpoint {
        /// Body bytes so far.
        offset: u64,
        /// Ed25519 over the call, the direction, `offset` and the body's BLAKE3 so far.
        signature: Vec<u8>,
    },
    /// The last checkpoint: the body ends here.
    End {
        /// Body bytes in all.
        offset: u64,
        /// As for a checkpoint.
        signature: Vec<u8>,
    },
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
    /// A signature does not verify: a relay altered something.
    #[error("tampered: {0}")]
    Tampered(String),
    /// The stream broke the call protocol.
    #[error("malformed call: {0}")]
    Malformed(String),
}

fn sign_with(key: &SigningKey, domain: &[u8], value: &impl Serialize) -> Result<Vec<u8>, CallError> {
    let mut bytes = domain.to_vec();
    bytes.extend(codec::encode(value).map_err(|e| CallError::Malformed(e.to_string()))?);
    Ok(key.sign(&bytes).to_bytes().to_vec())
}

fn verify_with<'k>(
    keys: impl IntoIterator<Item = &'k VerifyingKey>,
    domain: &[u8],
    value: &impl Serialize,
    signature: &[u8],
) -> bool {
    let Ok(signature) = Signature::from_slice(signature) else { return false };
    let Ok(encoded) = codec::encode(value) else { return false };
    let mut bytes = domain.to_vec();
    bytes.extend(encoded);
    keys.into_iter().any(|k| k.verify_strict(&bytes, &signature).is_ok())
}

impl CallHead {
    fn unsigned(&self) -> CallHead {
        CallHead { signature: Vec::new(), ..self.clone() }
    }

    /// Signs it with the consumer node's key.
    pub fn sign(mut self, key: &SigningKey) -> Result<CallHead, CallError> {
        self.signature = sign_with(key, HEAD_DOMAIN, &self.unsigned())?;
        Ok(self)
    }

    /// Whether one of `keys` (the consumer node's) signed it as it is.
    pub fn verify<'k>(&self, keys: impl IntoIterator<Item = &'k VerifyingKey>) -> bool {
        verify_with(keys, HEAD_DOMAIN, &self.unsigned(), &self.signature)
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
    fn unsigned(&self) -> ReplyHead {
        ReplyHead { signature: Vec::new(), ..self.clone() }
    }

    /// Signs it with the answering node's key.
    pub fn sign(mut self, key: &SigningKey) -> Result<ReplyHead, CallError> {
        self.signature = sign_with(key, REPLY_DOMAIN, &self.unsigned())?;
        Ok(self)
    }

    /// Whether one of `keys` (the answering node's) signed it as it is.
    pub fn verify<'k>(&self, keys: impl IntoIterator<Item = &'k VerifyingKey>) -> bool {
        verify_with(keys, REPLY_DOMAIN, &self.unsigned(), &self.signature)
    }
}

fn body_statement(
    id: CallId,
    direction: Direction,
    offset: u64,
    hash: &blake3::Hash,
) -> (CallId, u8, u64, [u8; 32]) {
    (id, direction as u8, offset, *hash.as_bytes())
}

/// Cuts a body into data frames and signs a checkpoint every `CHECKPOINT_BYTES`.
pub struct BodySigner {
    id: CallId,
    direction: Direction,
    hasher: blake3::Hasher,
    offset: u64,
    since: u64,
}

impl BodySigner {
    /// A signer for one body of one call.
    pub fn new(id: CallId, direction: Direction) -> BodySigner {
        BodySigner { id, direction, hasher: blake3::Hasher::new(), offset: 0, since: 0 }
    }

    /// The frames for the next bytes of the body (data frames, and checkpoints).
    pub fn frames(&mut self, key: &SigningKey, mut bytes: &[u8]) -> Result<Vec<CallFrame>, CallError> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let room = (CHECKPOINT_BYTES - self.since).min(CALL_CHUNK_BYTES as u64) as usize;
            let (chunk, rest) = bytes.split_at(room.min(bytes.len()));
            self.hasher.update(chunk);
            self.offset += chunk.len() as u64;
            self.since += chunk.len() as u64;
            out.push(CallFrame::Data(chunk.to_vec()));
            if self.since == CHECKPOINT_BYTES {
                out.push(CallFrame::Checkpoint { offset: self.offset, signature: self.signature(key)? });
                self.since = 0;
            }
            bytes = rest;
        }
        Ok(out)
    }

    /// The last frame: the body ends.
    pub fn end(&mut self, key: &SigningKey) -> Result<CallFrame, CallError> {
        Ok(CallFrame::End { offset: self.offset, signature: self.signature(key)? })
    }

    fn signature(&self, key: &SigningKey) -> Result<Vec<u8>, CallError> {
        let statement = body_statement(self.id, self.direction, self.offset, &self.hasher.finalize());
        sign_with(key, BODY_DOMAIN, &statement)
    }
}

/// Holds a body's bytes until a checkpoint vouches for them.
pub struct BodyVerifier {
    id: CallId,
    direction: Direction,
    hasher: blake3::Hasher,
    offset: u64,
    held: Vec<u8>,
    ended: bool,
}

impl BodyVerifier {
    /// A verifier for one body of one call.
    pub fn new(id: CallId, direction: Direction) -> BodyVerifier {
        BodyVerifier {
            id,
            direction,
            hasher: blake3::Hasher::new(),
            offset: 0,
            held: Vec::new(),
            ended: false,
        }
    }

    /// Whether the last checkpoint said the body ended.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Takes one frame; returns the bytes a checkpoint vouched for, to pass on.
    pub fn frame<'k>(
        &mut self,
        frame: CallFrame,
        keys: impl IntoIterator<Item = &'k VerifyingKey>,
    ) -> Result<Vec<u8>, CallError> {
        if self.ended {
            return Err(CallError::Malformed("a frame after the end".into()));
        }
        let (offset, signature, last) = match frame {
            CallFrame::Data(bytes) => {
                if bytes.len() > CALL_CHUNK_BYTES || (self.held.len() + bytes.len()) as u64 > CHECKPOINT_BYTES
                {
                    return Err(CallError::Malformed("more body than a checkpoint covers".into()));
                }
                self.hasher.update(&bytes);
                self.held.extend_from_slice(&bytes);
                return Ok(Vec::new());
            }
            CallFrame::Checkpoint { offset, signature } => (offset, signature, false),
            CallFrame::End { offset, signature } => (offset, signature, true),
        };
        let total = self.offset + self.held.len() as u64;
        let statement = body_statement(self.id, self.direction, total, &self.hasher.finalize());
        if offset != total || !verify_with(keys, BODY_DOMAIN, &statement, &signature) {
            return Err(CallError::Tampered(format!("the body at byte {total} is not what was signed")));
        }
        self.offset = total;
        self.ended = last;
        Ok(std::mem::take(&mut self.held))
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

    /// Signs `data` in pieces of `piece`, verifies it frame by frame; returns what
    /// was released, or the first error.
    fn round_trip(data: &[u8], piece: usize, alter: Option<usize>) -> Result<Vec<u8>, CallError> {
        let key = SigningKey::from_bytes(&[1; 32]);
        let mut signer = BodySigner::new(id(), Direction::Request);
        let mut frames = Vec::new();
        for part in data.chunks(piece.max(1)) {
            frames.extend(signer.frames(&key, part).unwrap());
        }
        frames.push(signer.end(&key).unwrap());
        let mut seen = 0;
        for frame in frames.iter_mut() {
            if let CallFrame::Data(bytes) = frame {
                if let Some(at) = alter.filter(|at| (seen..seen + bytes.len()).contains(at)) {
                    bytes[at - seen] ^= 1;
                }
                seen += bytes.len();
            }
        }
        let mut verifier = BodyVerifier::new(id(), Direction::Request);
        let mut out = Vec::new();
        for frame in frames {
            out.extend(verifier.frame(frame, [&key.verifying_key()])?);
        }
        assert!(verifier.ended());
        Ok(out)
    }

    #[test]
    fn a_body_streams_through_checkpoints_intact() {
        for len in [0, 1, 70_000, CHECKPOINT_BYTES as usize, 3 * CHECKPOINT_BYTES as usize + 5] {
            let data = body(len);
            assert_eq!(round_trip(&data, 10_000, None).unwrap(), data, "{len} bytes");
        }
    }

    #[test]
    fn an_altered_byte_is_caught_before_it_is_released() {
        let data = body(3 * CHECKPOINT_BYTES as usize);
        let err = round_trip(&data, 100_000, Some(CHECKPOINT_BYTES as usize + 7)).unwrap_err();
        assert!(matches!(err, CallError::Tampered(_)), "{err}");
    }

    #[test]
    fn a_verifier_never_holds_more_than_a_checkpoint() {
        let mut verifier = BodyVerifier::new(id(), Direction::Request);
        let key = SigningKey::from_bytes(&[1; 32]).verifying_key();
        let chunk = CallFrame::Data(vec![0; CALL_CHUNK_BYTES]);
        for _ in 0..CHECKPOINT_BYTES as usize / CALL_CHUNK_BYTES {
            verifier.frame(chunk.clone(), [&key]).unwrap();
        }
        assert!(matches!(verifier.frame(chunk, [&key]), Err(CallError::Malformed(_))));
    }

    #[test]
    fn heads_verify_only_as_signed() {
        let key = SigningKey::from_bytes(&[2; 32]);
        let reply = ReplyHead {
            id: id(),
            by: id().node,
            status: 200,
            headers: vec![],
            error: None,
            signature: vec![],
        };
        let signed = reply.sign(&key).unwrap();
        assert!(signed.verify([&key.verifying_key()]));
        let mut changed = signed.clone();
        changed.status = 403;
        assert!(!changed.verify([&key.verifying_key()]));
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
