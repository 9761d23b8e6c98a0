//! Publishing a version at the entry's origin: the body streams in (never held
//! whole), is cut into chunks on the blocking pool and each chunk is stored
//! durably as it is cut; then the chunk list is stored as pieces, and the core
//! numbers, signs and audits the manifest.

use crate::node::Node;
use bytes::Bytes;
use cascade_access::{Permission, Principal};
use cascade_chunks::cut::{self, Summary};
use cascade_chunks::list;
use cascade_chunks::ChunkRef;
use cascade_core::{Command, CommandError, Reply, StateStore};
use cascade_protocol::dataset::{CsvShape, Manifest, MAX_COLUMNS, MAX_COLUMN_BYTES};
use cascade_protocol::service::EntryRef;
use std::io::Read;
use tokio::sync::mpsc;

/// A body arriving on a channel, read as a blocking `Read` (on the blocking
/// pool): the channel's bound is all of it that is ever in memory.
struct BodyReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                Some(Ok(bytes)) => self.current = bytes,
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// CSV column names of a header line (quotes removed; commas inside quotes kept).
fn columns(header: &[u8]) -> Vec<String> {
    let line = String::from_utf8_lossy(header);
    let line = line.trim_end_matches('\r').trim_start_matches('\u{feff}');
    let mut out = Vec::new();
    let (mut cell, mut quoted) = (String::new(), false);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cell)),
            c => cell.push(c),
        }
    }
    out.push(cell);
    out.into_iter()
        .take(MAX_COLUMNS)
        .map(|mut c| {
            while c.len() > MAX_COLUMN_BYTES {
                c.pop();
            }
            c.trim().to_string()
        })
        .collect()
}

/// The shape of CSV content, from what cutting counted.
fn csv_shape(summary: &Summary) -> CsvShape {
    let records = summary.record_ends + u64::from(summary.open_record);
    CsvShape { rows: records.saturating_sub(1), columns: columns(&summary.first_line) }
}

impl Node {
    /// Publishes the next version of this node's entry `code` from `body`
    /// (`media_type` as the client declared it). Only an account that may edit
    /// the entry's provider's catalog may; the body is not read otherwise.
    pub async fn push_version(
        &self,
        by: Principal,
        code: String,
        media_type: String,
        body: mpsc::Receiver<Result<Bytes, String>>,
    ) -> Result<Manifest, CommandError> {
        let c = code.clone();
        let entry = self.read(crate::query::ReadKind::Catalog, move |store| store.own_entry(&c)).await?;
        let me = self.identity().id;
        let (_, entry) = entry.ok_or_else(|| CommandError::NotFound(format!("no entry {code} of {me}")))?;
        self.check(&by, Permission::EditCatalog { provider: &entry.provider }).await?;
        // Refused before a byte is read: the core would refuse the manifest.
        if entry.status != cascade_protocol::catalog::EntryStatus::Published {
            return Err(CommandError::Conflict(format!("{code} is not published")));
        }
        let datasets = self.datasets();
        let _permit =
            datasets.pushes.clone().try_acquire_owned().map_err(|_| {
                CommandError::Busy("versions are being published here: try again shortly".into())
            })?;
        let chunks = datasets.chunks.clone();
        let is_csv = media_type.starts_with("text/csv");
        let cut = tokio::task::spawn_blocking(move || {
            let mut refs = Vec::new();
            let reader = BodyReader { rx: body, current: Bytes::new() };
            let summary = cut::cut(reader, is_csv, |piece| {
                chunks.put(&piece.hash, &piece.data)?;
                refs.push(ChunkRef { hash: piece.hash, len: piece.data.len() as u32 });
                Ok::<_, cascade_chunks::ChunkStoreError>(())
            })
            .map_err(|e| match e {
                cut::CutError::Read(e) => {
                    CommandError::field("body", format!("the content did not arrive whole: {e}"))
                }
                cut::CutError::Sink(e) => CommandError::Unavailable(e.to_string()),
            })?;
            let mut lists = Vec::new();
            for piece in list::encode(&refs) {
                let hash = *blake3::hash(&piece).as_bytes();
                chunks.put(&hash, &piece).map_err(|e| CommandError::Unavailable(e.to_string()))?;
                lists.push(hash);
            }
            Ok::<_, CommandError>((summary, refs.len() as u64, lists))
        })
        .await
        .map_err(|e| CommandError::Unavailable(e.to_string()))??;
        let (summary, count, lists) = cut;
        let csv = is_csv.then(|| csv_shape(&summary));
        let content = Manifest {
            entry: EntryRef { origin: me, code: code.clone() },
            version: 0,
            previous: None,
            size: summary.size,
            content_hash: summary.content_hash,
            media_type,
            csv,
            chunks: count,
            lists,
            published_ms: 0,
        };
        match self.execute(by, Command::PublishVersion { code, content: Box::new(content) }).await? {
            Reply::Dataset(manifest) => Ok(*manifest),
            other => Err(crate::api::unexpected(other)),
        }
    }

    /// The versions of an entry this node knows, newest first.
    pub async fn versions(&self, entry: EntryRef) -> Result<Vec<Manifest>, CommandError> {
        self.read(crate::query::ReadKind::Catalog, move |store| store.versions(entry.origin, &entry.code))
            .await
    }

    /// One version of an entry, if this node knows it.
    pub async fn version(&self, entry: EntryRef, version: u64) -> Result<Option<Manifest>, CommandError> {
        self.read(crate::query::ReadKind::Catalog, move |store| {
            store.manifest(entry.origin, &entry.code, Some(version))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_headers_lose_quotes_and_line_ends_but_keep_quoted_commas() {
        assert_eq!(columns(b"\xef\xbb\xbfid,\"name, full\",age\r"), vec!["id", "name, full", "age"]);
    }
}
