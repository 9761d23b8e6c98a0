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
