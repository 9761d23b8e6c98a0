//! Collecting chunks no kept version uses: a node keeps the chunks of the
//! newest `keep_versions` versions of each entry it knows (all, by default),
//! its own and those it fetched or cached; the rest go, once older than a
//! grace period (a publish or fetch under way stores chunks before a version
//! it knows names them).

use super::Datasets;
use crate::driver::Message;
use cascade_access::Principal;
use cascade_chunks::Hash;
use cascade_core::Command;
use cascade_protocol::dataset::Manifest;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Chunks stored less than this long ago are never collected.
pub const GC_GRACE: Duration = Duration::from_secs(3600);

impl Datasets {
    /// Removes the chunks no kept version uses and that are older than
    /// `grace`; answers how many went. Blocking: disk reads.
    pub(crate) fn collect(&self, keep_versions: u32, grace: Duration) -> Result<u64, String> {
        let versions = self.store.all_versions().map_err(|e| e.to_string())?;
        // The versions being fetched are kept whatever their age.
        let running: Vec<(cascade_protocol::service::EntryRef, u64)> = self
            .jobs
            .lock()
            .map(|j| j.values().map(|j| (j.entry.clone(), j.version)).collect())
            .unwrap_or_default();
        let mut by_entry: BTreeMap<(u32, String), Vec<Manifest>> = BTreeMap::new();
        let mut fetching = Vec::new();
        for m in versions {
            if running.iter().any(|(e, v)| *e == m.entry && *v == m.version) {
                fetching.push(m.clone());
            }
            by_entry.entry((m.entry.origin.code(), m.entry.code.clone())).or_default().push(m);
        }
        let mut used: HashSet<Hash> = HashSet::new();
        for versions in by_entry.values_mut() {
            versions.sort_by_key(|m| std::cmp::Reverse(m.version));
            let kept = match keep_versions {
                0 => &versions[..],
                n => &versions[..versions.len().min(n as usize)],
            };
            for m in kept.iter().chain(&fetching) {
                used.extend(m.lists.iter().copied());
                if let Some(list) = self.chunk_list(m).map_err(|e| e.to_string())? {
                    used.extend(list.iter().map(|c| c.hash));
                }
            }
        }
        let now = SystemTime::now();
        let mut removed = 0;
        for hash in self.chunks.all().map_err(|e| e.to_string())? {
            if used.contains(&hash) {
                continue;
            }
            let old = match self.chunks.stored_at(&hash).map_err(|e| e.to_string())? {
                Some(at) => now.duration_since(at).is_ok_and(|age| age >= grace),
                None => false,
            };
            if old {
                self.chunks.remove(&hash).map_err(|e| e.to_string())?;
                removed += 1;
            }
        }
        if let Ok(mut lists) = self.lists.lock() {
            lists.clear();
        }
        Ok(removed)
    }
}

/// Collects unused chunks every `every` until the node stops; each collection
/// that removed any is audited by the core.
pub(crate) async fn collect_every(
    datasets: Arc<Datasets>,
    keep_versions: u32,
    every: Duration,
    cancel: CancellationToken,
) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_secs(1)));
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if let Err(e) = collect_and_record(&datasets, keep_versions, GC_GRACE).await {
            warn!(error = %e, "unused chunks not collected");
        }
    }
}

/// One collection, on the blocking pool; audited by the core when it removed any.
pub(crate) async fn collect_and_record(
    datasets: &Arc<Datasets>,
    keep_versions: u32,
    grace: Duration,
) -> Result<u64, String> {
    let this = datasets.clone();
    let removed = tokio::task::spawn_blocking(move || this.collect(keep_versions, grace))
        .await
        .map_err(|e| e.to_string())??;
    if removed > 0 {
        info!(removed, "unused chunks collected");
        let (reply, done) = oneshot::channel();
        let command = Command::ChunksCollected { removed, keep_versions };
        let sent = datasets.inbox.send(Message::Command { by: Principal::node(), command, reply }).await;
        if sent.is_ok() {
            let _ = done.await;
        }
    }
    Ok(removed)
}
