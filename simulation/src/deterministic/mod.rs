//! The deterministic simulator: the very node core every node runs (sync engine,
//! group commit, catalog and access rules, authorization, audit) over an in-memory
//! store, driven by a simulated clock and network from one seed. Keys and
//! certificates derive from the seed too, so the same seed on the same commit
//! replays the same run byte for byte, checked by a digest of every delivered frame.

mod datasets;
mod faults;
mod people;

use crate::calls::{Calls, Meddle};
use crate::invariants::{self, NodeView, WorkflowView};
use crate::report::{Convergence, Report};
use crate::scenario::{plan_publishes, Network, Scenario, ScopeMix, Step, Target};
use crate::workload::{provider_of, Workload};
use crate::SimError;
use cascade_access::Principal;
use cascade_certs::{node_identity, Authority, FederationVerifier, KeySource};
use cascade_core::audit::AuditRecord;
use cascade_core::{
    Command, CommandError, Core, Effect, Identity, Input, LinkEnd, LinkId, LinkRole, Materialize,
    MemoryStore, Redial, Reply, Ticket,
};
use cascade_launcher::topology::Topology;
use cascade_protocol::routed::MessageId;
use cascade_protocol::workflow::Resource;
use cascade_protocol::{
    Batcher, CertificateError, Delta, DeltaBody, Frame, Hash, LogId, Member, MembershipVerifier, NodeId,
    Scope, SignatureCache, Tier,
};
use ed25519_dalek::SigningKey;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Simulated milliseconds.
type Ms = u64;

/// Unix time the simulated clock starts at (certificates are valid from a day before).
const EPOCH_SECS: u64 = 1_800_000_000;
/// Calls a node's consumers make at once when their turn comes.
const CALL_BURST: usize = 8;

/// Events between two checks for convergence (a check walks every node's heads).
const CONVERGED_EVERY: u64 = 4096;

/// Longest a command submitted by `Simulator::execute` may take (simulated).
const EXECUTE_WITHIN_MS: Ms = 60_000;

/// What a malicious relay does to a delta it forwards: a catalog entry gets a
/// different summary (still a well-formed entry, so only the signature betrays
/// it); anything else gets a flipped byte.
fn tamper(delta: &Delta) -> Delta {
    let mut delta = delta.clone();
    if let Ok(DeltaBody::Catalog(mut entry)) = delta.decode_body() {
        entry.summary = format!("{} (altered in transit)", entry.summary);
        if let Ok(body) = cascade_protocol::codec::encode(&DeltaBody::Catalog(entry)) {
            delta.body = body;
            return delta;
        }
    }
    if let Some(last) = delta.body.last_mut() {
        *last ^= 0x01;
    }
    delta
}

/// Encoded size of a frame on the wire (length prefix included), from the
/// codec's fixed-width layout instead of encoding every frame.
fn wire_size(frame: &Frame) -> u64 {
    use cascade_protocol::limits::{FRAME_OVERHEAD, HELLO_ENTRY_BYTES};
    const PREFIX: usize = 4;
    (PREFIX
        + match frame {
            Frame::Hello { vv } => FRAME_OVERHEAD + vv.len() * HELLO_ENTRY_BYTES,
            Frame::Deltas(ds) => FRAME_OVERHEAD + ds.iter().map(|d| d.encoded_len()).sum::<usize>(),
            Frame::Need { .. } => 4 + 8 + 8,
            // Rare and small: encoded for their size.
            Frame::Routed(_) | Frame::RoutedAck(_) => cascade_protocol::encode(frame).map_or(0, |b| b.len()),
        }) as u64
}

/// A key derived from the seed for `label`: every key of a run is reproducible.
fn derived_key(seed: u64, label: &str) -> SigningKey {
    let mut material = seed.to_be_bytes().to_vec();
    material.extend_from_slice(label.as_bytes());
    SigningKey::from_bytes(&blake3::derive_key("cascade simulation key v1", &material))
}

/// Verdicts on certificate chains, by the chain's hash and whether a current time
/// was asked for.
type ChainMemo = Arc<Mutex<HashMap<(Hash, bool), Result<Member, CertificateError>>>>;

/// The federation verifier with a memo shared by all simulated nodes: each Join's
/// certificate chain is verified once, not once per node (365 times).
struct MemoVerifier {
    inner: FederationVerifier,
    memo: ChainMemo,
}

impl MembershipVerifier for MemoVerifier {
    fn verify_chain(&self, chain: &[Vec<u8>], now: Option<u64>) -> Result<Member, CertificateError> {
        let mut h = blake3::Hasher::new();
        for cert in chain {
            h.update(&(cert.len() as u64).to_be_bytes());
            h.update(cert);
        }
        let key = (*h.finalize().as_bytes(), now.is_some());
        if let Some(hit) = self.memo.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return hit;
        }
        let result = self.inner.verify_chain(chain, now);
        if let Ok(mut m) = self.memo.lock() {
            m.insert(key, result.clone());
        }
        result
    }
}

/// Options of a deterministic run.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The seed: everything random derives from it.
    pub seed: u64,
    /// Deliberately break one node's engine (skip signature checks) to prove the
    /// invariant checker catches it. Test-only.
    pub break_engine_at: Option<NodeId>,
    /// Print a progress line to stderr.
    pub progress: bool,
    /// Keep a record of every commit (for tests that look inside group commits).
    pub record_commits: bool,
}

/// One group commit, as recorded for inspection.
#[derive(Clone, Debug)]
pub struct CommitRecord {
    /// The node.
    pub node: NodeId,
    /// The deltas it appended, with what each says.
    pub deltas: Vec<(LogId, u64, &'static str)>,
    /// The audit records it sealed.
    pub audit: Vec<AuditRecord>,
}

/// Something scheduled on the simulated clock.
#[derive(Debug)]
enum Sched {
    Deliver {
        from: NodeId,
        to: NodeId,
        link: LinkId,
        frame: Frame,
    },
    Flushed {
        node: NodeId,
        life: u64,
        group: u64,
    },
    Publish {
        node: NodeId,
        scope: Scope,
    },
    /// A call by the node's consumers (a `Calls` step).
    Call {
        node: NodeId,
    },
    Reconnect {
        a: NodeId,
        b: NodeId,
    },
    /// The time a node's core asked to be woken at (`Core::poll_timeout`).
    Tick {
        node: NodeId,
        life: u64,
        at: Ms,
    },
}

struct Link {
    /// The current connection's id, when up.
    id: Option<LinkId>,
    blocked: bool,
    /// Last delivery time per direction (FIFO links).
    last: [Ms; 2],
    /// When the child dials again after a refusal, as the runtime's dialer does.
    redial: Redial,
}

/// Why a command was submitted, so its reply can be accounted for.
enum Purpose {
    /// A catalog change of the workload, submitted at this time.
    Change(Ms),
    /// A command of `Simulator::execute`.
    Execute,
    /// Setup work (the node's own organization).
    Setup,
    /// An audit checkpoint, asked for at this time.
    Checkpoint(Ms),
    /// A workflow step (applications, decisions, withdrawals): some are refused by
    /// design (a decision that crossed a withdrawal).
    Workflow,
    /// The revocation of a grant, by its provider.
    Revoke(String),
    /// A dataset version, cut with this content hash.
    Dataset(Hash),
    /// The start of a fetch (run once the consumer's node agrees).
    Fetch(Box<crate::datasets::Job>),
}

/// What a commit being made durable holds that the simulator accounts for.
#[derive(Default)]
struct Flushing {
    /// Its deltas.
    deltas: Vec<(LogId, u64)>,
    /// The routed messages it takes over.
    seen: Vec<MessageId>,
}

struct SimNode {
    tier: Tier,
    key: SigningKey,
    chain: Vec<Vec<u8>>,
    core: Option<Core<MemoryStore>>,
    /// The store while the node is down.
    resting: Option<MemoryStore>,
    /// Incremented on every crash: flushes of an earlier life are void.
    life: u64,
    /// The commit being made durable.
    flushing: Option<Flushing>,
    tickets: BTreeMap<Ticket, Purpose>,
    /// The wake-up scheduled for its core, if any.
    tick_at: Option<Ms>,
    /// The key it signed with before a rotation, for its next boot's hand-over.
    previous_key: Option<SigningKey>,
    /// How many times its key was rotated (its keys derive from the seed and this).
    rotations: u32,
}

/// The deterministic simulator.
pub struct Simulator {
    now: Ms,
    rng: StdRng,
    /// The run's seed (keys of rotated nodes derive from it too).
    seed: u64,
    /// The federation root and the provincial CAs, to certify rotated keys.
    root: Authority,
    cas: BTreeMap<NodeId, Authority>,
    parents: BTreeMap<NodeId, Option<NodeId>>,
    /// Hand-over deltas committed at their origin.
    hand_overs: u64,
    services: u64,
    network: Network,
    queue: BinaryHeap<Reverse<(Ms, u64, usize)>>,
    /// Scheduled events by slot; slots of past events are reused.
    slots: Vec<Option<Sched>>,
    free: Vec<usize>,
    order: u64,
    nodes: BTreeMap<NodeId, SimNode>,
    links: BTreeMap<(NodeId, NodeId), Link>,
    next_link: LinkId,
    next_ticket: Ticket,
    tamper: BTreeSet<(NodeId, NodeId)>,
    delays: BTreeMap<NodeId, Ms>,
    verifier: FederationVerifier,
    cache: Arc<SignatureCache>,
    chains: ChainMemo,
    workload: Workload,
    /// Submission time of each acknowledged change, and durable copies of each delta.
    published: HashMap<(LogId, u64), Ms>,
    copies: HashMap<(LogId, u64), usize>,
    holders_needed: HashMap<LogId, usize>,
    convergence: Vec<Ms>,
    acked: Vec<(LogId, u64, Hash)>,
    replies: BTreeMap<Ticket, Result<Reply, CommandError>>,
    commits: Option<Vec<CommitRecord>>,
    failures: Vec<String>,
    trace: blake3::Hasher,
    frames: u64,
    bytes: u64,
    events: u64,
    /// Publishes scheduled but not yet made: a run has not converged before them.
    publishes_ahead: u64,
    /// How often each node durably took each routed message over (must be once).
    taken: HashMap<(NodeId, MessageId), u32>,
    taken_twice: Vec<String>,
    /// Workflow commands that succeeded.
    workflow_steps: u64,
    /// Service calls, their gates and the ledger they are checked against.
    calls: Calls,
    /// Chunk stores, published versions and fetches.
    datasets: crate::datasets::Datasets,
    progress: bool,
}

impl Simulator {
    /// Builds the federation of `topology`: real certificates from keys derived
    /// from the seed, one node core per node.
    pub fn new(topology: &Topology, scenario: &Scenario, options: &Options) -> Result<Simulator, SimError> {
        let mut rng = StdRng::seed_from_u64(options.seed);
        let setup = |e: cascade_certs::CertError| SimError::Setup(e.to_string());
        let not_before = EPOCH_SECS - 86_400;
        let given =
            |label: &str| KeySource::Given { key: Box::new(derived_key(options.seed, label)), not_before };
        let root = Authority::new_root_from("simulation root", &given("root")).map_err(setup)?;
        let verifier =
            FederationVerifier::new(root.cert_der()).map_err(|e| SimError::Setup(e.to_string()))?;
        let mut cas = BTreeMap::new();
        let mut nodes = BTreeMap::new();
        let mut links = BTreeMap::new();
        for n in &topology.nodes {
            let identity = node_identity(n.id, n.tier, n.parent, &n.name).map_err(setup)?;
            let source = given(&format!("node/{}", n.id));
            let creds = match (n.tier, n.parent) {
                (Tier::Municipal, Some(parent)) => cas
                    .get(&parent)
                    .ok_or_else(|| SimError::Setup(format!("no CA for {parent}")))
                    .and_then(|ca: &Authority| ca.issue_from(&identity, &source).map_err(setup))?,
                _ => root.issue_from(&identity, &source).map_err(setup)?,
            };
            if n.tier == Tier::Provincial {
                let ca = root
                    .issue_provincial_ca_from(&identity, &given(&format!("ca/{}", n.id)))
                    .and_then(|c| c.into_authority())
                    .map_err(setup)?;
                cas.insert(n.id, ca);
            }
            let key = creds.signing_key().map_err(setup)?;
            let node = SimNode {
                tier: n.tier,
                key,
                chain: creds.chain,
                core: None,
                resting: Some(MemoryStore::new()),
                life: 0,
                flushing: None,
                tickets: BTreeMap::new(),
                tick_at: None,
                previous_key: None,
                rotations: 0,
            };
            nodes.insert(n.id, node);
            if let Some(parent) = n.parent {
                links.insert(
                    (parent, n.id),
                    Link { id: None, blocked: false, last: [0, 0], redial: Redial::new() },
                );
            }
        }
        let ids: Vec<NodeId> = nodes.keys().copied().collect();
        let mut holders_needed = HashMap::new();
        for &origin in &ids {
            for scope in [Scope::Federation, Scope::Province] {
                let log = LogId { origin, scope };
                holders_needed.insert(log, ids.iter().filter(|id| log.visible_at(**id)).count());
            }
        }
        let workload = Workload::new(rng.gen());
        let parents = topology.nodes.iter().map(|n| (n.id, n.parent)).collect();
        let mut sim = Simulator {
            now: 0,
            rng,
            seed: options.seed,
            root,
            cas,
            parents,
            hand_overs: 0,
            services: 0,
            network: scenario.network.clone(),
            queue: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            order: 0,
            nodes,
            links,
            next_link: 1,
            next_ticket: 1,
            tamper: BTreeSet::new(),
            delays: BTreeMap::new(),
            verifier,
            cache: Arc::new(SignatureCache::default()),
            chains: Arc::default(),
            workload,
            published: HashMap::new(),
            copies: HashMap::new(),
            holders_needed,
            convergence: Vec::new(),
            acked: Vec::new(),
            replies: BTreeMap::new(),
            commits: options.record_commits.then(Vec::new),
            failures: Vec::new(),
            trace: blake3::Hasher::new(),
            frames: 0,
            bytes: 0,
            events: 0,
            publishes_ahead: 0,
            taken: HashMap::new(),
            taken_twice: Vec::new(),
            workflow_steps: 0,
            calls: Calls::default(),
            datasets: Default::default(),
            progress: options.progress,
        };
        for id in ids {
            sim.boot(id)?;
            if Some(id) == options.break_engine_at {
                if let Some(core) = sim.nodes.get_mut(&id).and_then(|n| n.core.as_mut()) {
                    core.testing_skip_signature_checks();
                }
            }
        }
        let pairs: Vec<(NodeId, NodeId)> = sim.links.keys().copied().collect();
        for (a, b) in pairs {
            sim.link_up(a, b);
        }
        Ok(sim)
    }

    fn unix_ms(&self) -> u64 {
        EPOCH_SECS * 1000 + self.now
    }

    /// Starts (or restarts) a node's core from its store.
    fn boot(&mut self, id: NodeId) -> Result<(), SimError> {
        let now = self.unix_ms();
        let verifier = MemoVerifier { inner: self.verifier.clone(), memo: self.chains.clone() };
        let node = self.nodes.get_mut(&id).ok_or_else(|| SimError::Scenario(format!("no node {id}")))?;
        let store = node.resting.take().ok_or_else(|| SimError::Scenario(format!("{id} is running")))?;
        let identity = Identity {
            key: node.key.clone(),
            chain: node.chain.clone(),
            verifier: Box::new(verifier),
            previous_key: node.previous_key.take(),
        };
        let mut core = Core::boot(identity, store, now)
            .map_err(|e| SimError::Setup(format!("{id} cannot boot: {e}")))?;
        core.set_signature_cache(self.cache.clone());
        // Every node publishes for its own organization, registered at first boot.
        let org = provider_of(id);
        let registered = core.engine().is_registered_at(&org.credit_code, id);
        node.core = Some(core);
        self.calls.booted(id, now);
        if !registered {
            self.submit(id, Principal::node(), Command::RegisterOrganization(org), Purpose::Setup);
        }
        self.drain(id);
        Ok(())
    }

    fn schedule(&mut self, at: Ms, what: Sched) {
        self.order += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = Some(what);
                slot
            }
            None => {
                self.slots.push(Some(what));
                self.slots.len() - 1
            }
        };
        self.queue.push(Reverse((at, self.order, slot)));
    }

    fn link_mut(&mut self, a: NodeId, b: NodeId) -> Option<&mut Link> {
        let (x, y) = (a.min(b), a.max(b));
        if self.links.contains_key(&(x, y)) {
            self.links.get_mut(&(x, y))
        } else {
            self.links.get_mut(&(y, x))
        }
    }

    fn alive(&self, id: NodeId) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.core.is_some())
    }

    /// Hands `input` to a running node's core and executes what it asks for.
    fn input(&mut self, id: NodeId, input: Input) {
        let now = self.unix_ms();
        if let Some(core) = self.nodes.get_mut(&id).and_then(|n| n.core.as_mut()) {
            core.handle(now, input);
            self.drain(id);
        }
    }

    fn link_up(&mut self, a: NodeId, b: NodeId) {
        if !self.alive(a) || !self.alive(b) {
            return;
        }
        let id = self.next_link;
        let Some(link) = self.link_mut(a, b) else { return };
        if link.id.is_some() || link.blocked {
            return;
        }
        link.id = Some(id);
        self.next_link += 1;
        // The parent is the lower end of every tree link (national < province < city).
        let role_of =
            |x: NodeId, y: NodeId| if x.tier() < y.tier() { LinkRole::Parent } else { LinkRole::Child };
        self.input(a, Input::LinkUp { link: id, peer: b, role: role_of(b, a) });
        // `a` may have refused it at once (a quarantined neighbour).
        if self.link_mut(a, b).is_some_and(|l| l.id == Some(id)) {
            self.input(b, Input::LinkUp { link: id, peer: a, role: role_of(a, b) });
        }
    }

    fn link_down(&mut self, a: NodeId, b: NodeId, reconnect: bool) {
        let Some(link) = self.link_mut(a, b) else { return };
        let Some(id) = link.id.take() else { return };
        self.input(a, Input::LinkDown { link: id, cause: None });
        self.input(b, Input::LinkDown { link: id, cause: None });
        if reconnect {
            let at = self.now + self.network.reconnect_ms;
            self.schedule(at, Sched::Reconnect { a, b });
        }
    }

    fn submit(&mut self, id: NodeId, by: Principal, command: Command, purpose: Purpose) -> Ticket {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        if let Some(node) = self.nodes.get_mut(&id) {
            node.tickets.insert(ticket, purpose);
        }
        self.input(id, Input::Command { ticket, by, command });
        ticket
    }

    /// Executes every effect a node's core asks for.
    fn drain(&mut self, id: NodeId) {
        loop {
            let Some(node) = self.nodes.get_mut(&id) else { return };
            let Some(core) = node.core.as_mut() else { return };
            let Some(effect) = core.poll() else {
                let wanted = core.poll_timeout().map(|at| at.saturating_sub(EPOCH_SECS * 1000).max(self.now));
                if let Some(at) = wanted.filter(|at| node.tick_at.is_none_or(|t| *at < t)) {
                    node.tick_at = Some(at);
                    let life = node.life;
                    self.schedule(at, Sched::Tick { node: id, life, at });
                }
                return;
            };
            match effect {
                Effect::Commit { group, batch } => {
                    let deltas: Vec<(LogId, u64)> = batch.deltas.iter().map(|d| (d.log, d.seq)).collect();
                    let seen: Vec<MessageId> = batch.seen.iter().map(|(m, _)| *m).collect();
                    let rekey = |d: &Arc<Delta>| {
                        d.log.origin == id
                            && d.is_signed()
                            && matches!(d.decode_body(), Ok(DeltaBody::Rekey { .. }))
                    };
                    self.hand_overs += batch.deltas.iter().filter(|d| rekey(d)).count() as u64;
                    self.services += batch
                        .materialize
                        .iter()
                        .filter(|m| matches!(m, Materialize::Service { delta, .. } if delta.log.origin == id))
                        .count() as u64;
                    if let Some(commits) = self.commits.as_mut() {
                        commits.push(record_of(id, &batch));
                    }
                    if let Err(e) = core.store_mut().apply(group, *batch) {
                        self.failures.push(format!("{id}: the store refused a commit: {e}"));
                    }
                    node.flushing = Some(Flushing { deltas, seen });
                    let at = self.now + self.network.flush_ms;
                    let life = node.life;
                    self.schedule(at, Sched::Flushed { node: id, life, group });
                }
                Effect::Send { link, peer, frame } => self.send(id, link, peer, vec![frame]),
                Effect::SendRange { link, peer, log, from, to } => {
                    // As the runtime does: on past `to` until a signed delta.
                    let mut frames = Vec::new();
                    let mut batcher = Batcher::new();
                    for seq in from.. {
                        let Some(d) = core.store().delta(log, seq) else { break };
                        frames.extend(batcher.push(d.clone()));
                        if seq >= to && d.is_signed() {
                            break;
                        }
                    }
                    while let Some(frame) = batcher.finish() {
                        frames.push(frame);
                    }
                    self.send(id, link, peer, frames);
                }
                Effect::Close { link, peer, .. } => {
                    if self.link_mut(id, peer).is_some_and(|l| l.id == Some(link)) {
                        self.link_down(id, peer, false);
                        // The child redials on the schedule of a refused link.
                        let now = self.now;
                        if let Some(l) = self.link_mut(id, peer) {
                            let at = now + l.redial.after(LinkEnd::Refused);
                            self.schedule(at, Sched::Reconnect { a: id, b: peer });
                        }
                    }
                }
                Effect::Reply { ticket, result } => self.replied(id, ticket, result),
            }
        }
    }

    fn replied(&mut self, id: NodeId, ticket: Ticket, result: Result<Reply, CommandError>) {
        let Some(purpose) = self.nodes.get_mut(&id).and_then(|n| n.tickets.remove(&ticket)) else { return };
        match purpose {
            Purpose::Change(at) => {
                if let Ok(Reply::Entry(saved)) = &result {
                    if let Some(seq) = saved.delta_seq {
                        let log = LogId { origin: id, scope: saved.scope };
                        self.acknowledged(id, log, seq, at);
                    }
                }
            }
            Purpose::Execute => {
                self.replies.insert(ticket, result);
            }
            Purpose::Checkpoint(at) => match result {
                Ok(Reply::Checkpoint { delta_seq, .. }) => {
                    self.acknowledged(id, LogId { origin: id, scope: Scope::Federation }, delta_seq, at);
                }
                Ok(_) => self.failures.push(format!("{id}: an audit checkpoint answered another reply")),
                // A node still recovering its own logs says so: nothing to check.
                Err(CommandError::Busy(_)) => {}
                Err(e) => self.failures.push(format!("{id}: audit checkpoint refused: {e}")),
            },
            Purpose::Setup => {
                if let Err(e) = result {
                    self.failures.push(format!("{id}: setup command refused: {e}"));
                }
            }
            Purpose::Workflow => {
                if result.is_ok() {
                    self.workflow_steps += 1;
                }
            }
            Purpose::Dataset(content_hash) => {
                if let Ok(Reply::Dataset(manifest)) = &result {
                    self.published_version(id, manifest, content_hash);
                }
            }
            Purpose::Fetch(job) => {
                if result.is_ok() {
                    self.datasets.jobs.push(*job);
                    self.advance_fetches(id);
                }
            }
            Purpose::Revoke(grant) => {
                if result.is_ok() {
                    self.workflow_steps += 1;
                    let now = self.unix_ms();
                    self.calls.revoked(grant.clone(), now);
                    // Its grantee, not told yet, calls with it at once.
                    let revoked = self
                        .nodes
                        .get(&id)
                        .and_then(store_of)
                        .and_then(|s| s.grants().find(|g| g.grant.id == grant))
                        .map(|g| g.grant.clone());
                    if let Some(g) = revoked.filter(|g| matches!(g.resource, Resource::Service(_))) {
                        self.call_with(g.grantee_node, &g, Meddle::Honest);
                    }
                }
            }
        }
    }

    fn acknowledged(&mut self, id: NodeId, log: LogId, seq: u64, at: Ms) {
        let hash = self
            .nodes
            .get(&id)
            .and_then(|n| n.core.as_ref())
            .and_then(|c| c.store().delta(log, seq))
            .map(|d| d.hash());
        if let Some(hash) = hash {
            self.acked.push((log, seq, hash));
        }
        self.published.insert((log, seq), at);
        if self.copies.get(&(log, seq)) >= self.holders_needed.get(&log) {
            self.convergence.push(self.now - at);
        }
    }

    fn flushed(&mut self, id: NodeId, life: u64, group: u64) {
        let Some(node) = self.nodes.get_mut(&id) else { return };
        if node.life != life || node.core.is_none() {
            return;
        }
        let Flushing { deltas, seen } = node.flushing.take().unwrap_or_default();
        if let Some(core) = node.core.as_mut() {
            if let Err(e) = core.store_mut().made_durable(group) {
                self.failures.push(format!("{id}: {e}"));
            }
        }
        for message in seen {
            let times = self.taken.entry((id, message)).or_default();
            *times += 1;
            if *times == 2 {
                self.taken_twice.push(format!("{id} took {message} over twice"));
            }
        }
        for key in deltas {
            let copies = self.copies.entry(key).or_default();
            *copies += 1;
            if Some(&*copies) == self.holders_needed.get(&key.0) {
                if let Some(at) = self.published.get(&key) {
                    self.convergence.push(self.now - at);
                }
            }
        }
        self.input(id, Input::Committed { group });
    }

    fn send(&mut self, from: NodeId, link: LinkId, to: NodeId, frames: Vec<Frame>) {
        for mut frame in frames {
            let Some(current) = self.link_mut(from, to) else { return };
            if current.id != Some(link) {
                return;
            }
            if self.tamper.contains(&(from, to)) {
                if let Frame::Deltas(ds) = &mut frame {
                    for d in ds.iter_mut().filter(|d| d.log.origin != from) {
                        *d = Arc::new(tamper(d));
                    }
                }
            }
            if self.network.loss > 0.0 && self.rng.gen_bool(self.network.loss) {
                // A lost frame breaks the QUIC connection: both ends reconnect.
                self.link_down(from, to, true);
                return;
            }
            let jitter =
                if self.network.jitter_ms > 0 { self.rng.gen_range(0..=self.network.jitter_ms) } else { 0 };
            let extra = self.delays.get(&from).copied().unwrap_or(0);
            let mut at = self.now + self.network.latency_ms + jitter + extra;
            let reorder = self.network.reorder;
            let dir = usize::from(from > to);
            if let Some(link) = self.link_mut(from, to) {
                if !reorder {
                    at = at.max(link.last[dir]);
                    link.last[dir] = at;
                }
            }
            self.frames += 1;
            self.bytes += wire_size(&frame);
            self.schedule(at, Sched::Deliver { from, to, link, frame });
        }
    }

    fn deliver(&mut self, from: NodeId, to: NodeId, link: LinkId, frame: Frame) {
        if self.link_mut(from, to).map(|l| l.id) != Some(Some(link)) {
            return;
        }
        self.trace.update(&self.now.to_be_bytes());
        self.trace.update(&from.code().to_be_bytes());
        self.trace.update(&to.code().to_be_bytes());
        match &frame {
            Frame::Hello { vv } => {
                self.trace.update(b"H");
                for (log, seq) in vv {
                    self.trace.update(&log.origin.code().to_be_bytes());
                    self.trace.update(&seq.to_be_bytes());
                }
            }
            Frame::Deltas(ds) => {
                // Keys and certificates derive from the seed, so every byte repeats;
                // a delta's place, its predecessor's hash and its size stand for it.
                self.trace.update(b"D");
                for d in ds {
                    self.trace.update(&d.log.origin.code().to_be_bytes());
                    self.trace.update(&[d.log.scope as u8, u8::from(d.is_signed())]);
                    self.trace.update(&d.seq.to_be_bytes());
                    self.trace.update(&d.prev);
                    self.trace.update(&(d.body.len() as u64).to_be_bytes());
                }
            }
            Frame::Need { log, from } => {
                self.trace.update(b"N");
                self.trace.update(&log.origin.code().to_be_bytes());
                self.trace.update(&from.to_be_bytes());
            }
            Frame::Routed(m) => {
                self.trace.update(b"R");
                self.trace.update(&m.id.from.code().to_be_bytes());
                self.trace.update(&m.id.seq.to_be_bytes());
            }
            Frame::RoutedAck(ids) => {
                self.trace.update(b"A");
                for id in ids {
                    self.trace.update(&id.from.code().to_be_bytes());
                    self.trace.update(&id.seq.to_be_bytes());
                }
            }
        }
        if let Some(l) = self.link_mut(from, to).filter(|l| l.redial.is_refused()) {
            l.redial.after(LinkEnd::Heard);
        }
        self.input(to, Input::Frame { link, frame });
    }

    /// Wakes a node's core at the time it asked for, unless it restarted since or
    /// asked for an earlier time meanwhile.
    fn tick(&mut self, id: NodeId, life: u64, at: Ms) {
        let Some(node) = self.nodes.get_mut(&id) else { return };
        if node.life != life || node.tick_at != Some(at) {
            return;
        }
        node.tick_at = None;
        self.input(id, Input::Tick);
    }

    /// Runs scheduled events up to `until` (inclusive), or until `stop` says so
    /// (asked every `every` events: a whole-federation check is not free).
    fn run_until(&mut self, until: Ms, every: u64, mut stop: impl FnMut(&Self) -> bool) -> bool {
        let wall = Instant::now();
        let mut last_progress = wall;
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let progress_every = Duration::from_secs(if terminal { 1 } else { 10 });
        while let Some(Reverse((at, _, slot))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = at;
            self.events += 1;
            let Some(what) = self.slots.get_mut(slot).and_then(Option::take) else { continue };
            self.free.push(slot);
            match what {
                Sched::Deliver { from, to, link, frame } => self.deliver(from, to, link, frame),
                Sched::Flushed { node, life, group } => self.flushed(node, life, group),
                Sched::Publish { node, scope } => {
                    self.publishes_ahead -= 1;
                    self.publish(node, scope);
                }
                Sched::Call { node } => {
                    self.publishes_ahead -= 1;
                    // The drawn node's consumers call if they hold a service
                    // grant; else the next node's in id order that do.
                    let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
                    let from = ids.iter().position(|id| *id == node).unwrap_or(0);
                    for k in 0..ids.len() {
                        let id = ids[(from + k) % ids.len()];
                        if self.alive(id) && self.call(id) {
                            break;
                        }
                    }
                }
                Sched::Reconnect { a, b } => self.link_up(a, b),
                Sched::Tick { node, life, at } => self.tick(node, life, at),
            }
            if self.events.is_multiple_of(every) && stop(self) {
                return true;
            }
            if self.progress && self.events.is_multiple_of(4096) && last_progress.elapsed() >= progress_every
            {
                last_progress = Instant::now();
                let line = format!(
                    "[sim] t={:>8.1}s  events={:>10}  acked={:>7}  converged={:>7}  frames={:>9}",
                    self.now as f64 / 1000.0,
                    self.events,
                    self.acked.len(),
                    self.convergence.len(),
                    self.frames
                );
                // Redrawn in place on a terminal; plain lines for a log file.
                if terminal {
                    eprint!("\r\x1b[2K{line}");
                } else {
                    eprintln!("{line}");
                }
            }
        }
        stop(self)
    }

    fn converged(&self) -> bool {
        if self.publishes_ahead > 0 {
            return false;
        }
        let alive: Vec<(&NodeId, &Core<MemoryStore>)> =
            self.nodes.iter().filter_map(|(id, n)| n.core.as_ref().map(|c| (id, c))).collect();
        let busy =
            |id: &NodeId| self.nodes.get(id).is_some_and(|n| !n.tickets.is_empty() || n.flushing.is_some());
        if alive.iter().any(|(id, _)| busy(id)) {
            return false;
        }
        // Routed messages still wait for a node that is up: not converged either.
        let waiting = |core: &Core<MemoryStore>| core.routed_pending().into_keys().any(|hop| self.alive(hop));
        if alive.iter().any(|(_, core)| waiting(core)) {
            return false;
        }
        let mut best: HashMap<LogId, u64> = HashMap::new();
        for (_, core) in &alive {
            for (log, seq) in core.engine().version_vector() {
                let e = best.entry(log).or_default();
                *e = (*e).max(seq);
            }
        }
        alive.iter().all(|(id, core)| {
            best.iter().all(|(log, seq)| !log.visible_at(**id) || core.engine().head(*log) >= *seq)
        })
    }

    /// Has node `id`'s core decide `command` on behalf of `by`, running the
    /// simulation until it answers (or a simulated minute passes).
    pub fn execute(&mut self, id: NodeId, by: Principal, command: Command) -> Result<Reply, CommandError> {
        let ticket = self.submit(id, by, command, Purpose::Execute);
        let until = self.now + EXECUTE_WITHIN_MS;
        self.run_until(until, 1, |s| s.replies.contains_key(&ticket));
        self.replies.remove(&ticket).unwrap_or_else(|| Err(CommandError::Unavailable("no reply".into())))
    }

    /// The newest durable audit records of a node (oldest first).
    pub fn durable_audit(&self, id: NodeId) -> Vec<AuditRecord> {
        self.nodes.get(&id).and_then(store_of).map(MemoryStore::durable_audit).unwrap_or_default()
    }

    /// Every commit recorded so far (with `Options::record_commits`).
    pub fn commits(&self) -> &[CommitRecord] {
        self.commits.as_deref().unwrap_or_default()
    }

    /// Runs the scenario and checks the invariants.
    pub fn run(mut self, topology: &Topology, scenario: &Scenario, seed: u64) -> Result<Report, SimError> {
        let wall = Instant::now();
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let mut converge_failures = Vec::new();
        for (i, step) in scenario.steps.iter().enumerate() {
            match step {
                Step::Publish { count, at, over_ms, scope } => {
                    for c in plan_publishes(*count, at, *over_ms, *scope, &ids, &mut self.rng) {
                        self.publishes_ahead += 1;
                        self.schedule(
                            self.now + c.offset_ms,
                            Sched::Publish { node: c.node, scope: c.scope },
                        );
                    }
                }
                Step::Calls { count, over_ms } => {
                    let anywhere = Target::Keyword("random".into());
                    let plan = plan_publishes(
                        *count,
                        &anywhere,
                        *over_ms,
                        ScopeMix::Federation,
                        &ids,
                        &mut self.rng,
                    );
                    for c in plan {
                        self.publishes_ahead += 1;
                        self.schedule(self.now + c.offset_ms, Sched::Call { node: c.node });
                    }
                }
                Step::Partition { a, b } => {
                    self.expect_link(*a, *b)?;
                    if let Some(link) = self.link_mut(*a, *b) {
                        link.blocked = true;
                    }
                    self.link_down(*a, *b, false);
                }
                Step::Heal { a, b } => {
                    self.expect_link(*a, *b)?;
                    if let Some(link) = self.link_mut(*a, *b) {
                        link.blocked = false;
                    }
                    let t = self.now + self.network.reconnect_ms;
                    self.schedule(t, Sched::Reconnect { a: *a, b: *b });
                }
                Step::CheckpointAudit { node } => {
                    let at = self.now;
                    self.submit(*node, Principal::node(), Command::CheckpointAudit, Purpose::Checkpoint(at));
                }
                Step::Crash { node } => self.crash(*node),
                Step::Rekey { node } => self.rekey(*node)?,
                Step::Restart { node } => self.restart(*node)?,
                Step::Tamper { relay, toward } => {
                    self.expect_link(*relay, *toward)?;
                    self.tamper.insert((*relay, *toward));
                }
                Step::StopTamper { relay, toward } => {
                    self.tamper.remove(&(*relay, *toward));
                    // Gaps left by rejected deltas heal through a reconnect's Hello.
                    self.link_down(*relay, *toward, true);
                }
                Step::TamperChunks { relay, toward } => {
                    self.expect_link(*relay, *toward)?;
                    self.datasets.tamper.insert((*relay, *toward));
                }
                Step::StopTamperChunks { relay, toward } => {
                    self.datasets.tamper.remove(&(*relay, *toward));
                }
                Step::Delay { node, ms } => {
                    self.delays.insert(*node, *ms);
                }
                Step::Wait { ms } => {
                    let until = self.now + ms;
                    self.run_until(until, u64::MAX, |_| false);
                    self.now = until;
                }
                Step::Converge { max_ms } => {
                    let until = self.now + max_ms;
                    if !self.run_until(until, CONVERGED_EVERY, |s| s.converged()) {
                        converge_failures.push(format!("step {i}: no convergence within {max_ms} ms"));
                    }
                }
            }
        }
        if self.progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprintln!();
        }
        let mut rejected = BTreeMap::new();
        for node in self.nodes.values_mut() {
            if let Some(core) = node.core.as_mut() {
                for (label, count) in core.status().rejected.iter().filter(|(_, c)| *c > 0) {
                    *rejected.entry(label.to_string()).or_insert(0) += count;
                }
            }
        }
        let views: BTreeMap<NodeId, NodeView<'_>> = self
            .nodes
            .iter()
            .filter_map(|(id, n)| {
                let store = store_of(n)?;
                let logs = store.durable_logs().map(|(log, deltas)| (*log, deltas)).collect();
                Some((
                    *id,
                    NodeView {
                        alive: n.core.is_some(),
                        logs,
                        audit_break: store
                            .audit_break()
                            .map(str::to_string)
                            .or_else(|| witnessed_break(store, *id)),
                    },
                ))
            })
            .collect();
        let mut outcome = invariants::check(&views, &self.acked, &self.verifier);
        let workflow: BTreeMap<NodeId, WorkflowView<'_>> = self
            .nodes
            .iter()
            .filter_map(|(id, n)| {
                let store = store_of(n)?;
                Some((
                    *id,
                    WorkflowView {
                        alive: n.core.is_some(),
                        applications: store.applications().map(|a| (a.id.as_str(), a)).collect(),
                        grants: store.grants().map(|g| (g.grant.id.as_str(), g)).collect(),
                    },
                ))
            })
            .collect();
        invariants::check_workflow(&workflow, &self.taken_twice, &mut outcome);
        invariants::check_calls(&self.calls.violations, &mut outcome);
        invariants::check_datasets(&self.datasets, &mut outcome);
        // Each application counted once, where it was submitted.
        let mut applications: BTreeMap<String, u64> = BTreeMap::new();
        for (id, view) in &workflow {
            for a in view.applications.values().filter(|a| a.consumer_node == *id) {
                *applications.entry(a.state.as_str().to_string()).or_default() += 1;
            }
        }
        outcome.violations.extend(converge_failures);
        outcome.violations.extend(self.failures.iter().cloned());
        let changes = self.acked.len() as u64;
        let mut convergence = self.convergence.clone();
        convergence.sort_unstable();
        Ok(Report {
            mode: "deterministic".into(),
            topology: topology.name.clone(),
            nodes: topology.nodes.len(),
            scenario: scenario.name.clone(),
            seed,
            changes_acknowledged: changes,
            wall_seconds: wall.elapsed().as_secs_f64(),
            simulated_seconds: self.now as f64 / 1000.0,
            convergence: Convergence::from_ms(&convergence, changes),
            frames: self.frames,
            bytes: self.bytes,
            bytes_per_change: if changes > 0 { self.bytes as f64 / changes as f64 } else { 0.0 },
            frames_per_change: if changes > 0 { self.frames as f64 / changes as f64 } else { 0.0 },
            rejected,
            hand_overs: self.hand_overs,
            process_kills: Default::default(),
            services: self.services,
            applications,
            workflow_steps: self.workflow_steps,
            calls: self.calls.tally,
            datasets: self.datasets.tally,
            trace_digest: self.trace.finalize().to_hex().to_string(),
            peak_rss_bytes: crate::report::peak_rss(),
            idle_rss_bytes: 0,
            timeline: Vec::new(),
            invariants: outcome,
        })
    }

    fn expect_link(&mut self, a: NodeId, b: NodeId) -> Result<(), SimError> {
        if self.link_mut(a, b).is_none() {
            return Err(SimError::Scenario(format!("{a} and {b} are not neighbours")));
        }
        Ok(())
    }
}

/// Where a node's durable audit log no longer holds what its latest audit
/// checkpoint (in its own federation log) witnessed, if it does not.
fn witnessed_break(store: &MemoryStore, id: NodeId) -> Option<String> {
    use cascade_core::StateStore;
    let own = cascade_protocol::LogId { origin: id, scope: cascade_protocol::Scope::Federation };
    let checkpoint = store
        .durable_logs()
        .filter(|(log, _)| **log == own)
        .flat_map(|(_, deltas)| deltas.iter().rev())
        .find_map(|d| match d.decode_body() {
            Ok(DeltaBody::AuditCheckpoint(c)) => Some(c),
            _ => None,
        })?;
    match store.audit_hash(checkpoint.records) {
        Ok(Some(hash)) if hash == checkpoint.head => None,
        _ => Some(format!("audit record {} is not the one its checkpoint witnessed", checkpoint.records)),
    }
}

/// A node's store, running or not.
fn store_of(node: &SimNode) -> Option<&MemoryStore> {
    node.core.as_ref().map(Core::store).or(node.resting.as_ref())
}

fn record_of(node: NodeId, batch: &cascade_core::WriteBatch) -> CommitRecord {
    let kind = |d: &Delta| match d.decode_body() {
        Ok(DeltaBody::Join { .. }) => "join",
        Ok(DeltaBody::Catalog(_)) => "catalog",
        Ok(DeltaBody::Revoke(_)) => "revoke",
        Ok(DeltaBody::Organization(_)) => "organization",
        Ok(DeltaBody::Rekey { .. }) => "rekey",
        Ok(DeltaBody::Service(_)) => "service",
        Ok(DeltaBody::Dataset(_)) => "dataset",
        Ok(DeltaBody::AuditCheckpoint(_)) => "audit_checkpoint",
        Err(_) => "undecodable",
    };
    CommitRecord {
        node,
        deltas: batch.deltas.iter().map(|d| (d.log, d.seq, kind(d))).collect(),
        audit: batch
            .audit
            .iter()
            .filter_map(|r| cascade_core::audit::decode(r.seq, &r.value).ok().map(|d| d.record))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cascade_protocol::{codec, GENESIS_HASH};

    #[test]
    fn wire_size_matches_the_codec() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let log = LogId { origin: "370100".parse().unwrap(), scope: Scope::Province };
        let d = Arc::new(
            Delta::sign(&key, log, 1, GENESIS_HASH, &DeltaBody::Join { chain: vec![vec![1, 2, 3]] }).unwrap(),
        );
        for frame in [
            Frame::Deltas(vec![d.clone(), d]),
            Frame::Hello { vv: vec![(log, 3), (log, 4)] },
            Frame::Need { log, from: 2 },
        ] {
            assert_eq!(wire_size(&frame), codec::encode(&frame).unwrap().len() as u64 + 4, "{frame:?}");
        }
    }
}
