//! Availability under abuse, end to end on 127.0.0.1: floods of failed handshakes,
//! slow HTTP clients, heavy queries and password guesses cost a node a bounded
//! amount of work, memory and audit records, and it keeps serving.

use cascade_tests::*;
use std::sync::Arc;

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
