//! Real mode: every node of a topology over real QUIC on 127.0.0.1 with real
//! sled folders, in this process (and, when asked, the nodes that crash as
//! processes of their own, killed by SIGKILL); the scenario's faults are applied
//! at the transport (blocked links, killed and restarted nodes) and its time is
//! wall-clock time.

mod calls;
mod processes;

use crate::invariants::{self, Durable, NodeView};
use crate::report::{current_rss, peak_rss, Convergence, Report, Sample};
use crate::scenario::{plan_publishes, PlannedChange, Scenario, Step};
use crate::workload::Workload;
use crate::SimError;
use cascade_access::Principal;
use cascade_certs::FederationVerifier;
use cascade_core::Reply;
use cascade_launcher::topology::Topology;
use cascade_launcher::{Federation, LaunchOptions};
use cascade_protocol::{Hash, LogId, NodeId, Scope, Tier};
use cascade_runtime::{Applied, Node};
use cascade_store::Store;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::{JoinHandle, JoinSet};

/// Polling interval while waiting for convergence.
const POLL: Duration = Duration::from_millis(20);

/// How often the timeline is sampled: fine enough to see a trend within a
/// minute, coarse enough that a ten-minute soak prints a page.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// How a real-mode run is made.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Print each step as it starts.
    pub progress: bool,
    /// The `cascade` binary. When given, every node that a `crash` step names
    /// runs as a process of its own (`cascade run`) and crashes by SIGKILL,
    /// losing whatever it had not made durable; otherwise every node runs in
    /// this process and a crash drops its tasks.
    pub processes: Option<PathBuf>,
}

/// Convergence bookkeeping fed by every node's applied-delta notifications.
#[derive(Default)]
struct Tracker {
    heads: HashMap<(NodeId, LogId), u64>,
    /// Acknowledged changes still travelling: ack time and holders still missing.
    waiting: HashMap<(LogId, u64), (Instant, usize)>,
    /// Changes applied somewhere before their acknowledgement was recorded.
    early: HashMap<(LogId, u64), usize>,
    converged_ms: Vec<u64>,
    /// Every acknowledged change, in the order acknowledged.
    acknowledged: Vec<(LogId, u64)>,
}

impl Tracker {
    fn applied(&mut self, node: NodeId, log: LogId, seq: u64) {
        let head = self.heads.entry((node, log)).or_default();
        let from = *head + 1;
        *head = (*head).max(seq);
        for s in from..=seq {
            match self.waiting.get_mut(&(log, s)) {
                Some((at, missing)) => {
                    *missing = missing.saturating_sub(1);
                    if *missing == 0 {
                        self.converged_ms.push(at.elapsed().as_millis() as u64);
                        self.waiting.remove(&(log, s));
                    }
                }
                None => *self.early.entry((log, s)).or_default() += 1,
            }
        }
    }

    fn acked(&mut self, log: LogId, seq: u64, holders: usize, at: Instant) {
        self.acknowledged.push((log, seq));
        let already = self.early.remove(&(log, seq)).unwrap_or(0);
        if already >= holders {
            self.converged_ms.push(at.elapsed().as_millis() as u64);
        } else {
            self.waiting.insert((log, seq), (at, holders - already));
        }
    }
}

struct Run {
    fed: Federation,
    tracker: Arc<Mutex<Tracker>>,
    listeners: HashMap<NodeId, JoinHandle<()>>,
    rng: StdRng,
    workload: Arc<Mutex<Workload>>,
    ids: Arc<Vec<NodeId>>,
    /// Publish and call steps still under way.
    publishes: Vec<JoinHandle<()>>,
    /// The services called, once a `Calls` step set them up.
    calls: Option<calls::RealCalls>,
    /// The running nodes, for the tasks of publish and call steps to find
    /// them when a change or a call is due (a crashed node's handle must not
    /// outlive it: it holds its store open).
    live: Live,
    /// The nodes run as processes of their own.
    processes: processes::Processes,
}

/// The running nodes by id.
type Live = Arc<Mutex<HashMap<NodeId, Node>>>;

/// Makes `change` at `node` by the workload's commands, sent in order as the
/// node's own tools would; answers the changes acknowledged (their log and seq).
async fn made_at(node: &Node, change: crate::workload::Change) -> Vec<(LogId, u64)> {
    let mut acked = Vec::new();
    for command in change.commands() {
        // Changes racing their own entry's creation are refused (409): not acknowledged.
        let Ok(Reply::Entry(saved)) = node.execute(Principal::node(), command).await else {
            return acked;
        };
        if let Some(seq) = saved.delta_seq {
            acked.push((LogId { origin: node.identity().id, scope: saved.scope }, seq));
        }
    }
    acked
}

/// Tells the tracker every head `node` holds now.
fn holds(tracker: &Mutex<Tracker>, node: &Node) {
    let id = node.identity().id;
    let status = node.status();
    let mut t = tracker.lock().unwrap_or_else(|p| p.into_inner());
    for v in status.version_vector {
        t.applied(id, LogId { origin: v.origin, scope: v.scope }, v.seq);
    }
}

/// The running node `id`, if any.
fn live_node(live: &Live, id: NodeId) -> Option<Node> {
    live.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
}

fn node_err(e: impl std::fmt::Display) -> SimError {
    SimError::Node(e.to_string())
}

impl Run {
    fn node(&self, id: NodeId) -> Option<Node> {
        self.fed.node(id).map(|r| r.node.clone())
    }

    /// Feeds the tracker with what node `id` applies: what it holds now, then
    /// each delta it applies, and what it holds again whenever it applied more
    /// than its notification queue kept.
    fn listen(&mut self, id: NodeId) {
        let Some(node) = self.node(id) else { return };
        self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(id, node.clone());
        // Subscribed before its heads are read: nothing falls between the two.
        let mut rx = node.subscribe();
        holds(&self.tracker, &node);
        drop(node);
        let (tracker, live) = (self.tracker.clone(), self.live.clone());
        let task = tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(Applied { log, seq }) => {
                        if let Ok(mut t) = tracker.lock() {
                            t.applied(id, log, seq);
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if let Some(node) = live_node(&live, id) {
                            holds(&tracker, &node);
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        if let Some(old) = self.listeners.insert(id, task) {
            old.abort();
        }
    }

    /// Starts the task that makes a publish step's changes on time, each by
    /// the workload's commands sent in order as the node's own tools would (a
    /// long step draws each change when its time comes, not all at once).
    fn publish(&mut self, plan: Vec<PlannedChange>) {
        let (live, workload, tracker, ids) =
            (self.live.clone(), self.workload.clone(), self.tracker.clone(), self.ids.clone());
        let apis = self.processes.apis.clone();
        self.publishes.push(tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut changes = JoinSet::new();
            for c in plan {
                tokio::time::sleep_until(start + Duration::from_millis(c.offset_ms)).await;
                let api = apis.lock().unwrap_or_else(|p| p.into_inner()).get(&c.node).cloned();
                let node = live_node(&live, c.node);
                if api.is_none() && node.is_none() {
                    continue;
                }
                let scope = if c.node.tier() == Tier::National { Scope::Federation } else { c.scope };
                let change = workload.lock().unwrap_or_else(|p| p.into_inner()).next_change(c.node, scope);
                let (tracker, ids) = (tracker.clone(), ids.clone());
                changes.spawn(async move {
                    let acked = match (node, api) {
                        (Some(node), _) => made_at(&node, change).await,
                        (None, Some(api)) => api.change(c.node, change).await,
                        (None, None) => Vec::new(),
                    };
                    for (log, seq) in acked {
                        let holders = ids.iter().filter(|id| log.visible_at(**id)).count();
                        tracker.lock().unwrap_or_else(|p| p.into_inner()).acked(
                            log,
                            seq,
                            holders,
                            Instant::now(),
                        );
                    }
                });
                while changes.try_join_next().is_some() {}
            }
            while changes.join_next().await.is_some() {}
        }));
    }

    /// Samples the timeline every `SAMPLE_EVERY` until aborted.
    fn sample_timeline(&self, timeline: Arc<Mutex<Vec<Sample>>>) -> JoinHandle<()> {
        let tracker = self.tracker.clone();
        let calls = self.calls.as_ref().map(|c| c.tally_handle());
        tokio::spawn(async move {
            let start = Instant::now();
            let mut seen = 0;
            loop {
                tokio::time::sleep(SAMPLE_EVERY).await;
                let t = tracker.lock().unwrap_or_else(|p| p.into_inner());
                let mut window = t.converged_ms[seen.min(t.converged_ms.len())..].to_vec();
                seen = t.converged_ms.len();
                window.sort_unstable();
                let sample = Sample {
                    at_s: start.elapsed().as_secs_f64(),
                    rss_bytes: current_rss(),
                    acknowledged: t.acknowledged.len() as u64,
                    travelling: t.waiting.len(),
                    oldest_ms: t
                        .waiting
                        .values()
                        .map(|(at, _)| at.elapsed().as_millis() as u64)
                        .max()
                        .unwrap_or(0),
                    p99_ms: Convergence::from_ms(&window, 0).p99_ms as u64,
                    calls_served: calls
                        .as_ref()
                        .map_or(0, |c| c.lock().unwrap_or_else(|p| p.into_inner()).served),
                };
                drop(t);
                timeline.lock().unwrap_or_else(|p| p.into_inner()).push(sample);
            }
        })
    }

    fn converged(&self) -> bool {
        let alive: Vec<Node> = self.ids.iter().filter_map(|id| self.node(*id)).collect();
        let vvs: Vec<(NodeId, HashMap<LogId, u64>)> = alive
            .iter()
            .map(|n| {
                let vv = n
                    .status()
                    .version_vector
                    .iter()
                    .map(|v| (LogId { origin: v.origin, scope: v.scope }, v.seq))
                    .collect();
                (n.identity().id, vv)
            })
            .chain(self.processes.heads.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect();
        let mut best: HashMap<LogId, u64> = HashMap::new();
        for (_, vv) in &vvs {
            for (log, seq) in vv {
                let e = best.entry(*log).or_default();
                *e = (*e).max(*seq);
            }
        }
        vvs.iter().all(|(id, vv)| {
            best.iter().all(|(log, seq)| !log.visible_at(*id) || vv.get(log).copied().unwrap_or(0) >= *seq)
        })
    }

    async fn wait_converged(&mut self, max: Duration) -> bool {
        let start = Instant::now();
        loop {
            self.publishes.retain(|h| !h.is_finished());
            // Process nodes' heads are read every `HEADS_EVERY`: they are read
            // again before the run calls itself converged.
            if self.publishes.is_empty()
                && self.converged()
                && self.processes.read_heads().await
                && self.converged()
            {
                // A crashed node's last notifications die with its listener, and
                // its heads read as it restarts may predate what it had made
                // durable: what every node holds now is what the tracker counts.
                for node in self.live.lock().unwrap_or_else(|p| p.into_inner()).values() {
                    holds(&self.tracker, node);
                }
                return true;
            }
            if start.elapsed() > max {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Runs `scenario` on `topology` in real mode, in a temporary data folder.
pub async fn run(
    topology: &Topology,
    scenario: &Scenario,
    seed: u64,
    options: &Options,
) -> Result<Report, SimError> {
    for step in &scenario.steps {
        if matches!(
            step,
            Step::Tamper { .. }
                | Step::StopTamper { .. }
                | Step::TamperChunks { .. }
                | Step::StopTamperChunks { .. }
                | Step::Rekey { .. }
        ) {
            return Err(SimError::Scenario(
                "tampering and key hand-overs are simulated in deterministic mode; over real QUIC they are \
                 shown by tests/adversaries.rs"
                    .into(),
            ));
        }
    }
    let dir = std::env::temp_dir().join(format!("cascade-sim-{}-{seed}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = run_in(topology, scenario, seed, options, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The nodes run as processes: those a `crash` step names, when the options
/// give the binary; refuses faults that only in-process nodes take.
fn outside(scenario: &Scenario, options: &Options) -> Result<BTreeSet<NodeId>, SimError> {
    if options.processes.is_none() {
        return Ok(BTreeSet::new());
    }
    let crashed: BTreeSet<NodeId> = scenario
        .steps
        .iter()
        .filter_map(|s| if let Step::Crash { node } = s { Some(*node) } else { None })
        .collect();
    for step in &scenario.steps {
        let named = match step {
            Step::Partition { a, b } | Step::Heal { a, b } => vec![*a, *b],
            Step::Delay { node, .. } => vec![*node],
            _ => Vec::new(),
        };
        if let Some(id) = named.iter().find(|id| crashed.contains(id)) {
            return Err(SimError::Scenario(format!(
                "{id} crashes as a process of its own: links are cut and slowed only between in-process nodes \
                 ({step:?})"
            )));
        }
    }
    Ok(crashed)
}

/// Starts every node, parents first: in this process, or as a process of its
/// own when it is in `outside` (on a QUIC port fixed beforehand, where its
/// children and its restarts find it).
async fn launch(
    fed: &mut Federation,
    processes: &mut processes::Processes,
    outside: &BTreeSet<NodeId>,
    tracker: &Arc<Mutex<Tracker>>,
) -> Result<(), SimError> {
    let mut quic: HashMap<NodeId, std::net::SocketAddr> = HashMap::new();
    for node in fed.topology().nodes.clone() {
        if let Some(addr) = node.parent.and_then(|p| quic.get(&p)) {
            fed.set_parent_addr(node.id, *addr).map_err(node_err)?;
        }
        if !outside.contains(&node.id) {
            fed.start(node.id).await.map_err(node_err)?;
            if let Some(n) = fed.node(node.id) {
                let org = crate::workload::provider_of(node.id);
                n.node.register_organization(Principal::node(), org).await.map_err(node_err)?;
            }
            continue;
        }
        let mut config = fed.config(node.id).ok_or_else(|| node_err(format!("no node {}", node.id)))?;
        config.listen = cascade_launcher::processes::free_quic_addr().map_err(node_err)?;
        quic.insert(node.id, config.listen);
        processes.launch(&config, tracker).await?;
    }
    Ok(())
}

async fn run_in(
    topology: &Topology,
    scenario: &Scenario,
    seed: u64,
    options: &Options,
    dir: &std::path::Path,
) -> Result<Report, SimError> {
    let wall = Instant::now();
    let rss_before = current_rss();
    let outside = outside(scenario, options)?;
    let launch_options = LaunchOptions { data: dir.to_path_buf(), admin_port_base: None };
    let mut fed = Federation::prepare(topology.clone(), &launch_options).map_err(node_err)?;
    let tracker: Arc<Mutex<Tracker>> = Arc::default();
    let mut processes =
        processes::Processes::new(options.processes.as_deref().unwrap_or(std::path::Path::new("")));
    launch(&mut fed, &mut processes, &outside, &tracker).await?;
    let ids: Vec<NodeId> = topology.nodes.iter().map(|n| n.id).collect();
    let mut run = Run {
        processes,
        fed,
        tracker,
        listeners: HashMap::new(),
        rng: StdRng::seed_from_u64(seed),
        workload: Arc::new(Mutex::new(Workload::new(seed))),
        ids: Arc::new(ids.clone()),
        publishes: Vec::new(),
        calls: None,
        live: Arc::default(),
    };
    for id in &ids {
        run.listen(*id);
    }
    // The federation is linked up when every node holds every Join.
    if !run.wait_converged(Duration::from_secs(120)).await {
        return Err(SimError::Node("the federation did not link up within 120 s".into()));
    }
    let idle_rss = current_rss();
    let mut failures = Vec::new();
    // Services are set up before the timeline starts: their set-up is not load.
    // Providers and consumers are in-process nodes.
    let inside: Vec<NodeId> = ids.iter().copied().filter(|id| !outside.contains(id)).collect();
    for step in &scenario.steps {
        if matches!(step, Step::Calls { .. }) && run.calls.is_none() {
            let fed = &run.fed;
            let node = |id| fed.node(id).map(|r| r.node.clone());
            run.calls = Some(calls::RealCalls::set_up(&inside, node, &mut run.rng).await?);
        }
    }
    // Traffic is counted from here: the start-up's joins and catch-ups are not
    // the workload's (they were most of a short burst's frames).
    let traffic_before: HashMap<NodeId, (u64, u64)> = run
        .fed
        .nodes()
        .map(|(id, r)| (*id, (r.node.traffic().frames_out, r.node.traffic().bytes_out)))
        .collect();
    let timeline: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let sampler = run.sample_timeline(timeline.clone());
    for (i, step) in scenario.steps.iter().enumerate() {
        if options.progress {
            eprintln!("[sim] step {i}: {step:?}");
        }
        match step {
            Step::Publish { count, at, over_ms, scope } => {
                let plan = plan_publishes(*count, at, *over_ms, *scope, &ids, &mut run.rng);
                run.publish(plan);
            }
            Step::Calls { count, over_ms } => {
                if let Some(calls) = &run.calls {
                    let over = Duration::from_millis(*over_ms);
                    run.publishes.push(calls.start(*count, over, run.live.clone(), &mut run.rng));
                }
            }
            Step::Partition { a, b } | Step::Heal { a, b } => {
                let blocked = matches!(step, Step::Partition { .. });
                for (x, y) in [(*a, *b), (*b, *a)] {
                    if let Some(node) = run.node(x) {
                        node.set_link_blocked(y, blocked).await;
                    }
                }
            }
            Step::CheckpointAudit { node } => {
                // Refused only while the node recovers its own logs.
                if let Some(n) = run.node(*node) {
                    let _ = n.checkpoint_audit(cascade_access::Principal::node()).await;
                } else if let Some(api) = run.processes.api(*node) {
                    let _ = api.checkpoint_audit().await;
                }
            }
            Step::Crash { node } if run.processes.holds(*node) => run.processes.kill(*node).await,
            Step::Restart { node } if run.processes.holds(*node) => {
                run.processes.start(*node, &run.tracker).await?;
            }
            Step::Crash { node } => {
                run.live.lock().unwrap_or_else(|p| p.into_inner()).remove(node);
                run.fed.kill(*node).await.map_err(node_err)?;
                if let Some(l) = run.listeners.remove(node) {
                    l.abort();
                }
            }
            Step::Restart { node } => {
                run.fed.start(*node).await.map_err(node_err)?;
                run.listen(*node);
            }
            Step::Delay { node, ms } => {
                if let Some(n) = run.node(*node) {
                    n.set_send_delay(Duration::from_millis(*ms));
                }
            }
            Step::Wait { ms } => tokio::time::sleep(Duration::from_millis(*ms)).await,
            Step::Converge { max_ms } => {
                if !run.wait_converged(Duration::from_millis(*max_ms)).await {
                    failures.push(format!("step {i}: no convergence within {max_ms} ms"));
                }
            }
            Step::Tamper { .. }
            | Step::StopTamper { .. }
            | Step::TamperChunks { .. }
            | Step::StopTamperChunks { .. }
            | Step::Rekey { .. } => {}
        }
    }
    for handle in run.publishes.drain(..) {
        let _ = handle.await;
    }
    sampler.abort();
    let peak = peak_rss();
    // A node restarted meanwhile counts from its restart (what it sent before
    // its crash is lost with it).
    let (frames, bytes) = run
        .fed
        .nodes()
        .map(|(id, r)| {
            let now = r.node.traffic();
            match traffic_before.get(id) {
                Some(&(f, b)) if now.frames_out >= f => (now.frames_out - f, now.bytes_out.saturating_sub(b)),
                _ => (now.frames_out, now.bytes_out),
            }
        })
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));

    // Invariants over what every node made durable in its sled folder.
    let root = cascade_certs::read_chain_pem(&dir.join("pki").join("root.pem")).map_err(node_err)?;
    let verifier = FederationVerifier::new(root.into_iter().next().unwrap_or_default()).map_err(node_err)?;
    let mut stores: BTreeMap<NodeId, (bool, Durable, Option<String>)> = BTreeMap::new();
    let mut hashes: HashMap<(LogId, u64), Hash> = HashMap::new();
    let running: Vec<NodeId> = run.fed.nodes().map(|(id, _)| *id).chain(run.processes.running()).collect();
    failures.extend(run.processes.stop_all().await);
    let process_kills = run.processes.tally();
    for listener in run.listeners.values() {
        listener.abort();
    }
    // The nodes' handles go before their stores are opened again below.
    run.live.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let Run { fed, tracker, calls, .. } = run;
    fed.shutdown().await.map_err(node_err)?;
    for id in &ids {
        let path = dir.join(id.to_string()).join(cascade_runtime::STORE_DIR);
        let store = Store::open(&path, *id).map_err(node_err)?;
        let mut durable = Durable::new();
        let mut checkpoint = None;
        for delta in store.all_deltas() {
            let delta = delta.map_err(node_err)?;
            if delta.log.origin == *id {
                hashes.insert((delta.log, delta.seq), delta.hash());
                if let Ok(cascade_protocol::DeltaBody::AuditCheckpoint(c)) = delta.decode_body() {
                    checkpoint = Some(c);
                }
            }
            durable.push(Arc::new(delta));
        }
        // The audit log must hold together, and still hold what its latest
        // checkpoint witnessed.
        let verdict = store.audit_verify(checkpoint).map_err(node_err)?;
        let audit_break = verdict.reason.or(verdict.witnessed.and_then(|w| w.reason));
        stores.insert(*id, (running.contains(id), durable, audit_break));
    }
    let views: BTreeMap<NodeId, NodeView<'_>> = stores
        .iter()
        .map(|(id, (alive, d, audit_break))| {
            let logs = d.logs().map(|(log, deltas)| (*log, deltas.as_slice())).collect();
            (*id, NodeView { alive: *alive, logs, audit_break: audit_break.clone() })
        })
        .collect();
    let all_acked = tracker.lock().map(|t| t.acknowledged.clone()).unwrap_or_default();
    let acked: Vec<(LogId, u64, Hash)> = all_acked
        .iter()
        .map(|(log, seq)| (*log, *seq, hashes.get(&(*log, *seq)).copied().unwrap_or([0; 32])))
        .collect();
    let mut outcome = invariants::check(&views, &acked, &verifier);
    outcome.violations.extend(failures);
    match calls.as_ref().map(|c| c.check()) {
        Some(Ok(passed)) => outcome.passed.push(passed),
        Some(Err(violation)) => outcome.violations.push(violation),
        None => {}
    }
    let changes = acked.len() as u64;
    let mut converged = tracker.lock().map(|t| t.converged_ms.clone()).unwrap_or_default();
    converged.sort_unstable();
    let wall = wall.elapsed().as_secs_f64();
    let idle_rss_bytes = idle_rss.saturating_sub(rss_before);
    Ok(Report {
        mode: "real".into(),
        topology: topology.name.clone(),
        nodes: topology.nodes.len(),
        scenario: scenario.name.clone(),
        seed,
        changes_acknowledged: changes,
        wall_seconds: wall,
        simulated_seconds: wall,
        convergence: Convergence::from_ms(&converged, changes),
        frames,
        bytes,
        bytes_per_change: if changes > 0 { bytes as f64 / changes as f64 } else { 0.0 },
        frames_per_change: if changes > 0 { frames as f64 / changes as f64 } else { 0.0 },
        rejected: BTreeMap::new(),
        hand_overs: 0,
        process_kills,
        services: 0,
        applications: BTreeMap::new(),
        workflow_steps: 0,
        calls: calls.as_ref().map(|c| c.tally()).unwrap_or_default(),
        datasets: Default::default(),
        trace_digest: String::new(),
        peak_rss_bytes: peak,
        idle_rss_bytes,
        timeline: timeline.lock().map(|t| t.clone()).unwrap_or_default(),
        invariants: outcome,
    })
}
