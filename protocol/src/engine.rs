//! The sync engine: a pure state machine. The runtime (or the simulator) feeds it
//! events and the current time; it answers with actions. It never touches a socket,
//! a clock or a disk.

use crate::delta::{Delta, DeltaBody, DeltaError, Hash, Revocation, GENESIS_HASH, MAX_BODY_BYTES};
use crate::ids::{LogId, NodeId, Scope, Tier, NATIONAL};
use crate::membership::{Member, MembershipVerifier};
use crate::message::{Frame, VersionVector, MAX_BATCH_BYTES, MAX_BATCH_DELTAS};
use ed25519_dalek::SigningKey;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

/// Most logs a Hello may name: one federation and one province log per node of the
/// largest federation (365 nodes) fits many times over.
pub const MAX_HELLO_LOGS: usize = 16_384;

/// Most gaps remembered per neighbour: bounds what junk deltas naming made-up logs
/// can make us keep (and ask for).
pub const MAX_ASKED_PER_PEER: usize = 4_096;

/// `Need` requests served per neighbour per second: each may stream a whole log,
/// so a neighbour repeating them cannot make us resend without end.
pub const NEEDS_PER_SECOND: u32 = 64;

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

/// Something the driver must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Make these accepted deltas durable, in order, before any later `Send` is
    /// executed or any publish acknowledged.
    Persist(Vec<Delta>),
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
    /// Drop the connection to a neighbour (e.g. it was revoked).
    Disconnect {
        /// The neighbour.
        peer: NodeId,
        /// Why.
        reason: String,
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

/// Why a delta was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    /// The signature does not verify against the origin's certified key.
    BadSignature,
    /// `prev` does not match the hash of the delta before it.
    BrokenChain,
    /// The Join's certificate names another node, or the key changed.
    WrongOrigin(String),
    /// The Join's certificate chain does not lead to the federation root.
    NotMember(String),
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
    /// A short stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            RejectReason::BadSignature => "bad_signature",
            RejectReason::BrokenChain => "broken_chain",
            RejectReason::WrongOrigin(_) => "wrong_origin",
            RejectReason::NotMember(_) => "not_member",
            RejectReason::Revoked => "revoked",
            RejectReason::OutOfScope => "out_of_scope",
            RejectReason::Fork => "fork",
            RejectReason::Invalid(_) => "invalid",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::WrongOrigin(s) => write!(f, "wrong origin: {s}"),
            RejectReason::NotMember(s) => write!(f, "not a member: {s}"),
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
    Identity(String),
    /// A delta could not be built.
    #[error(transparent)]
    Delta(#[from] DeltaError),
    /// A delta this node built would be rejected by everyone; nothing was changed.
    #[error("refused to originate: {0}")]
    Refused(RejectReason),
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

/// Per scope, the last seq of a revoked node's log that stays valid.
#[derive(Clone, Copy, Debug)]
struct Cutoffs {
    federation: u64,
    province: u64,
}

impl Cutoffs {
    fn of(&self, scope: Scope) -> u64 {
        match scope {
            Scope::Federation => self.federation,
            Scope::Province => self.province,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Head {
    seq: u64,
    hash: Hash,
}

#[derive(Debug, Default)]
struct PeerState {
    /// Set once the peer's Hello arrived: only then is anything pushed to it.
    greeted: bool,
    /// What we believe the peer holds.
    vv: HashMap<LogId, u64>,
    /// Gaps already asked for, so a broken relay cannot make us ask in a loop.
    asked: HashMap<LogId, u64>,
    /// The second (of `now`) the Need budget belongs to, and what is left of it.
    need_window: (u64, u32),
}

/// Outcome of checking one incoming delta.
enum Check {
    /// Valid and next in its log: what admitting it changes, and its chain hash.
    Accept(Verified, Hash),
    /// Already held.
    Duplicate,
    /// Comes after a missing delta.
    Gap,
}

/// The time a delta is checked at.
#[derive(Clone, Copy, Debug)]
enum Clock {
    /// Now (unix seconds): certificates must be valid, revocations apply.
    At(u64),
    /// Re-reading the store: the delta was valid when admitted.
    Restoring,
}

/// The parts of a verified delta that change engine state.
enum Verified {
    Join(Member),
    Revoke(Revocation),
    Organization(String),
    Other,
}

/// The sync engine of one node.
pub struct Engine {
    me: Member,
    key: SigningKey,
    chain: Vec<Vec<u8>>,
    verifier: Box<dyn MembershipVerifier>,
    heads: BTreeMap<LogId, Head>,
    members: HashMap<NodeId, Member>,
    /// Revoked nodes: per scope, the last seq that stays valid.
    revoked: HashMap<NodeId, Cutoffs>,
    peers: BTreeMap<NodeId, PeerState>,
    signature_cache: Option<Arc<SignatureCache>>,
    skip_signatures: bool,
    /// Organization registrations: (credit code, registering node). Registrations
    /// never conflict at the protocol level (arrival order differs between nodes,
    /// so "first wins" would split the federation); a node may only publish for
    /// organizations it registered itself, earlier in its own logs.
    organizations: HashSet<(String, NodeId)>,
}

/// Signatures already found valid, shared by the engines of one simulation so that
/// a delta relayed to 365 nodes is verified once. Keyed by the delta's chain hash
/// (which covers its bytes and signature) and the key: a pure function's memo.
#[derive(Debug, Default)]
pub struct SignatureCache {
    valid: Mutex<HashSet<Hash>>,
}

impl SignatureCache {
    fn key(hash: &Hash, key: &ed25519_dalek::VerifyingKey) -> Hash {
        let mut h = blake3::Hasher::new();
        h.update(hash);
        h.update(key.as_bytes());
        *h.finalize().as_bytes()
    }
}

impl Engine {
    /// A fresh engine for the node whose key and certificate chain are given.
    pub fn new(
        key: SigningKey,
        chain: Vec<Vec<u8>>,
        verifier: Box<dyn MembershipVerifier>,
        now: u64,
    ) -> Result<Self, EngineError> {
        let me = verifier.verify_chain(&chain, Some(now)).map_err(EngineError::Identity)?;
        if me.key != key.verifying_key() {
            return Err(EngineError::Identity("certificate key is not the signing key".into()));
        }
        let mut members = HashMap::new();
        members.insert(me.id, me.clone());
        Ok(Engine {
            me,
            key,
            chain,
            verifier,
            heads: BTreeMap::new(),
            members,
            revoked: HashMap::new(),
            peers: BTreeMap::new(),
            signature_cache: None,
            skip_signatures: false,
            organizations: HashSet::new(),
        })
    }

    /// Shares a cache of verified signatures (simulations of many nodes in one process).
    pub fn set_signature_cache(&mut self, cache: Arc<SignatureCache>) {
        self.signature_cache = Some(cache);
    }

    /// Deliberately breaks this engine: signatures are no longer checked. Exists only
    /// so the simulator can prove its invariant checker catches a broken engine; a
    /// node never calls it.
    #[doc(hidden)]
    pub fn testing_skip_signature_checks(&mut self) {
        self.skip_signatures = true;
    }

    fn verify_signature(
        &self,
        delta: &Delta,
        key: &ed25519_dalek::VerifyingKey,
        hash: &Hash,
    ) -> Result<(), RejectReason> {
        if self.skip_signatures {
            return Ok(());
        }
        let Some(cache) = &self.signature_cache else {
            return delta.verify(key).map_err(|_| RejectReason::BadSignature);
        };
        let memo = SignatureCache::key(hash, key);
        if cache.valid.lock().is_ok_and(|set| set.contains(&memo)) {
            return Ok(());
        }
        delta.verify(key).map_err(|_| RejectReason::BadSignature)?;
        if let Ok(mut set) = cache.valid.lock() {
            set.insert(memo);
        }
        Ok(())
    }

    /// This node's verified identity.
    pub fn me(&self) -> &Member {
        &self.me
    }

    /// Re-admits the stored logs after a restart: each log's deltas are fed in order
    /// through verification (signatures, chains, certificates), so a corrupted store
    /// is detected, not trusted. Deltas were valid when admitted: a later revocation
    /// or certificate expiry does not make them unreadable.
    /// `deltas` yields every stored delta in log order.
    pub fn restore<I>(&mut self, deltas: I) -> Result<(), EngineError>
    where
        I: IntoIterator<Item = Delta>,
    {
        for delta in deltas {
            let (log, seq) = (delta.log, delta.seq);
            match self.check(Clock::Restoring, &delta) {
                Ok(Check::Accept(verified, hash)) => {
                    self.admit(&delta, verified, hash);
                }
                Ok(Check::Duplicate | Check::Gap) => {
                    return Err(EngineError::CorruptStore { log, seq, reason: RejectReason::BrokenChain })
                }
                Err(reason) => return Err(EngineError::CorruptStore { log, seq, reason }),
            }
        }
        Ok(())
    }

    /// The version vector of every log held.
    pub fn version_vector(&self) -> VersionVector {
        self.heads.iter().map(|(log, h)| (*log, h.seq)).collect()
    }

    /// The head seq of one log (0 when nothing is held).
    pub fn head(&self, log: LogId) -> u64 {
        self.heads.get(&log).map_or(0, |h| h.seq)
    }

    /// A member by id, if its Join has been seen.
    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.members.get(&id)
    }

    /// Whether `node` is revoked by a valid revocation.
    pub fn is_revoked(&self, node: NodeId) -> bool {
        self.revoked.contains_key(&node)
    }

    /// Whether `node` has registered the organization `credit_code`.
    pub fn is_registered_at(&self, credit_code: &str, node: NodeId) -> bool {
        self.organizations.contains(&(credit_code.to_string(), node))
    }

    /// Every member whose Join has been seen (this node included).
    pub fn members(&self) -> impl Iterator<Item = &Member> + '_ {
        self.members.values()
    }

    /// Every node revoked by a valid revocation.
    pub fn revoked(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.revoked.keys().copied()
    }

    /// How many deltas this node holds that `peer` may hold but, as far as this node
    /// knows, lacks (0 before the peer's Hello).
    pub fn peer_lag(&self, peer: NodeId) -> u64 {
        let Some(state) = self.peers.get(&peer) else { return 0 };
        if !state.greeted {
            return 0;
        }
        self.heads
            .iter()
            .filter(|(log, _)| log.visible_at(peer))
            .map(|(log, head)| head.seq.saturating_sub(state.vv.get(log).copied().unwrap_or(0)))
            .sum()
    }

    /// The neighbours currently up, and whether their Hello arrived.
    pub fn peers(&self) -> impl Iterator<Item = (NodeId, bool)> + '_ {
        self.peers.iter().map(|(id, p)| (*id, p.greeted))
    }

    /// Makes sure this node's federation log starts with its Join.
    pub fn join(&mut self, now: u64) -> Result<Vec<Action>, EngineError> {
        let mut actions = Vec::new();
        self.ensure_joined(now, Scope::Federation, &mut actions)?;
        Ok(actions)
    }

    /// Creates, signs and admits a new delta of this node. The actions appended to
    /// `actions` persist it (and a Join first, if the log is new) and push it to
    /// neighbours; they must be executed even when an error is returned, since a
    /// new log's Join may have been admitted before the delta was refused.
    pub fn originate(
        &mut self,
        now: u64,
        scope: Scope,
        body: &DeltaBody,
        actions: &mut Vec<Action>,
    ) -> Result<Delta, EngineError> {
        if matches!(body, DeltaBody::Join { .. }) {
            return Err(EngineError::Refused(RejectReason::Invalid("Join is automatic".into())));
        }
        // Refuse an oversized body before anything changes.
        let size = crate::codec::encode(body).map_err(DeltaError::from)?.len();
        if size > MAX_BODY_BYTES {
            return Err(EngineError::Refused(RejectReason::Invalid(format!(
                "delta body of {size} bytes exceeds {MAX_BODY_BYTES}"
            ))));
        }
        self.ensure_joined(now, scope, actions)?;
        let delta = self.sign_next(scope, body)?;
        self.admit_own(now, &delta, actions)?;
        Ok(delta)
    }

    /// Revokes `node`: originates a revocation whose cutoff is what this node holds
    /// of the revoked node's logs right now (see `originate` for `actions`).
    pub fn revoke(
        &mut self,
        now: u64,
        node: NodeId,
        reason: String,
        actions: &mut Vec<Action>,
    ) -> Result<Delta, EngineError> {
        let cutoff = [Scope::Federation, Scope::Province]
            .into_iter()
            .filter_map(|scope| {
                let head = self.head(LogId { origin: node, scope });
                (head > 0).then_some((scope, head))
            })
            .collect();
        self.originate(
            now,
            Scope::Federation,
            &DeltaBody::Revoke(Revocation { node, cutoff, reason }),
            actions,
        )
    }

    /// Handles one event.
    pub fn handle(&mut self, now: u64, event: Event) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::PeerUp { peer } => {
                self.peers.insert(peer, PeerState::default());
                let vv = self
                    .heads
                    .iter()
                    .filter(|(log, _)| log.visible_at(peer))
                    .map(|(log, h)| (*log, h.seq))
                    .collect();
                actions.push(Action::Send { peer, frame: Frame::Hello { vv } });
            }
            Event::PeerDown { peer } => {
                self.peers.remove(&peer);
            }
            Event::Frame { peer, frame } => {
                if !self.peers.contains_key(&peer) {
                    return actions;
                }
                match frame {
                    Frame::Hello { vv } => self.on_hello(peer, vv, &mut actions),
                    Frame::Deltas(deltas) => self.on_deltas(now, peer, deltas, &mut actions),
                    Frame::Need { log, from } => self.on_need(now, peer, log, from, &mut actions),
                }
            }
        }
        actions
    }

    fn on_hello(&mut self, peer: NodeId, vv: VersionVector, actions: &mut Vec<Action>) {
        if vv.len() > MAX_HELLO_LOGS {
            actions.push(Action::Disconnect { peer, reason: "hello names too many logs".into() });
            return;
        }
        if self.peers.get(&peer).is_some_and(|p| p.greeted) {
            actions.push(Action::Disconnect { peer, reason: "second Hello on one link".into() });
            return;
        }
        let theirs: HashMap<LogId, u64> = vv.into_iter().collect();
        let mut state = PeerState { greeted: true, vv: theirs.clone(), ..PeerState::default() };
        for (log, head) in &self.heads {
            if !log.visible_at(peer) {
                continue;
            }
            let have = theirs.get(log).copied().unwrap_or(0);
            if head.seq > have {
                actions.push(Action::SendRange { peer, log: *log, from: have + 1, to: head.seq });
                state.vv.insert(*log, head.seq);
            }
        }
        self.peers.insert(peer, state);
    }

    fn on_need(&mut self, now: u64, peer: NodeId, log: LogId, from: u64, actions: &mut Vec<Action>) {
        let head = self.head(log);
        if from == 0 || from > head || !log.visible_at(peer) {
            return;
        }
        let Some(state) = self.peers.get_mut(&peer) else { return };
        if state.need_window.0 != now {
            state.need_window = (now, NEEDS_PER_SECOND);
        }
        if state.need_window.1 == 0 {
            return;
        }
        state.need_window.1 -= 1;
        state.vv.insert(log, head);
        actions.push(Action::SendRange { peer, log, from, to: head });
    }

    fn on_deltas(&mut self, now: u64, peer: NodeId, deltas: Vec<Delta>, actions: &mut Vec<Action>) {
        if deltas.len() > MAX_BATCH_DELTAS {
            actions.push(Action::Disconnect { peer, reason: "batch too large".into() });
            return;
        }
        let mut accepted = Vec::new();
        for delta in deltas {
            match self.check(Clock::At(now), &delta) {
                Ok(Check::Accept(verified, hash)) => {
                    actions.extend(self.admit(&delta, verified, hash));
                    if let Some(state) = self.peers.get_mut(&peer) {
                        state.vv.insert(delta.log, delta.seq);
                    }
                    accepted.push(delta);
                }
                Ok(Check::Duplicate) => {}
                Ok(Check::Gap) => {
                    let from = self.head(delta.log) + 1;
                    if let Some(state) = self.peers.get_mut(&peer) {
                        let known = state.asked.contains_key(&delta.log);
                        if state.asked.get(&delta.log) != Some(&from)
                            && (known || state.asked.len() < MAX_ASKED_PER_PEER)
                        {
                            state.asked.insert(delta.log, from);
                            actions.push(Action::Send { peer, frame: Frame::Need { log: delta.log, from } });
                        }
                    }
                }
                Err(reason) => {
                    actions.push(Action::Reject(Rejection { peer, log: delta.log, seq: delta.seq, reason }))
                }
            }
        }
        if !accepted.is_empty() {
            self.after_admit(&accepted, Some(peer), actions);
            actions.insert(0, Action::Persist(accepted));
        }
    }

    fn ensure_joined(
        &mut self,
        now: u64,
        scope: Scope,
        actions: &mut Vec<Action>,
    ) -> Result<(), EngineError> {
        let log = LogId { origin: self.me.id, scope };
        if self.heads.contains_key(&log) {
            return Ok(());
        }
        let join = self.sign_next(scope, &DeltaBody::Join { chain: self.chain.clone() })?;
        self.admit_own(now, &join, actions)
    }

    fn sign_next(&self, scope: Scope, body: &DeltaBody) -> Result<Delta, EngineError> {
        let log = LogId { origin: self.me.id, scope };
        let head = self.heads.get(&log).copied().unwrap_or(Head { seq: 0, hash: GENESIS_HASH });
        Ok(Delta::sign(&self.key, log, head.seq + 1, head.hash, body)?)
    }

    fn admit_own(&mut self, now: u64, delta: &Delta, actions: &mut Vec<Action>) -> Result<(), EngineError> {
        let (verified, hash) = match self.check(Clock::At(now), delta) {
            Ok(Check::Accept(verified, hash)) => (verified, hash),
            Ok(_) => return Err(EngineError::Refused(RejectReason::BrokenChain)),
            Err(reason) => return Err(EngineError::Refused(reason)),
        };
        actions.push(Action::Persist(vec![delta.clone()]));
        actions.extend(self.admit(delta, verified, hash));
        self.after_admit(std::slice::from_ref(delta), None, actions);
        Ok(())
    }

    /// Pushes newly admitted deltas to every greeted neighbour that may hold them,
    /// except the one they came from.
    fn after_admit(&mut self, deltas: &[Delta], from: Option<NodeId>, actions: &mut Vec<Action>) {
        for (peer, state) in self.peers.iter_mut() {
            if Some(*peer) == from || !state.greeted {
                continue;
            }
            let mut batch: Vec<Delta> = Vec::new();
            let mut bytes = 0;
            for delta in deltas {
                if !delta.log.visible_at(*peer) {
                    continue;
                }
                let have = state.vv.get(&delta.log).copied().unwrap_or(0);
                if have >= delta.seq {
                    continue;
                }
                if have + 1 < delta.seq {
                    flush(*peer, &mut batch, &mut bytes, actions);
                    actions.push(Action::SendRange {
                        peer: *peer,
                        log: delta.log,
                        from: have + 1,
                        to: delta.seq,
                    });
                } else {
                    let size = delta.body.len() + 128;
                    if batch.len() == MAX_BATCH_DELTAS || bytes + size > MAX_BATCH_BYTES {
                        flush(*peer, &mut batch, &mut bytes, actions);
                    }
                    bytes += size;
                    batch.push(delta.clone());
                }
                state.vv.insert(delta.log, delta.seq);
            }
            flush(*peer, &mut batch, &mut bytes, actions);
        }
    }

    /// Checks a delta against the current state without changing it.
    fn check(&self, clock: Clock, delta: &Delta) -> Result<Check, RejectReason> {
        let log = delta.log;
        if delta.body.len() > MAX_BODY_BYTES {
            return Err(RejectReason::Invalid("body too large".into()));
        }
        if !log.visible_at(self.me.id) {
            return Err(RejectReason::OutOfScope);
        }
        let head = self.heads.get(&log).copied().unwrap_or(Head { seq: 0, hash: GENESIS_HASH });
        if delta.seq == head.seq && delta.hash() != head.hash {
            // Same position, different content: a fork if the origin really signed it.
            let member = self.members.get(&log.origin).ok_or(RejectReason::BrokenChain)?;
            self.verify_signature(delta, &member.key, &delta.hash())?;
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
        // The signature is checked before the body is even parsed, except for a Join,
        // whose body carries the key.
        let mut joined = None;
        let body = if delta.seq == 1 {
            let body = delta.decode_body().map_err(|e| RejectReason::Invalid(e.to_string()))?;
            let DeltaBody::Join { chain } = &body else {
                return Err(RejectReason::Invalid("a log must start with a Join".into()));
            };
            if chain.len() > crate::delta::MAX_CHAIN_CERTS {
                return Err(RejectReason::Invalid("certificate chain too long".into()));
            }
            let now = match clock {
                Clock::At(now) => Some(now),
                Clock::Restoring => None,
            };
            let member = self.verifier.verify_chain(chain, now).map_err(RejectReason::NotMember)?;
            if member.id != log.origin {
                return Err(RejectReason::WrongOrigin(format!(
                    "certificate names {} but the log is {}'s",
                    member.id, log.origin
                )));
            }
            if let Some(known) = self.members.get(&member.id) {
                if known.key != member.key {
                    return Err(RejectReason::WrongOrigin("key differs from the known one".into()));
                }
            }
            self.verify_signature(delta, &member.key, &hash)?;
            joined = Some(member);
            body
        } else {
            // Every log starts with a Join, so a known head implies a known member.
            let member = self
                .members
                .get(&log.origin)
                .ok_or_else(|| RejectReason::NotMember("origin never joined".into()))?;
            self.verify_signature(delta, &member.key, &hash)?;
            delta.decode_body().map_err(|e| RejectReason::Invalid(e.to_string()))?
        };
        if let (Clock::At(_), Some(cutoffs)) = (clock, self.revoked.get(&log.origin)) {
            if delta.seq > cutoffs.of(log.scope) {
                return Err(RejectReason::Revoked);
            }
        }
        let verified = match body {
            DeltaBody::Join { .. } => match joined {
                Some(member) => Verified::Join(member),
                None => return Err(RejectReason::Invalid("Join after the start of a log".into())),
            },
            DeltaBody::Catalog(entry) => {
                entry.validate().map_err(|e| RejectReason::Invalid(e.to_string()))?;
                if !self.is_registered_at(&entry.provider, log.origin) {
                    return Err(RejectReason::Invalid(format!(
                        "provider {} is not an organization registered at {}",
                        entry.provider, log.origin
                    )));
                }
                Verified::Other
            }
            DeltaBody::Revoke(rev) => {
                check_revocation_authority(log.origin, self.members.get(&log.origin), &rev)?;
                Verified::Revoke(rev)
            }
            DeltaBody::Organization(org) => {
                org.validate().map_err(|e| RejectReason::Invalid(e.to_string()))?;
                if !crate::division::in_subtree(log.origin, org.division) {
                    return Err(RejectReason::Invalid(format!(
                        "{} registers an organization of division {}, outside its subtree",
                        log.origin, org.division
                    )));
                }
                let issued_in = org.issuing_division().map_err(RejectReason::Invalid)?;
                if !crate::division::in_subtree(log.origin, issued_in) {
                    return Err(RejectReason::Invalid(format!(
                        "{} registers credit code {} issued in {issued_in}, outside its subtree",
                        log.origin, org.credit_code
                    )));
                }
                Verified::Organization(org.credit_code)
            }
        };
        Ok(Check::Accept(verified, hash))
    }

    /// Applies an accepted delta to the in-memory state; returns a disconnect when it
    /// revokes a connected neighbour.
    fn admit(&mut self, delta: &Delta, verified: Verified, hash: Hash) -> Option<Action> {
        self.heads.insert(delta.log, Head { seq: delta.seq, hash });
        match verified {
            Verified::Join(member) => {
                self.members.insert(member.id, member);
                None
            }
            Verified::Revoke(rev) => {
                let node = rev.node;
                let reason = format!("revoked by {}: {}", delta.log.origin, rev.reason);
                // A scope the revoker could not see is cut where this node stands now.
                let cut =
                    |scope| rev.cutoff_for(scope).unwrap_or_else(|| self.head(LogId { origin: node, scope }));
                let new = Cutoffs { federation: cut(Scope::Federation), province: cut(Scope::Province) };
                let cutoffs = self.revoked.entry(node).or_insert(new);
                cutoffs.federation = cutoffs.federation.min(new.federation);
                cutoffs.province = cutoffs.province.min(new.province);
                self.peers.contains_key(&node).then_some(Action::Disconnect { peer: node, reason })
            }
            Verified::Organization(code) => {
                self.organizations.insert((code, delta.log.origin));
                None
            }
            Verified::Other => None,
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
    if rev.cutoff.len() > 2 || rev.reason.len() > 1000 {
        return Err(RejectReason::Invalid("malformed revocation".into()));
    }
    let is_parent = member.is_some_and(|m| m.tier == Tier::Provincial)
        && rev.node.province() == Some(revoker)
        && rev.node != revoker;
    if revoker == NATIONAL || is_parent {
        Ok(())
    } else {
        Err(RejectReason::Invalid(format!("{revoker} may not revoke {}", rev.node)))
    }
}

fn flush(peer: NodeId, batch: &mut Vec<Delta>, bytes: &mut usize, actions: &mut Vec<Action>) {
    if !batch.is_empty() {
        actions.push(Action::Send { peer, frame: Frame::Deltas(std::mem::take(batch)) });
    }
    *bytes = 0;
}
