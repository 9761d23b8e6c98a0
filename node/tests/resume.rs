//! A fetch survives `kill -9` of the consumer's node, a real process: the
//! consumer city runs as `cascade run` in a process of its own (the rest of the
//! federation in this one); it is killed mid-fetch and started again, resumes
//! the fetch on its own, and ends with the publisher's bytes, having asked again
//! for less than one chunk per request that was in flight.

use cascade_launcher::topology::Topology;
use cascade_launcher::{Federation, LaunchOptions};
use cascade_protocol::org::Organization;
use cascade_tests::{content, eventually, nid, SIX_NODES};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// An HTTP client of one node's admin API.
#[derive(Clone)]
struct Api {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.url)).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
    }
}

/// Starts `cascade run --config CONFIG`; answers the process and its admin URL
/// (from the line it prints once serving).
fn spawn_node(config: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cascade"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cascade run");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).expect("admin URL").to_string();
    (child, url)
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
    let provider = Organization::government_code(nid("440100"), 1);
    let org = json!({"credit_code": provider, "name": "广州市统计局", "division": 440100});
    assert_eq!(guangzhou.call("POST", "/api/v1/organizations", Some(org)).await.0, 201);
    let entry = json!({"name": "企业年报", "classification": "3", "provider": provider,
        "summary": "Annual reports", "format": "database",
        "data_items": [{"name": "统一社会信用代码", "data_type": "C", "length": 18}],
        "share_type": "unconditional", "share_mode": "platform", "open_type": "closed", "update_cycle": "yearly"});
    let (_, saved) = guangzhou.call("POST", "/api/v1/catalog", Some(entry)).await;
    let code = saved["code"].as_str().unwrap().to_string();
    let path = code.replace('/', "%2F");
    let publish = json!({"scope": "federation"});
    assert_eq!(
        guangzhou.call("POST", &format!("/api/v1/catalog/{path}/publish"), Some(publish)).await.0,
        200
    );
    let data = content(48 << 20, 7);
    let resp = reqwest::Client::new()
        .put(format!("{}/api/v1/datasets/440100/{path}/versions", guangzhou.url))
        .bearer_auth(&guangzhou.token)
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);

    // Jinan runs as a process of its own.
    let mut config = fed.config(nid("370100")).unwrap();
    let config_path = dir.path().join("370100.toml");
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    let (mut jinan_process, url) = spawn_node(&config_path);
    let token = std::fs::read_to_string(config.data_dir.join(cascade_runtime::TOKEN_FILE)).unwrap();
    let jinan = Api { url: url.clone(), token: token.trim().to_string(), http: reqwest::Client::new() };
    let consumer = Organization::government_code(nid("370100"), 1);
    let org = json!({"credit_code": consumer, "name": "济南市统计局", "division": 370100});
    assert_eq!(jinan.call("POST", "/api/v1/organizations", Some(org)).await.0, 201);
    let entry = format!("/api/v1/catalog/{path}?origin=440100");
    eventually("Jinan sees the entry", || async { jinan.call("GET", &entry, None).await.0 == 200 }).await;
    let apply = json!({"resource": {"entry": {"origin": 440100, "code": code}}, "consumer": consumer,
        "purpose": "statistics", "period_days": 30});
    let (status, a) = jinan.call("POST", "/api/v1/applications", Some(apply)).await;
    assert_eq!(status, 201, "{a}");
    let application = format!("/api/v1/applications/{}", a["id"].as_str().unwrap());
    eventually("Jinan holds the grant", || async {
        jinan.call("GET", &application, None).await.1["state"] == "granted"
    })
    .await;
    let version = format!("/api/v1/datasets/440100/{path}/versions/1");
    eventually("Jinan knows the version", || async { jinan.call("GET", &version, None).await.0 == 200 })
        .await;

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
    jinan_process.kill().unwrap(); // SIGKILL: nothing of the process runs on.
    jinan_process.wait().unwrap();
    let held_at_kill = jinan.http.get(format!("{url}/healthz")).send().await.is_err();
    assert!(held_at_kill, "the process is gone");

    // Started again on the same ports, it resumes the fetch by itself.
    hub.set_send_delay(Duration::ZERO);
    config.admin_listen = url.trim_start_matches("http://").parse().unwrap();
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    let (mut jinan_process, _) = spawn_node(&config_path);
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
    jinan_process.kill().unwrap();
    jinan_process.wait().unwrap();
}
