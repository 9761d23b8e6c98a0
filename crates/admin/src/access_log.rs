//! The access log: every request at debug level, and at info one summary line a
//! minute (requests by status class, the slowest one) — what an operator reads
//! at the default level without a line per request of a busy node or a flood.

use std::sync::Mutex;
use std::time::Duration;
use tracing::info;

/// How often the summary is written (when there were requests).
pub(crate) const SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Requests since the last summary, of one node.
#[derive(Debug)]
pub(crate) struct AccessTally {
    /// The node, named in each summary (several share a process under `cascade up`).
    node: String,
    inner: Mutex<Window>,
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Window {
    /// Requests by status class: 1xx/2xx/3xx, 4xx, 5xx.
    ok: u64,
    client_errors: u64,
    server_errors: u64,
    /// The slowest request: seconds, method and route template.
    slowest: Option<(f64, String)>,
    /// When the window's first request was answered.
    since: Option<std::time::Instant>,
}

impl AccessTally {
    /// A tally for `node`'s admin server.
    pub(crate) fn new(node: String) -> AccessTally {
        AccessTally { node, inner: Mutex::default() }
    }

    /// Counts one answered request.
    pub(crate) fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut w = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        w.since.get_or_insert_with(std::time::Instant::now);
        match status {
            500.. => w.server_errors += 1,
            400..=499 => w.client_errors += 1,
            _ => w.ok += 1,
        }
        if w.slowest.as_ref().is_none_or(|(s, _)| seconds > *s) {
            w.slowest = Some((seconds, format!("{method} {route}")));
        }
    }

    /// Writes the summary of the requests since the last one, if any, and starts over.
    pub(crate) fn summarize(&self) {
        let w = std::mem::take(&mut *self.inner.lock().unwrap_or_else(|p| p.into_inner()));
        let requests = w.ok + w.client_errors + w.server_errors;
        if let Some((seconds, slowest)) = w.slowest.filter(|_| requests > 0) {
            info!(
                node = %self.node,
                requests,
                ok = w.ok,
                client_errors = w.client_errors,
                server_errors = w.server_errors,
                slowest_ms = (seconds * 1000.0).round() as u64,
                slowest = %slowest,
                over_s = w.since.map_or(0, |t| t.elapsed().as_secs()),
                "http requests since the last summary"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_by_class_keeps_the_slowest_and_starts_over() {
        let tally = AccessTally::new("370100".into());
        tally.record("GET", "/api/v1/catalog", 200, 0.002);
        tally.record("GET", "/api/v1/catalog/{code}", 404, 0.001);
        tally.record("POST", "/api/v1/catalog", 503, 0.4);
        tally.record("GET", "/healthz", 200, 0.0001);
        let w = tally.inner.lock().unwrap().clone();
        assert!(w.since.is_some());
        assert_eq!((w.ok, w.client_errors, w.server_errors), (2, 1, 1));
        assert_eq!(w.slowest, Some((0.4, "POST /api/v1/catalog".to_string())));
        tally.summarize();
        assert_eq!(*tally.inner.lock().unwrap(), Window::default());
    }
}
