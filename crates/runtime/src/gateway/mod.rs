//! The service gateway (服务对接): a consumer calls a service at its own node;
//! the call goes, on a stream of its own over the existing QUIC links, hop by hop
//! to the provider's node, which checks the envelope, the grant and the rate,
//! proxies to the upstream over HTTP and streams the answer back. Bodies stream
//! both ways in frames tagged with the key the two ends share (see
//! `cascade_protocol::call`): no hop holds more than one frame of a body, and a
//! relay that alters one is caught. Every hop keeps a usage record of each call
//! it saw.
//!
//! `consumer` starts calls, `relay` passes them on, `provider` serves them.

mod consumer;
mod provider;
mod relay;

use crate::driver::{unix_millis, Message};
use bytes::Bytes;
use cascade_core::CallGate;
use cascade_metrics::Histogram;
use cascade_protocol::call::{CallFrame, CallHead, CallId, PairKey, ReplyHead};
use cascade_protocol::NodeId;
use cascade_store::{Store, UsageFilter, UsageRecord};
use cascade_transport::read_call_frame;
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Calls a node serves at once (as consumer, relay or provider): beyond, a call
/// is answered 503 at once instead of queueing.
pub const MAX_CALLS_IN_FLIGHT: usize = 256;
/// How long a hop waits for a call's head, and for the next hop's answer head.
pub const CALL_HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Held grants, and verified grants, a cache keeps at most (cleared when full).
const CACHE_KEPT: usize = 10_000;
/// Request headers a provider passes on to its upstream (end to end; hop-by-hop
/// headers, credentials and `Host` never are, whatever a call carries).
pub const FORWARDED_HEADERS: [&str; 4] = ["content-type", "accept", "accept-language", "content-language"];
/// How long the keys of a member are reused before the core is asked again.
const KEYS_MS: u64 = 60_000;
/// How long the consumer's node reuses what it read of its grants.
const HELD_GRANTS_MS: u64 = 1_000;
/// Body frames queued between a hop's reader and writer: with QUIC flow control,
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

/// Why a call was not served, as the caller sees it: the provider's gate's
/// refusals, and those of the hops on the way.
pub type CallFailure = cascade_core::CallRefusal;

fn fail(status: u16, reason: impl Into<String>) -> CallFailure {
    CallFailure { status, reason: reason.into(), retry_after: None }
}

/// The grants an organization holds for a service, and when they were read (ms).
type HeldGrants = (u64, Vec<cascade_core::GrantRecord>);

/// What this node knows of another's keys: every key it has held, its current
/// one first, and the pair key this node shares with each.
struct Peer {
    keys: Vec<VerifyingKey>,
    pairs: Vec<PairKey>,
}

impl Peer {
    /// The pair key shared with the holder of `key`.
    fn pair_for(&self, key: &VerifyingKey) -> Option<&PairKey> {
        self.keys.iter().position(|k| k == key).and_then(|i| self.pairs.get(i))
    }

    /// The pair key shared with its current key.
    fn current(&self) -> Option<&PairKey> {
        self.pairs.first()
    }
}

/// A record of a call arriving at this hop now, in `role`.
fn usage_of(head: &CallHead, role: &str) -> UsageRecord {
    UsageRecord {
        call: head.id.to_string(),
        service: head.service.clone(),
        caller: head.caller.clone(),
        consumer: head.grant.grantee.clone(),
        role: role.to_string(),
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

/// How often pending usage records are written: what a crash may lose of them.
const USAGE_WRITE_EVERY: Duration = Duration::from_millis(500);

/// Writes the gateway's usage records every `USAGE_WRITE_EVERY` until the node
/// stops, then once more.
pub(crate) async fn write_usage_every(gateway: Arc<Gateway>, cancel: tokio_util::sync::CancellationToken) {
    let mut every = tokio::time::interval(USAGE_WRITE_EVERY);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = every.tick() => {}
        }
        if let Err(e) = gateway.write_usage() {
            tracing::warn!(error = %e, "usage records not written");
        }
    }
    if let Err(e) = gateway.write_usage() {
        tracing::warn!(error = %e, "usage records not written");
    }
}

/// Most distinct services counted by name in the call metrics; calls of any
/// further service are counted under `service="other"`.
pub const MAX_SERVICE_LABELS: usize = 1_000;
/// Usage records waiting to be written, at most; beyond, the oldest are
/// dropped (and counted): the store fell that far behind.
const USAGE_PENDING: usize = 50_000;

/// Calls by role, service and status, and each role's latency, for metrics.
#[derive(Default)]
pub(crate) struct CallMetrics {
    inner: Mutex<CallMetricsInner>,
}

#[derive(Default, Clone)]
pub(crate) struct CallMetricsInner {
    /// (role, service, status) → calls.
    pub(crate) calls: BTreeMap<(String, String, u16), u64>,
    /// Role → seconds from the request reaching this hop to the answer's head
    /// reaching it: the time the call spent at this hop and beyond.
    pub(crate) latency: BTreeMap<String, Histogram>,
    /// Usage records dropped before they were written.
    pub(crate) usage_dropped: u64,
    /// The services counted by name.
    services: HashSet<String>,
}

impl CallMetrics {
    /// A copy, to render.
    pub(crate) fn snapshot(&self) -> CallMetricsInner {
        self.inner.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn count(&self, record: &UsageRecord) {
        let Ok(mut m) = self.inner.lock() else { return };
        let known = m.services.contains(&record.service)
            || (m.services.len() < MAX_SERVICE_LABELS && m.services.insert(record.service.clone()));
        let service = if known { record.service.clone() } else { "other".to_string() };
        *m.calls.entry((record.role.clone(), service, record.status)).or_default() += 1;
        if let Some(answered) = record.response_in_ms {
            let seconds = answered.saturating_sub(record.request_in_ms) as f64 / 1000.0;
            m.latency.entry(record.role.clone()).or_default().observe(seconds);
        }
    }
}

/// Everything the gateway of one node shares.
pub(crate) struct Gateway {
    me: NodeId,
    key: SigningKey,
    /// The pair key of this node with itself, for calls it serves its own consumers.
    own_pair: PairKey,
    store: Store,
    inbox: mpsc::Sender<Message>,
    /// The live link to each neighbour.
    links: Mutex<HashMap<NodeId, quinn::Connection>>,
    /// Members' keys and pair keys as last asked of the core (asked again when a
    /// signature or tag fails with them: a key rotation adds one).
    peers: Mutex<HashMap<NodeId, (u64, Arc<Peer>)>>,
    /// Grants this node's consumers hold, by organization and service, as read
    /// from the store at most `HELD_GRANTS_MS` ago (the provider checks its own
    /// record of every grant on every call: this only spares the store).
    held: Mutex<HashMap<(String, String), HeldGrants>>,
    /// Digests of whole grants (fields and signature) a relay verified: a grant is
    /// presented call after call.
    verified: Mutex<HashSet<[u8; 32]>>,
    /// The core's decision on calls this node serves as provider.
    gate: CallGate,
    next: AtomicU64,
    in_flight: Arc<Semaphore>,
    /// Usage records not written to the store yet.
    pending: Mutex<VecDeque<UsageRecord>>,
    pub(crate) metrics: CallMetrics,
    http: reqwest::Client,
    /// Largest request body a call may carry.
    max_body: u64,
    /// How long a hop waits for the next bytes of a call's body.
    idle: Duration,
}

impl Gateway {
    pub(crate) fn new(
        me: NodeId,
        key: SigningKey,
        store: Store,
        inbox: mpsc::Sender<Message>,
        config: &crate::config::GatewayConfig,
    ) -> Gateway {
        let own_pair = PairKey::own(&key);
        Gateway {
            me,
            key,
            own_pair,
            store,
            inbox,
            links: Mutex::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashSet::new()),
            gate: CallGate::new(unix_millis()),
            next: AtomicU64::new(1),
            in_flight: Arc::new(Semaphore::new(MAX_CALLS_IN_FLIGHT)),
            pending: Mutex::new(VecDeque::new()),
            metrics: CallMetrics::default(),
            http: reqwest::Client::builder().tcp_nodelay(true).build().unwrap_or_default(),
            max_body: config.max_body_bytes,
            idle: Duration::from_secs(config.idle_timeout_secs.max(1)),
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

    pub(crate) fn link(&self, peer: NodeId) -> Option<quinn::Connection> {
        self.links.lock().ok().and_then(|l| l.get(&peer).cloned())
    }

    /// What this node knows of `node`'s keys, from the cache or the core.
    async fn peer(&self, node: NodeId) -> Arc<Peer> {
        let now = unix_millis();
        let cached =
            self.peers.lock().ok().and_then(|p| p.get(&node).filter(|(at, _)| now < at + KEYS_MS).cloned());
        match cached {
            Some((_, peer)) => peer,
            None => self.fresh_peer(node).await,
        }
    }

    /// What the core knows of `node`'s keys now (a revoked member has none).
    async fn fresh_peer(&self, node: NodeId) -> Arc<Peer> {
        let (reply, keys) = oneshot::channel();
        let keys = match self.inbox.send(Message::Keys { node, reply }).await {
            Ok(()) => keys.await.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let (keys, pairs) =
            keys.into_iter().filter_map(|k| Some((k, PairKey::derive(&self.key, &k)?))).unzip();
        let peer = Arc::new(Peer { keys, pairs });
        if let Ok(mut cache) = self.peers.lock() {
            cache.insert(node, (unix_millis(), peer.clone()));
        }
        peer
    }

    /// The first of `node`'s pair keys `find` accepts (asking the core again once
    /// if the cached ones fail: the node may have a new key).
    async fn pair_found(&self, node: NodeId, find: impl Fn(&Peer) -> Option<PairKey>) -> Option<PairKey> {
        if node == self.me {
            let me = Peer { keys: vec![self.key.verifying_key()], pairs: vec![self.own_pair.clone()] };
            return find(&me);
        }
        match find(self.peer(node).await.as_ref()) {
            Some(found) => Some(found),
            None => find(self.fresh_peer(node).await.as_ref()),
        }
    }

    /// Whether `check` passes with `node`'s keys (asking the core again once if
    /// the cached keys fail: the node may have a new one).
    async fn signed_by(&self, node: NodeId, check: impl Fn(&[VerifyingKey]) -> bool) -> bool {
        check(&self.peer(node).await.keys) || check(&self.fresh_peer(node).await.keys)
    }

    /// The pair key this node shares with `node`'s current key.
    async fn pair_with(&self, node: NodeId) -> Option<PairKey> {
        self.pair_found(node, |p| p.current().cloned()).await
    }

    /// The newest usage records `filter` admits (the pending ones written
    /// first), newest first; and where the next page starts, if any.
    pub(crate) fn usage(
        &self,
        filter: &UsageFilter,
        limit: usize,
    ) -> Result<(Vec<UsageRecord>, Option<cascade_store::UsageCursor>), cascade_core::StoreError> {
        self.write_usage()?;
        self.store.usage(filter, limit)
    }

    /// Writes the pending usage records to the store.
    pub(crate) fn write_usage(&self) -> Result<(), cascade_core::StoreError> {
        let mut pending = self.pending.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default();
        if pending.is_empty() {
            return Ok(());
        }
        self.store.record_usage(pending.make_contiguous(), unix_millis())
    }

    fn record(&self, record: UsageRecord) {
        self.metrics.count(&record);
        let Ok(mut pending) = self.pending.lock() else { return };
        if pending.len() >= USAGE_PENDING {
            pending.pop_front();
            if let Ok(mut m) = self.metrics.inner.lock() {
                m.usage_dropped += 1;
            }
        }
        pending.push_back(record);
    }

    async fn error_reply(
        &self,
        id: CallId,
        status: u16,
        error: String,
    ) -> (ReplyHead, mpsc::Receiver<CallFrame>) {
        self.refusal(id, CallFailure { status, reason: error, retry_after: None }).await
    }

    /// An answer refusing a call (with `Retry-After` when waiting helps), tagged
    /// for the consumer's node.
    async fn refusal(&self, id: CallId, failure: CallFailure) -> (ReplyHead, mpsc::Receiver<CallFrame>) {
        let CallFailure { status, reason: error, retry_after } = failure;
        let headers = retry_after.map(|s| ("retry-after".to_string(), s.to_string())).into_iter().collect();
        let head = ReplyHead { id, by: self.me, status, headers, error: Some(error), tag: [0; 32] };
        // Without a key of the consumer's node, the answer cannot be tagged: its
        // node takes it for tampered, which it cannot tell apart.
        let head = match self.pair_with(id.node).await {
            Some(pair) => head.seal(&pair),
            None => head,
        };
        (head, mpsc::channel(1).1)
    }
}

/// The next body frame of a call, or none at its end, on an error, or when
/// nothing came for `idle`.
async fn next_frame(recv: &mut quinn::RecvStream, idle: Duration) -> Option<CallFrame> {
    match tokio::time::timeout(idle, read_call_frame(recv)).await {
        Ok(Ok(frame)) => frame,
        _ => None,
    }
}

/// Copies the body frames of a stream into a channel until either ends.
async fn frames_into(mut recv: quinn::RecvStream, tx: mpsc::Sender<CallFrame>, idle: Duration) {
    while let Some(frame) = next_frame(&mut recv, idle).await {
        if tx.send(frame).await.is_err() {
            return;
        }
    }
}

/// A body chunk for the admin interface's streams.
type Chunk = Result<Bytes, String>;
