//! The admin HTTP server: hyper's HTTP/1.1 connections driven here rather than by
//! `axum::serve`, so that every connection has bounds — a header-read time-out
//! (which also ends idle keep-alive connections), a cap on open connections that
//! makes room by closing the oldest one with no request in progress (a slow-loris
//! flood, or a crowd of idle keep-alives, evicts itself, not the operator's
//! request), a time-out per request — and the
//! router sees each request's client address.

use crate::access_log::SUMMARY_EVERY;
use crate::error::ApiError;
use crate::routes::app;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

/// How long a client has to send a request's headers, from when the connection
/// opens or its previous response was sent: admin clients send theirs at once.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one request may take, body included; past it, 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections open at once: far above what operators and scripts use, far below
/// the file descriptors a node may hold.
pub const MAX_CONNECTIONS: usize = 1024;

/// Largest request head (request line and headers) answered; beyond, 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// hyper's read buffer: heads past `MAX_HEADER_BYTES` but within this get the JSON
/// 431; larger ones are cut off by hyper with a bare 431.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Pause after a failed accept (out of file descriptors): let connections close.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The open connections, oldest first, with the requests each has in progress.
#[derive(Default)]
struct Connections {
    next: u64,
    open: BTreeMap<u64, (Arc<AtomicUsize>, CancellationToken)>,
}

impl Connections {
    /// Makes room for a new connection, closing the oldest with no request in
    /// progress if the cap is reached; `None` when every open one is busy.
    fn admit(&mut self) -> Option<(u64, Arc<AtomicUsize>, CancellationToken)> {
        if self.open.len() >= MAX_CONNECTIONS {
            let idle =
                self.open.iter().find(|(_, (busy, _))| busy.load(Ordering::Relaxed) == 0).map(|(id, _)| *id);
            let (_, cancel) = self.open.remove(&idle?)?;
            cancel.cancel();
        }
        let id = self.next;
        self.next += 1;
        let entry = (Arc::new(AtomicUsize::new(0)), CancellationToken::new());
        self.open.insert(id, entry.clone());
        Some((id, entry.0, entry.1))
    }
}

/// Counts a request in progress on its connection while it lives.
struct InProgress(Arc<AtomicUsize>);

impl InProgress {
    fn enter(busy: &Arc<AtomicUsize>) -> InProgress {
        busy.fetch_add(1, Ordering::Relaxed);
        InProgress(busy.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Answers 503 for a request that takes longer than `REQUEST_TIMEOUT`.
pub(crate) async fn time_limit(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the request took longer than {} s", REQUEST_TIMEOUT.as_secs()),
        )
        .into_response(),
    }
}

/// Answers 431 for a request head larger than `MAX_HEADER_BYTES`.
pub(crate) async fn head_limit(request: Request, next: Next) -> Response {
    let head: usize = request.uri().to_string().len()
        + request.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>();
    if head > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("the request head is larger than {MAX_HEADER_BYTES} bytes"),
        )
        .into_response();
    }
    next.run(request).await
}

/// Aborts its task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How a request reached the server (a request extension).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Served {
    /// Over TLS: the node's own links are `https://`.
    pub(crate) secure: bool,
}

/// Serves the admin interface of `node` on `listener` — over TLS when `tls` is
/// given — until `shutdown` resolves, then lets requests in flight finish (a
/// bounded while).
pub async fn serve(
    node: cascade_runtime::Node,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let (app, access) = app(node);
    // The access log's summary, a line a minute; the last one when the server ends.
    // Aborted however `serve` ends, dropped included (a node killed in-process).
    let tally = access.clone();
    let summaries = AbortOnDrop(tokio::spawn(async move {
        let mut every = tokio::time::interval(SUMMARY_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            every.tick().await;
            access.summarize();
        }
    }));
    // Cancelled when the server stops accepting: TLS handshakes still under way
    // end there instead of holding the shutdown for their whole time-out.
    let closing = CancellationToken::new();
    let connections = Arc::new(Mutex::new(Connections::default()));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(READ_BUFFER_BYTES);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "accepting an admin connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Streamed answers (gateway calls) go out in several writes: without this,
        // Nagle's algorithm holds the last one for the client's delayed ACK (~40 ms).
        let _ = stream.set_nodelay(true);
        let admitted = connections.lock().ok().and_then(|mut c| c.admit());
        let Some((id, busy, cancel)) = admitted else {
            debug!(%remote, "every admin connection is in use; refused");
            continue;
        };
        let app = app.clone();
        let secure = acceptor.is_some();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let in_progress = InProgress::enter(&busy);
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(remote));
            request.extensions_mut().insert(Served { secure });
            let answer = app.clone().oneshot(request.map(axum::body::Body::new));
            async move {
                let response = answer.await;
                drop(in_progress);
                response
            }
        });
        let (http, watcher, acceptor, closing) =
            (http.clone(), graceful.watcher(), acceptor.clone(), closing.clone());
        let connections = connections.clone();
        tokio::spawn(async move {
            let served = async {
                let result = match acceptor {
                    None => watcher.watch(http.serve_connection(TokioIo::new(stream), service)).await,
                    // The handshake has the time a request head has: a client that
                    // stalls in it holds a connection slot no longer.
                    // It also ends when the server stops accepting.
                    Some(acceptor) => {
                        let handshake = tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream));
                        let handshake = tokio::select! {
                            done = handshake => done,
                            () = closing.cancelled() => return,
                        };
                        match handshake {
                            Ok(Ok(tls)) => {
                                watcher.watch(http.serve_connection(TokioIo::new(tls), service)).await
                            }
                            Ok(Err(e)) => return debug!(%remote, error = %e, "admin TLS handshake failed"),
                            Err(_) => return debug!(%remote, "admin TLS handshake timed out"),
                        }
                    }
                };
                if let Err(e) = result {
                    debug!(%remote, error = %e, "admin connection ended");
                }
            };
            tokio::select! {
                () = served => {}
                _ = cancel.cancelled() => debug!(%remote, "idle admin connection closed to make room"),
            }
            if let Ok(mut c) = connections.lock() {
                c.open.remove(&id);
            }
        });
    }
    drop(listener);
    closing.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        warn!("admin requests still running at shutdown were cut off");
    }
    drop(summaries);
    tally.summarize();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_oldest_connection_with_no_request_in_progress_makes_room() {
        let mut c = Connections::default();
        let mut all = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            all.push(c.admit().unwrap());
        }
        let request = InProgress::enter(&all[0].1); // the oldest is answering
        let (_, _, _) = c.admit().expect("room made");
        assert!(!all[0].2.is_cancelled() && all[1].2.is_cancelled(), "the oldest idle one went");
        // Every connection answering: a new one is refused; answers ending make room,
        // and the one still answering stays.
        let busy: Vec<InProgress> = c.open.values().map(|(busy, _)| InProgress::enter(busy)).collect();
        assert!(c.admit().is_none());
        drop(busy);
        assert!(c.admit().is_some());
        assert!(!all[0].2.is_cancelled(), "still answering: kept");
        drop(request);
    }
}
