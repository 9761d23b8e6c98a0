//! The crash harness's short version: a few rounds of `kill -9` and restart of
//! a random node of a five-process federation under a mixed load — publishes,
//! registrations, applications and decisions, service calls and dataset
//! fetches (the 100-round run is `cargo bench -p cascade-node --bench crash`).

use cascade_tests::crash::crash_rounds;
use cascade_tests::process::Processes;
use cascade_tests::FOUR_PROVINCES;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_kill_9_and_the_federation_converges_without_a_fork() {
    let mut processes =
        Processes::launch(FOUR_PROVINCES, std::path::Path::new(env!("CARGO_BIN_EXE_cascade")));
    // Beijing's province applies for, calls and fetches from Qingdao: three hops.
    let report = crash_rounds(&mut processes, ("110000", "370200"), 3, 7).await;
    eprintln!("{report:#?}");
    assert!(report.acknowledged > 0, "{report:?}");
    assert_eq!(report.found, report.acknowledged, "acknowledged writes lost: {report:?}");
    assert_eq!(report.forks, 0, "{report:?}");
    assert_eq!(report.broken_chains, 0, "{report:?}");
    let docking = &report.docking;
    assert!(docking.applications > 0 && docking.calls > 0 && docking.versions > 0, "{docking:?}");
    assert_eq!(docking.granted, docking.applications, "acknowledged applications lost: {docking:?}");
    assert_eq!(docking.received, docking.applications, "the provider's audit log shows them: {docking:?}");
    assert_eq!(docking.applied_twice, 0, "{docking:?}");
    assert_eq!((docking.calls_once, docking.calls_twice), (docking.calls, 0), "{docking:?}");
    assert_eq!(docking.calls_altered, 0, "{docking:?}");
    assert_eq!(docking.versions_fetched, docking.versions, "{docking:?}");
    assert_eq!(docking.wrong_bytes, 0, "{docking:?}");
}

/// The simulator's process crash mode: Shandong's province node and a city run
/// as `cascade run` processes and are SIGKILLed under load (publishes at them
/// through their admin API, calls between in-process nodes), then restarted;
/// the end-of-run invariants read every node's sled folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_kills_process_nodes_and_every_invariant_holds() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../topologies/shandong.toml"))
        .expect("the topology");
    let shandong = cascade_launcher::topology::Topology::parse(&text).expect("topology");
    let scenario = cascade_simulation::Scenario::parse(
        r#"
        name = "process-kills"
        [[step]]
        do = "calls"
        count = 40
        over_ms = 2000
        [[step]]
        do = "publish"
        count = 150
        over_ms = 2500
        scope = "mixed"
        [[step]]
        do = "checkpoint_audit"
        node = 370100
        [[step]]
        do = "wait"
        ms = 800
        [[step]]
        do = "crash"
        node = 370100
        [[step]]
        do = "crash"
        node = 370000
        [[step]]
        do = "wait"
        ms = 500
        [[step]]
        do = "restart"
        node = 370000
        [[step]]
        do = "restart"
        node = 370100
        [[step]]
        do = "publish"
        count = 40
        over_ms = 500
        at = [370100, 370000]
        scope = "mixed"
        [[step]]
        do = "converge"
        max_ms = 60000
        "#,
    )
    .expect("scenario");
    let options = cascade_simulation::real::Options {
        progress: false,
        processes: Some(std::path::PathBuf::from(env!("CARGO_BIN_EXE_cascade"))),
    };
    let report = cascade_simulation::real::run(&shandong, &scenario, 11, &options).await.expect("real run");
    eprintln!("{report}");
    assert!(report.invariants.ok(), "{report}");
    assert_eq!(report.process_kills.kills, 2, "{report}");
    // The killed nodes published too, before and after their kill.
    assert!(report.process_kills.acknowledged > 5, "{report}");
    assert!(report.changes_acknowledged > 100 && report.calls.served > 10, "{report}");
}
