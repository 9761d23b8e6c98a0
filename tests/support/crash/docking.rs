//! The docking half of the crash harness's load, between a consumer node and a
//! provider node in another province: applications routed to the provider and
//! approved there, service calls through every gateway on the way to an
//! upstream that counts what reaches it, and dataset versions published at the
//! provider and fetched at the consumer. Each side keeps what the nodes
//! acknowledged, so that after the rounds nothing acknowledged is lost, nothing
//! is applied twice and no fetch ends with other bytes than were published.

use crate::process::{Api, Processes};
use crate::{content, encode, nid, DEADLINE};
use axum::extract::{Path, State};
use cascade_protocol::org::Organization;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often each docking writer acts: a few routed messages, calls and fetch
/// polls per round, so a kill often lands with one of each under way.
const ACT_EVERY: Duration = Duration::from_millis(40);

/// Size of each round's dataset version: several chunks, small enough that a
/// hundred rounds stay light on the disk.
const VERSION_BYTES: usize = 300 * 1024;

/// The consumer account's password.
const PASSWORD: &str = "correct horse battery staple";

/// What the docking load found after the rounds.
#[derive(Debug, Default)]
pub struct DockingReport {
    /// Applications the consumer's node acknowledged (201).
    pub applications: usize,
    /// Of those, granted at the consumer's node in the end.
    pub granted: usize,
    /// Applications the provider's audit log shows received (at least those
    /// acknowledged: the duplicate count below is read from the same log).
    pub received: usize,
    /// Applications the provider's node received, or the consumer's node saw
    /// granted, more than once (by their audit logs).
    pub applied_twice: usize,
    /// Calls the consumer's gateway answered 200 with the upstream's answer.
    pub calls: usize,
    /// Of those, reached the upstream exactly once.
    pub calls_once: usize,
    /// Calls (acknowledged or not) that reached the upstream more than once.
    pub calls_twice: usize,
    /// Calls answered 200 with another body than the upstream gave.
    pub calls_altered: usize,
    /// Dataset versions the provider's node acknowledged (201).
    pub versions: usize,
    /// Of those, fetched at the consumer's node with the published bytes.
    pub versions_fetched: usize,
    /// Fetches that ended `done` with other bytes than were published.
    pub wrong_bytes: usize,
}

/// What the nodes acknowledged during the rounds.
#[derive(Default)]
struct Ledger {
    applications: Vec<String>,
    calls: Vec<u64>,
    calls_altered: usize,
    /// Version → blake3 of its content.
    versions: BTreeMap<u64, blake3::Hash>,
    wrong_bytes: usize,
}

/// The docking load between two nodes (see the module's comment).
pub struct Docking {
    provider: String,
    consumer: String,
    /// The conditional entry applied for (approval needed).
    conditional: String,
    /// The unconditional entry whose dataset versions are fetched.
    dataset: String,
    /// The service called (its grant held by the consumer's organization).
    service: String,
    /// The consumer account's session token at the consumer's node.
    caller: Arc<Mutex<String>>,
    /// Upstream calls by nonce: how often each reached the upstream.
    upstream: Arc<Mutex<BTreeMap<u64, u32>>>,
    nonce: Arc<AtomicU64>,
    ledger: Arc<Mutex<Ledger>>,
}

impl Docking {
    /// Publishes the provider's entries and service, grants the consumer's
    /// organization (already registered, like the provider's) the service and
    /// the dataset entry, and logs a consumer account in.
    pub async fn set_up(processes: &Processes, provider: &str, consumer: &str) -> Docking {
        let upstream: Arc<Mutex<BTreeMap<u64, u32>>> = Arc::default();
        let upstream_url = serve_upstream(upstream.clone()).await;
        let (p, c) = (processes.api(provider), processes.api(consumer));
        let conditional =
            publish(&p, provider, json!({"share_type": "conditional", "share_condition": "稽查"})).await;
        let dataset = publish(&p, provider, json!({})).await;
        let service = json!({"name": "计数服务", "entry": {"origin": nid(provider), "code": conditional},
            "provider": Organization::government_code(nid(provider), 1), "kind": "query",
            "endpoints": [{"method": "GET", "path": "/count/{n}"}], "sensitivity": 2,
            "rate_limit_per_minute": 600_000, "upstream": upstream_url});
        let (status, created) = p.call("POST", "/api/v1/services", Some(service)).await;
        assert_eq!(status, 201, "{created}");
        let service = created["id"].as_str().expect("a service id").to_string();

        let org = Organization::government_code(nid(consumer), 1);
        let account =
            json!({"username": "caller", "password": PASSWORD, "organization": org, "roles": ["consumer"]});
        assert_eq!(c.call("POST", "/api/v1/accounts", Some(account)).await.0, 201);
        let docking = Docking {
            provider: provider.to_string(),
            consumer: consumer.to_string(),
            conditional,
            dataset,
            service,
            caller: Arc::new(Mutex::new(login(&c).await.expect("the consumer logs in"))),
            upstream,
            nonce: Arc::default(),
            ledger: Arc::default(),
        };
        crate::eventually("the service reaches the consumer", || async {
            c.call("GET", &format!("/api/v1/services/{}", docking.service), None).await.0 == 200
        })
        .await;
        for resource in [json!({"service": docking.service}), docking.entry(&docking.dataset)] {
            let id = apply(&c, consumer, resource).await.expect("an application");
            assert_eq!(docking.approve_until_granted(processes, &[id]).await, 1, "the set-up's grant");
        }
        docking
    }

    /// `{"entry": …}` for the provider's entry `code`.
    fn entry(&self, code: &str) -> Value {
        json!({"entry": {"origin": nid(&self.provider), "code": code}})
    }

    /// Starts one round's docking writers; they act until `stop`.
    pub fn start(
        &self,
        processes: &Processes,
        round: usize,
        stop: &Arc<AtomicBool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let (p, c) = (processes.api(&self.provider), processes.api(&self.consumer));
        let mut tasks = Vec::new();
        // Applications, at the consumer.
        let (api, consumer, resource, ledger, stop2) = (
            c.clone(),
            self.consumer.clone(),
            self.entry(&self.conditional),
            self.ledger.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop2.load(Ordering::Relaxed) {
                if let Some(id) = apply(&api, &consumer, resource.clone()).await {
                    ledger.lock().expect("the ledger").applications.push(id);
                }
                tokio::time::sleep(ACT_EVERY).await;
            }
        }));
        // Decisions, at the provider.
        let (api, stop2) = (p.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop2.load(Ordering::Relaxed) {
                approve_pending(&api).await;
                tokio::time::sleep(ACT_EVERY).await;
            }
        }));
        // Calls, at the consumer.
        let (api, service, caller, nonce, ledger, stop2) = (
            c.clone(),
            self.service.clone(),
            self.caller.clone(),
            self.nonce.clone(),
            self.ledger.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop2.load(Ordering::Relaxed) {
                let n = nonce.fetch_add(1, Ordering::Relaxed);
                match call(&api, &caller, &service, n).await {
                    Called::Answered => ledger.lock().expect("the ledger").calls.push(n),
                    Called::Altered => ledger.lock().expect("the ledger").calls_altered += 1,
                    Called::Not => {}
                }
                tokio::time::sleep(ACT_EVERY).await;
            }
        }));
        // A version pushed at the provider, fetched at the consumer.
        let (provider, dataset, ledger, stop2) =
            (self.provider.clone(), self.dataset.clone(), self.ledger.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let data = content(VERSION_BYTES, round as u64 + 1);
            let Some(version) = push(&p, &provider, &dataset, data.clone()).await else { return };
            ledger.lock().expect("the ledger").versions.insert(version, blake3::hash(&data));
            let path = format!("/api/v1/datasets/{provider}/{}/versions/{version}", encode(&dataset));
            while !stop2.load(Ordering::Relaxed) {
                match fetch(&c, &path, &stop2).await {
                    Some(Fetched::Bytes(bytes)) => {
                        if blake3::hash(&bytes) != blake3::hash(&data) {
                            ledger.lock().expect("the ledger").wrong_bytes += 1;
                        }
                        return;
                    }
                    Some(Fetched::Failed) | None => tokio::time::sleep(ACT_EVERY).await,
                }
            }
        }));
        tasks
    }

    /// After the rounds: approves what is still pending until every
    /// acknowledged application is granted (or the deadline passes), fetches
    /// every acknowledged version, and counts.
    pub async fn settle(&self, processes: &Processes) -> DockingReport {
        let ledger = std::mem::take(&mut *self.ledger.lock().expect("the ledger"));
        let granted = self.approve_until_granted(processes, &ledger.applications).await;
        let (p, c) = (processes.api(&self.provider), processes.api(&self.consumer));
        let received = audit_counts(&p, "application.received").await;
        let seen_granted = audit_counts(&c, "application.granted").await;
        let upstream = self.upstream.lock().expect("the upstream").clone();
        let mut report = DockingReport {
            applications: ledger.applications.len(),
            granted,
            received: ledger.applications.iter().filter(|id| received.contains_key(*id)).count(),
            applied_twice: received.values().chain(seen_granted.values()).filter(|n| **n > 1).count(),
            calls: ledger.calls.len(),
            calls_once: ledger.calls.iter().filter(|n| upstream.get(n) == Some(&1)).count(),
            calls_twice: upstream.values().filter(|n| **n > 1).count(),
            calls_altered: ledger.calls_altered,
            versions: ledger.versions.len(),
            wrong_bytes: ledger.wrong_bytes,
            ..DockingReport::default()
        };
        for (version, hash) in &ledger.versions {
            let path =
                format!("/api/v1/datasets/{}/{}/versions/{version}", self.provider, encode(&self.dataset));
            let mut fetched = None;
            let start = tokio::time::Instant::now();
            while fetched.is_none() && start.elapsed() < DEADLINE {
                fetched = match fetch(&c, &path, &AtomicBool::new(false)).await {
                    Some(Fetched::Bytes(bytes)) => Some(blake3::hash(&bytes) == *hash),
                    _ => {
                        tokio::time::sleep(ACT_EVERY).await;
                        None
                    }
                };
            }
            match fetched {
                Some(true) => report.versions_fetched += 1,
                Some(false) => report.wrong_bytes += 1,
                None => {}
            }
        }
        report
    }

    /// Approves pending applications at the provider until all of `ids` are
    /// granted at the consumer or the deadline passes; answers how many are.
    async fn approve_until_granted(&self, processes: &Processes, ids: &[String]) -> usize {
        let (p, c) = (processes.api(&self.provider), processes.api(&self.consumer));
        let count = || async {
            let mut n = 0;
            for id in ids {
                if c.call("GET", &format!("/api/v1/applications/{id}"), None).await.1["state"] == "granted" {
                    n += 1;
                }
            }
            n
        };
        let granted = std::cell::Cell::new(0);
        crate::poll_within(ACT_EVERY, DEADLINE, || async {
            approve_pending(&p).await;
            granted.set(count().await);
            granted.get() == ids.len()
        })
        .await;
        granted.get()
    }
}

/// An upstream on 127.0.0.1 whose `GET /count/{n}` counts how often call `n`
/// reached it and answers `n`; answers its URL.
async fn serve_upstream(counts: Arc<Mutex<BTreeMap<u64, u32>>>) -> String {
    let count = |State(counts): State<Arc<Mutex<BTreeMap<u64, u32>>>>, Path(n): Path<u64>| async move {
        *counts.lock().expect("the counts").entry(n).or_default() += 1;
        n.to_string()
    };
    let app = axum::Router::new().route("/count/{n}", axum::routing::get(count)).with_state(counts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Catalogs and publishes federation-wide an entry of node `id`'s first
/// organization, with `share` over the defaults; answers its code.
async fn publish(api: &Api, id: &str, share: Value) -> String {
    let mut entry = crate::entry("计数数据");
    entry["provider"] = json!(Organization::government_code(nid(id), 1));
    for (k, v) in share.as_object().expect("an object") {
        entry[k] = v.clone();
    }
    let (status, saved) = api.call("POST", "/api/v1/catalog", Some(entry)).await;
    assert_eq!(status, 201, "{saved}");
    let code = saved["code"].as_str().expect("a code").to_string();
    let path = format!("/api/v1/catalog/{}/publish", encode(&code));
    assert_eq!(api.call("POST", &path, Some(json!({"scope": "federation"}))).await.0, 200);
    code
}

/// Logs the consumer account in at `api`; its token.
async fn login(api: &Api) -> Option<String> {
    let body = json!({"username": "caller", "password": PASSWORD});
    let resp = api.http.post(format!("{}/api/v1/login", api.url)).json(&body).send().await.ok()?;
    let session: Value = resp.json().await.ok()?;
    Some(session["token"].as_str()?.to_string())
}

/// Applies at node `consumer` for `resource` for its first organization;
/// answers the application's id if the node acknowledged it.
async fn apply(api: &Api, consumer: &str, resource: Value) -> Option<String> {
    let body = json!({"resource": resource, "consumer": Organization::government_code(nid(consumer), 1),
        "purpose": "稽查", "period_days": 30});
    match api.try_call("POST", "/api/v1/applications", Some(body)).await? {
        (201, a) => Some(a["id"].as_str()?.to_string()),
        _ => None,
    }
}

/// Approves every application pending in the provider's inbox (those it can
/// see now; a node that is down is left for later).
async fn approve_pending(api: &Api) {
    let Some((200, inbox)) = api.try_call("GET", "/api/v1/applications?box=inbox&state=pending", None).await
    else {
        return;
    };
    for a in inbox["applications"].as_array().into_iter().flatten() {
        if let Some(id) = a["id"].as_str() {
            api.try_call("POST", &format!("/api/v1/applications/{id}/approve"), Some(json!({}))).await;
        }
    }
}

/// How a call ended.
enum Called {
    /// 200 with the upstream's answer.
    Answered,
    /// 200 with another body.
    Altered,
    /// Not answered (refused, a node down, cut off).
    Not,
}

/// Calls `GET /count/{n}` of `service` through the consumer's gateway as the
/// consumer account (logging in again when its session is gone).
async fn call(api: &Api, caller: &Mutex<String>, service: &str, n: u64) -> Called {
    let token = caller.lock().expect("the token").clone();
    let url = format!("{}/gateway/{service}/count/{n}", api.url);
    let Ok(resp) = api.http.get(url).bearer_auth(token).send().await else { return Called::Not };
    if resp.status() == 401 {
        if let Some(token) = login(api).await {
            *caller.lock().expect("the token") = token;
        }
        return Called::Not;
    }
    if resp.status() != 200 {
        return Called::Not;
    }
    match resp.text().await {
        Ok(body) if body == n.to_string() => Called::Answered,
        Ok(_) => Called::Altered,
        Err(_) => Called::Not,
    }
}

/// PUTs `data` as the next version of `origin`'s entry `code`; its number if
/// the node acknowledged it.
async fn push(api: &Api, origin: &str, code: &str, data: Vec<u8>) -> Option<u64> {
    let mut tries = 0;
    loop {
        let (status, body) = crate::process::try_push_version(api, origin, code, data.clone()).await?;
        match status {
            201 => return body["version"].as_u64(),
            503 if tries < 100 => tries += 1,
            _ => return None,
        }
        tokio::time::sleep(ACT_EVERY).await;
    }
}

/// How one fetch ended.
enum Fetched {
    /// Done: the consumer's copy of the content.
    Bytes(Vec<u8>),
    /// Failed, or the version is not known there yet.
    Failed,
}

/// Fetches the version at `path` to the node `api` and reads its copy; `None`
/// when the node stopped answering on the way, or the job still runs after
/// `DEADLINE` or once `stop` is set.
async fn fetch(api: &Api, path: &str, stop: &AtomicBool) -> Option<Fetched> {
    let (status, job) = api.try_call("POST", &format!("{path}/fetch"), None).await?;
    if status != 202 {
        return Some(Fetched::Failed);
    }
    let job = format!("/api/v1/fetches/{}", job["id"].as_str()?);
    let job_state =
        || async { api.try_call("GET", &job, None).await.map_or(json!("gone"), |(_, j)| j["state"].clone()) };
    let start = tokio::time::Instant::now();
    let mut state = job_state().await;
    while state == "running" {
        if start.elapsed() > DEADLINE || stop.load(Ordering::Relaxed) {
            return None;
        }
        tokio::time::sleep(ACT_EVERY).await;
        state = job_state().await;
    }
    if state != "done" {
        return (state != "gone").then_some(Fetched::Failed);
    }
    let resp =
        api.http.get(format!("{}{path}/content", api.url)).bearer_auth(&api.token).send().await.ok()?;
    if resp.status() != 200 {
        return None;
    }
    Some(Fetched::Bytes(resp.bytes().await.ok()?.to_vec()))
}

/// How many audit records of `kind` each application id has at node `api`
/// (their detail starts with the id).
async fn audit_counts(api: &Api, kind: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/audit?kind={kind}&after_seq=0&limit=500");
        if let Some(c) = &cursor {
            path = format!("{path}&cursor={c}");
        }
        let (_, page) = api.call("GET", &path, None).await;
        for r in page["records"].as_array().into_iter().flatten() {
            if let Some(id) = r["detail"].as_str().and_then(|d| d.split(' ').next()) {
                *counts.entry(id.to_string()).or_default() += 1;
            }
        }
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return counts,
        }
    }
}
