//! The seed corpus of every fuzz target (`fuzz/corpus/<target>/`) replays
//! through it as an ordinary test; `write_seed_corpus` (ignored) writes the
//! seeds anew from real encodings.

use cascade_protocol::dataset::{ChunkReply, ChunkRequest, Manifest};
use cascade_protocol::service::EntryRef;
use cascade_protocol::{encode, Delta, DeltaBody, Frame, LogId, NodeId, Scope, GENESIS_HASH};
use std::path::PathBuf;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

#[test]
fn the_seed_corpus_of_every_target_replays_without_a_panic() {
    for (name, target) in cascade_fuzzing::TARGETS {
        let dir = corpus().join(name);
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|f| f.unwrap().path())
            .collect();
        assert!(!files.is_empty(), "{name} has no seeds");
        for file in files {
            target(&std::fs::read(&file).unwrap());
        }
    }
}

fn id(s: &str) -> NodeId {
    s.parse().unwrap()
}

#[test]
#[ignore = "writes the seed corpus: cargo test -p cascade-fuzzing -- --ignored write_seed_corpus"]
fn write_seed_corpus() {
    let manifest = Manifest {
        entry: EntryRef { origin: id("370100"), code: "3/000001".into() },
        version: 1,
        previous: None,
        size: 40_000,
        content_hash: [1; 32],
        media_type: "text/csv".into(),
        csv: None,
        chunks: 1,
        lists: vec![[2; 32]],
        published_ms: 1_800_000_000_000,
    };
    let log = LogId { origin: id("370100"), scope: Scope::Federation };
    let delta = Delta::unsigned(log, 1, GENESIS_HASH, &DeltaBody::Dataset(manifest.clone())).unwrap();
    let data = vec![9u8; 40_000];
    let reply = ChunkReply {
        status: 200,
        by: id("370000"),
        reason: None,
        len: data.len() as u64,
        outboard: cascade_chunks::tree::outboard(&data),
    };
    let request = ChunkRequest {
        entry: manifest.entry.clone(),
        version: 1,
        hash: [3; 32],
        requester: id("370200"),
        grant: None,
        from_origin: false,
    };
    let root = cascade_certs::Authority::new_root("seed root").unwrap();
    let identity =
        cascade_certs::node_identity(id("100000"), cascade_protocol::Tier::National, None, "seed").unwrap();
    let certificate = root.issue(&identity).unwrap().chain[0].clone();
    let end = cascade_protocol::call::CallFrame::End { total: 5, tag: [4; 32] }.head().to_vec();
    let seeds: Vec<(&str, &str, Vec<u8>)> = vec![
        ("frame", "hello", encode(&Frame::Hello { vv: Default::default() }).unwrap()),
        ("frame", "deltas", encode(&Frame::Deltas(vec![delta.into()])).unwrap()),
        ("frame", "need", encode(&Frame::Need { log, from: 3 }).unwrap()),
        ("routed", "ack", encode(&Frame::RoutedAck(Vec::new())).unwrap()),
        ("call_head", "end", end),
        ("manifest", "csv", encode(&manifest).unwrap()),
        ("chunk", "reply", encode(&reply).unwrap()),
        ("chunk", "request", encode(&request).unwrap()),
        ("certificate", "national", certificate),
        ("admin_body", "entry", serde_json::to_vec(&entry_draft()).unwrap()),
        ("admin_body", "organization", br#"{"credit_code": "11370100MB0000001X", "name": "x", "division": 370100}"#.to_vec()),
        ("admin_body", "service", br#"{"name": "s", "upstream": "http://127.0.0.1:1/", "entry": {"origin": 370100, "code": "3/000001"}}"#.to_vec()),
        ("admin_body", "apply", br#"{"resource": {"entry": {"origin": 370100, "code": "3/000001"}}, "consumer": "c", "purpose": "p", "period_days": 30}"#.to_vec()),
        ("signature", "honest", [[2u8; SIGNATURE_SEED_RECORD], [7u8; SIGNATURE_SEED_RECORD], [3u8; SIGNATURE_SEED_RECORD]].concat()),
        ("signature", "damaged", [[6u8; SIGNATURE_SEED_RECORD], [2u8; SIGNATURE_SEED_RECORD]].concat()),
    ];
    for (target, name, bytes) in seeds {
        let dir = corpus().join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

/// One record of the `signature` target (selector, signature, message).
const SIGNATURE_SEED_RECORD: usize = 1 + 64 + 16;

/// A valid catalog entry draft, as a cataloger sends it.
fn entry_draft() -> serde_json::Value {
    serde_json::json!({"name": "企业登记基本信息", "classification": "3", "provider": "91350100M000100Y43",
        "summary": "Basic registration data", "format": "database",
        "data_items": [{"name": "统一社会信用代码", "data_type": "C", "length": 18}],
        "share_type": "unconditional", "share_mode": "platform", "open_type": "closed",
        "update_cycle": "daily"})
}
