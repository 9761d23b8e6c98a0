//! Deterministic tests of the sync engine: nodes wired by in-memory queues.

use cascade_protocol::catalog::{CatalogEntry, EntryDraft, EntryStatus};
use cascade_protocol::delta::Revocation;
use cascade_protocol::org::Organization;
use cascade_protocol::{
    Action, CertificateError, Delta, DeltaBody, Engine, EngineError, Event, Frame, LogId, Member,
    MembershipVerifier, NodeId, RejectReason, Scope, Tier,
};
use ed25519_dalek::SigningKey;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Test double of the PKI: a "chain" is `id,tier,parent,pubkey-hex` in one blob.
struct TestVerifier;

impl MembershipVerifier for TestVerifier {
    fn verify_chain(&self, chain: &[Vec<u8>], _now: Option<u64>) -> Result<Member, CertificateError> {
        let bad = |e: &dyn std::fmt::Display| CertificateError::Unparseable(e.to_string());
        let text =
            std::str::from_utf8(chain.first().ok_or(CertificateError::EmptyChain)?).map_err(|e| bad(&e))?;
        let parts: Vec<&str> = text.split(',').collect();
        if parts.len() != 5 || parts[4] != "trusted" {
            return Err(CertificateError::NotChained("untrusted chain".into()));
        }
        let key: [u8; 32] = hex(parts[3]).try_into().map_err(|_| CertificateError::NotEd25519)?;
        Ok(Member {
            id: parts[0].parse().map_err(|e| bad(&e))?,
            tier: parts[1].parse().map_err(|e| bad(&e))?,
            parent: if parts[2].is_empty() { None } else { Some(parts[2].parse().map_err(|e| bad(&e))?) },
            name: parts[0].into(),
            key: ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| CertificateError::NotEd25519)?,
        })
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn chain_for(
    id: NodeId,
    tier: Tier,
    parent: Option<NodeId>,
    key: &SigningKey,
    trusted: bool,
) -> Vec<Vec<u8>> {
    let pk: String = key.verifying_key().to_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let parent = parent.map(|p| p.to_string()).unwrap_or_default();
    let tag = if trusted { "trusted" } else { "rogue" };
    vec![format!("{id},{},{parent},{pk},{tag}", tier.as_str()).into_bytes()]
}

fn nid(s: &str) -> NodeId {
    s.parse().unwrap()
}

fn entry(code: &str, version: u64, status: EntryStatus) -> CatalogEntry {
    let draft: EntryDraft = serde_json::from_str(
        r#"{"name": "企业登记基本信息", "classification": "3", "provider": "91350100M000100Y43",
        "summary": "Basic registration data", "format": "database",
        "data_items": [{"name": "统一社会信用代码", "data_type": "C", "length": 18}],
        "share_type": "unconditional", "share_mode": "platform", "open_type": "closed",
        "update_cycle": "daily"}"#,
    )
    .unwrap();
    CatalogEntry::from_draft(draft, code.into(), version, status)
}

/// Rewrites a frame on the link (from, to).
type Tamper = Box<dyn FnMut(NodeId, NodeId, &mut Frame)>;

/// A little federation of engines wired by FIFO links; stored logs are kept per node.
struct Net {
    engines: BTreeMap<NodeId, Engine>,
    stores: BTreeMap<NodeId, BTreeMap<LogId, Vec<Arc<Delta>>>>,
    queue: VecDeque<(NodeId, NodeId, Frame)>,
    rejections: Vec<(NodeId, RejectReason)>,
    /// Rewrites frames on the link (from, to): the malicious relay.
    tamper: Option<Tamper>,
    /// Each node's signing key.
    keys: BTreeMap<NodeId, SigningKey>,
}

impl Net {
    fn new(nodes: &[(&str, Tier, Option<&str>)], seed: u64) -> Net {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut net = Net {
            engines: BTreeMap::new(),
            stores: BTreeMap::new(),
            queue: VecDeque::new(),
            rejections: vec![],
            tamper: None,
            keys: BTreeMap::new(),
        };
        for (id, tier, parent) in nodes {
            let key = SigningKey::from_bytes(&rng.gen());
            let chain = chain_for(nid(id), *tier, parent.map(nid), &key, true);
            net.keys.insert(nid(id), key.clone());
            let mut engine = Engine::new(key, chain, Box::new(TestVerifier), 0).unwrap();
            let mut actions = Vec::new();
            engine.join(&mut actions).unwrap();
            engine.seal(&mut actions);
            net.engines.insert(nid(id), engine);
            net.apply(nid(id), actions);
        }
        net
    }

    fn apply(&mut self, at: NodeId, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Persist(admitted) => {
                    for a in admitted {
                        let d = a.delta;
                        let log = self.stores.entry(at).or_default().entry(d.log).or_default();
                        assert_eq!(log.len() as u64 + 1, d.seq, "persisted out of order");
                        log.push(d);
                    }
                }
                Action::Send { peer, frame } => self.queue.push_back((at, peer, frame)),
                Action::SendRange { peer, log, from, to } => {
                    let stored = &self.stores[&at][&log];
                    let deltas = stored[(from - 1) as usize..to as usize].to_vec();
                    self.queue.push_back((at, peer, Frame::Deltas(deltas)));
                }
                Action::Reject(r) => self.rejections.push((at, r.reason)),
                Action::Disconnect { peer, .. } => self.disconnect(at, peer),
            }
        }
    }

    fn connect(&mut self, a: &str, b: &str) {
        let (a, b) = (nid(a), nid(b));
        let x = self.engines.get_mut(&a).unwrap().handle(0, Event::PeerUp { peer: b });
        self.apply(a, x);
        let y = self.engines.get_mut(&b).unwrap().handle(0, Event::PeerUp { peer: a });
        self.apply(b, y);
    }

    fn disconnect(&mut self, a: NodeId, b: NodeId) {
        for (x, y) in [(a, b), (b, a)] {
            let actions = self.engines.get_mut(&x).unwrap().handle(0, Event::PeerDown { peer: y });
            self.apply(x, actions);
        }
        self.queue.retain(|(f, t, _)| !((*f == a && *t == b) || (*f == b && *t == a)));
    }

    fn publish(&mut self, at: &str, scope: Scope, mut e: CatalogEntry) {
        let at = nid(at);
        e.provider = self.register(at);
        self.originate(at, scope, DeltaBody::Catalog(e)).unwrap();
    }

    /// Originates and seals a delta at `at` (a group of one), executing the
    /// actions; returns the delta as persisted (signed).
    fn originate(&mut self, at: NodeId, scope: Scope, body: DeltaBody) -> Result<Arc<Delta>, EngineError> {
        let mut actions = Vec::new();
        let engine = self.engines.get_mut(&at).unwrap();
        let result = engine.originate(scope, body, &mut actions);
        engine.seal(&mut actions);
        self.apply(at, actions);
        let delta = result?;
        Ok(self.stores[&at][&delta.log][delta.seq as usize - 1].clone())
    }

    /// The node's organization, registered on first use.
    fn register(&mut self, at: NodeId) -> String {
        let code = Organization::government_code(at, 1);
        if !self.engines[&at].is_registered_at(&code, at) {
            let org = Organization {
                credit_code: code.clone(),
                name: format!("{at} bureau"),
                division: at,
                parent: None,
            };
            self.originate(at, Scope::Federation, DeltaBody::Organization(org)).unwrap();
        }
        code
    }

    fn run(&mut self) {
        let mut steps = 0;
        while let Some((from, to, mut frame)) = self.queue.pop_front() {
            steps += 1;
            assert!(steps < 100_000, "no convergence");
            if let Some(t) = self.tamper.as_mut() {
                t(from, to, &mut frame);
            }
            let actions = self.engines.get_mut(&to).unwrap().handle(0, Event::Frame { peer: from, frame });
            self.apply(to, actions);
        }
    }

    fn head(&self, at: &str, origin: &str, scope: Scope) -> u64 {
        self.engines[&nid(at)].head(LogId { origin: nid(origin), scope })
    }
}

const TREE: &[(&str, Tier, Option<&str>)] = &[
    ("100000", Tier::National, None),
    ("370000", Tier::Provincial, Some("100000")),
    ("370100", Tier::Municipal, Some("370000")),
    ("370200", Tier::Municipal, Some("370000")),
    ("110000", Tier::Provincial, Some("100000")),
];

fn tree(seed: u64) -> Net {
    Net::new(TREE, seed)
}

fn wire(net: &mut Net) {
    net.connect("370000", "100000");
    net.connect("370100", "370000");
    net.connect("370200", "370000");
    net.connect("110000", "100000");
    net.run();
}

#[test]
fn catalog_reaches_every_node_and_province_scope_stays_home() {
    let mut net = tree(1);
    wire(&mut net);
    net.publish("370100", Scope::Federation, entry("3/000001", 1, EntryStatus::Published));
    net.publish("370100", Scope::Province, entry("3/000002", 1, EntryStatus::Published));
    net.run();
    for at in ["100000", "370000", "370200", "110000"] {
        assert_eq!(net.head(at, "370100", Scope::Federation), 3, "at {at}");
    }
    assert_eq!(net.head("370000", "370100", Scope::Province), 2);
    assert_eq!(net.head("370200", "370100", Scope::Province), 2);
    assert_eq!(net.head("100000", "370100", Scope::Province), 0);
    assert_eq!(net.head("110000", "370100", Scope::Province), 0);
    assert!(net.rejections.is_empty(), "{:?}", net.rejections);
}

#[test]
fn reconnect_catches_up_with_one_hello_each_way() {
    let mut net = tree(2);
    wire(&mut net);
    net.disconnect(nid("370200"), nid("370000"));
    for i in 1..=50 {
        net.publish("370100", Scope::Federation, entry(&format!("3/{i:06}"), 1, EntryStatus::Published));
    }
    net.run();
    assert_eq!(net.head("370200", "370100", Scope::Federation), 1);
    net.connect("370200", "370000");
    net.run();
    assert_eq!(net.head("370200", "370100", Scope::Federation), 52);
}

#[test]
fn tampered_relay_is_rejected_and_nothing_downstream_stores_it() {
    let mut net = tree(3);
    wire(&mut net);
    // 370000 relays to 100000 and alters the body of everything 370100 published.
    net.tamper = Some(Box::new(|from, to, frame| {
        if from == nid("370000") && to == nid("100000") {
            if let Frame::Deltas(ds) = frame {
                for d in ds.iter_mut().filter(|d| d.log.origin == nid("370100")) {
                    let d = Arc::make_mut(d);
                    let last = d.body.len() - 1;
                    d.body[last] ^= 1;
                }
            }
        }
    }));
    net.publish("370100", Scope::Federation, entry("3/000001", 1, EntryStatus::Published));
    net.run();
    assert_eq!(net.head("370000", "370100", Scope::Federation), 3);
    assert_eq!(net.head("100000", "370100", Scope::Federation), 1);
    assert_eq!(net.head("110000", "370100", Scope::Federation), 1);
    assert!(net.rejections.iter().any(|(at, r)| *at == nid("100000") && *r == RejectReason::BadSignature));
    // Once the relay behaves, a reconnect heals the gap.
    net.tamper = None;
    net.disconnect(nid("370000"), nid("100000"));
    net.connect("370000", "100000");
    net.run();
    assert_eq!(net.head("110000", "370100", Scope::Federation), 3);
}

#[test]
fn forged_origin_is_rejected() {
    let mut net = tree(4);
    wire(&mut net);
    // 370000 signs a delta in 370100's log with its own key.
    let rogue = SigningKey::from_bytes(&[7; 32]);
    let head = net.stores[&nid("370000")][&LogId { origin: nid("370100"), scope: Scope::Federation }]
        .last()
        .unwrap()
        .clone();
    let forged = Delta::sign(
        &rogue,
        head.log,
        2,
        head.hash(),
        &DeltaBody::Catalog(entry("3/000009", 1, EntryStatus::Published)),
    )
    .unwrap();
    net.queue.push_back((nid("370000"), nid("100000"), Frame::Deltas(vec![Arc::new(forged)])));
    net.run();
    assert_eq!(net.head("100000", "370100", Scope::Federation), 1);
    assert_eq!(net.rejections, vec![(nid("100000"), RejectReason::BadSignature)]);
}

#[test]
fn a_join_from_another_root_or_for_another_node_is_rejected() {
    let mut net = tree(5);
    wire(&mut net);
    let key = SigningKey::from_bytes(&[9; 32]);
    let log = LogId { origin: nid("370300"), scope: Scope::Federation };
    let rogue = chain_for(nid("370300"), Tier::Municipal, Some(nid("370000")), &key, false);
    let d = Delta::sign(&key, log, 1, [0; 32], &DeltaBody::Join { chain: rogue }).unwrap();
    let other = chain_for(nid("370400"), Tier::Municipal, Some(nid("370000")), &key, true);
    let e = Delta::sign(&key, log, 1, [0; 32], &DeltaBody::Join { chain: other }).unwrap();
    net.queue.push_back((nid("370000"), nid("100000"), Frame::Deltas(vec![Arc::new(d), Arc::new(e)])));
    net.run();
    assert_eq!(net.head("100000", "370300", Scope::Federation), 0);
    let labels: Vec<&str> = net.rejections.iter().map(|(_, r)| r.label()).collect();
    assert_eq!(labels, vec!["not_member", "wrong_origin"]);
}

#[test]
fn revocation_cuts_off_later_deltas_everywhere() {
    let mut net = tree(6);
    wire(&mut net);
    let cutoff = net.head("370000", "370100", Scope::Federation);
    let rev = Revocation {
        node: nid("370100"),
        cutoff: vec![(Scope::Federation, cutoff)],
        reason: "decommissioned".into(),
    };
    net.originate(nid("370000"), Scope::Federation, DeltaBody::Revoke(rev)).unwrap();
    net.run();
    for at in ["100000", "370200", "110000"] {
        assert!(net.engines[&nid(at)].is_revoked(nid("370100")), "at {at}");
    }
    // The revoked node was disconnected; a delta it signs now is refused by a relay.
    assert!(!net.engines[&nid("370000")].peers().any(|(p, _)| p == nid("370100")));
    let provider = net.register(nid("370100"));
    let mut e = entry("3/000001", 1, EntryStatus::Published);
    e.provider = provider;
    let late = net.originate(nid("370100"), Scope::Federation, DeltaBody::Catalog(e)).unwrap();
    let log = LogId { origin: nid("370100"), scope: Scope::Federation };
    let org = net.stores[&nid("370100")][&log][1].clone();
    net.queue.push_back((nid("370200"), nid("370000"), Frame::Deltas(vec![org, late])));
    net.connect("370200", "370000");
    net.run();
    assert_eq!(net.head("370000", "370100", Scope::Federation), cutoff);
    assert!(net.rejections.iter().any(|(_, r)| *r == RejectReason::Revoked));
}

#[test]
fn only_the_parent_or_national_may_revoke() {
    let mut net = tree(7);
    wire(&mut net);
    let rev = Revocation { node: nid("370100"), cutoff: vec![], reason: "hostile".into() };
    let err = net.engines.get_mut(&nid("110000")).unwrap().originate(
        Scope::Federation,
        DeltaBody::Revoke(rev),
        &mut Vec::new(),
    );
    assert!(err.is_err());
}

#[test]
fn random_publishing_converges_for_any_seed() {
    for seed in 0..20u64 {
        let mut net = tree(100 + seed);
        let mut rng = StdRng::seed_from_u64(seed);
        wire(&mut net);
        let ids = ["100000", "370000", "370100", "370200", "110000"];
        for i in 0..40 {
            let at = ids[rng.gen_range(0..ids.len())];
            let scope = if at != "100000" && rng.gen_bool(0.3) { Scope::Province } else { Scope::Federation };
            net.publish(at, scope, entry(&format!("3/{i:06}"), 1, EntryStatus::Published));
            if rng.gen_bool(0.3) {
                net.run();
            }
        }
        net.run();
        for a in ids {
            for b in ids {
                assert_eq!(
                    net.engines[&nid(a)]
                        .version_vector()
                        .iter()
                        .filter(|(l, _)| l.visible_at(nid(b)))
                        .collect::<Vec<_>>(),
                    net.engines[&nid(b)]
                        .version_vector()
                        .iter()
                        .filter(|(l, _)| l.visible_at(nid(a)))
                        .collect::<Vec<_>>(),
                    "seed {seed}: {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn an_origin_signing_two_deltas_at_one_position_is_a_fork() {
    let mut net = tree(8);
    wire(&mut net);
    net.publish("370100", Scope::Federation, entry("3/000001", 1, EntryStatus::Published));
    net.run();
    // 370100 "forgets" its seq 2 (say, lost in a power cut) and signs another one.
    let log = LogId { origin: nid("370100"), scope: Scope::Federation };
    let org = net.stores[&nid("370100")][&log][1].clone();
    // 370100's own key: the third drawn by `Net::new` for seed 8.
    let mut rng = StdRng::seed_from_u64(8);
    let keys: Vec<[u8; 32]> = (0..3).map(|_| rng.gen()).collect();
    let key = SigningKey::from_bytes(&keys[2]);
    let other = Delta::sign(
        &key,
        log,
        3,
        org.hash(),
        &DeltaBody::Catalog(entry("3/000002", 1, EntryStatus::Published)),
    )
    .unwrap();
    let mut forged = other.clone();
    forged.signature[0] ^= 1;
    net.queue.push_back((
        nid("370000"),
        nid("100000"),
        Frame::Deltas(vec![Arc::new(other), Arc::new(forged)]),
    ));
    net.run();
    assert_eq!(
        net.rejections,
        vec![(nid("100000"), RejectReason::Fork), (nid("100000"), RejectReason::BadSignature)]
    );
}

#[test]
fn a_second_hello_on_one_link_drops_the_peer() {
    let mut net = tree(9);
    wire(&mut net);
    let engine = net.engines.get_mut(&nid("370000")).unwrap();
    let actions = engine.handle(0, Event::Frame { peer: nid("370100"), frame: Frame::Hello { vv: vec![] } });
    assert!(matches!(actions.as_slice(), [Action::Disconnect { .. }]), "{actions:?}");
}

#[test]
fn needs_are_rate_limited_per_second() {
    let mut net = tree(10);
    wire(&mut net);
    let log = LogId { origin: nid("370100"), scope: Scope::Federation };
    let engine = net.engines.get_mut(&nid("370000")).unwrap();
    let mut served = 0;
    for _ in 0..1000 {
        let actions =
            engine.handle(5, Event::Frame { peer: nid("100000"), frame: Frame::Need { log, from: 1 } });
        served += actions.len();
    }
    assert_eq!(served, cascade_protocol::limits::NEEDS_PER_SECOND as usize);
    let actions = engine.handle(6, Event::Frame { peer: nid("100000"), frame: Frame::Need { log, from: 1 } });
    assert_eq!(actions.len(), 1);
}

#[test]
fn a_national_revocation_cuts_province_logs_where_each_node_stands() {
    let mut net = tree(11);
    wire(&mut net);
    net.publish("370100", Scope::Province, entry("3/000001", 1, EntryStatus::Published));
    net.run();
    assert_eq!(net.head("370200", "370100", Scope::Province), 2);
    // The national node cannot see 370100's province log: its revocation names only
    // the federation log.
    let cutoff = net.head("100000", "370100", Scope::Federation);
    let rev =
        Revocation { node: nid("370100"), cutoff: vec![(Scope::Federation, cutoff)], reason: "x".into() };
    net.originate(nid("100000"), Scope::Federation, DeltaBody::Revoke(rev)).unwrap();
    net.run();
    assert!(net.engines[&nid("370200")].is_revoked(nid("370100")));
    // What 370200 held stays; a later province delta of 370100 is refused.
    // 370100 itself does not know yet (it was disconnected); it signs one more.
    let mut e = entry("3/000002", 1, EntryStatus::Published);
    e.provider = Organization::government_code(nid("370100"), 1);
    let delta = net.originate(nid("370100"), Scope::Province, DeltaBody::Catalog(e)).unwrap();
    net.queue.push_back((nid("370000"), nid("370200"), Frame::Deltas(vec![delta])));
    net.run();
    assert_eq!(net.head("370200", "370100", Scope::Province), 2);
    assert!(net.rejections.iter().any(|(at, r)| *at == nid("370200") && *r == RejectReason::Revoked));
}

#[test]
fn restore_accepts_what_was_admitted_before_a_revocation_and_detects_corruption() {
    let mut net = tree(12);
    wire(&mut net);
    for i in 0..3 {
        net.publish("370100", Scope::Federation, entry(&format!("3/{i:06}"), 1, EntryStatus::Published));
    }
    net.run();
    let rev = Revocation { node: nid("370100"), cutoff: vec![(Scope::Federation, 2)], reason: "x".into() };
    net.originate(nid("370000"), Scope::Federation, DeltaBody::Revoke(rev)).unwrap();
    net.run();
    // 370200 holds 370100's deltas 3 and 4, admitted before the revocation said 2.
    assert_eq!(net.head("370200", "370100", Scope::Federation), 5);
    let stored: Vec<Delta> = net.stores[&nid("370200")].values().flatten().map(|d| Delta::clone(d)).collect();
    // 370200's own key: the fourth drawn by `Net::new` for seed 12.
    let fresh = |_: u64| {
        let mut rng = StdRng::seed_from_u64(12);
        let keys: Vec<[u8; 32]> = (0..4).map(|_| rng.gen()).collect();
        let key = SigningKey::from_bytes(&keys[3]);
        let chain = chain_for(nid("370200"), Tier::Municipal, Some(nid("370000")), &key, true);
        Engine::new(key, chain, Box::new(TestVerifier), 0).unwrap()
    };
    // Restoring in store order (origins sorted: the revoker before the revoked) works.
    let mut sorted = stored.clone();
    sorted.sort_by_key(|d| (d.log, d.seq));
    let mut engine = fresh(1);
    engine.restore(sorted.clone(), |_, _| {}).unwrap();
    assert!(engine.is_revoked(nid("370100")));
    assert_eq!(engine.head(LogId { origin: nid("370100"), scope: Scope::Federation }), 5);
    // A flipped byte in a stored delta is caught.
    let mut corrupt = sorted;
    let last = corrupt.len() - 1;
    corrupt[last].body[0] ^= 1;
    assert!(fresh(2).restore(corrupt, |_, _| {}).is_err());
}

#[test]
fn conflicting_registrations_never_block_a_log_and_foreign_codes_are_refused() {
    let mut net = tree(13);
    wire(&mut net);
    // Shandong and Jinan both register Jinan's bureau code at once: both logs go on.
    let code = Organization::government_code(nid("370100"), 1);
    for at in ["370000", "370100"] {
        let org = Organization {
            credit_code: code.clone(),
            name: "济南市大数据局".into(),
            division: nid("370100"),
            parent: None,
        };
        net.originate(nid(at), Scope::Federation, DeltaBody::Organization(org)).unwrap();
    }
    net.publish("370100", Scope::Federation, entry("3/000001", 1, EntryStatus::Published));
    net.run();
    assert!(net.rejections.is_empty(), "{:?}", net.rejections);
    assert_eq!(net.head("110000", "370100", Scope::Federation), 3);
    // Beijing cannot register a code issued in Shandong.
    let org =
        Organization { credit_code: code, name: "冒名".into(), division: nid("110000"), parent: None };
    let refused = net.engines.get_mut(&nid("110000")).unwrap().originate(
        Scope::Federation,
        DeltaBody::Organization(org),
        &mut Vec::new(),
    );
    assert!(refused.is_err());
}

impl Net {
    /// Originates several catalog changes at `at` in one group: sealed once.
    fn group(&mut self, at: &str, codes: &[&str]) -> Vec<Arc<Delta>> {
        let at = nid(at);
        let provider = self.register(at);
        let mut actions = Vec::new();
        let engine = self.engines.get_mut(&at).unwrap();
        let mut seqs = Vec::new();
        for code in codes {
            let mut e = entry(code, 1, EntryStatus::Published);
            e.provider = provider.clone();
            seqs.push(engine.originate(Scope::Federation, DeltaBody::Catalog(e), &mut actions).unwrap().seq);
        }
        engine.seal(&mut actions);
        self.apply(at, actions);
        let log = LogId { origin: at, scope: Scope::Federation };
        seqs.iter().map(|seq| self.stores[&at][&log][*seq as usize - 1].clone()).collect()
    }
}

#[test]
fn a_group_is_signed_once_and_every_node_admits_its_run() {
    let mut net = tree(20);
    wire(&mut net);
    let group = net.group("370100", &["3/000001", "3/000002", "3/000003", "3/000004"]);
    let signed: Vec<bool> = group.iter().map(|d| d.is_signed()).collect();
    assert_eq!(signed, vec![false, false, false, true], "one signature per group");
    net.run();
    for at in ["100000", "370000", "370200", "110000"] {
        assert_eq!(net.head(at, "370100", Scope::Federation), group[3].seq, "at {at}");
    }
    assert!(net.rejections.is_empty(), "{:?}", net.rejections);
    // A node restarting from its store re-verifies the run through its signature.
    let stored: Vec<Delta> = net.stores[&nid("110000")].values().flatten().map(|d| Delta::clone(d)).collect();
    let mut rng = StdRng::seed_from_u64(20);
    let keys: Vec<[u8; 32]> = (0..5).map(|_| rng.gen()).collect();
    let key = SigningKey::from_bytes(&keys[4]);
    let chain = chain_for(nid("110000"), Tier::Provincial, Some(nid("100000")), &key, true);
    let mut fresh = Engine::new(key, chain, Box::new(TestVerifier), 0).unwrap();
    fresh.restore(stored.clone(), |_, _| {}).unwrap();
    assert_eq!(fresh.head(group[0].log), group[3].seq);
    // A store that lost the closing signature is refused, not trusted.
    let truncated: Vec<Delta> =
        stored.into_iter().filter(|d| !(d.log == group[3].log && d.seq == group[3].seq)).collect();
    let mut rng = StdRng::seed_from_u64(20);
    let keys: Vec<[u8; 32]> = (0..5).map(|_| rng.gen()).collect();
    let key = SigningKey::from_bytes(&keys[4]);
    let chain = chain_for(nid("110000"), Tier::Provincial, Some(nid("100000")), &key, true);
    let mut fresh = Engine::new(key, chain, Box::new(TestVerifier), 0).unwrap();
    assert!(fresh.restore(truncated, |_, _| {}).is_err());
}

#[test]
fn a_run_with_a_tampered_member_or_without_its_signature_is_refused_whole() {
    let (hub, national) = (nid("370000"), nid("100000"));
    for case in ["tampered", "cut"] {
        let mut net = tree(21);
        wire(&mut net);
        let origin_log = LogId { origin: nid("370100"), scope: Scope::Federation };
        net.register(nid("370100"));
        net.run();
        let before = net.head("100000", "370100", Scope::Federation);
        // The hub relays 370100's next run to the national node altered: a middle
        // body changed, or the signed delta closing the run left out.
        net.tamper = Some(Box::new(move |from, to, frame| {
            if (from, to) != (hub, national) {
                return;
            }
            if let Frame::Deltas(ds) = frame {
                if case == "tampered" {
                    if let Some(d) = ds.iter_mut().filter(|d| d.log == origin_log && !d.is_signed()).nth(1) {
                        Arc::make_mut(d).body[0] ^= 1;
                    }
                } else {
                    ds.retain(|d| d.log != origin_log || !d.is_signed());
                }
            }
        }));
        let group = net.group("370100", &["3/000001", "3/000002", "3/000003"]);
        net.run();
        assert_eq!(
            net.head("370200", "370100", Scope::Federation),
            group[2].seq,
            "{case}: the sibling has it"
        );
        assert_eq!(
            net.head("100000", "370100", Scope::Federation),
            before,
            "{case}: nothing of the run stored"
        );
        assert!(
            net.rejections.iter().any(|(at, r)| *at == national && *r == RejectReason::BadSignature),
            "{case}: {:?}",
            net.rejections
        );
        // Once the hub relays honestly, a reconnect heals the gap.
        net.tamper = None;
        net.disconnect(hub, national);
        net.connect("370000", "100000");
        net.run();
        assert_eq!(net.head("100000", "370100", Scope::Federation), group[2].seq, "{case}: healed");
    }
}

#[test]
fn a_long_group_is_signed_every_max_run_deltas() {
    let mut net = tree(22);
    wire(&mut net);
    let run = cascade_protocol::limits::MAX_RUN_DELTAS;
    let codes: Vec<String> = (1..=run + 10).map(|i| format!("3/{i:06}")).collect();
    let codes: Vec<&str> = codes.iter().map(String::as_str).collect();
    let group = net.group("370100", &codes);
    let signed: Vec<usize> =
        group.iter().enumerate().filter(|(_, d)| d.is_signed()).map(|(i, _)| i).collect();
    assert_eq!(signed, vec![run, run + 9], "a run never exceeds its limit");
    net.run();
    assert_eq!(net.head("110000", "370100", Scope::Federation), group.last().unwrap().seq);
    assert!(net.rejections.is_empty(), "{:?}", net.rejections);
}

#[test]
fn a_group_writing_both_logs_interleaved_arrives_whole_everywhere() {
    let mut net = tree(23);
    wire(&mut net);
    let at = nid("370100");
    let provider = net.register(at);
    let mut actions = Vec::new();
    let engine = net.engines.get_mut(&at).unwrap();
    for i in 1..=6u64 {
        let scope = if i % 2 == 0 { Scope::Province } else { Scope::Federation };
        let mut e = entry(&format!("3/{i:06}"), 1, EntryStatus::Published);
        e.provider = provider.clone();
        engine.originate(scope, DeltaBody::Catalog(e), &mut actions).unwrap();
    }
    engine.seal(&mut actions);
    net.apply(at, actions);
    net.run();
    assert!(net.rejections.is_empty(), "{:?}", net.rejections);
    let federation = net.head("370100", "370100", Scope::Federation);
    let province = net.head("370100", "370100", Scope::Province);
    assert_eq!((federation, province), (5, 4), "Join, organization and three entries; Join and three");
    for to in ["370000", "370200"] {
        assert_eq!(net.head(to, "370100", Scope::Province), province, "at {to}");
    }
    for to in ["100000", "110000", "370000", "370200"] {
        assert_eq!(net.head(to, "370100", Scope::Federation), federation, "at {to}");
    }
}

#[test]
fn a_signed_run_with_an_invalid_member_is_refused_whole_and_leaves_no_trace() {
    let mut net = tree(24);
    wire(&mut net);
    let origin = nid("370100");
    let provider = net.register(origin);
    net.run();
    let log = LogId { origin, scope: Scope::Federation };
    let held = net.stores[&nid("100000")][&log].clone();
    let head = held.last().unwrap().clone();
    // 370100's own key: the third drawn by `Net::new` for seed 24.
    let mut rng = StdRng::seed_from_u64(24);
    let keys: Vec<[u8; 32]> = (0..3).map(|_| rng.gen()).collect();
    let key = SigningKey::from_bytes(&keys[2]);
    let mut good = entry("3/000001", 1, EntryStatus::Published);
    good.provider = provider.clone();
    let mut bad = entry("3/000002", 1, EntryStatus::Published);
    bad.provider = Organization::government_code(origin, 99); // never registered
    let d1 = Delta::unsigned(log, head.seq + 1, head.hash(), &DeltaBody::Catalog(good.clone())).unwrap();
    let d2 = Delta::unsigned(log, head.seq + 2, d1.hash(), &DeltaBody::Catalog(bad)).unwrap();
    let mut d3 = Delta::unsigned(log, head.seq + 3, d2.hash(), &DeltaBody::Catalog(good)).unwrap();
    d3.seal(&key);
    let run: Vec<Arc<Delta>> = vec![Arc::new(d1), Arc::new(d2), Arc::new(d3)];
    net.queue.push_back((nid("370000"), nid("100000"), Frame::Deltas(run)));
    net.run();
    assert_eq!(net.head("100000", "370100", Scope::Federation), head.seq, "nothing of the run admitted");
    assert_eq!(net.stores[&nid("100000")][&log].len(), held.len(), "nothing of the run stored");
    let labels: Vec<&str> = net.rejections.iter().map(|(_, r)| r.label()).collect();
    assert_eq!(labels, vec!["invalid", "invalid", "invalid"], "{:?}", net.rejections);
    assert!(
        net.rejections.iter().any(
            |(_, r)| matches!(r, RejectReason::Invalid(why) if why.contains("not an organization registered"))
        ),
        "{:?}",
        net.rejections
    );
    // The national node's state is as before: it still admits 370100's next genuine change.
    net.publish("370100", Scope::Federation, entry("3/000003", 1, EntryStatus::Published));
    net.run();
    assert_eq!(
        net.head("100000", "370100", Scope::Federation),
        net.head("370100", "370100", Scope::Federation)
    );
}

impl Net {
    /// Restarts `id` with `key` (a new certificate of the same node) from what it
    /// stored, handing its logs over with `previous` when given.
    fn restart_with(
        &mut self,
        id: &str,
        key: SigningKey,
        previous: Option<&SigningKey>,
    ) -> Result<usize, EngineError> {
        let me = nid(id);
        let (tier, parent) = {
            let m = self.engines[&me].me();
            (m.tier, m.parent)
        };
        let chain = chain_for(me, tier, parent, &key, true);
        let mut engine = Engine::new(key.clone(), chain, Box::new(TestVerifier), 0).unwrap();
        let stored: Vec<Delta> = self.stores[&me].values().flatten().map(|d| Delta::clone(d)).collect();
        engine.restore(stored, |_, _| {}).unwrap();
        let mut actions = Vec::new();
        let handed = engine.hand_over(previous, &mut actions)?;
        engine.seal(&mut actions);
        self.engines.insert(me, engine);
        self.keys.insert(me, key);
        self.apply(me, actions);
        Ok(handed)
    }
}

#[test]
fn a_node_hands_its_logs_over_to_a_new_key_and_from_then_on_only_that_key_signs() {
    let mut net = tree(7);
    wire(&mut net);
    net.publish("370100", Scope::Federation, entry("3/000001", 1, EntryStatus::Published));
    net.publish("370100", Scope::Province, entry("3/000002", 1, EntryStatus::Published));
    net.run();
    let old = net.keys[&nid("370100")].clone();
    let new = SigningKey::from_bytes(&[42; 32]);
    // Without the previous key the new certificate cannot take the logs over.
    let err = net.restart_with("370100", new.clone(), None).unwrap_err();
    assert!(matches!(err, EngineError::NeedsPreviousKey { .. }), "{err}");
    assert!(err.to_string().contains("previous_key"), "{err}");
    // With it, each of its logs gets a hand-over signed by the old key.
    assert_eq!(net.restart_with("370100", new.clone(), Some(&old)).unwrap(), 2);
    net.connect("370000", "370100");
    net.run();
    net.publish("370100", Scope::Federation, entry("3/000003", 1, EntryStatus::Published));
    net.run();
    assert!(net.rejections.is_empty(), "{:?}", net.rejections);
    // Federation log: Join, organization, entry, hand-over, entry.
    assert_eq!(net.head("110000", "370100", Scope::Federation), 5);
    assert_eq!(net.engines[&nid("110000")].member(nid("370100")).unwrap().key, new.verifying_key());
    // A node catching up from scratch reads the whole log across the hand-over.
    let all = net.stores[&nid("370000")].clone();
    let mut fresh = Engine::new(
        net.keys[&nid("370000")].clone(),
        chain_for(nid("370000"), Tier::Provincial, Some(nid("100000")), &net.keys[&nid("370000")], true),
        Box::new(TestVerifier),
        0,
    )
    .unwrap();
    fresh.restore(all.values().flatten().map(|d| Delta::clone(d)), |_, _| {}).unwrap();
    // A restart after the hand-over needs no previous key.
    assert_eq!(net.restart_with("370100", new.clone(), None).unwrap(), 0);

    // The old key signs nothing more: a delta it signed after the hand-over is refused.
    let log = LogId { origin: nid("370100"), scope: Scope::Federation };
    let head = net.stores[&nid("370100")][&log].last().unwrap().clone();
    let mut e = entry("3/000009", 1, EntryStatus::Published);
    e.provider = cascade_protocol::org::Organization::government_code(nid("370100"), 1);
    let forged = Delta::sign(&old, log, head.seq + 1, head.hash(), &DeltaBody::Catalog(e)).unwrap();
    net.queue.push_back((nid("370000"), nid("100000"), Frame::Deltas(vec![Arc::new(forged)])));
    net.run();
    assert!(
        net.rejections.iter().any(|(at, r)| *at == nid("100000") && *r == RejectReason::BadSignature),
        "{:?}",
        net.rejections
    );
}

#[test]
fn a_forged_hand_over_is_refused() {
    let mut net = tree(7);
    wire(&mut net);
    net.publish("370100", Scope::Federation, entry("3/000001", 1, EntryStatus::Published));
    net.run();
    let old = net.keys[&nid("370100")].clone();
    let log = LogId { origin: nid("370100"), scope: Scope::Federation };
    let attacker = SigningKey::from_bytes(&[66; 32]);
    let provider = cascade_protocol::org::Organization::government_code(nid("370100"), 1);
    // Offers a hand-over (signed by `signer`, or unsigned inside a run that the
    // log's own key closes); returns the national node's verdict.
    let mut offer = |chain: Vec<Vec<u8>>, signer: &SigningKey, signed: bool| {
        let head = net.stores[&nid("370100")][&log].last().unwrap().clone();
        let body = DeltaBody::Rekey { chain };
        let frame = if signed {
            vec![Arc::new(Delta::sign(signer, log, head.seq + 1, head.hash(), &body).unwrap())]
        } else {
            let rekey = Delta::unsigned(log, head.seq + 1, head.hash(), &body).unwrap();
            let mut e = entry("3/000002", 1, EntryStatus::Published);
            e.provider = provider.clone();
            let closer =
                Delta::sign(signer, log, head.seq + 2, rekey.hash(), &DeltaBody::Catalog(e)).unwrap();
            vec![Arc::new(rekey), Arc::new(closer)]
        };
        net.rejections.clear();
        net.queue.push_back((nid("370000"), nid("100000"), Frame::Deltas(frame)));
        net.run();
        net.rejections.iter().find(|(at, _)| *at == nid("100000")).map(|(_, r)| r.clone())
    };
    let mine = |key: &SigningKey, trusted| {
        chain_for(nid("370100"), Tier::Municipal, Some(nid("370000")), key, trusted)
    };
    // Signed by someone else than the log's key holder.
    assert_eq!(offer(mine(&attacker, true), &attacker, true), Some(RejectReason::BadSignature));
    // A certificate outside the federation.
    assert!(matches!(offer(mine(&attacker, false), &old, true), Some(RejectReason::NotMember(_))));
    // A certificate of another node, or of the same node elsewhere in the tree.
    let other = chain_for(nid("370200"), Tier::Municipal, Some(nid("370000")), &attacker, true);
    assert!(matches!(offer(other, &old, true), Some(RejectReason::WrongOrigin(_))));
    let moved = chain_for(nid("370100"), Tier::Provincial, Some(nid("100000")), &attacker, true);
    assert!(matches!(offer(moved, &old, true), Some(RejectReason::WrongOrigin(_))));
    // Unsigned (inside a run): the hand-over must carry its own signature.
    assert!(matches!(offer(mine(&attacker, true), &old, false), Some(RejectReason::Invalid(_))));
    // To the key it already has.
    assert!(matches!(offer(mine(&old, true), &old, true), Some(RejectReason::Invalid(_))));
    assert_eq!(net.engines[&nid("100000")].member(nid("370100")).unwrap().key, old.verifying_key());
}

#[test]
fn a_service_names_its_own_node_and_provider_and_travels_federation_wide() {
    use cascade_protocol::service::{Endpoint, EntryRef, Service, ServiceDraft, ServiceKind, ServiceStatus};
    let mut net = tree(21);
    wire(&mut net);
    let jinan = nid("370100");
    let provider = net.register(jinan);
    let draft = ServiceDraft {
        name: "企业信息查询".into(),
        entry: EntryRef { origin: jinan, code: "3/000001".into() },
        provider: provider.clone(),
        kind: ServiceKind::Verify,
        endpoints: vec![Endpoint { method: "POST".into(), path: "/check".into() }],
        sensitivity: 3,
        rate_limit_per_minute: 60,
    };
    let service = |id: &str, draft: &ServiceDraft| {
        DeltaBody::Service(Service {
            id: id.into(),
            version: 1,
            status: ServiceStatus::Active,
            draft: draft.clone(),
        })
    };
    let engine = net.engines.get_mut(&jinan).unwrap();
    let refused = |r: Result<Arc<Delta>, cascade_protocol::EngineError>| match r {
        Err(cascade_protocol::EngineError::Refused(RejectReason::Invalid(why))) => why,
        other => panic!("not refused as invalid: {other:?}"),
    };
    // Another node's id, another node's organization, a province-only log: refused.
    let why = refused(engine.originate(Scope::Federation, service("370200-9", &draft), &mut Vec::new()));
    assert!(why.contains("not a service id of 370100"), "{why}");
    let mut foreign = draft.clone();
    foreign.provider = cascade_protocol::org::Organization::government_code(nid("370200"), 1);
    let why = refused(engine.originate(Scope::Federation, service("370100-9", &foreign), &mut Vec::new()));
    assert!(why.contains("not an organization registered at 370100"), "{why}");
    let why = refused(engine.originate(Scope::Province, service("370100-9", &draft), &mut Vec::new()));
    assert!(why.contains("federation-wide"), "{why}");
    // A genuine registration reaches every node, Beijing included.
    let id = Service::id_for(jinan, engine.next_seq(Scope::Federation));
    net.originate(jinan, Scope::Federation, service(&id, &draft)).unwrap();
    net.run();
    assert!(net.rejections.is_empty(), "{:?}", net.rejections);
    let head = net.head("370100", "370100", Scope::Federation);
    assert_eq!(net.head("110000", "370100", Scope::Federation), head);
    // Relayed under another node's id (signed by Qingdao), it is refused on arrival.
    let qingdao_log = LogId { origin: nid("370200"), scope: Scope::Federation };
    let last = net.stores[&nid("370000")][&qingdao_log].last().unwrap().clone();
    let qingdao_key = SigningKey::from_bytes(&[0; 32]);
    let forged =
        Delta::sign(&qingdao_key, qingdao_log, last.seq + 1, last.hash(), &service(&id, &draft)).unwrap();
    net.queue.push_back((nid("370000"), nid("100000"), Frame::Deltas(vec![Arc::new(forged)])));
    net.run();
    assert_eq!(net.rejections.len(), 1, "{:?}", net.rejections);
}

#[test]
fn a_catch_up_frame_is_verified_as_a_batch_and_one_bad_signature_in_it_stops_its_log_there() {
    let mut net = tree(11);
    wire(&mut net);
    net.disconnect(nid("370200"), nid("370000"));
    // Published one by one, so each delta carries its own signature.
    for i in 1..=120 {
        net.publish("370100", Scope::Federation, entry(&format!("3/{i:06}"), 1, EntryStatus::Published));
    }
    net.run();
    // On the catch-up link, the signature of #60 is damaged (one bit of S).
    net.tamper = Some(Box::new(|from, to, frame| {
        if from == nid("370000") && to == nid("370200") {
            if let Frame::Deltas(ds) = frame {
                for d in ds.iter_mut().filter(|d| d.log.origin == nid("370100") && d.seq == 60) {
                    Arc::make_mut(d).signature[40] ^= 1;
                }
            }
        }
    }));
    net.connect("370200", "370000");
    net.run();
    assert_eq!(net.head("370200", "370100", Scope::Federation), 59, "admitted up to the bad one");
    let refused: Vec<_> = net.rejections.iter().filter(|(at, _)| *at == nid("370200")).collect();
    assert!(
        !refused.is_empty() && refused.iter().all(|(_, r)| *r == RejectReason::BadSignature),
        "{refused:?}"
    );
    // A clean link delivers the rest, again as a batch.
    net.tamper = None;
    net.disconnect(nid("370200"), nid("370000"));
    net.connect("370200", "370000");
    net.run();
    assert_eq!(net.head("370200", "370100", Scope::Federation), 122);
    assert_eq!(
        net.stores[&nid("370200")][&LogId { origin: nid("370100"), scope: Scope::Federation }].len(),
        122
    );
}

#[test]
fn an_engine_never_originates_below_what_a_neighbour_holds_of_its_own_logs() {
    let mut net = tree(12);
    wire(&mut net);
    for i in 1..=5 {
        net.publish("370100", Scope::Federation, entry(&format!("3/{i:06}"), 1, EntryStatus::Published));
    }
    net.run();
    let me = nid("370100");
    let log = LogId { origin: me, scope: Scope::Federation };
    let full = net.stores[&me][&log].clone();
    // It comes back from a store that lost its last three deltas.
    net.disconnect(me, nid("370000"));
    let key = net.keys[&me].clone();
    let chain = chain_for(me, Tier::Municipal, Some(nid("370000")), &key, true);
    let mut engine = Engine::new(key, chain, Box::new(TestVerifier), 0).unwrap();
    let kept = full.len() - 3;
    engine.restore(full[..kept].iter().map(|d| Delta::clone(d)), |_, _| {}).unwrap();
    net.engines.insert(me, engine);
    net.stores.insert(me, BTreeMap::from([(log, full[..kept].to_vec())]));
    // Its parent's Hello arrives, the deltas it sends back do not (yet).
    net.tamper = Some(Box::new(move |from, to, frame| {
        if from == nid("370000") && to == me {
            if let Frame::Deltas(ds) = frame {
                ds.retain(|d| d.log != log);
            }
        }
    }));
    net.connect("370100", "370000");
    net.run();
    let engine = net.engines.get_mut(&me).unwrap();
    assert_eq!(engine.own_behind(), vec![(Scope::Federation, kept as u64, full.len() as u64)]);
    let body = DeltaBody::Catalog(entry("3/000099", 1, EntryStatus::Published));
    let refused = engine.originate(Scope::Federation, body.clone(), &mut Vec::new());
    assert!(matches!(refused, Err(EngineError::Recovering { behind: Some(_) })), "{refused:?}");
    // So is everything while the core holds it back.
    engine.set_recovering(true);
    let refused = engine.originate(Scope::Province, body, &mut Vec::new());
    assert!(matches!(refused, Err(EngineError::Recovering { behind: None })), "{refused:?}");
    engine.set_recovering(false);
    // Once its own deltas are back, it continues after them and nobody sees a fork.
    net.tamper = None;
    net.disconnect(me, nid("370000"));
    net.connect("370100", "370000");
    net.run();
    assert_eq!(net.head("370100", "370100", Scope::Federation), full.len() as u64);
    assert!(net.engines[&me].own_behind().is_empty());
    net.publish("370100", Scope::Federation, entry("3/000100", 1, EntryStatus::Published));
    net.run();
    for at in ["370100", "370000", "100000", "110000"] {
        assert_eq!(net.head(at, "370100", Scope::Federation), full.len() as u64 + 1, "at {at}");
    }
    assert!(net.rejections.is_empty(), "{:?}", net.rejections);
}

#[test]
fn an_audit_checkpoint_never_goes_back_at_its_origin_or_at_any_witness() {
    use cascade_protocol::AuditCheckpoint;
    let mut net = tree(13);
    wire(&mut net);
    let me = nid("370100");
    let at =
        |records, head| DeltaBody::AuditCheckpoint(AuditCheckpoint { records, head: [head; 32], at_ms: 1 });
    net.originate(me, Scope::Federation, at(10, 1)).unwrap();
    net.run();
    for witness in ["370000", "100000", "110000"] {
        assert_eq!(net.engines[&nid(witness)].checkpoint(me).map(|c| c.records), Some(10), "at {witness}");
    }
    // The origin refuses to sign a shorter log, or another record at the same place.
    for (records, head) in [(9, 1), (10, 2)] {
        let refused = net.originate(me, Scope::Federation, at(records, head));
        assert!(matches!(refused, Err(EngineError::Refused(RejectReason::Invalid(_)))), "{refused:?}");
    }
    // Signed anyway with the origin's key (a node whose software was changed):
    // every witness refuses it.
    let log = LogId { origin: me, scope: Scope::Federation };
    let head = net.stores[&me][&log].last().unwrap().clone();
    let forged = Delta::sign(&net.keys[&me], log, head.seq + 1, head.hash(), &at(3, 1)).unwrap();
    net.rejections.clear();
    net.queue.push_back((me, nid("370000"), Frame::Deltas(vec![Arc::new(forged)])));
    net.run();
    assert_eq!(net.head("370000", "370100", Scope::Federation), head.seq);
    assert!(
        matches!(net.rejections.as_slice(), [(_, RejectReason::Invalid(why))] if why.contains("truncated")),
        "{:?}",
        net.rejections
    );
    // Forward is fine, and a checkpoint only ever travels federation-wide.
    net.originate(me, Scope::Federation, at(11, 3)).unwrap();
    assert!(net.originate(me, Scope::Province, at(12, 4)).is_err());
    net.run();
    assert_eq!(net.engines[&nid("100000")].checkpoint(me).map(|c| c.records), Some(11));
}

#[test]
fn an_engine_never_signs_into_a_log_still_signed_with_its_previous_key() {
    let mut net = tree(14);
    wire(&mut net);
    net.publish("370100", Scope::Federation, entry("3/000001", 1, EntryStatus::Published));
    net.run();
    let me = nid("370100");
    let log = LogId { origin: me, scope: Scope::Federation };
    let stored: Vec<Delta> = net.stores[&me][&log].iter().map(|d| Delta::clone(d)).collect();
    // The same node with a new key, its logs restored but not handed over.
    let fresh = SigningKey::from_bytes(&[99; 32]);
    let chain = chain_for(me, Tier::Municipal, Some(nid("370000")), &fresh, true);
    let mut engine = Engine::new(fresh, chain, Box::new(TestVerifier), 0).unwrap();
    engine.restore(stored, |_, _| {}).unwrap();
    let body = DeltaBody::Catalog(entry("3/000002", 1, EntryStatus::Published));
    let refused = engine.originate(Scope::Federation, body, &mut Vec::new());
    assert!(matches!(refused, Err(EngineError::NeedsPreviousKey { .. })), "{refused:?}");
}
