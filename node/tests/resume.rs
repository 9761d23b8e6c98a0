//! A fetch survives `kill -9` of the consumer's node, a real process: the
//! consumer city runs as `cascade run` in a process of its own (the rest of the
//! federation in this one); it is killed mid-fetch and started again, resumes
//! the fetch on its own, and ends with the publisher's bytes, having asked again
//! for less than one chunk per request that was in flight.

use cascade_launcher::topology::Topology;
use cascade_launcher::{Federation, LaunchOptions};
use cascade_tests::process::{self, Api};
use cascade_tests::{content, eventually, nid, SIX_NODES};
use std::time::Duration;

async fn spawn_node(config: &std::path::Path) -> (tokio::process::Child, String) {
    process::spawn_node(std::path::Path::new(env!("CARGO_BIN_EXE_cascade")), config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_killed_with_its_process_resumes_and_asks_again_for_less_than_a_chunk_per_request_in_flight()
{
    let dir = tempfile::tempdir().unwrap();
    let topology = Topology::parse(SIX_NODES).unwrap();
    let options = LaunchOptions { data: dir.path().to_path_buf(), admin_port_base: None };
    let mut fed = Federation::prepare(topology, &options).unwrap();
    for id in ["100000", "370000", "370200", "440000", "440100"] {
        fed.start(nid(id)).await.unwrap();
    }
    let api = |id: &str| {
        let node = fed.node(nid(id)).unwrap();
        Api {
            url: node.admin_url.clone(),
            token: node.node.admin_token().to_string(),
            http: reqwest::Client::new(),
        }
    };
    let guangzhou = api("440100");

    // Guangzhou publishes an entry and a 48 MiB version of its data.
    let code = process::publish_entry(&guangzhou, "440100", "广州市统计局").await;
    let data = content(48 << 20, 7);
    assert_eq!(process::push_version(&guangzhou, "440100", &code, data.clone()).await.0, 201);

    // Jinan runs as a process of its own.
    let mut config = fed.config(nid("370100")).unwrap();
    let config_path = dir.path().join("370100.toml");
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    let (mut jinan_process, url) = spawn_node(&config_path).await;
    let jinan = Api::of(&url, &config.data_dir);
    let version = process::hold_grant(&jinan, "370100", "济南市统计局", "440100", &code, 1).await;

    // The fetch starts, slowed at the Shandong hub so that it is caught mid-way.
    let hub = fed.node(nid("370000")).unwrap().node.clone();
    hub.set_send_delay(Duration::from_millis(15));
    let before = hub.dataset_counters();
    let (status, job) = jinan.call("POST", &format!("{version}/fetch"), None).await;
    assert_eq!(status, 202, "{job}");
    let job = format!("/api/v1/fetches/{}", job["id"].as_str().unwrap());
    eventually("a third of the fetch is done", || async {
        jinan.call("GET", &job, None).await.1["bytes_done"].as_u64().unwrap_or(0) > data.len() as u64 / 3
    })
    .await;
    jinan_process.kill().await.unwrap(); // SIGKILL: nothing of the process runs on.
    let held_at_kill = jinan.http.get(format!("{url}/healthz")).send().await.is_err();
    assert!(held_at_kill, "the process is gone");

    // Started again on the same ports, it resumes the fetch by itself.
    hub.set_send_delay(Duration::ZERO);
    config.admin_listen = url.trim_start_matches("http://").parse().unwrap();
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    let (mut jinan_process, _) = spawn_node(&config_path).await;
    eventually("the fetch ends", || async {
        matches!(jinan.call("GET", &job, None).await.1["state"].as_str(), Some("done") | Some("failed"))
    })
    .await;
    let (_, done) = jinan.call("GET", &job, None).await;
    assert_eq!(done["state"], "done", "{done}");
    let resp =
        jinan.http.get(format!("{url}{version}/content")).bearer_auth(&jinan.token).send().await.unwrap();
    let got = resp.bytes().await.unwrap();
    assert!(got == data, "the publisher's bytes, whole");

    // What the Shandong hub sent Jinan: every chunk and list piece once, plus
    // the requests in flight when the process died, asked for again (at most
    // one per request in flight, each at most its own chunk).
    let (_, manifest) = jinan.call("GET", &version, None).await;
    let chunks = manifest["chunks"].as_u64().unwrap();
    let pieces = manifest["lists"].as_array().unwrap().len() as u64;
    let list_bytes = chunks * cascade_chunks::list::ENTRY_BYTES as u64;
    let after = hub.dataset_counters();
    let requests = after.served - before.served;
    let asked_again = requests - chunks - pieces;
    let again = after.bytes_served - before.bytes_served - data.len() as u64 - list_bytes;
    let in_flight = cascade_runtime::FETCH_IN_FLIGHT as u64;
    println!(
        "{requests} chunk requests served for {chunks} chunks and {pieces} list piece(s): {asked_again} asked for again \
         ({in_flight} in flight), {again} bytes sent again ({:.0} bytes per request asked again; average chunk {} bytes)",
        again as f64 / asked_again.max(1) as f64,
        data.len() as u64 / chunks
    );
    assert!(asked_again <= in_flight, "{asked_again} chunks asked for again");
    assert!(again <= asked_again * cascade_chunks::cut::MAX_CHUNK_BYTES as u64, "{again} bytes sent again");
    jinan_process.kill().await.unwrap();
}
