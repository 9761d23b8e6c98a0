//! The simulator's own guarantees: invariants hold under faults, seeds replay,
//! a broken engine is caught, and real mode converges under faults.

use cascade_access::{Principal, Role};
use cascade_core::{Command, CommandError, Reply};
use cascade_launcher::topology::Topology;
use cascade_protocol::org::Organization;
use cascade_protocol::NodeId;
use cascade_simulation::deterministic::{Options, Simulator};
use cascade_simulation::{Report, Scenario};
use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn topology(name: &str) -> Topology {
    Topology::load(&root().join("topologies").join(name)).expect("topology")
}

fn scenario(name: &str) -> Scenario {
    Scenario::load(&root().join("simulation/scenarios").join(name)).expect("scenario")
}

fn deterministic(topology: &Topology, scenario: &Scenario, options: Options) -> Report {
    let seed = options.seed;
    Simulator::new(topology, scenario, &options).expect("setup").run(topology, scenario, seed).expect("run")
}

#[test]
fn the_whole_country_under_faults_keeps_every_invariant() {
    let china = topology("china.toml");
    assert_eq!(china.nodes.len(), 365);
    let report = deterministic(&china, &scenario("faults.toml"), Options { seed: 7, ..Default::default() });
    assert!(report.invariants.ok(), "{report}");
    assert_eq!(report.invariants.passed.len(), 11, "{report}");
    assert_eq!(report.invariants.catalog_digests, 1, "{report}");
    // A quarter of the workload is process docking: applications routed across
    // provinces while links drop and a city crashes, decided by rule or approver;
    // some turns publish dataset versions instead of catalog changes.
    assert!(report.changes_acknowledged > 500, "{report}");
    assert!(report.workflow_steps > 200, "{report}");
    assert!(report.applications.get("granted").copied().unwrap_or(0) > 100, "{report}");
    // Service calls with the grants won, forged, borrowed, stretched, outside
    // their endpoints, and racing their revocation: the provider's gate let
    // through only those with a valid grant (invariant 8), and refused the rest.
    assert!(report.calls.served > 20 && report.calls.refused > 20, "{report}");
    assert_eq!(report.convergence.converged as u64, report.changes_acknowledged, "{report}");
    // The tampering relay was caught, not believed.
    assert!(report.rejected.values().sum::<u64>() > 0, "{report}");
    // A city and its province handed their logs over to new keys mid-run, and
    // every node verified the logs across the hand-overs (invariant 1).
    assert!(report.hand_overs >= 2, "{report}");
}

#[test]
fn dataset_versions_cross_the_country_checked_at_every_hop_under_faults() {
    let china = topology("china.toml");
    let report = deterministic(&china, &scenario("datasets.toml"), Options { seed: 1, ..Default::default() });
    assert!(report.invariants.ok(), "{report}");
    assert_eq!(report.invariants.passed.len(), 11, "{report}");
    // Versions fetched with the grants won, hubs serving from their caches, the
    // national node's altered chunks caught by Guangdong's hub, fetches cut short
    // by the partition and the crash and resumed, stretched grants refused: and
    // no chunk stored that does not match its address (invariant 9), every
    // completed fetch the origin's content (10), no chunk served without a valid
    // grant (11).
    let d = report.datasets;
    assert!(d.published > 100 && d.fetched > 10, "{report}");
    assert!(d.from_cache > 0 && d.caught > 0 && d.interrupted > 0 && d.refused > 0, "{report}");
}

/// The report file `cascade sim --report` writes, without what a run cannot
/// repeat (wall time and memory).
fn report_file(report: &Report) -> Vec<u8> {
    let mut value = serde_json::to_value(report).expect("report serializes");
    for field in ["wall_seconds", "peak_rss_bytes", "idle_rss_bytes"] {
        value[field] = serde_json::Value::Null;
    }
    serde_json::to_vec_pretty(&value).expect("report serializes")
}

#[test]
fn the_same_seed_writes_the_same_report_byte_for_byte_and_another_seed_does_not() {
    let shandong = topology("shandong.toml");
    let faults = scenario("faults.toml");
    let a = deterministic(&shandong, &faults, Options { seed: 42, ..Default::default() });
    let b = deterministic(&shandong, &faults, Options { seed: 42, ..Default::default() });
    let c = deterministic(&shandong, &faults, Options { seed: 43, ..Default::default() });
    assert!(a.invariants.ok() && c.invariants.ok(), "{a}\n{c}");
    assert!(report_file(&a) == report_file(&b), "same seed, different reports:\n{a}\n{b}");
    assert_ne!(a.trace_digest, c.trace_digest);
}

/// A principal acting for an account of `org`.
fn account(name: &str, org: &str, role: Role) -> Principal {
    Principal {
        actor: format!("account:{name}"),
        username: Some(name.into()),
        organization: Some(org.into()),
        roles: vec![role],
    }
}

#[test]
fn under_a_seed_a_cataloger_outside_its_organization_is_refused_and_audited_and_a_registration_is_audited_in_its_commit(
) {
    let three = topology("three-tier.toml");
    let quiet = Scenario::parse("name = \"quiet\"\n[[step]]\ndo = \"wait\"\nms = 1\n").expect("scenario");
    let options = Options { seed: 11, record_commits: true, ..Default::default() };
    let mut sim = Simulator::new(&three, &quiet, &options).expect("setup");
    let jinan: NodeId = "370100".parse().unwrap();
    let other = Organization {
        credit_code: Organization::government_code(jinan, 9),
        name: "市中区卫健委".into(),
        division: jinan,
        parent: None,
    };
    let reply = sim.execute(jinan, Principal::bootstrap(), Command::RegisterOrganization(other.clone()));
    assert!(matches!(reply, Ok(Reply::Organization(_))), "{reply:?}");
    // The commit that carries the registration delta carries its audit record.
    let commit = sim
        .commits()
        .iter()
        .find(|c| {
            c.node == jinan
                && c.deltas.iter().any(|(_, _, kind)| *kind == "organization")
                && c.audit.iter().any(|r| r.detail.contains(&other.credit_code))
        })
        .expect("a commit with the registration");
    let kinds: Vec<&str> = commit.audit.iter().map(|r| r.kind.as_str()).collect();
    assert!(kinds.contains(&"organization.register"), "{kinds:?}");

    // A cataloger of Jinan's bureau may not catalog for the other organization.
    let bureau = Organization::government_code(jinan, 1);
    let li = account("li", &bureau, Role::Cataloger);
    let mut draft = serde_json::from_value::<cascade_protocol::catalog::EntryDraft>(serde_json::json!({
        "name": "越权资源", "classification": "3", "provider": other.credit_code, "summary": "s",
        "format": "electronic_file", "share_type": "unconditional", "share_mode": "platform",
        "open_type": "closed", "update_cycle": "daily"}))
    .unwrap();
    let refused = sim.execute(jinan, li.clone(), Command::SaveEntry(Box::new(draft.clone())));
    assert!(matches!(refused, Err(CommandError::Forbidden(_))), "{refused:?}");
    let denied: Vec<_> = sim.durable_audit(jinan).into_iter().filter(|r| r.kind == "access.denied").collect();
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0].actor, "account:li");
    // For its own organization the same cataloger may.
    draft.provider = bureau;
    let saved = sim.execute(jinan, li, Command::SaveEntry(Box::new(draft)));
    assert!(matches!(saved, Ok(Reply::Entry(_))), "{saved:?}");
}

#[test]
fn a_deliberately_broken_engine_is_caught_by_the_invariants() {
    let shandong = topology("shandong.toml");
    let tamper = scenario("tampering-relay.toml");
    // The national node stops checking signatures: it believes the tampering hub.
    let broken = Options { seed: 3, break_engine_at: Some("100000".parse().unwrap()), ..Default::default() };
    let report = deterministic(&shandong, &tamper, broken);
    assert!(!report.invariants.ok(), "the checker missed a broken engine:\n{report}");
    assert!(
        report.invariants.violations.iter().any(|v| v.starts_with("no node stored an invalid delta")),
        "{report}"
    );
    // The same run with an intact engine passes.
    let report = deterministic(&shandong, &tamper, Options { seed: 3, ..Default::default() });
    assert!(report.invariants.ok(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_mode_shandong_converges_through_a_partition_a_crash_and_a_slow_link() {
    let shandong = topology("shandong.toml");
    let scenario = Scenario::parse(
        r#"
        name = "partition-and-crash"
        [[step]]
        do = "calls"
        count = 60
        over_ms = 1500
        [[step]]
        do = "publish"
        count = 60
        over_ms = 600
        scope = "mixed"
        [[step]]
        do = "partition"
        a = 370000
        b = 100000
        [[step]]
        do = "checkpoint_audit"
        node = 370100
        [[step]]
        do = "crash"
        node = 370100
        [[step]]
        do = "delay"
        node = 370200
        ms = 20
        [[step]]
        do = "publish"
        count = 60
        over_ms = 600
        scope = "mixed"
        [[step]]
        do = "wait"
        ms = 700
        [[step]]
        do = "restart"
        node = 370100
        [[step]]
        do = "heal"
        a = 370000
        b = 100000
        [[step]]
        do = "converge"
        max_ms = 60000
        "#,
    )
    .expect("scenario");
    let report =
        cascade_simulation::real::run(&shandong, &scenario, 5, &Default::default()).await.expect("real run");
    assert!(report.invariants.ok(), "{report}");
    assert!(report.changes_acknowledged > 80, "{report}");
    assert!(report.frames > 0 && report.peak_rss_bytes > 0, "{report}");
    // Calls crossed the real gateways while a link was cut and a city crashed;
    // each one answered reached its upstream exactly once.
    assert!(report.calls.served > 20, "{report}");
    assert!(report.invariants.passed.iter().any(|p| p.contains("exactly once")), "{report}");
}
