//! Chunk streams: a neighbour asks for a chunk on behalf of a requester below
//! or above it. This node checks the request, then answers from its own store,
//! or passes the request on toward the entry's origin and the answer back,
//! checking every group on the way and keeping a copy when it may serve it
//! later (a caching hub).

use super::{ChunkCounters, Datasets, BATCH_GROUPS, CHUNK_IDLE};
use crate::driver::{unix_millis, Message};
use bytes::Bytes;
use cascade_access::Principal;
use cascade_chunks::tree::group_len;
use cascade_chunks::{ChunkStoreError, Hash, Verifier};
use cascade_core::{admit_chunk, ChunkRefusal, Command};
use cascade_protocol::call::call_next_hop;
use cascade_protocol::dataset::{
    ChunkReply, ChunkRequest, StreamKind, MAX_CHUNK_REPLY_BYTES, MAX_CHUNK_REQUEST_BYTES,
};
use cascade_protocol::routed::Route;
use cascade_protocol::NodeId;
use cascade_transport::{read_message, write_message};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info_span, Instrument};

/// Why a chunk could not be pulled from the next hop.
#[derive(Debug)]
pub(crate) enum PullError {
    /// A hop refused (or did not hold it): its answer.
    Refused(ChunkReply),
    /// A group did not match the chunk's address: dropped (a hop or the link
    /// altered it, or a hop's copy rotted).
    Corrupt(String),
    /// The next hop could not be reached or the stream broke.
    Link(String),
    /// This node's chunk store failed.
    Store(String),
}

impl std::fmt::Display for PullError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PullError::Refused(r) => {
                write!(f, "{} refused ({}): {}", r.by, r.status, r.reason.as_deref().unwrap_or(""))
            }
            PullError::Corrupt(why) => write!(f, "a bad copy arrived: {why}"),
            PullError::Link(why) => write!(f, "link: {why}"),
            PullError::Store(why) => write!(f, "chunk store: {why}"),
        }
    }
}

/// The send priority of chunk streams: below the default of the sync stream and
/// of calls.
const CHUNK_PRIORITY: i32 = -1;

fn short(hash: &Hash) -> String {
    cascade_chunks::store::hex(hash)[..12].to_string()
}

/// Where a chunk goes besides this node's store: the stream of the neighbour
/// that asked, and whether the answer's head went out on it yet.
pub(crate) struct Downstream<'a> {
    send: &'a mut quinn::SendStream,
    head_sent: bool,
}

impl Downstream<'_> {
    /// Sends the answer's head.
    async fn head(&mut self, reply: &ChunkReply) -> Result<(), PullError> {
        let sent = tokio::time::timeout(CHUNK_IDLE, write_message(self.send, reply)).await;
        match sent {
            Ok(Ok(_)) => {
                self.head_sent = true;
                Ok(())
            }
            Ok(Err(e)) => Err(PullError::Link(format!("below: {e}"))),
            Err(_) => Err(PullError::Link("below: not read in time".into())),
        }
    }

    /// Sends bytes of the chunk (handed to quinn as they are, not copied).
    async fn write(&mut self, bytes: Bytes) -> Result<(), PullError> {
        match tokio::time::timeout(CHUNK_IDLE, self.send.write_chunk(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(PullError::Link(format!("below: {e}"))),
            Err(_) => Err(PullError::Link("below: not read in time".into())),
        }
    }
}

/// Whether this request pulls a chunk or waits for the pull under way.
enum Claim<'a> {
    Lead(Pulling<'a>),
    Wait(watch::Receiver<bool>),
}

/// Requests past a hop's cache (for the origin's own copy) one requester may
/// make a minute at that hop. A fetch asks so only after a bad copy, at most
/// `CHUNK_TRIES` times for each of its requests in flight; a requester asking
/// for everything so would make every hop pass every chunk on again.
const FROM_ORIGIN_PER_MINUTE: u32 = 32;
/// Requesters whose requests past the cache are counted at once; more (a
/// federation this size has not so many grantee nodes) start the count afresh.
const FROM_ORIGIN_REQUESTERS: usize = 4096;

/// How long a request waits for another's pull of the same chunk.
const CHUNK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Marks a chunk as no longer being pulled (and wakes those waiting) however
/// the pull ends.
struct Pulling<'a> {
    datasets: &'a Datasets,
    hash: Hash,
    done: watch::Sender<bool>,
}

impl Drop for Pulling<'_> {
    fn drop(&mut self) {
        if let Ok(mut pulling) = self.datasets.pulling.lock() {
            pulling.remove(&self.hash);
        }
        let _ = self.done.send(true);
    }
}

impl Datasets {
    /// A refusal from this node.
    fn refusal(&self, status: u16, reason: impl Into<String>) -> ChunkReply {
        ChunkReply { status, by: self.me, reason: Some(reason.into()), len: 0, outboard: Vec::new() }
    }

    /// Serves one chunk stream the neighbour `from` opened.
    pub(crate) async fn serve(
        self: Arc<Self>,
        from: NodeId,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let read = read_message::<ChunkRequest>(&mut recv, MAX_CHUNK_REQUEST_BYTES);
        let req = match tokio::time::timeout(CHUNK_IDLE, read).await {
            Ok(Ok(Some((req, _)))) => req,
            _ => return,
        };
        let span = info_span!("chunk", hash = %short(&req.hash), from = %from, requester = %req.requester);
        // Bulk bytes go after everything else on the link: catalog sync and
        // service calls (priority 0) are never queued behind a chunk.
        let _ = send.set_priority(CHUNK_PRIORITY);
        async move {
            let permits = self.serving.try_acquire(&from);
            let Some(_permits) = permits else {
                let busy = self.refusal(503, format!("{} is serving too many chunk requests", self.me));
                let _ = write_message(&mut send, &busy).await;
                let _ = send.finish();
                return;
            };
            let cacheable = match self.admit(from, &req).await {
                Ok(cacheable) => cacheable,
                Err(refusal) => {
                    self.refused(from, &req, &refusal);
                    let _ = write_message(&mut send, &self.refusal(refusal.status, refusal.reason)).await;
                    let _ = send.finish();
                    return;
                }
            };
            let origin = req.entry.origin == self.me;
            if let Some(delay) = self.faults.delay() {
                tokio::time::sleep(delay).await;
            }
            let mut down = Downstream { send: &mut send, head_sent: false };
            let past_cache = req.from_origin && self.may_pass_cache(req.requester);
            let result = if origin || (cacheable && !past_cache) {
                self.answer_held(&req, &mut down, origin).await
            } else {
                self.pull(&req, None, Some(&mut down), false, &AtomicU64::new(0)).await
            };
            let answer = match result {
                Ok(()) => None,
                Err(e) if down.head_sent => {
                    // Cut mid-chunk: the requester sees it short, and asks again.
                    debug!(error = %e, "chunk request cut short");
                    let _ = send.reset(0u32.into());
                    return;
                }
                Err(PullError::Refused(reply)) => Some(reply),
                Err(e) => {
                    let status = match e {
                        PullError::Corrupt(_) => 502,
                        PullError::Store(_) => 503,
                        _ => 504,
                    };
                    Some(self.refusal(status, e.to_string()))
                }
            };
            if let Some(reply) = answer {
                let _ = tokio::time::timeout(CHUNK_IDLE, write_message(&mut send, &reply)).await;
            }
            let _ = send.finish();
        }
        .instrument(span)
        .await
    }

    /// Whether a request of `requester` for the origin's own copy may go past
    /// this hop's cache: `FROM_ORIGIN_PER_MINUTE` a minute; beyond, it is
    /// answered as any other (the cache's copy is checked on every read).
    fn may_pass_cache(&self, requester: NodeId) -> bool {
        let Ok(mut counts) = self.from_origin.lock() else { return false };
        if counts.len() >= FROM_ORIGIN_REQUESTERS && !counts.contains_key(&requester) {
            counts.clear();
        }
        let now = std::time::Instant::now();
        let (since, n) = counts.entry(requester).or_insert((now, 0));
        if now.duration_since(*since) >= std::time::Duration::from_secs(60) {
            (*since, *n) = (now, 0);
        }
        *n += 1;
        *n <= FROM_ORIGIN_PER_MINUTE
    }

    /// Answers from this node's store. A caching hub that does not hold the
    /// chunk pulls it, keeping a copy while it passes it on; a second request
    /// for a chunk being pulled waits for that pull, then is answered from the
    /// store (so a chunk crosses the link above once, however many ask).
    async fn answer_held(
        &self,
        req: &ChunkRequest,
        down: &mut Downstream<'_>,
        origin: bool,
    ) -> Result<(), PullError> {
        for _ in 0..2 {
            if self.has(&req.hash).await? {
                return self.send_held(req.hash, down).await;
            }
            if origin {
                let missing = self.refusal(404, format!("{} does not hold this chunk", self.me));
                return Err(PullError::Refused(missing));
            }
            match self.claim(req.hash)? {
                Claim::Lead(_pulling) => {
                    // A pull that ended between the check and the claim.
                    if self.has(&req.hash).await? {
                        return self.send_held(req.hash, down).await;
                    }
                    return self.pull(req, None, Some(down), true, &AtomicU64::new(0)).await;
                }
                Claim::Wait(mut pulled) => {
                    let _ = tokio::time::timeout(CHUNK_WAIT, pulled.wait_for(|done| *done)).await;
                }
            }
        }
        // Still not here after waiting for two pulls of it: pass it on.
        self.pull(req, None, Some(down), false, &AtomicU64::new(0)).await
    }

    /// Becomes the one pulling `hash` here, or learns whom to wait for.
    fn claim(&self, hash: Hash) -> Result<Claim<'_>, PullError> {
        let mut pulling = self.pulling.lock().map_err(|_| PullError::Store("poisoned".into()))?;
        Ok(match pulling.get(&hash) {
            Some(rx) => Claim::Wait(rx.clone()),
            None => {
                let (done, rx) = watch::channel(false);
                pulling.insert(hash, rx);
                Claim::Lead(Pulling { datasets: self, hash, done })
            }
        })
    }

    /// Checks a request: it comes from the side of the node it names, and the
    /// core admits its grant for a version this node knows; the chunk must be
    /// one of that version's. Answers whether this node may keep and serve the
    /// chunk itself (it knows the version's chunk list).
    async fn admit(self: &Arc<Self>, from: NodeId, req: &ChunkRequest) -> Result<bool, ChunkRefusal> {
        let refuse = |status, reason: String| ChunkRefusal { status, reason };
        if call_next_hop(self.me, req.requester) != Route::Via(from) {
            return Err(refuse(403, format!("a request of {} cannot come from {from}", req.requester)));
        }
        let signed = match &req.grant {
            Some(grant) => self.gateway.grant_signed(grant).await,
            None => false,
        };
        let this = self.clone();
        let req = req.clone();
        let now = unix_millis() / 1000;
        tokio::task::spawn_blocking(move || {
            let manifest = admit_chunk(&this.store, this.me, &req, signed, now)?;
            match this.in_version(&manifest, &req.hash) {
                Some(true) => Ok(true),
                Some(false) => Err(refuse(403, "not a chunk of this version".into())),
                None if req.entry.origin == this.me => {
                    Err(refuse(404, "this version's chunk list is missing here".into()))
                }
                None => Ok(false),
            }
        })
        .await
        .map_err(|e| refuse(503, e.to_string()))?
    }

    /// The bytes as sent on: altered by one bit when the test hook asks this
    /// node to play a relay that tampers with what it passes on.
    fn test_flip(&self, mut bytes: Vec<u8>) -> Bytes {
        let armed = !bytes.is_empty()
            && self
                .flip_next
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok();
        if armed {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x01;
        }
        Bytes::from(bytes)
    }

    /// Audits a refusal (by tally, in the core) and counts it.
    fn refused(&self, from: NodeId, req: &ChunkRequest, refusal: &ChunkRefusal) {
        ChunkCounters::add(&self.counters.refused, 1);
        let reason = match refusal.status {
            403 => "forbidden",
            404 => "unknown",
            _ => "other",
        };
        let detail = format!(
            "chunk {} of {}:{} v{} for {}: {}",
            short(&req.hash),
            req.entry.origin,
            req.entry.code,
            req.version,
            req.requester,
            refusal.reason
        );
        let (reply, _) = oneshot::channel();
        let command = Command::ChunkRefused { peer: from, reason, detail };
        // A full inbox drops the record rather than stall the link: the tally
        // of a flood is a summary anyway.
        let _ = self.inbox.try_send(Message::Command { by: Principal::node(), command, reply });
    }

    async fn has(&self, hash: &Hash) -> Result<bool, PullError> {
        let chunks = self.chunks.clone();
        let hash = *hash;
        tokio::task::spawn_blocking(move || chunks.has(&hash))
            .await
            .map_err(|e| PullError::Store(e.to_string()))?
            .map_err(|e| PullError::Store(e.to_string()))
    }

    /// Sends a held chunk: its reply head, then its groups as they are read
    /// (and checked) on the blocking pool, a few at a time.
    async fn send_held(&self, hash: Hash, down: &mut Downstream<'_>) -> Result<(), PullError> {
        let (head, mut groups) = self.read_groups(hash).await?;
        let Some(verifier) = head else {
            return Err(PullError::Refused(
                self.refusal(404, format!("{} does not hold this chunk", self.me)),
            ));
        };
        let reply = ChunkReply {
            status: 200,
            by: self.me,
            reason: None,
            len: verifier.len(),
            outboard: verifier.outboard().to_vec(),
        };
        down.head(&reply).await?;
        ChunkCounters::add(&self.counters.served, 1);
        while let Some(batch) = groups.recv().await {
            let batch = batch.map_err(PullError::Store)?;
            let len = batch.len() as u64;
            down.write(self.test_flip(batch)).await?;
            ChunkCounters::add(&self.counters.bytes_served, len);
            ChunkCounters::add(&self.counters.bytes_served_held, len);
        }
        Ok(())
    }

    /// Opens a held chunk and reads its groups on the blocking pool, a batch at
    /// a time, into a short channel (its memory: one batch waiting, one being
    /// read).
    pub(crate) async fn read_groups(
        &self,
        hash: Hash,
    ) -> Result<(Option<Verifier>, mpsc::Receiver<Result<Vec<u8>, String>>), PullError> {
        let (tx, rx) = mpsc::channel(1);
        let chunks = self.chunks.clone();
        let (head_tx, head_rx) = oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let mut reader = match chunks.reader(&hash) {
                Ok(Some(r)) => r,
                Ok(None) => {
                    let _ = head_tx.send(Ok(None));
                    return;
                }
                Err(e) => {
                    let _ = head_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = head_tx.send(Ok(Some(reader.verifier().clone())));
            loop {
                let mut batch = Vec::new();
                match reader.next_groups(BATCH_GROUPS, &mut batch) {
                    Ok(0) => return,
                    Ok(_) if tx.blocking_send(Ok(batch)).is_ok() => {}
                    Ok(_) => return,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        let head = head_rx.await.map_err(|e| PullError::Store(e.to_string()))?.map_err(PullError::Store)?;
        Ok((head, rx))
    }

    /// Asks the next hop toward the entry's origin for a chunk and reads the
    /// answer, checking every group: kept in this node's store when `cache`,
    /// passed on to `downstream` when given (its reply head first). `len` is
    /// the chunk's length as the version's list gives it, when known: a reply
    /// for another length is a bad copy. Counts the chunk bytes that crossed
    /// the link into `moved`.
    pub(crate) async fn pull(
        &self,
        req: &ChunkRequest,
        len: Option<u64>,
        mut downstream: Option<&mut Downstream<'_>>,
        cache: bool,
        moved: &AtomicU64,
    ) -> Result<(), PullError> {
        let hop = match call_next_hop(self.me, req.entry.origin) {
            Route::Via(hop) => hop,
            _ => return Err(PullError::Link(format!("{} has no route to {}", self.me, req.entry.origin))),
        };
        let link = |e: &dyn std::fmt::Display| PullError::Link(format!("{hop}: {e}"));
        let connection =
            self.gateway.link(hop).ok_or_else(|| PullError::Link(format!("no link to {hop}")))?;
        let ask = async {
            let (mut up, answer) = connection.open_bi().await.map_err(|e| link(&e))?;
            up.write_all(&[StreamKind::Chunk as u8]).await.map_err(|e| link(&e))?;
            write_message(&mut up, req).await.map_err(|e| link(&e))?;
            let _ = up.finish();
            Ok::<_, PullError>(answer)
        };
        let mut answer = tokio::time::timeout(CHUNK_IDLE, ask)
            .await
            .map_err(|_| PullError::Link(format!("{hop} took no request in time")))??;
        let reply =
            tokio::time::timeout(CHUNK_IDLE, read_message::<ChunkReply>(&mut answer, MAX_CHUNK_REPLY_BYTES))
                .await;
        let reply = match reply {
            Ok(Ok(Some((reply, _)))) => reply,
            Ok(Ok(None)) => return Err(PullError::Link(format!("{hop} closed the stream"))),
            Ok(Err(e)) => return Err(link(&e)),
            Err(_) => return Err(PullError::Link(format!("{hop} did not answer in time"))),
        };
        if reply.status != 200 {
            return Err(PullError::Refused(reply));
        }
        let verifier = Verifier::new(req.hash, reply.len, reply.outboard.clone()).map_err(|e| {
            ChunkCounters::add(&self.counters.corrupt, 1);
            PullError::Corrupt(format!("from {hop}: {e}"))
        })?;
        if reply.len > cascade_chunks::cut::MAX_CHUNK_BYTES as u64 || len.is_some_and(|l| l != reply.len) {
            ChunkCounters::add(&self.counters.corrupt, 1);
            return Err(PullError::Corrupt(format!("{hop} announced a chunk of {} bytes", reply.len)));
        }
        let mut writer = match cache {
            true => {
                let chunks = self.chunks.clone();
                let v = verifier.clone();
                let w = tokio::task::spawn_blocking(move || chunks.writer(v))
                    .await
                    .map_err(|e| PullError::Store(e.to_string()))?
                    .map_err(|e| PullError::Store(e.to_string()))?;
                Some(w)
            }
            false => None,
        };
        if let Some(down) = downstream.as_deref_mut() {
            match down.head(&reply).await {
                Ok(()) => ChunkCounters::add(&self.counters.served, 1),
                // The requester went away: finish the copy for the cache.
                Err(_) if cache => downstream = None,
                Err(e) => return Err(e),
            }
        }
        // Read in batches of groups; every group of a batch is checked (and
        // kept) before any byte of it is passed on.
        let groups = verifier.groups();
        let mut first = 0;
        while first < groups {
            let last = (first + BATCH_GROUPS).min(groups);
            let len: usize = (first..last).map(|i| group_len(verifier.len(), i)).sum();
            // A buffer of its own per batch: once checked, it is handed on as is.
            let mut batch = vec![0u8; len];
            let read = tokio::time::timeout(CHUNK_IDLE, answer.read_exact(&mut batch)).await;
            match read {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(link(&e)),
                Err(_) => return Err(PullError::Link(format!("{hop} stalled"))),
            }
            ChunkCounters::add(moved, len as u64);
            ChunkCounters::add(&self.counters.bytes_received, len as u64);
            let bad = |e: &dyn std::fmt::Display| {
                ChunkCounters::add(&self.counters.corrupt, 1);
                PullError::Corrupt(format!("from {hop}: {e}"))
            };
            match writer.as_mut() {
                Some(w) => w.groups(&batch).map_err(|e| match e {
                    ChunkStoreError::Mismatch { .. } => bad(&e),
                    // The disk failed (full, say): not the hop's fault.
                    other => PullError::Store(other.to_string()),
                })?,
                None => {
                    verifier.check_run(first, &batch).map_err(|e| bad(&e))?;
                }
            }
            if let Some(down) = downstream.as_deref_mut() {
                match down.write(self.test_flip(batch)).await {
                    Ok(()) => ChunkCounters::add(&self.counters.bytes_served, len as u64),
                    // The requester went away: finish the copy for the cache.
                    Err(_) if cache => downstream = None,
                    Err(e) => return Err(e),
                }
            }
            first = last;
        }
        if let Some(w) = writer {
            tokio::task::spawn_blocking(move || w.commit())
                .await
                .map_err(|e| PullError::Store(e.to_string()))?
                .map_err(|e| PullError::Store(e.to_string()))?;
        }
        Ok(())
    }
}
