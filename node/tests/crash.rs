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
        Processes::launch(FOUR_PROVINCES, std::path::Path::new(env!("CARGO_BIN_EXE_cascade"))).await;
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

/// `cascade up --processes`: each node a `cascade run` process of its own. A
/// city killed with SIGKILL is reported, restarts from its configuration with
/// its acknowledged entry, and SIGTERM to `up` stops every node it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascade_up_runs_each_node_as_a_process_that_survives_kill_9_and_stops_on_sigterm() {
    use rustix::process::{kill_process, Pid, Signal};
    use tokio::io::{AsyncBufReadExt, BufReader};
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_cascade"));
    let dir = tempfile::tempdir().expect("a folder");
    let data = dir.path().join("d");
    let topology = concat!(env!("CARGO_MANIFEST_DIR"), "/../topologies/three-tier.toml");
    let up_log = dir.path().join("up.log");
    let mut up = tokio::process::Command::new(bin)
        .args(["--log-format", "json", "up", topology, "--processes", "--admin-port-base", "0", "--data"])
        .arg(&data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&up_log).expect("a log file"))
        .kill_on_drop(true)
        .spawn()
        .expect("cascade up");
    let mut lines = BufReader::new(up.stdout.take().expect("stdout")).lines();
    let mut next_line = async || {
        tokio::time::timeout(std::time::Duration::from_secs(120), lines.next_line())
            .await
            .expect("a line in time")
            .expect("readable")
            .expect("up still runs")
    };
    while !next_line().await.starts_with("press Ctrl-C") {}
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("federation.json")).expect("the manifest"))
            .expect("JSON");
    let nodes = manifest["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 4);
    let pid_of = |id: u64| {
        let node = nodes.iter().find(|n| n["id"] == id).expect("the node");
        let pid = node["pid"].as_u64().expect("a pid") as u32;
        (pid, node["admin_url"].as_str().expect("a URL").to_string())
    };
    let pids: Vec<u32> = nodes.iter().filter_map(|n| n["pid"].as_u64()).map(|p| p as u32).collect();
    for pid in &pids {
        assert_ne!(Some(*pid), up.id(), "each node is a process of its own");
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("a running process");
        assert!(String::from_utf8_lossy(&cmdline).contains("run"), "a `cascade run` process");
    }

    // A city publishes, then is killed with SIGKILL.
    let (jinan, url) = pid_of(370100);
    let api = cascade_tests::process::Api::of(&url, &data.join("370100"));
    let code = cascade_tests::process::publish_entry(&api, "370100", "济南市大数据局").await;
    kill_process(Pid::from_raw(jinan as i32).expect("a pid"), Signal::KILL).expect("killed");
    loop {
        let line = next_line().await;
        if line.starts_with("node 370100 exited") {
            assert!(line.contains("SIGKILL") && line.contains("cascade run --config"), "{line}");
            break;
        }
    }
    // Restarted from its configuration, it still holds the entry, and so does its province.
    let (mut restarted, url) = cascade_tests::process::spawn_node(bin, &data.join("370100.toml")).await;
    let api = cascade_tests::process::Api::of(&url, &data.join("370100"));
    let path = format!("/api/v1/catalog/{}", cascade_tests::encode(&code));
    assert_eq!(api.call("GET", &path, None).await.0, 200);
    let (_, province_url) = pid_of(370000);
    let province = cascade_tests::process::Api::of(&province_url, &data.join("370000"));
    let at_province = format!("{path}?origin=370100");
    cascade_tests::eventually("the province holds the entry", || async {
        province.call("GET", &at_province, None).await.0 == 200
    })
    .await;

    // SIGTERM stops `up` and every node it started.
    kill_process(Pid::from_raw(up.id().expect("running") as i32).expect("a pid"), Signal::TERM)
        .expect("sent");
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), up.wait())
        .await
        .expect("up stops in time")
        .expect("its status");
    assert!(status.success(), "{status}");
    for pid in pids.iter().filter(|p| **p != jinan) {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "node process {pid} stopped");
    }
    let _ = restarted.kill().await;

    // `--log-format json` reached `up` and the nodes it started: a JSON object a
    // line. Jinan restarted by hand logs text, and no colour codes into a file.
    for log in [up_log, data.join("100000.log"), data.join("370000.log")] {
        let text = std::fs::read_to_string(&log).expect("a log");
        assert!(text.lines().count() > 0 || log.ends_with("up.log"), "{} logged nothing", log.display());
        for line in text.lines() {
            let object: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            assert!(object["level"].is_string() && object["fields"].is_object(), "{line}");
        }
    }
    let restarted_log = std::fs::read_to_string(data.join("370100.log")).expect("Jinan's log");
    assert!(!restarted_log.contains('\x1b'), "no terminal codes in a file:\n{restarted_log}");
}
