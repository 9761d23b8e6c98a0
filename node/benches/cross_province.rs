//! A dataset version published at a city and fetched by a granted city of
//! another province, with every node of the federation a `cascade run` process
//! of its own on 127.0.0.1: the fetch's time and rate over four links
//! (Guangzhou → Guangdong → the national node → Shandong → Jinan), the copy
//! checked byte for byte, and each node's peak resident memory (`VmHWM`).
//!
//! `cargo bench -p cascade-node --bench cross_province` (content size with
//! CASCADE_BENCH_MIB, default 256).

use cascade_launcher::topology::Topology;
use cascade_launcher::{Federation, LaunchOptions};
use cascade_tests::process::{self, Api};
use cascade_tests::{content, poll, SIX_NODES};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// Longest the fetch may take (a slow machine, a large size).
const FETCH_DEADLINE: Duration = Duration::from_secs(1800);

/// The node processes, killed however the bench ends.
struct Processes(Vec<(String, Child)>);

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn mib(bytes: u64) -> u64 {
    bytes >> 20
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let size_mib: usize = std::env::var("CASCADE_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let dir = tempfile::tempdir().expect("a folder");
    let topology = Topology::parse(SIX_NODES).expect("the topology");
    let options = LaunchOptions { data: dir.path().to_path_buf(), admin_port_base: None };
    let fed = Federation::prepare(topology.clone(), &options).expect("certificates");
    let bin = Path::new(env!("CARGO_BIN_EXE_cascade"));
    let quic: std::collections::BTreeMap<_, _> = topology
        .nodes
        .iter()
        .map(|n| (n.id, SocketAddr::from(([127, 0, 0, 1], process::free_udp_port()))))
        .collect();
    let mut processes = Processes(Vec::new());
    let mut apis = std::collections::BTreeMap::new();
    // Parents first: the topology lists them first.
    for node in &topology.nodes {
        let mut config = fed.config(node.id).expect("a configuration");
        config.listen = quic[&node.id];
        config.parent_addr = node.parent.map(|p| quic[&p]);
        let path = dir.path().join(format!("{}.toml", node.id));
        std::fs::write(&path, toml::to_string(&config).expect("TOML")).expect("written");
        let (child, url) = process::spawn_node(bin, &path);
        apis.insert(node.id.to_string(), Api::of(&url, &config.data_dir));
        processes.0.push((format!("{} {}", node.id, node.name), child));
    }
    let (guangzhou, jinan) = (&apis["440100"], &apis["370100"]);

    let code = process::publish_entry(guangzhou, "440100", "广州市统计局").await;
    let data = content(size_mib << 20, 11);
    let started = Instant::now();
    let (status, pushed) = process::push_version(guangzhou, "440100", &code, data.clone()).await;
    assert_eq!(status, 201, "{pushed}");
    let push_took = started.elapsed();
    let version = process::hold_grant(jinan, "370100", "济南市统计局", "440100", &code, 1).await;
    let before: Vec<u64> = processes.0.iter().map(|(_, c)| process::peak_resident_of(c.id())).collect();

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
    let after: Vec<u64> = processes.0.iter().map(|(_, c)| process::peak_resident_of(c.id())).collect();

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
    for (((name, _), b), a) in processes.0.iter().zip(&before).zip(&after) {
        println!("    {name:<16} {:>4} MiB → {:>4} MiB", mib(*b), mib(*a));
    }
}
