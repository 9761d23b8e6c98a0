//! End-to-end against hostile peers: tampering and forging relays, foreign roots,
//! wrong parents, revoked children, oversized and malformed frames.

use cascade_certs::{node_identity, Authority};
use cascade_protocol::catalog::{CatalogEntry, EntryDraft, EntryStatus};
use cascade_protocol::org::Organization;
use cascade_protocol::{Delta, DeltaBody, Frame, Tier};
use cascade_tests::*;
use cascade_transport::write_frame;
use serde_json::json;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampering_or_forging_relay_is_caught_and_nothing_downstream_stores_it() {
    // The Shandong hub is a malicious test double; Jinan and the national node
    // (and Beijing, downstream of it) are real.
    let mut fed = Fed::prepare(FOUR_PROVINCES);
    fed.fed.start(nid("100000")).await.unwrap();
    fed.fed.start(nid("110000")).await.unwrap();
    let (hub_creds, root) = creds_of(&fed, "370000");
    let hub = endpoint(&hub_creds, &root);
    fed.fed.set_parent_addr(nid("370100"), hub.local_addr().unwrap()).unwrap();
    let national_addr = fed.fed.node(nid("100000")).unwrap().node.quic_addr();

    // The hub joins the national node properly.
    let mut up = hub.connect(national_addr, nid("100000")).await.unwrap();
    write_frame(&mut up.send, &Frame::Hello { vv: vec![] }).await.unwrap();

    // Jinan connects to the hub and, told the hub has nothing, sends its log.
    fed.fed.start(nid("370100")).await.unwrap();
    let incoming = hub.accept().await.unwrap();
    let mut down = hub.admit(incoming, |_| Ok(())).await.unwrap();
    write_frame(&mut down.send, &Frame::Hello { vv: vec![] }).await.unwrap();
    let code = fed.publish("370100", "企业登记基本信息", "federation").await;
    let mut deltas: Vec<Arc<Delta>> = Vec::new();
    read_until(&mut down.recv, |f| {
        if let Frame::Deltas(ds) = f {
            deltas.extend(ds);
        }
        deltas.iter().any(|d| d.seq == 3).then_some(())
    })
    .await;
    let join = deltas.iter().find(|d| d.seq == 1).unwrap().clone();
    let org = deltas.iter().find(|d| d.seq == 2).unwrap().clone();
    let genuine = deltas.iter().find(|d| d.seq == 3).unwrap().clone();

    // 1. Tampered body: one byte of the entry changed in transit.
    let mut tampered = Delta::clone(&genuine);
    let last = tampered.body.len() - 1;
    tampered.body[last] ^= 0x01;
    write_frame(&mut up.send, &Frame::Deltas(vec![join.clone(), org.clone(), Arc::new(tampered)]))
        .await
        .unwrap();
    eventually("national rejects the tampered delta", || async {
        rejected(&fed, "100000", "bad_signature").await == 1
    })
    .await;

    // 2. Forged: the hub signs an entry in Jinan's log with its own key.
    let draft: EntryDraft = serde_json::from_value(entry("伪造资源")).unwrap();
    let forged_entry = CatalogEntry::from_draft(draft, "3/000777".into(), 1, EntryStatus::Published);
    let forged = Delta::sign(
        &hub_creds.signing_key().unwrap(),
        genuine.log,
        3,
        org.hash(),
        &DeltaBody::Catalog(forged_entry),
    )
    .unwrap();
    write_frame(&mut up.send, &Frame::Deltas(vec![Arc::new(forged)])).await.unwrap();
    eventually("national rejects the forged delta", || async {
        rejected(&fed, "100000", "bad_signature").await == 2
    })
    .await;

    // 3. Reordered: the genuine delta with a wrong chain position.
    let mut moved = Delta::clone(&genuine);
    moved.prev = [7; 32];
    write_frame(&mut up.send, &Frame::Deltas(vec![Arc::new(moved)])).await.unwrap();
    eventually("national rejects the re-chained delta", || async {
        rejected(&fed, "100000", "broken_chain").await == 1
    })
    .await;

    // Nothing of it was stored at the national node or downstream of it; the Join was.
    for at in ["100000", "110000"] {
        assert_eq!(fed.seen(at, "370100", &code).await, None, "at {at}");
        assert_eq!(fed.seen(at, "370100", "3/000777").await, None, "at {at}");
    }
    let (_, list) = fed.get("110000", "/api/v1/catalog?origin=370100&status=all").await;
    assert_eq!(list["returned"], 0, "{list}");

    // The national node's metrics count the rejections, in the Prometheus format.
    let metrics = scrape(&fed, "100000").await;
    assert_eq!(sample(&metrics, "cascade_deltas_rejected_total", &[("reason", "bad_signature")]), Some(2.0));
    assert_eq!(sample(&metrics, "cascade_deltas_rejected_total", &[("reason", "broken_chain")]), Some(1.0));

    // The genuine delta, relayed verbatim, is accepted and reaches Beijing.
    write_frame(&mut up.send, &Frame::Deltas(vec![genuine])).await.unwrap();
    fed.wait_seen("100000", "370100", &code, "published", 1).await;
    fed.wait_seen("110000", "370100", &code, "published", 1).await;
    fed.fed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_outside_the_federation_or_the_tree_are_refused() {
    let fed = Fed::launch(FOUR_PROVINCES).await;
    let province = fed.fed.node(nid("370000")).unwrap().node.quic_addr();
    let national = fed.fed.node(nid("100000")).unwrap().node.quic_addr();
    let (_, root) = creds_of(&fed, "370000");

    // A city certified under another root: the TLS handshake fails.
    let rogue_root = Authority::new_root("rogue").unwrap();
    let rogue_province =
        node_identity(nid("370000"), Tier::Provincial, Some(nid("100000")), "山东省").unwrap();
    let rogue_ca = rogue_root.issue_provincial_ca(&rogue_province).unwrap().into_authority().unwrap();
    let city = node_identity(nid("370300"), Tier::Municipal, Some(nid("370000")), "淄博市").unwrap();
    let rogue = rogue_ca.issue(&city).unwrap();
    let rogue_ep =
        cascade_transport::Endpoint::bind(&rogue, &rogue_root.cert_der(), "127.0.0.1:0".parse().unwrap())
            .unwrap();
    match rogue_ep.connect(province, nid("370000")).await {
        Err(_) => {}
        Ok(link) => {
            // TLS 1.3: the client may finish before the server rejects its certificate.
            let closed = tokio::time::timeout(DEADLINE, link.connection.closed()).await.expect("closed");
            assert!(!matches!(closed, quinn::ConnectionError::LocallyClosed), "{closed:?}");
        }
    }

    // A genuine city of Shandong dialing the national node: it is not its child.
    let zibo = provincial_ca(&fed, "370000").issue(&city).unwrap();
    let zibo_ep = endpoint(&zibo, &root);
    let refused = match zibo_ep.connect(national, nid("100000")).await {
        Err(e) => e.to_string(),
        Ok(link) => {
            let closed = tokio::time::timeout(DEADLINE, link.connection.closed()).await.expect("closed");
            closed.to_string()
        }
    };
    assert!(
        refused.contains("names") || refused.contains("refused") || refused.contains("closed"),
        "{refused}"
    );
    // Dialing with the wrong expectation of who the parent is fails on our side too.
    assert!(zibo_ep.connect(national, nid("370000")).await.is_err());
    // The national node reports the refusal as an incompatible peer: counted and audited.
    eventually("the national node reports an incompatible peer", || async {
        let (_, node) = fed.get("100000", "/api/v1/node").await;
        let (_, audit) = fed.get("100000", "/api/v1/audit?kind=peer.refused").await;
        node["peer_faults"]["incompatible"].as_u64() >= Some(1)
            && audit["records"].as_array().is_some_and(|r| {
                r.iter().any(|r| r["detail"].as_str().is_some_and(|d| d.contains("370300 names")))
            })
    })
    .await;

    // None of them became a peer; the nodes keep serving.
    for at in ["100000", "370000"] {
        let (_, node) = fed.get(at, "/api/v1/node").await;
        let peers: Vec<u64> = node["peers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["state"] != "disconnected")
            .map(|p| p["id"].as_u64().unwrap())
            .collect();
        assert!(!peers.contains(&370300), "{at}: {peers:?}");
    }
    let code = fed.publish("370100", "after intruders", "federation").await;
    fed.wait_seen("100000", "370100", &code, "published", 1).await;
    fed.fed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_child_is_cut_off_and_refused() {
    let fed = Fed::launch(FOUR_PROVINCES).await;
    let before = fed.publish("370200", "before revocation", "federation").await;
    fed.wait_seen("100000", "370200", &before, "published", 1).await;

    let (status, body) =
        fed.post("370000", "/api/v1/nodes/370200/revoke", json!({"reason": "decommissioned"})).await;
    assert_eq!(status, 200, "{body}");
    for at in ["100000", "110000", "370100"] {
        eventually(&format!("{at} knows 370200 is revoked"), || async {
            let (_, node) = fed.get(at, "/api/v1/node").await;
            node["revoked"].as_array().unwrap().contains(&json!(370200))
        })
        .await;
    }
    // The province drops it and refuses its reconnects.
    eventually("the province shows 370200 revoked", || async {
        let (_, node) = fed.get("370000", "/api/v1/node").await;
        node["peers"].as_array().unwrap().iter().any(|p| p["id"] == 370200 && p["state"] == "revoked")
    })
    .await;
    // The revoked node runs on, but its dialer treats the refusal as one: its next
    // dial is at least REDIAL_REFUSED_MS away (then doubling; `Redial`'s test
    // counts an hour), not 100 ms, and it made only a dial or two so far.
    let child = |metric: &'static str| {
        let fed = &fed;
        async move { sample(&scrape(fed, "370200").await, metric, &[]).unwrap_or(0.0) }
    };
    let refused_ms = cascade_protocol::limits::REDIAL_REFUSED_MS as f64;
    eventually("the revoked child waits its refusal out", || async {
        child("cascade_parent_redial_wait_milliseconds").await >= refused_ms
    })
    .await;
    let dials = child("cascade_parent_dials_total").await;
    assert!(dials <= 3.0, "{dials} dials of the parent since the start");
    // What it had published before stays; what it publishes now reaches nobody.
    let mut late = entry("after revocation");
    late["provider"] = json!(Organization::government_code(nid("370200"), 1));
    let (status, _) = fed.post("370200", "/api/v1/catalog", late).await;
    assert_eq!(status, 201);
    let (creds, root) = creds_of(&fed, "370200");
    let again = endpoint(&creds, &root);
    let province = fed.fed.node(nid("370000")).unwrap().node.quic_addr();
    let refused = match again.connect(province, nid("370000")).await {
        Err(e) => e.to_string(),
        Ok(link) => {
            tokio::time::timeout(DEADLINE, link.connection.closed()).await.expect("closed").to_string()
        }
    };
    assert!(refused.contains("revoked") || refused.contains("closed"), "{refused}");
    let marker = fed.publish("370100", "marker", "federation").await;
    fed.wait_seen("100000", "370100", &marker, "published", 1).await;
    assert_eq!(fed.seen("100000", "370200", &before).await, Some(("published".into(), 1)));
    let (_, list) = fed.get("100000", "/api/v1/catalog?origin=370200&status=all").await;
    assert_eq!(list["returned"], 1, "{list}");
    fed.fed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_frames_drop_the_peer_not_the_node() {
    let fed = Fed::launch(FOUR_PROVINCES).await;
    let province = fed.fed.node(nid("370000")).unwrap().node.quic_addr();
    let (_, root) = creds_of(&fed, "370000");
    let city = node_identity(nid("370300"), Tier::Municipal, Some(nid("370000")), "淄博市").unwrap();
    let zibo = provincial_ca(&fed, "370000").issue(&city).unwrap();
    let ep = endpoint(&zibo, &root);

    for (what, bytes) in [
        ("oversized", (100u32 * 1024 * 1024).to_be_bytes().to_vec()),
        ("malformed", {
            let mut b = 16u32.to_be_bytes().to_vec();
            b.extend_from_slice(&[0xff; 16]);
            b
        }),
        ("lying length", {
            // A Deltas frame claiming a billion deltas inside 8 bytes.
            let mut b = 12u32.to_be_bytes().to_vec();
            b.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x3b, 0x9a, 0xca, 0x00]);
            b
        }),
    ] {
        let mut link = ep.connect(province, nid("370000")).await.expect(what);
        link.send.write_all(&bytes).await.unwrap();
        let closed = tokio::time::timeout(DEADLINE, link.connection.closed()).await.expect(what);
        match closed {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(close.error_code, cascade_transport::close::PROTOCOL.into(), "{what}: {close:?}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // Each is counted as the peer's misbehaviour; the audit log says why, once per
    // peer and reason in a tally window (the two malformed frames share a record).
    eventually("the province counts three misbehaving peers and audits two reasons", || async {
        let (_, node) = fed.get("370000", "/api/v1/node").await;
        let (_, audit) = fed.get("370000", "/api/v1/audit?kind=peer.misbehaved").await;
        node["peer_faults"]["misbehaved"] == 3 && audit["returned"] == 2
    })
    .await;
    let (_, audit) = fed.get("370000", "/api/v1/audit?kind=peer.misbehaved").await;
    let details: Vec<&str> =
        audit["records"].as_array().unwrap().iter().map(|r| r["detail"].as_str().unwrap()).collect();
    assert_eq!(details.len(), 2, "{details:?}");
    assert!(details.iter().all(|d| d.starts_with("370300: peer misbehaved:")), "{details:?}");
    assert!(details.iter().any(|d| d.contains("exceeds the limit")), "{details:?}");
    assert!(details.iter().any(|d| d.contains("malformed frame")), "{details:?}");
    let metrics = scrape(&fed, "370000").await;
    let misbehaved = sample(&metrics, "cascade_peer_faults_total", &[("fault", "peer_misbehaved")]);
    assert_eq!(misbehaved, Some(3.0));
    // The province still serves and syncs.
    assert_eq!(fed.get("370000", "/api/v1/node").await.0, 200);
    let code = fed.publish("370100", "after garbage", "federation").await;
    fed.wait_seen("100000", "370100", &code, "published", 1).await;
    fed.wait_seen("370200", "370100", &code, "published", 1).await;
    fed.fed.shutdown().await.unwrap();
}
