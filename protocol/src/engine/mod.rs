//! The sync engine: a pure state machine. The node core (in the runtime or the
//! simulator) feeds it events and the current time; it answers with actions. It
//! never touches a socket, a clock or a disk.

mod check;
mod types;

pub use types::{Action, Admitted, EngineError, Event, RejectReason, Rejection};

use crate::delta::{AuditCheckpoint, Delta, DeltaBody, DeltaError, Hash, Revocation, GENESIS_HASH};
use crate::fault::{Misbehaviour, PeerError};
use crate::ids::{LogId, NodeId, Scope};
use crate::limits::{
    MAX_ASKED_PER_PEER, MAX_BATCH_DELTAS, MAX_HELLO_LOGS, MAX_RUN_BYTES, MAX_RUN_DELTAS, NEEDS_PER_SECOND,
};
use crate::membership::{Member, MembershipVerifier};
use crate::message::{Batcher, Frame, VersionVector};
use crate::signature::{self, BatchSecret};
use check::{Accepted, Check, Clock};
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Fewest signatures in a frame worth a batch: a lone live delta is verified on
/// its own (a batch of one costs about what a single check does).
const MIN_BATCH_SIGNATURES: usize = 4;

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

/// The sync engine of one node.
pub struct Engine {
    me: Member,
    key: SigningKey,
    chain: Vec<Vec<u8>>,
    verifier: Box<dyn MembershipVerifier>,
    heads: BTreeMap<LogId, Head>,
    /// Members by id, with the key they sign with now.
    members: HashMap<NodeId, Member>,
    /// The key each log is signed with now: its Join's, or its last hand-over's
    /// (shared with `known_keys`: a decompressed key is ~200 bytes, and a node
    /// knows two logs of most members).
    log_keys: HashMap<LogId, Arc<VerifyingKey>>,
    /// Every key each member held (a log catching up may start with an old one).
    known_keys: HashMap<NodeId, Vec<Arc<VerifyingKey>>>,
    /// Revoked nodes: per scope, the last seq that stays valid.
    revoked: HashMap<NodeId, Cutoffs>,
    peers: BTreeMap<NodeId, PeerState>,
    signature_cache: Option<Arc<SignatureCache>>,
    skip_signatures: bool,
    /// Draws the coefficients of batch verification (see `crate::signature`).
    batch_secret: BatchSecret,
    /// Threads a frame's signatures are verified on.
    verify_threads: usize,
    /// Signatures of the frame being handled that its batch found valid, keyed as
    /// `SignatureCache` keys them; empty between frames.
    batch_verified: HashSet<Hash>,
    /// Organization registrations: (credit code, registering node). Registrations
    /// never conflict at the protocol level (arrival order differs between nodes,
    /// so "first wins" would split the federation); a node may only publish for
    /// organizations it registered itself, earlier in its own logs.
    organizations: HashMap<String, BTreeSet<NodeId>>,
    /// This node's deltas since the last `seal`, in order: persisted and pushed
    /// once the last of each log is signed.
    own_pending: Vec<Admitted>,
    /// Per own log, the unsigned deltas since its last signed one (count, bytes).
    runs: HashMap<Scope, (usize, usize)>,
    /// Per own log, the highest seq a neighbour said it holds (its Hello): this
    /// node never originates below it, or it would sign a second delta at a
    /// position its neighbours hold another one at (a fork, after a power loss
    /// took its last writes).
    own_announced: HashMap<Scope, u64>,
    /// Set by the node core while it waits to hear its own heads from a
    /// neighbour: nothing is originated meanwhile.
    recovering: bool,
    /// Each member's latest audit checkpoint: a later one may only go forward.
    checkpoints: HashMap<NodeId, AuditCheckpoint>,
}

/// Signatures already found valid, shared by the engines of one simulation so that
/// a delta relayed to 365 nodes is verified once. Keyed by the delta's chain hash
/// (its content), its signature and the key: a pure function's memo.
#[derive(Debug, Default)]
pub struct SignatureCache {
    valid: Mutex<HashSet<Hash>>,
}

impl SignatureCache {
    fn key(hash: &Hash, signature: &[u8], key: &ed25519_dalek::VerifyingKey) -> Hash {
        let mut h = blake3::Hasher::new();
        h.update(hash);
        h.update(signature);
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
            return Err(EngineError::Identity(crate::membership::CertificateError::Identity(
                "certificate key is not the signing key".into(),
            )));
        }
        // This node becomes a member of its own view when its logs are restored or
        // its Join is made: its logs may still be signed with a previous key.
        let batch_secret = BatchSecret::from_signing_key(&key);
        Ok(Engine {
            me,
            key,
            chain,
            verifier,
            heads: BTreeMap::new(),
            members: HashMap::new(),
            log_keys: HashMap::new(),
            known_keys: HashMap::new(),
            revoked: HashMap::new(),
            peers: BTreeMap::new(),
            signature_cache: None,
            skip_signatures: false,
            batch_secret,
            verify_threads: signature::available_threads(),
            batch_verified: HashSet::new(),
            organizations: HashMap::new(),
            own_pending: Vec::new(),
            runs: HashMap::new(),
            own_announced: HashMap::new(),
            recovering: false,
            checkpoints: HashMap::new(),
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
        if !self.batch_verified.is_empty()
            && self.batch_verified.contains(&SignatureCache::key(hash, &delta.signature, key))
        {
            return Ok(());
        }
        let Some(cache) = &self.signature_cache else {
            return delta.verify(key).map_err(|_| RejectReason::BadSignature);
        };
        let memo = SignatureCache::key(hash, &delta.signature, key);
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
    /// or certificate expiry does not make them unreadable. `deltas` yields every
    /// stored delta in log order; `seen` is shown each one with its decoded body.
    pub fn restore<I>(
        &mut self,
        deltas: I,
        mut seen: impl FnMut(&Delta, &DeltaBody),
    ) -> Result<(), EngineError>
    where
        I: IntoIterator<Item = Delta>,
    {
        let mut run: Vec<Arc<Delta>> = Vec::new();
        let mut run_bytes = 0;
        // Read in windows of a frame's size, whose signatures are verified as one
        // batch first (see `verify_batch`).
        let mut deltas = deltas.into_iter().map(Arc::new);
        let mut window = Vec::with_capacity(MAX_BATCH_DELTAS);
        loop {
            window.extend(deltas.by_ref().take(MAX_BATCH_DELTAS));
            if window.is_empty() {
                break;
            }
            self.verify_batch(&window);
            for delta in window.drain(..) {
                let corrupt =
                    |d: &Delta, reason| EngineError::CorruptStore { log: d.log, seq: d.seq, reason };
                if !delta.is_signed() {
                    run_bytes += delta.encoded_len();
                    let foreign = run.first().is_some_and(|first| first.log != delta.log);
                    run.push(delta);
                    if foreign || run.len() > MAX_RUN_DELTAS || run_bytes > MAX_RUN_BYTES {
                        return Err(corrupt(&run[run.len() - 1], RejectReason::BadSignature));
                    }
                    continue;
                }
                run_bytes = 0;
                let authenticated = !run.is_empty();
                if authenticated {
                    run.push(delta.clone());
                    self.verify_run(&run).map_err(|reason| corrupt(&delta, reason))?;
                }
                for d in run.drain(..).chain((!authenticated).then_some(delta)) {
                    match self.check(Clock::Restoring, &d, authenticated) {
                        Ok(Check::Accept(accepted)) => {
                            seen(&d, &accepted.body);
                            self.admit(&d, accepted.hash, accepted.joined, &accepted.body, &mut Vec::new());
                        }
                        Ok(Check::Duplicate | Check::Gap) => {
                            return Err(corrupt(&d, RejectReason::BrokenChain))
                        }
                        Err(reason) => return Err(corrupt(&d, reason)),
                    }
                }
            }
        }
        self.batch_verified.clear();
        match run.first() {
            Some(d) => {
                Err(EngineError::CorruptStore { log: d.log, seq: d.seq, reason: RejectReason::BadSignature })
            }
            None => Ok(()),
        }
    }

    /// Verifies a run of unsigned deltas closed by a signed one of the same log
    /// (the origin must be a known member).
    fn verify_run(&self, run: &[Arc<Delta>]) -> Result<(), RejectReason> {
        let log = run.first().map(|d| d.log).ok_or(RejectReason::BadSignature)?;
        let key = self.log_keys.get(&log).ok_or_else(|| RejectReason::Invalid("log never joined".into()))?;
        crate::delta::verify_run(run, |last| {
            self.verify_signature(last, key, &last.hash()).map_err(|_| crate::DeltaError::BadSignature)
        })
        .map_err(|_| RejectReason::BadSignature)
    }

    /// The version vector of every log held.
    pub fn version_vector(&self) -> VersionVector {
        self.heads.iter().map(|(log, h)| (*log, h.seq)).collect()
    }

    /// The seq this node's next delta in `scope` will have (a new log begins
    /// with its Join, so its first other delta is 2).
    pub fn next_seq(&self, scope: Scope) -> u64 {
        match self.head(LogId { origin: self.me.id, scope }) {
            0 => 2,
            head => head + 1,
        }
    }

    /// The head seq of one log (0 when nothing is held).
    pub fn head(&self, log: LogId) -> u64 {
        self.heads.get(&log).map_or(0, |h| h.seq)
    }

    /// A member by id, if its Join has been seen.
    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.members.get(&id)
    }

    /// Every key `node` signed with as far as this node knows, newest last (routed
    /// messages and grants signed before a key rotation still verify).
    pub fn keys_of(&self, node: NodeId) -> impl Iterator<Item = &VerifyingKey> + '_ {
        self.known_keys.get(&node).into_iter().flatten().map(|k| &**k)
    }

    /// Whether `node` is revoked by a valid revocation.
    pub fn is_revoked(&self, node: NodeId) -> bool {
        self.revoked.contains_key(&node)
    }

    /// Whether `node` has registered the organization `credit_code`.
    pub fn is_registered_at(&self, credit_code: &str, node: NodeId) -> bool {
        self.organizations.get(credit_code).is_some_and(|nodes| nodes.contains(&node))
    }

    /// The nodes that registered the organization `credit_code`, in id order.
    pub fn registrations(&self, credit_code: &str) -> impl Iterator<Item = NodeId> + '_ {
        self.organizations.get(credit_code).into_iter().flatten().copied()
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

    /// Hands every log of this node still signed with another key over to this
    /// engine's key, with a `Rekey` delta signed by `previous` (persisted by the
    /// next `seal`); returns how many logs were handed over. Call it after
    /// `restore`. Without the previous key, such a log cannot go on: an error
    /// says which key it needs.
    pub fn hand_over(
        &mut self,
        previous: Option<&SigningKey>,
        actions: &mut Vec<Action>,
    ) -> Result<usize, EngineError> {
        let mine = self.key.verifying_key();
        let stale: Vec<(LogId, VerifyingKey)> = self
            .log_keys
            .iter()
            .filter(|(log, key)| log.origin == self.me.id && ***key != mine)
            .map(|(log, key)| (*log, **key))
            .collect();
        for (log, signed_with) in &stale {
            if previous.is_none_or(|p| p.verifying_key() != *signed_with) {
                return Err(EngineError::NeedsPreviousKey {
                    log: *log,
                    signed_with: signed_with.as_bytes().iter().map(|b| format!("{b:02x}")).collect(),
                });
            }
        }
        if !stale.is_empty() {
            self.may_originate()?;
        }
        for (log, _) in &stale {
            let Some(previous) = previous else { continue };
            let body = DeltaBody::Rekey { chain: self.chain.clone() };
            self.check_body(*log, &body).map_err(EngineError::Refused)?;
            let mut delta = Delta::clone(&*self.next_own(log.scope, &body)?);
            // The old key vouches for the new one (and for the run before it).
            delta.seal(previous);
            self.runs.remove(&log.scope);
            self.admit_own(Admitted { delta: Arc::new(delta), body }, actions);
        }
        Ok(stale.len())
    }

    /// Makes sure this node's federation log starts with its Join (persisted by
    /// the next `seal`).
    pub fn join(&mut self, actions: &mut Vec<Action>) -> Result<(), EngineError> {
        self.ensure_joined(Scope::Federation, actions)
    }

    /// Holds back (`true`) or allows (`false`) originating: the node core holds it
    /// back after a restart until a neighbour has told it how far its own logs go.
    pub fn set_recovering(&mut self, recovering: bool) {
        self.recovering = recovering;
    }

    /// Whether originating is held back by `set_recovering`.
    pub fn recovering(&self) -> bool {
        self.recovering
    }

    /// The own logs a neighbour holds more of than this node: (scope, held here,
    /// held there). They come back through ordinary sync; until they have,
    /// nothing is originated (in any log: one group may write both).
    pub fn own_behind(&self) -> Vec<(Scope, u64, u64)> {
        let me = self.me.id;
        let mut behind: Vec<(Scope, u64, u64)> = self
            .own_announced
            .iter()
            .map(|(scope, seq)| (*scope, self.head(LogId { origin: me, scope: *scope }), *seq))
            .filter(|(_, held, there)| there > held)
            .collect();
        behind.sort();
        behind
    }

    /// Refuses to originate while recovering or behind a neighbour's copy.
    fn may_originate(&self) -> Result<(), EngineError> {
        if self.recovering {
            return Err(EngineError::Recovering { behind: None });
        }
        match self.own_behind().first() {
            Some((scope, held, there)) => Err(EngineError::Recovering {
                behind: Some((LogId { origin: self.me.id, scope: *scope }, *held, *there)),
            }),
            None => Ok(()),
        }
    }

    /// Refuses to sign into an own log that is still signed with another key
    /// (its hand-over has not happened yet): every receiver would refuse it.
    fn signs_with_log_keys(&self) -> Result<(), EngineError> {
        let mine = self.key.verifying_key();
        match self.log_keys.iter().find(|(log, key)| log.origin == self.me.id && ***key != mine) {
            Some((log, key)) => Err(EngineError::NeedsPreviousKey {
                log: *log,
                signed_with: key.as_bytes().iter().map(|b| format!("{b:02x}")).collect(),
            }),
            None => Ok(()),
        }
    }

    /// Creates and admits a new delta of this node: the body is encoded once and
    /// never decoded here. The delta (and a Join first, if the log is new) waits
    /// for `seal`, which signs the last delta of each log and persists and pushes
    /// them all; `actions` receives what admitting it causes at once (a
    /// revocation disconnecting a neighbour).
    pub fn originate(
        &mut self,
        scope: Scope,
        body: DeltaBody,
        actions: &mut Vec<Action>,
    ) -> Result<Arc<Delta>, EngineError> {
        if matches!(body, DeltaBody::Join { .. }) {
            return Err(EngineError::Refused(RejectReason::Invalid("Join is automatic".into())));
        }
        self.may_originate()?;
        self.signs_with_log_keys()?;
        let log = LogId { origin: self.me.id, scope };
        // Refuse before anything changes what every receiver would refuse.
        self.check_body(log, &body).map_err(EngineError::Refused)?;
        self.check_not_revoked(Clock::Live, log, self.head(log) + 1).map_err(EngineError::Refused)?;
        self.ensure_joined(scope, actions)?;
        let delta = self.next_own(scope, &body)?;
        self.admit_own(Admitted { delta: delta.clone(), body }, actions);
        Ok(delta)
    }

    /// Closes what this node originated since the last seal: signs the last delta
    /// of each log (which vouches for the unsigned ones before it), then persists
    /// them and pushes them to neighbours. The node core calls it once per group
    /// commit, so one signature serves a whole group.
    pub fn seal(&mut self, actions: &mut Vec<Action>) {
        if self.own_pending.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut self.own_pending);
        let mut last: BTreeMap<LogId, usize> = BTreeMap::new();
        for (i, own) in pending.iter().enumerate() {
            last.insert(own.delta.log, i);
        }
        for i in last.into_values() {
            if !pending[i].delta.is_signed() {
                let mut delta = Delta::clone(&pending[i].delta);
                delta.seal(&self.key);
                pending[i].delta = Arc::new(delta);
            }
        }
        self.runs.clear();
        let deltas: Vec<Arc<Delta>> = pending.iter().map(|own| own.delta.clone()).collect();
        actions.push(Action::Persist(pending));
        self.push_to_peers(&deltas, None, actions);
    }

    /// Revokes `node`: originates a revocation whose cutoff is what this node holds
    /// of the revoked node's logs right now (see `originate` for `actions`).
    pub fn revoke(
        &mut self,
        node: NodeId,
        reason: String,
        actions: &mut Vec<Action>,
    ) -> Result<Arc<Delta>, EngineError> {
        let cutoff = [Scope::Federation, Scope::Province]
            .into_iter()
            .filter_map(|scope| {
                let head = self.head(LogId { origin: node, scope });
                (head > 0).then_some((scope, head))
            })
            .collect();
        self.originate(Scope::Federation, DeltaBody::Revoke(Revocation { node, cutoff, reason }), actions)
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
                    Frame::Deltas(deltas) => self.on_deltas(peer, deltas, &mut actions),
                    Frame::Need { log, from } => self.on_need(now, peer, log, from, &mut actions),
                    // Routed messages are the node core's, not the logs'.
                    Frame::Routed(_) | Frame::RoutedAck(_) => {}
                }
            }
        }
        actions
    }

    fn on_hello(&mut self, peer: NodeId, vv: VersionVector, actions: &mut Vec<Action>) {
        if vv.len() > MAX_HELLO_LOGS {
            let reason = Misbehaviour::HelloTooLarge { logs: vv.len() };
            actions.push(Action::Disconnect { peer, reason: reason.into() });
            return;
        }
        if self.peers.get(&peer).is_some_and(|p| p.greeted) {
            actions.push(Action::Disconnect { peer, reason: Misbehaviour::SecondHello.into() });
            return;
        }
        let theirs: HashMap<LogId, u64> = vv.into_iter().collect();
        for (log, seq) in theirs.iter().filter(|(log, _)| log.origin == self.me.id) {
            let announced = self.own_announced.entry(log.scope).or_default();
            *announced = (*announced).max(*seq);
        }
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

    fn on_deltas(&mut self, peer: NodeId, deltas: Vec<Arc<Delta>>, actions: &mut Vec<Action>) {
        if deltas.len() > MAX_BATCH_DELTAS {
            let reason = Misbehaviour::BatchTooLarge { deltas: deltas.len() };
            actions.push(Action::Disconnect { peer, reason: reason.into() });
            return;
        }
        self.verify_batch(&deltas);
        let mut admitted = Vec::new();
        let mut handled = vec![false; deltas.len()];
        for i in 0..deltas.len() {
            if handled[i] {
                continue;
            }
            let delta = &deltas[i];
            let head = self.head(delta.log);
            // An unsigned delta that could be admitted (or prove a fork) starts a run:
            // admitted whole, once its closing signature verifies, or refused whole.
            if !delta.is_signed() && (delta.seq == head || delta.seq == head + 1) {
                let run = run_at(&deltas, i);
                for k in &run {
                    handled[*k] = true;
                }
                let members: Vec<Arc<Delta>> = run.iter().map(|k| deltas[*k].clone()).collect();
                self.admit_run(peer, members, &mut admitted, actions);
                continue;
            }
            handled[i] = true;
            match self.check(Clock::Live, delta, false) {
                Ok(Check::Accept(Accepted { body, hash, joined })) => {
                    if let Some(disconnect) = self.admit(delta, hash, joined, &body, &mut Vec::new()) {
                        actions.push(disconnect);
                    }
                    self.sent_to(peer, delta);
                    admitted.push(Admitted { delta: delta.clone(), body });
                }
                Ok(Check::Duplicate) => {}
                Ok(Check::Gap) => self.ask(peer, delta.log, actions),
                Err(reason) => {
                    actions.push(Action::Reject(Rejection { peer, log: delta.log, seq: delta.seq, reason }))
                }
            }
        }
        self.batch_verified.clear();
        if !admitted.is_empty() {
            let deltas: Vec<Arc<Delta>> = admitted.iter().map(|a| a.delta.clone()).collect();
            self.push_to_peers(&deltas, Some(peer), actions);
            actions.insert(0, Action::Persist(admitted));
        }
    }

    /// Verifies, as one batch spread over `verify_threads`, the signatures of a
    /// frame's deltas that are new and under a key already known, and notes the
    /// valid ones in `batch_verified` for `verify_signature` (and in the shared
    /// cache, if any). Anything else (a Join's, a fork's, one the batch refused) is
    /// verified one by one later, so this only ever saves work: it decides nothing.
    /// A frame of fewer than `MIN_SIGNATURES_PER_THREAD` signatures per thread
    /// stays on this thread.
    fn verify_batch(&mut self, deltas: &[Arc<Delta>]) {
        self.batch_verified.clear();
        if self.skip_signatures {
            return;
        }
        let cached = |memo: &Hash| {
            self.signature_cache.as_ref().is_some_and(|c| c.valid.lock().is_ok_and(|set| set.contains(memo)))
        };
        // Only what can be admitted from this frame alone: deltas lining up
        // from each log's head (a gap's are never checked, so a peer sending
        // far-ahead deltas costs no signature work).
        let mut next: HashMap<LogId, u64> = HashMap::new();
        let mut keyed = Vec::new();
        for delta in deltas {
            let expected = next.entry(delta.log).or_insert_with(|| self.head(delta.log) + 1);
            if delta.seq != *expected {
                continue;
            }
            *expected += 1;
            if !delta.is_signed() {
                continue;
            }
            if let Some(key) = self.log_keys.get(&delta.log) {
                let memo = SignatureCache::key(&delta.hash(), &delta.signature, key);
                if !cached(&memo) {
                    keyed.push((delta, key.clone(), delta.signing_bytes(), memo));
                }
            }
        }
        if keyed.len() < MIN_BATCH_SIGNATURES {
            return;
        }
        let items: Vec<signature::Item<'_>> = keyed
            .iter()
            .map(|(delta, key, message, _)| signature::Item { key, message, signature: &delta.signature })
            .collect();
        let valid = signature::verify_each(&items, &self.batch_secret, self.verify_threads);
        let found = keyed.iter().zip(valid).filter(|(_, valid)| *valid).map(|((.., memo), _)| *memo);
        self.batch_verified.extend(found);
        if let Some(Ok(mut set)) = self.signature_cache.as_ref().map(|c| c.valid.lock()) {
            set.extend(self.batch_verified.iter().copied());
        }
    }

    /// Notes that `peer` holds `delta` (it sent it).
    fn sent_to(&mut self, peer: NodeId, delta: &Delta) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.vv.insert(delta.log, delta.seq);
        }
    }

    /// Asks `peer` for what is missing of `log`, once per gap.
    fn ask(&mut self, peer: NodeId, log: LogId, actions: &mut Vec<Action>) {
        let from = self.head(log) + 1;
        let Some(state) = self.peers.get_mut(&peer) else { return };
        let known = state.asked.contains_key(&log);
        if state.asked.get(&log) != Some(&from) && (known || state.asked.len() < MAX_ASKED_PER_PEER) {
            state.asked.insert(log, from);
            actions.push(Action::Send { peer, frame: Frame::Need { log, from } });
        }
    }

    /// Admits a run of unsigned deltas and the signed delta closing it, all or
    /// nothing: its chain and closing signature must verify, and then every member
    /// must pass its own checks in order; on the first failure the members already
    /// admitted are taken back and the whole run is refused.
    fn admit_run(
        &mut self,
        peer: NodeId,
        members: Vec<Arc<Delta>>,
        admitted: &mut Vec<Admitted>,
        actions: &mut Vec<Action>,
    ) {
        let refuse = |actions: &mut Vec<Action>, reason: &dyn Fn(&Delta) -> RejectReason| {
            for d in &members {
                actions.push(Action::Reject(Rejection { peer, log: d.log, seq: d.seq, reason: reason(d) }));
            }
        };
        if let Err(reason) = self.verify_run(&members) {
            refuse(actions, &|_| reason.clone());
            return;
        }
        let mut undo = Vec::new();
        let mut taken = Vec::new();
        let mut caused = Vec::new();
        for d in &members {
            let failed = match self.check(Clock::Live, d, true) {
                Ok(Check::Accept(Accepted { body, hash, joined })) => {
                    caused.extend(self.admit(d, hash, joined, &body, &mut undo));
                    taken.push(Admitted { delta: d.clone(), body });
                    continue;
                }
                Ok(Check::Duplicate) => continue,
                Ok(Check::Gap) => RejectReason::BrokenChain,
                Err(reason) => reason,
            };
            self.undo(undo);
            let at = d.seq;
            refuse(actions, &|m| {
                if m.seq == at {
                    failed.clone()
                } else {
                    RejectReason::Invalid(format!("in a run refused at #{at}"))
                }
            });
            return;
        }
        for a in &taken {
            self.sent_to(peer, &a.delta);
        }
        admitted.extend(taken);
        actions.extend(caused);
    }

    /// Takes back admissions, newest first.
    fn undo(&mut self, undo: Vec<Undo>) {
        for step in undo.into_iter().rev() {
            match step {
                Undo::Head(log, None) => {
                    self.heads.remove(&log);
                }
                Undo::Head(log, Some(head)) => {
                    self.heads.insert(log, head);
                }
                Undo::Member(id, None) => {
                    self.members.remove(&id);
                }
                Undo::Member(id, Some(member)) => {
                    self.members.insert(id, member);
                }
                Undo::LogKey(log, None) => {
                    self.log_keys.remove(&log);
                }
                Undo::LogKey(log, Some(key)) => {
                    self.log_keys.insert(log, key);
                }
                Undo::KnownKey(id) => {
                    if let Some(keys) = self.known_keys.get_mut(&id) {
                        keys.pop();
                        if keys.is_empty() {
                            self.known_keys.remove(&id);
                        }
                    }
                }
                Undo::Revoked(node, None) => {
                    self.revoked.remove(&node);
                }
                Undo::Revoked(node, Some(cutoffs)) => {
                    self.revoked.insert(node, cutoffs);
                }
                Undo::Organization(code, origin) => {
                    if let Some(nodes) = self.organizations.get_mut(&code) {
                        nodes.remove(&origin);
                        if nodes.is_empty() {
                            self.organizations.remove(&code);
                        }
                    }
                }
                Undo::Checkpoint(origin, None) => {
                    self.checkpoints.remove(&origin);
                }
                Undo::Checkpoint(origin, Some(previous)) => {
                    self.checkpoints.insert(origin, previous);
                }
            }
        }
    }

    fn ensure_joined(&mut self, scope: Scope, actions: &mut Vec<Action>) -> Result<(), EngineError> {
        let log = LogId { origin: self.me.id, scope };
        if self.heads.contains_key(&log) {
            return Ok(());
        }
        self.may_originate()?;
        let body = DeltaBody::Join { chain: self.chain.clone() };
        let delta = self.next_own(scope, &body)?;
        self.admit_own(Admitted { delta, body }, actions);
        Ok(())
    }

    /// The next delta of an own log: unsigned while its run has room (the group's
    /// seal signs the last one), signed at once when it starts a log (a Join must
    /// carry its own signature) or when the run is full.
    fn next_own(&mut self, scope: Scope, body: &DeltaBody) -> Result<Arc<Delta>, EngineError> {
        let log = LogId { origin: self.me.id, scope };
        let head = self.heads.get(&log).copied().unwrap_or(Head { seq: 0, hash: GENESIS_HASH });
        let mut delta = match Delta::unsigned(log, head.seq + 1, head.hash, body) {
            Ok(delta) => delta,
            Err(DeltaError::Codec(crate::codec::CodecError::TooLarge { len, limit })) => {
                let reason = format!("delta body of {len} bytes exceeds {limit}");
                return Err(EngineError::Refused(RejectReason::Invalid(reason)));
            }
            Err(e) => return Err(e.into()),
        };
        let run = self.runs.entry(scope).or_default();
        let size = delta.encoded_len();
        if delta.seq == 1 || run.0 + 1 > MAX_RUN_DELTAS || run.1 + size > MAX_RUN_BYTES {
            delta.seal(&self.key);
            *run = (0, 0);
        } else {
            *run = (run.0 + 1, run.1 + size);
        }
        Ok(Arc::new(delta))
    }

    /// Admits a delta of this node: it is valid by construction (its body was
    /// checked before it was made), so nothing is checked again. It waits for
    /// `seal` to be persisted and pushed.
    fn admit_own(&mut self, own: Admitted, actions: &mut Vec<Action>) {
        let hash = own.delta.hash();
        let joined =
            matches!(own.body, DeltaBody::Join { .. } | DeltaBody::Rekey { .. }).then(|| self.me.clone());
        if let Some(disconnect) = self.admit(&own.delta, hash, joined, &own.body, &mut Vec::new()) {
            actions.push(disconnect);
        }
        self.own_pending.push(own);
    }

    /// Pushes newly admitted deltas to every greeted neighbour that may hold them,
    /// except the one they came from.
    fn push_to_peers(&mut self, deltas: &[Arc<Delta>], from: Option<NodeId>, actions: &mut Vec<Action>) {
        // Log by log, so that a run stays next to the signed delta that closes it
        // (the deltas of each log end with a signed one); federation logs first, in
        // order of first appearance, since organizations are registered there and
        // province entries may name them.
        let mut logs: Vec<(LogId, Vec<&Arc<Delta>>)> = Vec::new();
        for delta in deltas {
            match logs.iter_mut().find(|(log, _)| *log == delta.log) {
                Some((_, of_log)) => of_log.push(delta),
                None => logs.push((delta.log, vec![delta])),
            }
        }
        logs.sort_by_key(|(log, _)| log.scope);
        for (peer, state) in self.peers.iter_mut() {
            if Some(*peer) == from || !state.greeted {
                continue;
            }
            let mut batcher = Batcher::new();
            for (log, of_log) in &logs {
                let Some(last) = of_log.last().map(|d| d.seq) else { continue };
                let have = state.vv.get(log).copied().unwrap_or(0);
                if !log.visible_at(*peer) || have >= last {
                    continue;
                }
                let first = of_log.iter().find(|d| d.seq > have).map_or(last, |d| d.seq);
                if have + 1 < first {
                    // The peer lacks earlier deltas: stream the log from the store,
                    // through the last of these (a signed one, so no run is cut).
                    actions.push(Action::SendRange { peer: *peer, log: *log, from: have + 1, to: last });
                } else {
                    for delta in of_log.iter().filter(|d| d.seq > have) {
                        if let Some(frame) = batcher.push(Arc::clone(delta)) {
                            actions.push(Action::Send { peer: *peer, frame });
                        }
                    }
                }
                state.vv.insert(*log, last);
            }
            while let Some(frame) = batcher.finish() {
                actions.push(Action::Send { peer: *peer, frame });
            }
        }
    }

    /// Applies an accepted delta to the in-memory state; returns a disconnect when it
    /// revokes a connected neighbour.
    fn admit(
        &mut self,
        delta: &Delta,
        hash: Hash,
        joined: Option<Member>,
        body: &DeltaBody,
        undo: &mut Vec<Undo>,
    ) -> Option<Action> {
        undo.push(Undo::Head(delta.log, self.heads.insert(delta.log, Head { seq: delta.seq, hash })));
        // A Join or a hand-over: the log's key from now on, and the member's.
        if let Some(member) = joined {
            let keys = self.known_keys.entry(member.id).or_default();
            let key = match keys.iter().find(|k| ***k == member.key) {
                Some(key) => key.clone(),
                None => {
                    let key = Arc::new(member.key);
                    keys.push(key.clone());
                    undo.push(Undo::KnownKey(member.id));
                    key
                }
            };
            undo.push(Undo::LogKey(delta.log, self.log_keys.insert(delta.log, key)));
            undo.push(Undo::Member(member.id, self.members.insert(member.id, member.clone())));
        }
        match body {
            DeltaBody::Revoke(rev) => {
                let node = rev.node;
                // A scope the revoker could not see is cut where this node stands now.
                let cut =
                    |scope| rev.cutoff_for(scope).unwrap_or_else(|| self.head(LogId { origin: node, scope }));
                let new = Cutoffs { federation: cut(Scope::Federation), province: cut(Scope::Province) };
                undo.push(Undo::Revoked(node, self.revoked.get(&node).copied()));
                let cutoffs = self.revoked.entry(node).or_insert(new);
                cutoffs.federation = cutoffs.federation.min(new.federation);
                cutoffs.province = cutoffs.province.min(new.province);
                let reason = crate::fault::Incompatibility::Revoked {
                    node,
                    reason: Some(format!("by {}: {}", delta.log.origin, rev.reason)),
                };
                self.peers
                    .contains_key(&node)
                    .then_some(Action::Disconnect { peer: node, reason: PeerError::Incompatible(reason) })
            }
            DeltaBody::Organization(org) => {
                let nodes = self.organizations.entry(org.credit_code.clone()).or_default();
                if nodes.insert(delta.log.origin) {
                    undo.push(Undo::Organization(org.credit_code.clone(), delta.log.origin));
                }
                None
            }
            DeltaBody::AuditCheckpoint(checkpoint) => {
                let origin = delta.log.origin;
                undo.push(Undo::Checkpoint(origin, self.checkpoints.insert(origin, *checkpoint)));
                None
            }
            DeltaBody::Join { .. }
            | DeltaBody::Rekey { .. }
            | DeltaBody::Catalog(_)
            | DeltaBody::Service(_)
            | DeltaBody::Dataset(_) => None,
        }
    }

    /// The latest audit checkpoint of `origin` held here.
    pub fn checkpoint(&self, origin: NodeId) -> Option<AuditCheckpoint> {
        self.checkpoints.get(&origin).copied()
    }
}

/// How to take back one admission (a run refused after some members were admitted).
#[derive(Debug)]
enum Undo {
    Head(LogId, Option<Head>),
    Member(NodeId, Option<Member>),
    LogKey(LogId, Option<Arc<VerifyingKey>>),
    /// The last key added to a member's known keys.
    KnownKey(NodeId),
    Revoked(NodeId, Option<Cutoffs>),
    Organization(String, NodeId),
    Checkpoint(NodeId, Option<AuditCheckpoint>),
}

/// The run starting at `deltas[start]`: the indices of its log's deltas that follow
/// in the frame, up to and including the first signed one. An honest run has at
/// most `MAX_RUN_DELTAS` unsigned deltas and `MAX_RUN_BYTES`: collection stops one
/// past either limit, so an oversized run fails verification.
fn run_at(deltas: &[Arc<Delta>], start: usize) -> Vec<usize> {
    let log = deltas[start].log;
    let mut indices = Vec::new();
    let mut bytes = 0;
    for (i, d) in deltas.iter().enumerate().skip(start).filter(|(_, d)| d.log == log) {
        indices.push(i);
        if d.is_signed() {
            break;
        }
        bytes += d.encoded_len();
        if indices.len() > MAX_RUN_DELTAS || bytes > MAX_RUN_BYTES {
            break;
        }
    }
    indices
}
