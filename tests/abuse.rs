//! Availability under abuse, end to end on 127.0.0.1: floods of failed handshakes,
//! slow HTTP clients, heavy queries and password guesses cost a node a bounded
//! amount of work, memory and audit records, and it keeps serving.

use cascade_tests::*;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// A QUIC client that presents no certificate: every handshake with a node fails.
fn anonymous_client(root: &[u8]) -> quinn::Endpoint {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from(root.to_vec())).unwrap();
    let mut crypto =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    crypto.alpn_protocols = vec![cascade_protocol::ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
}

/// Audit records of one kind at a node (the newest, up to 1000).
async fn audited(fed: &Fed, at: &str, kind: &str) -> Vec<serde_json::Value> {
    let (status, body) = fed.get(at, &format!("/api/v1/audit?kind={kind}&limit=1000")).await;
    assert_eq!(status, 200, "{body}");
    body["records"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_failed_handshakes_cost_a_handful_of_audit_records() {
    let fed = Fed::launch(FOUR_PROVINCES).await;
    let national = fed.fed.node(nid("100000")).unwrap().node.quic_addr();
    let (_, root) = creds_of(&fed, "100000");
    let before = audited(&fed, "100000", "peer.").await.len();

    let client = anonymous_client(&root);
    let name = cascade_certs::NodeIdentity::server_name_of(nid("100000"));
    let mut attempts = tokio::task::JoinSet::new();
    let mut failed = 0;
    for _ in 0..2000 {
        if attempts.len() >= 32 {
            failed += u32::from(attempts.join_next().await.unwrap().unwrap());
        }
        let connecting = client.connect(national, &name).unwrap();
        attempts.spawn(async move {
            // The server may only reject the missing certificate after the client
            // thinks it is done (TLS 1.3): then the connection closes at once.
            match tokio::time::timeout(DEADLINE, connecting).await.expect("an answer") {
                Err(_) => true,
                Ok(c) => !matches!(
                    tokio::time::timeout(DEADLINE, c.closed()).await.expect("closed"),
                    quinn::ConnectionError::LocallyClosed
                ),
            }
        });
    }
    while let Some(done) = attempts.join_next().await {
        failed += u32::from(done.unwrap());
    }
    assert_eq!(failed, 2000, "every attempt failed");

    // Every attempt is counted; most were turned away before any cryptography.
    eventually("the national node counts 2000 refused handshakes", || async {
        let metrics = scrape(&fed, "100000").await;
        sample(&metrics, "cascade_handshakes_refused_total", &[]) >= Some(2000.0)
    })
    .await;
    let metrics = scrape(&fed, "100000").await;
    let throttled = sample(&metrics, "cascade_handshakes_throttled_total", &[]).unwrap();
    assert!(throttled >= 1900.0, "{throttled} turned away early");
    // The audit log grew by a record per reason, not per attempt.
    let records = audited(&fed, "100000", "peer.").await;
    let grown = records.len() - before;
    assert!((1..=4).contains(&grown), "{grown} records: {records:#?}");
    assert!(records.iter().any(|r| r["actor"] == "peer:127.0.0.1"), "{records:#?}");

    // The node kept serving: its links held and a publish propagates through it.
    let code = fed.publish("370100", "after the flood", "federation").await;
    fed.wait_seen("110000", "370100", &code, "published", 1).await;
    fed.fed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_half_open_http_connections_are_closed_within_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raise_open_files(8192);
    let fed = Fed::launch(TWO_NODES).await;
    let (url, _) = fed.url_token("100000");
    let addr = url.trim_start_matches("http://").to_string();
    let opened = tokio::time::Instant::now();
    let mut lorises = Vec::new();
    for _ in 0..2000 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        // Headers begun and never finished.
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: cascade\r\n").await.expect("write");
        lorises.push(s);
    }
    // Meanwhile the node answers: its oldest silent connections make room.
    for _ in 0..5 {
        let (status, node) = fed.get("100000", "/api/v1/node").await;
        assert_eq!(status, 200, "{node}");
    }
    // Every half-open connection is closed by the server within the header time-out
    // (a margin for a loaded machine; without the time-out they stay open forever).
    let deadline = opened + cascade_admin::HEADER_READ_TIMEOUT + Duration::from_secs(10);
    let mut waits = tokio::task::JoinSet::new();
    for mut s in lorises {
        waits.spawn(async move {
            let mut buf = [0u8; 1024];
            tokio::time::timeout_at(deadline, async {
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => continue,
                    }
                }
            })
            .await
            .is_ok()
        });
    }
    let mut closed = 0;
    while let Some(done) = waits.join_next().await {
        closed += u32::from(done.unwrap());
    }
    assert_eq!(closed, 2000, "connections the server closed in time");
    // A new connection (the pooled one may be among those the server evicted).
    let fresh = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let (url, _) = fed.url_token("100000");
    let status = fresh.get(format!("{url}/healthz")).send().await.expect("health").status();
    assert_eq!(status.as_u16(), 200);
    fed.fed.shutdown().await.unwrap();
}

/// Creates an account at `id` for its own organization.
async fn account(fed: &Fed, id: &str, username: &str, password: &str) {
    let org = fed.register_org(id).await;
    let body =
        json!({"username": username, "password": password, "organization": org, "roles": ["cataloger"]});
    let (status, reply) = fed.post(id, "/api/v1/accounts", body).await;
    assert_eq!(status, 201, "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_a_password_is_throttled_and_a_login_flood_keeps_memory_bounded() {
    let fed = Fed::launch(TWO_NODES).await;
    account(&fed, "370000", "li", "correct horse battery").await;
    let (url, _) = fed.url_token("370000");
    let http = reqwest::Client::new();
    let login = |username: &str, password: &str| {
        http.post(format!("{url}/api/v1/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
    };

    // A hundred wrong passwords: a few are checked, then the account is turned away.
    let (mut refused, mut throttled, mut retry_after) = (0, 0, None);
    for _ in 0..100 {
        let resp = login("li", "wrong horse battery").await.expect("login");
        match resp.status().as_u16() {
            401 => refused += 1,
            429 => {
                throttled += 1;
                retry_after =
                    resp.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                let body: serde_json::Value = resp.json().await.expect("a JSON error");
                assert_eq!(body["status"], 429, "{body}");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!((5..=8).contains(&refused), "{refused} passwords checked before the throttle");
    assert_eq!(refused + throttled, 100);
    assert!(retry_after.is_some_and(|s| s >= 1), "429 says when to retry: {retry_after:?}");
    // Even the right password waits now; the audit log holds a tally, not 100 records.
    assert_eq!(login("li", "correct horse battery").await.expect("login").status(), 429);
    let (_, audit) = fed.get("370000", "/api/v1/audit?actor=address:127.0.0.1&kind=login.failure").await;
    let records = audit["returned"].as_u64().unwrap();
    assert!((1..=2).contains(&records), "{audit}");

    // A flood of logins (right passwords, so every one runs Argon2) leaves memory
    // bounded: Argon2 runs four at a time in reused buffers (4 x 19 MiB). Ten at
    // a time over eight accounts: each try counts against its account and address
    // while it is judged, so more in flight for one account would be turned away.
    let accounts: Vec<String> = (0..8).map(|i| format!("wang{i}")).collect();
    for name in &accounts {
        account(&fed, "370000", name, "another good password").await;
    }
    let before = resident_bytes();
    let mut flood = tokio::task::JoinSet::new();
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    for i in 0..400 {
        let request = http
            .post(format!("{url}/api/v1/login"))
            .json(&json!({"username": accounts[i % 8], "password": "another good password"}));
        flood.spawn(async move { request.send().await.map(|r| r.status().as_u16()) });
        while flood.len() >= 10 {
            let status = flood.join_next().await.unwrap().unwrap().expect("login");
            *statuses.entry(status).or_default() += 1;
        }
    }
    while let Some(done) = flood.join_next().await {
        *statuses.entry(done.unwrap().expect("login")).or_default() += 1;
    }
    assert!(statuses.keys().all(|s| [200, 429, 503].contains(s)), "{statuses:?}");
    assert!(statuses.get(&200).copied().unwrap_or(0) >= 200, "{statuses:?}");
    let grown = resident_bytes().saturating_sub(before);
    assert!(grown < 160 << 20, "resident memory grew {} MiB", grown >> 20);
    fed.fed.shutdown().await.unwrap();
}

/// Seals `n` audit records into node `id`'s store before it starts (as if it had
/// run a long while).
fn prefill_audit(fed: &Fed, id: &str, n: u64) {
    use cascade_core::audit::{AuditEvent, Chain};
    let dir = fed.fed.data_dir(nid(id)).expect("a node").join(cascade_runtime::STORE_DIR);
    let store = cascade_store::Store::open(&dir, nid(id)).expect("store");
    let mut chain = Chain::after(None);
    let mut audit = Vec::new();
    for i in 0..n {
        let event = AuditEvent {
            actor: format!("peer:10.0.{}.{}", i / 250 % 250, i % 250),
            org: None,
            kind: "peer.refused".into(),
            detail: "handshake failed: a long-gone flood".into(),
        };
        audit.push(chain.seal(1_700_000_000_000 + i, event));
        if audit.len() == 4096 || i + 1 == n {
            let batch = cascade_core::WriteBatch { audit: std::mem::take(&mut audit), ..Default::default() };
            store.apply(&batch).expect("apply");
        }
    }
    store.flush().expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_heavy_audit_queries_leave_other_nodes_and_the_federation_unharmed() {
    let mut fed = Fed::prepare(FOUR_PROVINCES);
    prefill_audit(&fed, "370000", 25_000);
    let ids: Vec<_> = fed.fed.topology().nodes.iter().map(|n| n.id).collect();
    for id in ids {
        fed.fed.start(id).await.expect("start");
    }
    let (province, token) = fed.url_token("370000");
    let (national, _) = fed.url_token("100000");
    // Heavy: a kind prefix its index narrows only to "peer.*", so each query reads
    // its whole budget of records and finds nothing.
    let http = reqwest::Client::new();
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let request =
            http.get(format!("{province}/api/v1/audit?kind=peer.nothing.&limit=1000")).bearer_auth(&token);
        flood.spawn(async move {
            let resp = request.send().await.expect("audit query");
            let status = resp.status().as_u16();
            let says_when = resp.headers().contains_key("retry-after");
            let body: serde_json::Value = resp.json().await.expect("JSON");
            (status, says_when, body)
        });
    }
    // Throughout: another node answers health checks promptly, and a change
    // published in Shandong reaches the national node through the flooded hub.
    let probe = reqwest::Client::new();
    let (slowest, code) = {
        let mut slowest = Duration::ZERO;
        let publishing = fed.publish("370100", "during the flood", "federation");
        tokio::pin!(publishing);
        let mut code = None;
        // A health probe every 20 ms while the flood lasts (the cadence of the
        // measurement, not a wait for anything).
        let mut probes = tokio::time::interval(Duration::from_millis(20));
        while !flood.is_empty() || code.is_none() {
            let started = std::time::Instant::now();
            let health = probe.get(format!("{national}/healthz")).send().await.expect("healthz");
            assert_eq!(health.status(), 200);
            slowest = slowest.max(started.elapsed());
            tokio::select! {
                c = &mut publishing, if code.is_none() => code = Some(c),
                _ = probes.tick() => {}
            }
            while let Some(done) = flood.try_join_next() {
                let (status, says_when, body) = done.unwrap();
                match status {
                    200 => assert!(
                        body["records"].as_array().is_some_and(|r| r.is_empty()) && body["next"].is_string(),
                        "{body}"
                    ),
                    503 => assert!(says_when, "{body}"),
                    other => panic!("{other}: {body}"),
                }
            }
        }
        (slowest, code)
    };
    assert!(slowest < Duration::from_millis(100), "the slowest /healthz took {slowest:?}");
    let code = code.unwrap();
    fed.wait_seen("100000", "370100", &code, "published", 1).await;
    // No federation link of the flooded node dropped.
    let (_, audit) = fed.get("370000", "/api/v1/audit?kind=peer.disconnected").await;
    assert_eq!(audit["returned"], 0, "{audit}");
    fed.fed.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_thousand_entries_are_listed_page_by_page_each_exactly_once() {
    const ENTRIES: usize = 12_000;
    let fed = Fed::launch(TWO_NODES).await;
    let body = fed.entry_at("370000", "entry").await;
    let (url, token) = fed.url_token("370000");
    let http = reqwest::Client::new();
    let mut work = tokio::task::JoinSet::new();
    for i in 0..ENTRIES {
        let mut body = body.clone();
        body["name"] = json!(format!("数据集 {i}"));
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        work.spawn(async move {
            let saved: serde_json::Value = http
                .post(format!("{url}/api/v1/catalog"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .expect("save")
                .json()
                .await
                .expect("saved");
            let code = saved["code"].as_str().expect("a code").replace('/', "%2F");
            let published = http
                .post(format!("{url}/api/v1/catalog/{code}/publish"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("publish");
            assert_eq!(published.status(), 200);
        });
        while work.len() >= 64 {
            work.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(done) = work.join_next().await {
        done.unwrap();
    }
    // Page by page, at the origin and at the national node once it has them all.
    for at in ["370000", "100000"] {
        eventually(&format!("{at} holds every entry"), || async {
            list_all(&fed, at).await.0.len() == ENTRIES
        })
        .await;
        let (codes, pages) = list_all(&fed, at).await;
        assert_eq!(codes.len(), ENTRIES);
        assert_eq!(pages, ENTRIES / 1000, "{at}: full pages, the last one saying it is the last");
    }
    fed.fed.shutdown().await.unwrap();
}

/// Every entry of 370000 that node `at` lists, following cursors, and how many
/// pages it took; panics if an entry comes twice.
async fn list_all(fed: &Fed, at: &str) -> (std::collections::BTreeSet<String>, usize) {
    let mut seen = std::collections::BTreeSet::new();
    let mut pages = 0;
    let mut cursor = String::new();
    loop {
        let (status, page) = fed.get(at, &format!("/api/v1/catalog?origin=370000&limit=1000{cursor}")).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        let entries = page["entries"].as_array().unwrap();
        assert_eq!(page["returned"].as_u64(), Some(entries.len() as u64));
        for e in entries {
            assert!(seen.insert(e["code"].as_str().unwrap().to_string()), "{e} listed twice");
        }
        match page["next"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return (seen, pages),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_checkpoint_requests_signs_one_and_costs_one_audit_record() {
    let fed = Fed::launch(FOUR_PROVINCES).await;
    let code = fed.publish("370100", "before the flood", "federation").await;
    fed.wait_seen("100000", "370100", &code, "published", 1).await;
    let (_, before) = fed.get("370100", "/api/v1/node").await;
    let (url, token) = fed.url_token("370100");
    let http = reqwest::Client::new();
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let request = http.post(format!("{url}/api/v1/audit/checkpoints")).bearer_auth(&token);
        flood.spawn(async move {
            let resp = request.send().await.expect("an answer");
            (resp.status().as_u16(), resp.headers().contains_key("retry-after"))
        });
    }
    let mut created = 0;
    while let Some(done) = flood.join_next().await {
        match done.unwrap() {
            (201, _) => created += 1,
            // Too soon after the one signed (429), or the node's queue full (503): both say when.
            (429 | 503, says_when) => assert!(says_when, "a refusal without Retry-After"),
            (other, _) => panic!("{other}"),
        }
    }
    assert_eq!(created, 1, "one checkpoint per gap");
    assert_eq!(audited(&fed, "370100", "audit.checkpoint").await.len(), 1);
    // One delta went out to the federation, not two hundred; the node still publishes.
    let (_, after) = fed.get("370100", "/api/v1/node").await;
    let originated = |n: &serde_json::Value| n["deltas"]["originated"].as_u64().unwrap_or(0);
    assert_eq!(originated(&after) - originated(&before), 1, "{after}");
    let code = fed.publish("370100", "after the flood", "federation").await;
    fed.wait_seen("100000", "370100", &code, "published", 1).await;
    fed.fed.shutdown().await.unwrap();
}
