//! End-to-end: service calls through the gateway (服务对接) over real QUIC, to real
//! upstream HTTP servers started by the tests — across two provinces (four hops),
//! with grants checked at every hop and at the provider, rates limited, bodies
//! streamed both ways, and usage recorded at every node a call crosses.

use axum::body::Body;
use axum::extract::Path;
use axum::routing::{get, post};
use axum::Router;
use cascade_tests::*;
use serde_json::{json, Value};

const TWO_PROVINCES: &str = r#"
name = "two-provinces"
[[node]]
id = 100000
name = "中华人民共和国"
tier = "national"
[[node]]
id = 370000
name = "山东省"
tier = "provincial"
parent = 100000
[[node]]
id = 370100
name = "济南市"
tier = "municipal"
parent = 370000
[[node]]
id = 440000
name = "广东省"
tier = "provincial"
parent = 100000
[[node]]
id = 440100
name = "广州市"
tier = "municipal"
parent = 440000
"#;

const PASSWORD: &str = "correct horse battery staple";

/// An upstream HTTP server on 127.0.0.1: taxes by id, an echo that streams the
/// body back, and a person check that matches id 7 only.
async fn upstream() -> String {
    let app = Router::new()
        .route(
            "/taxes/{id}",
            get(|Path(id): Path<String>| async move { axum::Json(json!({"id": id, "tax": 1200})) }),
        )
        .route("/echo", post(|body: Body| async move { Body::from_stream(body.into_data_stream()) }))
        .route(
            "/persons/{id}",
            get(|Path(id): Path<u32>| async move {
                if id == 7 {
                    (axum::http::StatusCode::OK, "张三 110101199001011234")
                } else {
                    (axum::http::StatusCode::NOT_FOUND, "no such person")
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Publishes a conditional entry of Guangzhou's bureau and registers a service of
/// `kind` for it; returns the service id.
async fn offer(fed: &Fed, upstream: &str, kind: &str, endpoints: Value) -> String {
    let mut body = fed.entry_at("440100", "企业纳税信息").await;
    body["share_type"] = json!("conditional");
    body["share_condition"] = json!("仅用于税务稽查");
    let (_, saved) = fed.post("440100", "/api/v1/catalog", body).await;
    let code = saved["code"].as_str().unwrap().to_string();
    let path = format!("/api/v1/catalog/{}/publish", encode(&code));
    assert_eq!(fed.post("440100", &path, json!({"scope": "federation"})).await.0, 200);
    let provider = cascade_protocol::org::Organization::government_code(nid("440100"), 1);
    let service = json!({"name": "企业纳税查询", "entry": {"origin": 440100, "code": code},
        "provider": provider, "kind": kind, "endpoints": endpoints, "sensitivity": 3,
        "rate_limit_per_minute": 600, "upstream": upstream});
    let (status, created) = fed.post("440100", "/api/v1/services", service).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_string()
}

/// Jinan's consumer applies for `service`; Guangzhou approves with `approval`;
/// returns once Jinan holds the grant.
async fn granted(fed: &Fed, consumer: &As<'_>, org: &str, service: &str, approval: Value) -> String {
    eventually("Jinan sees the service", || async {
        fed.get("370100", &format!("/api/v1/services/{service}")).await.0 == 200
    })
    .await;
    let apply =
        json!({"resource": {"service": service}, "consumer": org, "purpose": "tax audit", "period_days": 30});
    let (status, a) = consumer.call("POST", "/api/v1/applications", Some(apply)).await;
    assert_eq!(status, 201, "{a}");
    let id = a["id"].as_str().unwrap().to_string();
    let guangzhou = fed.with_token("440100", &fed.url_token("440100").1);
    eventually("the application waits at Guangzhou", || async {
        guangzhou.call("GET", &format!("/api/v1/applications/{id}"), None).await.1["state"] == "pending"
    })
    .await;
    let (status, approved) =
        guangzhou.call("POST", &format!("/api/v1/applications/{id}/approve"), Some(approval)).await;
    assert_eq!(status, 200, "{approved}");
    eventually("Jinan holds the grant", || async {
        consumer.call("GET", &format!("/api/v1/applications/{id}"), None).await.1["state"] == "granted"
    })
    .await;
    consumer.call("GET", &format!("/api/v1/applications/{id}"), None).await.1["grant"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Sends a raw request through Jinan's gateway as `token`.
async fn call(fed: &Fed, token: &str, method: &str, path: &str, body: Vec<u8>) -> reqwest::Response {
    let (url, _) = fed.url_token("370100");
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    reqwest::Client::new()
        .request(method, format!("{url}{path}"))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_consumer_calls_across_two_provinces_until_its_grant_is_revoked() {
    let mut fed = Fed::launch(TWO_PROVINCES).await;
    let upstream = upstream().await;
    let endpoints = json!([{"method": "GET", "path": "/taxes/{id}"}, {"method": "POST", "path": "/echo"},
        {"method": "GET", "path": "/persons/{id}"}]);
    let service = offer(&fed, &upstream, "query", endpoints).await;
    let org = fed.register_org("370100").await;
    let body = json!({"username": "wang", "password": PASSWORD, "organization": org, "roles": ["consumer"]});
    assert_eq!(fed.post("370100", "/api/v1/accounts", body).await.0, 201);
    let (_, session) = fed.login("370100", "wang", PASSWORD).await;
    let token = session["token"].as_str().unwrap().to_string();
    let wang = fed.with_token("370100", &token);

    // No grant yet: 403 saying so.
    let refused = call(&fed, &token, "GET", &format!("/gateway/{service}/taxes/42"), vec![]).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("no grant"));

    let narrow =
        json!({"endpoints": [{"method": "GET", "path": "/taxes/{id}"}, {"method": "POST", "path": "/echo"}]});
    let grant = granted(&fed, &wang, &org, &service, narrow).await;

    // Four hops there and back: the upstream's answer, as it gave it.
    let ok = call(&fed, &token, "GET", &format!("/gateway/{service}/taxes/42?year=2025"), vec![]).await;
    assert_eq!(ok.status(), 200);
    let answer: Value = ok.json().await.unwrap();
    assert_eq!(answer, json!({"id": "42", "tax": 1200}));
    // An endpoint outside the grant: 403 at Jinan.
    let outside = call(&fed, &token, "GET", &format!("/gateway/{service}/persons/7"), vec![]).await;
    assert_eq!(outside.status(), 403);
    // A body streams there and back, through checkpoints (3 MiB and a bit).
    let payload: Vec<u8> = (0..3 * 1024 * 1024 + 12_345).map(|i| (i % 251) as u8).collect();
    let echoed = call(&fed, &token, "POST", &format!("/gateway/{service}/echo"), payload.clone()).await;
    assert_eq!(echoed.status(), 200);
    assert!(echoed.bytes().await.unwrap() == payload, "the body came back intact");

    // Every node on the way kept a record of the call: consumer, three relays, provider.
    for (at, role) in [
        ("370100", "consumer"),
        ("370000", "relay"),
        ("100000", "relay"),
        ("440000", "relay"),
        ("440100", "provider"),
    ] {
        let (_, usage) = fed.get(at, &format!("/api/v1/usage?service={service}")).await;
        let records = usage["usage"].as_array().unwrap();
        let echo =
            records.iter().find(|r| r["endpoint"] == "POST /echo").unwrap_or_else(|| panic!("{at}: {usage}"));
        assert_eq!((echo["role"].as_str(), echo["status"].as_u64()), (Some(role), Some(200)), "{at}: {echo}");
        assert_eq!(echo["bytes_in"].as_u64(), Some(payload.len() as u64), "{at}: {echo}");
        assert_eq!(echo["bytes_out"].as_u64(), Some(payload.len() as u64), "{at}: {echo}");
        assert!(echo["response_out_ms"].as_u64() >= echo["request_in_ms"].as_u64(), "{at}: {echo}");
    }
    let metrics = scrape(&fed, "440000").await;
    assert!(
        sample(&metrics, "cascade_calls_total", &[("role", "relay"), ("status", "200")]).unwrap_or(0.0)
            >= 2.0
    );

    // Revoked at Guangzhou: the very next call is refused there (403), before
    // Jinan has even heard of the revocation.
    let guangzhou = fed.with_token("440100", &fed.url_token("440100").1);
    let (status, _) = guangzhou
        .call("POST", &format!("/api/v1/grants/{grant}/revoke"), Some(json!({"reason": "稽查结束"})))
        .await;
    assert_eq!(status, 200);
    let after = call(&fed, &token, "GET", &format!("/gateway/{service}/taxes/42"), vec![]).await;
    assert_eq!(after.status(), 403);
    assert!(after.text().await.unwrap().contains("revoked"));

    // The provider's node down: the hop before it says it could not forward (504).
    let second = granted(&fed, &wang, &org, &service, json!({})).await;
    assert!(second != grant);
    fed.fed.stop(nid("440100")).await.unwrap();
    let unreachable = call(&fed, &token, "GET", &format!("/gateway/{service}/taxes/1"), vec![]).await;
    assert_eq!(unreachable.status(), 504);
    let why = unreachable.text().await.unwrap();
    assert!(why.contains("440000 could not forward the call"), "{why}");
    fed.fed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rates_are_limited_upstreams_down_are_502_and_verify_services_answer_only_the_match() {
    let fed = Fed::launch(TWO_PROVINCES).await;
    let upstream = upstream().await;
    let org = fed.register_org("370100").await;
    let admin = fed.url_token("370100").1;
    let jinan = fed.with_token("370100", &admin);
    // The bootstrap administrator holds no organization: it cannot call.
    let query = offer(&fed, &upstream, "query", json!([{"method": "GET", "path": "/taxes/{id}"}])).await;
    let body = json!({"username": "zhao", "password": PASSWORD, "organization": org, "roles": ["consumer"]});
    assert_eq!(fed.post("370100", "/api/v1/accounts", body).await.0, 201);
    let (_, session) = fed.login("370100", "zhao", PASSWORD).await;
    let token = session["token"].as_str().unwrap().to_string();
    let zhao = fed.with_token("370100", &token);
    granted(&fed, &zhao, &org, &query, json!({"rate_limit_per_minute": 2})).await;
    let path = format!("/gateway/{query}/taxes/1");
    assert_eq!(call(&fed, &admin, "GET", &path, vec![]).await.status(), 403, "no organization, no grant");
    assert_eq!(call(&fed, &token, "GET", &path, vec![]).await.status(), 200);
    assert_eq!(call(&fed, &token, "GET", &path, vec![]).await.status(), 200);
    let limited = call(&fed, &token, "GET", &path, vec![]).await;
    assert_eq!(limited.status(), 429);
    let wait: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");

    // An upstream that is down: 502 naming it.
    let down =
        offer(&fed, "http://127.0.0.1:9", "query", json!([{"method": "GET", "path": "/taxes/{id}"}])).await;
    granted(&fed, &zhao, &org, &down, json!({})).await;
    let bad = call(&fed, &token, "GET", &format!("/gateway/{down}/taxes/1"), vec![]).await;
    assert_eq!(bad.status(), 502);
    assert!(bad.text().await.unwrap().contains("upstream"));

    // A check of facts (核验): the consumer learns whether they match, not the data.
    let verify = offer(&fed, &upstream, "verify", json!([{"method": "GET", "path": "/persons/{id}"}])).await;
    granted(&fed, &zhao, &org, &verify, json!({})).await;
    let yes = call(&fed, &token, "GET", &format!("/gateway/{verify}/persons/7"), vec![]).await;
    assert_eq!(yes.status(), 200);
    assert_eq!(yes.text().await.unwrap(), r#"{"match":true}"#);
    let no = call(&fed, &token, "GET", &format!("/gateway/{verify}/persons/8"), vec![]).await;
    assert_eq!(no.text().await.unwrap(), r#"{"match":false}"#);
    let (_, usage) = jinan.call("GET", "/api/v1/usage", None).await;
    assert!(usage["returned"].as_u64().unwrap() >= 6, "{usage}");
    fed.fed.shutdown().await.unwrap();
}
