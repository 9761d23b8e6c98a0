//! The crash harness: a federation of `cascade run` processes under a mixed load
//! — organization registrations and catalog publishes at every node, and
//! between a consumer and a provider in two provinces applications and
//! decisions, service calls and dataset fetches (`docking`) — one node at a time
//! killed with SIGKILL at a random moment and started again, and after every
//! round the checks a federation owes its users: every write a node
//! acknowledged is still there at its origin, the federation converges to one
//! history (every node holds every log it may see up to the same head), and no
//! node flagged a fork or a broken chain; at the end, no acknowledged routed
//! message or call was lost or applied twice and no fetch ended with wrong bytes.
//!
//! The test suite runs a few rounds (`node/tests/crash.rs`); `cargo bench -p
//! cascade-node --bench crash` runs 100 (`CASCADE_CRASH_ROUNDS`).

mod docking;

pub use docking::DockingReport;

use crate::process::{Api, Processes};
use crate::{entry, nid, poll, DEADLINE};
use cascade_protocol::org::Organization;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest a round's load runs before its kill (the kill falls at a random
/// moment within it).
const MAX_LOAD_BEFORE_KILL: Duration = Duration::from_millis(600);

/// How often each writer writes: fast enough that a kill usually lands in the
/// middle of a group commit, slow enough for two cores.
const WRITE_EVERY: Duration = Duration::from_millis(5);

/// A write a node acknowledged: at `origin`, the entry `code` published, or
/// the organization `code` registered.
#[derive(Clone, Debug)]
enum Acknowledged {
    Entry { origin: String, code: String },
    Organization { origin: String, code: String },
}

/// What the rounds found.
#[derive(Debug, Default)]
pub struct CrashReport {
    /// Kill and restart rounds.
    pub rounds: usize,
    /// Writes acknowledged by the nodes.
    pub acknowledged: usize,
    /// Of those, found at their origin after the restarts.
    pub found: usize,
    /// Forks flagged by any node.
    pub forks: u64,
    /// Broken chains flagged by any node.
    pub broken_chains: u64,
    /// What the docking load found.
    pub docking: DockingReport,
}

/// Runs `rounds` kill/restart rounds on `processes`, writing at every node and
/// docking between `consumer` and `provider`; the node killed and the moment
/// are drawn from `seed`.
pub async fn crash_rounds(
    processes: &mut Processes,
    (consumer, provider): (&str, &str),
    rounds: usize,
    seed: u64,
) -> CrashReport {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let ids = processes.ids();
    let acknowledged: Arc<Mutex<Vec<Acknowledged>>> = Arc::default();
    for id in &ids {
        register(&processes.api(id), id, 1, &acknowledged).await;
    }
    let docking = docking::Docking::set_up(processes, provider, consumer).await;
    let mut serial = 0u64;
    for round in 0..rounds {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers: Vec<_> = ids
            .iter()
            .map(|id| {
                let (api, id, stop, acknowledged) =
                    (processes.api(id), id.clone(), stop.clone(), acknowledged.clone());
                serial += 1;
                tokio::spawn(write_until(api, id, round, serial, stop, acknowledged))
            })
            .collect();
        writers.extend(docking.start(processes, round, &stop));
        let victim = ids[rng.gen_range(0..ids.len())].clone();
        tokio::time::sleep(rng.gen_range(Duration::ZERO..MAX_LOAD_BEFORE_KILL)).await;
        processes.kill(&victim).await;
        processes.start(&victim).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for writer in writers {
            writer.await.expect("a writer");
        }
        converged(processes, &ids).await;
    }
    let acknowledged = acknowledged.lock().expect("the list").clone();
    let mut report = CrashReport {
        rounds,
        acknowledged: acknowledged.len(),
        docking: docking.settle(processes).await,
        ..CrashReport::default()
    };
    for write in &acknowledged {
        if survived(processes, write).await {
            report.found += 1;
        }
    }
    for id in &ids {
        let (_, node) = processes.api(id).call("GET", "/api/v1/node", None).await;
        report.forks += node["deltas"]["rejected"]["fork"].as_u64().unwrap_or(0);
        report.broken_chains += node["deltas"]["rejected"]["broken_chain"].as_u64().unwrap_or(0);
    }
    report
}

/// Registers node `id`'s organization number `n`, recording it if acknowledged.
async fn register(api: &Api, id: &str, n: u32, acknowledged: &Mutex<Vec<Acknowledged>>) -> Option<String> {
    let code = Organization::government_code(nid(id), n);
    let division: u32 = id.parse().expect("a division");
    let body = json!({"credit_code": code, "name": format!("{id} 局 {n}"), "division": division});
    let (status, _) = api.try_call("POST", "/api/v1/organizations", Some(body)).await?;
    if status == 201 {
        let write = Acknowledged::Organization { origin: id.to_string(), code: code.clone() };
        acknowledged.lock().expect("the list").push(write);
        return Some(code);
    }
    None
}

/// Publishes entries at node `id` until told to stop, recording each publish
/// the node acknowledged; a node that is down or recovering is simply tried
/// again.
async fn write_until(
    api: Api,
    id: String,
    round: usize,
    serial: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
    acknowledged: Arc<Mutex<Vec<Acknowledged>>>,
) {
    let provider = Organization::government_code(nid(&id), 1);
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        n += 1;
        if n % 10 == 0 {
            // Now and then a new organization, numbered so rounds never collide.
            register(&api, &id, 2 + (serial as u32) * 10_000 + n, &acknowledged).await;
        }
        let mut body = entry(&format!("round {round} writer {id} #{n}"));
        body["provider"] = json!(provider);
        if let Some((201, saved)) = api.try_call("POST", "/api/v1/catalog", Some(body)).await {
            if let Some(code) = saved["code"].as_str() {
                let path = format!("/api/v1/catalog/{}/publish", crate::encode(code));
                let published = api.try_call("POST", &path, Some(json!({"scope": "federation"}))).await;
                if matches!(published, Some((200, _))) {
                    let write = Acknowledged::Entry { origin: id.clone(), code: code.to_string() };
                    acknowledged.lock().expect("the list").push(write);
                }
            }
        }
        tokio::time::sleep(WRITE_EVERY).await;
    }
}

/// Waits until every node holds every log it may see up to the same head.
async fn converged(processes: &Processes, ids: &[String]) {
    let views = || async {
        let mut heads: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
        for id in ids {
            let (status, node) = processes.api(id).try_call("GET", "/api/v1/node", None).await?;
            if status != 200 || !node["recovering"].is_null() {
                return None;
            }
            for v in node["version_vector"].as_array()? {
                let key = (v["origin"].to_string(), v["scope"].as_str()?.to_string());
                heads.entry(key).or_default().push(v["seq"].as_u64()?);
            }
        }
        Some(heads)
    };
    poll("the federation converges", Duration::from_millis(50), DEADLINE, || async {
        // Federation logs are held everywhere; all copies of a log agree.
        views().await.is_some_and(|heads| {
            heads.iter().all(|((_, scope), seqs)| {
                seqs.windows(2).all(|w| w[0] == w[1]) && (scope != "federation" || seqs.len() == ids.len())
            })
        })
    })
    .await;
}

/// Whether an acknowledged write is there at its origin.
async fn survived(processes: &Processes, write: &Acknowledged) -> bool {
    let (origin, path) = match write {
        Acknowledged::Entry { origin, code } => {
            (origin, format!("/api/v1/catalog/{}?origin={origin}", crate::encode(code)))
        }
        Acknowledged::Organization { origin, code } => (origin, format!("/api/v1/organizations/{code}")),
    };
    let found = processes.api(origin).try_call("GET", &path, None).await;
    match (write, found) {
        (Acknowledged::Entry { .. }, Some((200, body))) => body["status"] == "published",
        (Acknowledged::Organization { .. }, Some((200, _))) => true,
        _ => false,
    }
}
