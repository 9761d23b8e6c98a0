//! Prometheus metrics of a node, in the text exposition format 0.0.4.
//!
//! Two sources are rendered together by [`render`]:
//!
//! * [`NodeMetrics`], a snapshot of the node's sync state that the caller builds
//!   at scrape time (peers, delta counters, store size, audit records);
//! * [`HttpMetrics`], filled by the [`track`] middleware as requests are served:
//!   request counts by (route template, method, status) and a latency histogram
//!   by route template.
//!
//! Wiring, in the admin router:
//!
//! ```text
//! let http = Arc::new(HttpMetrics::default());
//! Router::new()
//!     .route("/metrics", get(/* render(&node_metrics, &http) with CONTENT_TYPE */))
//!     // ... other routes, nests, fallback ...
//!     .layer(axum::middleware::from_fn_with_state(http.clone(), track))
//! ```
//!
//! `track` must be added with `Router::layer` (not around the finished
//! service), so that it runs after routing and sees the route template in
//! [`MatchedPath`]; requests that matched no route (the fallback) are labelled
//! `route="unmatched"`.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// The content type to answer with.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Most distinct `route` label values kept by [`HttpMetrics`]; requests on any
/// further route are recorded under `route="other"` (so at most
/// `MAX_ROUTES + 1` values exist). Routes are templates chosen by the router,
/// so this is only a guard against a series explosion should a caller pass raw
/// paths to [`HttpMetrics::record`]; the admin API has about a dozen.
pub const MAX_ROUTES: usize = 256;

/// Route label of requests that matched no route (the router's fallback).
const UNMATCHED: &str = "unmatched";
/// Route label (and method label) used beyond the bounds.
const OTHER: &str = "other";

/// Upper bounds (seconds) of the latency histogram buckets; `+Inf` is implied.
const BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// Rejection reasons whose series are always present, at zero if need be.
const KNOWN_REASONS: [&str; 8] = [
    "bad_signature",
    "broken_chain",
    "wrong_origin",
    "not_member",
    "revoked",
    "out_of_scope",
    "fork",
    "invalid",
];

/// One neighbour's sync state, for metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerMetrics {
    /// The neighbour's node id (the `peer` label).
    pub id: String,
    /// `"parent"` or `"child"` (the `role` label).
    pub role: &'static str,
    /// Whether a session with the neighbour is up.
    pub connected: bool,
    /// How many deltas the neighbour is behind us (or we behind it).
    pub lag_deltas: u64,
    /// Age in seconds of the oldest delta not yet in sync with the neighbour.
    pub lag_seconds: f64,
}

/// What the node reports besides HTTP.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeMetrics {
    /// The node's neighbours (parent and children). A peer id listed twice is
    /// rendered once, the first time.
    pub peers: Vec<PeerMetrics>,
    /// Deltas received from neighbours and accepted.
    pub deltas_in: u64,
    /// Deltas sent to neighbours.
    pub deltas_out: u64,
    /// Deltas this node signed itself.
    pub deltas_originated: u64,
    /// Deltas rejected, by reason (the `reason` label) -> count.
    pub rejected: BTreeMap<String, u64>,
    /// Frames sent to neighbours.
    pub frames_out: u64,
    /// Bytes sent to neighbours.
    pub bytes_out: u64,
    /// Size of the node's store on disk, in bytes.
    pub store_bytes: u64,
    /// Number of records in the audit log.
    pub audit_records: u64,
}

/// HTTP request metrics: counts by (route template, method, status) and a
/// latency histogram by route.
///
/// Shared as an `Arc<HttpMetrics>` between the [`track`] middleware and the
/// handler that calls [`render`].
#[derive(Debug, Default)]
pub struct HttpMetrics {
    inner: Mutex<HttpInner>,
}

#[derive(Debug, Default)]
struct HttpInner {
    /// (route, method, status) -> count.
    requests: BTreeMap<(String, String, u16), u64>,
    /// route -> latency histogram; its keys are the set of route labels in use.
    durations: BTreeMap<String, Histogram>,
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Observations per bucket, not cumulative; the last slot is `+Inf` only.
    buckets: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl HttpMetrics {
    /// Records one request.
    ///
    /// `route` should be a route template (not a raw path); past
    /// [`MAX_ROUTES`] distinct routes, new ones are counted as `"other"`.
    /// Methods outside the standard nine are counted as `"other"` too. A
    /// negative or non-finite `seconds` is recorded as 0.
    pub fn record(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let seconds = if seconds.is_finite() && seconds > 0.0 { seconds } else { 0.0 };
        let method = normalize_method(method);
        let mut inner = self.lock();
        let route = if inner.durations.contains_key(route) || inner.durations.len() < MAX_ROUTES {
            route
        } else {
            OTHER
        };
        *inner.requests.entry((route.to_string(), method.to_string(), status)).or_insert(0) += 1;
        let histogram = match inner.durations.get_mut(route) {
            Some(histogram) => histogram,
            None => inner.durations.entry(route.to_string()).or_default(),
        };
        let slot = BUCKETS.iter().position(|&bound| seconds <= bound).unwrap_or(BUCKETS.len());
        histogram.buckets[slot] += 1;
        histogram.sum += seconds;
        histogram.count += 1;
    }

    /// Metrics stay usable even if a thread panicked while holding the lock:
    /// every update leaves the maps consistent.
    fn lock(&self) -> MutexGuard<'_, HttpInner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Standard methods keep their name; anything else (extension methods can be
/// any token a client invents) is `"other"`, to bound the label's values.
fn normalize_method(method: &str) -> &str {
    const STANDARD: [&str; 9] =
        ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];
    STANDARD.iter().copied().find(|m| *m == method).unwrap_or(OTHER)
}

/// axum middleware: times each request and records it into the
/// [`HttpMetrics`] given as its state, labelled by the matched route template
/// ([`MatchedPath`], `"unmatched"` when none), the method and the status.
///
/// Wire it with `Router::layer`, outermost so it also sees the status of
/// requests that an inner layer (authentication, body limit) answers:
///
/// ```text
/// router.layer(axum::middleware::from_fn_with_state(metrics.clone(), track))
/// ```
///
/// The time measured runs until the response head is ready; streaming the
/// body afterwards is not counted.
pub async fn track(State(metrics): State<Arc<HttpMetrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = match request.extensions().get::<MatchedPath>() {
        Some(path) => path.as_str().to_string(),
        None => UNMATCHED.to_string(),
    };
    let method = request.method().clone();
    let response = next.run(request).await;
    metrics.record(&route, method.as_str(), response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

/// Renders everything in the Prometheus text exposition format 0.0.4.
pub fn render(node: &NodeMetrics, http: &HttpMetrics) -> String {
    let mut out = String::with_capacity(4096);

    // Peers, each id once.
    let mut seen = BTreeSet::new();
    let peers: Vec<&PeerMetrics> = node.peers.iter().filter(|p| seen.insert(p.id.as_str())).collect();

    family(&mut out, "cascade_peers_connected", "gauge", "Neighbours with a session up.");
    sample(&mut out, "cascade_peers_connected", &[], peers.iter().filter(|p| p.connected).count());

    family(
        &mut out,
        "cascade_peer_connected",
        "gauge",
        "Whether the session with a neighbour is up (1) or not (0).",
    );
    for p in &peers {
        sample(
            &mut out,
            "cascade_peer_connected",
            &[("peer", &p.id), ("role", p.role)],
            u8::from(p.connected),
        );
    }

    family(&mut out, "cascade_sync_lag_deltas", "gauge", "Deltas not yet in sync with a neighbour.");
    for p in &peers {
        sample(&mut out, "cascade_sync_lag_deltas", &[("peer", &p.id)], p.lag_deltas);
    }

    family(
        &mut out,
        "cascade_sync_lag_seconds",
        "gauge",
        "Age in seconds of the oldest delta not yet in sync with a neighbour.",
    );
    for p in &peers {
        sample(&mut out, "cascade_sync_lag_seconds", &[("peer", &p.id)], Float(p.lag_seconds));
    }

    // Deltas.
    counter(
        &mut out,
        "cascade_deltas_in_total",
        "Deltas received from neighbours and accepted.",
        node.deltas_in,
    );
    counter(&mut out, "cascade_deltas_out_total", "Deltas sent to neighbours.", node.deltas_out);
    counter(
        &mut out,
        "cascade_deltas_originated_total",
        "Deltas signed by this node.",
        node.deltas_originated,
    );

    family(&mut out, "cascade_deltas_rejected_total", "counter", "Deltas rejected, by reason.");
    let mut rejected: BTreeMap<&str, u64> = KNOWN_REASONS.iter().map(|r| (*r, 0)).collect();
    for (reason, count) in &node.rejected {
        *rejected.entry(reason.as_str()).or_insert(0) += count;
    }
    for (reason, count) in &rejected {
        sample(&mut out, "cascade_deltas_rejected_total", &[("reason", reason)], count);
    }

    // Transport, store, audit.
    counter(&mut out, "cascade_frames_out_total", "Frames sent to neighbours.", node.frames_out);
    counter(&mut out, "cascade_bytes_out_total", "Bytes sent to neighbours.", node.bytes_out);
    family(&mut out, "cascade_store_bytes", "gauge", "Size of the node's store on disk, in bytes.");
    sample(&mut out, "cascade_store_bytes", &[], node.store_bytes);
    family(&mut out, "cascade_audit_records", "gauge", "Records in the audit log.");
    sample(&mut out, "cascade_audit_records", &[], node.audit_records);

    // HTTP. Copy out under the lock, format after.
    let (requests, durations) = {
        let inner = http.lock();
        (inner.requests.clone(), inner.durations.clone())
    };
    family(
        &mut out,
        "cascade_http_requests_total",
        "counter",
        "Admin HTTP requests, by route template, method and status.",
    );
    for ((route, method, status), count) in &requests {
        let status = status.to_string();
        sample(
            &mut out,
            "cascade_http_requests_total",
            &[("route", route), ("method", method), ("status", &status)],
            count,
        );
    }

    let name = "cascade_http_request_duration_seconds";
    family(&mut out, name, "histogram", "Admin HTTP request latency in seconds, by route template.");
    for (route, histogram) in &durations {
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&histogram.buckets) {
            cumulative += count;
            let le = Float(*bound).to_string();
            sample(&mut out, &format!("{name}_bucket"), &[("route", route), ("le", &le)], cumulative);
        }
        sample(&mut out, &format!("{name}_bucket"), &[("route", route), ("le", "+Inf")], histogram.count);
        sample(&mut out, &format!("{name}_sum"), &[("route", route)], Float(histogram.sum));
        sample(&mut out, &format!("{name}_count"), &[("route", route)], histogram.count);
    }

    out
}

/// Writes the `# HELP` and `# TYPE` lines of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A counter family with its single unlabelled sample.
fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    family(out, name, "counter", help);
    sample(out, name, &[], value);
}

/// Writes one sample line: `name{label="value",...} value`.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, value)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escape_label_value(out, value);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Appends `value` escaped as the format requires inside a label value:
/// backslash, double quote and line feed.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A float written as the format spells it: `+Inf`, `-Inf`, `NaN`, or the
/// shortest decimal that reads back to the same value (`1`, `0.005`).
struct Float(f64);

impl std::fmt::Display for Float {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        if v.is_nan() {
            f.write_str("NaN")
        } else if v.is_infinite() {
            f.write_str(if v > 0.0 { "+Inf" } else { "-Inf" })
        } else {
            write!(f, "{v}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;
    use prometheus_parse::{Sample, Scrape, Value};
    use tower::ServiceExt;

    fn parse(text: &str) -> Scrape {
        Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("exposition parses")
    }

    /// The sample of `name` whose labels include all of `labels`; exactly one.
    fn find<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> &'a Sample {
        let found: Vec<&Sample> = scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .collect();
        assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
        found[0]
    }

    fn scalar(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
        match find(scrape, name, labels).value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            ref other => panic!("{name}: not a scalar: {other:?}"),
        }
    }

    fn sample_node() -> NodeMetrics {
        NodeMetrics {
            peers: vec![
                PeerMetrics {
                    id: "370000".into(),
                    role: "parent",
                    connected: true,
                    lag_deltas: 3,
                    lag_seconds: 1.5,
                },
                PeerMetrics {
                    id: "370102".into(),
                    role: "child",
                    connected: false,
                    lag_deltas: 0,
                    lag_seconds: 0.0,
                },
            ],
            deltas_in: 10,
            deltas_out: 7,
            deltas_originated: 4,
            rejected: [("bad_signature".to_string(), 2), ("rate \"limited\"".to_string(), 1)]
                .into_iter()
                .collect(),
            frames_out: 42,
            bytes_out: 123_456,
            store_bytes: 1 << 20,
            audit_records: 9,
        }
    }

    #[test]
    fn renders_node_and_http_metrics_that_parse() {
        let http = HttpMetrics::default();
        http.record("/api/v1/catalog", "GET", 200, 0.003);
        http.record("/api/v1/catalog", "GET", 200, 0.2);
        http.record("/api/v1/catalog", "POST", 401, 0.0005);
        http.record("/healthz", "GET", 200, 7.0);
        let text = render(&sample_node(), &http);
        let scrape = parse(&text);

        assert_eq!(scalar(&scrape, "cascade_peers_connected", &[]), 1.0);
        assert_eq!(scalar(&scrape, "cascade_peer_connected", &[("peer", "370000"), ("role", "parent")]), 1.0);
        assert_eq!(scalar(&scrape, "cascade_peer_connected", &[("peer", "370102"), ("role", "child")]), 0.0);
        assert_eq!(scalar(&scrape, "cascade_sync_lag_deltas", &[("peer", "370000")]), 3.0);
        assert_eq!(scalar(&scrape, "cascade_sync_lag_seconds", &[("peer", "370000")]), 1.5);
        assert_eq!(scalar(&scrape, "cascade_deltas_in_total", &[]), 10.0);
        assert_eq!(scalar(&scrape, "cascade_deltas_out_total", &[]), 7.0);
        assert_eq!(scalar(&scrape, "cascade_deltas_originated_total", &[]), 4.0);
        assert_eq!(scalar(&scrape, "cascade_deltas_rejected_total", &[("reason", "bad_signature")]), 2.0);
        for reason in KNOWN_REASONS.iter().filter(|r| **r != "bad_signature") {
            assert_eq!(
                scalar(&scrape, "cascade_deltas_rejected_total", &[("reason", reason)]),
                0.0,
                "{reason}"
            );
        }
        assert_eq!(scrape.samples.iter().filter(|s| s.metric == "cascade_deltas_rejected_total").count(), 9);
        assert_eq!(scalar(&scrape, "cascade_frames_out_total", &[]), 42.0);
        assert_eq!(scalar(&scrape, "cascade_bytes_out_total", &[]), 123_456.0);
        assert_eq!(scalar(&scrape, "cascade_store_bytes", &[]), 1_048_576.0);
        assert_eq!(scalar(&scrape, "cascade_audit_records", &[]), 9.0);

        let requests = &[("route", "/api/v1/catalog"), ("method", "GET"), ("status", "200")];
        assert_eq!(scalar(&scrape, "cascade_http_requests_total", requests), 2.0);
        let denied = &[("route", "/api/v1/catalog"), ("method", "POST"), ("status", "401")];
        assert_eq!(scalar(&scrape, "cascade_http_requests_total", denied), 1.0);

        let catalog = find(&scrape, "cascade_http_request_duration_seconds", &[("route", "/api/v1/catalog")]);
        let Value::Histogram(buckets) = &catalog.value else { panic!("not a histogram: {catalog:?}") };
        let cumulative: Vec<(f64, f64)> = buckets.iter().map(|b| (b.less_than, b.count)).collect();
        assert_eq!(
            cumulative,
            vec![
                (0.001, 1.0),
                (0.005, 2.0),
                (0.01, 2.0),
                (0.05, 2.0),
                (0.1, 2.0),
                (0.5, 3.0),
                (1.0, 3.0),
                (5.0, 3.0),
                (f64::INFINITY, 3.0)
            ]
        );
        assert_eq!(
            scalar(&scrape, "cascade_http_request_duration_seconds_count", &[("route", "/api/v1/catalog")]),
            3.0
        );
        let sum =
            scalar(&scrape, "cascade_http_request_duration_seconds_sum", &[("route", "/api/v1/catalog")]);
        assert!((sum - 0.2035).abs() < 1e-9, "{sum}");
        // 7 s is past the last finite bucket: only +Inf counts it.
        assert!(
            text.contains("cascade_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"5\"} 0\n")
        );
        assert!(
            text.contains("cascade_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"+Inf\"} 1\n")
        );
        assert_eq!(
            scalar(&scrape, "cascade_http_request_duration_seconds_count", &[("route", "/healthz")]),
            1.0
        );
    }

    #[test]
    fn every_family_has_help_and_type_and_no_series_repeats() {
        let http = HttpMetrics::default();
        http.record("/healthz", "GET", 200, 0.01);
        let mut node = sample_node();
        node.peers.push(node.peers[0].clone()); // listed twice: rendered once
        let text = render(&node, &http);
        let mut helped = BTreeSet::new();
        let mut typed = BTreeMap::new();
        let mut series = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                assert!(helped.insert(rest.split(' ').next().unwrap().to_string()), "{line}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
                assert!(typed.insert(name.to_string(), kind.to_string()).is_none(), "{line}");
            } else {
                let (key, _value) = line.rsplit_once(' ').unwrap();
                assert!(series.insert(key.to_string()), "repeated series: {line}");
                let name = key.split('{').next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| {
                        name.strip_suffix(suffix)
                            .filter(|base| typed.get(*base).map(String::as_str) == Some("histogram"))
                    })
                    .unwrap_or(name);
                assert!(typed.contains_key(family) && helped.contains(family), "undeclared: {line}");
            }
        }
        for name in [
            "cascade_peers_connected",
            "cascade_peer_connected",
            "cascade_sync_lag_deltas",
            "cascade_sync_lag_seconds",
            "cascade_deltas_in_total",
            "cascade_deltas_out_total",
            "cascade_deltas_originated_total",
            "cascade_deltas_rejected_total",
            "cascade_frames_out_total",
            "cascade_bytes_out_total",
            "cascade_store_bytes",
            "cascade_audit_records",
            "cascade_http_requests_total",
            "cascade_http_request_duration_seconds",
        ] {
            assert!(typed.contains_key(name), "{name} missing");
        }
        assert_eq!(typed["cascade_http_request_duration_seconds"], "histogram");
        assert_eq!(typed["cascade_deltas_rejected_total"], "counter");
        assert_eq!(typed["cascade_store_bytes"], "gauge");
    }

    #[test]
    fn empty_metrics_render_and_parse() {
        let text = render(&NodeMetrics::default(), &HttpMetrics::default());
        let scrape = parse(&text);
        assert_eq!(scalar(&scrape, "cascade_peers_connected", &[]), 0.0);
        assert_eq!(scalar(&scrape, "cascade_deltas_rejected_total", &[("reason", "fork")]), 0.0);
        assert!(text.contains("# TYPE cascade_http_request_duration_seconds histogram\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let http = HttpMetrics::default();
        http.record("/a\\b\"c\nd", "GET", 200, 0.0);
        let text = render(&sample_node(), &http);
        assert!(text.contains(
            "cascade_http_requests_total{route=\"/a\\\\b\\\"c\\nd\",method=\"GET\",status=\"200\"} 1\n"
        ));
        assert!(text.contains("cascade_deltas_rejected_total{reason=\"rate \\\"limited\\\"\"} 1\n"));
        // Each sample stays on one line.
        assert!(text.lines().all(|l| l.starts_with('#') || l.starts_with("cascade_")), "{text}");
    }

    #[test]
    fn routes_and_methods_are_bounded() {
        let http = HttpMetrics::default();
        for i in 0..MAX_ROUTES + 10 {
            http.record(&format!("/r/{i}"), "GET", 200, 0.0);
        }
        http.record("/r/0", "GET", 200, 0.0); // known route still counted under its name
        http.record("/x", "BREW", 418, 0.0);
        let inner = http.lock();
        assert_eq!(inner.durations.len(), MAX_ROUTES + 1);
        assert_eq!(inner.durations[OTHER].count, 11);
        assert_eq!(inner.durations["/r/0"].count, 2);
        assert_eq!(inner.requests[&(OTHER.to_string(), OTHER.to_string(), 418)], 1);
    }

    #[test]
    fn odd_durations_are_recorded_as_zero() {
        let http = HttpMetrics::default();
        http.record("/", "GET", 200, f64::NAN);
        http.record("/", "GET", 200, -1.0);
        let text = render(&NodeMetrics::default(), &http);
        assert!(text.contains("cascade_http_request_duration_seconds_sum{route=\"/\"} 0\n"), "{text}");
        assert!(text.contains("cascade_http_request_duration_seconds_bucket{route=\"/\",le=\"0.001\"} 2\n"));
    }

    #[tokio::test]
    async fn middleware_records_requests_by_route_template() {
        let metrics = Arc::new(HttpMetrics::default());
        let api = Router::new().route("/items/{id}", get(|| async { "item" }));
        let app: Router = Router::new()
            .route("/healthz", get(|| async { StatusCode::NO_CONTENT }))
            .nest("/api/v1", api)
            .fallback(|| async { StatusCode::NOT_FOUND })
            .layer(axum::middleware::from_fn_with_state(metrics.clone(), track));

        for uri in ["/api/v1/items/1", "/api/v1/items/2", "/healthz", "/nope"] {
            let request = axum::http::Request::builder().uri(uri).body(Body::empty()).unwrap();
            app.clone().oneshot(request).await.unwrap();
        }
        let request =
            axum::http::Request::builder().method("POST").uri("/healthz").body(Body::empty()).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);

        let text = render(&NodeMetrics::default(), &metrics);
        // prometheus-parse silently skips samples whose label values hold a `}`
        // (its sample regex), as axum's `{param}` templates do: check those as text.
        let items =
            "cascade_http_requests_total{route=\"/api/v1/items/{id}\",method=\"GET\",status=\"200\"} 2\n";
        assert!(text.contains(items), "{text}");
        let count = "cascade_http_request_duration_seconds_count{route=\"/api/v1/items/{id}\"} 2\n";
        assert!(text.contains(count), "{text}");
        let scrape = parse(&text);
        let health = &[("route", "/healthz"), ("method", "GET"), ("status", "204")];
        assert_eq!(scalar(&scrape, "cascade_http_requests_total", health), 1.0);
        let not_allowed = &[("route", "/healthz"), ("method", "POST"), ("status", "405")];
        assert_eq!(scalar(&scrape, "cascade_http_requests_total", not_allowed), 1.0);
        let missing = &[("route", "unmatched"), ("method", "GET"), ("status", "404")];
        assert_eq!(scalar(&scrape, "cascade_http_requests_total", missing), 1.0);
        assert_eq!(
            scalar(&scrape, "cascade_http_request_duration_seconds_count", &[("route", "unmatched")]),
            1.0
        );
        // No raw path leaks into a label.
        assert!(!text.contains("/items/1") && !text.contains("/nope"), "{text}");
    }
}
