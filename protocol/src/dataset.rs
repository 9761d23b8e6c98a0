//! Dataset versions (数据对接): a version of an entry's data is a manifest signed
//! by the entry's origin, in the same log (so the same scope) as the entry. It
//! names the content by its BLAKE3 hash and its chunks through chunk-list pieces
//! (see `cascade_chunks::list`), so its size does not grow with the content's.

use crate::catalog::validate_resource_code;
use crate::delta::Hash;
use crate::service::EntryRef;
use crate::NodeId;
use cascade_chunks::cut::MAX_CHUNK_BYTES;
use cascade_chunks::list::MAX_PIECE_ENTRIES;
use serde::{Deserialize, Serialize};

/// Longest media type, in bytes (RFC 6838 allows 127 + 1 + 127).
pub const MAX_MEDIA_TYPE_BYTES: usize = 255;
/// Most CSV column names a manifest carries.
pub const MAX_COLUMNS: usize = 1_000;
/// Longest CSV column name kept, in bytes.
pub const MAX_COLUMN_BYTES: usize = 256;
/// Most chunk-list pieces (each names up to 16,384 chunks): 4,096 pieces is
/// 32 TiB of content at the average chunk size, and 128 KiB of hashes.
pub const MAX_LIST_PIECES: usize = 4_096;

/// The shape of CSV content.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CsvShape {
    /// Data rows (records after the header).
    pub rows: u64,
    /// Column names, from the header.
    pub columns: Vec<String>,
}

/// One version of an entry's dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The catalog entry whose data this is (its origin signs the manifest).
    pub entry: EntryRef,
    /// Counts from 1 per entry.
    pub version: u64,
    /// The previous version's content hash, if there is one.
    pub previous: Option<Hash>,
    /// Bytes of content.
    pub size: u64,
    /// BLAKE3 of the whole content.
    pub content_hash: Hash,
    /// Its media type (`text/csv`, `application/octet-stream`…).
    pub media_type: String,
    /// Rows and columns, for CSV content.
    pub csv: Option<CsvShape>,
    /// How many chunks the content has.
    pub chunks: u64,
    /// The chunk list, as content-addressed pieces, in order.
    pub lists: Vec<Hash>,
    /// When it was published (unix ms, the origin's clock).
    pub published_ms: u64,
}

/// Why a manifest is malformed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("manifest: {0}")]
pub struct ManifestError(pub String);

impl Manifest {
    /// The rules every manifest satisfies, wherever it is checked: signed by the
    /// entry's origin, and internally consistent (chunk count, sizes, pieces).
    pub fn validate(&self, origin: NodeId) -> Result<(), ManifestError> {
        let fail = |s: &str| Err(ManifestError(s.into()));
        if self.entry.origin != origin {
            return fail("an entry's versions are signed by its origin");
        }
        validate_resource_code(&self.entry.code).map_err(ManifestError)?;
        if self.version == 0 || (self.version == 1) != self.previous.is_none() {
            return fail("versions count from 1, and only the first has no previous version");
        }
        let chunks_fit = self.chunks.div_ceil(MAX_PIECE_ENTRIES as u64) == self.lists.len() as u64
            && self.lists.len() <= MAX_LIST_PIECES
            && self.size <= self.chunks.saturating_mul(MAX_CHUNK_BYTES as u64)
            && self.chunks <= self.size.max(1);
        if !chunks_fit {
            return fail("chunk count, size and list pieces disagree");
        }
        let media = &self.media_type;
        if media.is_empty()
            || media.len() > MAX_MEDIA_TYPE_BYTES
            || !media.contains('/')
            || !media.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return fail("media type");
        }
        if let Some(csv) = &self.csv {
            if csv.columns.len() > MAX_COLUMNS || csv.columns.iter().any(|c| c.len() > MAX_COLUMN_BYTES) {
                return fail("too many or too long column names");
            }
        }
        Ok(())
    }
}

/// The first byte of every stream a neighbour opens on a link after the sync
/// stream: what the stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum StreamKind {
    /// A service call (`crate::call`).
    Call = 1,
    /// A chunk request (`ChunkRequest`, answered by a `ChunkReply` and the
    /// chunk's bytes).
    Chunk = 2,
}

impl StreamKind {
    /// The kind a stream's first byte names.
    pub fn of(byte: u8) -> Option<StreamKind> {
        match byte {
            1 => Some(StreamKind::Call),
            2 => Some(StreamKind::Chunk),
            _ => None,
        }
    }
}

/// Largest encoded chunk request (a grant of a few KiB and an entry reference).
pub const MAX_CHUNK_REQUEST_BYTES: usize = 16 * 1024;
/// Largest encoded chunk reply head: the outboard of the largest chunk (128
/// groups of 32 bytes) and a reason.
pub const MAX_CHUNK_REPLY_BYTES: usize = 8 * 1024;

/// A request for one chunk of a dataset version, carried hop by hop toward the
/// entry's origin; any hop holding the chunk may answer it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRequest {
    /// The entry whose version the chunk belongs to.
    pub entry: EntryRef,
    /// The version.
    pub version: u64,
    /// The chunk (a data chunk of the version, or one of its list pieces).
    pub hash: Hash,
    /// The node that asks (the grantee node of the grant).
    pub requester: NodeId,
    /// The grant the entry's origin signed for that node (none when the
    /// requester is the origin itself).
    pub grant: Option<crate::workflow::Grant>,
    /// Ask the origin itself, past every cache (a retry after a bad copy).
    pub from_origin: bool,
}

/// The answer to a chunk request; on 200 the chunk's `len` bytes follow, group
/// by group, checkable against `outboard`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkReply {
    /// 200 served; 400 malformed; 403 no valid grant; 404 not held on the path;
    /// 502 a bad copy upstream; 503 busy; 504 a hop could not forward.
    pub status: u16,
    /// The node that answered (a refusal names who refused).
    pub by: NodeId,
    /// Why not, on a refusal.
    pub reason: Option<String>,
    /// The chunk's length.
    pub len: u64,
    /// Its group chaining values (`cascade_chunks::tree::outboard`).
    pub outboard: Vec<[u8; 32]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            entry: EntryRef { origin: "440100".parse().unwrap(), code: "3/000001".into() },
            version: 1,
            previous: None,
            size: 3 << 20,
            content_hash: [1; 32],
            media_type: "text/csv".into(),
            csv: Some(CsvShape { rows: 10, columns: vec!["id".into()] }),
            chunks: 4,
            lists: vec![[2; 32]],
            published_ms: 1,
        }
    }

    #[test]
    fn a_manifest_must_be_consistent_and_signed_by_the_entrys_origin() {
        let origin = "440100".parse().unwrap();
        assert_eq!(manifest().validate(origin), Ok(()));
        let bad = |change: fn(&mut Manifest)| {
            let mut m = manifest();
            change(&mut m);
            m.validate(origin).is_err()
        };
        assert!(manifest().validate("370100".parse().unwrap()).is_err());
        assert!(bad(|m| m.version = 0));
        assert!(bad(|m| m.version = 2));
        assert!(bad(|m| m.previous = Some([0; 32])));
        assert!(bad(|m| m.lists.clear()));
        assert!(bad(|m| m.size = 100 << 20));
        assert!(bad(|m| m.chunks = 0));
        assert!(bad(|m| m.media_type = "csv".into()));
        assert!(bad(|m| m.entry.code = "x".into()));
    }
}
