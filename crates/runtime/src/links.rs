//! Links to neighbours: one reader and one writer per connection, the parent
//! dialer with back-off, and the accept loop for children.

use crate::engine_task::Command;
use cascade_protocol::message::{MAX_BATCH_BYTES, MAX_BATCH_DELTAS};
use cascade_protocol::{Frame, LogId, NodeId};
use cascade_store::Store;
use cascade_transport::{read_frame, write_frame, Endpoint, PeerLink};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tracing::{info, info_span, warn, Instrument};

/// Items queued for one neighbour's writer.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A frame built by the engine.
    Frame(Frame),
    /// Stored deltas to stream, read from the store in batches by the writer.
    Range { log: LogId, from: u64, to: u64 },
}

/// Queue length per neighbour. A catch-up is one `Range` item, so this bounds live
/// frames only; a neighbour this far behind is dropped and resyncs on reconnect.
pub(crate) const OUTBOX_CAPACITY: usize = 8192;

/// First retry delay of the parent dialer; doubles up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between two dials of the parent.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Bytes of received frames a node holds at once, in KiB units (64 MiB): readers
/// wait for budget before queueing a frame, so hostile peers cannot grow memory
/// with large frames faster than the engine handles them.
pub(crate) const INBOX_BUDGET_KIB: usize = 64 * 1024;

/// Incoming connections in TLS handshake or admission at once: bounds the work a
/// flood of connection attempts can cause before any identity is known.
const MAX_CONCURRENT_ADMISSIONS: usize = 64;

static GENERATION: AtomicU64 = AtomicU64::new(1);

/// What every link of a node shares.
#[derive(Clone)]
pub(crate) struct LinkContext {
    pub(crate) inbox: mpsc::Sender<Command>,
    pub(crate) store: Store,
    pub(crate) budget: Arc<Semaphore>,
    pub(crate) faults: Arc<crate::faults::Faults>,
    pub(crate) traffic: Arc<crate::faults::Traffic>,
}

/// Runs one admitted link until either side ends it.
pub(crate) async fn run_link(link: PeerLink, role: &'static str, ctx: LinkContext) {
    let LinkContext { inbox, store, budget, faults, traffic } = ctx;
    let peer = link.identity.id;
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
    let (outbox, mut queue) = mpsc::channel::<Outgoing>(OUTBOX_CAPACITY);
    let PeerLink { connection, mut send, mut recv, .. } = link;
    if inbox
        .send(Command::LinkUp { peer, generation, role, outbox, connection: connection.clone() })
        .await
        .is_err()
    {
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
                return format!("write: {e}");
            }
        }
        "engine closed the link".to_string()
    };
    let reader = async {
        loop {
            match read_frame(&mut recv).await {
                Ok(Some((frame, len))) => {
                    let units = u32::try_from(len / 1024 + 1).unwrap_or(u32::MAX);
                    let Ok(budget) = budget.clone().acquire_many_owned(units).await else {
                        return "node stopping".to_string();
                    };
                    if inbox.send(Command::Frame { peer, generation, frame, budget }).await.is_err() {
                        return "node stopping".to_string();
                    }
                }
                Ok(None) => return "stream closed".to_string(),
                Err(e) => {
                    // Oversized or malformed: the peer broke the protocol; drop it.
                    connection.close(cascade_transport::close::PROTOCOL.into(), e.to_string().as_bytes());
                    return format!("read: {e}");
                }
            }
        }
    };
    let reason = tokio::select! {
        r = writer => r,
        r = reader => r,
        e = connection.closed() => format!("closed: {e}"),
    };
    info!(%peer, %reason, "link ended");
    connection.close(0u32.into(), b"");
    let _ = inbox.send(Command::LinkDown { peer, generation }).await;
}

async fn send_range(
    store: &Store,
    send: &mut quinn::SendStream,
    log: LogId,
    from: u64,
    to: u64,
    traffic: &crate::faults::Traffic,
) -> Result<(), String> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    let mut expected = from;
    for delta in store.range(log, from, to) {
        let delta = delta.map_err(|e| e.to_string())?;
        if delta.seq != expected {
            return Err(format!("store hole in {log} at {expected}"));
        }
        expected += 1;
        let size = delta.body.len() + 128;
        if batch.len() == MAX_BATCH_DELTAS || bytes + size > MAX_BATCH_BYTES {
            let n = write_frame(send, &Frame::Deltas(std::mem::take(&mut batch)))
                .await
                .map_err(|e| e.to_string())?;
            traffic.record(n);
            bytes = 0;
        }
        bytes += size;
        batch.push(delta);
    }
    if !batch.is_empty() {
        let n = write_frame(send, &Frame::Deltas(batch)).await.map_err(|e| e.to_string())?;
        traffic.record(n);
    }
    Ok(())
}

/// Keeps a link to the parent up: dials, runs the link, dials again with back-off.
pub(crate) async fn dial_parent(endpoint: Endpoint, parent: NodeId, addr: SocketAddr, ctx: LinkContext) {
    let mut backoff = MIN_BACKOFF;
    loop {
        if ctx.faults.is_blocked(parent) {
            tokio::time::sleep(MAX_BACKOFF).await;
            continue;
        }
        match endpoint.connect(addr, parent).await {
            Ok(link) => {
                backoff = MIN_BACKOFF;
                run_link(link, "parent", ctx.clone()).instrument(info_span!("peer", peer = %parent)).await;
            }
            Err(e) => {
                warn!(%parent, %addr, error = %e, "cannot reach parent");
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        if ctx.inbox.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
    }
}

/// Accepts children until the endpoint closes. Revoked nodes are refused.
pub(crate) async fn accept_children(
    endpoint: Endpoint,
    revoked: Arc<RwLock<crate::status::Snapshot>>,
    ctx: LinkContext,
) {
    let admissions = Arc::new(Semaphore::new(MAX_CONCURRENT_ADMISSIONS));
    while let Some(incoming) = endpoint.accept().await {
        let Ok(admission) = admissions.clone().try_acquire_owned() else {
            warn!(remote = %incoming.remote_address(), "too many handshakes in progress; refused");
            incoming.refuse();
            continue;
        };
        let endpoint = endpoint.clone();
        let revoked = revoked.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let admit = |id: &cascade_certs::NodeIdentity| {
                let set: BTreeSet<NodeId> = revoked.read().map(|s| s.revoked.clone()).unwrap_or_default();
                if set.contains(&id.id) {
                    Err(format!("{} is revoked", id.id))
                } else if ctx.faults.is_blocked(id.id) {
                    Err(format!("the link to {} is blocked", id.id))
                } else {
                    Ok(())
                }
            };
            let remote = incoming.remote_address();
            let admitted = endpoint.admit(incoming, admit).await;
            drop(admission);
            if let Err(e) = &admitted {
                let refusal = cascade_store::AuditEntry {
                    actor: format!("peer:{remote}"),
                    org: None,
                    kind: "peer.refused".into(),
                    detail: e.to_string(),
                };
                if let Err(e) = ctx.store.audit().append(crate::node::unix_millis(), vec![refusal]) {
                    warn!(error = %e, "cannot audit a refused peer");
                }
            }
            if let Ok(link) = admitted {
                let peer = link.identity.id;
                run_link(link, "child", ctx).instrument(info_span!("peer", %peer)).await;
            }
        });
    }
}
