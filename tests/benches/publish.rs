//! Durable publishes per second at one node, against draft saves and sled's
//! group-commit limit measured in the same run.
//!
//! `cargo bench -p cascade-tests --bench publish` (seconds per measurement with
//! CASCADE_BENCH_SECONDS, default 2; alternating rounds with CASCADE_BENCH_ROUNDS,
//! default 3; concurrent callers with CASCADE_BENCH_CALLERS, default 64).
//!
//! Each caller owns one entry and saves it again and again: a draft's save is a
//! local write (one audit record, one group commit); a published entry's save is
//! a new signed version (a delta, its materialization, one audit record) pushed to
//! the node's neighbours. Measured four ways: over HTTP (each caller its own
//! keep-alive connection) and at the node's API without HTTP, on a node alone and
//! on Jinan inside the three-tier federation (a parent to push to). The baseline
//! is sled itself: batches of the same number of small writes, each made durable
//! with one flush.

/// The allocator of the `cascade` binary, so the bench measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cascade_access::Principal;
use cascade_launcher::topology::Topology;
use cascade_launcher::{Federation, LaunchOptions};
use cascade_protocol::catalog::{EntryDraft, EntryStatus};
use cascade_protocol::org::Organization;
use cascade_protocol::NodeId;
use cascade_runtime::Node;
use std::time::{Duration, Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn nid(s: &str) -> NodeId {
    s.parse().expect("division code")
}

/// The national node alone.
const ALONE: &str =
    "name = \"alone\"\n[[node]]\nid = 100000\nname = \"中华人民共和国\"\ntier = \"national\"\n";

fn draft(provider: &str, code: &str, i: u64) -> EntryDraft {
    let mut value = cascade_tests::entry(&format!("bench entry, save {i}"));
    value["provider"] = serde_json::json!(provider);
    value["code"] = serde_json::json!(code);
    serde_json::from_value(value).expect("draft")
}

/// How callers reach the node.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Http,
    Api,
}

/// Saves of `callers` entries (drafts, or published entries) for `seconds`;
/// returns saves per second, commands per group commit and CPU µs per save.
async fn measure(
    node: &Node,
    admin_url: &str,
    via: Via,
    published: bool,
    callers: u64,
    seconds: u64,
) -> (f64, f64, f64) {
    let me = node.identity().id;
    let provider = Organization::government_code(me, 1);
    let kind = if published { "p" } else { "d" };
    let via_tag = if via == Via::Http { 1 } else { 2 };
    let mut codes = Vec::new();
    for c in 0..callers {
        let code = format!("3.{via_tag}{}/{:06}", u8::from(published), c + 1);
        let saved = node.save_entry(Principal::node(), draft(&provider, &code, 0)).await.expect("draft");
        if published && saved.entry.status == EntryStatus::Draft {
            node.publish(Principal::node(), &code, None).await.expect("publish");
        }
        codes.push(code);
    }
    let before = node.status().commits;
    let cpu_before = cpu_seconds();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for code in codes {
        let node = node.clone();
        let provider = provider.clone();
        let url = format!("{admin_url}/api/v1/catalog");
        let token = node.admin_token().to_string();
        let kind = kind.to_string();
        tasks.push(tokio::spawn(async move {
            // One client per caller: one keep-alive connection each.
            let http = reqwest::Client::new();
            let mut saves = 0u64;
            while Instant::now() < deadline {
                let body = draft(&provider, &code, saves + 1);
                match via {
                    Via::Http => {
                        let resp =
                            http.post(&url).bearer_auth(&token).json(&body).send().await.expect("request");
                        assert!(resp.status().is_success(), "{kind}: {}", resp.status());
                        resp.bytes().await.expect("body");
                    }
                    Via::Api => {
                        node.save_entry(Principal::node(), body).await.expect("save");
                    }
                }
                saves += 1;
            }
            saves
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("caller");
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let cpu_us = (cpu_seconds() - cpu_before) * 1e6 / total.max(1) as f64;
    let after = node.status().commits;
    (rate, (after.commands - before.commands) as f64 / (after.groups - before.groups).max(1) as f64, cpu_us)
}

/// CPU seconds this process has used (user and system), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line (11 and 12 after the name).
    (ticks(11) + ticks(12)) / 100.0
}

/// The measurement with the median rate.
fn median(mut runs: Vec<(f64, f64, f64)>) -> (f64, f64, f64) {
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    runs[runs.len() / 2]
}

/// sled alone: batches of `batch` writes of `size` bytes, each batch flushed.
fn sled_limit(batch: usize, size: usize, seconds: u64) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = sled::Config::new().path(dir.path()).mode(sled::Mode::HighThroughput).open().expect("sled");
    let value = vec![7u8; size];
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut written = 0u64;
    while Instant::now() < deadline {
        let mut b = sled::Batch::default();
        for _ in 0..batch {
            written += 1;
            b.insert(&written.to_be_bytes(), value.as_slice());
        }
        db.apply_batch(b).expect("batch");
        db.flush().expect("flush");
    }
    written as f64 / started.elapsed().as_secs_f64()
}

async fn federation(topology: &str) -> anyhow::Result<(Federation, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let topology = Topology::parse(topology).map_err(anyhow::Error::msg)?;
    let options = LaunchOptions { data: dir.path().to_path_buf(), admin_port_base: None };
    Ok((Federation::launch(topology, &options).await?, dir))
}

async fn prepare(node: &Node) -> anyhow::Result<()> {
    let me = node.identity().id;
    let org = Organization {
        credit_code: Organization::government_code(me, 1),
        name: "数据局".into(),
        division: me,
        parent: None,
    };
    node.register_organization(Principal::node(), org).await?;
    Ok(())
}

fn line(what: &str, (rate, group, cpu): (f64, f64, f64), drafts: f64, sled: f64) {
    println!(
        "{what:<40} {rate:>7.0}/s {:>5.1} % of drafts {:>5.1} % of sled  ({group:>4.1} per commit, {cpu:>4.0} µs CPU each)",
        100.0 * rate / drafts,
        100.0 * rate / sled
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    // As the cascade binary runs.
    cascade_runtime::memory::no_huge_pages();
    let seconds = env("CASCADE_BENCH_SECONDS", 2);
    let rounds = env("CASCADE_BENCH_ROUNDS", 3);
    let callers = env("CASCADE_BENCH_CALLERS", 64);
    println!("{callers} concurrent callers; medians of {rounds} alternating rounds of {seconds} s");
    let sled = sled_limit(callers as usize, 1024, seconds);
    println!(
        "{:<44} {sled:>9.0}/s  (batches of {callers} writes of 1 KiB, one flush each)",
        "baseline: sled group commit"
    );
    for (name, topology, at) in [
        ("a node alone (100000)", ALONE.to_string(), "100000"),
        (
            "Jinan in three-tier (370100)",
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../topologies/three-tier.toml"))?,
            "370100",
        ),
    ] {
        let (fed, _dir) = federation(&topology).await?;
        let running = fed.node(nid(at)).expect("running");
        let (node, url) = (running.node.clone(), running.admin_url.clone());
        prepare(&node).await?;
        println!("{name}:");
        for via in [Via::Api, Via::Http] {
            let label = if via == Via::Http { "HTTP" } else { "node API" };
            // Alternate short rounds and take medians: the machine's noise then hits
            // both sides alike.
            let (mut drafts, mut publishes) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                drafts.push(measure(&node, &url, via, false, callers, seconds).await);
                publishes.push(measure(&node, &url, via, true, callers, seconds).await);
            }
            let (drafts, publishes) = (median(drafts), median(publishes));
            line(&format!("  {label}: draft saves"), drafts, drafts.0, sled);
            line(&format!("  {label}: publishes (signed, durable)"), publishes, drafts.0, sled);
        }
        fed.shutdown().await?;
    }
    Ok(())
}
