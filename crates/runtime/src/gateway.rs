//! The service gateway (服务对接): a consumer calls a service at its own node;
//! the call goes, on a stream of its own over the existing QUIC links, hop by hop
//! to the provider's node, which checks the envelope, the grant and the rate,
//! proxies to the upstream over HTTP and streams the answer back. Bodies stream
//! both ways in signed checkpoints (see `cascade_protocol::call`): no hop holds
//! more than one checkpoint of a body, and a relay that alters one is caught.
//! Every hop keeps a usage record of each call it saw.

use crate::driver::{unix_millis, Message};
use bytes::Bytes;
use cascade_protocol::call::{
    call_next_hop, endpoint_allowed, BodySigner, BodyVerifier, CallFrame, CallHead, CallId, Direction,
    ReplyHead, MAX_CALL_FRAME_BYTES, MAX_CALL_HEAD_BYTES,
};
use cascade_protocol::routed::Route;
use cascade_protocol::service::{Service, ServiceKind, ServiceStatus};
use cascade_protocol::workflow::Resource;
use cascade_protocol::NodeId;
use cascade_store::Store;
use cascade_transport::{read_message, write_message};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::{info_span, Instrument};

/// Calls a node serves at once (as consumer, relay or provider): beyond, a call
/// is answered 503 at once instead of queueing.
pub const MAX_CALLS_IN_FLIGHT: usize = 256;
/// How long a hop waits for a call's head, and for the next hop's answer head.
pub const CALL_HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Usage records kept in memory for `GET /api/v1/usage`, newest last.
pub const USAGE_KEPT: usize = 10_000;
/// Request headers a provider passes on to its upstream (end to end; hop-by-hop
/// headers, credentials and `Host` never are, whatever a call carries).
pub const FORWARDED_HEADERS: [&str; 4] = ["content-type", "accept", "accept-language", "content-language"];
/// How far a call's start may be from the provider's clock; a call outside it, or
/// one whose id was seen, is refused (a relay cannot replay a recorded call).
const CALL_WINDOW_MS: u64 = 5 * 60_000;
/// Most call ids a provider remembers within the window.
const MAX_CALLS_REMEMBERED: usize = 1_000_000;
/// How long a hop waits for the next bytes of a call's body before it gives up.
pub const CALL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the keys of a member are reused before the core is asked again.
const KEYS_MS: u64 = 60_000;
/// How long the consumer's node reuses what it read of its grants.
const HELD_GRANTS_MS: u64 = 1_000;
/// Body chunks queued between a hop's reader and writer: with QUIC flow control,
/// the backpressure that keeps a hop's memory bounded.
const CHUNKS_QUEUED: usize = 8;

/// A call as the admin interface hands it over.
pub struct CallRequest {
    /// The service.
    pub service: String,
    /// HTTP method.
    pub method: String,
    /// Path below the service, with its query.
    pub path: String,
    /// End-to-end headers.
    pub headers: Vec<(String, String)>,
    /// The body, chunk by chunk (an error ends it).
    pub body: mpsc::Receiver<Result<Bytes, String>>,
}

/// The answer: status, headers, and the body as it streams (an error cuts it).
pub struct CallResponse {
    /// HTTP status.
    pub status: u16,
    /// End-to-end headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: mpsc::Receiver<Result<Bytes, String>>,
}

/// Why a call was not served, as the caller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    /// HTTP status: 403 no or bad grant, 404 no such service, 429 rate limited,
    /// 502 upstream down or tampered, 503 busy, 504 a hop could not forward.
    pub status: u16,
    /// Why, for people.
    pub reason: String,
    /// Seconds to wait, on 429.
    pub retry_after: Option<u64>,
}

fn fail(status: u16, reason: impl Into<String>) -> CallFailure {
    CallFailure { status, reason: reason.into(), retry_after: None }
}

/// One hop's record of one call.
#[derive(Clone, Debug, Serialize)]
pub struct UsageRecord {
    /// The call.
    pub call: String,
    /// The service.
    pub service: String,
    /// Who called (at the consumer's node).
    pub caller: String,
    /// The consumer organization (the grantee).
    pub consumer: String,
    /// `consumer`, `relay` or `provider`.
    pub role: &'static str,
    /// Method and path.
    pub endpoint: String,
    /// HTTP status, or 0 when the call broke off.
    pub status: u16,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// Request body bytes through this hop.
    pub bytes_in: u64,
    /// Response body bytes through this hop.
    pub bytes_out: u64,
    /// When the request reached this hop (unix ms).
    pub request_in_ms: u64,
    /// When it left this hop (forwarded, or sent upstream).
    pub request_out_ms: Option<u64>,
    /// When the answer's head reached this hop.
    pub response_in_ms: Option<u64>,
    /// When the answer's last byte left this hop.
    pub response_out_ms: Option<u64>,
}

/// The grants an organization holds for a service, and when they were read (ms).
type HeldGrants = (u64, Vec<cascade_core::GrantRecord>);

/// A call on its way: the answer's head and body, whom to verify it with, and
/// the request bytes sent so far.
struct Started {
    reply: ReplyHead,
    frames: mpsc::Receiver<CallFrame>,
    provider_keys: Vec<VerifyingKey>,
    id: CallId,
    sent: Arc<AtomicU64>,
}

impl UsageRecord {
    /// A record of a call arriving at this hop now, in `role`.
    fn of(head: &CallHead, role: &'static str) -> UsageRecord {
        UsageRecord {
            call: head.id.to_string(),
            service: head.service.clone(),
            caller: head.caller.clone(),
            consumer: head.grant.grantee.clone(),
            role,
            endpoint: format!("{} {}", head.method, head.path),
            status: 0,
            error: None,
            bytes_in: 0,
            bytes_out: 0,
            request_in_ms: unix_millis(),
            request_out_ms: None,
            response_in_ms: None,
            response_out_ms: None,
        }
    }
}

/// Calls by role and status class, for metrics.
#[derive(Default)]
pub(crate) struct CallCounters {
    counts: Mutex<HashMap<(&'static str, u16), u64>>,
}

impl CallCounters {
    /// Every (role, status) with its count.
    pub(crate) fn snapshot(&self) -> Vec<((&'static str, u16), u64)> {
        let mut all: Vec<_> = self.counts.lock().map(|c| c.clone().into_iter().collect()).unwrap_or_default();
        all.sort();
        all
    }
}

/// Everything the gateway of one node shares.
pub(crate) struct Gateway {
    me: NodeId,
    key: SigningKey,
    store: Store,
    inbox: mpsc::Sender<Message>,
    /// The live link to each neighbour.
    links: Mutex<HashMap<NodeId, quinn::Connection>>,
    /// Members' keys as last asked of the core (asked again when a signature
    /// fails with them: a key rotation adds one).
    keys: Mutex<HashMap<NodeId, (u64, Vec<VerifyingKey>)>>,
    /// Grants this node's consumers hold, by organization and service, as read
    /// from the store at most `HELD_GRANTS_MS` ago (the provider checks its own
    /// record of every grant on every call: this only spares the store).
    held: Mutex<HashMap<(String, String), HeldGrants>>,
    /// Digests of whole grants (fields and signature) a relay verified: a grant is
    /// presented call after call.
    verified: Mutex<std::collections::HashSet<[u8; 32]>>,
    /// Call ids this node served as provider, with when they started (ms).
    calls_seen: Mutex<HashMap<CallId, u64>>,
    next: AtomicU64,
    in_flight: Arc<Semaphore>,
    /// Per grant: the minute window and the calls in it.
    rates: Mutex<HashMap<String, (u64, u32)>>,
    usage: Mutex<VecDeque<UsageRecord>>,
    pub(crate) counters: CallCounters,
    http: reqwest::Client,
    /// Largest request body a call may carry.
    max_body: u64,
}

impl Gateway {
    pub(crate) fn new(
        me: NodeId,
        key: SigningKey,
        store: Store,
        inbox: mpsc::Sender<Message>,
        max_body: u64,
    ) -> Gateway {
        Gateway {
            me,
            key,
            store,
            inbox,
            links: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            verified: Mutex::new(std::collections::HashSet::new()),
            calls_seen: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            in_flight: Arc::new(Semaphore::new(MAX_CALLS_IN_FLIGHT)),
            rates: Mutex::new(HashMap::new()),
            usage: Mutex::new(VecDeque::new()),
            counters: CallCounters::default(),
            http: reqwest::Client::builder().tcp_nodelay(true).build().unwrap_or_default(),
            max_body,
        }
    }

    /// A link to `peer` is up: calls toward it take this connection.
    pub(crate) fn link_up(&self, peer: NodeId, connection: quinn::Connection) {
        if let Ok(mut links) = self.links.lock() {
            links.insert(peer, connection);
        }
    }

    /// The link to `peer` ended (unless a newer one replaced it).
    pub(crate) fn link_down(&self, peer: NodeId, connection: &quinn::Connection) {
        if let Ok(mut links) = self.links.lock() {
            if links.get(&peer).is_some_and(|c| c.stable_id() == connection.stable_id()) {
                links.remove(&peer);
            }
        }
    }

    fn link(&self, peer: NodeId) -> Option<quinn::Connection> {
        self.links.lock().ok().and_then(|l| l.get(&peer).cloned())
    }

    /// The keys `node` signed with, from the cache or the core.
    async fn keys_of(&self, node: NodeId) -> Vec<VerifyingKey> {
        let now = unix_millis();
        let cached =
            self.keys.lock().ok().and_then(|k| k.get(&node).filter(|(at, _)| now < at + KEYS_MS).cloned());
        if let Some((_, keys)) = cached {
            return keys;
        }
        self.fresh_keys_of(node).await
    }

    async fn fresh_keys_of(&self, node: NodeId) -> Vec<VerifyingKey> {
        let (reply, keys) = oneshot::channel();
        if self.inbox.send(Message::Keys { node, reply }).await.is_err() {
            return Vec::new();
        }
        let keys = keys.await.unwrap_or_default();
        if let Ok(mut cache) = self.keys.lock() {
            cache.insert(node, (unix_millis(), keys.clone()));
        }
        keys
    }

    /// Whether `check` passes with `node`'s keys (asking the core again once if
    /// the cached keys fail: the node may have a new one).
    async fn signed_by(&self, node: NodeId, check: impl Fn(&[VerifyingKey]) -> bool) -> bool {
        check(&self.keys_of(node).await) || check(&self.fresh_keys_of(node).await)
    }

    /// The usage records kept, oldest first, that `keep` admits.
    pub(crate) fn usage(&self, keep: impl Fn(&UsageRecord) -> bool) -> Vec<UsageRecord> {
        self.usage.lock().map(|u| u.iter().filter(|r| keep(r)).cloned().collect()).unwrap_or_default()
    }

    fn record(&self, record: UsageRecord) {
        if let Ok(mut counts) = self.counters.counts.lock() {
            *counts.entry((record.role, record.status)).or_default() += 1;
        }
        if let Ok(mut usage) = self.usage.lock() {
            if usage.len() == USAGE_KEPT {
                usage.pop_front();
            }
            usage.push_back(record);
        }
    }

    /// Counts a call against its grant's rate: `Err(seconds to wait)` when over.
    fn admit_rate(&self, grant: &str, per_minute: u32) -> Result<(), u64> {
        let now = unix_millis();
        let window = now / 60_000;
        let Ok(mut rates) = self.rates.lock() else { return Ok(()) };
        let entry = rates.entry(grant.to_string()).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        if entry.1 >= per_minute {
            return Err(60 - (now / 1000) % 60);
        }
        entry.1 += 1;
        Ok(())
    }

    /// A call of a consumer of this node (`org`, acting as `caller`).
    pub(crate) async fn call(
        self: &Arc<Self>,
        caller: String,
        org: String,
        request: CallRequest,
    ) -> Result<CallResponse, CallFailure> {
        let permit = self.in_flight.clone().try_acquire_owned().map_err(|_| fail(503, "too many calls"))?;
        let started = unix_millis();
        let mut usage = UsageRecord {
            call: String::new(),
            service: request.service.clone(),
            caller: caller.clone(),
            consumer: org.clone(),
            role: "consumer",
            endpoint: format!("{} {}", request.method, request.path),
            status: 0,
            error: None,
            bytes_in: 0,
            bytes_out: 0,
            request_in_ms: started,
            request_out_ms: None,
            response_in_ms: None,
            response_out_ms: None,
        };
        let outcome = self.start_call(caller, org, request, &mut usage).await;
        match outcome {
            Err(failure) => {
                usage.status = failure.status;
                usage.error = Some(failure.reason.clone());
                self.record(usage);
                Err(failure)
            }
            Ok(Started { reply, frames, provider_keys, id, sent }) => {
                usage.status = reply.status;
                usage.response_in_ms = Some(unix_millis());
                let (tx, rx) = mpsc::channel(CHUNKS_QUEUED);
                let gateway = self.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let mut verifier = BodyVerifier::new(id, Direction::Response);
                    let mut frames = frames;
                    let error = loop {
                        let Some(frame) = frames.recv().await else {
                            break (!verifier.ended()).then(|| "the answer broke off".to_string());
                        };
                        match verifier.frame(frame, &provider_keys) {
                            Ok(bytes) if bytes.is_empty() => {}
                            Ok(bytes) => {
                                usage.bytes_out += bytes.len() as u64;
                                if tx.send(Ok(Bytes::from(bytes))).await.is_err() {
                                    break Some("the caller went away".into());
                                }
                            }
                            Err(e) => break Some(e.to_string()),
                        }
                        if verifier.ended() {
                            break None;
                        }
                    };
                    if let Some(e) = &error {
                        let _ = tx.send(Err(e.clone())).await;
                        usage.status = if e.starts_with("tampered") { 502 } else { 0 };
                    }
                    usage.error = error;
                    usage.bytes_in = sent.load(Ordering::Relaxed);
                    usage.response_out_ms = Some(unix_millis());
                    gateway.record(usage);
                });
                Ok(CallResponse { status: reply.status, headers: reply.headers, body: rx })
            }
        }
    }

    /// Checks the grant, signs the head and sends the call on its way (or serves
    /// it here); returns the answer's head and its body frames.
    async fn start_call(
        self: &Arc<Self>,
        caller: String,
        org: String,
        request: CallRequest,
        usage: &mut UsageRecord,
    ) -> Result<Started, CallFailure> {
        let service = cascade_core::StateStore::service(&self.store, &request.service)
            .map_err(|e| fail(503, e.to_string()))?
            .ok_or_else(|| fail(404, format!("no service {}", request.service)))?;
        if service.status == ServiceStatus::Retired {
            return Err(fail(404, format!("service {} is retired", service.id)));
        }
        let provider = Service::origin_of(&service.id).ok_or_else(|| fail(404, "malformed service id"))?;
        let grant = self.held_grant(&org, &service.id).await?;
        if !endpoint_allowed(&grant.endpoints, &request.method, &request.path) {
            return Err(fail(
                403,
                format!("{} {} is not granted by {}", request.method, request.path, grant.id),
            ));
        }
        let id = CallId {
            node: self.me,
            started_ms: usage.request_in_ms,
            n: self.next.fetch_add(1, Ordering::Relaxed),
        };
        usage.call = id.to_string();
        let head = CallHead {
            id,
            service: service.id.clone(),
            provider_node: provider,
            method: request.method,
            path: request.path,
            headers: request.headers,
            caller,
            grant,
            signature: Vec::new(),
        }
        .sign(&self.key)
        .map_err(|e| fail(503, e.to_string()))?;
        let (frames_tx, frames_rx) = mpsc::channel(CHUNKS_QUEUED);
        let key = self.key.clone();
        let max_body = self.max_body;
        let mut body = request.body;
        let sent = Arc::new(AtomicU64::new(0));
        let counted = sent.clone();
        // The request body, signed in checkpoints, as frames.
        tokio::spawn(async move {
            let mut signer = BodySigner::new(id, Direction::Request);
            while let Ok(Some(chunk)) = tokio::time::timeout(CALL_IDLE_TIMEOUT, body.recv()).await {
                let Ok(chunk) = chunk else { return };
                let total = counted.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
                if total > max_body {
                    return;
                }
                let Ok(frames) = signer.frames(&key, &chunk) else { return };
                for frame in frames {
                    if frames_tx.send(frame).await.is_err() {
                        return;
                    }
                }
            }
            if let Ok(end) = signer.end(&key) {
                let _ = frames_tx.send(end).await;
            }
        });
        usage.request_out_ms = Some(unix_millis());
        let (reply, frames) = match call_next_hop(self.me, provider) {
            Route::Here => self.clone().provide(head, frames_rx).await,
            Route::Via(hop) => self.forward(head, frames_rx, hop).await,
            Route::Unroutable => return Err(fail(504, format!("no route from {} to {provider}", self.me))),
        };
        // Only the provider answers a call; a hop on the way may only refuse it.
        let answerable = reply.id == id && (reply.by == provider || reply.error.is_some());
        if !answerable || !self.signed_by(reply.by, |keys| reply.verify(keys)).await {
            return Err(fail(
                502,
                format!("tampered: the answer claiming to be {}'s does not verify", reply.by),
            ));
        }
        let provider_keys = self.keys_of(provider).await;
        if let Some(error) = &reply.error {
            let retry_after = reply
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                .and_then(|(_, v)| v.parse().ok());
            return Err(CallFailure { status: reply.status, reason: error.clone(), retry_after });
        }
        Ok(Started { reply, frames, provider_keys, id, sent })
    }

    /// The grant `org` holds for `service` at this node, if it is usable now.
    async fn held_grant(
        &self,
        org: &str,
        service: &str,
    ) -> Result<cascade_protocol::workflow::Grant, CallFailure> {
        let now_ms = unix_millis();
        let now = now_ms / 1000;
        let key = (org.to_string(), service.to_string());
        let cached = self
            .held
            .lock()
            .ok()
            .and_then(|h| h.get(&key).filter(|(at, _)| now_ms < at + HELD_GRANTS_MS).cloned());
        let found = match cached {
            Some((_, found)) => found,
            None => {
                let found = self
                    .store
                    .grants_for(self.me, org, &Resource::Service(service.to_string()))
                    .map_err(|e| fail(503, e.to_string()))?;
                // Only a usable grant is remembered: a grant that arrives is used at once.
                if let (true, Ok(mut held)) = (found.iter().any(|g| g.is_valid(now)), self.held.lock()) {
                    if held.len() >= USAGE_KEPT {
                        held.clear();
                    }
                    held.insert(key, (now_ms, found.clone()));
                }
                found
            }
        };
        if let Some(g) = found.iter().find(|g| g.is_valid(now)) {
            return Ok(g.grant.clone());
        }
        Err(match found.last() {
            None => fail(403, "no grant: apply for this service first"),
            Some(g) if g.revoked_at.is_some() => fail(
                403,
                format!("grant {} was revoked: {}", g.grant.id, g.revoke_reason.clone().unwrap_or_default()),
            ),
            Some(g) => fail(403, format!("grant {} expired at {}", g.grant.id, g.grant.expires_at)),
        })
    }

    /// Sends a call to `hop` and returns the answer's head and body frames.
    async fn forward(
        self: &Arc<Self>,
        head: CallHead,
        mut frames: mpsc::Receiver<CallFrame>,
        hop: NodeId,
    ) -> (ReplyHead, mpsc::Receiver<CallFrame>) {
        let id = head.id;
        let (mut send, mut recv) = match self.open_toward(hop, &head).await {
            Ok(streams) => streams,
            Err(reason) => return self.error_reply(id, 504, reason),
        };
        tokio::spawn(async move {
            while let Some(frame) = frames.recv().await {
                if write_message(&mut send, &frame).await.is_err() {
                    return;
                }
            }
            let _ = send.finish();
        });
        let reply = tokio::time::timeout(
            CALL_HEAD_TIMEOUT,
            read_message::<ReplyHead>(&mut recv, MAX_CALL_HEAD_BYTES),
        )
        .await;
        let reply = match reply {
            Ok(Ok(Some((reply, _)))) => reply,
            _ => return self.error_reply(id, 504, format!("{hop} did not answer the call in time")),
        };
        let (tx, rx) = mpsc::channel(CHUNKS_QUEUED);
        tokio::spawn(async move {
            while let Some((frame, _)) = next_frame(&mut recv).await {
                if tx.send(frame).await.is_err() {
                    return;
                }
            }
        });
        (reply, rx)
    }

    fn error_reply(&self, id: CallId, status: u16, error: String) -> (ReplyHead, mpsc::Receiver<CallFrame>) {
        self.refusal(id, CallFailure { status, reason: error, retry_after: None })
    }

    /// A signed answer refusing a call (with `Retry-After` when waiting helps).
    fn refusal(&self, id: CallId, failure: CallFailure) -> (ReplyHead, mpsc::Receiver<CallFrame>) {
        let CallFailure { status, reason: error, retry_after } = failure;
        let headers = retry_after.map(|s| ("retry-after".to_string(), s.to_string())).into_iter().collect();
        let head = ReplyHead { id, by: self.me, status, headers, error: Some(error), signature: Vec::new() };
        let head = head.sign(&self.key).unwrap_or_else(|_| ReplyHead {
            id,
            by: self.me,
            status: 503,
            headers: Vec::new(),
            error: Some("signing failed".into()),
            signature: Vec::new(),
        });
        (head, mpsc::channel(1).1)
    }

    /// Serves a call for one of this node's services: checks, then the upstream.
    async fn provide(
        self: Arc<Self>,
        head: CallHead,
        frames: mpsc::Receiver<CallFrame>,
    ) -> (ReplyHead, mpsc::Receiver<CallFrame>) {
        let id = head.id;
        let mut usage = UsageRecord::of(&head, "provider");
        let checked = self.check_call(&head).await;
        let (service, upstream, consumer_keys) = match checked {
            Ok(ok) => ok,
            Err(failure) => {
                usage.status = failure.status;
                usage.error = Some(failure.reason.clone());
                self.record(usage);
                return self.refusal(id, failure);
            }
        };
        // The request body, released checkpoint by checkpoint, to the upstream.
        let (body_tx, body_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_QUEUED);
        let tampered = Arc::new(Mutex::new(None::<String>));
        let seen = tampered.clone();
        let bytes_in = Arc::new(AtomicU64::new(0));
        let counted = bytes_in.clone();
        tokio::spawn(async move {
            let mut frames = frames;
            let mut verifier = BodyVerifier::new(id, Direction::Request);
            while let Some(frame) = frames.recv().await {
                match verifier.frame(frame, &consumer_keys) {
                    Ok(bytes) if bytes.is_empty() => {}
                    Ok(bytes) => {
                        counted.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                        if body_tx.send(Ok(Bytes::from(bytes))).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        if let Ok(mut t) = seen.lock() {
                            *t = Some(e.to_string());
                        }
                        let _ = body_tx.send(Err(std::io::Error::other(e.to_string()))).await;
                        return;
                    }
                }
                if verifier.ended() {
                    return;
                }
            }
            let _ = body_tx.send(Err(std::io::Error::other("the request body broke off"))).await;
        });
        let stream =
            futures_util::stream::unfold(
                body_rx,
                |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
            );
        let url = format!("{}{}", upstream.trim_end_matches('/'), head.path);
        let method = reqwest::Method::from_bytes(head.method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut outgoing = self.http.request(method, &url).body(reqwest::Body::wrap_stream(stream));
        for (name, value) in
            head.headers.iter().filter(|(n, _)| FORWARDED_HEADERS.contains(&n.to_ascii_lowercase().as_str()))
        {
            outgoing = outgoing.header(name, value);
        }
        usage.request_out_ms = Some(unix_millis());
        let answer = match tokio::time::timeout(CALL_HEAD_TIMEOUT, outgoing.send()).await {
            Ok(answer) => answer.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {} s", CALL_HEAD_TIMEOUT.as_secs())),
        };
        usage.bytes_in = bytes_in.load(Ordering::Relaxed);
        let tamper = tampered.lock().ok().and_then(|t| t.clone());
        let response = match (answer, tamper) {
            (_, Some(tamper)) => {
                usage.status = 502;
                usage.error = Some(tamper.clone());
                self.record(usage);
                return self.error_reply(
                    id,
                    502,
                    format!("the request body was altered on the way: {tamper}"),
                );
            }
            (Err(e), None) => {
                usage.status = 502;
                usage.error = Some(e.to_string());
                self.record(usage);
                return self.error_reply(id, 502, format!("upstream of {} unreachable: {e}", service.id));
            }
            (Ok(response), None) => response,
        };
        usage.response_in_ms = Some(unix_millis());
        let upstream_status = response.status().as_u16();
        let verify = service.draft.kind == ServiceKind::Verify;
        let (status, headers) = if verify {
            (200, vec![("content-type".to_string(), "application/json".to_string())])
        } else {
            let keep = ["content-type", "content-language", "cache-control", "etag", "last-modified"];
            let headers = response
                .headers()
                .iter()
                .filter(|(k, _)| keep.contains(&k.as_str()))
                .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
                .collect();
            (upstream_status, headers)
        };
        usage.status = status;
        let reply = ReplyHead { id, by: self.me, status, headers, error: None, signature: Vec::new() };
        let reply = match reply.sign(&self.key) {
            Ok(reply) => reply,
            Err(e) => return self.error_reply(id, 503, e.to_string()),
        };
        let (tx, rx) = mpsc::channel(CHUNKS_QUEUED);
        let gateway = self.clone();
        tokio::spawn(async move {
            let mut signer = BodySigner::new(id, Direction::Response);
            let mut response = response;
            if verify {
                // A check of facts answers whether they match, never the data.
                let body = format!("{{\"match\":{}}}", (200..300).contains(&upstream_status));
                let frames = signer.frames(&gateway.key, body.as_bytes()).unwrap_or_default();
                usage.bytes_out = body.len() as u64;
                for frame in frames {
                    let _ = tx.send(frame).await;
                }
            } else {
                loop {
                    let chunk = match tokio::time::timeout(CALL_IDLE_TIMEOUT, response.chunk()).await {
                        Ok(chunk) => chunk.map_err(|e| e.to_string()),
                        Err(_) => Err(format!("silent for {} s", CALL_IDLE_TIMEOUT.as_secs())),
                    };
                    match chunk {
                        Ok(Some(chunk)) => {
                            usage.bytes_out += chunk.len() as u64;
                            let Ok(frames) = signer.frames(&gateway.key, &chunk) else { break };
                            for frame in frames {
                                if tx.send(frame).await.is_err() {
                                    usage.error = Some("the consumer went away".into());
                                    usage.bytes_in = bytes_in.load(Ordering::Relaxed);
                                    gateway.record(usage);
                                    return;
                                }
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            // The upstream stops when the request body is cut for tampering.
                            let tamper = tampered.lock().ok().and_then(|t| t.clone());
                            usage.error = Some(tamper.unwrap_or_else(|| format!("upstream broke off: {e}")));
                            usage.bytes_in = bytes_in.load(Ordering::Relaxed);
                            gateway.record(usage);
                            return;
                        }
                    }
                }
            }
            if let Ok(end) = signer.end(&gateway.key) {
                let _ = tx.send(end).await;
            }
            usage.response_out_ms = Some(unix_millis());
            usage.bytes_in = bytes_in.load(Ordering::Relaxed);
            gateway.record(usage);
        });
        (reply, rx)
    }

    /// Everything the provider's node checks before a call reaches the upstream:
    /// the envelope's signature, the grant's (by this node), that the grant is
    /// this node's record of it, unrevoked, unexpired, for this caller's node and
    /// this service and endpoint, and the rate.
    async fn check_call(&self, head: &CallHead) -> Result<(Service, String, Vec<VerifyingKey>), CallFailure> {
        head.check_form().map_err(|e| fail(400, e.to_string()))?;
        if !self.signed_by(head.id.node, |keys| head.verify(keys)).await {
            return Err(fail(403, "tampered: the call envelope does not verify"));
        }
        self.first_time(head.id)?;
        let consumer_keys = self.keys_of(head.id.node).await;
        // The grant is checked against this node's own record of it, signature
        // included: no signature to verify here.
        use cascade_core::StateStore;
        let read = |e: cascade_core::StoreError| fail(503, e.to_string());
        let record = self.store.grant(&head.grant.id).map_err(read)?;
        let service = self.store.service(&head.service).map_err(read)?;
        let upstream = self.store.upstream(&head.service).map_err(read)?;
        let record = record
            .filter(|r| r.grant.provider_node == self.me)
            .ok_or_else(|| fail(403, format!("grant {} is not one this node signed", head.grant.id)))?;
        if record.grant != head.grant {
            return Err(fail(
                403,
                format!("grant {} is not one this node signed as presented", head.grant.id),
            ));
        }
        if let Some(at) = record.revoked_at {
            return Err(fail(403, format!("grant {} was revoked at {at}", record.grant.id)));
        }
        if !record.grant.is_current(unix_millis() / 1000) {
            return Err(fail(
                403,
                format!("grant {} expired at {}", record.grant.id, record.grant.expires_at),
            ));
        }
        if record.grant.grantee_node != head.id.node {
            return Err(fail(
                403,
                format!("grant {} belongs to node {}", record.grant.id, record.grant.grantee_node),
            ));
        }
        if record.grant.resource != Resource::Service(head.service.clone()) {
            return Err(fail(403, format!("grant {} is for {}", record.grant.id, record.grant.resource)));
        }
        if !endpoint_allowed(&record.grant.endpoints, &head.method, &head.path) {
            return Err(fail(403, format!("{} {} is not granted", head.method, head.path)));
        }
        let service = service
            .filter(|s| s.status == ServiceStatus::Active)
            .ok_or_else(|| fail(404, format!("service {} is not offered here", head.service)))?;
        let upstream = upstream.ok_or_else(|| fail(502, "no upstream configured"))?;
        if let Err(wait) = self.admit_rate(&record.grant.id, record.grant.rate_limit_per_minute) {
            return Err(CallFailure {
                status: 429,
                reason: format!("{} calls a minute granted", record.grant.rate_limit_per_minute),
                retry_after: Some(wait),
            });
        }
        Ok((service, upstream, consumer_keys))
    }

    /// Refuses a call started outside the window around this node's clock, or one
    /// served before (a replay by a relay that recorded it).
    fn first_time(&self, id: CallId) -> Result<(), CallFailure> {
        let now = unix_millis();
        if id.started_ms + CALL_WINDOW_MS < now || id.started_ms > now + CALL_WINDOW_MS {
            return Err(fail(403, format!("call {id} started outside the accepted window")));
        }
        let mut seen = self.calls_seen.lock().map_err(|_| fail(503, "call registry poisoned"))?;
        if seen.len() >= MAX_CALLS_REMEMBERED {
            seen.retain(|_, at| *at + CALL_WINDOW_MS >= now);
            if seen.len() >= MAX_CALLS_REMEMBERED {
                return Err(fail(503, "too many calls to remember"));
            }
        }
        if seen.insert(id, id.started_ms).is_some() {
            return Err(fail(403, format!("call {id} was served before: a replay")));
        }
        Ok(())
    }

    /// Checks a call passing through: its envelope and grant signatures, that the
    /// grant is current and names the calling node and this service.
    async fn check_relayed(&self, head: &CallHead) -> Result<(), CallFailure> {
        head.check_form().map_err(|e| fail(400, e.to_string()))?;
        if !self.signed_by(head.id.node, |keys| head.verify(keys)).await {
            return Err(fail(403, "tampered: the call envelope does not verify"));
        }
        let grant = &head.grant;
        let digest =
            cascade_protocol::codec::encode(grant).map(|b| *blake3::hash(&b).as_bytes()).unwrap_or_default();
        let known = self.verified.lock().is_ok_and(|v| v.contains(&digest));
        if grant.provider_node != head.provider_node
            || !(known || self.signed_by(head.provider_node, |keys| grant.verify(keys)).await)
        {
            return Err(fail(403, format!("grant {} is not signed by {}", grant.id, head.provider_node)));
        }
        if let (false, Ok(mut verified)) = (known, self.verified.lock()) {
            if verified.len() >= USAGE_KEPT {
                verified.clear();
            }
            verified.insert(digest);
        }
        if !grant.is_current(unix_millis() / 1000) {
            return Err(fail(403, format!("grant {} expired at {}", grant.id, grant.expires_at)));
        }
        if grant.grantee_node != head.id.node || grant.resource != Resource::Service(head.service.clone()) {
            return Err(fail(403, format!("grant {} does not cover this call", grant.id)));
        }
        Ok(())
    }

    /// Serves one call stream a neighbour opened: as the provider, or as a relay.
    pub(crate) async fn serve(self: Arc<Self>, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
        let head = match tokio::time::timeout(
            CALL_HEAD_TIMEOUT,
            read_message::<CallHead>(&mut recv, MAX_CALL_HEAD_BYTES),
        )
        .await
        {
            Ok(Ok(Some((head, _)))) => head,
            _ => return,
        };
        let span = info_span!("call", id = %head.id, service = %head.service);
        async move {
            let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
                let (reply, _) =
                    self.error_reply(head.id, 503, format!("{} is serving too many calls", self.me));
                let _ = write_message(&mut send, &reply).await;
                let _ = send.finish();
                return;
            };
            if head.provider_node != self.me {
                self.relay(head, send, recv).await;
                drop(permit);
                return;
            }
            let (tx, frames) = mpsc::channel(CHUNKS_QUEUED);
            tokio::spawn(async move {
                while let Some((frame, _)) = next_frame(&mut recv).await {
                    if tx.send(frame).await.is_err() {
                        return;
                    }
                }
            });
            let (reply, mut body) = self.clone().provide(head, frames).await;
            if write_message(&mut send, &reply).await.is_err() {
                return;
            }
            while let Some(frame) = body.recv().await {
                if write_message(&mut send, &frame).await.is_err() {
                    return;
                }
            }
            let _ = send.finish();
            drop(permit);
        }
        .instrument(span)
        .await
    }

    /// Passes a call on toward its provider, after checking it: the head is read
    /// and checked, then the streams are spliced byte for byte both ways (the
    /// provider and the consumer verify the bodies; a relay need not).
    async fn relay(self: Arc<Self>, head: CallHead, mut send: quinn::SendStream, recv: quinn::RecvStream) {
        let mut usage = UsageRecord::of(&head, "relay");
        let id = head.id;
        let refuse = |status: u16, reason: String| self.error_reply(id, status, reason).0;
        let onward = match self.check_relayed(&head).await {
            Err(failure) => Err(refuse(failure.status, failure.reason)),
            Ok(()) => match call_next_hop(self.me, head.provider_node) {
                Route::Via(hop) => self.open_toward(hop, &head).await.map_err(|reason| refuse(504, reason)),
                _ => Err(refuse(504, format!("{} has no route to {}", self.me, head.provider_node))),
            },
        };
        let (onward_send, mut onward_recv) = match onward {
            Ok(streams) => streams,
            Err(reply) => {
                usage.status = reply.status;
                usage.error = reply.error.clone();
                self.record(usage);
                let _ = write_message(&mut send, &reply).await;
                let _ = send.finish();
                return;
            }
        };
        usage.request_out_ms = Some(unix_millis());
        let request = tokio::spawn(splice(recv, onward_send));
        let reply = tokio::time::timeout(
            CALL_HEAD_TIMEOUT,
            read_message::<ReplyHead>(&mut onward_recv, MAX_CALL_HEAD_BYTES),
        )
        .await;
        let reply = match reply {
            Ok(Ok(Some((reply, _)))) => reply,
            _ => refuse(504, format!("{} got no answer from the next hop in time", self.me)),
        };
        usage.response_in_ms = Some(unix_millis());
        usage.status = reply.status;
        usage.error = reply.error.clone();
        if write_message(&mut send, &reply).await.is_ok() {
            usage.bytes_out = splice(onward_recv, send).await;
        }
        usage.bytes_in = request.await.unwrap_or(0);
        usage.response_out_ms = Some(unix_millis());
        self.record(usage);
    }

    /// Opens a call stream toward `hop` and sends the head on it.
    async fn open_toward(
        &self,
        hop: NodeId,
        head: &CallHead,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), String> {
        let cannot = |why: String| format!("{} could not forward the call to {hop}: {why}", self.me);
        let connection = self
            .link(hop)
            .ok_or_else(|| format!("{} could not forward the call: no link to {hop}", self.me))?;
        let (mut send, recv) = connection.open_bi().await.map_err(|e| cannot(e.to_string()))?;
        write_message(&mut send, head).await.map_err(|e| cannot(e.to_string()))?;
        Ok((send, recv))
    }
}

/// The next frame of a call's body, or none at its end, on an error, or when
/// nothing came for `CALL_IDLE_TIMEOUT`.
async fn next_frame(recv: &mut quinn::RecvStream) -> Option<(CallFrame, usize)> {
    match tokio::time::timeout(CALL_IDLE_TIMEOUT, read_message::<CallFrame>(recv, MAX_CALL_FRAME_BYTES)).await
    {
        Ok(Ok(frame)) => frame,
        _ => None,
    }
}

/// Copies a call stream on byte for byte until it ends; a side that errs or
/// stays silent for `CALL_IDLE_TIMEOUT` ends both. Returns the bytes copied.
async fn splice(mut from: quinn::RecvStream, mut to: quinn::SendStream) -> u64 {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match tokio::time::timeout(CALL_IDLE_TIMEOUT, from.read(&mut buf)).await {
            Ok(Ok(Some(n))) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                total += n as u64;
            }
            Ok(Ok(None)) => {
                let _ = to.finish();
                return total;
            }
            _ => break,
        }
    }
    let _ = to.reset(0u32.into());
    let _ = from.stop(0u32.into());
    total
}

/// Accepts the call streams a neighbour opens on a link, until the link ends.
pub(crate) async fn accept_calls(gateway: Arc<Gateway>, connection: quinn::Connection) {
    while let Ok((send, recv)) = connection.accept_bi().await {
        tokio::spawn(gateway.clone().serve(send, recv));
    }
}
