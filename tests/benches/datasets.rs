//! Dataset fetches over real QUIC on 127.0.0.1, against raw quinn in the same
//! run.
//!
//! `cargo bench -p cascade-tests --bench datasets` (content size with
//! CASCADE_BENCH_MIB, default 1024).
//!
//! Measured, all in one run:
//! - a version fetched over one hop (Guangzhou → Guangdong's hub) and over two
//!   hops (Guangzhou → Guangdong → the national node), each a fresh version;
//! - the same bytes on one raw quinn stream between two endpoints with the
//!   nodes' TLS and transport configuration, and through a raw quinn relay;
//! - the bytes an incremental version moves (1 KB inserted in the middle);
//! - how long a catalog change takes to reach the national node, idle and
//!   while a fetch fills the same links;
//! - peak resident memory of the process (all six nodes) before and during.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cascade_tests::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Longest a fetch of the bench may take (1 GiB on a slow machine).
const TRANSFER_DEADLINE: Duration = Duration::from_secs(600);

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `len` pseudo-random bytes of `seed`, generated as they are sent (never
/// whole in memory), with 1,000 other bytes inserted at `insert_at`.
fn content(len: u64, seed: u64, insert_at: Option<u64>) -> reqwest::Body {
    const PIECE: u64 = 256 * 1024;
    let state = (seed | 1, 0u64, insert_at);
    let stream = futures_util::stream::unfold(state, move |(mut x, done, insert)| async move {
        if done >= len && insert.is_none() {
            return None;
        }
        if let Some(at) = insert.filter(|at| *at == done) {
            let _ = at;
            return Some((Ok::<_, std::io::Error>(vec![0x5a; 1000]), (x, done, None)));
        }
        let until = insert.filter(|at| *at > done).unwrap_or(len).min(done + PIECE).min(len);
        let mut out = Vec::with_capacity((until - done) as usize + 8);
        while (out.len() as u64) < until - done {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate((until - done) as usize);
        Some((Ok(out), (x, until, insert)))
    });
    reqwest::Body::wrap_stream(stream)
}

async fn push(fed: &Fed, code: &str, body: reqwest::Body) -> Value {
    let (url, token) = fed.url_token("440100");
    let resp = reqwest::Client::new()
        .put(format!("{url}/api/v1/datasets/440100/{}/versions", encode(code)))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    resp.json().await.unwrap()
}

/// `at`'s bureau is granted Guangzhou's entry `code` (unconditional).
async fn grant(fed: &Fed, at: &str, code: &str) {
    let org = fed.register_org(at).await;
    let entry = format!("/api/v1/catalog/{}?origin=440100", encode(code));
    eventually(&format!("{at} sees the entry"), || async { fed.get(at, &entry).await.0 == 200 }).await;
    let apply = json!({"resource": {"entry": {"origin": 440100, "code": code}}, "consumer": org,
        "purpose": "bench", "period_days": 1});
    let (status, a) = fed.post(at, "/api/v1/applications", apply).await;
    assert_eq!(status, 201, "{a}");
    let id = a["id"].as_str().unwrap().to_string();
    eventually("granted", || async {
        fed.get(at, &format!("/api/v1/applications/{id}")).await.1["state"] == "granted"
    })
    .await;
}

/// Fetches version `v` to `at`; answers the time it took and the job.
async fn fetch(fed: &Fed, at: &str, code: &str, v: u64) -> (Duration, Value) {
    let version = format!("/api/v1/datasets/440100/{}/versions/{v}", encode(code));
    eventually("the version is known", || async { fed.get(at, &version).await.0 == 200 }).await;
    let started = Instant::now();
    let (status, job) = fed.post(at, &format!("{version}/fetch"), json!({})).await;
    assert_eq!(status, 202, "{job}");
    let job = format!("/api/v1/fetches/{}", job["id"].as_str().unwrap());
    let ended = || async { fed.get(at, &job).await.1["state"] != "running" };
    poll("the fetch ends", Duration::from_millis(5), TRANSFER_DEADLINE, ended).await;
    let took = started.elapsed();
    let (_, j) = fed.get(at, &job).await;
    assert_eq!(j["state"], "done", "{j}");
    (took, j)
}

/// How long a catalog entry published at Guangzhou takes to reach the national node.
async fn propagation(fed: &Fed, name: &str) -> Duration {
    let started = Instant::now();
    let code = fed.publish("440100", name, "federation").await;
    let path = format!("/api/v1/catalog/{}?origin=440100", encode(&code));
    let seen = || async { fed.get("100000", &path).await.0 == 200 };
    poll("the national node sees the change", Duration::from_millis(2), DEADLINE, seen).await;
    started.elapsed()
}

fn gib_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / took.as_secs_f64() / (1u64 << 30) as f64
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // As the cascade binary runs.
    cascade_runtime::memory::no_huge_pages();
    let mib = env("CASCADE_BENCH_MIB", 1024);
    let size = mib << 20;
    let fed = Fed::launch(SIX_NODES).await;
    let code = fed.publish("440100", "基准数据集", "federation").await;
    grant(&fed, "440000", &code).await;
    grant(&fed, "100000", &code).await;
    let idle_rss = peak_resident();

    let started = Instant::now();
    push(&fed, &code, content(size, 1, None)).await;
    let push_took = started.elapsed();
    push(&fed, &code, content(size, 2, None)).await;
    let pushed_rss = peak_resident();

    let raw_one = raw_quic(&fed, size, false).await;
    let raw_two = raw_quic(&fed, size, true).await;
    let idle_propagation = propagation(&fed, "空闲时的目录变更").await;
    let (one_hop, _) = fetch(&fed, "440000", &code, 1).await;
    // The two-hop fetch of a fresh version, with a catalog change during it.
    let fetching = {
        let fed = &fed;
        let code = code.clone();
        async move { fetch(fed, "100000", &code, 2).await }
    };
    let changing = async {
        // Once the fetch is moving bytes over the links.
        let moving = || async {
            let (_, jobs) = fed.get("100000", "/api/v1/fetches").await;
            jobs["fetches"].as_array().is_some_and(|j| {
                j.iter().any(|j| {
                    j["version"] == 2 && j["state"] == "running" && j["bytes_done"].as_u64() > Some(0)
                })
            })
        };
        poll("the 2-hop fetch moves bytes", Duration::from_millis(2), DEADLINE, moving).await;
        propagation(&fed, "传输中的目录变更").await
    };
    let ((two_hops, _), busy_propagation) = tokio::join!(fetching, changing);
    let fetch_rss = peak_resident();

    // 1 KB inserted in the middle of version 2: what version 3 moves.
    // (The xorshift stream is cut at a multiple of 8, so the two halves are
    // version 2's bytes exactly.)
    push(&fed, &code, content(size, 2, Some(size / 2 / 8 * 8))).await;
    let (_, incremental) = fetch(&fed, "100000", &code, 3).await;
    let moved = incremental["bytes_transferred"].as_u64().unwrap();

    println!("dataset fetch of {mib} MiB, six nodes in one process on 127.0.0.1");
    println!("  publish (cut, hash, store)  {:.2} GiB/s", gib_per_s(size, push_took));
    println!("  raw quinn, 1 stream         {:.2} GiB/s", gib_per_s(size, raw_one));
    println!("  raw quinn, through a relay  {:.2} GiB/s", gib_per_s(size, raw_two));
    println!(
        "  fetch, 1 hop                {:.2} GiB/s  ({:.0} % of raw quinn)",
        gib_per_s(size, one_hop),
        100.0 * raw_one.as_secs_f64() / one_hop.as_secs_f64()
    );
    println!(
        "  fetch, 2 hops               {:.2} GiB/s  ({:.0} % of the raw relay)",
        gib_per_s(size, two_hops),
        100.0 * raw_two.as_secs_f64() / two_hops.as_secs_f64()
    );
    println!(
        "  incremental version         {moved} bytes moved for 1 KB inserted ({:.3} % of the content)",
        100.0 * moved as f64 / size as f64
    );
    println!(
        "  catalog change to national  idle {:.0} ms, during the 2-hop fetch {:.0} ms",
        idle_propagation.as_secs_f64() * 1000.0,
        busy_propagation.as_secs_f64() * 1000.0
    );
    println!(
        "  peak RSS (all six nodes)    {} MiB idle, {} MiB after publishing, {} MiB after the fetches",
        idle_rss >> 20,
        pushed_rss >> 20,
        fetch_rss >> 20
    );
}
