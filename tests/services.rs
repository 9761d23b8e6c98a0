//! End-to-end: service registrations (服务接口) travel federation-wide as signed
//! deltas of the provider's node, without the upstream, which stays there.

use cascade_tests::*;
use serde_json::{json, Value};

/// A service body for the entry `code` of `provider` at 370100.
fn service(code: &str, provider: &str) -> Value {
    json!({"name": "企业信息查询", "entry": {"origin": 370100, "code": code}, "provider": provider,
        "kind": "query", "endpoints": [{"method": "GET", "path": "/persons/{id}"}], "sensitivity": 2,
        "rate_limit_per_minute": 600, "upstream": "http://127.0.0.1:9000/api"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_is_seen_everywhere_without_its_upstream_and_its_retirement_propagates() {
    let fed = Fed::launch(FOUR_PROVINCES).await;
    let code = fed.publish("370100", "企业登记基本信息", "federation").await;
    let provider = cascade_protocol::org::Organization::government_code(nid("370100"), 1);

    // Field by field, a bad registration says what is wrong (422), and nothing is signed.
    let bad = |change: fn(&mut Value)| {
        let mut body = service(&code, &provider);
        change(&mut body);
        body
    };
    for (body, field) in [
        (bad(|b| b["sensitivity"] = json!(5)), "sensitivity"),
        (bad(|b| b["endpoints"][0]["path"] = json!("persons")), "endpoints[0].path"),
        (bad(|b| b["upstream"] = json!("ftp://x")), "upstream"),
        (bad(|b| b["entry"]["code"] = json!("3/999999")), "entry"),
        (bad(|b| b["kind"] = json!("delete")), "kind"),
        (bad(|b| b["extra"] = json!(1)), "extra"),
    ] {
        let (status, reply) = fed.post("370100", "/api/v1/services", body).await;
        assert_eq!((status, reply["field"].as_str()), (422, Some(field)), "{reply}");
    }

    let (status, created) = fed.post("370100", "/api/v1/services", service(&code, &provider)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("370100-"), "{id}");
    assert_eq!(created["upstream"], "http://127.0.0.1:9000/api");
    assert_eq!((created["version"].as_u64(), created["status"].as_str()), (Some(1), Some("active")));

    // Everywhere, signed by Jinan; the upstream never left it.
    for at in ["100000", "110000", "370200"] {
        eventually(&format!("{at} sees {id}"), || async {
            fed.get(at, &format!("/api/v1/services/{id}")).await.0 == 200
        })
        .await;
        let (_, seen) = fed.get(at, &format!("/api/v1/services/{id}")).await;
        assert_eq!(seen["name"], "企业信息查询");
        assert_eq!(seen["origin"], 370100);
        assert!(seen.get("upstream").is_none(), "{seen}");
        let (_, list) = fed.get(at, "/api/v1/services?origin=370100").await;
        assert_eq!(list["returned"], 1, "{list}");
    }
    let (_, here) = fed.get("370100", &format!("/api/v1/services/{id}")).await;
    assert_eq!(here["upstream"], "http://127.0.0.1:9000/api", "its own node shows an administrator");

    // An update is a new version everywhere; a consumer may read but not change it.
    let (url, token) = fed.url_token("370100");
    let mut changed = service(&code, &provider);
    changed["sensitivity"] = json!(3);
    let http = reqwest::Client::new();
    let put = http.put(format!("{url}/api/v1/services/{id}")).bearer_auth(&token).json(&changed);
    let updated: Value = put.send().await.unwrap().json().await.unwrap();
    assert_eq!(
        (updated["version"].as_u64(), updated["sensitivity"].as_u64()),
        (Some(2), Some(3)),
        "{updated}"
    );
    eventually("the national node sees version 2", || async {
        fed.get("100000", &format!("/api/v1/services/{id}")).await.1["version"] == 2
    })
    .await;
    let consumer = json!({"username": "wu", "password": "correct horse battery staple",
        "organization": provider, "roles": ["consumer"]});
    assert_eq!(fed.post("370100", "/api/v1/accounts", consumer).await.0, 201);
    let (_, session) = fed.login("370100", "wu", "correct horse battery staple").await;
    let wu = fed.with_token("370100", session["token"].as_str().unwrap());
    assert_eq!(wu.call("GET", &format!("/api/v1/services/{id}"), None).await.0, 200);
    let (status, _) = wu.call("POST", "/api/v1/services", Some(service(&code, &provider))).await;
    assert_eq!(status, 403);

    // Retiring propagates as a new version; a retired service cannot be changed.
    let (status, retired) = fed.post("370100", &format!("/api/v1/services/{id}/retire"), json!({})).await;
    assert_eq!((status, retired["status"].as_str()), (200, Some("retired")), "{retired}");
    eventually("the national node sees the retirement", || async {
        let (_, seen) = fed.get("100000", &format!("/api/v1/services/{id}")).await;
        seen["status"] == "retired" && seen["version"] == 3
    })
    .await;
    let (_, active) = fed.get("100000", "/api/v1/services?status=active").await;
    assert_eq!(active["returned"], 0, "{active}");
    let (status, _) = fed.post("370100", &format!("/api/v1/services/{id}/retire"), json!({})).await;
    assert_eq!(status, 409);

    // Another node's catalogers cannot register for Jinan's organization, and the
    // registration and retirement are audited where they happened.
    let (status, _) = fed.post("370200", "/api/v1/services", service(&code, &provider)).await;
    assert_eq!(status, 422, "Qingdao cannot serve Jinan's entry");
    let (_, audit) = fed.get("370100", "/api/v1/audit?kind=service.").await;
    let kinds: Vec<&str> =
        audit["records"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["service.register", "service.update", "service.retire"], "{audit}");
    let (_, denied) = fed.get("370100", "/api/v1/audit?kind=access.denied&actor=account:wu").await;
    assert_eq!(denied["returned"], 1, "{denied}");
    fed.fed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_service_requests_costs_a_tally_and_the_node_serves_on() {
    let fed = Fed::launch(TWO_NODES).await;
    let provider = fed.register_org("370000").await;
    let consumer = json!({"username": "zhou", "password": "correct horse battery staple",
        "organization": provider, "roles": ["consumer"]});
    assert_eq!(fed.post("370000", "/api/v1/accounts", consumer).await.0, 201);
    let (_, session) = fed.login("370000", "zhou", "correct horse battery staple").await;
    let token = session["token"].as_str().unwrap().to_string();
    let (url, _) = fed.url_token("370000");
    let (_, before) = fed.get("370000", "/api/v1/audit/verify").await;

    // 500 forbidden registrations and 1,000 listings, 32 at a time.
    let http = reqwest::Client::new();
    let mut flood = tokio::task::JoinSet::new();
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    for i in 0..1500 {
        let request = if i % 3 == 0 {
            http.post(format!("{url}/api/v1/services")).json(&service("3/000001", &provider))
        } else {
            http.get(format!("{url}/api/v1/services?limit=1000"))
        };
        let request = request.bearer_auth(&token);
        flood.spawn(async move { request.send().await.map(|r| r.status().as_u16()) });
        while flood.len() >= 32 {
            *statuses.entry(flood.join_next().await.unwrap().unwrap().expect("answer")).or_default() += 1;
        }
    }
    while let Some(done) = flood.join_next().await {
        *statuses.entry(done.unwrap().expect("answer")).or_default() += 1;
    }
    assert_eq!(statuses.get(&403), Some(&500), "{statuses:?}");
    assert!(statuses.keys().all(|s| [200, 403, 503].contains(s)), "{statuses:?}");

    // The refusals cost one tally record; the node answers and its chain verifies.
    let (_, after) = fed.get("370000", "/api/v1/audit/verify").await;
    let grown = after["records"].as_u64().unwrap() - before["records"].as_u64().unwrap();
    assert!(grown <= 3, "{grown} records for 500 refusals (a login and a tally): {after}");
    assert_eq!(after["ok"], true, "{after}");
    assert_eq!(fed.get("370000", "/healthz").await.0, 200);
    fed.fed.shutdown().await.unwrap();
}
