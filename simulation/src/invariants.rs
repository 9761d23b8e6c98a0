//! End-of-run invariants: every node holds only valid deltas, inside their scope;
//! every acknowledged change survived; all nodes that should agree do agree; every
//! node's audit chain is unbroken.

use cascade_certs::FederationVerifier;
use cascade_core::{Application, GrantRecord};
use cascade_protocol::{Delta, DeltaBody, Hash, LogId, MembershipVerifier, NodeId, Scope, GENESIS_HASH};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Most violations listed per invariant (the rest are counted).
const MAX_LISTED: usize = 10;

/// What a node made durable, log by log (deltas shared between nodes by `Arc`).
#[derive(Default)]
pub struct Durable {
    logs: BTreeMap<LogId, Vec<Arc<Delta>>>,
}

impl Durable {
    /// An empty store.
    pub fn new() -> Durable {
        Durable::default()
    }

    /// Appends a delta at the end of its log.
    pub fn push(&mut self, delta: Arc<Delta>) {
        self.logs.entry(delta.log).or_default().push(delta);
    }

    /// The logs held.
    pub fn logs(&self) -> impl Iterator<Item = (&LogId, &Vec<Arc<Delta>>)> + '_ {
        self.logs.iter()
    }
}

/// A node as the checker sees it.
pub struct NodeView<'a> {
    /// Running at the end (a crashed node is checked for validity, not agreement).
    pub alive: bool,
    /// What it made durable, log by log.
    pub logs: BTreeMap<LogId, &'a [Arc<Delta>]>,
    /// Where its durable audit chain breaks, if it does.
    pub audit_break: Option<String>,
}

impl NodeView<'_> {
    fn get(&self, log: LogId, seq: u64) -> Option<&Arc<Delta>> {
        let index = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.logs.get(&log)?.get(index)
    }
}

/// The verdict.
#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    /// Invariants that held.
    pub passed: Vec<String>,
    /// What was violated, with details.
    pub violations: Vec<String>,
    /// Distinct federation-wide catalog digests among running nodes (1 = agreement).
    pub catalog_digests: usize,
}

impl Outcome {
    /// Whether every invariant held.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }

    fn record(&mut self, name: &str, found: Vec<String>) {
        if found.is_empty() {
            self.passed.push(name.to_string());
        } else {
            let total = found.len();
            for v in found.into_iter().take(MAX_LISTED) {
                self.violations.push(format!("{name}: {v}"));
            }
            if total > MAX_LISTED {
                self.violations.push(format!("{name}: ... and {} more", total - MAX_LISTED));
            }
        }
    }
}

/// Checks every invariant. Signatures are verified afresh (never through the
/// simulation's cache or a possibly broken engine), each distinct delta once.
pub fn check(
    nodes: &BTreeMap<NodeId, NodeView<'_>>,
    acked: &[(LogId, u64, Hash)],
    verifier: &FederationVerifier,
) -> Outcome {
    let mut outcome = Outcome::default();

    // 1. Only valid deltas were stored: chains, Joins, signatures, hand-overs. An
    //    unsigned delta is valid when the chain leads from it to a signed delta
    //    whose signature verifies (a run never ends a log); after a signed hand-over
    //    the log's signatures verify with the key it names.
    let mut hashes: HashMap<*const Delta, Hash> = HashMap::new();
    let mut valid: HashMap<*const Delta, Result<(), String>> = HashMap::new();
    let mut keys: HashMap<*const Delta, Result<ed25519_dalek::VerifyingKey, String>> = HashMap::new();
    let mut rekeys: HashMap<*const Delta, Option<Result<ed25519_dalek::VerifyingKey, String>>> =
        HashMap::new();
    let mut invalid = Vec::new();
    for (id, view) in nodes {
        for (log, deltas) in &view.logs {
            let Some(first) = deltas.first() else { continue };
            let mut key = keys
                .entry(Arc::as_ptr(first))
                .or_insert_with(|| match first.decode_body() {
                    Ok(DeltaBody::Join { chain }) => match verifier.verify_chain(&chain, None) {
                        Ok(member) if member.id == log.origin => Ok(member.key),
                        Ok(member) => Err(format!("Join names {}", member.id)),
                        Err(e) => Err(e.to_string()),
                    },
                    _ => Err("log does not start with a Join".into()),
                })
                .clone();
            let mut prev = GENESIS_HASH;
            for (i, delta) in deltas.iter().enumerate() {
                let ptr = Arc::as_ptr(delta);
                let problem = if delta.seq != i as u64 + 1 {
                    Some("out of order".to_string())
                } else if delta.prev != prev {
                    Some("broken hash chain".to_string())
                } else if !delta.is_signed() {
                    (i + 1 == deltas.len()).then(|| "unsigned, and no signed delta follows".to_string())
                } else {
                    match &key {
                        Err(e) => Some(e.clone()),
                        Ok(k) => valid
                            .entry(ptr)
                            .or_insert_with(|| delta.verify(k).map_err(|_| "bad signature".to_string()))
                            .clone()
                            .err(),
                    }
                };
                if let Some(problem) = problem {
                    invalid.push(format!("{id} stored {log} #{}: {problem}", delta.seq));
                    break;
                }
                if delta.is_signed() && i > 0 {
                    let handed = rekeys.entry(ptr).or_insert_with(|| match delta.decode_body() {
                        Ok(DeltaBody::Rekey { chain }) => Some(match verifier.verify_chain(&chain, None) {
                            Ok(member) if member.id == log.origin => Ok(member.key),
                            Ok(member) => Err(format!("hand-over to {}", member.id)),
                            Err(e) => Err(e.to_string()),
                        }),
                        _ => None,
                    });
                    if let Some(new) = handed {
                        key = new.clone();
                    }
                }
                prev = *hashes.entry(ptr).or_insert_with(|| delta.hash());
            }
        }
    }
    outcome.record("no node stored an invalid delta", invalid);

    // 2. Scoped deltas stayed in scope.
    let mut out_of_scope = Vec::new();
    for (id, view) in nodes {
        for log in view.logs.keys() {
            if !log.visible_at(*id) {
                out_of_scope.push(format!("{id} holds {log}"));
            }
        }
    }
    outcome.record("scoped entries stayed in scope", out_of_scope);

    // 3. Every acknowledged change survived at its origin.
    let mut lost = Vec::new();
    for (log, seq, hash) in acked {
        let kept = nodes
            .get(&log.origin)
            .and_then(|v| v.get(*log, *seq))
            .is_some_and(|d| hashes.get(&Arc::as_ptr(d)).copied().unwrap_or_else(|| d.hash()) == *hash);
        if !kept {
            lost.push(format!("{log} #{seq} acknowledged but lost"));
        }
    }
    outcome.record("every acknowledged publish survived", lost);

    // 4. Running nodes agree: the same head (and hash chain) of every log they should
    //    both hold, summarized as a catalog digest per node.
    let mut disagree = Vec::new();
    let mut digests: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
    let mut heads: BTreeMap<LogId, (u64, Hash, NodeId)> = BTreeMap::new();
    for (id, view) in nodes.iter().filter(|(_, v)| v.alive) {
        let mut digest = blake3::Hasher::new();
        for (log, deltas) in &view.logs {
            let Some(last) = deltas.last() else { continue };
            let hash = hashes.get(&Arc::as_ptr(last)).copied().unwrap_or_else(|| last.hash());
            if log.scope == Scope::Federation {
                digest.update(&log.origin.code().to_be_bytes());
                digest.update(&hash);
            }
            match heads.get(log) {
                None => {
                    heads.insert(*log, (last.seq, hash, *id));
                }
                Some((seq, h, other)) if (*seq, *h) != (last.seq, hash) => {
                    disagree.push(format!("{log}: {id} holds #{} but {other} holds #{seq}", last.seq));
                }
                Some(_) => {}
            }
        }
        digests.entry(digest.finalize().to_hex().to_string()).or_default().push(*id);
    }
    for (log, (seq, _, holder)) in &heads {
        for (id, view) in nodes.iter().filter(|(_, v)| v.alive) {
            let held = view.logs.get(log).map_or(0, |d| d.len() as u64);
            if log.visible_at(*id) && held < *seq {
                disagree.push(format!("{log}: {id} holds #{held}, {holder} holds #{seq}"));
            }
        }
    }
    outcome.catalog_digests = digests.len();
    outcome.record("all nodes that should see an entry see the same version", disagree);

    // 5. Every node's audit chain is unbroken.
    let broken =
        nodes.iter().filter_map(|(id, v)| v.audit_break.as_ref().map(|b| format!("{id}: {b}"))).collect();
    outcome.record("every audit chain is unbroken", broken);
    outcome
}

/// What a node holds of the workflow, as the checker sees it.
pub struct WorkflowView<'a> {
    /// Running at the end.
    pub alive: bool,
    /// Its durable applications, by id.
    pub applications: BTreeMap<&'a str, &'a Application>,
    /// Its durable grants, by id.
    pub grants: BTreeMap<&'a str, &'a GrantRecord>,
}

/// The workflow invariants: 6. no node took a routed message over twice (each is
/// delivered, or relayed, once in effect: `taken_twice` lists the exceptions);
/// 7. after healing, both ends of every application agree on its state and grant,
/// and both ends of every grant on its revocation (nothing lost on the way).
pub fn check_workflow(
    nodes: &BTreeMap<NodeId, WorkflowView<'_>>,
    taken_twice: &[String],
    outcome: &mut Outcome,
) {
    outcome.record("no routed message was taken over twice", taken_twice.to_vec());
    let mut disagree = Vec::new();
    for (id, view) in nodes.iter().filter(|(_, v)| v.alive) {
        for a in view.applications.values() {
            let other = if a.consumer_node == *id { a.provider_node } else { a.consumer_node };
            let Some(there) = nodes.get(&other).filter(|v| v.alive && other != *id) else { continue };
            match there.applications.get(a.id.as_str()) {
                None => {
                    disagree.push(format!("{} is {} at {id}, unknown at {other}", a.id, a.state.as_str()))
                }
                Some(b) if (a.state, &a.grant) != (b.state, &b.grant) => disagree.push(format!(
                    "{} is {} at {id} but {} at {other}",
                    a.id,
                    a.state.as_str(),
                    b.state.as_str()
                )),
                Some(_) if a.withdraw_requested => {
                    disagree.push(format!("{}: the withdrawal from {id} was never answered", a.id))
                }
                Some(_) => {}
            }
        }
        for g in view.grants.values() {
            let other =
                if g.grant.grantee_node == *id { g.grant.provider_node } else { g.grant.grantee_node };
            let Some(there) = nodes.get(&other).filter(|v| v.alive && other != *id) else { continue };
            let revoked = |r: &GrantRecord| r.revoked_at.is_some();
            match there.grants.get(g.grant.id.as_str()) {
                Some(h) if revoked(h) == revoked(g) => {}
                _ => disagree.push(format!("grant {} differs between {id} and {other}", g.grant.id)),
            }
        }
    }
    outcome.record("both ends agree on every application and grant", disagree);
}

/// The call invariant: 8. no provider served a call without a valid grant — one
/// its node signed, naming the calling node, the service and the endpoint,
/// current, and not revoked before the call (`served_wrongly` lists the
/// exceptions the simulator's ledger found).
pub fn check_calls(served_wrongly: &[String], outcome: &mut Outcome) {
    outcome.record("no call served without a valid grant at the provider", served_wrongly.to_vec());
}

/// The dataset invariants: no node stores a chunk whose bytes do not hash to its
/// address (checked over the raw bytes, not through the store's own checks);
/// every completed fetch holds exactly the content its origin published; and
/// no chunk was served with a grant that was not valid.
pub(crate) fn check_datasets(datasets: &crate::datasets::Datasets, outcome: &mut Outcome) {
    let mut bad = Vec::new();
    for (node, store) in &datasets.stores {
        for (hash, bytes) in store.raw() {
            if *blake3::hash(&bytes).as_bytes() != hash {
                bad.push(format!(
                    "{node} holds a chunk {} whose bytes do not match",
                    cascade_chunks::store::hex(&hash)
                ));
            }
        }
    }
    outcome.record("no node stores a chunk whose hash does not match", bad);
    let mut wrong = Vec::new();
    for (consumer, manifest) in &datasets.done {
        let key = (manifest.entry.origin, manifest.entry.code.clone(), manifest.version);
        let published = datasets.ledger.get(&key);
        let held = datasets.content(*consumer, manifest).map(|c| *blake3::hash(&c).as_bytes());
        if published.is_none() || held.as_ref() != published {
            wrong.push(format!(
                "{consumer} completed {}:{} v{} with content other than its origin published",
                key.0, key.1, key.2
            ));
        }
    }
    outcome.record("every completed fetch equals the origin's whole-content hash", wrong);
    outcome.record("no chunk served without a valid grant", datasets.served_wrongly.clone());
}
