//! End-to-end: data docking (数据对接) over real QUIC. A city publishes dataset
//! versions; granted consumers in another province fetch them along the tree;
//! the provincial hub caches what passed through it, so a second city of the
//! province is served without crossing the national link again; a new version
//! moves only the chunks the consumer lacks; a tampering hub is caught; chunk
//! requests without a valid grant are refused (and audited) at the hub and at
//! the provider.

use cascade_protocol::dataset::{ChunkReply, ChunkRequest, StreamKind, MAX_CHUNK_REPLY_BYTES};
use cascade_protocol::service::EntryRef;
use cascade_tests::*;
use cascade_transport::{read_message, write_message};
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery staple";

/// PUTs `body` as the next version of Guangzhou's entry `code`.
async fn push(fed: &Fed, at: &str, code: &str, media: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let (url, token) = fed.url_token(at);
    let resp = reqwest::Client::new()
        .put(format!("{url}/api/v1/datasets/440100/{}/versions", encode(code)))
        .bearer_auth(token)
        .header("content-type", media)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A consumer account of node `at`'s own organization, granted Guangzhou's
/// entry `code` (unconditional: granted at once); its token.
async fn consumer(fed: &Fed, at: &str, name: &str, code: &str) -> String {
    let org = fed.register_org(at).await;
    let body = json!({"username": name, "password": PASSWORD, "organization": org, "roles": ["consumer"]});
    assert_eq!(fed.post(at, "/api/v1/accounts", body).await.0, 201);
    let (_, session) = fed.login(at, name, PASSWORD).await;
    let token = session["token"].as_str().unwrap().to_string();
    let who = fed.with_token(at, &token);
    let apply = json!({"resource": {"entry": {"origin": 440100, "code": code}}, "consumer": org,
        "purpose": "annual statistics", "period_days": 30});
    let (status, a) = who.call("POST", "/api/v1/applications", Some(apply)).await;
    assert_eq!(status, 201, "{a}");
    let id = a["id"].as_str().unwrap().to_string();
    eventually(&format!("{at} holds the grant"), || async {
        who.call("GET", &format!("/api/v1/applications/{id}"), None).await.1["state"] == "granted"
    })
    .await;
    token
}

/// Fetches version `v` of `code` to node `at` as `token`'s account; waits for
/// the job to end and answers it.
async fn fetch(fed: &Fed, at: &str, token: &str, code: &str, v: u64) -> Value {
    let who = fed.with_token(at, token);
    let version = format!("/api/v1/datasets/440100/{}/versions/{v}", encode(code));
    eventually(&format!("{at} knows version {v}"), || async {
        who.call("GET", &version, None).await.0 == 200
    })
    .await;
    let (status, job) = who.call("POST", &format!("{version}/fetch"), None).await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let job = format!("/api/v1/fetches/{id}");
    eventually(&format!("fetch {id} ends"), || async {
        who.call("GET", &job, None).await.1["state"] != "running"
    })
    .await;
    let (_, last) = who.call("GET", &job, None).await;
    assert_eq!(last["state"], "done", "{last}");
    last
}

/// The content of version `v` as node `at` serves it to `token`'s account, with
/// an optional `Range`.
async fn read(fed: &Fed, at: &str, token: &str, code: &str, v: u64, range: Option<&str>) -> (u16, Vec<u8>) {
    let (url, _) = fed.url_token(at);
    let mut req = reqwest::Client::new()
        .get(format!("{url}/api/v1/datasets/440100/{}/versions/{v}/content", encode(code)))
        .bearer_auth(token);
    if let Some(range) = range {
        req = req.header("range", range);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
}

fn counters(fed: &Fed, id: &str) -> cascade_runtime::DatasetCounters {
    fed.fed.node(nid(id)).unwrap().node.dataset_counters()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_reach_granted_cities_in_another_province_once_per_link_and_incrementally() {
    let fed = Fed::launch(SIX_NODES).await;
    let code = fed.publish("440100", "企业年报数据", "federation").await;
    let v1 = content(6 << 20, 7);
    let (status, m1) = push(&fed, "440100", &code, "application/octet-stream", v1.clone()).await;
    assert_eq!(status, 201, "{m1}");
    assert_eq!((m1["version"].as_u64(), m1["size"].as_u64()), (Some(1), Some(v1.len() as u64)));
    assert_eq!(m1["content_hash"], json!(blake3::hash(&v1).to_hex().to_string()));
    assert!(m1["chunks"].as_u64().unwrap() >= 3, "{m1}");
    // Versions are published at the entry's origin only.
    assert_eq!(push(&fed, "370100", &code, "text/plain", b"x".to_vec()).await.0, 409);

    // Jinan fetches it: every chunk crosses every link once, byte for byte.
    let jinan = consumer(&fed, "370100", "wang", &code).await;
    let national_before = counters(&fed, "100000").bytes_served;
    let job = fetch(&fed, "370100", &jinan, &code, 1).await;
    let moved = job["bytes_transferred"].as_u64().unwrap();
    assert!(moved >= v1.len() as u64 && moved < v1.len() as u64 + 64 * 1024, "{job}");
    assert_eq!(
        (job["chunks_done"].clone(), job["bytes_done"].as_u64()),
        (m1["chunks"].clone(), Some(v1.len() as u64))
    );
    let crossed = counters(&fed, "100000").bytes_served - national_before;
    assert_eq!(crossed, moved, "the national node passed on exactly what Jinan received");
    let (status, got) = read(&fed, "370100", &jinan, &code, 1, None).await;
    assert_eq!((status, got.len()), (200, v1.len()));
    assert!(got == v1, "byte-identical after the transfer");
    let (status, part) = read(&fed, "370100", &jinan, &code, 1, Some("bytes=1000000-1999999")).await;
    assert_eq!(status, 206);
    assert!(part == v1[1_000_000..2_000_000], "a range is the content's bytes");
    assert_eq!(read(&fed, "370100", &jinan, &code, 1, Some("bytes=99999999-")).await.0, 416);

    // Qingdao fetches it too: the Shandong hub serves it from its cache, and
    // nothing more crosses the national link.
    let qingdao = consumer(&fed, "370200", "zhao", &code).await;
    let national_before = counters(&fed, "100000").bytes_served;
    let held_before = counters(&fed, "370000").bytes_served_held;
    fetch(&fed, "370200", &qingdao, &code, 1).await;
    assert_eq!(counters(&fed, "100000").bytes_served, national_before, "the national link carried nothing");
    assert!(counters(&fed, "370000").bytes_served_held - held_before >= v1.len() as u64);
    assert!(read(&fed, "370200", &qingdao, &code, 1, None).await.1 == v1);

    // 1 KB inserted in the middle: the new version moves only the chunks that changed.
    let mut v2 = v1[..3 << 20].to_vec();
    v2.extend(content(1000, 99));
    v2.extend_from_slice(&v1[3 << 20..]);
    let (status, m2) = push(&fed, "440100", &code, "application/octet-stream", v2.clone()).await;
    assert_eq!(status, 201, "{m2}");
    assert_eq!((m2["version"].as_u64(), m2["previous"].clone()), (Some(2), m1["content_hash"].clone()));
    let job = fetch(&fed, "370100", &jinan, &code, 2).await;
    let moved = job["bytes_transferred"].as_u64().unwrap();
    let max_chunk = cascade_chunks::cut::MAX_CHUNK_BYTES as u64;
    assert!(moved <= 2 * max_chunk + 64 * 1024 && moved < v2.len() as u64 / 3, "{job}");
    assert!(read(&fed, "370100", &jinan, &code, 2, None).await.1 == v2);

    // A hub that alters a byte it passes on is caught, and the fetch still ends right.
    fed.fed.node(nid("370000")).unwrap().node.tamper_with_chunks(1);
    fetch(&fed, "370200", &qingdao, &code, 2).await;
    assert_eq!(counters(&fed, "370200").corrupt, 1, "Qingdao caught the altered chunk");
    assert!(read(&fed, "370200", &qingdao, &code, 2, None).await.1 == v2);

    // Keeping only the newest version, Jinan collects what only version 1 used:
    // version 2 still reads whole, version 1 no longer does.
    let jinan_node = fed.fed.node(nid("370100")).unwrap().node.clone();
    let removed = jinan_node.collect_chunks(1, std::time::Duration::ZERO).await.unwrap();
    assert!(removed > 0);
    assert!(read(&fed, "370100", &jinan, &code, 2, None).await.1 == v2);
    assert_eq!(read(&fed, "370100", &jinan, &code, 1, None).await.0, 409);
    let (_, audit) = fed.get("370100", "/api/v1/audit?kind=dataset.gc&limit=10").await;
    assert!(audit["records"].as_array().is_some_and(|r| !r.is_empty()), "{audit}");

    // CSV content says its shape.
    let csv = b"id,name,\"city, district\"\n1,a,x\n2,\"b\nc\",y\n3,d,z".to_vec();
    let (status, m3) = push(&fed, "440100", &code, "text/csv", csv).await;
    assert_eq!(status, 201, "{m3}");
    assert_eq!(m3["csv"], json!({"rows": 3, "columns": ["id", "name", "city, district"]}));
}

/// Sends one chunk request on `connection` (as the node at its end) and reads
/// the answer's head.
async fn ask_chunk(connection: quinn::Connection, req: ChunkRequest) -> ChunkReply {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(&[StreamKind::Chunk as u8]).await.unwrap();
    write_message(&mut send, &req).await.unwrap();
    read_message::<ChunkReply>(&mut recv, MAX_CHUNK_REPLY_BYTES).await.unwrap().unwrap().0
}

/// The hash of the first list piece of a version's manifest as the API shows it.
fn first_piece(manifest: &Value) -> [u8; 32] {
    let hex = manifest["lists"][0].as_str().unwrap();
    (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_are_refused_without_a_valid_grant_at_the_hub_and_at_the_provider() {
    let mut fed = Fed::launch(SIX_NODES).await;
    let code = fed.publish("440100", "不动产登记数据", "federation").await;
    let data = content(1 << 20, 3);
    let (status, m) = push(&fed, "440100", &code, "application/octet-stream", data).await;
    assert_eq!(status, 201, "{m}");
    let list_hash = first_piece(&m);

    // An organization without a grant cannot start a fetch at its own node.
    let org = fed.register_org("370100").await;
    let body = json!({"username": "li", "password": PASSWORD, "organization": org, "roles": ["consumer"]});
    assert_eq!(fed.post("370100", "/api/v1/accounts", body).await.0, 201);
    let (_, session) = fed.login("370100", "li", PASSWORD).await;
    let li = fed.with_token("370100", session["token"].as_str().unwrap());
    let version = format!("/api/v1/datasets/440100/{}/versions/1", encode(&code));
    eventually("Jinan knows the version", || async { li.call("GET", &version, None).await.0 == 200 }).await;
    let (status, refused) = li.call("POST", &format!("{version}/fetch"), None).await;
    assert_eq!(status, 403, "{refused}");

    // Jinan's other organization was granted the entry.
    let wang = consumer(&fed, "370100", "wang", &code).await;
    let (_, held) = fed.with_token("370100", &wang).call("GET", "/api/v1/grants?box=held", None).await;
    let revoked = grant_of(&held["grants"][0]);

    // A chunk request as Jinan's node, straight to the Shandong hub: with no
    // grant, and with a grant for another node, refused by the hub itself.
    let (creds, root) = creds_of(&fed, "370100");
    let me = endpoint(&creds, &root);
    let hub = fed.fed.node(nid("370000")).unwrap().node.quic_addr();
    fed.fed.stop(nid("370100")).await.unwrap();
    let link = me.connect(hub, nid("370000")).await.unwrap();
    let ask = |grant: Option<cascade_protocol::workflow::Grant>, from_origin: bool| {
        let req = ChunkRequest {
            entry: EntryRef { origin: nid("440100"), code: code.clone() },
            version: 1,
            hash: list_hash,
            requester: nid("370100"),
            grant,
            from_origin,
        };
        ask_chunk(link.connection.clone(), req)
    };
    let reply = ask(None, false).await;
    assert_eq!((reply.status, reply.by), (403, nid("370000")), "{reply:?}");

    // Qingdao is granted; its grant presented for Jinan's node is refused at the hub.
    let qingdao = consumer(&fed, "370200", "zhao", &code).await;
    let zhao = fed.with_token("370200", &qingdao);
    let (_, held) = zhao.call("GET", "/api/v1/grants?box=held", None).await;
    let grant = grant_of(&held["grants"][0]);
    let reply = ask(Some(grant.clone()), false).await;
    assert_eq!((reply.status, reply.by), (403, nid("370000")), "{reply:?}");
    assert!(reply.reason.unwrap().contains("belongs to node 370200"));

    // Its grant is revoked while Guangzhou's messages are held back, so that no
    // hub knows yet.
    let guangzhou = fed.fed.node(nid("440100")).unwrap().node.clone();
    guangzhou.set_send_delay(std::time::Duration::from_secs(3));
    let body = json!({"reason": "no longer needed"});
    let (status, body) = fed.post("440100", &format!("/api/v1/grants/{}/revoke", revoked.id), body).await;
    assert_eq!(status, 200, "{body}");
    // The revoked grant looks valid to every hub the revocation has not
    // passed yet (signed, current, Jinan's): passed on, and refused by the
    // provider, which knows it was revoked.
    let reply = ask(Some(revoked.clone()), true).await;
    assert_eq!((reply.status, reply.by), (403, nid("440100")), "{reply:?}");
    assert!(reply.reason.unwrap().contains("revoked"));
    // Once the revocation has passed through the Shandong hub on its way to
    // Jinan, the hub refuses the grant itself, cache or not.
    guangzhou.set_send_delay(std::time::Duration::ZERO);
    eventually("the revocation passes the Shandong hub", || async {
        let (_, relayed) = fed.get("370000", "/api/v1/relayed?kind=revoke").await;
        relayed["relayed"].as_array().is_some_and(|r| r.iter().any(|m| m["subject"] == revoked.id.as_str()))
    })
    .await;
    let reply = ask(Some(revoked), false).await;
    assert_eq!((reply.status, reply.by), (403, nid("370000")), "{reply:?}");
    assert!(reply.reason.unwrap().contains("passed through"));

    // Each refusal is audited where it was decided.
    let refusals = |at: &'static str| {
        let fed = &fed;
        async move {
            let (_, audit) = fed.get(at, "/api/v1/audit?kind=dataset.chunk_refused&limit=1000").await;
            audit["records"].as_array().map_or(0, Vec::len)
        }
    };
    assert!(refusals("370000").await > 0);
    assert!(refusals("440100").await > 0);

    // A flood of 500 refused requests, many at once, costs the hub a summary
    // in its audit log, not a record each; Qingdao still fetches through it.
    let audited = refusals("370000").await;
    let flood = (0..500).map(|_| ask(None, false));
    let replies = futures_util::future::join_all(flood).await;
    // Refused, or turned away at once while the neighbour's share of streams
    // is taken (503): never passed on.
    assert!(replies.iter().all(|r| matches!(r.status, 403 | 503) && r.by == nid("370000")));
    assert!(replies.iter().any(|r| r.status == 403));
    assert!(refusals("370000").await <= audited + 2, "a flood costs a summary");
    let job = fetch(&fed, "370200", &qingdao, &code, 1).await;
    assert_eq!(job["bytes_done"].as_u64(), m["size"].as_u64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requester_asking_past_the_hubs_cache_for_everything_is_held_to_its_budget_and_served_from_the_cache(
) {
    let mut fed = Fed::launch(SIX_NODES).await;
    let code = fed.publish("440100", "不动产登记数据", "federation").await;
    let (status, m) = push(&fed, "440100", &code, "application/octet-stream", content(1 << 20, 4)).await;
    assert_eq!(status, 201, "{m}");
    let wang = consumer(&fed, "370100", "wang", &code).await;
    let (_, held) = fed.with_token("370100", &wang).call("GET", "/api/v1/grants?box=held", None).await;
    let grant = grant_of(&held["grants"][0]);
    let version = format!("/api/v1/datasets/440100/{}/versions/1", encode(&code));
    eventually("the Shandong hub knows the version", || async { fed.get("370000", &version).await.0 == 200 })
        .await;

    // Jinan's node (its identity, from this test) asks the Shandong hub for the
    // origin's own copy of one piece, again and again, one request at a time.
    let (creds, root) = creds_of(&fed, "370100");
    let me = endpoint(&creds, &root);
    let hub = fed.fed.node(nid("370000")).unwrap().node.quic_addr();
    fed.fed.stop(nid("370100")).await.unwrap();
    let link = me.connect(hub, nid("370000")).await.unwrap();
    let req = |from_origin| ChunkRequest {
        entry: EntryRef { origin: nid("440100"), code: code.clone() },
        version: 1,
        hash: first_piece(&m),
        requester: nid("370100"),
        grant: Some(grant.clone()),
        from_origin,
    };
    // Once plainly: the hub keeps a copy as it passes it on.
    assert_eq!(ask_chunk(link.connection.clone(), req(false)).await.status, 200);
    let national = fed.fed.node(nid("100000")).unwrap().node.clone();
    let before = national.dataset_counters().served;
    for _ in 0..80 {
        let reply = ask_chunk(link.connection.clone(), req(true)).await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    // At most a minute's budget went past the hub (to the national node); the
    // rest were answered from the hub's cache.
    let passed = national.dataset_counters().served - before;
    println!("{passed} of 80 requests for the origin's copy went past the Shandong hub");
    assert!((1..=32).contains(&passed), "{passed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_brings_each_new_version_down_to_the_granted_city() {
    let fed = Fed::launch(SIX_NODES).await;
    let code = fed.publish("440100", "人口统计数据", "federation").await;
    let jinan = consumer(&fed, "370100", "wang", &code).await;
    let wang = fed.with_token("370100", &jinan);
    let follow = json!({"entry": {"origin": 440100, "code": code}});
    let (status, sub) = wang.call("POST", "/api/v1/subscriptions", Some(follow.clone())).await;
    assert_eq!(status, 201, "{sub}");
    // Subscribing twice is the same subscription; one is listed.
    assert_eq!(wang.call("POST", "/api/v1/subscriptions", Some(follow)).await.1["id"], sub["id"]);
    assert_eq!(wang.call("GET", "/api/v1/subscriptions", None).await.1["returned"], 1);

    // Each version Guangzhou publishes arrives at Jinan with nobody asking.
    for (v, len) in [(1, 3 << 20), (2, 1 << 20)] {
        let data = content(len, v);
        assert_eq!(push(&fed, "440100", &code, "application/octet-stream", data.clone()).await.0, 201);
        eventually(&format!("version {v} arrives"), || async {
            let (_, jobs) = wang.call("GET", "/api/v1/fetches", None).await;
            jobs["fetches"]
                .as_array()
                .is_some_and(|j| j.iter().any(|j| j["version"] == v && j["state"] == "done"))
        })
        .await;
        assert!(read(&fed, "370100", &jinan, &code, v, None).await.1 == data);
    }
    let (_, audit) = fed.get("370100", "/api/v1/audit?kind=dataset.subscribe&limit=10").await;
    assert!(audit["records"].as_array().is_some_and(|r| !r.is_empty()), "{audit}");
    let id = sub["id"].as_str().unwrap();
    assert_eq!(wang.call("DELETE", &format!("/api/v1/subscriptions/{id}"), None).await.0, 204);
    assert_eq!(wang.call("GET", "/api/v1/subscriptions", None).await.1["returned"], 0);
}

/// Shandong's sixteen prefectures (Laiwu, 371200, joined Jinan in 2019).
const SHANDONG_CITIES: [u32; 16] = [
    370100, 370200, 370300, 370400, 370500, 370600, 370700, 370800, 370900, 371000, 371100, 371300, 371400,
    371500, 371600, 371700,
];

/// The national node, Shandong with sixteen cities, and Guangdong's publisher.
/// `len` bytes as a body of unknown length (64 KiB pieces, no Content-Length).
fn streamed(len: usize) -> reqwest::Body {
    let pieces = (0..len.div_ceil(64 << 10)).map(move |i| {
        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![7u8; (64 << 10).min(len - i * (64 << 10))]))
    });
    reqwest::Body::wrap_stream(futures_util::stream::iter(pieces))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_over_the_nodes_cap_are_refused_413_declared_or_streamed_and_a_flood_of_them_leaves_the_node_serving(
) {
    let mut fed = Fed::prepare(SIX_NODES);
    let datasets = cascade_runtime::DatasetConfig { max_version_bytes: 1 << 20, ..Default::default() };
    fed.fed.set_datasets(nid("440100"), datasets).unwrap();
    for id in ["100000", "440000", "440100"] {
        fed.fed.start(nid(id)).await.unwrap();
    }
    let code = fed.publish("440100", "企业年报", "federation").await;
    let octets = "application/octet-stream";

    // Declared over the cap: refused before a byte is read (the request's head
    // alone, over a raw connection, gets the answer).
    let (url, token) = fed.url_token("440100");
    let target = format!("/api/v1/datasets/440100/{}/versions", encode(&code));
    let addr = url.trim_start_matches("http://");
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {octets}\r\nContent-Length: {}\r\n\r\n",
        2 << 20
    );
    tokio::io::AsyncWriteExt::write_all(&mut raw, head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::io::AsyncReadExt::read(&mut raw, &mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("max_version_bytes"), "{answer}");
    // Of unknown length: refused once it passes the cap.
    let just_over = (1 << 20) + (64 << 10);
    let (status, e) = push(&fed, "440100", &code, octets, streamed(just_over)).await;
    assert_eq!(status, 413, "{e}");

    // A flood of over-cap pushes at once, declared and streamed: each is refused
    // (413, or 503 while two pushes already run), or cut off by the node while
    // the client still sends.
    let http = reqwest::Client::new();
    let flood = (0..200).map(|i| {
        let body = if i % 2 == 0 { reqwest::Body::from(content(2 << 20, i)) } else { streamed(just_over) };
        http.put(format!("{url}{target}")).bearer_auth(&token).body(body).send()
    });
    let answers = futures_util::future::join_all(flood).await;
    let statuses: Vec<u16> =
        answers.iter().filter_map(|a| a.as_ref().ok()).map(|r| r.status().as_u16()).collect();
    assert!(statuses.iter().all(|s| [413, 503].contains(s)), "{statuses:?}");
    assert!(statuses.contains(&413), "{statuses:?}");
    println!(
        "{} of 200 answered ({} 413), the rest cut off while sending",
        statuses.len(),
        statuses.iter().filter(|s| **s == 413).count()
    );

    // Nothing was published; a version within the cap still is, at once.
    assert_eq!(fed.get("440100", &target).await.1["returned"], 0);
    let (status, v) = push(&fed, "440100", &code, octets, content(512 << 10, 2)).await;
    assert_eq!((status, v["version"].as_u64()), (201, Some(1)), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_content_readers_that_never_read_gets_a_bounded_number_of_streams_and_the_node_keeps_serving(
) {
    let mut fed = Fed::prepare(SIX_NODES);
    for id in ["100000", "440000", "440100"] {
        fed.fed.start(nid(id)).await.unwrap();
    }
    let code = fed.publish("440100", "企业年报", "federation").await;
    // Larger than what the node's channel and both sockets' buffers take in, so
    // that a stream nobody reads stays open.
    let data = content(32 << 20, 5);
    assert_eq!(push(&fed, "440100", &code, "application/octet-stream", data.clone()).await.0, 201);
    let (url, token) = fed.url_token("440100");
    let target = format!("{url}/api/v1/datasets/440100/{}/versions/1/content", encode(&code));

    // 200 readers of one account at once, each taking the answer's head and
    // never a byte of it.
    let http = reqwest::Client::new();
    let flood = (0..200).map(|_| http.get(&target).bearer_auth(&token).send());
    let held: Vec<reqwest::Response> =
        futures_util::future::join_all(flood).await.into_iter().map(|r| r.unwrap()).collect();
    let streaming = held.iter().filter(|r| r.status() == 200).count();
    let busy = held.iter().filter(|r| r.status() == 503).count();
    println!("{streaming} streams, {busy} answered 503");
    // One account holds at most its share (fewer if one was cut for idling).
    let share = cascade_runtime::MAX_CONTENT_STREAMS_PER_ACCOUNT;
    assert!((1..=share).contains(&streaming) && streaming + busy == 200, "{streaming} streams, {busy} busy");

    // Meanwhile the node answers what reads its store, and publishes.
    assert_eq!(fed.get("440100", "/api/v1/node").await.0, 200);
    assert_eq!(push(&fed, "440100", &code, "text/csv", b"id,name\n1,a\n".to_vec()).await.0, 201);

    // Once the readers go away their streams end, and a reader gets it whole.
    drop(held);
    let whole = || async {
        let resp = http.get(&target).bearer_auth(&token).send().await.unwrap();
        resp.status() == 200 && resp.bytes().await.is_ok_and(|b| b == data)
    };
    eventually("a reader gets the content whole", whole).await;
}

fn sixteen_cities() -> String {
    let mut t = String::from(
        "name = \"sixteen\"\n[[node]]\nid = 100000\nname = \"中华人民共和国\"\ntier = \"national\"\n\
         [[node]]\nid = 370000\nname = \"山东省\"\ntier = \"provincial\"\nparent = 100000\n\
         [[node]]\nid = 440000\nname = \"广东省\"\ntier = \"provincial\"\nparent = 100000\n\
         [[node]]\nid = 440100\nname = \"广州市\"\ntier = \"municipal\"\nparent = 440000\n",
    );
    for (i, id) in SHANDONG_CITIES.iter().enumerate() {
        t.push_str(&format!(
            "[[node]]\nid = {id}\nname = \"城市{i}\"\ntier = \"municipal\"\nparent = 370000\n"
        ));
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_cities_fetching_at_once_take_one_copy_over_the_national_link() {
    let fed = Fed::launch(&sixteen_cities()).await;
    let code = fed.publish("440100", "全国共享数据", "federation").await;
    let data = content(4 << 20, 16);
    let (status, m) = push(&fed, "440100", &code, "application/octet-stream", data.clone()).await;
    assert_eq!(status, 201, "{m}");
    let cities: Vec<String> = SHANDONG_CITIES.iter().map(|c| c.to_string()).collect();
    let mut tokens = Vec::new();
    for (i, city) in cities.iter().enumerate() {
        tokens.push(consumer(&fed, city, &format!("user{i}"), &code).await);
    }
    let national_before = counters(&fed, "100000");
    // All sixteen at once.
    let fetches = cities.iter().zip(&tokens).map(|(city, token)| fetch(&fed, city, token, &code, 1));
    let jobs = futures_util::future::join_all(fetches).await;
    let national = counters(&fed, "100000");
    let lists = m["chunks"].as_u64().unwrap() * cascade_chunks::list::ENTRY_BYTES as u64;
    assert_eq!(
        national.bytes_served - national_before.bytes_served,
        data.len() as u64 + lists,
        "the national node passed the version on once"
    );
    assert_eq!(national.served - national_before.served, m["chunks"].as_u64().unwrap() + 1);
    let moved: u64 = jobs.iter().map(|j| j["bytes_transferred"].as_u64().unwrap()).sum();
    assert_eq!(moved, 16 * (data.len() as u64 + lists), "each city received it once");
    for (city, token) in cities.iter().zip(&tokens).take(3) {
        assert!(read(&fed, city, token, &code, 1, None).await.1 == data);
    }
}
