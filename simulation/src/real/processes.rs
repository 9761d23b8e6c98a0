//! Nodes of a real-mode run that are processes of their own (`cascade run`),
//! so that a `crash` step is a SIGKILL: the node loses whatever it had not made
//! durable, as on a real machine, instead of only having its tasks dropped
//! inside the simulator's process. The simulator reaches them through their
//! admin API: it publishes there and reads their heads there.

use super::Tracker;
use crate::report::ProcessKills;
use crate::workload::{provider_of, Change};
use crate::SimError;
use cascade_protocol::{LogId, NodeId, Scope};
use cascade_runtime::NodeConfig;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often a process node's heads are read from its admin API: often enough
/// that a change's convergence time is off by tens of milliseconds at most,
/// rarely enough that the few processes of a run cost nothing beside it.
const HEADS_EVERY: Duration = Duration::from_millis(50);

/// How long a started process may take to say where it serves (opening a big
/// store and recovering its logs included).
const START_WITHIN: Duration = Duration::from_secs(120);

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

/// A code as one path segment (codes hold a `/`).
fn encode(code: &str) -> String {
    code.replace('%', "%25").replace('/', "%2F")
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
        let file = config.data_dir.with_extension("toml");
        std::fs::create_dir_all(&config.data_dir).map_err(err)?;
        std::fs::write(&file, toml::to_string(config).map_err(err)?).map_err(err)?;
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
    /// data folder.
    pub(super) async fn start(&mut self, id: NodeId, tracker: &Arc<Mutex<Tracker>>) -> Result<(), SimError> {
        let (file, data) = self.nodes.get(&id).cloned().ok_or_else(|| err(format!("{id} is no process")))?;
        let mut child = Command::new(&self.bin)
            .args(["run", "--config"])
            .arg(&file)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| err(format!("starting {}: {e}", self.bin.display())))?;
        // It prints one line once serving: `node … admin http://… token file …`.
        let stdout = child.stdout.take().ok_or_else(|| err("no stdout"))?;
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = match tokio::time::timeout(START_WITHIN, line).await {
            Ok(Ok(Ok(line))) => line,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err(format!("{id} did not start within {START_WITHIN:?}")));
            }
        };
        let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(err(format!("{id} did not say where it serves: {line:?}")));
        };
        let token = std::fs::read_to_string(data.join(cascade_runtime::TOKEN_FILE)).map_err(err)?;
        let api = Api {
            url: url.to_string(),
            token: token.trim().to_string(),
            http: reqwest::Client::new(),
            acknowledged: self.acknowledged.clone(),
        };
        self.apis.lock().unwrap_or_else(|p| p.into_inner()).insert(id, api.clone());
        // No heads yet: the node is running but holds nothing known, so the
        // federation is not converged until it has said what it holds.
        self.heads.lock().unwrap_or_else(|p| p.into_inner()).insert(id, HashMap::new());
        let (heads, tracker) = (self.heads.clone(), tracker.clone());
        let alive = Arc::new(AtomicBool::new(true));
        let still = alive.clone();
        let watcher = tokio::spawn(async move {
            let mut every = tokio::time::interval(HEADS_EVERY);
            loop {
                every.tick().await;
                let Some(now) = api.heads().await else { continue };
                let mut t = tracker.lock().unwrap_or_else(|p| p.into_inner());
                for h in &now {
                    t.applied(id, LogId { origin: h.origin, scope: h.scope }, h.seq);
                }
                drop(t);
                let now =
                    now.into_iter().map(|h| (LogId { origin: h.origin, scope: h.scope }, h.seq)).collect();
                let mut heads = heads.lock().unwrap_or_else(|p| p.into_inner());
                // A read that raced the node's kill does not bring it back.
                if still.load(Ordering::Relaxed) {
                    heads.insert(id, now);
                }
            }
        });
        self.running.insert(id, Running { child, watcher, alive });
        Ok(())
    }

    /// Kills the process node `id` with SIGKILL: nothing of it runs on.
    pub(super) fn kill(&mut self, id: NodeId) {
        if let Some(mut running) = self.running.remove(&id) {
            let _ = running.child.kill();
            let _ = running.child.wait();
            self.kills += 1;
            self.forget(id, &running);
        }
    }

    fn forget(&self, id: NodeId, running: &Running) {
        running.watcher.abort();
        let mut heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        running.alive.store(false, Ordering::Relaxed);
        heads.remove(&id);
        drop(heads);
        self.apis.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }

    /// Stops every process node as its operator would (SIGTERM, then SIGKILL
    /// after `STOP_WITHIN`); says which did not stop cleanly.
    pub(super) async fn stop_all(&mut self) -> Vec<String> {
        let mut failures = Vec::new();
        for (id, running) in std::mem::take(&mut self.running) {
            self.forget(id, &running);
            let pid = rustix::process::Pid::from_child(&running.child);
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let mut child = running.child;
            let waited = tokio::task::spawn_blocking(move || {
                let status = child.wait();
                (child, status)
            });
            match tokio::time::timeout(STOP_WITHIN, waited).await {
                Ok(Ok((_, Ok(status)))) if status.success() => {}
                Ok(Ok((_, status))) => failures.push(format!("process node {id} stopped with {status:?}")),
                Ok(Err(e)) => failures.push(format!("waiting for process node {id}: {e}")),
                Err(_) => {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                    failures.push(format!("process node {id} did not stop within {STOP_WITHIN:?}"));
                }
            }
        }
        failures
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for running in self.running.values_mut() {
            running.watcher.abort();
            let _ = running.child.kill();
            let _ = running.child.wait();
        }
    }
}

/// A UDP port free on 127.0.0.1 now: a process node's QUIC port is fixed before
/// it starts, so that its children find it, also after it restarts.
pub(super) fn free_quic_addr() -> Result<SocketAddr, SimError> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").map_err(err)?;
    socket.local_addr().map_err(err)
}
