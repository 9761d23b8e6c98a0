//! The web console in a real browser: Debian's chromium, driven by Playwright
//! (`tests/conformance/console.py`), against a real `cascade up` federation
//! whose every node is a process. Screenshots of the main screens are kept under
//! cargo's target folder (`tmp/console-screenshots`), not committed.

use cascade_protocol::org::Organization;
use cascade_tests::process::Api;
use cascade_tests::python;
use serde_json::{json, Value};
use std::path::Path;

/// Every account's password (the console signs in with it).
const PASSWORD: &str = "correct horse battery staple";

/// Registers the first organization of `division` at `api` and an account of
/// it for each of `accounts` (username, role).
async fn people(api: &Api, division: &str, accounts: &[(&str, &str)]) {
    let code = Organization::government_code(cascade_tests::nid(division), 1);
    let org = json!({"credit_code": code, "name": format!("{division} 大数据局"), "division": division.parse::<u32>().expect("a division")});
    let (status, body) = api.call("POST", "/api/v1/organizations", Some(org)).await;
    assert_eq!(status, 201, "{body}");
    for (username, role) in accounts {
        let account =
            json!({"username": username, "password": PASSWORD, "organization": code, "roles": [role]});
        let (status, body) = api.call("POST", "/api/v1/accounts", Some(account)).await;
        assert_eq!(status, 201, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_publish_apply_approve_call_and_watch_a_link_fall_in_the_console() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    // The browser and the Python clients install while the federation starts.
    let python = tokio::task::spawn_blocking(|| python::python_env(Path::new(env!("CARGO_TARGET_TMPDIR"))));
    let chromium = tokio::task::spawn_blocking(|| python::browser(Path::new(env!("CARGO_TARGET_TMPDIR"))));

    let bin = Path::new(env!("CARGO_BIN_EXE_cascade"));
    let dir = tempfile::tempdir().expect("a folder");
    let data = dir.path().join("d");
    let topology = concat!(env!("CARGO_MANIFEST_DIR"), "/../topologies/three-tier.toml");
    let mut up = tokio::process::Command::new(bin)
        .args(["up", topology, "--processes", "--admin-port-base", "0", "--data"])
        .arg(&data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("up.log")).expect("a log file"))
        .kill_on_drop(true)
        .spawn()
        .expect("cascade up");
    let mut lines = BufReader::new(up.stdout.take().expect("stdout")).lines();
    loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(120), lines.next_line())
            .await
            .expect("a line in time")
            .expect("readable")
            .expect("up still runs");
        if line.starts_with("press Ctrl-C") {
            break;
        }
    }
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(data.join("federation.json")).expect("the manifest"))
            .expect("JSON");
    let node = |id: u64| {
        let nodes = manifest["nodes"].as_array().expect("nodes");
        let node = nodes.iter().find(|n| n["id"] == id).expect("the node").clone();
        let api = Api::of(node["admin_url"].as_str().expect("a URL"), &data.join(id.to_string()));
        (api, node["pid"].as_u64().expect("a pid"))
    };
    let ((shandong, _), (jinan, _), (qingdao, qingdao_pid)) = (node(370000), node(370100), node(370200));
    people(&shandong, "370000", &[("ops", "admin")]).await;
    people(&jinan, "370100", &[("li", "cataloger"), ("wang", "approver")]).await;
    people(&qingdao, "370200", &[("zhao", "consumer")]).await;

    let python = python.await.expect("the Python clients");
    let chromium = chromium.await.expect("chromium");
    let shots = tmp.join("console-screenshots");
    let people = json!({
        "370000": {"url": shandong.url, "password": PASSWORD},
        "370100": {"url": jinan.url, "password": PASSWORD},
        "370200": {"url": qingdao.url, "password": PASSWORD, "pid": qingdao_pid},
    });
    let script = python::scripts().join("console.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .arg("--people")
        .arg(people.to_string())
        .arg("--shots")
        .arg(&shots)
        .arg("--chromium")
        .arg(chromium)
        .output()
        .await
        .expect("the browser script runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the browser script failed:\n{stdout}\n{stderr}");
    println!("{stdout}");
    assert!(shots.join("11-federation-link-down.png").exists(), "screenshots in {}", shots.display());

    // SIGTERM: `up` stops every node it started (SIGKILL would orphan them).
    use rustix::process::{kill_process, Pid, Signal};
    let pid = Pid::from_raw(up.id().expect("running") as i32).expect("a pid");
    kill_process(pid, Signal::TERM).expect("sent");
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), up.wait()).await.expect("up stops");
    assert!(status.expect("its status").success());
}
