//! End-to-end: process docking (流程对接) across provinces over real QUIC — an
//! application routed from a city of one province to a city of another, decided
//! by rule or by an approver, its grant signed and sent back, revoked; and every
//! routed message surviving a provider or a hub that is down when it is sent.

use cascade_protocol::routed::{MessageId, Routed, RoutedBody};
use cascade_protocol::workflow::ApplicationRequest;
use cascade_protocol::{Delta, DeltaBody, Frame, GENESIS_HASH};
use cascade_tests::*;
use cascade_transport::{read_frame, write_frame};
use serde_json::{json, Value};
use std::sync::Arc;

const PASSWORD: &str = "correct horse battery staple";

/// Publishes an entry of Guangzhou's bureau with the given sharing rule; returns its code.
async fn provide(fed: &Fed, name: &str, share: Value) -> String {
    let mut body = fed.entry_at("440100", name).await;
    for (k, v) in share.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, saved) = fed.post("440100", "/api/v1/catalog", body).await;
    assert_eq!(status, 201, "{saved}");
    let code = saved["code"].as_str().unwrap().to_string();
    let path = format!("/api/v1/catalog/{}/publish", encode(&code));
    assert_eq!(fed.post("440100", &path, json!({"scope": "federation"})).await.0, 200);
    code
}

/// Creates an account with one role at node `at` and logs it in.
async fn person<'a>(fed: &'a Fed, at: &str, name: &str, org: &str, role: &str) -> As<'a> {
    let body = json!({"username": name, "password": PASSWORD, "organization": org, "roles": [role]});
    let (status, reply) = fed.post(at, "/api/v1/accounts", body).await;
    assert_eq!(status, 201, "{reply}");
    let (_, session) = fed.login(at, name, PASSWORD).await;
    fed.with_token(at, session["token"].as_str().unwrap())
}

/// Polls until `who` sees application `id` in `state`; returns it.
async fn wait_state(who: &As<'_>, id: &str, state: &str) -> Value {
    let path = format!("/api/v1/applications/{id}");
    eventually(&format!("{id} is {state}"), || async {
        who.call("GET", &path, None).await.1["state"] == state
    })
    .await;
    who.call("GET", &path, None).await.1
}

/// The audit kinds of node `at` about `id`, oldest first.
async fn audited(fed: &Fed, at: &str, id: &str) -> Vec<String> {
    let (_, audit) = fed.get(at, "/api/v1/audit?kind=application.&limit=1000").await;
    let records = audit["records"].as_array().cloned().unwrap_or_default();
    records
        .iter()
        .filter(|r| r["detail"].as_str().is_some_and(|d| d.starts_with(&format!("{id} "))))
        .map(|r| r["kind"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conditional_application_crosses_two_provinces_is_approved_and_its_grant_revoked() {
    let fed = Fed::launch(TWO_PROVINCES).await;
    let share = json!({"share_type": "conditional", "share_condition": "仅用于税务稽查"});
    let code = provide(&fed, "企业纳税信息", share).await;
    let provider = cascade_protocol::org::Organization::government_code(nid("440100"), 1);
    let service = json!({"name": "企业纳税查询", "entry": {"origin": 440100, "code": code},
        "provider": provider, "kind": "query", "endpoints": [{"method": "GET", "path": "/taxes/{id}"},
        {"method": "GET", "path": "/persons/{id}"}], "sensitivity": 3, "rate_limit_per_minute": 600,
        "upstream": "http://127.0.0.1:9/"});
    let (status, created) = fed.post("440100", "/api/v1/services", service).await;
    assert_eq!(status, 201, "{created}");
    let service_id = created["id"].as_str().unwrap().to_string();
    let consumer = fed.register_org("370100").await;
    let wang = person(&fed, "370100", "wang", &consumer, "consumer").await;
    let li = person(&fed, "440100", "li", &provider, "approver").await;
    eventually("Jinan sees the service", || async {
        fed.get("370100", &format!("/api/v1/services/{service_id}")).await.0 == 200
    })
    .await;

    // A consumer applies for its own organization only.
    let apply = json!({"resource": {"service": service_id}, "consumer": consumer,
        "purpose": "tax audit", "period_days": 30});
    let mut other = apply.clone();
    other["consumer"] = json!(provider);
    assert_eq!(wang.call("POST", "/api/v1/applications", Some(other)).await.0, 403);
    let (status, submitted) = wang.call("POST", "/api/v1/applications", Some(apply.clone())).await;
    assert_eq!((status, submitted["state"].as_str()), (201, Some("submitted")), "{submitted}");
    let id = submitted["id"].as_str().unwrap().to_string();

    // Routed to Guangzhou, it waits for an approver, due in ten working days.
    let pending = wait_state(&wang, &id, "pending").await;
    assert_eq!(pending["reason"], "awaiting_approval");
    assert_eq!(pending["detail"], "仅用于税务稽查");
    assert_eq!(pending["overdue"], false);
    let due = pending["due_at"].as_u64().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(due > now + 12 * 86_400 && due < now + 17 * 86_400, "ten working days: {pending}");
    let (_, inbox) = li.call("GET", "/api/v1/applications?box=inbox", None).await;
    assert_eq!(inbox["returned"], 1, "{inbox}");
    assert_eq!(inbox["applications"][0]["due_at"], due, "both ends agree on the due time");
    let (_, outbox) = li.call("GET", "/api/v1/applications?box=outbox", None).await;
    assert_eq!(outbox["returned"], 0, "{outbox}");

    // Rejecting needs a reason; approving narrows the endpoints and the rate.
    let path = |verb: &str| format!("/api/v1/applications/{id}/{verb}");
    let (status, reply) = li.call("POST", &path("reject"), Some(json!({}))).await;
    assert_eq!((status, reply["field"].as_str()), (422, Some("reason")), "{reply}");
    let (status, reply) = li.call("POST", &path("reject"), Some(json!({"reason": "  "}))).await;
    assert_eq!((status, reply["field"].as_str()), (422, Some("reason")), "{reply}");
    assert_eq!(wang.call("POST", &path("approve"), Some(json!({}))).await.0, 404, "not Jinan's to approve");
    let narrow =
        json!({"endpoints": [{"method": "GET", "path": "/taxes/{id}"}], "rate_limit_per_minute": 60});
    let (status, approved) = li.call("POST", &path("approve"), Some(narrow)).await;
    assert_eq!((status, approved["state"].as_str()), (200, Some("granted")), "{approved}");
    assert_eq!(li.call("POST", &path("approve"), Some(json!({}))).await.0, 409, "decided once");

    // The grant comes back, signed by Guangzhou, for Jinan's organization and node.
    let granted = wait_state(&wang, &id, "granted").await;
    assert_eq!(
        (granted["reason"].as_str(), granted["decided_by"].as_str()),
        (Some("approved"), Some("node 440100"))
    );
    let grant_id = granted["grant"].as_str().unwrap().to_string();
    let (_, held) = wang.call("GET", "/api/v1/grants?box=held", None).await;
    let grant = &held["grants"][0];
    assert_eq!(
        (grant["id"].as_str(), grant["valid"].as_bool()),
        (Some(grant_id.as_str()), Some(true)),
        "{held}"
    );
    assert_eq!(
        (grant["grantee"].as_str(), grant["grantee_node"].as_u64()),
        (Some(consumer.as_str()), Some(370100))
    );
    assert_eq!(grant["endpoints"], json!([{"method": "GET", "path": "/taxes/{id}"}]));
    assert_eq!(grant["rate_limit_per_minute"], 60);
    assert_eq!(grant["signature"].as_str().map(str::len), Some(128));

    // Revocation needs a reason, takes effect at Guangzhou at once and reaches Jinan.
    let revoke = format!("/api/v1/grants/{grant_id}/revoke");
    assert_eq!(li.call("POST", &revoke, Some(json!({"reason": ""}))).await.0, 422);
    assert_eq!(wang.call("POST", &revoke, Some(json!({"reason": "x"}))).await.0, 404, "only its issuer");
    let (status, revoked) = li.call("POST", &revoke, Some(json!({"reason": "稽查结束"}))).await;
    assert_eq!((status, revoked["valid"].as_bool()), (200, Some(false)), "{revoked}");
    eventually("Jinan learns of the revocation", || async {
        let (_, held) = wang.call("GET", "/api/v1/grants?box=held", None).await;
        held["grants"][0]["revoke_reason"] == "稽查结束"
    })
    .await;

    // Every state change is audited at both ends.
    assert_eq!(
        audited(&fed, "370100", &id).await,
        ["application.submitted", "application.pending", "application.granted"]
    );
    assert_eq!(audited(&fed, "440100", &id).await, ["application.received", "application.approved"]);
    let (_, revocations) = fed.get("370100", "/api/v1/audit?kind=grant.revoked").await;
    assert_eq!(revocations["returned"], 1, "{revocations}");

    // A second application is withdrawn while pending: withdrawn at both ends.
    let (_, second) = wang.call("POST", "/api/v1/applications", Some(apply)).await;
    let second = second["id"].as_str().unwrap().to_string();
    wait_state(&wang, &second, "pending").await;
    let (status, asked) = wang.call("POST", &format!("/api/v1/applications/{second}/withdraw"), None).await;
    assert_eq!((status, asked["withdraw_requested"].as_bool()), (200, Some(true)), "{asked}");
    let withdrawn = wait_state(&wang, &second, "withdrawn").await;
    assert_eq!(withdrawn["reason"], "withdrawn_by_consumer");
    assert_eq!(wait_state(&li, &second, "withdrawn").await["withdraw_requested"], false);
    assert_eq!(li.call("POST", &format!("/api/v1/applications/{second}/approve"), None).await.0, 409);

    // The hubs' operators see the application pass, step by step, newest first;
    // the consumer's people do not.
    let (status, passed) = fed.get("370000", &format!("/api/v1/relayed?subject={id}")).await;
    assert_eq!(status, 200, "{passed}");
    let kinds: Vec<&str> =
        passed["relayed"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["decision", "decision", "apply"], "{passed}");
    assert_eq!(passed["relayed"][0]["detail"], "granted", "{passed}");
    assert_eq!(
        (passed["relayed"][2]["from"].as_u64(), passed["relayed"][2]["to"].as_u64()),
        (Some(370100), Some(440100))
    );
    let (_, revokes) = fed.get("100000", "/api/v1/relayed?kind=revoke").await;
    assert_eq!(
        (revokes["returned"].as_u64(), revokes["relayed"][0]["detail"].as_str()),
        (Some(1), Some("稽查结束"))
    );
    let (_, first) = fed.get("440000", "/api/v1/relayed?limit=1").await;
    let next = first["next"].as_str().expect("more than one page").to_string();
    let (_, rest) = fed.get("440000", &format!("/api/v1/relayed?before={next}&limit=100")).await;
    let (_, all) = fed.get("440000", "/api/v1/relayed?limit=100").await;
    assert_eq!(rest["returned"].as_u64().unwrap() + 1, all["returned"].as_u64().unwrap(), "{rest} {all}");
    assert_eq!(fed.get("440000", "/api/v1/relayed?kind=gossip").await.0, 422);
    assert_eq!(wang.call("GET", "/api/v1/relayed", None).await.0, 403);

    // Both provinces' hubs relayed and hold nothing back.
    for hub in ["370000", "100000", "440000"] {
        let metrics = scrape(&fed, hub).await;
        assert!(sample(&metrics, "cascade_routed_relayed_total", &[]).unwrap_or(0.0) >= 5.0, "{hub} relayed");
        assert!(
            metrics.samples.iter().all(|s| s.metric != "cascade_routed_pending"
                || matches!(s.value,
            prometheus_parse::Value::Gauge(v) if v == 0.0)),
            "{hub} holds nothing back"
        );
    }
    fed.fed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconditional_is_granted_at_once_and_not_shared_is_refused_quoting_its_basis() {
    let fed = Fed::launch(TWO_PROVINCES).await;
    let open = provide(&fed, "企业登记信息", json!({"share_type": "unconditional"})).await;
    let basis = "《中华人民共和国统计法》第三十九条";
    let closed =
        provide(&fed, "统计调查原始资料", json!({"share_type": "not_shared", "not_shared_basis": basis}))
            .await;
    let consumer = fed.register_org("370100").await;
    let apply = |code: &str| {
        json!({"resource": {"entry": {"origin": 440100, "code": code}}, "consumer": consumer,
            "purpose": "market supervision", "period_days": 90})
    };
    fed.wait_seen("370100", "440100", &closed, "published", 1).await;
    let (status, a) = fed.post("370100", "/api/v1/applications", apply(&open)).await;
    assert_eq!(status, 201, "{a}");
    let (_, b) = fed.post("370100", "/api/v1/applications", apply(&closed)).await;
    let admin = fed.with_token("370100", &fed.url_token("370100").1);
    let granted = wait_state(&admin, a["id"].as_str().unwrap(), "granted").await;
    assert_eq!(
        (granted["reason"].as_str(), granted["decided_by"].as_str()),
        (Some("unconditional"), Some("node 440100"))
    );
    let refused = wait_state(&admin, b["id"].as_str().unwrap(), "refused").await;
    assert_eq!(
        (refused["reason"].as_str(), refused["detail"].as_str()),
        (Some("not_shared"), Some(basis)),
        "{refused}"
    );
    assert!(refused["grant"].is_null());

    // An entry that does not exist is refused by its node, with a reason to show.
    let (_, c) = fed.post("370100", "/api/v1/applications", apply("3/999999")).await;
    let missing = wait_state(&admin, c["id"].as_str().unwrap(), "refused").await;
    assert_eq!(missing["reason"], "resource_unavailable", "{missing}");

    // Malformed applications say which field is wrong.
    for (change, field) in [
        (json!({"period_days": 0}), "period_days"),
        (json!({"purpose": ""}), "purpose"),
        (json!({"resource": {"service": "no such"}}), "resource.service"),
        (json!({"resource": {"entry": {"origin": 510100, "code": open}}}), "resource.entry.origin"),
        (json!({"consumer": "91350100M000100Y43"}), "consumer"),
    ] {
        let mut body = apply(&open);
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, reply) = fed.post("370100", "/api/v1/applications", body).await;
        assert_eq!((status, reply["field"].as_str()), (422, Some(field)), "{reply}");
    }
    fed.fed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_sent_while_the_provider_or_a_hub_is_down_arrives_once_after_restart() {
    let mut fed = Fed::launch(TWO_PROVINCES).await;
    let share = json!({"share_type": "conditional", "share_condition": "审批后使用"});
    let code = provide(&fed, "不动产登记信息", share).await;
    fed.wait_seen("370100", "440100", &code, "published", 1).await;
    let consumer = fed.register_org("370100").await;
    let admin = fed.url_token("370100").1;
    let apply = json!({"resource": {"entry": {"origin": 440100, "code": code}}, "consumer": consumer,
        "purpose": "housing subsidy checks", "period_days": 30});

    for down in ["440100", "440000"] {
        fed.fed.stop(nid(down)).await.unwrap();
        let (status, sent) = fed.post("370100", "/api/v1/applications", apply.clone()).await;
        assert_eq!(status, 201, "{sent}");
        let id = sent["id"].as_str().unwrap().to_string();
        // It waits, stored, at the last hop before the one that is down.
        let holder = if down == "440100" { "440000" } else { "100000" };
        eventually(&format!("{holder} holds {id} for {down}"), || async {
            sample(&scrape(&fed, holder).await, "cascade_routed_pending", &[("next_hop", down)]) == Some(1.0)
        })
        .await;
        fed.fed.start(nid(down)).await.unwrap();
        let jinan = fed.with_token("370100", &admin);
        wait_state(&jinan, &id, "pending").await;
        let guangzhou = fed.with_token("440100", &fed.url_token("440100").1);
        wait_state(&guangzhou, &id, "pending").await;
        assert_eq!(audited(&fed, "440100", &id).await, ["application.received"], "delivered once");
        assert_eq!(audited(&fed, "370100", &id).await, ["application.submitted", "application.pending"]);
    }
    fed.fed.shutdown().await.unwrap();
}

/// Waits until the national node closes the double's link as a protocol breach.
async fn closed_for_misbehaving(link: &cascade_transport::PeerLink, what: &str) {
    match tokio::time::timeout(DEADLINE, link.connection.closed()).await.expect(what) {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, cascade_transport::close::PROTOCOL.into(), "{what}: {close:?}")
        }
        other => panic!("{what}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_alters_forges_or_misroutes_routed_messages_is_dropped_and_nothing_is_applied() {
    // The Shandong hub is a malicious test double between Jinan and the national
    // node; Beijing, the provider, is real.
    let mut fed = Fed::prepare(FOUR_PROVINCES);
    fed.fed.start(nid("100000")).await.unwrap();
    fed.fed.start(nid("110000")).await.unwrap();
    let code = fed.publish("110000", "北京企业登记信息", "federation").await;
    let (hub_creds, root) = creds_of(&fed, "370000");
    let hub_key = hub_creds.signing_key().unwrap();
    let hub = endpoint(&hub_creds, &root);
    fed.fed.set_parent_addr(nid("370100"), hub.local_addr().unwrap()).unwrap();
    let national = fed.fed.node(nid("100000")).unwrap().node.quic_addr();
    // The hub joins honestly: it is a member the national node knows.
    let log = cascade_protocol::LogId { origin: nid("370000"), scope: cascade_protocol::Scope::Federation };
    let join = DeltaBody::Join { chain: hub_creds.chain.clone() };
    let join = Arc::new(Delta::sign(&hub_key, log, 1, GENESIS_HASH, &join).unwrap());
    let connect = || async {
        let mut up = hub.connect(national, nid("100000")).await.unwrap();
        write_frame(&mut up.send, &Frame::Hello { vv: vec![] }).await.unwrap();
        write_frame(&mut up.send, &Frame::Deltas(vec![join.clone()])).await.unwrap();
        up
    };
    let mut up = connect().await;
    fed.fed.start(nid("370100")).await.unwrap();
    let incoming = hub.accept().await.unwrap();
    let mut down = hub.admit(incoming, |_| Ok(())).await.unwrap();
    write_frame(&mut down.send, &Frame::Hello { vv: vec![] }).await.unwrap();

    // The hub relays the logs honestly both ways: Jinan learns of Beijing's entry.
    let mut national_frames = Vec::new();
    read_until(&mut up.recv, |f| {
        let done =
            matches!(&f, Frame::Deltas(ds) if ds.iter().any(|d| d.log.origin == nid("110000") && d.seq >= 3));
        national_frames.push(f);
        done.then_some(())
    })
    .await;
    for frame in national_frames.into_iter().filter(|f| matches!(f, Frame::Deltas(_))) {
        write_frame(&mut down.send, &frame).await.unwrap();
    }
    fed.wait_seen("370100", "110000", &code, "published", 1).await;

    // Jinan applies; the hub keeps the application.
    let consumer = fed.register_org("370100").await;
    let apply = json!({"resource": {"entry": {"origin": 110000, "code": code}}, "consumer": consumer,
        "purpose": "market supervision", "period_days": 30});
    let (status, sent) = fed.post("370100", "/api/v1/applications", apply).await;
    assert_eq!(status, 201, "{sent}");
    let id = sent["id"].as_str().unwrap().to_string();
    let genuine = tokio::time::timeout(DEADLINE, async {
        loop {
            let (frame, _) = read_frame(&mut down.recv).await.expect("frame").expect("stream open");
            match frame {
                Frame::Deltas(ds) => {
                    write_frame(&mut up.send, &Frame::Deltas(ds)).await.unwrap();
                }
                Frame::Routed(m) => return m,
                _ => {}
            }
        }
    })
    .await
    .expect("Jinan's application in time");
    let RoutedBody::Apply(request) = &genuine.body else { panic!("{genuine:?}") };

    // 1. Altered in transit: the purpose changed.
    let mut altered = Routed::clone(&genuine);
    altered.body =
        RoutedBody::Apply(ApplicationRequest { purpose: "anything at all".into(), ..request.clone() });
    write_frame(&mut up.send, &Frame::Routed(Arc::new(altered))).await.unwrap();
    closed_for_misbehaving(&up, "altered").await;
    // 2. Forged: the hub signs an application in Jinan's name with its own key.
    let mut up = connect().await;
    let forged_id = MessageId { from: nid("370100"), seq: 99 };
    let forged_body = RoutedBody::Apply(ApplicationRequest { id: "370100-a99".into(), ..request.clone() });
    let forged = Routed::sign(&hub_key, forged_id, nid("110000"), genuine.sent_at, forged_body).unwrap();
    write_frame(&mut up.send, &Frame::Routed(Arc::new(forged))).await.unwrap();
    closed_for_misbehaving(&up, "forged").await;
    // 3. Off its route: a message of the hub for its own child, sent up instead.
    let mut up = connect().await;
    let body = RoutedBody::Withdraw { application: id.clone() };
    let misrouted = Routed::sign(
        &hub_key,
        MessageId { from: nid("370000"), seq: 1 },
        nid("370100"),
        genuine.sent_at,
        body,
    )
    .unwrap();
    write_frame(&mut up.send, &Frame::Routed(Arc::new(misrouted))).await.unwrap();
    closed_for_misbehaving(&up, "misrouted").await;
    // 4. An acknowledgement of more ids than a window holds.
    let mut up = connect().await;
    let ids = (0..cascade_protocol::limits::MAX_ACK_IDS as u64 + 1)
        .map(|seq| MessageId { from: nid("100000"), seq });
    write_frame(&mut up.send, &Frame::RoutedAck(ids.collect())).await.unwrap();
    closed_for_misbehaving(&up, "ack").await;

    // 5. The genuine message, relayed 300 times (a flood of resends): taken once,
    //    acknowledged each time, costing no audit record.
    let (_, before) = fed.get("100000", "/api/v1/audit/verify").await;
    let mut up = connect().await;
    for _ in 0..300 {
        write_frame(&mut up.send, &Frame::Routed(genuine.clone())).await.unwrap();
    }
    let mut acks = 0;
    let decision = read_until(&mut up.recv, |f| match f {
        Frame::RoutedAck(ids) => {
            acks += ids.iter().filter(|m| **m == genuine.id).count();
            None
        }
        Frame::Routed(m) if matches!(m.body, RoutedBody::Decision(_)) => Some(m),
        _ => None,
    })
    .await;
    write_frame(&mut down.send, &Frame::Routed(decision)).await.unwrap();
    let jinan = fed.with_token("370100", &fed.url_token("370100").1);
    assert_eq!(wait_state(&jinan, &id, "granted").await["reason"], "unconditional");
    assert!(acks >= 1, "the national node acknowledged what it took over");

    // Beijing applied it once; nothing forged or altered reached it.
    assert_eq!(audited(&fed, "110000", &id).await, ["application.received"]);
    assert_eq!(audited(&fed, "110000", "370100-a99").await, Vec::<String>::new());
    let (_, inbox) = fed.get("110000", "/api/v1/applications?box=inbox").await;
    assert_eq!(inbox["returned"], 1, "{inbox}");
    assert_eq!(inbox["applications"][0]["purpose"], "market supervision");
    let (_, node) = fed.get("100000", "/api/v1/node").await;
    assert_eq!(node["peer_faults"]["misbehaved"], 4, "{node}");
    let (_, audit) = fed.get("100000", "/api/v1/audit?kind=peer.misbehaved").await;
    let details: Vec<&str> =
        audit["records"].as_array().unwrap().iter().map(|r| r["detail"].as_str().unwrap()).collect();
    assert!(details.iter().all(|d| d.contains("bad routed message")), "{details:?}");
    assert!(details.iter().any(|d| d.contains("370100:1: bad signature")), "altered: {details:?}");
    let metrics = scrape(&fed, "100000").await;
    assert_eq!(sample(&metrics, "cascade_routed_duplicates_total", &[]), Some(299.0));
    let (_, after) = fed.get("100000", "/api/v1/audit/verify").await;
    let grown = after["records"].as_u64().unwrap() - before["records"].as_u64().unwrap();
    assert!(grown <= 2, "{grown} audit records for 300 copies (a reconnect's): {after}");
    fed.fed.shutdown().await.unwrap();
}
