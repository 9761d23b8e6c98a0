//! End-to-end: certificates age and keys rotate, and the federation's history
//! stays verifiable — a node restarts on a new key by handing its logs over, and an
//! origin whose certificate has since expired is still accepted by a node catching
//! up from scratch.

use cascade_certs::{node_identity, write_private, Authority, KeySource};
use cascade_protocol::catalog::{resource_code, CatalogEntry, EntryDraft, EntryStatus};
use cascade_protocol::org::Organization;
use cascade_protocol::{Delta, DeltaBody, Frame, LogId, Scope, Tier, GENESIS_HASH};
use cascade_tests::*;
use cascade_transport::write_frame;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_given_a_new_key_hands_its_logs_over_and_its_history_stays_valid() {
    let mut fed = Fed::launch(FOUR_PROVINCES).await;
    let before = fed.publish("370100", "before rotation", "federation").await;
    fed.wait_seen("110000", "370100", &before, "published", 1).await;

    // The province certifies Jinan anew, with a fresh key; the old key is kept aside.
    fed.fed.stop(nid("370100")).await.unwrap();
    let certs = cascade_launcher::pki::node_certs_dir(fed.dir.path(), nid("370100"));
    let old_key = certs.join("previous.key");
    std::fs::rename(certs.join("node.key"), &old_key).unwrap();
    let identity = node_identity(nid("370100"), Tier::Municipal, Some(nid("370000")), "济南市").unwrap();
    let fresh = provincial_ca(&fed, "370000").issue(&identity).unwrap();
    std::fs::write(certs.join("node.pem"), fresh.chain_pem()).unwrap();
    write_private(&certs.join("node.key"), fresh.key_pem().as_bytes()).unwrap();

    // Without the previous key the node cannot continue its own logs, and says so.
    let refused = fed.fed.start(nid("370100")).await.expect_err("starts without its previous key");
    assert!(format!("{refused:#}").contains("previous_key"), "{refused:#}");

    // Given it once, the node hands its logs over and carries on under the new key.
    fed.fed.set_previous_key(nid("370100"), Some(old_key.clone())).unwrap();
    fed.fed.start(nid("370100")).await.unwrap();
    let after = fed.publish("370100", "after rotation", "federation").await;
    for at in ["100000", "110000", "370200"] {
        fed.wait_seen(at, "370100", &after, "published", 1).await;
        assert_eq!(fed.seen(at, "370100", &before).await, Some(("published".into(), 1)), "at {at}");
    }
    let (_, own) = fed.get("370100", "/api/v1/audit?kind=node.rekey").await;
    assert!(!own["records"].as_array().unwrap().is_empty(), "{own}");
    eventually("the national node audits the hand-over", || async {
        let (_, audit) = fed.get("100000", "/api/v1/audit?kind=member.rekey").await;
        audit["records"].as_array().is_some_and(|r| !r.is_empty())
    })
    .await;

    // The hand-over is durable: the previous key is no longer needed, and a node
    // catching up from nothing verifies the whole log across the hand-over.
    fed.fed.stop(nid("370100")).await.unwrap();
    fed.fed.set_previous_key(nid("370100"), None).unwrap();
    std::fs::remove_file(&old_key).unwrap();
    fed.fed.start(nid("370100")).await.unwrap();
    let later = fed.publish("370100", "after restart", "federation").await;
    fed.wait_seen("110000", "370100", &later, "published", 1).await;

    fed.fed.stop(nid("110000")).await.unwrap();
    std::fs::remove_dir_all(fed.dir.path().join("110000").join(cascade_runtime::STORE_DIR)).unwrap();
    fed.fed.start(nid("110000")).await.unwrap();
    for code in [&before, &after, &later] {
        fed.wait_seen("110000", "370100", code, "published", 1).await;
    }
    assert_eq!(rejected(&fed, "110000", "bad_signature").await, 0);
    fed.fed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_whose_certificate_has_expired_is_still_caught_up_from_scratch() {
    // A province certified six years ago (certificates last five): its log was
    // valid when written and must stay valid to a node that first sees it now.
    let mut fed = Fed::prepare(TWO_NODES);
    let root = {
        let pki = fed.dir.path().join("pki");
        let cert = std::fs::read_to_string(pki.join("root.pem")).unwrap();
        let key = std::fs::read_to_string(pki.join("root.key")).unwrap();
        Authority::load_root(&cert, &key).unwrap()
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let six_years = 6 * 365 * 24 * 3600;
    let guangdong = node_identity(nid("440000"), Tier::Provincial, Some(nid("100000")), "广东省").unwrap();
    let signing = ed25519_dalek::SigningKey::from_bytes(&[44; 32]);
    let source = KeySource::Given { key: Box::new(signing.clone()), not_before: now - six_years };
    let expired = root.issue_from(&guangdong, &source).unwrap();

    // Its certificate no longer opens a link: a node will not even present it.
    let (national_creds, root_der) = creds_of(&fed, "100000");
    let stale = cascade_transport::Endpoint::bind(&expired, &root_der, "127.0.0.1:0".parse().unwrap());
    assert!(stale.is_err_and(|e| e.to_string().contains("Expired")));

    let national = endpoint(&national_creds, &root_der);
    fed.fed.set_parent_addr(nid("370000"), national.local_addr().unwrap()).unwrap();
    fed.fed.start(nid("370000")).await.unwrap();

    // The national node (a test double) relays the expired origin's log downward.
    let incoming = tokio::time::timeout(DEADLINE, national.accept()).await.unwrap().unwrap();
    let mut down = national.admit(incoming, |_| Ok(())).await.unwrap();
    write_frame(&mut down.send, &Frame::Hello { vv: vec![] }).await.unwrap();
    let log = LogId { origin: nid("440000"), scope: Scope::Federation };
    let join = Delta::sign(&signing, log, 1, GENESIS_HASH, &DeltaBody::Join { chain: expired.chain.clone() })
        .unwrap();
    let credit_code = Organization::government_code(nid("440000"), 1);
    let org = Organization {
        credit_code: credit_code.clone(),
        name: "广东省政务服务数据管理局".into(),
        division: nid("440000"),
        parent: None,
    };
    let org = Delta::sign(&signing, log, 2, join.hash(), &DeltaBody::Organization(org)).unwrap();
    let mut draft = entry("广东省企业登记信息");
    draft["provider"] = serde_json::json!(credit_code);
    let draft: EntryDraft = serde_json::from_value(draft).unwrap();
    let code = resource_code("3", 1);
    let published = CatalogEntry::from_draft(draft, code.clone(), 1, EntryStatus::Published);
    let entry = Delta::sign(&signing, log, 3, org.hash(), &DeltaBody::Catalog(published)).unwrap();
    write_frame(&mut down.send, &Frame::Deltas(vec![Arc::new(join), Arc::new(org), Arc::new(entry)]))
        .await
        .unwrap();

    fed.wait_seen("370000", "440000", &code, "published", 1).await;
    let (_, node) = fed.get("370000", "/api/v1/node").await;
    let rejected = node["deltas"]["rejected"].as_object().expect("rejections");
    assert!(rejected.values().all(|n| n == 0), "{node}");
    fed.fed.shutdown().await.unwrap();
}
