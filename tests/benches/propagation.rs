//! Propagation and catch-up on `topologies/shandong.toml`, real QUIC on 127.0.0.1.
//!
//! `cargo bench -p cascade-tests --bench propagation` (N publishes, default 1000,
//! override with CASCADE_BENCH_PUBLISHES; catch-up size with CASCADE_BENCH_CATCHUP).
//!
//! Baseline measured in the same run: the origin's own durable acknowledgement of
//! a publish (one sled flush), so the ratios show what each hop adds.

/// The allocator of the `cascade` binary, so the bench measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cascade_access::Principal;
use cascade_launcher::topology::Topology;
use cascade_launcher::{Federation, LaunchOptions};
use cascade_protocol::catalog::EntryDraft;
use cascade_protocol::org::Organization;
use cascade_protocol::{LogId, NodeId, Scope};
use cascade_runtime::{Applied, Node};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// Polling interval while waiting for the federation.
const POLL: Duration = Duration::from_millis(10);
/// Interval of the optional catch-up progress trace.
const TRACE_EVERY: Duration = Duration::from_millis(100);

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn nid(s: &str) -> NodeId {
    s.parse().expect("division code")
}

fn draft(name: &str, code: Option<String>) -> EntryDraft {
    let mut value = cascade_tests::entry(name);
    value["provider"] = serde_json::json!(Organization::government_code(nid("370100"), 1));
    if let Some(code) = code {
        value["code"] = serde_json::json!(code);
    }
    serde_json::from_value(value).expect("draft")
}

async fn wait_for(rx: &mut broadcast::Receiver<Applied>, log: LogId, seq: u64) -> Instant {
    loop {
        match rx.recv().await {
            Ok(a) if a.log == log && a.seq >= seq => return Instant::now(),
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => panic!("node stopped"),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut samples: Vec<Duration>, baseline: Duration) {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
    println!(
        "{name:<34} p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms  (p50 = {:.1}x baseline)",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        p50.as_secs_f64() / baseline.as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    // As the cascade binary runs.
    cascade_runtime::memory::no_huge_pages();
    let publishes = env("CASCADE_BENCH_PUBLISHES", 1000);
    let catchup = env("CASCADE_BENCH_CATCHUP", 10_000);
    let topology =
        Topology::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies/shandong.toml"))
            .map_err(anyhow::Error::msg)?;
    let dir = tempfile::tempdir()?;
    let options = LaunchOptions { data: dir.path().to_path_buf(), admin_port_base: None };
    let mut fed = Federation::launch(topology, &options).await?;
    let node = |fed: &Federation, id: &str| -> Node { fed.node(nid(id)).expect("running").node.clone() };
    let jinan = node(&fed, "370100");
    let log = LogId { origin: nid("370100"), scope: Scope::Federation };
    // Wait until every city is linked (the hub sees 16 children).
    let hub = node(&fed, "370000");
    let start = Instant::now();
    while hub.status().peers.len() < 17 {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(60), "federation did not link up");
        tokio::time::sleep(POLL).await;
    }

    let org = Organization {
        credit_code: Organization::government_code(nid("370100"), 1),
        name: "济南市大数据局".into(),
        division: nid("370100"),
        parent: None,
    };
    let me = Principal::node;
    jinan.register_organization(me(), org).await?;
    // One published entry, updated N times: each update is one delta.
    let code = jinan.save_entry(me(), draft("bench", None)).await?.entry.code;
    jinan.publish(me(), &code, None).await?;
    let mut to_national = node(&fed, "100000").subscribe();
    let mut to_sibling = node(&fed, "370200").subscribe();
    let (mut ack, mut national, mut sibling) = (Vec::new(), Vec::new(), Vec::new());
    println!("shandong.toml, 18 nodes, {publishes} sequential publishes at 370100 (济南)");
    for i in 0..publishes {
        let t0 = Instant::now();
        let saved = jinan.save_entry(me(), draft(&format!("bench {i}"), Some(code.clone()))).await?;
        let acked = Instant::now();
        let seq = saved.delta_seq.unwrap_or(0);
        let waited = tokio::time::timeout(Duration::from_secs(30), async {
            tokio::join!(wait_for(&mut to_national, log, seq), wait_for(&mut to_sibling, log, seq))
        })
        .await;
        let Ok((n, s)) = waited else {
            for id in ["370100", "370000", "100000", "370200"] {
                let head = node(&fed, id).status().head(log.origin, log.scope);
                eprintln!("stalled at publish {i} (seq {seq}): {id} holds {head:?}");
            }
            anyhow::bail!("propagation stalled");
        };
        ack.push(acked - t0);
        national.push(n - t0);
        sibling.push(s - t0);
    }
    let mut sorted = ack.clone();
    sorted.sort();
    let baseline = percentile(&sorted, 0.5);
    report("baseline: durable ack at origin", ack, baseline);
    report("370100 -> 100000 (2 hops)", national, baseline);
    report("370100 -> 370200 (2 hops)", sibling, baseline);

    // Catch-up: Qingdao is down while Jinan publishes `catchup` deltas.
    fed.stop(nid("370200")).await?;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..64 {
        let jinan = jinan.clone();
        let code = code.clone();
        let n = catchup / 64 + usize::from(w < catchup % 64);
        tasks.push(tokio::spawn(async move {
            for i in 0..n {
                jinan
                    .save_entry(Principal::node(), draft(&format!("catch-up {w} {i}"), Some(code.clone())))
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let publish_time = t0.elapsed();
    let head = jinan.status().head(log.origin, log.scope);
    println!(
        "{catchup} concurrent publishes (64 writers, group commit): {:.2} s = {:.0} acknowledged publishes/s",
        publish_time.as_secs_f64(),
        catchup as f64 / publish_time.as_secs_f64()
    );
    // Let the rest of the federation digest the burst first, so that the catch-up
    // below measures the restarted node alone.
    let settle = Instant::now();
    for (id, running) in fed.nodes() {
        let node = running.node.clone();
        while node.status().head(log.origin, log.scope) < head {
            anyhow::ensure!(settle.elapsed() < Duration::from_secs(300), "{id} did not catch up");
            tokio::time::sleep(POLL).await;
        }
    }
    println!(
        "  (the other 16 nodes held all of it {:.2} s after the last acknowledgement)",
        settle.elapsed().as_secs_f64()
    );
    let t0 = Instant::now();
    fed.start(nid("370200")).await?;
    let restarted = Instant::now();
    let qingdao = node(&fed, "370200");
    let mut rx = qingdao.subscribe();
    let current = |q: &Node| q.status().head(log.origin, log.scope);
    if std::env::var("CASCADE_BENCH_TRACE").is_ok() {
        while current(&qingdao) < head {
            eprintln!("{:>6} ms: 370200 holds {}", t0.elapsed().as_millis(), current(&qingdao));
            tokio::time::sleep(TRACE_EVERY).await;
        }
    }
    if current(&qingdao) < head {
        tokio::time::timeout(Duration::from_secs(300), wait_for(&mut rx, log, head)).await?;
    }
    let total = t0.elapsed();
    drop((qingdao, jinan, hub));
    println!(
        "catch-up of {catchup} missed deltas at 370200: {:.2} s after restart ({:.2} s restore + start, {:.0} deltas/s over the link)",
        total.as_secs_f64(),
        (restarted - t0).as_secs_f64(),
        catchup as f64 / (total - (restarted - t0)).as_secs_f64()
    );
    fed.shutdown().await?;
    Ok(())
}
