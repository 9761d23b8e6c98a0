//! End-to-end: real nodes, real QUIC with mTLS on 127.0.0.1, real sled, real HTTP.

use cascade_tests::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_update_withdraw_reach_every_tier_and_province_scope_stays_home() {
    let fed = Fed::launch(FOUR_PROVINCES).await;
    let code = fed.publish("370100", "企业登记基本信息", "federation").await;
    for at in ["370000", "100000", "370200", "110000"] {
        fed.wait_seen(at, "370100", &code, "published", 1).await;
    }

    // Update of a published entry: a new version, published at once.
    let mut updated = fed.entry_at("370100", "企业登记基本信息（更新）").await;
    updated["code"] = json!(code);
    let (status, body) = fed.post("370100", "/api/v1/catalog", updated).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 2);
    for at in ["370000", "100000", "370200", "110000"] {
        fed.wait_seen(at, "370100", &code, "published", 2).await;
    }
    let (_, seen) = fed.get("110000", &format!("/api/v1/catalog/{}?origin=370100", encode(&code))).await;
    assert_eq!(seen["name"], "企业登记基本信息（更新）");

    let (status, body) =
        fed.post("370100", &format!("/api/v1/catalog/{}/withdraw", encode(&code)), json!({})).await;
    assert_eq!(status, 200, "{body}");
    for at in ["370000", "100000", "370200", "110000"] {
        fed.wait_seen(at, "370100", &code, "withdrawn", 3).await;
    }

    // Province scope: seen by the province and the sibling city, never by the national node.
    let local = fed.publish("370100", "济南市内部资源", "province").await;
    fed.wait_seen("370000", "370100", &local, "published", 1).await;
    fed.wait_seen("370200", "370100", &local, "published", 1).await;
    // A later federation-wide publish overtakes it everywhere; the scoped one is still absent.
    let marker = fed.publish("370100", "marker", "federation").await;
    fed.wait_seen("100000", "370100", &marker, "published", 1).await;
    fed.wait_seen("110000", "370100", &marker, "published", 1).await;
    assert_eq!(fed.seen("100000", "370100", &local).await, None);
    assert_eq!(fed.seen("110000", "370100", &local).await, None);
    let (_, node) = fed.get("100000", "/api/v1/node").await;
    let scoped_logs: Vec<_> =
        node["version_vector"].as_array().unwrap().iter().filter(|v| v["scope"] == "province").collect();
    assert!(scoped_logs.is_empty(), "national holds province logs: {scoped_logs:?}");

    // Filters of the federated view.
    let (_, list) = fed
        .get("100000", "/api/v1/catalog?origin=370100&tier=municipal&share_type=unconditional&q=MARK")
        .await;
    assert_eq!(list["returned"], 1, "{list}");
    let (_, list) = fed.get("100000", "/api/v1/catalog?status=withdrawn").await;
    assert_eq!(list["returned"], 1, "{list}");
    fed.fed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_keeps_its_state_and_catches_up_after_restart() {
    let mut fed = Fed::launch(FOUR_PROVINCES).await;
    let before = fed.publish("370100", "before", "federation").await;
    fed.wait_seen("370200", "370100", &before, "published", 1).await;
    let own = fed.publish("370200", "qingdao own", "province").await;

    fed.fed.stop(nid("370200")).await.unwrap();
    let mut missed = Vec::new();
    for i in 0..20 {
        missed.push(
            fed.publish(if i % 2 == 0 { "370100" } else { "100000" }, &format!("missed {i}"), "federation")
                .await,
        );
    }
    fed.fed.start(nid("370200")).await.unwrap();
    // Its own state came back from its own sled files, before any sync.
    assert_eq!(fed.seen("370200", "370100", &before).await, Some(("published".into(), 1)));
    assert_eq!(fed.seen("370200", "370200", &own).await, Some(("published".into(), 1)));
    for (i, code) in missed.iter().enumerate() {
        let origin = if i % 2 == 0 { "370100" } else { "100000" };
        fed.wait_seen("370200", origin, code, "published", 1).await;
    }
    fed.fed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_authenticates_and_names_the_offending_field() {
    let fed = Fed::launch(FOUR_PROVINCES).await;
    let node = fed.fed.node(nid("370100")).unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/catalog", node.admin_url);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    let wrong = http.get(&url).bearer_auth("not-the-token").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert!(body["error"].is_string());
    assert_eq!(http.get(format!("{}/healthz", node.admin_url)).send().await.unwrap().status(), 200);

    // Invalid entries: 422 with the field named.
    let mut bad = entry("x");
    bad["provider"] = json!("91350100M000100Y44");
    let (status, body) = fed.post("370100", "/api/v1/catalog", bad).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("provider")), "{body}");
    let mut bad = entry("x");
    bad["data_items"] = json!([]);
    let (status, body) = fed.post("370100", "/api/v1/catalog", bad).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("data_items")), "{body}");
    let mut bad = entry("x");
    bad["share_type"] = json!("conditional");
    let (status, body) = fed.post("370100", "/api/v1/catalog", bad).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("share_condition")), "{body}");
    let mut bad = entry("x");
    bad.as_object_mut().unwrap().remove("name");
    let (status, body) = fed.post("370100", "/api/v1/catalog", bad).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("name")), "{body}");
    let mut bad = entry("x");
    bad["format"] = json!("papyrus");
    let (status, body) = fed.post("370100", "/api/v1/catalog", bad).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("format")), "{body}");
    let raw = http
        .post(&url)
        .bearer_auth(node.node.admin_token())
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);

    // The issue's example is accepted and gets a code.
    let example: serde_json::Value = serde_json::from_str(
        r#"{"name": "企业登记基本信息", "classification": "3", "provider": "91350100M000100Y43",
     "summary": "Basic registration data of enterprises", "format": "database",
     "data_items": [{"name": "统一社会信用代码", "data_type": "C", "length": 18}],
     "share_type": "unconditional", "share_mode": "platform", "open_type": "closed",
     "update_cycle": "daily"}"#,
    )
    .unwrap();
    // Its provider (in Fuzhou, 350100) must be an organization registered at the
    // entry's node: the national node's subtree includes Fuzhou, Jinan's does not.
    let org =
        json!({"credit_code": "91350100M000100Y43", "name": "福州市某企业登记机关", "division": 350100});
    let (status, body) = fed.post("370100", "/api/v1/organizations", org.clone()).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("division")), "{body}");
    let (status, body) = fed.post("370100", "/api/v1/catalog", example.clone()).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("provider")), "{body}");
    assert_eq!(fed.post("100000", "/api/v1/organizations", org).await.0, 201);
    let (status, saved) = fed.post("100000", "/api/v1/catalog", example).await;
    assert_eq!(status, 201, "{saved}");
    let code = saved["code"].as_str().unwrap().to_string();
    assert!(code.starts_with("3/") && code.len() == 8, "{code}");
    assert_eq!(saved["status"], "draft");
    // Drafts stay local.
    let (_, drafts) = fed.get("100000", "/api/v1/catalog?status=draft").await;
    assert_eq!(drafts["returned"], 1);

    let publish = format!("/api/v1/catalog/{}/publish", encode(&code));
    assert_eq!(fed.post("100000", &publish, json!({})).await.0, 200);
    assert_eq!(fed.post("100000", &publish, json!({})).await.0, 409);
    assert_eq!(fed.post("100000", &publish, json!({"scope": "province"})).await.0, 409);
    assert_eq!(fed.get("100000", "/api/v1/catalog/3%2F999999").await.0, 404);
    assert_eq!(fed.post("100000", "/api/v1/catalog/3%2F999999/withdraw", json!({})).await.0, 404);
    let (status, got) = fed.get("100000", &format!("/api/v1/catalog/{}", encode(&code))).await;
    assert_eq!((status, got["version"].as_u64()), (200, Some(1)));
    // A city may not revoke anyone.
    let (status, body) = fed.post("370100", "/api/v1/nodes/370200/revoke", json!({"reason": "no"})).await;
    assert_eq!(status, 403, "{body}");
    fed.fed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_store_is_reported_as_unavailable_with_its_reason() {
    let fed = Fed::launch(FOUR_PROVINCES).await;
    let code = fed.publish("370100", "before the failure", "federation").await;
    fed.wait_seen("370000", "370100", &code, "published", 1).await;
    fed.fed.node(nid("370100")).unwrap().node.inject_store_failure();
    // The change that meets the failure, and every later one, is refused as a
    // local failure (503, with the reason), never as the caller's conflict.
    let (status, reply) = fed.post("370100", "/api/v1/catalog", entry_of("370100")).await;
    assert_eq!(status, 503, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("injected"), "{reply}");
    let (status, reply) = fed.post("370100", "/api/v1/catalog", entry_of("370100")).await;
    assert_eq!(status, 503, "{reply}");
    let (status, health) = fed.get("370100", "/healthz").await;
    assert_eq!((status, health["status"].as_str()), (503, Some("failed")), "{health}");
    assert!(health["error"].as_str().unwrap().contains("injected"), "{health}");
    // What was acknowledged before stays readable; the rest of the federation is unaffected.
    assert_eq!(fed.seen("370100", "370100", &code).await, Some(("published".into(), 1)));
    let other = fed.publish("370200", "elsewhere", "federation").await;
    fed.wait_seen("100000", "370200", &other, "published", 1).await;
    fed.fed.shutdown().await.unwrap();
}

/// A valid entry of node `id`'s organization (registered by `Fed::publish`).
fn entry_of(id: &str) -> serde_json::Value {
    let mut body = entry("after the failure");
    body["provider"] = json!(cascade_protocol::org::Organization::government_code(nid(id), 1));
    body
}

/// Copies a stopped node's folder, as a backup (or a disk that lost its last
/// writes) would hold it.
fn copy_folder(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_folder(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A stopped node's folder as it is now, to put back later (what a power cut
/// that lost every write since would leave).
struct OlderFolder {
    folder: std::path::PathBuf,
    copy: std::path::PathBuf,
}

fn keep_older_folder(fed: &Fed, id: &str) -> OlderFolder {
    let folder = fed.fed.data_dir(nid(id)).unwrap().to_path_buf();
    let copy = fed.dir.path().join(format!("{id}-older"));
    copy_folder(&folder, &copy);
    OlderFolder { folder, copy }
}

impl OlderFolder {
    /// Replaces the node's folder (the node stopped) with the older copy.
    fn put_back(self) {
        std::fs::remove_dir_all(&self.folder).unwrap();
        std::fs::rename(&self.copy, &self.folder).unwrap();
    }
}

/// The head of `origin`'s log in `scope` as node `at` holds it.
async fn head(fed: &Fed, at: &str, origin: &str, scope: &str) -> u64 {
    let (_, node) = fed.get(at, "/api/v1/node").await;
    let vv = node["version_vector"].as_array().cloned().unwrap_or_default();
    let wanted =
        |v: &&serde_json::Value| v["origin"].to_string().trim_matches('"') == origin && v["scope"] == scope;
    vv.iter().find(wanted).and_then(|v| v["seq"].as_u64()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_last_writes_learns_them_back_from_its_parent_and_never_forks() {
    let mut fed = Fed::launch(FOUR_PROVINCES).await;
    let kept = fed.publish("370100", "kept", "federation").await;
    fed.wait_seen("100000", "370100", &kept, "published", 1).await;
    // Jinan's folder as a power cut will leave it: without the writes below.
    fed.fed.stop(nid("370100")).await.unwrap();
    let older = keep_older_folder(&fed, "370100");
    fed.fed.start(nid("370100")).await.unwrap();
    eventually("370100 is recovered", || async {
        fed.get("370100", "/api/v1/node").await.1["recovering"].is_null()
    })
    .await;
    let mut lost = vec![fed.publish("370100", "lost 0", "province").await];
    for i in 1..4 {
        lost.push(fed.publish("370100", &format!("lost {i}"), "federation").await);
    }
    fed.wait_seen("370000", "370100", &lost[3], "published", 1).await;
    let fed_head = head(&fed, "370100", "370100", "federation").await;
    let province_head = head(&fed, "370100", "370100", "province").await;
    eventually("the parent holds all of Jinan's logs", || async {
        head(&fed, "370000", "370100", "federation").await == fed_head
            && head(&fed, "370000", "370100", "province").await == province_head
    })
    .await;

    // The power cut: the parent is away too, and Jinan's folder is the older one.
    fed.fed.stop(nid("370100")).await.unwrap();
    fed.fed.stop(nid("370000")).await.unwrap();
    older.put_back();
    fed.fed.start(nid("370100")).await.unwrap();
    let restored = head(&fed, "370100", "370100", "federation").await;
    assert!(restored < fed_head, "the folder lost writes: {restored} of {fed_head}");
    assert_eq!(fed.seen("370100", "370100", &lost[1]).await, None);
    // Until it has heard from its parent it originates nothing, and says so.
    let (_, node) = fed.get("370100", "/api/v1/node").await;
    assert_eq!(node["recovering"]["waiting_for"].to_string().trim_matches('"'), "370000", "{node}");
    let org = json!({"credit_code": cascade_protocol::org::Organization::government_code(nid("370100"), 2), "name": "济南市新局", "division": nid("370100")});
    let (status, body) = fed.post_once("370100", "/api/v1/organizations", org.clone()).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap_or("").contains("recovering"), "{body}");

    // The parent comes back: the lost writes return, checked like any delta.
    fed.fed.start(nid("370000")).await.unwrap();
    eventually("370100 holds its own logs again", || async {
        head(&fed, "370100", "370100", "federation").await == fed_head
            && head(&fed, "370100", "370100", "province").await == province_head
            && fed.get("370100", "/api/v1/node").await.1["recovering"].is_null()
    })
    .await;
    for code in &lost {
        assert_eq!(fed.seen("370100", "370100", code).await, Some(("published".into(), 1)), "{code}");
    }
    // It continues its logs where its neighbours hold them: no gap, no second
    // delta at a held position, no fork flagged anywhere.
    let (status, body) = fed.post("370100", "/api/v1/organizations", org).await;
    assert_eq!(status, 201, "{body}");
    let after = fed.publish("370100", "after", "federation").await;
    for at in ["370000", "100000", "370200", "110000"] {
        fed.wait_seen(at, "370100", &after, "published", 1).await;
    }
    let now = head(&fed, "370100", "370100", "federation").await;
    assert!(now > fed_head);
    for at in ["370000", "100000", "370200", "110000"] {
        assert_eq!(head(&fed, at, "370100", "federation").await, now, "{at}");
        assert_eq!(rejected(&fed, at, "fork").await, 0, "{at} saw a fork");
        assert_eq!(rejected(&fed, at, "broken_chain").await, 0, "{at} saw a broken chain");
    }
    fed.fed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_province_that_lost_writes_also_waits_for_a_child_which_alone_holds_its_province_log() {
    let mut fed = Fed::launch(FOUR_PROVINCES).await;
    let kept = fed.publish("370000", "kept", "federation").await;
    fed.wait_seen("370100", "370000", &kept, "published", 1).await;
    fed.fed.stop(nid("370000")).await.unwrap();
    let older = keep_older_folder(&fed, "370000");
    fed.fed.start(nid("370000")).await.unwrap();
    // Province-scoped: the national node never holds it, the cities do.
    let lost = fed.publish("370000", "lost", "province").await;
    fed.wait_seen("370100", "370000", &lost, "published", 1).await;
    fed.wait_seen("370200", "370000", &lost, "published", 1).await;
    let province_head = head(&fed, "370000", "370000", "province").await;

    // The power cut takes the province's last writes; its cities are away.
    for id in ["370000", "370100", "370200"] {
        fed.fed.stop(nid(id)).await.unwrap();
    }
    older.put_back();
    fed.fed.start(nid("370000")).await.unwrap();
    // Its parent answers, but cannot vouch for the province log: it keeps waiting.
    eventually("the national node greets it", || async {
        let (_, node) = fed.get("370000", "/api/v1/node").await;
        node["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["id"] == 100000 && p["state"] == "connected"))
    })
    .await;
    let (_, node) = fed.get("370000", "/api/v1/node").await;
    assert_eq!(node["recovering"]["waiting_for_child"], true, "{node}");
    let org = json!({"credit_code": cascade_protocol::org::Organization::government_code(nid("370000"), 2), "name": "山东省新局", "division": nid("370000")});
    let (status, body) = fed.post_once("370000", "/api/v1/organizations", org).await;
    assert_eq!(status, 503, "{body}");
    // A city comes back with the province log: the lost write returns, no fork.
    fed.fed.start(nid("370100")).await.unwrap();
    eventually("370000 holds its province log again", || async {
        head(&fed, "370000", "370000", "province").await == province_head
            && fed.get("370000", "/api/v1/node").await.1["recovering"].is_null()
    })
    .await;
    assert_eq!(fed.seen("370000", "370000", &lost).await, Some(("published".into(), 1)));
    let after = fed.publish("370000", "after", "province").await;
    fed.wait_seen("370100", "370000", &after, "published", 1).await;
    assert_eq!(rejected(&fed, "370100", "fork").await, 0);
    fed.fed.shutdown().await.unwrap();
}
