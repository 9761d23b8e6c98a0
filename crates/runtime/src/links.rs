//! Links to neighbours over QUIC: one reader and one writer per connection, the
//! parent dialer with back-off, and the accept loop for children. Links only carry
//! frames; every decision about them is the core's.

use crate::driver::Message;
use crate::faults::{Faults, Traffic};
use cascade_core::{LinkId, LinkRole, Status};
use cascade_protocol::limits::{INBOX_BUDGET_BYTES, MAX_CONCURRENT_ADMISSIONS, OUTBOX_CAPACITY};
use cascade_protocol::{Batcher, Frame, Incompatibility, LogId, Misbehaviour, NodeId, PeerError};
use cascade_store::Store;
use cascade_transport::{read_frame, write_frame, Endpoint, FrameError, PeerLink, TransportError};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

/// Items queued for one neighbour's writer.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A frame built by the core.
    Frame(Frame),
    /// Stored deltas to stream, read from the store in batches by the writer.
    Range { log: LogId, from: u64, to: u64 },
}

/// First retry delay of the parent dialer; doubles up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between two dials of the parent.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Budget units are KiB: the semaphore counts at most `INBOX_BUDGET_BYTES / 1024`.
const BUDGET_UNIT: usize = 1024;

/// Link ids are unique in the process, so a link's id never names another.
static NEXT_LINK: AtomicU64 = AtomicU64::new(1);

/// What every link of a node shares.
#[derive(Clone)]
pub(crate) struct LinkContext {
    pub(crate) inbox: mpsc::Sender<Message>,
    pub(crate) store: Store,
    pub(crate) budget: Arc<Semaphore>,
    pub(crate) faults: Arc<Faults>,
    pub(crate) traffic: Arc<Traffic>,
    pub(crate) cancel: CancellationToken,
}

impl LinkContext {
    pub(crate) fn new(
        inbox: mpsc::Sender<Message>,
        store: Store,
        faults: Arc<Faults>,
        traffic: Arc<Traffic>,
        cancel: CancellationToken,
    ) -> LinkContext {
        let budget = Arc::new(Semaphore::new(INBOX_BUDGET_BYTES / BUDGET_UNIT));
        LinkContext { inbox, store, budget, faults, traffic, cancel }
    }
}

/// A read failure, classified: what the peer did wrong, if anything.
fn read_failure(e: &FrameError) -> Option<PeerError> {
    match e {
        FrameError::TooLarge(len) => Some(Misbehaviour::OversizedFrame { len: *len }.into()),
        FrameError::Malformed(e) => Some(Misbehaviour::MalformedFrame(e.to_string()).into()),
        FrameError::Read(_) | FrameError::Write(_) => None,
    }
}

/// Runs one admitted link until either side ends it.
pub(crate) async fn run_link(link: PeerLink, role: LinkRole, ctx: LinkContext) {
    let LinkContext { inbox, store, budget, faults, traffic, cancel } = ctx;
    let peer = link.identity.id;
    let id: LinkId = NEXT_LINK.fetch_add(1, Ordering::Relaxed);
    let (outbox, mut queue) = mpsc::channel::<Outgoing>(OUTBOX_CAPACITY);
    let PeerLink { connection, mut send, mut recv, .. } = link;
    let up = Message::LinkUp { link: id, peer, role, outbox, connection: connection.clone() };
    if inbox.send(up).await.is_err() {
        return;
    }
    let writer = async {
        while let Some(item) = queue.recv().await {
            let result = match item {
                Outgoing::Frame(frame) => {
                    if let Some(delay) = faults.delay() {
                        tokio::time::sleep(delay).await;
                    }
                    write_frame(&mut send, &frame).await.map(|n| traffic.record(n)).map_err(|e| e.to_string())
                }
                Outgoing::Range { log, from, to } => {
                    send_range(&store, &mut send, log, from, to, &traffic).await
                }
            };
            if let Err(e) = result {
                return (format!("write: {e}"), None);
            }
        }
        ("closed by the core".to_string(), None)
    };
    let reader = async {
        loop {
            match read_frame(&mut recv).await {
                Ok(Some((frame, len))) => {
                    let units = u32::try_from(len / BUDGET_UNIT + 1).unwrap_or(u32::MAX);
                    let Ok(budget) = budget.clone().acquire_many_owned(units).await else {
                        return ("node stopping".to_string(), None);
                    };
                    if inbox.send(Message::Frame { link: id, frame, budget }).await.is_err() {
                        return ("node stopping".to_string(), None);
                    }
                }
                Ok(None) => return ("stream closed".to_string(), None),
                Err(e) => {
                    let cause = read_failure(&e);
                    if cause.is_some() {
                        // The peer broke the protocol: drop it, saying why.
                        connection.close(cascade_transport::close::PROTOCOL.into(), e.to_string().as_bytes());
                    }
                    return (format!("read: {e}"), cause);
                }
            }
        }
    };
    let (reason, cause) = tokio::select! {
        r = writer => r,
        r = reader => r,
        e = connection.closed() => (format!("closed: {e}"), None),
        _ = cancel.cancelled() => ("node stopping".to_string(), None),
    };
    match &cause {
        Some(fault) => warn!(%peer, %fault, "link ended: the peer is at fault"),
        None => info!(%peer, %reason, "link ended"),
    }
    connection.close(0u32.into(), b"");
    let _ = inbox.send(Message::LinkDown { link: id, cause }).await;
}

/// Streams stored deltas `from..=to`, cut into frames by the one batching rule, and
/// on past `to` until a signed delta, so that a run never leaves without the
/// signature that covers it (the core may have decided on a range whose end its
/// group then extended; the store holds the closer once the group is committed).
async fn send_range(
    store: &Store,
    send: &mut quinn::SendStream,
    log: LogId,
    from: u64,
    to: u64,
    traffic: &Traffic,
) -> Result<(), String> {
    let mut batcher = Batcher::new();
    let mut last = None;
    for (expected, delta) in (from..).zip(store.range(log, from, u64::MAX)) {
        let delta = delta.map_err(|e| e.to_string())?;
        if delta.seq != expected {
            return Err(format!("store hole in {log} at {expected}"));
        }
        let done = delta.seq >= to && delta.is_signed();
        last = Some(delta.seq);
        if let Some(frame) = batcher.push(Arc::new(delta)) {
            traffic.record(write_frame(send, &frame).await.map_err(|e| e.to_string())?);
        }
        if done {
            break;
        }
    }
    if last.is_none_or(|seq| seq < to) {
        return Err(format!("the store ends before {log} #{to}"));
    }
    while let Some(frame) = batcher.finish() {
        traffic.record(write_frame(send, &frame).await.map_err(|e| e.to_string())?);
    }
    Ok(())
}

/// Keeps a link to the parent up: dials, runs the link, dials again with back-off.
pub(crate) async fn dial_parent(endpoint: Endpoint, parent: NodeId, addr: SocketAddr, ctx: LinkContext) {
    let mut backoff = MIN_BACKOFF;
    while !ctx.cancel.is_cancelled() {
        if ctx.faults.is_blocked(parent) {
            pause(&ctx.cancel, MAX_BACKOFF).await;
            continue;
        }
        match endpoint.connect(addr, parent).await {
            Ok(link) => {
                backoff = MIN_BACKOFF;
                run_link(link, LinkRole::Parent, ctx.clone())
                    .instrument(info_span!("peer", peer = %parent))
                    .await;
            }
            Err(e) => {
                warn!(%parent, %addr, error = %e, "cannot reach parent");
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        pause(&ctx.cancel, backoff).await;
    }
}

async fn pause(cancel: &CancellationToken, how_long: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(how_long) => {}
        _ = cancel.cancelled() => {}
    }
}

/// Accepts children until the node stops. Revoked and blocked nodes are refused;
/// every link runs in a task of this loop's set, aborted when the loop ends.
pub(crate) async fn accept_children(endpoint: Endpoint, status: Arc<RwLock<Status>>, ctx: LinkContext) {
    let admissions = Arc::new(Semaphore::new(MAX_CONCURRENT_ADMISSIONS));
    let mut links = JoinSet::new();
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            _ = ctx.cancel.cancelled() => None,
            Some(_) = links.join_next(), if !links.is_empty() => continue,
        };
        let Some(incoming) = incoming else { break };
        let Ok(admission) = admissions.clone().try_acquire_owned() else {
            debug!(remote = %incoming.remote_address(), "too many handshakes in progress; refused");
            incoming.refuse();
            continue;
        };
        let endpoint = endpoint.clone();
        let status = status.clone();
        let ctx = ctx.clone();
        links.spawn(async move {
            let admit = |id: &cascade_certs::NodeIdentity| -> Result<(), Incompatibility> {
                let revoked = status.read().map(|s| s.revoked.contains(&id.id)).unwrap_or(false);
                if revoked {
                    Err(Incompatibility::Revoked { node: id.id, reason: None })
                } else if ctx.faults.is_blocked(id.id) {
                    Err(Incompatibility::Blocked(id.id))
                } else {
                    Ok(())
                }
            };
            let remote = incoming.remote_address();
            let admitted = endpoint.admit(incoming, admit).await;
            drop(admission);
            match admitted {
                Ok(link) => {
                    let peer = link.identity.id;
                    run_link(link, LinkRole::Child, ctx).instrument(info_span!("peer", %peer)).await;
                }
                Err(TransportError::Refused(reason)) => {
                    let refused = Message::Refused { remote: remote.to_string(), reason };
                    let _ = ctx.inbox.send(refused).await;
                }
                Err(e) => debug!(%remote, error = %e, "incoming connection failed"),
            }
        });
    }
    links.shutdown().await;
}
