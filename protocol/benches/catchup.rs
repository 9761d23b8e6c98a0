//! Engine-only catch-up throughput: one node admitting a long log in frames of
//! `MAX_BATCH_DELTAS`, against baselines measured in the same run on the same
//! deltas: bare `verify_strict` on one core, this crate's single rule on one
//! core, and its batch verifier on one core and on every core. No I/O: this is
//! the ceiling the runtime works under.
//!
//! `cargo bench -p cascade-protocol --bench catchup` (CASCADE_BENCH_DELTAS, default 20000).

use cascade_protocol::catalog::{CatalogEntry, EntryDraft, EntryStatus};
use cascade_protocol::limits::{MAX_BATCH_DELTAS, MAX_RUN_DELTAS};
use cascade_protocol::org::Organization;
use cascade_protocol::signature;
use cascade_protocol::{
    Action, Batcher, CertificateError, Delta, DeltaBody, Engine, Event, Frame, LogId, Member,
    MembershipVerifier, NodeId, Scope, Tier, GENESIS_HASH,
};
use ed25519_dalek::SigningKey;
use std::sync::Arc;
use std::time::Instant;

/// Bench double of the PKI: a chain is one blob `id,tier,parent,key-bytes`.
struct BenchVerifier;

impl MembershipVerifier for BenchVerifier {
    fn verify_chain(&self, chain: &[Vec<u8>], _now: Option<u64>) -> Result<Member, CertificateError> {
        let bad = |e: &dyn std::fmt::Display| CertificateError::Unparseable(e.to_string());
        let blob = chain.first().ok_or(CertificateError::EmptyChain)?;
        let (text, key) = blob.split_at(blob.len() - 32);
        let text = std::str::from_utf8(text).map_err(|e| bad(&e))?;
        let parts: Vec<&str> = text.split(',').collect();
        let key: [u8; 32] = key.try_into().map_err(|_| CertificateError::NotEd25519)?;
        Ok(Member {
            id: parts[0].parse().map_err(|e| bad(&e))?,
            tier: parts[1].parse().map_err(|e| bad(&e))?,
            parent: parts
                .get(2)
                .filter(|p| !p.is_empty())
                .map(|p| p.parse())
                .transpose()
                .map_err(|e| bad(&e))?,
            name: String::new(),
            key: ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| CertificateError::NotEd25519)?,
        })
    }
}

fn chain(id: &str, tier: Tier, parent: &str, key: &SigningKey) -> Vec<Vec<u8>> {
    let mut blob = format!("{id},{},{parent},", tier.as_str()).into_bytes();
    blob.extend_from_slice(&key.verifying_key().to_bytes());
    vec![blob]
}

fn main() {
    let n: u64 = std::env::var("CASCADE_BENCH_DELTAS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let origin_key = SigningKey::from_bytes(&[1; 32]);
    let origin: NodeId = "370100".parse().unwrap_or_else(|e| panic!("{e}"));
    let log = LogId { origin, scope: Scope::Federation };
    let draft: EntryDraft = serde_json::from_str(
        r#"{"name": "企业登记基本信息", "classification": "3", "provider": "91350100M000100Y43",
        "summary": "Basic registration data of enterprises", "format": "database",
        "data_items": [{"name": "统一社会信用代码", "data_type": "C", "length": 18}],
        "share_type": "unconditional", "share_mode": "platform", "open_type": "closed",
        "update_cycle": "daily"}"#,
    )
    .expect("draft");
    let join = DeltaBody::Join { chain: chain("370100", Tier::Municipal, "370000", &origin_key) };
    let org = Organization {
        credit_code: Organization::government_code(origin, 1),
        name: "济南市大数据局".into(),
        division: origin,
        parent: None,
    };
    let mut draft = draft;
    draft.provider = org.credit_code.clone();
    let mut deltas = vec![Arc::new(Delta::sign(&origin_key, log, 1, GENESIS_HASH, &join).expect("sign"))];
    let prev = deltas[0].hash();
    deltas
        .push(Arc::new(Delta::sign(&origin_key, log, 2, prev, &DeltaBody::Organization(org)).expect("sign")));
    for seq in 3..=n {
        let entry = CatalogEntry::from_draft(draft.clone(), "3/000001".into(), seq, EntryStatus::Published);
        let prev = deltas.last().map(|d| d.hash()).unwrap_or(GENESIS_HASH);
        deltas.push(Arc::new(Delta::unsigned(log, seq, prev, &DeltaBody::Catalog(entry)).expect("encode")));
    }
    sign_all(&mut deltas[2..], &origin_key);

    let key = origin_key.verifying_key();
    let messages: Vec<Vec<u8>> = deltas.iter().map(|d| d.signing_bytes()).collect();
    let items: Vec<signature::Item<'_>> = deltas
        .iter()
        .zip(&messages)
        .map(|(d, message)| signature::Item { key: &key, message, signature: &d.signature })
        .collect();
    let t = Instant::now();
    for d in &deltas {
        key.verify_strict(&d.signing_bytes(), &d.signature().expect("64 bytes")).expect("valid");
    }
    let baseline = t.elapsed();
    let rate = |d: std::time::Duration| n as f64 / d.as_secs_f64();
    let versus = |d: std::time::Duration| baseline.as_secs_f64() / d.as_secs_f64();
    println!("{n} deltas of one origin, frames of {MAX_BATCH_DELTAS}");
    println!("baseline: dalek verify_strict, 1 core:   {:>9.0} deltas/s", rate(baseline));
    let t = Instant::now();
    for d in &deltas {
        d.verify(&key).expect("valid");
    }
    let single = t.elapsed();
    println!(
        "Delta::verify (the one rule), 1 core:    {:>9.0} deltas/s  ({:.2}x the baseline)",
        rate(single),
        versus(single)
    );
    let secret = signature::BatchSecret::from_signing_key(&origin_key);
    for threads in [1, signature::available_threads()] {
        let t = Instant::now();
        for frame in items.chunks(MAX_BATCH_DELTAS) {
            assert!(signature::verify_each(frame, &secret, threads).iter().all(|ok| *ok));
        }
        let batch = t.elapsed();
        println!(
            "batch verification, {threads} thread(s):       {:>9.0} deltas/s  ({:.2}x the baseline)",
            rate(batch),
            versus(batch)
        );
    }
    let individually = admit(&deltas);
    println!(
        "engine admission, each delta signed:     {:>9.0} deltas/s  ({:.2}x the baseline)",
        rate(individually),
        versus(individually)
    );
    // The same log as a busy origin writes it: one signature per group commit, so
    // runs of up to MAX_RUN_DELTAS unsigned deltas, each closed by a signed one.
    let mut runs: Vec<Arc<Delta>> = deltas[..2].to_vec();
    for d in &deltas[2..] {
        let mut unsigned = Delta::clone(d);
        unsigned.signature.clear();
        if unsigned.seq % (MAX_RUN_DELTAS as u64 + 1) == 0 || unsigned.seq == n {
            unsigned.seal(&origin_key);
        }
        runs.push(Arc::new(unsigned));
    }
    let grouped = admit(&runs);
    println!(
        "engine admission, signed once per run:   {:>9.0} deltas/s  ({:.2}x the baseline)",
        rate(grouped),
        versus(grouped)
    );
}

/// Seals every delta, on every core (signing a million takes a while on one).
fn sign_all(deltas: &mut [Arc<Delta>], key: &SigningKey) {
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
}

/// Time for a fresh engine to admit `deltas` in frames of `MAX_BATCH_DELTAS`.
fn admit(deltas: &[Arc<Delta>]) -> std::time::Duration {
    let me_key = SigningKey::from_bytes(&[2; 32]);
    let mut engine = Engine::new(
        me_key.clone(),
        chain("370200", Tier::Municipal, "370000", &me_key),
        Box::new(BenchVerifier),
        0,
    )
    .expect("engine");
    let peer: NodeId = "370000".parse().unwrap_or_else(|e| panic!("{e}"));
    engine.handle(0, Event::PeerUp { peer });
    let t = Instant::now();
    let mut admitted = 0;
    let mut batcher = Batcher::new();
    let mut frames: Vec<Frame> = deltas.iter().filter_map(|d| batcher.push(d.clone())).collect();
    while let Some(frame) = batcher.finish() {
        frames.push(frame);
    }
    for frame in frames {
        for action in engine.handle(0, Event::Frame { peer, frame }) {
            if let Action::Persist(ds) = action {
                admitted += ds.len();
            }
        }
    }
    let elapsed = t.elapsed();
    assert_eq!(admitted, deltas.len(), "every delta admitted");
    elapsed
}
