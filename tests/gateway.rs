//! End-to-end: service calls through the gateway (服务对接) over real QUIC, to real
//! upstream HTTP servers started by the tests — across two provinces (four hops),
//! with grants checked at every hop and at the provider, rates limited, bodies
//! streamed both ways, and usage recorded at every node a call crosses.

use axum::body::Body;
use axum::extract::Path;
use axum::routing::{get, post};
use axum::Router;
use cascade_protocol::call::{CallHead, ReplyHead, MAX_CALL_HEAD_BYTES};
use cascade_protocol::{Delta, DeltaBody, Frame, GENESIS_HASH};
use cascade_tests::*;
use cascade_transport::{read_frame, read_message, write_frame, write_message};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

const PASSWORD: &str = "correct horse battery staple";
/// The first byte of a call stream.
const CALL_STREAM: u8 = cascade_protocol::dataset::StreamKind::Call as u8;

/// An upstream HTTP server on 127.0.0.1: taxes by id, an echo that streams the
/// body back, a sink that answers with the length once it read the whole body,
/// and a person check that matches id 7 only.
async fn upstream() -> String {
    let app = Router::new()
        .route(
            "/taxes/{id}",
            get(|Path(id): Path<String>| async move { axum::Json(json!({"id": id, "tax": 1200})) }),
        )
        .route("/echo", post(|body: Body| async move { Body::from_stream(body.into_data_stream()) }))
        .route(
            "/sink",
            post(|body: Body| async move {
                let mut n = 0;
                let mut stream = body.into_data_stream();
                while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
                    n += chunk.map_err(|e| (axum::http::StatusCode::BAD_REQUEST, e.to_string()))?.len();
                }
                Ok::<_, (axum::http::StatusCode, String)>(n.to_string())
            }),
        )
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
    let refused =
        call_at(&fed, "370100", &token, "GET", &format!("/gateway/{service}/taxes/42"), vec![]).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("no grant"));

    let narrow =
        json!({"endpoints": [{"method": "GET", "path": "/taxes/{id}"}, {"method": "POST", "path": "/echo"}]});
    let grant = granted(&fed, &wang, &org, &service, narrow).await;

    // Four hops there and back: the upstream's answer, as it gave it.
    let ok =
        call_at(&fed, "370100", &token, "GET", &format!("/gateway/{service}/taxes/42?year=2025"), vec![])
            .await;
    assert_eq!(ok.status(), 200);
    let answer: Value = ok.json().await.unwrap();
    assert_eq!(answer, json!({"id": "42", "tax": 1200}));
    // An endpoint outside the grant: 403 at Jinan.
    let outside =
        call_at(&fed, "370100", &token, "GET", &format!("/gateway/{service}/persons/7"), vec![]).await;
    assert_eq!(outside.status(), 403);
    // A body streams there and back, frame by frame (3 MiB and a bit).
    let payload: Vec<u8> = (0..3 * 1024 * 1024 + 12_345).map(|i| (i % 251) as u8).collect();
    let echoed =
        call_at(&fed, "370100", &token, "POST", &format!("/gateway/{service}/echo"), payload.clone()).await;
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
        // The ends count body bytes; a relay counts what crossed it (framing too).
        let n = payload.len() as u64;
        let counted = |field: &str| echo[field].as_u64().unwrap();
        if role == "relay" {
            assert!((n..n + n / 50).contains(&counted("bytes_in")), "{at}: {echo}");
            assert!((n..n + n / 50).contains(&counted("bytes_out")), "{at}: {echo}");
        } else {
            assert_eq!((counted("bytes_in"), counted("bytes_out")), (n, n), "{at}: {echo}");
        }
        assert!(echo["response_out_ms"].as_u64() >= echo["request_in_ms"].as_u64(), "{at}: {echo}");
    }
    let metrics = scrape(&fed, "440000").await;
    let relayed = [("role", "relay"), ("service", service.as_str()), ("status", "200")];
    assert!(sample(&metrics, "cascade_calls_total", &relayed).unwrap_or(0.0) >= 2.0);
    let timed = |s: &&prometheus_parse::Sample| {
        s.metric == "cascade_call_duration_seconds" && s.labels.get("role") == Some("relay")
    };
    assert!(metrics.samples.iter().any(|s| timed(&s)), "a latency histogram per role");

    // Revoked at Guangzhou: the very next call is refused there (403), before
    // Jinan has even heard of the revocation.
    let guangzhou = fed.with_token("440100", &fed.url_token("440100").1);
    let (status, _) = guangzhou
        .call("POST", &format!("/api/v1/grants/{grant}/revoke"), Some(json!({"reason": "稽查结束"})))
        .await;
    assert_eq!(status, 200);
    let after = call_at(&fed, "370100", &token, "GET", &format!("/gateway/{service}/taxes/42"), vec![]).await;
    assert_eq!(after.status(), 403);
    assert!(after.text().await.unwrap().contains("revoked"));

    // The provider's node down: the hop before it says it could not forward (504).
    let second = granted(&fed, &wang, &org, &service, json!({})).await;
    assert!(second != grant);
    fed.fed.stop(nid("440100")).await.unwrap();
    let unreachable =
        call_at(&fed, "370100", &token, "GET", &format!("/gateway/{service}/taxes/1"), vec![]).await;
    assert_eq!(unreachable.status(), 504);
    let why = unreachable.text().await.unwrap();
    assert!(why.contains("440000 could not forward the call"), "{why}");
    // The hub's operator sees every call through the hub, filtered, page by page;
    // the records outlive a restart of the hub.
    fed.fed.stop(nid("370000")).await.unwrap();
    fed.fed.start(nid("370000")).await.unwrap();
    let mut seen = Vec::new();
    let mut next = String::new();
    loop {
        let page = format!("/api/v1/usage?role=relay&service={service}&limit=1{next}");
        let (status, usage) = fed.get("370000", &page).await;
        assert_eq!(status, 200, "{usage}");
        seen.extend(
            usage["usage"].as_array().unwrap().iter().map(|r| r["call"].as_str().unwrap().to_string()),
        );
        match usage["next"].as_str() {
            Some(cursor) => next = format!("&before={cursor}"),
            None => break,
        }
    }
    let (_, all) = fed.get("370000", &format!("/api/v1/usage?service={service}")).await;
    assert_eq!(seen.len(), all["returned"].as_u64().unwrap() as usize, "every record once: {seen:?} {all}");
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] != w[1]), "{seen:?}");
    let (_, none) = fed.get("370000", "/api/v1/usage?role=provider").await;
    assert_eq!(none["returned"], 0, "the hub provided nothing: {none}");
    assert_eq!(fed.get("370000", "/api/v1/usage?role=owner").await.0, 422);
    assert_eq!(fed.get("370000", "/api/v1/usage?before=yesterday").await.0, 422);
    // The consumer's own people see their organization's calls only.
    let (_, own) = fed.with_token("370100", &token).call("GET", "/api/v1/usage", None).await;
    assert!(own["usage"].as_array().unwrap().iter().all(|r| r["consumer"] == org.as_str()), "{own}");

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
    assert_eq!(
        call_at(&fed, "370100", &admin, "GET", &path, vec![]).await.status(),
        403,
        "no organization, no grant"
    );
    assert_eq!(call_at(&fed, "370100", &token, "GET", &path, vec![]).await.status(), 200);
    assert_eq!(call_at(&fed, "370100", &token, "GET", &path, vec![]).await.status(), 200);
    let limited = call_at(&fed, "370100", &token, "GET", &path, vec![]).await;
    assert_eq!(limited.status(), 429);
    let wait: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");

    // A grant that expires: refused once it has (no message needed), and recorded.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let brief = offer(&fed, &upstream, "query", json!([{"method": "GET", "path": "/taxes/{id}"}])).await;
    granted(&fed, &zhao, &org, &brief, json!({"expires_at": now + 2})).await;
    let path = format!("/gateway/{brief}/taxes/1");
    eventually("the grant expires", || async {
        let answer = call_at(&fed, "370100", &token, "GET", &path, vec![]).await;
        answer.status() == 403 && answer.text().await.unwrap().contains("expired")
    })
    .await;

    // An upstream that is down: 502 naming it.
    let down =
        offer(&fed, "http://127.0.0.1:9", "query", json!([{"method": "GET", "path": "/taxes/{id}"}])).await;
    granted(&fed, &zhao, &org, &down, json!({})).await;
    let bad = call_at(&fed, "370100", &token, "GET", &format!("/gateway/{down}/taxes/1"), vec![]).await;
    assert_eq!(bad.status(), 502);
    assert!(bad.text().await.unwrap().contains("upstream"));

    // A check of facts (核验): the consumer learns whether they match, not the data.
    let verify = offer(&fed, &upstream, "verify", json!([{"method": "GET", "path": "/persons/{id}"}])).await;
    granted(&fed, &zhao, &org, &verify, json!({})).await;
    let yes = call_at(&fed, "370100", &token, "GET", &format!("/gateway/{verify}/persons/7"), vec![]).await;
    assert_eq!(yes.status(), 200);
    assert_eq!(yes.text().await.unwrap(), r#"{"match":true}"#);
    let no = call_at(&fed, "370100", &token, "GET", &format!("/gateway/{verify}/persons/8"), vec![]).await;
    assert_eq!(no.text().await.unwrap(), r#"{"match":false}"#);
    let (_, usage) = jinan.call("GET", "/api/v1/usage", None).await;
    assert!(usage["returned"].as_u64().unwrap() >= 6, "{usage}");
    fed.fed.shutdown().await.unwrap();
}

/// What the hub double does to the next call stream Jinan opens through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Meddle {
    /// Passes it on verbatim.
    Nothing,
    /// Changes the path in the signed envelope.
    Envelope,
    /// Flips a byte of the request body.
    RequestBody,
    /// Flips a byte of the response body.
    ResponseBody,
}

/// Copies call frames from `recv` to `send`, flipping one body byte if `flip`.
async fn pipe(mut recv: quinn::RecvStream, mut send: quinn::SendStream, flip: bool) {
    use cascade_protocol::call::CallFrame;
    use cascade_transport::{read_call_frame, write_call_frame};
    let mut flipped = !flip;
    while let Ok(Some(mut frame)) = read_call_frame(&mut recv).await {
        if let (false, CallFrame::Data { bytes, .. }) = (flipped, &mut frame) {
            let mut altered = bytes.to_vec();
            altered[0] ^= 1;
            *bytes = altered.into();
            flipped = true;
        }
        if write_call_frame(&mut send, frame).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meddling_relay_and_forged_or_borrowed_grants_are_refused_and_recorded() {
    // Jinan calls Beijing through the Shandong hub, a test double that relays the
    // logs and routed messages honestly and meddles with calls on demand.
    let mut fed = Fed::prepare(FOUR_PROVINCES);
    fed.fed.start(nid("100000")).await.unwrap();
    fed.fed.start(nid("110000")).await.unwrap();
    let (hub_creds, root) = creds_of(&fed, "370000");
    let hub_key = hub_creds.signing_key().unwrap();
    let hub = endpoint(&hub_creds, &root);
    fed.fed.set_parent_addr(nid("370100"), hub.local_addr().unwrap()).unwrap();
    let national = fed.fed.node(nid("100000")).unwrap().node.quic_addr();
    let up = hub.connect(national, nid("100000")).await.unwrap();
    let up_connection = up.connection.clone();
    fed.fed.start(nid("370100")).await.unwrap();
    let down = hub.admit(hub.accept().await.unwrap(), |_| Ok(())).await.unwrap();
    let down_connection = down.connection.clone();
    let (mut up_send, mut up_recv, mut down_send, mut down_recv) = (up.send, up.recv, down.send, down.recv);
    let log = cascade_protocol::LogId { origin: nid("370000"), scope: cascade_protocol::Scope::Federation };
    let join = Arc::new(
        Delta::sign(&hub_key, log, 1, GENESIS_HASH, &DeltaBody::Join { chain: hub_creds.chain.clone() })
            .unwrap(),
    );
    write_frame(&mut up_send, &Frame::Hello { vv: vec![] }).await.unwrap();
    write_frame(&mut up_send, &Frame::Deltas(vec![join])).await.unwrap();
    write_frame(&mut down_send, &Frame::Hello { vv: vec![] }).await.unwrap();
    // The sync streams, relayed verbatim both ways (Hellos aside: each end had one).
    tokio::spawn(async move {
        while let Ok(Some((frame, _))) = read_frame(&mut down_recv).await {
            if !matches!(frame, Frame::Hello { .. }) && write_frame(&mut up_send, &frame).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        while let Ok(Some((frame, _))) = read_frame(&mut up_recv).await {
            if !matches!(frame, Frame::Hello { .. }) && write_frame(&mut down_send, &frame).await.is_err() {
                return;
            }
        }
    });
    // Call streams Jinan opens: passed up, meddled with as told.
    let meddle = Arc::new(Mutex::new(Meddle::Nothing));
    let told = meddle.clone();
    let recorded: Arc<Mutex<Option<CallHead>>> = Arc::default();
    let recorder = recorded.clone();
    let to_national = up_connection.clone();
    tokio::spawn(async move {
        while let Ok((mut back, mut from_jinan)) = down_connection.accept_bi().await {
            let how = *told.lock().unwrap();
            let (mut onward, from_national) = to_national.open_bi().await.unwrap();
            // Every stream names its kind first: a call, here.
            let mut kind = [0u8; 1];
            if from_jinan.read_exact(&mut kind).await.is_err() {
                continue;
            }
            onward.write_all(&kind).await.unwrap();
            let Ok(Some((mut head, _))) =
                read_message::<CallHead>(&mut from_jinan, MAX_CALL_HEAD_BYTES).await
            else {
                continue;
            };
            if how == Meddle::Envelope {
                head.path = "/taxes/43".into();
            } else {
                *recorder.lock().unwrap() = Some(head.clone());
            }
            write_message(&mut onward, &head).await.unwrap();
            tokio::spawn(pipe(from_jinan, onward, how == Meddle::RequestBody));
            tokio::spawn(async move {
                let mut from_national = from_national;
                if let Ok(Some((reply, _))) =
                    read_message::<ReplyHead>(&mut from_national, MAX_CALL_HEAD_BYTES).await
                {
                    let _ = write_message(&mut back, &reply).await;
                    pipe(from_national, back, how == Meddle::ResponseBody).await;
                }
            });
        }
    });

    // Beijing offers a service; Jinan's consumer is granted it.
    let upstream = upstream().await;
    let mut entry = fed.entry_at("110000", "北京企业纳税信息").await;
    entry["share_type"] = json!("unconditional");
    let (_, saved) = fed.post("110000", "/api/v1/catalog", entry).await;
    let code = saved["code"].as_str().unwrap().to_string();
    assert_eq!(
        fed.post(
            "110000",
            &format!("/api/v1/catalog/{}/publish", encode(&code)),
            json!({"scope": "federation"})
        )
        .await
        .0,
        200
    );
    let provider = cascade_protocol::org::Organization::government_code(nid("110000"), 1);
    let service = json!({"name": "纳税查询", "entry": {"origin": 110000, "code": code}, "provider": provider,
        "kind": "query", "endpoints": [{"method": "GET", "path": "/taxes/{id}"}, {"method": "POST", "path": "/echo"}],
        "sensitivity": 2, "rate_limit_per_minute": 600, "upstream": upstream});
    let (_, created) = fed.post("110000", "/api/v1/services", service).await;
    let service = created["id"].as_str().unwrap().to_string();
    let org = fed.register_org("370100").await;
    let body = json!({"username": "sun", "password": PASSWORD, "organization": org, "roles": ["consumer"]});
    assert_eq!(fed.post("370100", "/api/v1/accounts", body).await.0, 201);
    let (_, session) = fed.login("370100", "sun", PASSWORD).await;
    let token = session["token"].as_str().unwrap().to_string();
    let sun = fed.with_token("370100", &token);
    eventually("Jinan sees the service", || async {
        fed.get("370100", &format!("/api/v1/services/{service}")).await.0 == 200
    })
    .await;
    let apply =
        json!({"resource": {"service": service}, "consumer": org, "purpose": "audit", "period_days": 1});
    let (_, a) = sun.call("POST", "/api/v1/applications", Some(apply)).await;
    let id = a["id"].as_str().unwrap().to_string();
    eventually("granted at once", || async {
        sun.call("GET", &format!("/api/v1/applications/{id}"), None).await.1["state"] == "granted"
    })
    .await;
    let taxes = format!("/gateway/{service}/taxes/42");
    assert_eq!(
        call_at(&fed, "370100", &token, "GET", &taxes, vec![]).await.status(),
        200,
        "relayed honestly"
    );

    // 1. The envelope altered: passed on by the next hop (only the provider can
    //    check the consumer's signature), refused by the provider as tampered (403).
    *meddle.lock().unwrap() = Meddle::Envelope;
    let refused = call_at(&fed, "370100", &token, "GET", &taxes, vec![]).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("tampered"));
    // 2. The request body altered: the provider's node catches it in the frame,
    //    before the byte reaches the upstream.
    *meddle.lock().unwrap() = Meddle::RequestBody;
    let payload = vec![7u8; 600_000];
    let echo = format!("/gateway/{service}/echo");
    //    (An upstream that answers before it has read the body has said 200 by then:
    //    the answer is cut instead.)
    let altered = call_at(&fed, "370100", &token, "POST", &echo, payload.clone()).await;
    if altered.status() == 502 {
        assert!(altered.text().await.unwrap().contains("altered"));
    } else {
        assert!(altered.bytes().await.is_err(), "the answer is cut");
    }
    // 3. The response body altered: Jinan's node catches it and cuts the answer.
    *meddle.lock().unwrap() = Meddle::ResponseBody;
    let cut = call_at(&fed, "370100", &token, "POST", &echo, payload.clone()).await;
    assert!(cut.bytes().await.is_err(), "the caller never gets altered bytes as if whole");
    *meddle.lock().unwrap() = Meddle::Nothing;

    // 4. The hub replays a call it relayed: the provider served that call already.
    let replayed = recorded.lock().unwrap().clone().expect("a call was relayed");
    let (mut send, mut recv) = up_connection.open_bi().await.unwrap();
    send.write_all(&[CALL_STREAM]).await.unwrap();
    write_message(&mut send, &replayed).await.unwrap();
    let (reply, _) = read_message::<ReplyHead>(&mut recv, MAX_CALL_HEAD_BYTES).await.unwrap().unwrap();
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(reply.error.as_deref().unwrap_or("").contains("replay"), "{reply:?}");

    // 5. The hub calls in its own name with a grant it forged, and with Jinan's grant.
    let (_, held) = sun.call("GET", "/api/v1/grants?box=held", None).await;
    let genuine = grant_of(&held["grants"][0]);
    let forged = cascade_protocol::workflow::Grant {
        grantee_node: nid("370000"),
        signature: vec![],
        ..genuine.clone()
    }
    .sign(&hub_key)
    .unwrap();
    for (grant, why) in [(forged, "is not signed by 110000"), (genuine, "does not cover this call")] {
        let head = CallHead {
            id: cascade_protocol::call::CallId { node: nid("370000"), started_ms: 1, n: 1 },
            service: service.clone(),
            provider_node: nid("110000"),
            method: "GET".into(),
            path: "/taxes/42".into(),
            headers: vec![],
            caller: "hub".into(),
            grant,
            signature: vec![],
        }
        .sign(&hub_key)
        .unwrap();
        let (mut send, mut recv) = up_connection.open_bi().await.unwrap();
        send.write_all(&[CALL_STREAM]).await.unwrap();
        write_message(&mut send, &head).await.unwrap();
        let (reply, _) = read_message::<ReplyHead>(&mut recv, MAX_CALL_HEAD_BYTES).await.unwrap().unwrap();
        assert_eq!(reply.status, 403, "{reply:?}");
        assert!(reply.error.as_deref().unwrap_or("").contains(why), "{reply:?}");
    }

    // Each refusal is on record where it was decided, and nothing reached the upstream twice.
    let (_, national) = fed.get("100000", "/api/v1/usage").await;
    let errors: Vec<&str> =
        national["usage"].as_array().unwrap().iter().filter_map(|r| r["error"].as_str()).collect();
    assert!(errors.iter().any(|e| e.contains("tampered")), "{errors:?}");
    assert_eq!(errors.iter().filter(|e| e.contains("grant")).count(), 2, "{errors:?}");
    let (_, beijing) = fed.get("110000", "/api/v1/usage").await;
    let provider_errors: Vec<&str> =
        beijing["usage"].as_array().unwrap().iter().filter_map(|r| r["error"].as_str()).collect();
    assert!(provider_errors.iter().any(|e| e.contains("tampered")), "{provider_errors:?}");
    let (_, jinan) = fed.get("370100", "/api/v1/usage").await;
    let consumer_errors: Vec<&str> =
        jinan["usage"].as_array().unwrap().iter().filter_map(|r| r["error"].as_str()).collect();
    assert!(consumer_errors.iter().any(|e| e.contains("tampered")), "the cut answer: {consumer_errors:?}");
    fed.fed.shutdown().await.unwrap();
}

/// Sends a raw request through node `at`'s gateway as `token`.
async fn call_at(
    fed: &Fed,
    at: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    let (url, _) = fed.url_token(at);
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    reqwest::Client::new()
        .request(method, format!("{url}{path}"))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// A body of `n` bytes that does not declare its length (chunked).
fn undeclared(n: usize) -> reqwest::Body {
    let chunks = (0..n.div_ceil(64 * 1024)).map(move |i| {
        let len = (64 * 1024).min(n - i * 64 * 1024);
        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![5u8; len]))
    });
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_a_cap_are_refused_413_and_a_stalled_body_never_reaches_the_upstream_as_whole() {
    // Jinan's consumers send at most 1 MiB, and Jinan waits 1 s for the next
    // bytes of a body; Guangzhou takes at most 2 MiB; the Guangdong hub's
    // consumers send up to the default (4 GiB).
    let mut fed = Fed::prepare(TWO_PROVINCES);
    let gateway = |max_body_bytes, idle_timeout_secs| cascade_runtime::GatewayConfig {
        max_body_bytes,
        idle_timeout_secs,
    };
    fed.fed.set_gateway(nid("370100"), gateway(1 << 20, 1)).unwrap();
    fed.fed.set_gateway(nid("440100"), gateway(2 << 20, 30)).unwrap();
    let ids: Vec<_> = fed.fed.topology().nodes.iter().map(|n| n.id).collect();
    for id in ids {
        fed.fed.start(id).await.unwrap();
    }
    let upstream = upstream().await;
    let service = offer(&fed, &upstream, "query", json!([{"method": "POST", "path": "/sink"}])).await;
    let mut tokens = Vec::new();
    for at in ["370100", "440000"] {
        let org = fed.register_org(at).await;
        let body =
            json!({"username": "zhou", "password": PASSWORD, "organization": org, "roles": ["consumer"]});
        assert_eq!(fed.post(at, "/api/v1/accounts", body).await.0, 201);
        let (_, session) = fed.login(at, "zhou", PASSWORD).await;
        let token = session["token"].as_str().unwrap().to_string();
        granted(&fed, &fed.with_token(at, &token), &org, &service, json!({})).await;
        tokens.push((fed.url_token(at).0, token));
    }
    let http = reqwest::Client::new();
    let send = |(url, token): &(String, String), body: reqwest::Body| {
        http.post(format!("{url}/gateway/{service}/sink")).bearer_auth(token).body(body).send()
    };

    // Under both caps: taken whole.
    let small = send(&tokens[0], undeclared(512 << 10)).await.unwrap();
    assert_eq!(small.status(), 200);
    assert_eq!(small.text().await.unwrap(), (512 << 10).to_string());
    // Declared over Jinan's cap: 413 on the head alone, before any body is sent.
    let (url, token) = &tokens[0];
    let mut raw = tokio::net::TcpStream::connect(url.trim_start_matches("http://")).await.unwrap();
    let head = format!(
        "POST /gateway/{service}/sink HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-length: {}\r\n\r\n",
        3 << 20
    );
    tokio::io::AsyncWriteExt::write_all(&mut raw, head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut raw, &mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 413");
    // Undeclared, over Jinan's cap (under Guangzhou's): cut at Jinan, 413.
    let over_mine = send(&tokens[0], undeclared(3 << 19)).await.unwrap();
    assert_eq!(over_mine.status(), 413);
    assert!(over_mine.text().await.unwrap().contains("at most 1048576 bytes"));
    // From the Guangdong hub, over Guangzhou's cap: refused there, 413, on record.
    let over_theirs = send(&tokens[1], undeclared(3 << 20)).await.unwrap();
    assert_eq!(over_theirs.status(), 413);
    assert!(over_theirs.text().await.unwrap().contains("this provider takes call bodies of at most 2097152"));
    let (_, usage) = fed.get("440100", "/api/v1/usage?status=413").await;
    assert_eq!(usage["returned"], 1, "{usage}");
    // A caller that stops sending half way: cut after Jinan's idle second, so the
    // upstream never takes the half for the whole body (it would answer 200).
    let (give_up, gone) = tokio::sync::oneshot::channel::<()>();
    let half = futures_util::StreamExt::chain(
        futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(vec![1u8; 100_000]))]),
        futures_util::stream::once(async move {
            let _ = gone.await;
            Err(std::io::Error::other("the caller gave up"))
        }),
    );
    let stalled = send(&tokens[0], reqwest::Body::wrap_stream(half)).await.unwrap();
    assert_eq!(stalled.status(), 502);
    assert!(stalled.text().await.unwrap().contains("broke off"));
    let _ = give_up.send(());
    fed.fed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forbidden_applications_listings_and_ungranted_calls_costs_a_tally_and_the_node_serves_on()
{
    let fed = Fed::launch(TWO_PROVINCES).await;
    let upstream = upstream().await;
    let service = offer(&fed, &upstream, "query", json!([{"method": "GET", "path": "/taxes/{id}"}])).await;
    let org = fed.register_org("370100").await;
    let body = json!({"username": "qian", "password": PASSWORD, "organization": org, "roles": ["consumer"]});
    assert_eq!(fed.post("370100", "/api/v1/accounts", body).await.0, 201);
    let (_, session) = fed.login("370100", "qian", PASSWORD).await;
    let token = session["token"].as_str().unwrap().to_string();
    eventually("Jinan sees the service", || async {
        fed.get("370100", &format!("/api/v1/services/{service}")).await.0 == 200
    })
    .await;
    let (url, _) = fed.url_token("370100");
    let (_, before) = fed.get("370100", "/api/v1/audit/verify").await;

    // 1,500 requests, 32 at a time: applications for another organization (403),
    // outbox listings, calls of a service the caller holds no grant for (403),
    // listings of what the node relayed (403: not the consumer's to see) and of
    // usage records.
    let other = cascade_protocol::org::Organization::government_code(nid("440100"), 1);
    let http = reqwest::Client::new();
    let mut flood = tokio::task::JoinSet::new();
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    for i in 0..1500 {
        let request = match i % 5 {
            0 => http
                .post(format!("{url}/api/v1/applications"))
                .json(&json!({"resource": {"service": service},
                "consumer": other, "purpose": "x", "period_days": 1})),
            1 => http.get(format!("{url}/api/v1/applications?box=outbox&limit=1000")),
            2 => http.get(format!("{url}/gateway/{service}/taxes/1")),
            3 => http.get(format!("{url}/api/v1/relayed?limit=1000")),
            _ => http.get(format!("{url}/api/v1/usage?limit=1000")),
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
    assert_eq!(statuses.get(&403), Some(&900), "{statuses:?}");
    assert!(statuses.keys().all(|s| [200, 403, 503].contains(s)), "{statuses:?}");

    // The refusals cost a tally record of each kind; nothing was routed; the calls
    // left bounded usage records; the node answers and its audit chain verifies.
    let (_, after) = fed.get("370100", "/api/v1/audit/verify").await;
    let grown = after["records"].as_u64().unwrap() - before["records"].as_u64().unwrap();
    assert!(grown <= 6, "{grown} records for 600 refused requests: {after}");
    assert_eq!(after["ok"], true, "{after}");
    let metrics = scrape(&fed, "370100").await;
    assert_eq!(sample(&metrics, "cascade_routed_sent_total", &[]), Some(0.0));
    assert_eq!(
        sample(&metrics, "cascade_calls_total", &[("role", "consumer"), ("status", "403")]),
        Some(300.0)
    );
    assert_eq!(fed.get("370100", "/healthz").await.0, 200);
    fed.fed.shutdown().await.unwrap();
}
