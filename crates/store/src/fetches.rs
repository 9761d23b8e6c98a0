//! Fetch jobs: a consumer's node fetching a dataset version, kept in a tree of
//! their own so that a fetch interrupted by a crash resumes after the restart.
//! A job's record says what was asked and how far it got; which chunks are held
//! is the chunk store's to say (it never claims a chunk that is not durable).

use crate::{backend, Store};
use cascade_core::StoreError;
use cascade_protocol::service::EntryRef;
use serde::{Deserialize, Serialize};

/// The sled tree of fetch jobs.
pub(crate) const FETCH_TREE: &str = "fetches";
/// Most fetch jobs one listing returns (the newest).
pub const MAX_FETCHES_LISTED: usize = 1_000;
/// Fetch jobs kept: the oldest finished ones are forgotten beyond.
pub const FETCHES_KEPT: usize = 10_000;

/// Where a fetch stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FetchState {
    /// Chunks are being fetched (or will be, once the node is back).
    Running,
    /// Every chunk is held and the content matches the manifest's hash.
    Done,
    /// Given up, with a reason.
    Failed,
}

/// One fetch of a dataset version by this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FetchJob {
    /// `f{started ms}-{n}`: sorts by start.
    pub id: String,
    /// The entry.
    pub entry: EntryRef,
    /// The version.
    pub version: u64,
    /// The grant presented.
    pub grant: String,
    /// Who asked (actor).
    pub by: String,
    /// The grantee organization the fetch is for.
    pub organization: String,
    /// Running, done or failed.
    pub state: FetchState,
    /// Why it failed.
    pub reason: Option<String>,
    /// Chunks of the version.
    pub chunks_total: u64,
    /// Chunks held.
    pub chunks_done: u64,
    /// Bytes of the version.
    pub bytes_total: u64,
    /// Bytes of the chunks held.
    pub bytes_done: u64,
    /// Chunk bytes that crossed the network for this job (chunks already held
    /// excluded; a chunk received twice counts twice).
    pub bytes_transferred: u64,
    /// When it started (unix ms).
    pub started_ms: u64,
    /// When it ended (unix ms).
    pub finished_ms: Option<u64>,
    /// Bytes a second it may take, at most (a subscription's cap).
    #[serde(default)]
    pub max_bytes_per_second: Option<u64>,
}

impl Store {
    /// Saves a job's current state (not flushed: a crash loses at most the
    /// progress since the last flush, and the chunk store knows the rest).
    pub fn save_fetch(&self, job: &FetchJob) -> Result<(), StoreError> {
        let tree = self.db.open_tree(FETCH_TREE).map_err(backend)?;
        let value = serde_json::to_vec(job).map_err(|e| StoreError::Backend(e.to_string()))?;
        tree.insert(job.id.as_bytes(), value).map_err(backend)?;
        Ok(())
    }

    /// Forgets the oldest finished jobs beyond `FETCHES_KEPT` (a count of the
    /// tree: called when a job starts, not on every progress save).
    pub fn prune_fetches(&self) -> Result<(), StoreError> {
        let tree = self.db.open_tree(FETCH_TREE).map_err(backend)?;
        let mut over = tree.len().saturating_sub(FETCHES_KEPT);
        for row in tree.iter() {
            if over == 0 {
                break;
            }
            let (key, value) = row.map_err(backend)?;
            if serde_json::from_slice::<FetchJob>(&value).is_ok_and(|j| j.state != FetchState::Running) {
                tree.remove(key).map_err(backend)?;
                over -= 1;
            }
        }
        Ok(())
    }

    /// A job by id.
    pub fn fetch_job(&self, id: &str) -> Result<Option<FetchJob>, StoreError> {
        let tree = self.db.open_tree(FETCH_TREE).map_err(backend)?;
        match tree.get(id.as_bytes()).map_err(backend)? {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StoreError::Corrupt { key: id.into(), reason: e.to_string() }),
            None => Ok(None),
        }
    }

    /// The newest jobs (at most `MAX_FETCHES_LISTED`), newest first; with
    /// `running`, only those still running (to resume them at start).
    pub fn fetch_jobs(&self, running: bool) -> Result<Vec<FetchJob>, StoreError> {
        let tree = self.db.open_tree(FETCH_TREE).map_err(backend)?;
        let mut out = Vec::new();
        for row in tree.iter().rev() {
            let (key, value) = row.map_err(backend)?;
            let job: FetchJob = serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                reason: e.to_string(),
            })?;
            if !running || job.state == FetchState::Running {
                out.push(job);
            }
            if out.len() >= MAX_FETCHES_LISTED {
                break;
            }
        }
        Ok(out)
    }
}
