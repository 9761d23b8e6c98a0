//! Nodes of a real-mode run that are processes of their own (`cascade run`),
//! so that a `crash` step is a SIGKILL: the node loses whatever it had not made
//! durable, as on a real machine, instead of only having its tasks dropped
//! inside the simulator's process. The simulator reaches them through their
//! admin API: it publishes there and reads their heads there.

use super::Tracker;
use crate::report::ProcessKills;
use crate::workload::{provider_of, Change};
use crate::SimError;
use cascade_launcher::processes::{spawn_node, NodeLog};
use cascade_protocol::{LogId, NodeId, Scope};
use cascade_runtime::NodeConfig;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::Child;
use tokio::task::JoinHandle;

/// How often a process node's heads are read from its admin API: often enough
/// that a change's convergence time is off by tens of milliseconds at most,
/// rarely enough that the few processes of a run cost nothing beside it.
const HEADS_EVERY: Duration = Duration::from_millis(50);

/// How long a started process may take to say where it serves (opening a big
/// store and recovering its logs included).
const START_WITHIN: Duration = Duration::from_secs(120);

/// How long one call of a process node's admin API may take: a node that
/// accepted the connection and then stalls must not stall the run.
const HTTP_WITHIN: Duration = Duration::from_secs(10);

/// How long a process may take to stop after SIGTERM before it is killed: its
/// own shutdown grace is 5 s.
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// Each running process node's heads as last read.
pub(super) type Heads = Arc<Mutex<HashMap<NodeId, HashMap<LogId, u64>>>>;

/// Each running process node's admin API.
pub(super) type Apis = Arc<Mutex<HashMap<NodeId, Api>>>;

fn err(e: impl std::fmt::Display) -> SimError {
    SimError::Node(e.to_string())
}

/// A client of one process node's admin API.
#[derive(Clone)]
pub(super) struct Api {
    url: String,
    token: String,
    http: reqwest::Client,
    /// Changes acknowledged at any process node (shared by their clients).
    acknowledged: Arc<AtomicU64>,
}

/// One head as the node's `GET /api/v1/node` shows it.
#[derive(Deserialize)]
struct Head {
    origin: NodeId,
    scope: Scope,
    seq: u64,
}

/// What saving or publishing an entry answers (the fields used here).
#[derive(Deserialize)]
struct Saved {
    scope: Scope,
    delta_seq: Option<u64>,
}

impl Api {
    /// `POST path` with `body`: the answer when it was a success.
    async fn post(&self, path: &str, body: Value) -> Option<Value> {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    /// The node's heads, `None` when it does not answer.
    async fn heads(&self) -> Option<Vec<Head>> {
        let resp =
            self.http.get(format!("{}/api/v1/node", self.url)).bearer_auth(&self.token).send().await.ok()?;
        let mut node: Value = resp.json().await.ok()?;
        serde_json::from_value(node.get_mut("version_vector")?.take()).ok()
    }

    /// Asks the node to checkpoint its audit chain; whether it did.
    pub(super) async fn checkpoint_audit(&self) -> bool {
        self.post("/api/v1/audit/checkpoints", json!({})).await.is_some()
    }

    /// Makes `change` at the node `me` as its own tools would, command after
    /// command; answers the changes acknowledged (their log and seq). A
    /// command refused (racing its own entry, the node recovering) or not
    /// answered ends the change.
    pub(super) async fn change(&self, me: NodeId, change: Change) -> Vec<(LogId, u64)> {
        let mut acked = Vec::new();
        let publish = |code: &str| format!("/api/v1/catalog/{}/publish", encode(code));
        let steps: Vec<(String, Value)> = match change {
            Change::New(draft, scope) => {
                let code = draft.code.clone().unwrap_or_default();
                vec![
                    ("/api/v1/catalog".into(), json!(draft)),
                    (publish(&code), json!({ "scope": scope.as_str() })),
                ]
            }
            Change::Update(draft) => vec![("/api/v1/catalog".into(), json!(draft))],
            Change::Withdraw(code) => {
                vec![(format!("/api/v1/catalog/{}/withdraw", encode(&code)), json!({}))]
            }
            Change::Republish(code) => vec![(publish(&code), json!({}))],
            Change::Service(draft) => {
                let mut body = json!(draft);
                body["upstream"] = json!("http://upstream.sim/");
                vec![("/api/v1/services".into(), body)]
            }
        };
        for (path, body) in steps {
            let Some(answer) = self.post(&path, body).await else { return acked };
            if let Ok(Saved { scope, delta_seq: Some(seq) }) = serde_json::from_value::<Saved>(answer) {
                self.acknowledged.fetch_add(1, Ordering::Relaxed);
                acked.push((LogId { origin: me, scope }, seq));
            }
        }
        acked
    }
}

/// A code as one path segment: every byte but the unreserved ones of RFC 3986
/// percent-encoded (codes hold a `/`).
fn encode(code: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(code.len());
    for b in code.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// One running process.
struct Running {
    child: Child,
    /// Reads its heads into `Processes::heads` and the tracker.
    watcher: JoinHandle<()>,
    /// Cleared, under the heads' lock, when the node is killed or stopped.
    alive: Arc<AtomicBool>,
}

/// The nodes run as processes.
pub(super) struct Processes {
    bin: PathBuf,
    /// Each process node's configuration file and data folder.
    nodes: HashMap<NodeId, (PathBuf, PathBuf)>,
    running: HashMap<NodeId, Running>,
    /// Each running process node's heads reader.
    readers: HashMap<NodeId, HeadsReader>,
    pub(super) heads: Heads,
    pub(super) apis: Apis,
    kills: u64,
    acknowledged: Arc<AtomicU64>,
}

impl Processes {
    /// No process yet; `bin` is the `cascade` binary.
    pub(super) fn new(bin: &Path) -> Processes {
        Processes {
            bin: bin.to_path_buf(),
            nodes: HashMap::new(),
            running: HashMap::new(),
            readers: HashMap::new(),
            heads: Arc::default(),
            apis: Arc::default(),
            kills: 0,
            acknowledged: Arc::default(),
        }
    }

    /// The kills so far, and the changes acknowledged at process nodes.
    pub(super) fn tally(&self) -> ProcessKills {
        ProcessKills { kills: self.kills, acknowledged: self.acknowledged.load(Ordering::Relaxed) }
    }

    /// Whether `id` runs as a process.
    pub(super) fn holds(&self, id: NodeId) -> bool {
        self.nodes.contains_key(&id)
    }

    /// The admin API of the process node `id`, when it runs.
    pub(super) fn api(&self, id: NodeId) -> Option<Api> {
        self.apis.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }

    /// The process nodes running now.
    pub(super) fn running(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.running.keys().copied()
    }

    /// Writes `config` next to the node's data folder and starts the node from
    /// it; registers its provider organization.
    pub(super) async fn launch(
        &mut self,
        config: &NodeConfig,
        tracker: &Arc<Mutex<Tracker>>,
    ) -> Result<(), SimError> {
        let file = cascade_launcher::processes::write_config(config).map_err(err)?;
        self.nodes.insert(config.id, (file, config.data_dir.clone()));
        self.start(config.id, tracker).await?;
        let api = self.apis.lock().unwrap_or_else(|p| p.into_inner()).get(&config.id).cloned();
        let org = json!(provider_of(config.id));
        match api {
            Some(api) if api.post("/api/v1/organizations", org).await.is_some() => Ok(()),
            _ => Err(err(format!("{} did not register its organization", config.id))),
        }
    }

    /// Starts (or restarts) the process node `id` from its configuration and
    /// data folder; its log goes to a file beside that folder.
    pub(super) async fn start(&mut self, id: NodeId, tracker: &Arc<Mutex<Tracker>>) -> Result<(), SimError> {
        if self.running.contains_key(&id) {
            return Err(SimError::Scenario(format!("{id} is already running")));
        }
        let (file, data) = self.nodes.get(&id).cloned().ok_or_else(|| err(format!("{id} is no process")))?;
        // Dropped (an early return below), the child is killed.
        let (child, url) = spawn_node(
            &self.bin,
            &file,
            NodeLog { file: &data.with_extension("log"), filter: Some("warn"), format: "text" },
            START_WITHIN,
        )
        .await
        .map_err(err)?;
        let token = std::fs::read_to_string(data.join(cascade_runtime::TOKEN_FILE)).map_err(err)?;
        let api = Api {
            url: url.to_string(),
            token: token.trim().to_string(),
            http: reqwest::Client::builder().timeout(HTTP_WITHIN).build().map_err(err)?,
            acknowledged: self.acknowledged.clone(),
        };
        self.apis.lock().unwrap_or_else(|p| p.into_inner()).insert(id, api.clone());
        // No heads yet: the node is running but holds nothing known, so the
        // federation is not converged until it has said what it holds.
        self.heads.lock().unwrap_or_else(|p| p.into_inner()).insert(id, HashMap::new());
        let alive = Arc::new(AtomicBool::new(true));
        let reader = HeadsReader {
            id,
            api,
            heads: self.heads.clone(),
            tracker: tracker.clone(),
            alive: alive.clone(),
        };
        self.readers.insert(id, reader.clone());
        let watcher = tokio::spawn(async move {
            let mut every = tokio::time::interval(HEADS_EVERY);
            loop {
                every.tick().await;
                reader.read().await;
            }
        });
        self.running.insert(id, Running { child, watcher, alive });
        Ok(())
    }

    /// Reads every running process node's heads now; whether each answered.
    pub(super) async fn read_heads(&self) -> bool {
        let mut all = true;
        for reader in self.readers.values() {
            all &= reader.read().await;
        }
        all
    }

    /// Kills the process node `id` with SIGKILL: nothing of it runs on.
    pub(super) async fn kill(&mut self, id: NodeId) {
        if let Some(mut running) = self.running.remove(&id) {
            self.forget(id, &running);
            let _ = running.child.kill().await;
            self.kills += 1;
        }
    }

    fn forget(&mut self, id: NodeId, running: &Running) {
        running.watcher.abort();
        self.readers.remove(&id);
        let mut heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        running.alive.store(false, Ordering::Relaxed);
        heads.remove(&id);
        drop(heads);
        self.apis.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    /// Stops every process node as its operator would (SIGTERM, then SIGKILL
    /// after `STOP_WITHIN`), and waits until each has exited; says which did
    /// not stop cleanly.
    pub(super) async fn stop_all(&mut self) -> Vec<String> {
        let mut failures = Vec::new();
        for (id, mut running) in std::mem::take(&mut self.running) {
            self.forget(id, &running);
            match cascade_launcher::processes::stop(&mut running.child, STOP_WITHIN).await {
                Ok(status) if status.success() => {}
                Ok(status) => failures.push(format!("process node {id} stopped with {status}")),
                Err(e) => failures.push(format!("process node {id}: {e}")),
            }
        }
        failures
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        // The children themselves are killed as they are dropped.
        for running in self.running.values() {
            running.watcher.abort();
        }
    }
}

/// Reads one process node's heads into the shared map and the tracker.
#[derive(Clone)]
struct HeadsReader {
    id: NodeId,
    api: Api,
    heads: Heads,
    tracker: Arc<Mutex<Tracker>>,
    /// Cleared when the node is killed or stopped: a read that raced that
    /// counts for nothing (the node may have lost what it said it held).
    alive: Arc<AtomicBool>,
}

impl HeadsReader {
    /// One read; whether the node answered.
    async fn read(&self) -> bool {
        let Some(now) = self.api.heads().await else { return false };
        let now: HashMap<LogId, u64> =
            now.into_iter().map(|h| (LogId { origin: h.origin, scope: h.scope }, h.seq)).collect();
        let mut heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        if !self.alive.load(Ordering::Relaxed) {
            return false;
        }
        let mut t = self.tracker.lock().unwrap_or_else(|p| p.into_inner());
        for (log, seq) in &now {
            t.applied(self.id, *log, *seq);
        }
        heads.insert(self.id, now);
        true
    }
}
