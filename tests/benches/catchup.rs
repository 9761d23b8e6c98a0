//! Cold catch-up at the verification limit, with real nodes: a provincial node
//! that joins late receives its parent's log of N individually signed deltas
//! (default 1,000,000) over QUIC on 127.0.0.1, verifies each and makes it
//! durable in its sled folder. Baselines measured in the same run on the same
//! deltas: dalek's `verify_strict` one after another on one core, and this
//! crate's batch verifier on every core (the engine-only ceiling is
//! `cargo bench -p cascade-protocol --bench catchup`).
//!
//! The national node's log is written into its stopped sled folder (signing a
//! million deltas through the API would take the run's hour), continuing the
//! chain the node began itself, signed with its own key; the node then boots
//! from it, verifying every delta again, and serves it.
//!
//! `cargo bench -p cascade-tests --bench catchup` (CASCADE_BENCH_DELTAS).

/// The allocator of the `cascade` binary, so the bench measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cascade_core::WriteBatch;
use cascade_launcher::topology::Topology;
use cascade_launcher::{Federation, LaunchOptions};
use cascade_protocol::catalog::{CatalogEntry, EntryDraft, EntryStatus};
use cascade_protocol::org::Organization;
use cascade_protocol::signature;
use cascade_protocol::{Delta, DeltaBody, LogId, NodeId, Scope};
use ed25519_dalek::SigningKey;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Deltas written to the store per write batch while preparing the log.
const PREPARE_BATCH: usize = 10_000;

/// Polling interval while waiting for the late joiner.
const POLL: Duration = Duration::from_millis(20);

/// How long the catch-up may take before the bench gives up.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(1800);

const TOPOLOGY: &str = r#"
name = "late-joiner"
[[node]]
id = 100000
name = "中华人民共和国"
tier = "national"
[[node]]
id = 370000
name = "山东省"
tier = "provincial"
parent = 100000
"#;

fn nid(s: &str) -> NodeId {
    s.parse().expect("division code")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::var("CASCADE_BENCH_DELTAS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let topology = Topology::parse(TOPOLOGY).map_err(anyhow::Error::msg)?;
    let options = LaunchOptions { data: dir.path().to_path_buf(), admin_port_base: None };
    let mut fed = Federation::prepare(topology, &options)?;
    let (national, province) = (nid("100000"), nid("370000"));
    let log = LogId { origin: national, scope: Scope::Federation };

    // The national node begins its log (its Join), then stops.
    fed.start(national).await?;
    fed.stop(national).await?;
    let certs = cascade_launcher::pki::node_certs_dir(dir.path(), national);
    let creds = cascade_certs::NodeCredentials {
        chain: cascade_certs::read_chain_pem(&certs.join("node.pem"))?,
        key_pkcs8: cascade_certs::read_key_pem(&certs.join("node.key"))?,
    };
    let key = creds.signing_key()?;
    let store_dir = dir.path().join(national.to_string()).join(cascade_runtime::STORE_DIR);
    let t = Instant::now();
    let (deltas, target) = {
        let store = cascade_store::Store::open(&store_dir, national)?;
        let mut head = None;
        for d in store.all_deltas() {
            let d = d?;
            if d.log == log {
                head = Some((d.seq, d.hash()));
            }
        }
        let (seq, prev) = head.ok_or_else(|| anyhow::anyhow!("the national node wrote no log"))?;
        let deltas = continue_log(log, seq, prev, n, &key)?;
        for chunk in deltas.chunks(PREPARE_BATCH) {
            store.apply(&WriteBatch { deltas: chunk.to_vec(), ..WriteBatch::default() })?;
        }
        store.flush()?;
        (deltas, seq + n)
    };
    println!(
        "{n} individually signed deltas of {national}'s log written in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Baselines on the same deltas.
    let verifying = key.verifying_key();
    let t = Instant::now();
    for d in &deltas {
        verifying.verify_strict(&d.signing_bytes(), &d.signature()?)?;
    }
    let strict = t.elapsed();
    let messages: Vec<Vec<u8>> = deltas.iter().map(|d| d.signing_bytes()).collect();
    let items: Vec<signature::Item<'_>> = deltas
        .iter()
        .zip(&messages)
        .map(|(d, message)| signature::Item { key: &verifying, message, signature: &d.signature })
        .collect();
    let secret = signature::BatchSecret::from_signing_key(&SigningKey::from_bytes(&[7; 32]));
    let threads = signature::available_threads();
    let t = Instant::now();
    for frame in items.chunks(cascade_protocol::limits::MAX_BATCH_DELTAS) {
        anyhow::ensure!(
            signature::verify_each(frame, &secret, threads).iter().all(|ok| *ok),
            "a bad signature"
        );
    }
    let batch = t.elapsed();
    drop(items);
    drop((messages, deltas));

    // The national node boots from that log; the province joins late.
    let t = Instant::now();
    fed.start(national).await?;
    let boot = t.elapsed();
    let t = Instant::now();
    fed.start(province).await?;
    let joiner = fed.node(province).map(|r| r.node.clone()).ok_or_else(|| anyhow::anyhow!("no province"))?;
    let caught_up = cascade_tests::poll_within(POLL, CATCH_UP_WITHIN, || async {
        seq_of_head_at(&joiner, log) >= target
    })
    .await;
    anyhow::ensure!(caught_up, "no catch-up within {CATCH_UP_WITHIN:?}");
    let catch_up = t.elapsed();
    let rss = cascade_tests::process::peak_resident_of(std::process::id());
    drop(joiner);
    fed.shutdown().await?;

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!("baseline: dalek verify_strict, 1 core:      {:>9.0} deltas/s", rate(strict));
    println!(
        "baseline: batch verification, {threads} thread(s): {:>9.0} deltas/s  ({:.2}x verify_strict)",
        rate(batch),
        strict.as_secs_f64() / batch.as_secs_f64()
    );
    println!(
        "national node boot (re-verifies its log):  {:>9.0} deltas/s  ({:.1} s)",
        rate(boot),
        boot.as_secs_f64()
    );
    println!(
        "cold catch-up at the late joiner:          {:>9.0} deltas/s  ({:.1} s; {:.2}x verify_strict, {:.2}x batch)",
        rate(catch_up),
        catch_up.as_secs_f64(),
        strict.as_secs_f64() / catch_up.as_secs_f64(),
        batch.as_secs_f64() / catch_up.as_secs_f64()
    );
    println!("peak resident memory of the process (both nodes): {:.0} MiB", rss as f64 / (1 << 20) as f64);
    Ok(())
}

/// `n` deltas (an organization, then catalog entries) continuing `log` after `seq` (hash `prev`), each signed.
fn continue_log(
    log: LogId,
    seq: u64,
    prev: [u8; 32],
    n: u64,
    key: &SigningKey,
) -> anyhow::Result<Vec<Arc<Delta>>> {
    let org = Organization {
        credit_code: Organization::government_code(log.origin, 1),
        name: "国家数据局".into(),
        division: log.origin,
        parent: None,
    };
    let mut value = cascade_tests::entry("企业登记基本信息");
    value["provider"] = serde_json::json!(org.credit_code);
    let draft: EntryDraft = serde_json::from_value(value)?;
    let mut deltas: Vec<Arc<Delta>> = Vec::with_capacity(n as usize);
    // The provider first: an entry names an organization its origin registered.
    let first = Delta::unsigned(log, seq + 1, prev, &DeltaBody::Organization(org))?;
    let mut prev = first.hash();
    deltas.push(Arc::new(first));
    for i in 2..=n {
        // A thousand entries, each updated again and again.
        let entry = CatalogEntry::from_draft(
            draft.clone(),
            format!("1/{:06}", i % 1000 + 1),
            i,
            EntryStatus::Published,
        );
        let d = Delta::unsigned(log, seq + i, prev, &DeltaBody::Catalog(entry))?;
        prev = d.hash();
        deltas.push(Arc::new(d));
    }
    let per_thread = deltas.len().div_ceil(signature::available_threads()).max(1);
    std::thread::scope(|scope| {
        for chunk in deltas.chunks_mut(per_thread) {
            scope.spawn(move || {
                for d in chunk {
                    Arc::make_mut(d).seal(key);
                }
            });
        }
    });
    Ok(deltas)
}

/// The head of `log` at `node` (0 when it holds none).
fn seq_of_head_at(node: &cascade_runtime::Node, log: LogId) -> u64 {
    node.status()
        .version_vector
        .iter()
        .find(|v| v.origin == log.origin && v.scope == log.scope)
        .map_or(0, |v| v.seq)
}
