//! A dataset version published at a city and fetched by a granted city of
//! another province, with every node of the federation a `cascade run` process
//! of its own on 127.0.0.1: the fetch's time and rate over four links
//! (Guangzhou → Guangdong → the national node → Shandong → Jinan), the copy
//! checked byte for byte, and each node's peak resident memory (`VmHWM`).
//!
//! `cargo bench -p cascade-node --bench cross_province` (content size with
//! CASCADE_BENCH_MIB, default 256).

use cascade_launcher::topology::Topology;
use cascade_tests::process::{self, Processes};
use cascade_tests::{content, poll, SIX_NODES};
use std::path::Path;
use std::time::{Duration, Instant};

/// Longest the fetch may take (a slow machine, a large size).
const FETCH_DEADLINE: Duration = Duration::from_secs(1800);

fn mib(bytes: u64) -> u64 {
    bytes >> 20
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let size_mib: usize = std::env::var("CASCADE_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let topology = Topology::parse(SIX_NODES).expect("the topology");
    let processes = Processes::launch(SIX_NODES, Path::new(env!("CARGO_BIN_EXE_cascade"))).await;
    let names: Vec<(String, String)> =
        topology.nodes.iter().map(|n| (n.id.to_string(), format!("{} {}", n.id, n.name))).collect();
    let peaks = || -> Vec<u64> { names.iter().map(|(id, _)| processes.peak_resident(id)).collect() };
    let (guangzhou, jinan) = (&processes.api("440100"), &processes.api("370100"));

    let code = process::publish_entry(guangzhou, "440100", "广州市统计局").await;
    let data = content(size_mib << 20, 11);
    let started = Instant::now();
    let (status, pushed) = process::push_version(guangzhou, "440100", &code, data.clone()).await;
    assert_eq!(status, 201, "{pushed}");
    let push_took = started.elapsed();
    let version = process::hold_grant(jinan, "370100", "济南市统计局", "440100", &code, 1).await;
    let before = peaks();

    let started = Instant::now();
    let (status, job) = jinan.call("POST", &format!("{version}/fetch"), None).await;
    assert_eq!(status, 202, "{job}");
    let job = format!("/api/v1/fetches/{}", job["id"].as_str().expect("an id"));
    let ended = || async {
        matches!(jinan.call("GET", &job, None).await.1["state"].as_str(), Some("done") | Some("failed"))
    };
    poll("the fetch ends", Duration::from_millis(20), FETCH_DEADLINE, ended).await;
    let fetch_took = started.elapsed();
    let (_, done) = jinan.call("GET", &job, None).await;
    assert_eq!(done["state"], "done", "{done}");
    let after = peaks();

    let resp = jinan
        .http
        .get(format!("{}{version}/content", jinan.url))
        .bearer_auth(&jinan.token)
        .send()
        .await
        .expect("the content");
    let copy = resp.bytes().await.expect("the content's bytes");
    assert!(copy == data, "Jinan's copy differs from what Guangzhou published");

    let gib = |took: Duration| data.len() as f64 / (1u64 << 30) as f64 / took.as_secs_f64();
    println!("{size_mib} MiB published at Guangzhou, fetched at Jinan over four links; six `cascade run` processes");
    println!("  publish              {:.2} s ({:.2} GiB/s)", push_took.as_secs_f64(), gib(push_took));
    println!("  fetch                {:.2} s ({:.2} GiB/s)", fetch_took.as_secs_f64(), gib(fetch_took));
    println!(
        "  bytes transferred    {} (content {}); the copy is byte-identical",
        done["bytes_transferred"],
        data.len()
    );
    println!("  peak RSS per node    before the fetch → after it");
    for (((_, name), b), a) in names.iter().zip(&before).zip(&after) {
        println!("    {name:<16} {:>4} MiB → {:>4} MiB", mib(*b), mib(*a));
    }
}
