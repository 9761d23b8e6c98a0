//! Reading a version's content back at a node that holds all of it: the
//! origin, or a consumer's node once its fetch is done. Chunks are read group by
//! group (each checked against its address) and streamed, from any byte offset.

use super::{BATCH_GROUPS, CHUNK_IDLE, MAX_CONTENT_STREAMS, MAX_CONTENT_STREAMS_PER_ACCOUNT};
use crate::node::Node;
use bytes::Bytes;
use cascade_access::{Principal, Role};
use cascade_chunks::ChunkRef;
use cascade_core::{Command, CommandError, StateStore};
use cascade_protocol::dataset::Manifest;
use cascade_protocol::service::EntryRef;
use cascade_protocol::workflow::Resource;
use tokio::sync::mpsc;

/// A version whose content this node holds whole, ready to stream (one of the
/// node's `MAX_CONTENT_STREAMS`, and of its account's share).
pub struct Content {
    /// Its manifest.
    pub manifest: Manifest,
    list: Vec<ChunkRef>,
    permits: [tokio::sync::OwnedSemaphorePermit; 2],
}

impl Node {
    /// The content of a version, for `by`: an administrator, an account of the
    /// entry's provider, or one of an organization holding a valid grant for the
    /// entry at this node (a refusal is audited). Conflict while this node does
    /// not hold all of it.
    pub async fn content(
        &self,
        by: &Principal,
        entry: EntryRef,
        version: u64,
    ) -> Result<Content, CommandError> {
        let me = self.identity().id;
        let org = by.organization.clone().unwrap_or_default();
        let e = entry.clone();
        let (manifest, provider, granted) = self
            .read(crate::query::ReadKind::Catalog, move |store| {
                let manifest = store.manifest(e.origin, &e.code, Some(version))?;
                let provider =
                    store.catalog_entry(e.origin, &e.code)?.into_iter().next().map(|r| r.entry.provider);
                let now = crate::driver::unix_millis() / 1000;
                let granted =
                    store.grants_for(me, Some(&org), &Resource::Entry(e))?.iter().any(|g| g.is_valid(now));
                Ok((manifest, provider, granted))
            })
            .await?;
        let what = format!("content of {}:{} v{version}", entry.origin, entry.code);
        let manifest = manifest.ok_or_else(|| CommandError::NotFound(format!("{me} knows no {what}")))?;
        let allowed = by.has(Role::Admin) || granted || (provider.is_some() && by.organization == provider);
        if !allowed {
            let reason = "neither the provider nor holding a valid grant for the entry here".to_string();
            self.execute(by.clone(), Command::Denied { what, reason: reason.clone() }).await?;
            return Err(CommandError::Forbidden(reason));
        }
        let datasets = self.datasets();
        let permits = datasets.content_streams.try_acquire(&by.actor).ok_or_else(|| {
            CommandError::Busy(format!(
                "{me} streams at most {MAX_CONTENT_STREAMS} contents, {MAX_CONTENT_STREAMS_PER_ACCOUNT} per account: \
                 try again shortly"
            ))
        })?;
        let m = manifest.clone();
        let list = tokio::task::spawn_blocking(move || -> Result<Option<Vec<ChunkRef>>, String> {
            let Some(list) = datasets.chunk_list(&m).map_err(|e| e.to_string())? else { return Ok(None) };
            for c in &list {
                if !datasets.chunks.has(&c.hash).map_err(|e| e.to_string())? {
                    return Ok(None);
                }
            }
            Ok(Some(list))
        })
        .await
        .map_err(|e| CommandError::Unavailable(e.to_string()))?
        .map_err(CommandError::Unavailable)?
        .ok_or_else(|| {
            CommandError::Conflict(format!("{me} does not hold all of {what} (fetch it first)"))
        })?;
        Ok(Content { manifest, list, permits })
    }

    /// Streams bytes `start..end` of `content` (a short channel: a few batches
    /// in memory); a chunk found damaged on disk ends the stream with an error,
    /// and so does a reader that takes nothing for `CHUNK_IDLE`. The disk is read
    /// on the blocking pool a batch at a time, so a slow reader holds no thread.
    pub fn stream_content(
        &self,
        content: Content,
        start: u64,
        end: u64,
    ) -> mpsc::Receiver<Result<Bytes, String>> {
        let (tx, rx) = mpsc::channel(8);
        let end = end.min(content.manifest.size);
        if start >= end {
            return rx;
        }
        let chunks = self.datasets().chunks.clone();
        tokio::spawn(async move {
            let _permits = content.permits;
            let send =
                |item| async { matches!(tokio::time::timeout(CHUNK_IDLE, tx.send(item)).await, Ok(Ok(()))) };
            let mut at = 0u64;
            for c in &content.list {
                let (from, to) = (at, at + c.len as u64);
                at = to;
                if to <= start || from >= end {
                    continue;
                }
                let (store, hash) = (chunks.clone(), c.hash);
                let mut reader = match tokio::task::spawn_blocking(move || store.reader(&hash)).await {
                    Ok(Ok(Some(r))) => r,
                    Ok(Ok(None)) => {
                        send(Err("a chunk went missing".into())).await;
                        return;
                    }
                    Ok(Err(e)) => {
                        send(Err(e.to_string())).await;
                        return;
                    }
                    Err(e) => {
                        send(Err(e.to_string())).await;
                        return;
                    }
                };
                let mut batch_at = from;
                loop {
                    let read = tokio::task::spawn_blocking(move || {
                        let mut batch = Vec::new();
                        let read = reader.next_groups(BATCH_GROUPS, &mut batch);
                        (reader, read.map(|n| (n, batch)))
                    })
                    .await;
                    let batch = match read {
                        Ok((back, Ok((n, batch)))) if n > 0 => {
                            reader = back;
                            batch
                        }
                        Ok((_, Ok(_))) => break,
                        Ok((_, Err(e))) => {
                            send(Err(e.to_string())).await;
                            return;
                        }
                        Err(e) => {
                            send(Err(e.to_string())).await;
                            return;
                        }
                    };
                    let (b_from, b_to) = (batch_at, batch_at + batch.len() as u64);
                    batch_at = b_to;
                    if b_to <= start || b_from >= end {
                        continue;
                    }
                    let lo = start.saturating_sub(b_from) as usize;
                    let hi = (end.min(b_to) - b_from) as usize;
                    let bytes = match (lo, hi) {
                        (0, hi) if hi == batch.len() => Bytes::from(batch),
                        _ => Bytes::copy_from_slice(&batch[lo..hi]),
                    };
                    if !send(Ok(bytes)).await {
                        return;
                    }
                }
            }
        });
        rx
    }
}
