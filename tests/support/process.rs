//! Nodes as processes of their own: `cascade run` started from a written
//! configuration, and a client of its admin API.

use cascade_launcher::topology::Topology;
use cascade_launcher::{Federation, LaunchOptions};
use cascade_protocol::org::Organization;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokio::process::Child;

/// An HTTP client of one node's admin API.
#[derive(Clone)]
pub struct Api {
    /// The admin URL (`http://127.0.0.1:port`).
    pub url: String,
    /// The node's admin token.
    pub token: String,
    /// The client.
    pub http: reqwest::Client,
}

impl Api {
    /// A client of the node serving at `url`, whose data folder is `data_dir`.
    pub fn of(url: &str, data_dir: &Path) -> Api {
        let token = std::fs::read_to_string(data_dir.join(cascade_runtime::TOKEN_FILE)).expect("admin token");
        Api { url: url.to_string(), token: token.trim().to_string(), http: reqwest::Client::new() }
    }

    /// One call: status and JSON answer (null when there is none); retried
    /// while the node answers that it is recovering, like `Fed::post`.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let once = || async { self.try_call(method, path, body.clone()).await.expect("the node answers") };
        crate::while_recovering(once).await
    }

    /// One call, once: `None` when the node does not answer (it is down).
    pub async fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Option<(u16, Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).ok()?;
        let mut req = self.http.request(method, format!("{}{path}", self.url)).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.ok()?;
        Some((resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null)))
    }
}

/// How long a node process may take to say it serves.
const START_WITHIN: std::time::Duration = std::time::Duration::from_secs(120);

/// Starts `BIN run --config CONFIG` (the cascade binary; warnings logged to a
/// file beside CONFIG); answers the process (killed when dropped) and its
/// admin URL (from the line it prints once serving).
pub async fn spawn_node(bin: &Path, config: &Path) -> (Child, String) {
    let log = config.with_extension("log");
    let log = cascade_launcher::processes::NodeLog { file: &log, filter: Some("warn"), format: "text" };
    cascade_launcher::processes::spawn_node(bin, config, log, START_WITHIN).await.expect("cascade run")
}

/// A process's peak resident memory (`VmHWM`) in bytes, 0 when unknown.
pub fn peak_resident_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Registers the city `division`'s first organization (named `name`) at the
/// node `api`, catalogs an entry of it and publishes it federation-wide, open to
/// unconditional sharing; answers the entry's code.
pub async fn publish_entry(api: &Api, division: &str, name: &str) -> String {
    let provider = Organization::government_code(crate::nid(division), 1);
    let org = json!({"credit_code": provider, "name": name, "division": division.parse::<u32>().expect("division")});
    assert_eq!(api.call("POST", "/api/v1/organizations", Some(org)).await.0, 201);
    let mut entry = crate::entry("企业年报");
    entry["provider"] = json!(provider);
    let (_, saved) = api.call("POST", "/api/v1/catalog", Some(entry)).await;
    let code = saved["code"].as_str().expect("a code").to_string();
    let publish = json!({"scope": "federation"});
    let path = format!("/api/v1/catalog/{}/publish", crate::encode(&code));
    assert_eq!(api.call("POST", &path, Some(publish)).await.0, 200);
    code
}

/// Pushes `body` as the next version of `origin`'s entry `code`; answers the
/// status and the answer.
pub async fn push_version(api: &Api, origin: &str, code: &str, body: Vec<u8>) -> (u16, Value) {
    try_push_version(api, origin, code, body).await.expect("the node answers")
}

/// Like `push_version`, once: `None` when the node does not answer.
pub async fn try_push_version(api: &Api, origin: &str, code: &str, body: Vec<u8>) -> Option<(u16, Value)> {
    let resp = api
        .http
        .put(format!("{}/api/v1/datasets/{origin}/{}/versions", api.url, crate::encode(code)))
        .bearer_auth(&api.token)
        .body(body)
        .send()
        .await
        .ok()?;
    Some((resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null)))
}

/// Registers the city `division`'s first organization (named `name`) at the
/// node `api`, applies for `origin`'s entry `code` for it, and waits until the
/// grant is held there and `version` of the entry is known; answers the
/// version's path.
pub async fn hold_grant(
    api: &Api,
    division: &str,
    name: &str,
    origin: &str,
    code: &str,
    version: u64,
) -> String {
    let consumer = Organization::government_code(crate::nid(division), 1);
    let org = json!({"credit_code": consumer, "name": name, "division": division.parse::<u32>().expect("division")});
    assert_eq!(api.call("POST", "/api/v1/organizations", Some(org)).await.0, 201);
    let entry = format!("/api/v1/catalog/{}?origin={origin}", crate::encode(code));
    crate::eventually("the entry arrives", || async { api.call("GET", &entry, None).await.0 == 200 }).await;
    let apply = json!({"resource": {"entry": {"origin": origin.parse::<u32>().expect("origin"), "code": code}},
        "consumer": consumer, "purpose": "statistics", "period_days": 30});
    let (status, a) = api.call("POST", "/api/v1/applications", Some(apply)).await;
    assert_eq!(status, 201, "{a}");
    let application = format!("/api/v1/applications/{}", a["id"].as_str().expect("an id"));
    crate::eventually("the grant is held", || async {
        api.call("GET", &application, None).await.1["state"] == "granted"
    })
    .await;
    let version = format!("/api/v1/datasets/{origin}/{}/versions/{version}", crate::encode(code));
    crate::eventually("the version is known", || async { api.call("GET", &version, None).await.0 == 200 })
        .await;
    version
}

/// One node run as a process.
struct Running {
    child: Child,
    api: Api,
}

/// A federation whose every node is a `cascade run` process.
pub struct Processes {
    bin: PathBuf,
    /// The nodes' folders, removed when dropped (after the nodes are killed).
    _dir: tempfile::TempDir,
    configs: BTreeMap<String, PathBuf>,
    data: BTreeMap<String, PathBuf>,
    running: BTreeMap<String, Running>,
}

impl Processes {
    /// Writes every node's certificates and configuration (QUIC on fixed
    /// loopback ports, so a restarted parent is found again) and starts each,
    /// parents first.
    pub async fn launch(topology: &str, bin: &Path) -> Processes {
        let dir = tempfile::tempdir().expect("a folder");
        let topology = Topology::parse(topology).expect("the topology");
        let options = LaunchOptions { data: dir.path().to_path_buf(), admin_port_base: None };
        let fed = Federation::prepare(topology.clone(), &options).expect("certificates");
        let quic: BTreeMap<_, _> = topology
            .nodes
            .iter()
            .map(|n| (n.id, cascade_launcher::processes::free_quic_addr().expect("a free port")))
            .collect();
        let mut processes = Processes {
            bin: bin.to_path_buf(),
            configs: BTreeMap::new(),
            data: BTreeMap::new(),
            running: BTreeMap::new(),
            _dir: dir,
        };
        for node in &topology.nodes {
            let mut config = fed.config(node.id).expect("a configuration");
            config.listen = quic[&node.id];
            config.parent_addr = node.parent.map(|p| quic[&p]);
            let path = cascade_launcher::processes::write_config(&config).expect("written");
            processes.configs.insert(node.id.to_string(), path);
            processes.data.insert(node.id.to_string(), config.data_dir.clone());
            processes.start(&node.id.to_string()).await;
        }
        processes
    }

    /// Starts node `id` from its configuration.
    pub async fn start(&mut self, id: &str) {
        let (child, url) = spawn_node(&self.bin, &self.configs[id]).await;
        let api = Api::of(&url, &self.data[id]);
        self.running.insert(id.to_string(), Running { child, api });
    }

    /// Kills node `id` with SIGKILL: nothing of the process runs on.
    pub async fn kill(&mut self, id: &str) {
        if let Some(mut running) = self.running.remove(id) {
            let _ = running.child.kill().await;
        }
    }

    /// The client of a running node.
    pub fn api(&self, id: &str) -> Api {
        self.running[id].api.clone()
    }

    /// The ids of the nodes.
    pub fn ids(&self) -> Vec<String> {
        self.configs.keys().cloned().collect()
    }

    /// A running node's peak resident memory in bytes (0 when unknown).
    pub fn peak_resident(&self, id: &str) -> u64 {
        self.running.get(id).and_then(|r| r.child.id()).map_or(0, peak_resident_of)
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        // Before the folder goes: SIGKILL to every node still running.
        for running in self.running.values_mut() {
            let _ = running.child.start_kill();
        }
    }
}
