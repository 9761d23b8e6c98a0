//! The simulator's own guarantees: invariants hold under faults, seeds replay,
//! a broken engine is caught, and real mode converges under faults.

use cascade_launcher::topology::Topology;
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
    assert_eq!(report.invariants.passed.len(), 5, "{report}");
    assert_eq!(report.invariants.catalog_digests, 1, "{report}");
    assert!(report.changes_acknowledged > 900, "{report}");
    assert_eq!(report.convergence.converged as u64, report.changes_acknowledged, "{report}");
    // The tampering relay was caught, not believed.
    assert!(report.rejected.values().sum::<u64>() > 0, "{report}");
}

#[test]
fn the_same_seed_replays_the_same_trace_and_another_seed_does_not() {
    let shandong = topology("shandong.toml");
    let faults = scenario("faults.toml");
    let a = deterministic(&shandong, &faults, Options { seed: 42, ..Default::default() });
    let b = deterministic(&shandong, &faults, Options { seed: 42, ..Default::default() });
    let c = deterministic(&shandong, &faults, Options { seed: 43, ..Default::default() });
    assert_eq!(a.trace_digest, b.trace_digest);
    assert_eq!(a.frames, b.frames);
    assert_ne!(a.trace_digest, c.trace_digest);
    assert!(a.invariants.ok() && c.invariants.ok(), "{a}\n{c}");
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
        do = "publish"
        count = 60
        over_ms = 600
        scope = "mixed"
        [[step]]
        do = "partition"
        a = 370000
        b = 100000
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
    let report = cascade_simulation::real::run(&shandong, &scenario, 5, false).await.expect("real run");
    assert!(report.invariants.ok(), "{report}");
    assert!(report.changes_acknowledged > 80, "{report}");
    assert!(report.frames > 0 && report.peak_rss_bytes > 0, "{report}");
}
