//! Links to neighbours over QUIC: one reader and one writer per connection. Links
//! only carry frames; every decision about them is the core's. The dialer and the
//! accept loop that set them up are in `dialer` and `admission`.

use crate::driver::Message;
use crate::faults::{Faults, Traffic};
use crate::gateway::Gateway;
use cascade_core::{LinkEnd, LinkId, LinkRole};
use cascade_protocol::limits::{INBOX_BUDGET_BYTES, OUTBOX_CAPACITY};
use cascade_protocol::{Batcher, Frame, LogId, Misbehaviour, PeerError};
use cascade_store::Store;
use cascade_transport::{read_frame, write_frame, FrameError, PeerLink};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Items queued for one neighbour's writer.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A frame built by the core.
    Frame(Frame),
    /// Stored deltas to stream, read from the store in batches by the writer.
    Range { log: LogId, from: u64, to: u64 },
}

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
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) datasets: Arc<crate::datasets::Datasets>,
}

impl LinkContext {
    pub(crate) fn new(
        inbox: mpsc::Sender<Message>,
        store: Store,
        faults: Arc<Faults>,
        traffic: Arc<Traffic>,
        cancel: CancellationToken,
        gateway: Arc<Gateway>,
        datasets: Arc<crate::datasets::Datasets>,
    ) -> LinkContext {
        let budget = Arc::new(Semaphore::new(INBOX_BUDGET_BYTES / BUDGET_UNIT));
        LinkContext { inbox, store, budget, faults, traffic, cancel, gateway, datasets }
    }
}

/// A read failure, classified: what the peer did wrong, if anything.
fn read_failure(e: &FrameError) -> Option<PeerError> {
    match e {
        FrameError::TooLarge(len) => Some(Misbehaviour::OversizedFrame { len: *len }.into()),
        FrameError::Malformed(e) => Some(Misbehaviour::MalformedFrame(e.to_string()).into()),
        FrameError::Call(e) => Some(Misbehaviour::MalformedFrame(e.to_string()).into()),
        FrameError::Read(_) | FrameError::Write(_) | FrameError::ReadBody(_) => None,
    }
}

/// Runs one admitted link until either side ends it; says how it ended, for the
/// dialer's schedule.
pub(crate) async fn run_link(link: PeerLink, role: LinkRole, ctx: LinkContext) -> LinkEnd {
    let LinkContext { inbox, store, budget, faults, traffic, cancel, gateway, datasets } = ctx;
    let peer = link.identity.id;
    let id: LinkId = NEXT_LINK.fetch_add(1, Ordering::Relaxed);
    let (outbox, mut queue) = mpsc::channel::<Outgoing>(OUTBOX_CAPACITY);
    let PeerLink { connection, mut send, mut recv, .. } = link;
    let up = Message::LinkUp { link: id, peer, role, outbox, connection: connection.clone() };
    if inbox.send(up).await.is_err() {
        return LinkEnd::Lost;
    }
    gateway.link_up(peer, connection.clone());
    let calls = tokio::spawn(accept_streams(gateway.clone(), datasets, connection.clone(), peer));
    let heard = AtomicBool::new(false);
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
                    heard.store(true, Ordering::Relaxed);
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
    let refused = matches!(
        connection.close_reason(),
        Some(quinn::ConnectionError::ApplicationClosed(close)) if refusal(close.error_code)
    );
    connection.close(0u32.into(), b"");
    gateway.link_down(peer, &connection);
    calls.abort();
    let _ = inbox.send(Message::LinkDown { link: id, cause }).await;
    if heard.load(Ordering::Relaxed) {
        LinkEnd::Heard
    } else if refused {
        LinkEnd::Refused
    } else {
        LinkEnd::Lost
    }
}

/// Whether a peer's close code says it will not have this node (as opposed to a
/// transient end: shutting down, or "try again later").
pub(crate) fn refusal(code: quinn::VarInt) -> bool {
    code == cascade_transport::close::REFUSED.into() || code == cascade_transport::close::PROTOCOL.into()
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

/// Accepts the streams the neighbour `peer` opens on a link after the sync
/// stream, until the link ends: each names its kind in its first byte (a
/// service call or a chunk request); anything else is reset.
async fn accept_streams(
    gateway: Arc<Gateway>,
    datasets: Arc<crate::datasets::Datasets>,
    connection: quinn::Connection,
    peer: cascade_protocol::NodeId,
) {
    use cascade_protocol::dataset::StreamKind;
    while let Ok((mut send, mut recv)) = connection.accept_bi().await {
        let (gateway, datasets) = (gateway.clone(), datasets.clone());
        tokio::spawn(async move {
            let mut kind = [0u8; 1];
            let read = tokio::time::timeout(crate::datasets::CHUNK_IDLE, recv.read_exact(&mut kind)).await;
            match (read, StreamKind::of(kind[0])) {
                (Ok(Ok(())), Some(StreamKind::Call)) => gateway.serve(peer, send, recv).await,
                (Ok(Ok(())), Some(StreamKind::Chunk)) => datasets.serve(peer, send, recv).await,
                _ => {
                    let _ = send.reset(0u32.into());
                }
            }
        });
    }
}
