//! Service calls through the gateway, real QUIC on 127.0.0.1, against a fast
//! upstream HTTP server in the same process.
//!
//! `cargo bench -p cascade-tests --bench gateway` (seconds per round with
//! CASCADE_BENCH_SECONDS, default 3; streamed bytes with CASCADE_BENCH_STREAM_MIB,
//! default 1024).
//!
//! Baselines measured in the same run: calls straight to the upstream (64
//! callers), and one raw QUIC stream with mTLS between two endpoints of this
//! process moving the same bytes as the streamed bodies.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use axum::body::Body;
use axum::extract::Path;
use axum::routing::{get, post};
use axum::Router;
use cascade_tests::*;
use futures_util::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};

const CALLERS: usize = 64;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The fast upstream: a tiny answer, a sink that counts, a source of n bytes.
async fn upstream() -> String {
    let app = Router::new()
        .route("/fast", get(|| async { "ok" }))
        .route(
            "/sink",
            post(|body: Body| async move {
                let mut n = 0usize;
                let mut stream = body.into_data_stream();
                while let Some(Ok(chunk)) = stream.next().await {
                    n += chunk.len();
                }
                n.to_string()
            }),
        )
        .route(
            "/source/{n}",
            get(|Path(n): Path<usize>| async move {
                let chunk = bytes::Bytes::from(vec![7u8; 64 * 1024]);
                let count = n.div_ceil(chunk.len());
                let stream = futures_util::stream::iter((0..count).map(move |i| {
                    let len = if i + 1 == count { n - i * chunk.len() } else { chunk.len() };
                    Ok::<_, std::io::Error>(chunk.slice(..len))
                }));
                Body::from_stream(stream)
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A service of `at`'s bureau for an unconditional entry, granted to Jinan's
/// bureau; returns its id.
async fn granted_service(fed: &Fed, at: &str, upstream: &str, consumer: &str) -> String {
    let mut entry = fed.entry_at(at, "bench").await;
    entry["share_type"] = json!("unconditional");
    let (_, saved) = fed.post(at, "/api/v1/catalog", entry).await;
    let code = saved["code"].as_str().unwrap().to_string();
    fed.post(at, &format!("/api/v1/catalog/{}/publish", encode(&code)), json!({"scope": "federation"})).await;
    let provider = cascade_protocol::org::Organization::government_code(nid(at), 1);
    let body = json!({"name": "bench", "entry": {"origin": nid(at), "code": code}, "provider": provider,
        "kind": "query", "endpoints": [{"method": "GET", "path": "/fast"}, {"method": "POST", "path": "/sink"},
        {"method": "GET", "path": "/source/{n}"}], "sensitivity": 1, "rate_limit_per_minute": 600000,
        "upstream": upstream});
    let (_, created) = fed.post(at, "/api/v1/services", body).await;
    let service = created["id"].as_str().unwrap().to_string();
    eventually("Jinan sees the service", || async {
        fed.get("370100", &format!("/api/v1/services/{service}")).await.0 == 200
    })
    .await;
    let apply =
        json!({"resource": {"service": service}, "consumer": consumer, "purpose": "bench", "period_days": 1});
    let (_, a) = fed.post("370100", "/api/v1/applications", apply).await;
    let id = a["id"].as_str().unwrap().to_string();
    eventually("granted", || async {
        fed.get("370100", &format!("/api/v1/applications/{id}")).await.1["state"] == "granted"
    })
    .await;
    service
}

/// `callers` callers for `seconds`: calls per second, p50 and p99.
async fn load(url: &str, token: Option<&str>, seconds: u64, callers: usize) -> (f64, Duration, Duration) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(callers).build().unwrap();
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut running = tokio::task::JoinSet::new();
    for _ in 0..callers {
        let (client, url, token) = (client.clone(), url.to_string(), token.map(str::to_string));
        running.spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let started = Instant::now();
                let mut request = client.get(&url);
                if let Some(t) = &token {
                    request = request.bearer_auth(t);
                }
                let response = request.send().await.expect("call");
                assert_eq!(response.status(), 200, "{url}");
                response.bytes().await.expect("body");
                latencies.push(started.elapsed());
            }
            latencies
        });
    }
    let mut all = Vec::new();
    while let Some(done) = running.join_next().await {
        all.extend(done.unwrap());
    }
    all.sort();
    let rate = all.len() as f64 / seconds as f64;
    (rate, all[all.len() / 2], all[all.len() * 99 / 100])
}

fn mib_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / took.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // As the cascade binary runs.
    cascade_runtime::memory::no_huge_pages();
    raise_open_files(4096);
    let seconds = env("CASCADE_BENCH_SECONDS", 3);
    let stream_bytes = env("CASCADE_BENCH_STREAM_MIB", 1024) << 20;
    let fed = Fed::launch(SIX_NODES).await;
    let upstream = upstream().await;
    let consumer = fed.register_org("370100").await;
    let body = json!({"username": "bench", "password": "correct horse battery staple",
        "organization": consumer, "roles": ["consumer"]});
    fed.post("370100", "/api/v1/accounts", body).await;
    let (_, session) = fed.login("370100", "bench", "correct horse battery staple").await;
    let token = session["token"].as_str().unwrap().to_string();
    let (jinan, _) = fed.url_token("370100");
    let mut targets = vec![("direct to the upstream".to_string(), format!("{upstream}/fast"), None)];
    for (at, hops) in [("370100", 0), ("370200", 2), ("440100", 4)] {
        let service = granted_service(&fed, at, &upstream, &consumer).await;
        targets.push((
            format!("gateway, {hops} hops"),
            format!("{jinan}/gateway/{service}/fast"),
            Some(token.clone()),
        ));
    }
    let qingdao = targets[2].1.trim_end_matches("/fast").to_string();

    println!("calls: {CALLERS} callers, {seconds} s a round, two rounds alternating (the mean of the two)");
    let mut results: Vec<Vec<(f64, Duration, Duration)>> = vec![Vec::new(); targets.len()];
    for _ in 0..2 {
        for (i, (_, url, token)) in targets.iter().enumerate() {
            results[i].push(load(url, token.as_deref(), seconds, CALLERS).await);
        }
    }
    let summary: Vec<(f64, Duration, Duration)> = results
        .iter()
        .map(|r| {
            let n = r.len() as f64;
            let rate = r.iter().map(|x| x.0).sum::<f64>() / n;
            let p50 = r.iter().map(|x| x.1).sum::<Duration>() / r.len() as u32;
            let p99 = r.iter().map(|x| x.2).sum::<Duration>() / r.len() as u32;
            (rate, p50, p99)
        })
        .collect();
    let (direct_rate, direct_p50, _) = summary[0];
    for ((name, _, _), (rate, p50, p99)) in targets.iter().zip(&summary) {
        println!(
            "  {name:<24} {rate:>8.0} calls/s ({:>5.1} % of direct)  p50 {:>6.2} ms (+{:.2} ms)  p99 {:>6.2} ms",
            100.0 * rate / direct_rate,
            p50.as_secs_f64() * 1e3,
            (p50.as_secs_f64() - direct_p50.as_secs_f64()).max(0.0) * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }

    // Latency without queueing: one caller at a time.
    println!("latency: 1 caller, {seconds} s each");
    let mut alone = Vec::new();
    for (_, url, token) in &targets {
        alone.push(load(url, token.as_deref(), seconds, 1).await);
    }
    let base = alone[0].1;
    for ((name, _, _), (rate, p50, p99)) in targets.iter().zip(&alone) {
        println!(
            "  {name:<24} {rate:>8.0} calls/s  p50 {:>6.3} ms (+{:.3} ms)  p99 {:>6.3} ms",
            p50.as_secs_f64() * 1e3,
            (p50.as_secs_f64() - base.as_secs_f64()).max(0.0) * 1e3,
            p99.as_secs_f64() * 1e3
        );
    }

    // Streaming through two hops (Jinan → Shandong → Qingdao), each way.
    let raw = raw_quic(&fed, stream_bytes, false).await;
    let before = resident_bytes();
    // Peak resident memory from here on (Linux: "5" resets the high-water mark).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let client = reqwest::Client::new();
    let body = futures_util::stream::iter(
        (0..stream_bytes / (256 << 10))
            .map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![9u8; 256 << 10]))),
    );
    let started = Instant::now();
    let sent = client
        .post(format!("{qingdao}/sink"))
        .bearer_auth(&token)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    assert_eq!(sent.text().await.unwrap(), stream_bytes.to_string());
    let up = started.elapsed();
    let started = Instant::now();
    let mut download =
        client.get(format!("{qingdao}/source/{stream_bytes}")).bearer_auth(&token).send().await.unwrap();
    let mut got = 0u64;
    while let Some(chunk) = download.chunk().await.unwrap() {
        got += chunk.len() as u64;
    }
    assert_eq!(got, stream_bytes);
    let down = started.elapsed();
    let peak = peak_resident();
    println!(
        "streaming {} MiB (six nodes, the upstream and the callers in this one process):",
        stream_bytes >> 20
    );
    println!("  raw QUIC stream (mTLS)        {:>7.0} MiB/s", mib_per_s(stream_bytes, raw));
    for (name, took) in [("request body, 2 hops", up), ("response body, 2 hops", down)] {
        let rate = mib_per_s(stream_bytes, took);
        println!(
            "  {name:<29} {rate:>7.0} MiB/s ({:>5.1} % of raw QUIC)",
            100.0 * rate / mib_per_s(stream_bytes, raw)
        );
    }
    println!(
        "  memory: resident {} MiB before the streams, peak {} MiB while they ran (whole process)",
        before >> 20,
        peak >> 20
    );
    fed.fed.shutdown().await.unwrap();
}
