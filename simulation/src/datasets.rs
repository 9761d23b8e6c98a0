//! Dataset versions in the deterministic simulator: the simulated people publish
//! versions of their entries (content modelled by a few small chunks of real
//! bytes, so that addresses and checks are real) and fetch, with the entry
//! grants they hold, the versions their node learned of. A chunk request walks
//! the tree toward the origin; every hop decides through the node core's
//! `admit_chunk`, as the runtime does, and serves from its store (the origin, or
//! a hub that caches) or passes the request on. The chunk comes back down the
//! same path, where a tampering relay may alter it; every hop checks it against
//! its address through the chunk store's own writer before keeping or passing it.
//! Chunk stores are durable: a crash keeps what was committed, and a fetch
//! resumes with what is missing.

use cascade_chunks::list::{self, ChunkRef};
use cascade_chunks::{Hash, MemStore};
use cascade_protocol::dataset::Manifest;
use cascade_protocol::workflow::Grant;
use cascade_protocol::NodeId;
use std::collections::BTreeMap;

/// Dataset work done, by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DatasetTally {
    /// Versions published (acknowledged by their origin's core).
    pub published: u64,
    /// Fetches that ended with the whole content.
    pub fetched: u64,
    /// Chunks moved to a consumer's node.
    pub chunks_moved: u64,
    /// Chunks served from a hub's cache rather than the origin.
    pub from_cache: u64,
    /// Chunk requests refused by a hop (no valid grant, unknown version).
    pub refused: u64,
    /// Chunks altered on a link and caught by the next hop.
    pub caught: u64,
    /// Chunk requests cut short by a node or link that was down.
    pub interrupted: u64,
}

/// A fetch under way at a consumer's node.
#[derive(Clone, Debug)]
pub(crate) struct Job {
    pub(crate) consumer: NodeId,
    pub(crate) manifest: Manifest,
    pub(crate) grant: Grant,
    /// Ask the origin itself next time (a bad copy came from a cache).
    pub(crate) from_origin: bool,
}

/// The simulator's side of datasets: every node's chunk store, the origins'
/// record of what they published, and the fetches under way and done.
#[derive(Default)]
pub(crate) struct Datasets {
    pub(crate) stores: BTreeMap<NodeId, MemStore>,
    /// Content as each origin cut it, by (origin, code): the chunks of its last
    /// version (the next one reuses most of them).
    pub(crate) last: BTreeMap<(NodeId, String), Vec<Vec<u8>>>,
    /// What each origin published: (origin, code, version) → content hash as cut.
    pub(crate) ledger: BTreeMap<(NodeId, String, u64), Hash>,
    pub(crate) jobs: Vec<Job>,
    /// Fetches that ended: consumer and version.
    pub(crate) done: Vec<(NodeId, Manifest)>,
    pub(crate) tally: DatasetTally,
    /// Relays that alter the chunks they pass to a neighbour: (relay, toward).
    pub(crate) tamper: std::collections::BTreeSet<(NodeId, NodeId)>,
    /// Chunk requests served with a grant that was not valid.
    pub(crate) served_wrongly: Vec<String>,
}

impl Datasets {
    /// Node `id`'s chunk store.
    pub(crate) fn store(&mut self, id: NodeId) -> &MemStore {
        self.stores.entry(id).or_default()
    }

    /// The chunks of `manifest`'s version as node `id` holds its list, if whole.
    pub(crate) fn chunk_list(&self, id: NodeId, manifest: &Manifest) -> Option<Vec<ChunkRef>> {
        let store = self.stores.get(&id)?;
        list::read(store, &manifest.lists, manifest.chunks, manifest.size).ok()?
    }

    /// Whether `hash` belongs to `manifest`'s version, as node `id` can tell
    /// (`None`: it does not hold the list).
    pub(crate) fn in_version(&self, id: NodeId, manifest: &Manifest, hash: &Hash) -> Option<bool> {
        if manifest.lists.contains(hash) {
            return Some(true);
        }
        Some(self.chunk_list(id, manifest)?.iter().any(|c| c.hash == *hash))
    }

    /// The content of `manifest`'s version as node `id` holds it, if whole.
    pub(crate) fn content(&self, id: NodeId, manifest: &Manifest) -> Option<Vec<u8>> {
        let store = self.stores.get(&id)?;
        let held: BTreeMap<Hash, Vec<u8>> = store.raw().into_iter().collect();
        let mut out = Vec::new();
        for c in self.chunk_list(id, manifest)? {
            out.extend_from_slice(held.get(&c.hash)?);
        }
        Some(out)
    }
}
