//! Base management and the admin plane over real HTTP: organizations replicate,
//! every route checks role and organization, the audit log is tamper-evident,
//! metrics and readiness speak their formats.

use cascade_protocol::org::Organization;
use cascade_tests::*;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery staple";

/// Registers `code` (with an optional parent) at `id` through the bootstrap token.
async fn register(fed: &Fed, id: &str, code: &str, name: &str, parent: Option<&str>) {
    let body = json!({"credit_code": code, "name": name, "division": nid(id), "parent": parent});
    let (status, reply) = fed.post(id, "/api/v1/organizations", body).await;
    assert_eq!(status, 201, "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizations_are_validated_and_visible_across_the_federation() {
    let fed = Fed::launch(FOUR_PROVINCES).await;
    let bad = |code: &str, field: &str| {
        let code = code.to_string();
        let field = field.to_string();
        let fed = &fed;
        async move {
            let body = json!({"credit_code": code, "name": "x", "division": 370100});
            let (status, reply) = fed.post("370100", "/api/v1/organizations", body).await;
            assert_eq!((status, reply["field"].as_str()), (422, Some(field.as_str())), "{reply}");
            reply["error"].as_str().unwrap_or_default().to_string()
        }
    };
    let good = Organization::government_code(nid("370100"), 7);
    let mut wrong_check = good.clone();
    wrong_check.replace_range(17.., if good.ends_with('0') { "1" } else { "0" });
    assert!(bad(&wrong_check, "credit_code").await.contains("check character"));
    assert!(bad("91350100M000100Y4", "credit_code").await.contains("18"));
    assert!(bad("9135010OM000100Y43", "credit_code").await.contains("position"));
    // Outside the city's subtree: a Qingdao division registered at Jinan.
    let body = json!({"credit_code": Organization::government_code(nid("370202"), 1), "name": "x", "division": 370202});
    assert_eq!(fed.post("370100", "/api/v1/organizations", body).await.0, 422);

    register(&fed, "370100", &good, "济南市大数据局", None).await;
    eventually("the national node names Jinan's organization", || async {
        let (status, body) = fed.get("100000", &format!("/api/v1/organizations/{good}")).await;
        status == 200 && body["origin"] == 370100 && body["organization"]["name"] == "济南市大数据局"
    })
    .await;
    // Another node cannot take the same code.
    let body = json!({"credit_code": good, "name": "冒名", "division": 370000});
    let (status, reply) = fed.post("370000", "/api/v1/organizations", body).await;
    assert_eq!(status, 409, "{reply}");
    let (_, divisions) = fed.get("370000", "/api/v1/divisions").await;
    assert_eq!(divisions["division"]["name"], "山东省");
    assert_eq!(divisions["subtree"].as_array().unwrap().len(), 16);
    fed.fed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_is_allowed_exactly_what_it_should_be() {
    let fed = Fed::launch(FOUR_PROVINCES).await;
    let ours = Organization::government_code(nid("370100"), 1);
    let sub = Organization::government_code(nid("370102"), 2);
    let theirs = Organization::government_code(nid("370103"), 3);
    register(&fed, "370100", &ours, "济南市大数据局", None).await;
    register(&fed, "370100", &sub, "历下区数据中心", Some(&ours)).await;
    register(&fed, "370100", &theirs, "市中区卫健委", None).await;
    // An entry of the other organization, published by the bootstrap admin.
    let mut other_entry = entry("其他单位资源");
    other_entry["provider"] = json!(theirs);
    let (status, saved) = fed.post("370100", "/api/v1/catalog", other_entry).await;
    assert_eq!(status, 201, "{saved}");
    let other_code = saved["code"].as_str().unwrap().to_string();

    const ROLES: [&str; 5] = ["admin", "cataloger", "approver", "consumer", "auditor"];
    let roles = ROLES;
    let mut tokens = std::collections::BTreeMap::new();
    for role in roles {
        let body = json!({"username": role, "password": PASSWORD, "organization": ours, "roles": [role]});
        let (status, reply) = fed.post("370100", "/api/v1/accounts", body).await;
        assert_eq!(status, 201, "{reply}");
        let (status, session) = fed.login("370100", role, PASSWORD).await;
        assert_eq!(status, 200, "{session}");
        tokens.insert(role, session["token"].as_str().unwrap().to_string());
    }
    let (status, _) = fed.login("370100", "cataloger", "wrong password, long enough").await;
    assert_eq!(status, 401);

    let mut own_entry = entry("本单位资源");
    own_entry["provider"] = json!(ours);
    let mut sub_entry = entry("下级单位资源");
    sub_entry["provider"] = json!(sub);
    let mut their_entry = entry("越权资源");
    their_entry["provider"] = json!(theirs);
    let new_org = |n: u32| json!({"credit_code": Organization::government_code(nid("370100"), 100 + n), "name": "新单位", "division": 370100});
    let new_account = |n: &str| json!({"username": format!("new-{n}"), "password": PASSWORD, "organization": ours, "roles": ["consumer"]});
    let publish_other = format!("/api/v1/catalog/{}/publish", encode(&other_code));

    // (method, path, body, roles allowed)
    type Case = (&'static str, String, Option<Value>, &'static [&'static str]);
    let all: &'static [&'static str] = &ROLES;
    let cases: Vec<Case> = vec![
        ("GET", "/api/v1/node".into(), None, all),
        ("GET", "/api/v1/sync".into(), None, all),
        ("GET", "/api/v1/catalog".into(), None, all),
        ("GET", "/api/v1/organizations".into(), None, all),
        ("GET", "/api/v1/divisions".into(), None, all),
        ("POST", "/api/v1/catalog".into(), Some(own_entry), &["admin", "cataloger"]),
        ("POST", "/api/v1/catalog".into(), Some(sub_entry), &["admin", "cataloger"]),
        ("POST", "/api/v1/catalog".into(), Some(their_entry), &["admin"]),
        ("POST", publish_other, Some(json!({})), &["admin"]),
        ("POST", "/api/v1/organizations".into(), Some(new_org(1)), &["admin"]),
        ("GET", "/api/v1/accounts".into(), None, &["admin"]),
        ("GET", "/api/v1/audit".into(), None, &["admin", "auditor"]),
        ("GET", "/api/v1/audit/verify".into(), None, &["admin", "auditor"]),
        ("GET", "/metrics".into(), None, &["admin", "auditor"]),
        ("POST", "/api/v1/tokens".into(), Some(json!({"label": "own"})), &["admin"]),
    ];
    for (method, path, body, allowed) in &cases {
        for role in roles {
            let mut body = body.clone();
            if *path == "/api/v1/organizations" && *method == "POST" {
                body = Some(new_org(roles.iter().position(|r| *r == role).unwrap() as u32 + 10));
            }
            let (status, reply) = fed.with_token("370100", &tokens[role]).call(method, path, body).await;
            if allowed.contains(&role) {
                assert!((200..300).contains(&status), "{role} {method} {path}: {status} {reply}");
            } else {
                assert_eq!(status, 403, "{role} {method} {path}: {reply}");
                assert!(
                    reply["error"].as_str().is_some_and(|e| !e.is_empty()),
                    "403 without a reason: {reply}"
                );
            }
        }
    }
    for role in roles {
        let (status, _) = fed
            .with_token("370100", &tokens[role])
            .call("POST", "/api/v1/accounts", Some(new_account(role)))
            .await;
        assert_eq!(status, if role == "admin" { 201 } else { 403 }, "{role} creating an account");
    }
    // The cataloger cannot publish or withdraw for another organization either.
    let (status, reply) = fed
        .with_token("370100", &tokens["cataloger"])
        .call("POST", &format!("/api/v1/catalog/{}/withdraw", encode(&other_code)), None)
        .await;
    assert_eq!(status, 403, "{reply}");
    // API tokens: usable, listed, revocable.
    let (status, issued) = fed
        .with_token("370100", &tokens["admin"])
        .call("POST", "/api/v1/tokens", Some(json!({"label": "ci", "username": "consumer"})))
        .await;
    assert_eq!(status, 201, "{issued}");
    let api = issued["token"].as_str().unwrap().to_string();
    let id = issued["id"].as_str().unwrap().to_string();
    assert_eq!(fed.with_token("370100", &api).call("GET", "/api/v1/node", None).await.0, 200);
    assert_eq!(
        fed.with_token("370100", &tokens["cataloger"])
            .call("DELETE", &format!("/api/v1/tokens/{id}"), None)
            .await
            .0,
        403
    );
    assert_eq!(
        fed.with_token("370100", &tokens["consumer"])
            .call("DELETE", &format!("/api/v1/tokens/{id}"), None)
            .await
            .0,
        200
    );
    assert_eq!(fed.with_token("370100", &api).call("GET", "/api/v1/node", None).await.0, 401);
    // Logins, refusals and changes are in the audit log, attributed.
    let (_, audit) = fed.get("370100", "/api/v1/audit?kind=login.&limit=1000").await;
    let kinds: Vec<&str> =
        audit["records"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"login.success") && kinds.contains(&"login.failure"), "{kinds:?}");
    let (_, denied) = fed.get("370100", "/api/v1/audit?kind=access.denied&actor=account:consumer").await;
    assert!(denied["returned"].as_u64().unwrap() > 0, "{denied}");
    let (_, saves) = fed.get("370100", "/api/v1/audit?kind=catalog.save&actor=account:cataloger").await;
    assert_eq!(saves["returned"], 2, "{saves}");
    fed.fed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_chain_verifies_and_a_flipped_byte_is_found() {
    let mut fed = Fed::launch(FOUR_PROVINCES).await;
    let code = fed.publish("370100", "审计资源", "federation").await;
    fed.wait_seen("100000", "370100", &code, "published", 1).await;
    let (_, verify) = fed.get("370100", "/api/v1/audit/verify").await;
    assert_eq!(verify["ok"], true, "{verify}");
    let records = verify["records"].as_u64().unwrap();
    assert!(records >= 5, "{verify}");
    let (_, kinds) = fed.get("370100", "/api/v1/audit?limit=1000").await;
    let kinds: Vec<&str> =
        kinds["records"].as_array().unwrap().iter().map(|r| r["kind"].as_str().unwrap()).collect();
    // Admin changes and federation events; accepted deltas are recorded by the
    // signed logs themselves, not one audit record each.
    for kind in ["node.started", "peer.connected", "organization.register", "catalog.save", "catalog.publish"]
    {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }

    // Stop the node, flip one byte of record 3 in its sled folder, restart.
    fed.fed.stop(nid("370100")).await.unwrap();
    let store = fed.fed.data_dir(nid("370100")).unwrap().join(cascade_runtime::STORE_DIR);
    {
        let db = sled::open(&store).unwrap();
        let key = cascade_store::audit_key(3);
        let mut value = db.get(key).unwrap().unwrap().to_vec();
        let middle = value.len() / 2;
        value[middle] ^= 0x01;
        db.insert(key, value).unwrap();
        db.flush().unwrap();
    }
    fed.fed.start(nid("370100")).await.unwrap();
    let (_, verify) = fed.get("370100", "/api/v1/audit/verify").await;
    assert_eq!(verify["ok"], false, "{verify}");
    assert_eq!(verify["first_break"], 3, "{verify}");
    fed.fed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_audit_tail_is_found_against_the_checkpoint_its_witnesses_hold() {
    let mut fed = Fed::launch(FOUR_PROVINCES).await;
    let code = fed.publish("370100", "审计资源", "federation").await;
    fed.wait_seen("100000", "370100", &code, "published", 1).await;
    // Only auditors and admins sign checkpoints; a refusal is audited.
    let consumer = fed.post("370100", "/api/v1/accounts", json!({"username": "reader", "password": "a long enough password", "organization": fed.register_org("370100").await, "roles": ["consumer"]})).await;
    assert_eq!(consumer.0, 201, "{}", consumer.1);
    let (_, session) = fed.login("370100", "reader", "a long enough password").await;
    let reader = fed.with_token("370100", session["token"].as_str().unwrap());
    assert_eq!(reader.call("POST", "/api/v1/audit/checkpoints", None).await.0, 403);
    // A checkpoint, signed into Jinan's federation log: every node keeps it.
    let (status, checkpoint) = fed.post("370100", "/api/v1/audit/checkpoints", json!({})).await;
    assert_eq!(status, 201, "{checkpoint}");
    let witnessed = checkpoint["records"].as_u64().unwrap();
    let delta_seq = checkpoint["delta_seq"].as_u64().unwrap();
    // Not again within its minimum gap: a script cannot flood the federation.
    assert_eq!(fed.post_once("370100", "/api/v1/audit/checkpoints", json!({})).await.0, 429);
    eventually("the national node witnesses it", || async {
        let (_, node) = fed.get("100000", "/api/v1/node").await;
        node["version_vector"].as_array().unwrap().iter().any(|v| {
            v["origin"] == 370100 && v["scope"] == "federation" && v["seq"].as_u64() >= Some(delta_seq)
        })
    })
    .await;
    let (_, verify) = fed.get("370100", "/api/v1/audit/verify").await;
    assert_eq!(verify["ok"], true, "{verify}");
    assert_eq!(verify["witnessed"]["records"], witnessed, "{verify}");
    assert_eq!(verify["witnessed"]["ok"], true, "{verify}");

    // Stop the node and cut its audit log's tail, from two records before the
    // witnessed one: what remains still chains perfectly.
    fed.fed.stop(nid("370100")).await.unwrap();
    let store = fed.fed.data_dir(nid("370100")).unwrap().join(cascade_runtime::STORE_DIR);
    {
        let db = sled::open(&store).unwrap();
        let mut seq = witnessed - 1;
        while db.remove(cascade_store::audit_key(seq)).unwrap().is_some() {
            seq += 1;
        }
        db.flush().unwrap();
    }
    fed.fed.start(nid("370100")).await.unwrap();
    let (_, verify) = fed.get("370100", "/api/v1/audit/verify").await;
    assert_eq!(verify["first_break"], serde_json::Value::Null, "the chain alone holds: {verify}");
    assert_eq!(verify["ok"], false, "{verify}");
    assert_eq!(verify["witnessed"]["ok"], false, "{verify}");
    // The node will not sign a checkpoint over it, and says why.
    let (status, refused) = fed.post("370100", "/api/v1/audit/checkpoints", json!({})).await;
    assert_eq!(status, 409, "{refused}");
    let (_, tampered) = fed.get("370100", "/api/v1/audit?kind=audit.tampered").await;
    assert_eq!(tampered["returned"], 1, "{tampered}");
    fed.fed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_readiness_and_sync_speak_their_formats() {
    let mut fed = Fed::launch(FOUR_PROVINCES).await;
    let code = fed.publish("370100", "度量资源", "federation").await;
    fed.wait_seen("100000", "370100", &code, "published", 1).await;
    assert_eq!(fed.get("370000", "/api/v1/node").await.0, 200);
    // Qingdao's link is not on the publish's path: it may still be coming up.
    eventually("Shandong counts its three neighbours connected", || async {
        sample(&scrape(&fed, "370000").await, "cascade_peers_connected", &[]) == Some(3.0)
    })
    .await;
    let metrics = scrape(&fed, "370000").await;
    assert!(sample(&metrics, "cascade_deltas_in_total", &[]).unwrap() >= 2.0);
    assert!(sample(&metrics, "cascade_deltas_out_total", &[]).unwrap() >= 2.0);
    assert!(sample(&metrics, "cascade_store_bytes", &[]).unwrap() > 0.0);
    assert!(metrics.samples.iter().any(|s| s.metric.starts_with("cascade_http_request")), "no HTTP metrics");
    assert_eq!(sample(&metrics, "cascade_deltas_rejected_total", &[("reason", "bad_signature")]), Some(0.0));
    let (_, sync) = fed.get("370000", "/api/v1/sync").await;
    assert_eq!(sync["peers"].as_array().unwrap().len(), 3, "{sync}");
    // Readiness follows the parent link.
    let url = fed.fed.node(nid("370100")).unwrap().admin_url.clone();
    let http = reqwest::Client::new();
    assert_eq!(http.get(format!("{url}/readyz")).send().await.unwrap().status(), 200);
    fed.fed.stop(nid("370000")).await.unwrap();
    eventually("Jinan is not ready without its parent", || async {
        http.get(format!("{url}/readyz")).send().await.unwrap().status() == 503
    })
    .await;
    fed.fed.start(nid("370000")).await.unwrap();
    eventually("Jinan is ready again", || async {
        http.get(format!("{url}/readyz")).send().await.unwrap().status() == 200
    })
    .await;
    fed.fed.shutdown().await.unwrap();
}

/// Every folder and file under `dir`, with its permission bits.
fn modes(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = vec![(dir.to_path_buf(), std::fs::metadata(dir).unwrap().permissions().mode() & 0o777)];
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            out.extend(modes(&entry.path()));
        } else {
            out.push((entry.path(), entry.metadata().unwrap().permissions().mode() & 0o777));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_folder_is_private_and_an_exposed_secret_stops_the_start() {
    use std::os::unix::fs::PermissionsExt;
    let mut fed = Fed::launch(TWO_NODES).await;
    fed.register_org("370000").await;
    let dir = fed.fed.data_dir(nid("370000")).unwrap().to_path_buf();
    let all = modes(&dir);
    assert!(all.iter().any(|(p, _)| p.ends_with(cascade_runtime::TOKEN_FILE)), "{all:?}");
    assert!(all.iter().filter(|(p, _)| p.starts_with(dir.join(cascade_runtime::STORE_DIR))).count() > 1);
    for (path, mode) in &all {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} is {mode:03o}", path.display());
    }

    // A token file others can read stops the start, saying which file and why.
    fed.fed.stop(nid("370000")).await.unwrap();
    // (What the operator keeps beside the node's own files is theirs: left alone.)
    let notes = dir.join("operator-notes.txt");
    std::fs::write(&notes, "runbook").unwrap();
    std::fs::set_permissions(&notes, std::fs::Permissions::from_mode(0o644)).unwrap();
    let token = dir.join(cascade_runtime::TOKEN_FILE);
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = fed.fed.start(nid("370000")).await.expect_err("an exposed token must stop the start");
    let message = format!("{refused:#}");
    assert!(message.contains("admin.token") && message.contains("other users"), "{message}");
    // Put right, the node starts with its state.
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    fed.fed.start(nid("370000")).await.unwrap();
    assert_eq!(std::fs::metadata(&notes).unwrap().permissions().mode() & 0o777, 0o644);
    let (status, orgs) = fed.get("370000", "/api/v1/organizations").await;
    assert_eq!((status, orgs["returned"].as_u64()), (200, Some(1)), "{orgs}");
    fed.fed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_and_administrators_manage_passwords_sessions_and_disabled_accounts() {
    let fed = Fed::launch(TWO_NODES).await;
    let ours = fed.register_org("370000").await;
    let body =
        json!({"username": "zhao", "password": PASSWORD, "organization": ours, "roles": ["cataloger"]});
    assert_eq!(fed.post("370000", "/api/v1/accounts", body).await.0, 201);
    let session = || async {
        let (status, body) = fed.login("370000", "zhao", PASSWORD).await;
        assert_eq!(status, 200, "{body}");
        body["token"].as_str().unwrap().to_string()
    };
    let (first, second) = (session().await, session().await);
    let (status, list) = fed.with_token("370000", &first).call("GET", "/api/v1/sessions", None).await;
    assert_eq!((status, list["returned"].as_u64()), (200, Some(2)), "{list}");

    // An owner proves who they are before changing their own password.
    let me = fed.with_token("370000", &first);
    let change = |body: Value| me.call("POST", "/api/v1/accounts/zhao/password", Some(body));
    let new_password = "a much longer new passphrase";
    let (status, body) = change(json!({"password": new_password})).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("current")), "{body}");
    let (status, body) = change(json!({"password": new_password, "current": "not it at all"})).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("current")), "{body}");
    let (status, body) = change(json!({"password": new_password, "current": PASSWORD})).await;
    assert_eq!(status, 200, "{body}");
    // Every session of the account ended; the old password no longer opens one.
    for token in [&first, &second] {
        assert_eq!(fed.with_token("370000", token).call("GET", "/api/v1/sessions", None).await.0, 401);
    }
    assert_eq!(fed.login("370000", "zhao", PASSWORD).await.0, 401);
    let (status, body) = fed.login("370000", "zhao", new_password).await;
    assert_eq!(status, 200, "{body}");
    let third = body["token"].as_str().unwrap().to_string();

    // Logging out ends the session presented.
    let (status, _) = fed.with_token("370000", &third).call("POST", "/api/v1/logout", None).await;
    assert_eq!(status, 200);
    assert_eq!(fed.with_token("370000", &third).call("GET", "/api/v1/sessions", None).await.0, 401);

    // A cataloger cannot disable anyone; an administrator can, and the account's
    // API tokens stop working with it until it is enabled again.
    let (_, body) = fed.login("370000", "zhao", new_password).await;
    let fourth = body["token"].as_str().unwrap().to_string();
    let (status, issued) = fed.post("370000", "/api/v1/tokens", json!({"username": "zhao"})).await;
    assert_eq!(status, 201, "{issued}");
    let api_token = issued["token"].as_str().unwrap().to_string();
    let (status, _) =
        fed.with_token("370000", &fourth).call("POST", "/api/v1/accounts/zhao/disable", None).await;
    assert_eq!(status, 403);
    assert_eq!(fed.post("370000", "/api/v1/accounts/zhao/disable", json!({})).await.0, 200);
    assert_eq!(fed.with_token("370000", &api_token).call("GET", "/api/v1/sessions", None).await.0, 401);
    assert_ne!(fed.login("370000", "zhao", new_password).await.0, 200);
    assert_eq!(fed.post("370000", "/api/v1/accounts/zhao/enable", json!({})).await.0, 200);
    assert_eq!(fed.login("370000", "zhao", new_password).await.0, 200);

    // An administrator sets another account's password without knowing it.
    let body = json!({"password": "set by the administrator"});
    assert_eq!(fed.post("370000", "/api/v1/accounts/zhao/password", body).await.0, 200);
    assert_eq!(fed.login("370000", "zhao", "set by the administrator").await.0, 200);

    // A username no account can have is refused without work or a record of it.
    let long = "x".repeat(100_000);
    assert_eq!(fed.login("370000", &long, "whatever").await.0, 401);
    let (_, audit) = fed.get("370000", "/api/v1/audit?kind=login.failure").await;
    let records = audit["records"].as_array().unwrap();
    assert!(records.iter().all(|r| r["actor"].as_str().unwrap().len() < 200), "{audit}");
    fed.fed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_interface_serves_https_with_a_certificate_from_the_federation_pki() {
    let fed = Fed::launch(TWO_NODES).await;
    let node = fed.fed.node(nid("370000")).expect("running").node.clone();
    let (_, root) = creds_of(&fed, "370000");
    // Issued by the province's CA for the address it is reached at; read back
    // from PEM files as `[admin_tls]` reads them.
    let creds = provincial_ca(&fed, "370000").issue_https(&["127.0.0.1".to_string()]).expect("issued");
    let dir = tempfile::tempdir().expect("a folder");
    let (cert, key) = (dir.path().join("https.pem"), dir.path().join("https.key"));
    std::fs::write(&cert, creds.chain_pem()).expect("cert");
    cascade_certs::write_private(&key, creds.key_pem().as_bytes()).expect("key");
    let tls = cascade_admin::tls::server_config(&cert, &key).expect("a server configuration");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(cascade_admin::serve(node.clone(), listener, Some(tls), async {
        let _ = stopped.await;
    }));

    let get = |path: &str, token: Option<&str>| {
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n")
    };
    let (status, _) = https_request(addr, &root, &get("/healthz", None)).await.expect("HTTPS");
    assert_eq!(status, 200);
    let (status, answer) =
        https_request(addr, &root, &get("/api/v1/node", Some(node.admin_token()))).await.expect("HTTPS");
    assert_eq!(status, 200, "{answer}");
    let (status, _) = https_request(addr, &root, &get("/api/v1/node", None)).await.expect("HTTPS");
    assert_eq!(status, 401, "still authenticated over TLS");
    // The node's own links name the scheme the request came by.
    let (status, answer) = https_request(addr, &root, &get("/open/catalog.ttl", None)).await.expect("HTTPS");
    assert_eq!(status, 200);
    assert!(answer.contains(&format!("<https://{addr}/open/catalog> a dcat:Catalog")), "{answer}");

    // A client trusting another root is refused, and plain HTTP gets no answer.
    let stranger = cascade_certs::Authority::new_root("another federation").expect("root").cert_der();
    let refused =
        https_request(addr, &stranger, &get("/healthz", None)).await.expect_err("an unknown issuer");
    assert!(refused.to_lowercase().contains("certificate"), "{refused}");
    assert!(reqwest::get(format!("http://{addr}/healthz")).await.is_err(), "no plain HTTP on the TLS port");
    // The server still serves after both.
    assert_eq!(https_request(addr, &root, &get("/healthz", None)).await.map(|a| a.0), Ok(200));

    let _ = stop.send(());
    server.await.expect("joined").expect("served");
}
