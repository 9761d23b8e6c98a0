//! Data docking (数据对接): dataset versions published at their origin as
//! chunks and a signed manifest (`publish`), chunk streams served, passed on and
//! cached along the tree (`serve`), fetch jobs that bring a version to a
//! consumer's node and survive restarts (`fetch`), and the reassembled content
//! read back with ranges (`content`).
//!
//! A chunk request travels hop by hop toward the entry's origin on a stream of
//! its own over the existing QUIC links; the first hop that holds the chunk
//! answers. Every hop checks the grant presented before it serves or passes a
//! request on, and checks every 16 KiB group of the answer against the chunk's
//! address before it keeps it or passes it on: a hub caches what it verified,
//! so a version crosses each link once however many nodes below fetch it.

mod content;
mod fetch;
mod gc;
mod publish;
mod serve;
mod shares;
mod subscriptions;

pub use content::Content;
pub(crate) use fetch::resume_fetches;
pub use fetch::FetchView;
pub use gc::GC_GRACE;
pub(crate) use gc::{collect_and_record, collect_every};
pub(crate) use subscriptions::follow_subscriptions;
pub use subscriptions::SubscriptionRequest;

use crate::driver::Message;
use crate::gateway::Gateway;
use cascade_chunks::list::{self, ChunkRef};
use cascade_chunks::{ChunkStore, Hash};
use cascade_protocol::dataset::Manifest;
use cascade_protocol::NodeId;
use cascade_store::{FetchJob, Store};
use shares::Shares;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore};

/// Chunk requests a node serves or passes on at once (for all its neighbours);
/// beyond, a request is answered 503 at once and the requester retries.
pub const MAX_CHUNK_STREAMS: usize = 128;
/// Chunk requests one neighbour may have served or passed on here at once: a
/// quarter of the node's, so that one neighbour that never reads its answers
/// cannot hold every slot.
pub const MAX_CHUNK_STREAMS_PER_PEER: usize = MAX_CHUNK_STREAMS / 4;
/// Chunk requests one fetch keeps in flight: enough to fill a long link's
/// bandwidth-delay product (8 × 512 KiB = 4 MiB in flight), few enough that a
/// crash re-transfers little (at most one chunk per request in flight).
pub const FETCH_IN_FLIGHT: usize = 8;
/// Fetches that run at once on a node; more wait their turn.
pub const MAX_RUNNING_FETCHES: usize = 4;
/// Contents a node streams at once (`GET …/content`); more are answered 503.
/// Each holds an open chunk file and a few batches (about 2 MiB); a reader that
/// takes nothing for `CHUNK_IDLE` loses its stream.
pub const MAX_CONTENT_STREAMS: usize = 64;
/// Content streams one account may hold at once: a quarter of the node's, so
/// that one account's slow readers cannot take every stream.
pub const MAX_CONTENT_STREAMS_PER_ACCOUNT: usize = MAX_CONTENT_STREAMS / 4;
/// Versions being published at once on a node (each cuts and hashes on a core).
pub const MAX_PUSHES: usize = 2;
/// How long a hop waits for a request's head, or for the next bytes of a
/// chunk, before it gives the stream up.
pub const CHUNK_IDLE: Duration = Duration::from_secs(30);
/// Groups read, checked and passed on at once (256 KiB): one read, one write
/// and one wake-up per batch rather than per group, and still at most one batch
/// held per stream at a hop.
pub(crate) const BATCH_GROUPS: usize = 16;
/// Chunk lists of versions kept decoded (a hub checks every request against
/// its version's list): 64 versions of 1 GiB are ~128k hashes.
const LISTS_KEPT: usize = 64;

/// A version: its entry's origin and code, and its number.
type VersionKey = (NodeId, String, u64);

/// What a node's data docking counts, for metrics and for tests that count what
/// crossed a link.
#[derive(Default)]
pub(crate) struct ChunkCounters {
    /// Chunk bytes sent to neighbours (from this node's store or passed on).
    pub(crate) bytes_served: AtomicU64,
    /// Of which served from this node's own store.
    pub(crate) bytes_served_held: AtomicU64,
    /// Chunk bytes received from neighbours.
    pub(crate) bytes_received: AtomicU64,
    /// Chunk requests answered with the chunk (from the store or passed on).
    pub(crate) served: AtomicU64,
    /// Chunk requests refused here.
    pub(crate) refused: AtomicU64,
    /// Chunks that arrived with a group not matching its address (dropped and
    /// asked for again).
    pub(crate) corrupt: AtomicU64,
}

impl ChunkCounters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> DatasetCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DatasetCounters {
            bytes_served: get(&self.bytes_served),
            bytes_served_held: get(&self.bytes_served_held),
            bytes_received: get(&self.bytes_received),
            served: get(&self.served),
            refused: get(&self.refused),
            corrupt: get(&self.corrupt),
        }
    }
}

cascade_metrics::counters! {
    /// What this node's data docking moved and refused.
    pub struct DatasetCounters {
        /// Chunk bytes this node sent to neighbours (from its store or passed on).
        bytes_served => counter "cascade_chunk_bytes_served_total",
        /// Of those, the bytes served from this node's own store (its own
        /// versions, or a hub's cache).
        bytes_served_held => counter "cascade_chunk_bytes_served_held_total",
        /// Chunk bytes this node received from neighbours.
        bytes_received => counter "cascade_chunk_bytes_received_total",
        /// Chunk requests this node answered with the chunk (from its store or
        /// passed on from the next hop).
        served => counter "cascade_chunk_requests_served_total",
        /// Chunk requests refused here (no valid grant, unknown version, not a
        /// chunk of it).
        refused => counter "cascade_chunk_requests_refused_total",
        /// Chunks that arrived with bytes not matching their address (dropped).
        corrupt => counter "cascade_chunks_corrupt_total",
    }
}

/// Everything the data docking of one node shares.
pub(crate) struct Datasets {
    me: NodeId,
    store: Store,
    pub(crate) chunks: Arc<dyn ChunkStore>,
    gateway: Arc<Gateway>,
    inbox: mpsc::Sender<Message>,
    /// The node's faults (a send delay slows every chunk served).
    faults: Arc<crate::faults::Faults>,
    /// Chunks being pulled from a neighbour right now: a second request for one
    /// waits for the first instead of crossing the link again.
    pulling: Mutex<HashMap<Hash, watch::Receiver<bool>>>,
    /// Decoded chunk lists of versions, by entry origin, code and version.
    lists: Mutex<HashMap<VersionKey, Arc<HashSet<Hash>>>>,
    /// Chunk requests served or passed on (`MAX_CHUNK_STREAMS`), by neighbour.
    serving: Shares<NodeId>,
    /// Requests past this hop's cache each requester made in the current
    /// minute (`FROM_ORIGIN_PER_MINUTE`): when that minute started, how many.
    from_origin: Mutex<HashMap<NodeId, (std::time::Instant, u32)>>,
    running: Arc<Semaphore>,
    pushes: Arc<Semaphore>,
    /// Content streams under way (`MAX_CONTENT_STREAMS`), by account.
    content_streams: Shares<String>,
    /// The jobs this node runs, by id, as they stand.
    jobs: Mutex<HashMap<String, FetchJob>>,
    next_job: AtomicU64,
    /// When each running job's current run started (ms) and the bytes it held
    /// then: its rate.
    run_started: Mutex<HashMap<String, (u64, u64)>>,
    pub(crate) counters: ChunkCounters,
    /// Test hook: flip a byte in the next `n` chunks this node passes on.
    pub(crate) flip_next: AtomicU64,
}

impl Datasets {
    pub(crate) fn new(
        me: NodeId,
        store: Store,
        chunks: Arc<dyn ChunkStore>,
        gateway: Arc<Gateway>,
        inbox: mpsc::Sender<Message>,
        faults: Arc<crate::faults::Faults>,
    ) -> Datasets {
        Datasets {
            me,
            store,
            chunks,
            gateway,
            inbox,
            faults,
            pulling: Mutex::new(HashMap::new()),
            lists: Mutex::new(HashMap::new()),
            serving: Shares::new(MAX_CHUNK_STREAMS, MAX_CHUNK_STREAMS_PER_PEER),
            from_origin: Mutex::new(HashMap::new()),
            running: Arc::new(Semaphore::new(MAX_RUNNING_FETCHES)),
            pushes: Arc::new(Semaphore::new(MAX_PUSHES)),
            content_streams: Shares::new(MAX_CONTENT_STREAMS, MAX_CONTENT_STREAMS_PER_ACCOUNT),
            jobs: Mutex::new(HashMap::new()),
            next_job: AtomicU64::new(1),
            run_started: Mutex::new(HashMap::new()),
            counters: ChunkCounters::default(),
            flip_next: AtomicU64::new(0),
        }
    }

    /// How many fetches run now.
    pub(crate) fn running_jobs(&self) -> usize {
        self.jobs.lock().map(|j| j.len()).unwrap_or(0)
    }

    /// The chunks of `manifest`'s version, in order, read from the list pieces
    /// this node holds (`None` while one is missing). Blocking: disk reads.
    fn chunk_list(
        &self,
        manifest: &Manifest,
    ) -> Result<Option<Vec<ChunkRef>>, cascade_chunks::ChunkStoreError> {
        list::read(&*self.chunks, &manifest.lists, manifest.chunks, manifest.size)
    }

    /// Whether `hash` is one of the chunks (or list pieces) of `manifest`'s
    /// version, when this node holds its list (`None` when it does not).
    /// Blocking: may read the list pieces.
    fn in_version(&self, manifest: &Manifest, hash: &Hash) -> Option<bool> {
        if manifest.lists.contains(hash) {
            return Some(true);
        }
        let key = (manifest.entry.origin, manifest.entry.code.clone(), manifest.version);
        let known = self.lists.lock().ok().and_then(|l| l.get(&key).cloned());
        let set = match known {
            Some(set) => set,
            None => {
                let refs = self.chunk_list(manifest).ok().flatten()?;
                let set: Arc<HashSet<Hash>> = Arc::new(refs.iter().map(|c| c.hash).collect());
                if let Ok(mut lists) = self.lists.lock() {
                    if lists.len() >= LISTS_KEPT {
                        lists.clear();
                    }
                    lists.insert(key, set.clone());
                }
                set
            }
        };
        Some(set.contains(hash))
    }
}
