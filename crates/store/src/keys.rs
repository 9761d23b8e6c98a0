//! The key layout: one-byte prefixes in one sled tree.
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `L` | origin (4), scope (1), seq (8) | the encoded delta |
//! | `C` | origin (4), scope (1), resource code | seq (8) of its latest delta in that log |
//! | `R` | credit code, 0, origin (4) | scope (1), seq (8) of the registration delta |
//! | `O` | resource code | an own draft: scope (1), the entry as a catalog delta body |
//! | `U` | username | account record |
//! | `T` | token id | token record |
//! | `A` | seq (8) | audit record (hash, then JSON body) |
//! | `X` | field tag (1), value length (2), value, seq (8) | nothing: an audit index row |
//! | `Q` | next hop (4), sender (4), message seq (8) | a routed message waiting for that hop |
//! | `S` | sender (4), message seq (8) | until when (8): a routed message id seen |
//! | `P` | application id | application record |
//! | `G` | grant id | grant record |
//! | `D` | origin (4), resource code, 0, version (8) | scope (1), seq (8) of the manifest delta |
//! | `K` | grant id | nothing: its provider's revocation passed through here |
//! | `M` | `Mmeta` / `Mformat` | node counters / store format |

use cascade_core::StoreError;
use cascade_protocol::routed::MessageId;
use cascade_protocol::{LogId, NodeId, Scope};

pub(crate) const LOG: u8 = b'L';
pub(crate) const CATALOG: u8 = b'C';
pub(crate) const ORG: u8 = b'R';
pub(crate) const OWN: u8 = b'O';
pub(crate) const ACCOUNT: u8 = b'U';
pub(crate) const TOKEN: u8 = b'T';
pub(crate) const AUDIT: u8 = b'A';
pub(crate) const AUDIT_INDEX: u8 = b'X';
/// Services, by id: a pointer to the delta of their latest version.
pub(crate) const SERVICE: u8 = b'V';
/// This node's own services' upstream URLs, by service id.
pub(crate) const UPSTREAM: u8 = b'W';
/// Routed messages waiting for a next hop.
pub(crate) const OUTBOX: u8 = b'Q';
/// Routed message ids seen.
pub(crate) const SEEN: u8 = b'S';
/// Applications, by id.
pub(crate) const APPLICATION: u8 = b'P';
/// Grants, by id.
pub(crate) const GRANT: u8 = b'G';
/// Workflow messages this node relayed, by when (unix ms) and id.
pub(crate) const RELAYED: u8 = b'Y';
/// Dataset versions, by entry and version: a pointer to the manifest delta.
pub(crate) const DATASET: u8 = b'D';
/// Grants whose revocation this node relayed, by id.
pub(crate) const REVOKED: u8 = b'K';
pub(crate) const META_KEY: &[u8] = b"Mmeta";
pub(crate) const FORMAT_KEY: &[u8] = b"Mformat";

/// Length of a log key: prefix, origin, scope, seq.
pub(crate) const LOG_KEY_LEN: usize = 1 + 4 + 1 + 8;
/// Length of an audit key: prefix, seq.
pub(crate) const AUDIT_KEY_LEN: usize = 1 + 8;

pub(crate) fn scope_byte(scope: Scope) -> u8 {
    match scope {
        Scope::Federation => 0,
        Scope::Province => 1,
    }
}

pub(crate) fn scope_of(byte: u8) -> Option<Scope> {
    match byte {
        0 => Some(Scope::Federation),
        1 => Some(Scope::Province),
        _ => None,
    }
}

pub(crate) fn log_prefix(log: LogId) -> [u8; 6] {
    let o = log.origin.code().to_be_bytes();
    [LOG, o[0], o[1], o[2], o[3], scope_byte(log.scope)]
}

pub(crate) fn log_key(log: LogId, seq: u64) -> Vec<u8> {
    let mut key = log_prefix(log).to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub(crate) fn catalog_key(origin: NodeId, scope: Scope, code: &str) -> Vec<u8> {
    let mut key = catalog_prefix(origin);
    key.push(scope_byte(scope));
    key.extend_from_slice(code.as_bytes());
    key
}

pub(crate) fn catalog_prefix(origin: NodeId) -> Vec<u8> {
    let mut key = vec![CATALOG];
    key.extend_from_slice(&origin.code().to_be_bytes());
    key
}

pub(crate) fn org_key(credit_code: &str, node: NodeId) -> Vec<u8> {
    let mut key = org_prefix(credit_code);
    key.extend_from_slice(&node.code().to_be_bytes());
    key
}

pub(crate) fn org_prefix(credit_code: &str) -> Vec<u8> {
    let mut key = vec![ORG];
    key.extend_from_slice(credit_code.as_bytes());
    key.push(0);
    key
}

pub(crate) fn own_key(code: &str) -> Vec<u8> {
    let mut key = vec![OWN];
    key.extend_from_slice(code.as_bytes());
    key
}

pub(crate) fn service_key(id: &str) -> Vec<u8> {
    let mut key = vec![SERVICE];
    key.extend_from_slice(id.as_bytes());
    key
}

/// The prefix of every version of `origin`'s entry `code` (the 0 ends the code,
/// so that one code is never the prefix of another's keys).
pub(crate) fn dataset_prefix(origin: NodeId, code: &str) -> Vec<u8> {
    let mut key = vec![DATASET];
    key.extend_from_slice(&origin.code().to_be_bytes());
    key.extend_from_slice(code.as_bytes());
    key.push(0);
    key
}

pub(crate) fn dataset_key(origin: NodeId, code: &str, version: u64) -> Vec<u8> {
    let mut key = dataset_prefix(origin, code);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

pub(crate) fn upstream_key(id: &str) -> Vec<u8> {
    let mut key = vec![UPSTREAM];
    key.extend_from_slice(id.as_bytes());
    key
}

fn message_bytes(id: MessageId) -> [u8; 12] {
    let mut out = [0; 12];
    out[..4].copy_from_slice(&id.from.code().to_be_bytes());
    out[4..].copy_from_slice(&id.seq.to_be_bytes());
    out
}

/// Length of an outbox key: prefix, hop, sender, seq.
pub(crate) const OUTBOX_KEY_LEN: usize = 1 + 4 + 12;

pub(crate) fn outbox_key(hop: NodeId, id: MessageId) -> Vec<u8> {
    let mut key = vec![OUTBOX];
    key.extend_from_slice(&hop.code().to_be_bytes());
    key.extend_from_slice(&message_bytes(id));
    key
}

/// A relay record's key: prefix, when (unix ms), the message.
pub(crate) fn relayed_key(at_ms: u64, id: MessageId) -> Vec<u8> {
    let mut key = vec![RELAYED];
    key.extend_from_slice(&at_ms.to_be_bytes());
    key.extend_from_slice(&message_bytes(id));
    key
}

pub(crate) fn seen_key(id: MessageId) -> Vec<u8> {
    let mut key = vec![SEEN];
    key.extend_from_slice(&message_bytes(id));
    key
}

pub(crate) fn application_key(id: &str) -> Vec<u8> {
    let mut key = vec![APPLICATION];
    key.extend_from_slice(id.as_bytes());
    key
}

pub(crate) fn grant_key(id: &str) -> Vec<u8> {
    let mut key = vec![GRANT];
    key.extend_from_slice(id.as_bytes());
    key
}

pub(crate) fn account_key(username: &str) -> Vec<u8> {
    let mut key = vec![ACCOUNT];
    key.extend_from_slice(username.as_bytes());
    key
}

pub(crate) fn token_key(id: &str) -> Vec<u8> {
    let mut key = vec![TOKEN];
    key.extend_from_slice(id.as_bytes());
    key
}

/// The key of audit record `seq` (public so that a test can tamper with it on disk).
pub fn audit_key(seq: u64) -> [u8; AUDIT_KEY_LEN] {
    let mut key = [AUDIT; AUDIT_KEY_LEN];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The big-endian seq at the end of a key of `len` bytes.
pub(crate) fn seq_of(key: &[u8], len: usize) -> Result<u64, StoreError> {
    key.get(len - 8..len)
        .filter(|_| key.len() == len)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt { key: crate::hex(key), reason: "malformed key".into() })
}

/// The origin in a catalog or organization key, read at `at`.
pub(crate) fn origin_at(key: &[u8], at: usize) -> Result<NodeId, StoreError> {
    key.get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .and_then(|b| NodeId::new(u32::from_be_bytes(b)).ok())
        .ok_or_else(|| StoreError::Corrupt { key: crate::hex(key), reason: "bad origin in key".into() })
}
