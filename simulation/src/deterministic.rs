//! The deterministic simulator: the real sync engine of every node, driven by a
//! simulated clock and network from one seed. Same seed, same commit: same run,
//! checked by a digest of every delivered frame.

use crate::invariants::{self, Durable, NodeView};
use crate::report::{Convergence, Report};
use crate::scenario::{plan_publishes, Network, Scenario, Step};
use crate::workload::Workload;
use crate::SimError;
use cascade_certs::{node_identity, Authority, FederationVerifier};
use cascade_federation::topology::Topology;
use cascade_protocol::message::{MAX_BATCH_BYTES, MAX_BATCH_DELTAS};
use cascade_protocol::{
    Action, Delta, DeltaBody, Engine, Event, Frame, Hash, LogId, Member, MembershipVerifier, NodeId, Scope,
    SignatureCache, Tier,
};
use ed25519_dalek::SigningKey;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Simulated milliseconds.
type Ms = u64;

/// Unix time the simulated clock starts at (certificates are valid then).
const EPOCH_SECS: u64 = 1_800_000_000;

/// What a malicious relay does to a delta it forwards: a catalog entry gets a
/// different summary (still a well-formed entry, so only the signature betrays
/// it); anything else gets a flipped byte.
fn tamper(delta: &mut Delta) {
    if let Ok(DeltaBody::Catalog(mut entry)) = delta.decode_body() {
        entry.summary = format!("{} (altered in transit)", entry.summary);
        if let Ok(body) = cascade_protocol::codec::encode(&DeltaBody::Catalog(entry)) {
            delta.body = body;
            return;
        }
    }
    if let Some(last) = delta.body.last_mut() {
        *last ^= 0x01;
    }
}

/// Encoded size of a frame on the wire (length prefix included), computed from the
/// codec's fixed-width layout instead of encoding every frame.
fn wire_size(frame: &Frame) -> u64 {
    const PREFIX: u64 = 4;
    const VARIANT: u64 = 4;
    const LEN: u64 = 8;
    // log (origin u32 + scope variant u32) + seq + prev + body length + signature.
    const DELTA_FIXED: u64 = 8 + 8 + 32 + LEN + LEN + 64;
    PREFIX
        + VARIANT
        + match frame {
            Frame::Hello { vv } => LEN + vv.len() as u64 * (8 + 8),
            Frame::Deltas(ds) => LEN + ds.iter().map(|d| DELTA_FIXED + d.body.len() as u64).sum::<u64>(),
            Frame::Need { .. } => 8 + 8,
        }
}

/// The federation verifier with a memo shared by all simulated nodes: each Join's
/// certificate chain is verified once, not once per node (365 times). Keyed by the
/// chain's bytes and whether a current time was asked for (always within validity
/// on the simulated clock).
struct MemoVerifier {
    inner: FederationVerifier,
    memo: Arc<Mutex<HashMap<(Hash, bool), Result<Member, String>>>>,
}

impl MembershipVerifier for MemoVerifier {
    fn verify_chain(&self, chain: &[Vec<u8>], now: Option<u64>) -> Result<Member, String> {
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
}

/// Something scheduled on the simulated clock.
#[derive(Debug)]
enum Sched {
    Deliver { from: NodeId, to: NodeId, generation: u64, frame: Frame },
    Flush { node: NodeId },
    Publish { node: NodeId, scope: Scope },
    Reconnect { a: NodeId, b: NodeId },
}

struct Link {
    generation: u64,
    up: bool,
    blocked: bool,
    /// Last delivery time per direction (FIFO links).
    last: [Ms; 2],
}

struct SimNode {
    tier: Tier,
    key: SigningKey,
    chain: Vec<Vec<u8>>,
    engine: Option<Engine>,
    durable: Durable,
    pending: Vec<Delta>,
    pending_sends: Vec<Action>,
    pending_acks: Vec<(LogId, u64, Ms)>,
    flush_scheduled: bool,
}

/// The deterministic simulator.
pub struct Simulator {
    now: Ms,
    rng: StdRng,
    network: Network,
    queue: BinaryHeap<Reverse<(Ms, u64, usize)>>,
    slots: Vec<Option<Sched>>,
    order: u64,
    nodes: BTreeMap<NodeId, SimNode>,
    links: BTreeMap<(NodeId, NodeId), Link>,
    tamper: BTreeSet<(NodeId, NodeId)>,
    delays: BTreeMap<NodeId, Ms>,
    verifier: FederationVerifier,
    cache: Arc<SignatureCache>,
    chains: Arc<Mutex<HashMap<(Hash, bool), Result<Member, String>>>>,
    workload: Workload,
    interned: HashMap<(LogId, u64), Vec<Arc<Delta>>>,
    /// Publish time of each acknowledged change, and when it reached every holder.
    published: HashMap<(LogId, u64), (Ms, usize)>,
    holders_needed: HashMap<LogId, usize>,
    convergence: Vec<Ms>,
    acked: Vec<(LogId, u64, cascade_protocol::Hash)>,
    trace: blake3::Hasher,
    frames: u64,
    bytes: u64,
    rejected: BTreeMap<String, u64>,
    events: u64,
    /// Publishes scheduled but not yet made: a run has not converged before them.
    publishes_ahead: u64,
    progress: bool,
}

impl Simulator {
    /// Builds the federation of `topology`: real certificates, one engine per node.
    pub fn new(topology: &Topology, scenario: &Scenario, options: &Options) -> Result<Simulator, SimError> {
        let mut rng = StdRng::seed_from_u64(options.seed);
        let root = Authority::new_root("simulation root").map_err(|e| SimError::Setup(e.to_string()))?;
        let verifier =
            FederationVerifier::new(root.cert_der()).map_err(|e| SimError::Setup(e.to_string()))?;
        let cache = Arc::new(SignatureCache::default());
        let mut cas = BTreeMap::new();
        let mut nodes = BTreeMap::new();
        let mut links = BTreeMap::new();
        for n in &topology.nodes {
            let identity =
                node_identity(n.id, n.tier, n.parent, &n.name).map_err(|e| SimError::Setup(e.to_string()))?;
            let creds = match (n.tier, n.parent) {
                (Tier::Municipal, Some(parent)) => {
                    cas.get(&parent).ok_or_else(|| SimError::Setup(format!("no CA for {parent}"))).and_then(
                        |ca: &Authority| ca.issue(&identity).map_err(|e| SimError::Setup(e.to_string())),
                    )?
                }
                _ => root.issue(&identity).map_err(|e| SimError::Setup(e.to_string()))?,
            };
            if n.tier == Tier::Provincial {
                let ca = root
                    .issue_provincial_ca(&identity)
                    .and_then(|c| c.into_authority())
                    .map_err(|e| SimError::Setup(e.to_string()))?;
                cas.insert(n.id, ca);
            }
            // Certificates carry fresh keys; the signing key must be the certificate's.
            let key = creds.signing_key().map_err(|e| SimError::Setup(e.to_string()))?;
            nodes.insert(
                n.id,
                SimNode {
                    tier: n.tier,
                    key,
                    chain: creds.chain,
                    engine: None,
                    durable: Durable::new(),
                    pending: Vec::new(),
                    pending_sends: Vec::new(),
                    pending_acks: Vec::new(),
                    flush_scheduled: false,
                },
            );
            if let Some(parent) = n.parent {
                links.insert((parent, n.id), Link { generation: 0, up: false, blocked: false, last: [0, 0] });
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
        let mut sim = Simulator {
            now: 0,
            rng,
            network: scenario.network.clone(),
            queue: BinaryHeap::new(),
            slots: Vec::new(),
            order: 0,
            nodes,
            links,
            tamper: BTreeSet::new(),
            delays: BTreeMap::new(),
            verifier,
            cache,
            chains: Arc::default(),
            workload,
            interned: HashMap::new(),
            published: HashMap::new(),
            holders_needed,
            convergence: Vec::new(),
            acked: Vec::new(),
            trace: blake3::Hasher::new(),
            frames: 0,
            bytes: 0,
            rejected: BTreeMap::new(),
            events: 0,
            publishes_ahead: 0,
            progress: options.progress,
        };
        for id in ids {
            sim.boot(id)?;
            if Some(id) == options.break_engine_at {
                if let Some(engine) = sim.nodes.get_mut(&id).and_then(|n| n.engine.as_mut()) {
                    engine.testing_skip_signature_checks();
                }
            }
        }
        let pairs: Vec<(NodeId, NodeId)> = sim.links.keys().copied().collect();
        for (a, b) in pairs {
            sim.link_up(a, b);
        }
        Ok(sim)
    }

    fn unix_now(&self) -> u64 {
        EPOCH_SECS + self.now / 1000
    }

    /// Starts (or restarts) a node's engine from its durable state.
    fn boot(&mut self, id: NodeId) -> Result<(), SimError> {
        let now = self.unix_now();
        let node = self.nodes.get_mut(&id).ok_or_else(|| SimError::Scenario(format!("no node {id}")))?;
        let verifier = MemoVerifier { inner: self.verifier.clone(), memo: self.chains.clone() };
        let mut engine = Engine::new(node.key.clone(), node.chain.clone(), Box::new(verifier), now)
            .map_err(|e| SimError::Setup(e.to_string()))?;
        engine.set_signature_cache(self.cache.clone());
        engine
            .restore(node.durable.all().map(|d| Delta::clone(d)))
            .map_err(|e| SimError::Setup(format!("{id} cannot restore: {e}")))?;
        let mut actions = engine.join(now).map_err(|e| SimError::Setup(e.to_string()))?;
        // Every node publishes for its own organization, registered at first boot.
        let org = crate::workload::provider_of(id);
        if !engine.is_registered_at(&org.credit_code, id) {
            engine
                .originate(now, Scope::Federation, &DeltaBody::Organization(org), &mut actions)
                .map_err(|e| SimError::Setup(format!("{id} cannot register its organization: {e}")))?;
        }
        node.engine = Some(engine);
        self.take(id, actions);
        Ok(())
    }

    fn schedule(&mut self, at: Ms, what: Sched) {
        self.order += 1;
        self.slots.push(Some(what));
        self.queue.push(Reverse((at, self.order, self.slots.len() - 1)));
    }

    fn link_mut(&mut self, a: NodeId, b: NodeId) -> Option<&mut Link> {
        let (x, y) = (a.min(b), a.max(b));
        if self.links.contains_key(&(x, y)) {
            self.links.get_mut(&(x, y))
        } else {
            self.links.get_mut(&(y, x))
        }
    }

    fn link_up(&mut self, a: NodeId, b: NodeId) {
        let alive = |s: &Self, n: NodeId| s.nodes.get(&n).is_some_and(|x| x.engine.is_some());
        if !alive(self, a) || !alive(self, b) {
            return;
        }
        let Some(link) = self.link_mut(a, b) else { return };
        if link.up || link.blocked {
            return;
        }
        link.up = true;
        link.generation += 1;
        self.tell_both(a, b, |peer| Event::PeerUp { peer });
    }

    /// Hands each end of a link the event about the other end.
    fn tell_both(&mut self, a: NodeId, b: NodeId, event: impl Fn(NodeId) -> Event) {
        for (x, y) in [(a, b), (b, a)] {
            let now = self.unix_now();
            if let Some(engine) = self.nodes.get_mut(&x).and_then(|n| n.engine.as_mut()) {
                let actions = engine.handle(now, event(y));
                self.take(x, actions);
            }
        }
    }

    fn link_down(&mut self, a: NodeId, b: NodeId, reconnect: bool) {
        let Some(link) = self.link_mut(a, b) else { return };
        if !link.up {
            return;
        }
        link.up = false;
        link.generation += 1;
        self.tell_both(a, b, |peer| Event::PeerDown { peer });
        if reconnect {
            let at = self.now + self.network.reconnect_ms;
            self.schedule(at, Sched::Reconnect { a, b });
        }
    }

    /// Takes a node's actions: persists and sends wait for its next flush.
    fn take(&mut self, id: NodeId, actions: Vec<Action>) {
        let Some(node) = self.nodes.get_mut(&id) else { return };
        for action in actions {
            match action {
                Action::Persist(deltas) => node.pending.extend(deltas),
                Action::Reject(r) => *self.rejected.entry(r.reason.label().to_string()).or_default() += 1,
                other => node.pending_sends.push(other),
            }
        }
        if !node.flush_scheduled && (!node.pending.is_empty() || !node.pending_sends.is_empty()) {
            node.flush_scheduled = true;
            let at = self.now + self.network.flush_ms;
            self.schedule(at, Sched::Flush { node: id });
        }
    }

    fn intern(&mut self, delta: Delta) -> Arc<Delta> {
        let variants = self.interned.entry((delta.log, delta.seq)).or_default();
        if let Some(same) = variants
            .iter()
            .find(|v| v.signature == delta.signature && v.body == delta.body && v.prev == delta.prev)
        {
            return same.clone();
        }
        let arc = Arc::new(delta);
        variants.push(arc.clone());
        arc
    }

    fn flush(&mut self, id: NodeId) {
        let Some(node) = self.nodes.get_mut(&id) else { return };
        node.flush_scheduled = false;
        if node.engine.is_none() {
            return;
        }
        let deltas = std::mem::take(&mut node.pending);
        let sends = std::mem::take(&mut node.pending_sends);
        let acks = std::mem::take(&mut node.pending_acks);
        for delta in deltas {
            let key = (delta.log, delta.seq);
            let arc = self.intern(delta);
            if let Some(node) = self.nodes.get_mut(&id) {
                node.durable.push(arc);
            }
            if let Some((at, holders)) = self.published.get_mut(&key) {
                *holders += 1;
                if Some(&*holders) == self.holders_needed.get(&key.0) {
                    self.convergence.push(self.now - *at);
                }
            }
        }
        for (log, seq, at) in acks {
            let holders = 1;
            if let Some(node) = self.nodes.get(&id) {
                if let Some(d) = node.durable.get(log, seq) {
                    self.acked.push((log, seq, d.hash()));
                }
            }
            self.published.insert((log, seq), (at, holders));
            if self.holders_needed.get(&log) == Some(&1) {
                self.convergence.push(self.now - at);
            }
        }
        for action in sends {
            self.send(id, action);
        }
    }

    fn send(&mut self, from: NodeId, action: Action) {
        let (to, frames) = match action {
            Action::Send { peer, frame } => (peer, vec![frame]),
            Action::SendRange { peer, log, from: first, to: last } => {
                let Some(node) = self.nodes.get(&from) else { return };
                let mut frames = Vec::new();
                let mut batch = Vec::new();
                let mut bytes = 0;
                for seq in first..=last {
                    let Some(d) = node.durable.get(log, seq) else { break };
                    let size = d.body.len() + 128;
                    if batch.len() == MAX_BATCH_DELTAS || bytes + size > MAX_BATCH_BYTES {
                        frames.push(Frame::Deltas(std::mem::take(&mut batch)));
                        bytes = 0;
                    }
                    bytes += size;
                    batch.push(Delta::clone(d));
                }
                if !batch.is_empty() {
                    frames.push(Frame::Deltas(batch));
                }
                (peer, frames)
            }
            Action::Disconnect { peer, .. } => {
                self.link_down(from, peer, false);
                return;
            }
            Action::Persist(_) | Action::Reject(_) => return,
        };
        for mut frame in frames {
            let Some(link) = self.link_mut(from, to) else { return };
            if !link.up {
                return;
            }
            let generation = link.generation;
            if self.tamper.contains(&(from, to)) {
                if let Frame::Deltas(ds) = &mut frame {
                    for d in ds.iter_mut().filter(|d| d.log.origin != from) {
                        tamper(d);
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
            self.schedule(at, Sched::Deliver { from, to, generation, frame });
        }
    }

    fn deliver(&mut self, from: NodeId, to: NodeId, generation: u64, frame: Frame) {
        let current = self.link_mut(from, to).map(|l| (l.up, l.generation));
        if current != Some((true, generation)) {
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
                // Certificates (and so Joins, signatures and chain hashes) carry fresh
                // keys each run; catalog bodies and positions derive from the seed.
                self.trace.update(b"D");
                for d in ds {
                    self.trace.update(&d.log.origin.code().to_be_bytes());
                    self.trace.update(&[d.log.scope as u8]);
                    self.trace.update(&d.seq.to_be_bytes());
                    if d.seq > 1 {
                        self.trace.update(&d.body);
                    }
                }
            }
            Frame::Need { log, from } => {
                self.trace.update(b"N");
                self.trace.update(&log.origin.code().to_be_bytes());
                self.trace.update(&from.to_be_bytes());
            }
        }
        let now = self.unix_now();
        if let Some(engine) = self.nodes.get_mut(&to).and_then(|n| n.engine.as_mut()) {
            let actions = engine.handle(now, Event::Frame { peer: from, frame });
            self.take(to, actions);
        }
    }

    fn publish(&mut self, id: NodeId, scope: Scope) {
        let now = self.unix_now();
        let Some(node) = self.nodes.get_mut(&id) else { return };
        let Some(engine) = node.engine.as_mut() else { return };
        let scope = if node.tier == Tier::National { Scope::Federation } else { scope };
        let entry = self.workload.next_change(id);
        let mut actions = Vec::new();
        let result = engine.originate(now, scope, &DeltaBody::Catalog(entry), &mut actions);
        if let Ok(delta) = result {
            node.pending_acks.push((delta.log, delta.seq, self.now));
        }
        self.take(id, actions);
    }

    /// The nodes `id` shares a link with.
    fn neighbours(&self, id: NodeId) -> Vec<NodeId> {
        self.links
            .keys()
            .filter(|(a, b)| *a == id || *b == id)
            .map(|(a, b)| if *a == id { *b } else { *a })
            .collect()
    }

    fn crash(&mut self, id: NodeId) {
        let peers = self.neighbours(id);
        for peer in peers {
            self.link_down(id, peer, false);
        }
        if let Some(node) = self.nodes.get_mut(&id) {
            node.engine = None;
            node.pending.clear();
            node.pending_sends.clear();
            node.pending_acks.clear();
        }
    }

    fn restart(&mut self, id: NodeId) -> Result<(), SimError> {
        if self.nodes.get(&id).is_some_and(|n| n.engine.is_some()) {
            return Err(SimError::Scenario(format!("restart: {id} is running")));
        }
        self.boot(id)?;
        let peers = self.neighbours(id);
        for peer in peers {
            let at = self.now + self.network.reconnect_ms;
            self.schedule(at, Sched::Reconnect { a: id, b: peer });
        }
        Ok(())
    }

    /// Runs scheduled events up to `until` (inclusive), or until `stop` says so.
    fn run_until(&mut self, until: Ms, mut stop: impl FnMut(&Self) -> bool) -> Result<bool, SimError> {
        let wall = Instant::now();
        let mut last_progress = wall;
        while let Some(Reverse((at, _, slot))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = at;
            self.events += 1;
            let Some(what) = self.slots.get_mut(slot).and_then(Option::take) else { continue };
            match what {
                Sched::Deliver { from, to, generation, frame } => self.deliver(from, to, generation, frame),
                Sched::Flush { node } => self.flush(node),
                Sched::Publish { node, scope } => {
                    self.publishes_ahead -= 1;
                    self.publish(node, scope);
                }
                Sched::Reconnect { a, b } => self.link_up(a, b),
            }
            if self.events % 4096 == 0 {
                if stop(self) {
                    return Ok(true);
                }
                if self.progress && last_progress.elapsed().as_secs() >= 1 {
                    last_progress = Instant::now();
                    eprint!(
                        "\r[sim] t={:>8.1}s  events={:>10}  acked={:>7}  converged={:>7}  frames={:>9}",
                        self.now as f64 / 1000.0,
                        self.events,
                        self.acked.len(),
                        self.convergence.len(),
                        self.frames
                    );
                }
            }
        }
        Ok(stop(self))
    }

    fn converged(&self) -> bool {
        if self.publishes_ahead > 0 {
            return false;
        }
        let alive: Vec<(&NodeId, &Engine)> =
            self.nodes.iter().filter_map(|(id, n)| n.engine.as_ref().map(|e| (id, e))).collect();
        if alive.iter().any(|(id, _)| self.nodes.get(id).is_some_and(|n| !n.pending.is_empty())) {
            return false;
        }
        let mut best: HashMap<LogId, u64> = HashMap::new();
        for (_, engine) in &alive {
            for (log, seq) in engine.version_vector() {
                let e = best.entry(log).or_default();
                *e = (*e).max(seq);
            }
        }
        alive.iter().all(|(id, engine)| {
            best.iter().all(|(log, seq)| !log.visible_at(**id) || engine.head(*log) >= *seq)
        })
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
                Step::Crash { node } => self.crash(*node),
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
                Step::Delay { node, ms } => {
                    self.delays.insert(*node, *ms);
                }
                Step::Wait { ms } => {
                    let until = self.now + ms;
                    self.run_until(until, |_| false)?;
                    self.now = until;
                }
                Step::Converge { max_ms } => {
                    let until = self.now + max_ms;
                    if !self.run_until(until, |s| s.converged())? {
                        converge_failures.push(format!("step {i}: no convergence within {max_ms} ms"));
                    }
                }
            }
        }
        if self.progress {
            eprintln!();
        }
        let views: BTreeMap<NodeId, NodeView<'_>> = self
            .nodes
            .iter()
            .map(|(id, n)| (*id, NodeView { alive: n.engine.is_some(), durable: &n.durable }))
            .collect();
        let mut outcome = invariants::check(&views, &self.acked, &self.verifier);
        outcome.violations.extend(converge_failures);
        let wall = wall.elapsed();
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
            wall_seconds: wall.as_secs_f64(),
            simulated_seconds: self.now as f64 / 1000.0,
            convergence: Convergence::from_ms(&convergence, changes),
            frames: self.frames,
            bytes: self.bytes,
            bytes_per_change: if changes > 0 { self.bytes as f64 / changes as f64 } else { 0.0 },
            frames_per_change: if changes > 0 { self.frames as f64 / changes as f64 } else { 0.0 },
            rejected: self.rejected.clone(),
            trace_digest: self.trace.finalize().to_hex().to_string(),
            peak_rss_bytes: crate::report::peak_rss(),
            idle_rss_bytes: 0,
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

#[cfg(test)]
mod tests {
    use super::*;
    use cascade_protocol::{codec, Delta, GENESIS_HASH};

    #[test]
    fn wire_size_matches_the_codec() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let log = LogId { origin: "370100".parse().unwrap(), scope: Scope::Province };
        let d =
            Delta::sign(&key, log, 1, GENESIS_HASH, &DeltaBody::Join { chain: vec![vec![1, 2, 3]] }).unwrap();
        for frame in [
            Frame::Deltas(vec![d.clone(), d]),
            Frame::Hello { vv: vec![(log, 3), (log, 4)] },
            Frame::Need { log, from: 2 },
        ] {
            assert_eq!(wire_size(&frame), codec::encode(&frame).unwrap().len() as u64 + 4, "{frame:?}");
        }
    }
}
