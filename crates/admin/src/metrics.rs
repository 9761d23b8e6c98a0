//! HTTP metrics of the admin interface: request counts by (route template,
//! method, status) and a latency histogram by route, filled by the [`track`]
//! middleware and rendered with the node's own metrics (`cascade-metrics`).
//!
//! `track` must be added with `Router::layer` (not around the finished service),
//! so that it runs after routing and sees the route template in [`MatchedPath`];
//! requests that matched no route (the fallback) are labelled `route="unmatched"`.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use cascade_metrics::{Collect, Exposition, Histogram, Kind};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

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

impl HttpMetrics {
    /// Records one request.
    ///
    /// `route` should be a route template (not a raw path); past
    /// [`MAX_ROUTES`] distinct routes, new ones are counted as `"other"`.
    /// Methods outside the standard nine are counted as `"other"` too. A
    /// negative or non-finite `seconds` is recorded as 0.
    pub fn record(&self, route: &str, method: &str, status: u16, seconds: f64) {
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
        histogram.observe(seconds);
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

impl Collect for HttpMetrics {
    fn collect(&self, out: &mut Exposition) {
        // Copy out under the lock, format after.
        let (requests, durations) = {
            let inner = self.lock();
            (inner.requests.clone(), inner.durations.clone())
        };
        let name = "cascade_http_requests_total";
        out.family(name, Kind::Counter, "Admin HTTP requests, by route template, method and status.");
        for ((route, method, status), count) in &requests {
            let status = status.to_string();
            out.sample(name, &[("route", route), ("method", method), ("status", &status)], count);
        }
        let name = "cascade_http_request_duration_seconds";
        out.family(name, Kind::Histogram, "Admin HTTP request latency in seconds, by route template.");
        for (route, histogram) in &durations {
            histogram.write(out, name, &[("route", route)]);
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
    use std::collections::BTreeSet;
    use tower::ServiceExt;

    fn render(http: &HttpMetrics) -> String {
        let mut out = Exposition::new();
        out.add(http);
        out.finish()
    }

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

    #[test]
    fn renders_http_metrics_that_parse() {
        let http = HttpMetrics::default();
        http.record("/api/v1/catalog", "GET", 200, 0.003);
        http.record("/api/v1/catalog", "GET", 200, 0.2);
        http.record("/api/v1/catalog", "POST", 401, 0.0005);
        http.record("/healthz", "GET", 200, 7.0);
        let text = render(&http);
        let scrape = parse(&text);
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
        // Every series once, every family declared.
        let mut series = BTreeSet::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (key, _) = line.rsplit_once(' ').unwrap();
            assert!(series.insert(key.to_string()), "repeated series: {line}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let http = HttpMetrics::default();
        http.record("/a\\b\"c\nd", "GET", 200, 0.0);
        let text = render(&http);
        assert!(text.contains(
            "cascade_http_requests_total{route=\"/a\\\\b\\\"c\\nd\",method=\"GET\",status=\"200\"} 1\n"
        ));
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
        assert_eq!(inner.durations[OTHER].count(), 11);
        assert_eq!(inner.durations["/r/0"].count(), 2);
        assert_eq!(inner.requests[&(OTHER.to_string(), OTHER.to_string(), 418)], 1);
    }

    #[test]
    fn odd_durations_are_recorded_as_zero() {
        let http = HttpMetrics::default();
        http.record("/", "GET", 200, f64::NAN);
        http.record("/", "GET", 200, -1.0);
        let text = render(&http);
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

        let text = render(&metrics);
        // prometheus-parse silently skips samples whose label values hold a `}`
        // (its sample regex), as axum's `{param}` templates do: check those as text.
        let items =
            "cascade_http_requests_total{route=\"/api/v1/items/{id}\",method=\"GET\",status=\"200\"} 2\n";
        assert!(text.contains(items), "{text}");
        let scrape = parse(&text);
        let health = &[("route", "/healthz"), ("method", "GET"), ("status", "204")];
        assert_eq!(scalar(&scrape, "cascade_http_requests_total", health), 1.0);
        let not_allowed = &[("route", "/healthz"), ("method", "POST"), ("status", "405")];
        assert_eq!(scalar(&scrape, "cascade_http_requests_total", not_allowed), 1.0);
        let missing = &[("route", "unmatched"), ("method", "GET"), ("status", "404")];
        assert_eq!(scalar(&scrape, "cascade_http_requests_total", missing), 1.0);
        // No raw path leaks into a label.
        assert!(!text.contains("/items/1") && !text.contains("/nope"), "{text}");
    }
}
