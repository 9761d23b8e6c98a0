//! Helpers for the end-to-end tests: launch a federation on loopback, talk to its
//! admin API, poll with a deadline.

pub mod crash;
pub mod process;
pub mod python;

use cascade_launcher::topology::Topology;
use cascade_launcher::{Federation, LaunchOptions};
use cascade_protocol::org::Organization;
use cascade_protocol::NodeId;
use serde_json::{json, Value};
use std::future::Future;
use std::time::{Duration, Instant};

/// How long any convergence may take before a test fails. Generous: 2 noisy cores.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polling interval while waiting for convergence.
const POLL: Duration = Duration::from_millis(20);

/// A topology's `[[node]]` entries, written once: the national node, a
/// province under it, a city under a province.
macro_rules! national {
    () => {
        "[[node]]\nid = 100000\nname = \"中华人民共和国\"\ntier = \"national\"\n"
    };
}
macro_rules! province {
    ($id:literal, $name:literal) => {
        concat!("[[node]]\nid = ", $id, "\nname = \"", $name, "\"\ntier = \"provincial\"\nparent = 100000\n")
    };
}
macro_rules! city {
    ($id:literal, $name:literal, $parent:literal) => {
        concat!(
            "[[node]]\nid = ",
            $id,
            "\nname = \"",
            $name,
            "\"\ntier = \"municipal\"\nparent = ",
            $parent,
            "\n"
        )
    };
}

/// The three-tier topology plus a second, childless province (for "downstream of the
/// national node" checks).
pub const FOUR_PROVINCES: &str = concat!(
    "name = \"test\"\n",
    national!(),
    province!(370000, "山东省"),
    city!(370100, "济南市", 370000),
    city!(370200, "青岛市", 370000),
    province!(110000, "北京市"),
);

/// Two provinces with a city each: Jinan (370100) under Shandong, Guangzhou
/// (440100) under Guangdong — a call or an application between the cities
/// crosses four hops.
pub const TWO_PROVINCES: &str = concat!(
    "name = \"two-provinces\"\n",
    national!(),
    province!(370000, "山东省"),
    city!(370100, "济南市", 370000),
    province!(440000, "广东省"),
    city!(440100, "广州市", 440000),
);

/// The national node, Shandong with Jinan and Qingdao, Guangdong with Guangzhou.
pub const SIX_NODES: &str = concat!(
    "name = \"bench\"\n",
    national!(),
    province!(370000, "山东省"),
    city!(370100, "济南市", 370000),
    city!(370200, "青岛市", 370000),
    province!(440000, "广东省"),
    city!(440100, "广州市", 440000),
);

/// Reads frames until `pick` returns something, with the suite deadline.
pub async fn read_until<T>(
    recv: &mut quinn::RecvStream,
    mut pick: impl FnMut(cascade_protocol::Frame) -> Option<T>,
) -> T {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let (frame, _) = cascade_transport::read_frame(recv).await.expect("frame").expect("stream open");
            if let Some(t) = pick(frame) {
                return t;
            }
        }
    })
    .await
    .expect("timed out reading frames")
}

/// Parses a division code.
pub fn nid(s: &str) -> NodeId {
    s.parse().expect("division code")
}

/// A national node and one province: the smallest federation with a link.
pub const TWO_NODES: &str = concat!("name = \"test\"\n", national!(), province!(370000, "山东省"));

/// Raises this process's soft limit of open files to `wanted` (or the hard limit),
/// for tests that open thousands of connections.
pub fn raise_open_files(wanted: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let ceiling = limit.maximum.unwrap_or(wanted);
    if limit.current.is_some_and(|c| c < wanted.min(ceiling)) {
        limit.current = Some(wanted.min(ceiling));
        setrlimit(Resource::Nofile, limit).expect("raise the open-file limit");
    }
}

/// This process's resident memory, in bytes.
pub fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// A federation under test with its temp folder.
pub struct Fed {
    /// The federation.
    pub fed: Federation,
    /// Keeps the data folder alive.
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Fed {
    /// Launches every node of `topology`.
    pub async fn launch(topology: &str) -> Fed {
        let mut fed = Fed::prepare(topology);
        let ids: Vec<NodeId> = fed.fed.topology().nodes.iter().map(|n| n.id).collect();
        for id in ids {
            fed.fed.start(id).await.expect("start node");
        }
        fed
    }

    /// Prepares certificates and configs; starts nothing.
    pub fn prepare(topology: &str) -> Fed {
        let dir = tempfile::tempdir().expect("tempdir");
        let topology = Topology::parse(topology).expect("topology");
        let options = LaunchOptions { data: dir.path().to_path_buf(), admin_port_base: None };
        let fed = Federation::prepare(topology, &options).expect("prepare");
        Fed { fed, dir, http: reqwest::Client::new() }
    }

    /// Node `id`'s admin URL and bootstrap token.
    pub fn url_token(&self, id: &str) -> (String, String) {
        let node = self.fed.node(nid(id)).unwrap_or_else(|| panic!("{id} not running"));
        (node.admin_url.clone(), node.node.admin_token().to_string())
    }

    /// GET with the node's token; returns (status, body).
    pub async fn get(&self, id: &str, path: &str) -> (u16, Value) {
        let (url, token) = self.url_token(id);
        let resp = self.http.get(format!("{url}{path}")).bearer_auth(token).send().await.expect("GET");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// POST JSON with the node's token; returns (status, body). Retried while
    /// the node answers that it is recovering (as a client honouring its 503
    /// and Retry-After does), so a test may write to a node just restarted.
    pub async fn post(&self, id: &str, path: &str, body: Value) -> (u16, Value) {
        while_recovering(|| self.post_once(id, path, body.clone())).await
    }

    /// POST JSON once, whatever the answer.
    pub async fn post_once(&self, id: &str, path: &str, body: Value) -> (u16, Value) {
        let (url, token) = self.url_token(id);
        let resp =
            self.http.post(format!("{url}{path}")).bearer_auth(token).json(&body).send().await.expect("POST");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Registers node `id`'s own organization (a government body of its division)
    /// and returns its credit code.
    pub async fn register_org(&self, id: &str) -> String {
        let code = Organization::government_code(nid(id), 1);
        let body = json!({"credit_code": code, "name": format!("{id} 大数据局"), "division": nid(id)});
        let (status, reply) = self.post(id, "/api/v1/organizations", body).await;
        assert_eq!(status, 201, "{reply}");
        code
    }

    /// A valid entry whose provider is node `id`'s organization (registered here).
    pub async fn entry_at(&self, id: &str, name: &str) -> Value {
        let mut body = entry(name);
        body["provider"] = json!(self.register_org(id).await);
        body
    }

    /// Saves a draft and publishes it; returns its code.
    pub async fn publish(&self, id: &str, name: &str, scope: &str) -> String {
        let body = self.entry_at(id, name).await;
        let (status, saved) = self.post(id, "/api/v1/catalog", body).await;
        assert_eq!(status, 201, "{saved}");
        let code = saved["code"].as_str().expect("code").to_string();
        let (status, body) = self
            .post(id, &format!("/api/v1/catalog/{}/publish", encode(&code)), json!({"scope": scope}))
            .await;
        assert_eq!(status, 200, "{body}");
        code
    }

    /// The entry `code` of `origin` as node `at` sees it (status, version), if any.
    pub async fn seen(&self, at: &str, origin: &str, code: &str) -> Option<(String, u64)> {
        let (status, body) = self.get(at, &format!("/api/v1/catalog/{}?origin={origin}", encode(code))).await;
        (status == 200).then(|| {
            (body["status"].as_str().unwrap_or("").to_string(), body["version"].as_u64().unwrap_or(0))
        })
    }

    /// Polls until node `at` sees `code` of `origin` at `version` with `status`.
    pub async fn wait_seen(&self, at: &str, origin: &str, code: &str, status: &str, version: u64) {
        let want = Some((status.to_string(), version));
        eventually(&format!("{at} sees {origin}:{code} v{version} {status}"), || async {
            self.seen(at, origin, code).await == want
        })
        .await;
    }
}

/// A valid catalog entry body with the given name.
pub fn entry(name: &str) -> Value {
    json!({"name": name, "classification": "3", "provider": "91350100M000100Y43",
        "summary": "Basic registration data of enterprises", "format": "database",
        "data_items": [{"name": "统一社会信用代码", "data_type": "C", "length": 18}],
        "share_type": "unconditional", "share_mode": "platform", "open_type": "closed",
        "update_cycle": "daily"})
}

/// Percent-encodes a resource code for a path segment.
pub fn encode(code: &str) -> String {
    code.replace('/', "%2F")
}

/// Sends again (every 20 ms, until `DEADLINE`) while the node answers that it is
/// recovering its own logs and so originates nothing for a moment, as a client
/// honouring that 503's Retry-After does.
pub(crate) async fn while_recovering<F, Fut>(mut send: F) -> (u16, Value)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = (u16, Value)>,
{
    let start = tokio::time::Instant::now();
    loop {
        let (status, reply) = send().await;
        let recovering = status == 503 && reply["error"].as_str().is_some_and(|e| e.contains("recovering"));
        if !recovering || start.elapsed() > DEADLINE {
            return (status, reply);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `check` every 20 ms until it holds; panics after `DEADLINE`.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    poll(what, POLL, DEADLINE, check).await
}

/// Polls `check` every `every` until it holds; panics after `deadline` (a
/// bench polls finely to time what it waits for, and waits longer for big
/// transfers).
pub async fn poll<F, Fut>(what: &str, every: Duration, deadline: Duration, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    assert!(poll_within(every, deadline, check).await, "timed out waiting until {what}");
}

/// Polls `check` every `every` until it holds or `deadline` passes; whether it
/// held (for a harness that counts what never happened instead of failing).
pub async fn poll_within<F, Fut>(every: Duration, deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    loop {
        if check().await {
            return true;
        }
        if start.elapsed() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}

/// The credentials `cascade up` generated for node `id`, and the federation root.
pub fn creds_of(fed: &Fed, id: &str) -> (cascade_certs::NodeCredentials, Vec<u8>) {
    let dir = cascade_launcher::pki::node_certs_dir(fed.dir.path(), nid(id));
    let creds = cascade_certs::NodeCredentials {
        chain: cascade_certs::read_chain_pem(&dir.join("node.pem")).expect("node.pem"),
        key_pkcs8: cascade_certs::read_key_pem(&dir.join("node.key")).expect("node.key"),
    };
    let root = cascade_certs::read_chain_pem(&dir.join("root.pem")).expect("root.pem").remove(0);
    (creds, root)
}

/// The provincial CA `cascade up` generated for province `id`.
pub fn provincial_ca(fed: &Fed, id: &str) -> cascade_certs::Authority {
    let dir = cascade_launcher::pki::node_certs_dir(fed.dir.path(), nid(id));
    cascade_certs::NodeCredentials {
        chain: cascade_certs::read_chain_pem(&dir.join("ca.pem")).expect("ca.pem"),
        key_pkcs8: cascade_certs::read_key_pem(&dir.join("ca.key")).expect("ca.key"),
    }
    .into_authority()
    .expect("provincial CA")
}

/// A QUIC endpoint on 127.0.0.1 with the given credentials: the test double of a peer.
pub fn endpoint(creds: &cascade_certs::NodeCredentials, root: &[u8]) -> cascade_transport::Endpoint {
    cascade_transport::Endpoint::bind(creds, root, "127.0.0.1:0".parse().expect("addr")).expect("bind")
}

/// The snapshot counters of rejected deltas at node `at`, by reason.
pub async fn rejected(fed: &Fed, at: &str, reason: &str) -> u64 {
    let (_, node) = fed.get(at, "/api/v1/node").await;
    node["deltas"]["rejected"][reason].as_u64().unwrap_or(0)
}

/// A client acting with a given bearer token (an account's session or API token).
pub struct As<'a> {
    fed: &'a Fed,
    id: String,
    token: String,
}

impl Fed {
    /// Acts at node `id` with `token` instead of the bootstrap token.
    pub fn with_token(&self, id: &str, token: &str) -> As<'_> {
        As { fed: self, id: id.into(), token: token.into() }
    }

    /// Logs in at node `id`; returns the session token.
    pub async fn login(&self, id: &str, username: &str, password: &str) -> (u16, Value) {
        let url = self.fed.node(nid(id)).expect("running").admin_url.clone();
        let resp = self
            .http
            .post(format!("{url}/api/v1/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .expect("login");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

impl As<'_> {
    /// Sends a request; returns (status, JSON body or the raw text). Retried
    /// while the node answers that it is recovering, like `Fed::post`.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        while_recovering(|| self.call_once(method, path, body.clone())).await
    }

    async fn call_once(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = self.fed.fed.node(nid(&self.id)).expect("running").admin_url.clone();
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.fed.http.request(method, format!("{url}{path}")).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

/// The Prometheus samples of node `id`'s /metrics, parsed.
pub async fn scrape(fed: &Fed, id: &str) -> prometheus_parse::Scrape {
    let node = fed.fed.node(nid(id)).expect("running");
    let resp = fed
        .http
        .get(format!("{}/metrics", node.admin_url))
        .bearer_auth(node.node.admin_token())
        .send()
        .await
        .expect("metrics");
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.expect("text");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

/// The value of a counter or gauge sample with the given labels.
pub fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .and_then(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

/// `len` pseudo-random bytes of `seed` (xorshift: fast, and incompressible for
/// the chunker).
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A grant as `GET /api/v1/grants` shows it, back in its signed form.
pub fn grant_of(shown: &Value) -> cascade_protocol::workflow::Grant {
    let mut g = shown.clone();
    let hex = g["signature"].as_str().expect("a signature").to_string();
    g["signature"] = json!((0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect::<Vec<u8>>());
    for k in ["revoked_at", "revoke_reason", "valid"] {
        g.as_object_mut().expect("an object").remove(k);
    }
    serde_json::from_value(g).expect("a grant")
}

/// Peak resident memory of this process so far, in bytes.
pub fn peak_resident() -> u64 {
    process::peak_resident_of(std::process::id())
}

/// One raw quinn stream moving `bytes`, optionally through a raw relay that
/// copies a stream from one connection to another.
pub async fn raw_quic(fed: &Fed, bytes: u64, relayed: bool) -> Duration {
    // Guangzhou sends to Guangdong's hub, or through it to the national node
    // (admission takes children only, as for the nodes).
    let (national, root) = creds_of(fed, "100000");
    let (middle, _) = creds_of(fed, "440000");
    let (child, _) = creds_of(fed, "440100");
    let server = endpoint(if relayed { &national } else { &middle }, &root);
    let addr = server.local_addr().unwrap();
    let receiver = tokio::spawn(async move {
        let mut link = server.admit(server.accept().await.unwrap(), |_| Ok(())).await.unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        while let Some(n) = link.recv.read(&mut buf).await.unwrap() {
            got += n as u64;
        }
        got
    });
    let target = if relayed {
        // The relay: Guangdong's endpoint, taking Guangzhou's stream and
        // copying it onto its own to the national node.
        let relay = endpoint(&middle, &root);
        let relay_addr = relay.local_addr().unwrap();
        tokio::spawn(async move {
            let mut up = relay.connect(addr, nid("100000")).await.unwrap();
            let mut down = relay.admit(relay.accept().await.unwrap(), |_| Ok(())).await.unwrap();
            let mut buf = vec![0u8; 256 * 1024];
            while let Some(n) = down.recv.read(&mut buf).await.unwrap() {
                up.send.write_all(&buf[..n]).await.unwrap();
            }
            up.send.finish().unwrap();
            let _ = up.connection.closed().await;
        });
        (relay_addr, nid("440000"))
    } else {
        (addr, nid("440000"))
    };
    let client = endpoint(&child, &root);
    let mut link = client.connect(target.0, target.1).await.unwrap();
    let chunk = vec![7u8; 256 * 1024];
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        let n = chunk.len().min((bytes - sent) as usize);
        link.send.write_all(&chunk[..n]).await.unwrap();
        sent += n as u64;
    }
    link.send.finish().unwrap();
    assert_eq!(receiver.await.unwrap(), bytes);
    started.elapsed()
}

/// One HTTP/1.1 request over TLS, trusting only `root` and expecting the
/// certificate to name 127.0.0.1: the status and the whole answer.
pub async fn https_request(
    addr: std::net::SocketAddr,
    root: &[u8],
    request: &str,
) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from(root.to_vec())).map_err(|e| e.to_string())?;
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
    let mut tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    tls.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    // The server may end the stream without a TLS close_notify: what came is the answer.
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).to_string();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(format!("no status: {answer}"))?;
    Ok((status, answer))
}
