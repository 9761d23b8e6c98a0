//! Fetch jobs: a consumer's node brings a dataset version home. The job asks
//! for the chunks it lacks (the list pieces first, then the data chunks, many in
//! flight) along the tree toward the origin, keeps each once every group of it
//! checked out, and ends once every chunk of the list is held. The content is
//! then the origin's without a pass over it: each chunk was checked against its
//! address, and the list against the pieces the signed manifest names. Its
//! record survives restarts; the chunk store says what is already held, so
//! a resumed job asks only for the rest.

use super::serve::PullError;
use super::{Datasets, FETCH_IN_FLIGHT};
use crate::driver::unix_millis;
use crate::node::Node;
use cascade_access::Principal;
use cascade_chunks::{ChunkRef, Hash};
use cascade_core::{Command, CommandError, Reply, StateStore};
use cascade_protocol::dataset::{ChunkReply, ChunkRequest, Manifest};
use cascade_protocol::service::EntryRef;
use cascade_protocol::workflow::Grant;
use cascade_store::{FetchJob, FetchState};
use futures_util::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, info_span, warn, Instrument};

/// Tries for one chunk before the fetch fails: a bad copy or a refusal other
/// than 403 is asked for again (from the origin itself after a bad copy).
const CHUNK_TRIES: u32 = 6;
/// Longest wait between two tries while the way to the origin is down: the
/// fetch resumes within this of the link's return.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one chunk may wait for a way to its origin (links down, hops busy)
/// before its fetch fails: long outages end the fetch, and a later fetch (or
/// the next version of a subscription) starts again with what is held.
const LINK_PATIENCE: Duration = Duration::from_secs(3600);
/// How often a running job's progress is written.
const PROGRESS_EVERY_MS: u64 = 1_000;

/// A job as the API shows it: its record, and for a running one the rate of
/// its current run and the time left at that rate.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct FetchView {
    /// The record.
    #[serde(flatten)]
    pub job: FetchJob,
    /// Bytes a second since this run started (since the node's last start).
    pub rate: f64,
    /// Seconds left at that rate.
    pub eta_seconds: Option<f64>,
}

/// Why one chunk could not be fetched.
enum Gave {
    /// Refused for good (no valid grant).
    Refused(String),
    /// Tried `CHUNK_TRIES` times.
    Tries(String),
}

impl Datasets {
    fn job(&self, id: &str) -> Option<FetchJob> {
        self.jobs.lock().ok().and_then(|j| j.get(id).cloned())
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut FetchJob)) -> Option<FetchJob> {
        let mut jobs = self.jobs.lock().ok()?;
        let job = jobs.get_mut(id)?;
        change(job);
        Some(job.clone())
    }

    /// Writes a job's record on the blocking pool (flushed when `durable`).
    async fn save(&self, job: &FetchJob, durable: bool) {
        let (store, record) = (self.store.clone(), job.clone());
        let saved = tokio::task::spawn_blocking(move || {
            store.save_fetch(&record)?;
            if durable {
                store.flush()?;
            }
            Ok::<_, cascade_core::StoreError>(())
        })
        .await;
        if !matches!(saved, Ok(Ok(()))) {
            warn!(job = %job.id, "fetch progress not saved");
        }
    }

    /// Ends a job in `state`.
    async fn finish(&self, id: &str, state: FetchState, reason: Option<String>) {
        let ended = self.update(id, |job| {
            job.state = state;
            job.reason = reason;
            job.finished_ms = Some(unix_millis());
        });
        if let Some(job) = ended {
            self.save(&job, true).await;
            info!(job = %job.id, state = ?job.state, transferred = job.bytes_transferred, "fetch ended");
            if let Ok(mut jobs) = self.jobs.lock() {
                jobs.remove(id);
            }
            if let Ok(mut runs) = self.run_started.lock() {
                runs.remove(id);
            }
        }
    }

    /// Brings one chunk here (unless held), trying again after a bad copy or a
    /// lost link; `len` is its length in the version's list (unknown for a list
    /// piece). Counts what crossed the network into `moved`.
    async fn ensure(&self, mut req: ChunkRequest, len: Option<u64>, moved: &AtomicU64) -> Result<(), Gave> {
        let mut tries = 0;
        let mut backoff = Duration::from_millis(100);
        let waiting_since = std::time::Instant::now();
        loop {
            match self.pull(&req, len, None, true, moved).await {
                Ok(()) => return Ok(()),
                Err(PullError::Refused(reply)) if reply.status == 403 => {
                    return Err(Gave::Refused(format!(
                        "{} refused: {}",
                        reply.by,
                        reply.reason.unwrap_or_default()
                    )));
                }
                // The way is down or busy: wait for it, without counting a try,
                // for as long as `LINK_PATIENCE`.
                Err(e @ PullError::Link(_))
                | Err(e @ PullError::Refused(ChunkReply { status: 503 | 504, .. })) => {
                    if waiting_since.elapsed() > LINK_PATIENCE {
                        return Err(Gave::Tries(format!("waited {LINK_PATIENCE:?} for the way: {e}")));
                    }
                    tracing::debug!(error = %e, "chunk fetch waits for the way");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    if let PullError::Corrupt(partial) = &e {
                        warn!(%partial, "a bad copy arrived; asking the origin itself");
                        req.from_origin = true;
                    }
                    tries += 1;
                    if tries >= CHUNK_TRIES {
                        return Err(Gave::Tries(e.to_string()));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Runs (or resumes) a job to its end.
    pub(crate) async fn run(self: Arc<Self>, id: String, grant: Grant, manifest: Manifest) {
        let _permit = self.running.clone().acquire_owned().await;
        let span = info_span!("fetch", job = %id, entry = %format!("{}:{}", manifest.entry.origin, manifest.entry.code), version = manifest.version);
        async move {
            match self.clone().fetch_all(&id, grant, &manifest).await {
                Ok(()) => self.finish(&id, FetchState::Done, None).await,
                Err(reason) => self.finish(&id, FetchState::Failed, Some(reason)).await,
            }
        }
        .instrument(span)
        .await
    }

    async fn fetch_all(self: Arc<Self>, id: &str, grant: Grant, manifest: &Manifest) -> Result<(), String> {
        let request = |hash: Hash| ChunkRequest {
            entry: manifest.entry.clone(),
            version: manifest.version,
            hash,
            requester: self.me,
            grant: Some(grant.clone()),
            from_origin: false,
        };
        let moved = AtomicU64::new(0);
        let give = |g: Gave| match g {
            Gave::Refused(r) => r,
            Gave::Tries(r) => format!("gave up after {CHUNK_TRIES} tries: {r}"),
        };
        for piece in &manifest.lists {
            if !self.held(piece).await {
                self.ensure(request(*piece), None, &moved).await.map_err(give)?;
            }
        }
        let this = self.clone();
        let m = manifest.clone();
        let list: Vec<ChunkRef> = tokio::task::spawn_blocking(move || this.chunk_list(&m))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
            .ok_or("the chunk list does not match the manifest")?;
        // How often the content repeats each chunk; each is fetched once.
        let mut times: std::collections::HashMap<Hash, u64> = std::collections::HashMap::new();
        for c in &list {
            *times.entry(c.hash).or_default() += 1;
        }
        // Which distinct chunks are held, in one pass on the blocking pool; a
        // held one is named again, so a collection under way spares it.
        let mut seen = std::collections::HashSet::new();
        let distinct: Vec<ChunkRef> = list.iter().filter(|c| seen.insert(c.hash)).copied().collect();
        let chunks = self.chunks.clone();
        let (held, missing): (Vec<ChunkRef>, Vec<ChunkRef>) = tokio::task::spawn_blocking(move || {
            distinct
                .into_iter()
                .partition(|c| chunks.has(&c.hash).unwrap_or(false) && chunks.touch(&c.hash).is_ok())
        })
        .await
        .map_err(|e| e.to_string())?;
        let n = |c: &ChunkRef| times.get(&c.hash).copied().unwrap_or(1);
        let done: u64 = held.iter().map(n).sum();
        let done_bytes: u64 = held.iter().map(|c| n(c) * c.len as u64).sum();
        let base = self.update(id, |job| {
            job.chunks_total = manifest.chunks;
            job.bytes_total = manifest.size;
            job.chunks_done = done;
            job.bytes_done = done_bytes;
        });
        let Some(base) = base else { return Err("the job is gone".into()) };
        if let Ok(mut runs) = self.run_started.lock() {
            runs.insert(id.to_string(), (unix_millis(), done_bytes));
        }
        self.save(&base, false).await;
        let transferred_before = base.bytes_transferred;
        let mut saved_ms = unix_millis();
        let run_started = std::time::Instant::now();
        let cap = base.max_bytes_per_second.filter(|c| *c > 0);
        let mut pulls = futures_util::stream::iter(missing.into_iter().map(|c| {
            let req = request(c.hash);
            let this = self.clone();
            let moved = &moved;
            async move {
                if let Some(cap) = cap {
                    // Ahead of the cap: a request starts once the bytes moved so
                    // far are due (the pulls in flight go on meanwhile).
                    let due = Duration::from_secs_f64(moved.load(Ordering::Relaxed) as f64 / cap as f64);
                    if let Some(wait) = due.checked_sub(run_started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
                this.ensure(req, Some(c.len as u64), moved).await.map(|()| c)
            }
        }))
        .buffer_unordered(FETCH_IN_FLIGHT);
        while let Some(result) = pulls.next().await {
            let c = result.map_err(give)?;
            // Chunks repeated in the list are counted once each occurrence.
            let times = times.get(&c.hash).copied().unwrap_or(1);
            let now = self.update(id, |job| {
                job.chunks_done += times;
                job.bytes_done += times * c.len as u64;
                job.bytes_transferred = transferred_before + moved.load(Ordering::Relaxed);
            });
            if let Some(job) = now.filter(|_| unix_millis() >= saved_ms + PROGRESS_EVERY_MS) {
                self.save(&job, false).await;
                saved_ms = unix_millis();
            }
        }
        drop(pulls);
        self.update(id, |job| job.bytes_transferred = transferred_before + moved.load(Ordering::Relaxed));
        // Every chunk of the list is still here (none was found rotten and
        // removed by a read since it arrived or was found held).
        let chunks = self.chunks.clone();
        let all: Vec<Hash> = times.into_keys().collect();
        let missing = tokio::task::spawn_blocking(move || {
            all.iter().filter(|h| !chunks.has(h).unwrap_or(false)).count()
        })
        .await
        .map_err(|e| e.to_string())?;
        if missing > 0 {
            return Err(format!(
                "{missing} chunks went missing during the fetch; fetching again brings them"
            ));
        }
        Ok(())
    }

    async fn held(&self, hash: &Hash) -> bool {
        let chunks = self.chunks.clone();
        let hash = *hash;
        tokio::task::spawn_blocking(move || chunks.has(&hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false)
    }

    /// Starts running a job, once its record is durable: a fetch that was
    /// answered is resumed after a crash.
    async fn launch(
        self: &Arc<Self>,
        job: FetchJob,
        grant: Grant,
        manifest: Manifest,
    ) -> Result<(), CommandError> {
        let store = self.store.clone();
        let record = job.clone();
        let saved = tokio::task::spawn_blocking(move || {
            store.save_fetch(&record)?;
            store.prune_fetches()?;
            store.flush()
        })
        .await
        .map_err(|e| CommandError::Unavailable(e.to_string()))
        .and_then(|r| r.map_err(CommandError::from));
        if let Err(e) = saved {
            if let Ok(mut jobs) = self.jobs.lock() {
                jobs.remove(&job.id);
            }
            return Err(e);
        }
        tokio::spawn(self.clone().run(job.id, grant, manifest));
        Ok(())
    }

    /// Takes `job` in as running, unless a job of the same organization for the
    /// same version already runs: that one is answered instead.
    fn reserve(&self, job: &FetchJob) -> Option<FetchJob> {
        let mut jobs = self.jobs.lock().ok()?;
        let same = |j: &&FetchJob| {
            j.state == FetchState::Running
                && j.entry == job.entry
                && j.version == job.version
                && j.organization == job.organization
        };
        if let Some(running) = jobs.values().find(same) {
            return Some(running.clone());
        }
        jobs.insert(job.id.clone(), job.clone());
        None
    }

    /// A job's view: its record (live when running), rate and time left.
    pub(crate) fn view(&self, job: FetchJob) -> FetchView {
        let live = self.job(&job.id).unwrap_or(job);
        let started = self.run_started.lock().ok().and_then(|r| r.get(&live.id).copied());
        let (rate, eta) = match (live.state, started) {
            (FetchState::Running, Some((at_ms, done_at_start))) => {
                let secs = unix_millis().saturating_sub(at_ms) as f64 / 1000.0;
                let rate = if secs > 0.0 {
                    live.bytes_done.saturating_sub(done_at_start) as f64 / secs
                } else {
                    0.0
                };
                let left = live.bytes_total.saturating_sub(live.bytes_done) as f64;
                (rate, (rate > 0.0).then(|| left / rate))
            }
            _ => (0.0, None),
        };
        FetchView { job: live, rate, eta_seconds: eta }
    }
}

/// Resumes the fetch jobs a previous run of the node left running.
pub(crate) async fn resume_fetches(datasets: Arc<Datasets>) {
    let store = datasets.store.clone();
    let jobs = match tokio::task::spawn_blocking(move || store.fetch_jobs(true)).await {
        Ok(Ok(jobs)) => jobs,
        _ => return,
    };
    for job in jobs {
        let (store, id, entry, version) =
            (datasets.store.clone(), job.grant.clone(), job.entry.clone(), job.version);
        let found = tokio::task::spawn_blocking(move || {
            Ok::<_, cascade_core::StoreError>((
                store.grant(&id)?,
                store.manifest(entry.origin, &entry.code, Some(version))?,
            ))
        })
        .await;
        match found {
            Ok(Ok((Some(record), Some(manifest)))) => {
                info!(job = %job.id, "resuming a fetch");
                if datasets.reserve(&job).is_some() {
                    // Another record of the same fetch runs: this one ends.
                    let mut ended = job;
                    ended.state = FetchState::Failed;
                    ended.reason = Some("superseded by another fetch of the same version".into());
                    ended.finished_ms = Some(unix_millis());
                    datasets.save(&ended, true).await;
                    continue;
                }
                if let Err(e) = datasets.launch(job, record.grant, manifest).await {
                    warn!(error = %e, "a fetch could not be resumed");
                }
            }
            _ => {
                if let Ok(mut jobs) = datasets.jobs.lock() {
                    jobs.insert(job.id.clone(), job.clone());
                }
                datasets
                    .finish(&job.id, FetchState::Failed, Some("its grant or version is gone".into()))
                    .await;
            }
        }
    }
}

impl Node {
    /// Starts fetching a version of `entry` to this node for `by`'s
    /// organization, with `grant` (or the organization's valid grant for the
    /// entry); a fetch of the same version already running is answered instead.
    pub async fn start_fetch(
        &self,
        by: Principal,
        entry: EntryRef,
        version: u64,
        grant: Option<String>,
    ) -> Result<FetchView, CommandError> {
        self.start_fetch_capped(by, entry, version, grant, None).await
    }

    /// `start_fetch`, taking at most `cap` bytes a second (a subscription's).
    pub(crate) async fn start_fetch_capped(
        &self,
        by: Principal,
        entry: EntryRef,
        version: u64,
        grant: Option<String>,
        cap: Option<u64>,
    ) -> Result<FetchView, CommandError> {
        let datasets = self.datasets();
        let me = self.identity().id;
        if entry.origin == me {
            return Err(CommandError::Conflict(
                "the version is published at this node: nothing to fetch".into(),
            ));
        }
        // An administrator without an organization fetches with any of this
        // node's grants for the entry (the core checks the choice).
        let org = match (&by.organization, by.has(cascade_access::Role::Admin)) {
            (Some(org), _) => Some(org.clone()),
            (None, true) => None,
            (None, false) => {
                return Err(CommandError::Forbidden("the account has no organization to hold a grant".into()))
            }
        };
        let e = entry.clone();
        let manifest = self
            .read(crate::query::ReadKind::Directory, move |store| {
                store.manifest(e.origin, &e.code, Some(version))
            })
            .await?
            .ok_or_else(|| {
                CommandError::NotFound(format!(
                    "{me} knows no version {version} of {}:{}",
                    entry.origin, entry.code
                ))
            })?;
        let grant = match grant {
            Some(id) => id,
            None => self.entry_grant_of(org.clone(), &entry).await?.ok_or_else(|| {
                let who = org.as_deref().unwrap_or("no organization of this node");
                CommandError::Forbidden(format!(
                    "{who} holds no valid grant for {}:{}",
                    entry.origin, entry.code
                ))
            })?,
        };
        let command = Command::StartFetch { grant, entry: entry.clone(), version };
        let record = match self.execute(by.clone(), command).await? {
            Reply::Grant(record) => *record,
            other => return Err(crate::api::unexpected(other)),
        };
        let started_ms = unix_millis();
        let n = datasets.next_job.fetch_add(1, Ordering::Relaxed);
        let job = FetchJob {
            id: format!("f{started_ms:013}-{n}"),
            entry,
            version,
            grant: record.grant.id.clone(),
            by: by.actor.clone(),
            organization: record.grant.grantee.clone(),
            state: FetchState::Running,
            reason: None,
            chunks_total: manifest.chunks,
            chunks_done: 0,
            bytes_total: manifest.size,
            bytes_done: 0,
            bytes_transferred: 0,
            started_ms,
            finished_ms: None,
            max_bytes_per_second: cap,
        };
        // The organization's fetch of this version already running, if any.
        if let Some(running) = datasets.reserve(&job) {
            return Ok(datasets.view(running));
        }
        datasets.launch(job.clone(), record.grant, manifest).await?;
        Ok(datasets.view(job))
    }

    /// A fetch job of this node, if `by` may see it (an administrator or auditor,
    /// or an account of the organization it is for).
    pub async fn fetch_job(&self, by: &Principal, id: String) -> Result<Option<FetchView>, CommandError> {
        let datasets = self.datasets();
        let job = match datasets.job(&id) {
            Some(job) => Some(job),
            None => self.read(crate::query::ReadKind::Directory, move |store| store.fetch_job(&id)).await?,
        };
        Ok(job.filter(|j| sees_job(by, j)).map(|j| datasets.view(j)))
    }

    /// The newest fetch jobs `by` may see.
    pub async fn fetch_jobs(&self, by: &Principal) -> Result<Vec<FetchView>, CommandError> {
        let datasets = self.datasets();
        let jobs = self.read(crate::query::ReadKind::Directory, move |store| store.fetch_jobs(false)).await?;
        Ok(jobs.into_iter().filter(|j| sees_job(by, j)).map(|j| datasets.view(j)).collect())
    }
}

fn sees_job(by: &Principal, job: &FetchJob) -> bool {
    use cascade_access::Role;
    by.has(Role::Admin)
        || by.has(Role::Auditor)
        || by.organization.as_deref() == Some(job.organization.as_str())
}
