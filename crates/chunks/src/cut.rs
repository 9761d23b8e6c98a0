//! Cutting a version's content into content-defined chunks (FastCDC 2020) while
//! it streams in: the cut points follow the content, so bytes inserted in the
//! middle of a file change the chunk they fall in (and rarely its neighbour), and
//! every other chunk keeps its address.

use crate::tree::Hash;
use std::io::Read;

/// Smallest chunk (except a content's last): 128 KiB keeps a 1 GiB version under
/// 8,192 chunks, so its chunk list and the fetch's bookkeeping stay small.
pub const MIN_CHUNK_BYTES: u32 = 128 * 1024;
/// Average chunk: 512 KiB. An edit moves about one chunk, 0.25 % of a 200 MB
/// file, and a request in flight carries enough bytes to amortise its round trip.
pub const AVG_CHUNK_BYTES: u32 = 512 * 1024;
/// Largest chunk: 2 MiB bounds what one request holds in memory at any hop and
/// what an interrupted request costs to send again.
pub const MAX_CHUNK_BYTES: u32 = 2 * 1024 * 1024;

/// One cut piece of content.
#[derive(Debug)]
pub struct Piece {
    /// Its BLAKE3 hash: its address.
    pub hash: Hash,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// What cutting learned about the whole content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Bytes in all.
    pub size: u64,
    /// BLAKE3 of the whole content.
    pub content_hash: Hash,
    /// Line breaks outside double quotes (CSV record ends).
    pub record_ends: u64,
    /// Whether the last byte was not a record end (an unterminated last record).
    pub open_record: bool,
    /// The first line (at most `MAX_HEADER_BYTES`), for CSV column names.
    pub first_line: Vec<u8>,
}

/// Longest first line kept for column names.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Why content could not be cut.
#[derive(Debug, thiserror::Error)]
pub enum CutError<E> {
    /// Reading the content failed (the client went away, say).
    #[error("reading the content: {0}")]
    Read(std::io::Error),
    /// The sink refused a piece.
    #[error(transparent)]
    Sink(E),
}

/// Counts record ends (line breaks outside double quotes) across pieces.
#[derive(Default)]
struct Records {
    in_quotes: bool,
    ends: u64,
    last: Option<u8>,
    header: Vec<u8>,
    header_done: bool,
}

impl Records {
    fn feed(&mut self, data: &[u8]) {
        if !self.header_done {
            let end = data.iter().position(|b| *b == b'\n');
            let take = end.unwrap_or(data.len()).min(MAX_HEADER_BYTES - self.header.len());
            self.header.extend_from_slice(&data[..take]);
            self.header_done = end.is_some() || self.header.len() == MAX_HEADER_BYTES;
        }
        if !self.in_quotes && !data.contains(&b'"') {
            // The common case, counted at memory speed.
            self.ends += data.iter().filter(|b| **b == b'\n').count() as u64;
        } else {
            for b in data {
                match *b {
                    b'"' => self.in_quotes = !self.in_quotes,
                    b'\n' if !self.in_quotes => self.ends += 1,
                    _ => {}
                }
            }
        }
        if let Some(b) = data.last() {
            self.last = Some(*b);
        }
    }
}

/// Cuts everything `source` yields into pieces handed to `sink` in order, and
/// sums up the content (its CSV records and header too when `csv`: a scan of
/// every byte, spared for other content).
pub fn cut<E>(
    source: impl Read,
    csv: bool,
    mut sink: impl FnMut(Piece) -> Result<(), E>,
) -> Result<Summary, CutError<E>> {
    let mut whole = blake3::Hasher::new();
    let mut records = Records::default();
    let mut size = 0u64;
    let cdc = fastcdc::v2020::StreamCDC::new(source, MIN_CHUNK_BYTES, AVG_CHUNK_BYTES, MAX_CHUNK_BYTES);
    for chunk in cdc {
        let chunk = chunk.map_err(|e| CutError::Read(e.into()))?;
        whole.update(&chunk.data);
        if csv {
            records.feed(&chunk.data);
        }
        size += chunk.data.len() as u64;
        let hash = *blake3::hash(&chunk.data).as_bytes();
        sink(Piece { hash, data: chunk.data }).map_err(CutError::Sink)?;
    }
    Ok(Summary {
        size,
        content_hash: *whole.finalize().as_bytes(),
        record_ends: records.ends,
        open_record: records.last.is_some_and(|b| b != b'\n'),
        first_line: records.header,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn pieces(data: &[u8]) -> (Vec<Piece>, Summary) {
        let mut out = Vec::new();
        let summary = cut::<()>(data, true, |p| {
            out.push(p);
            Ok(())
        })
        .unwrap();
        (out, summary)
    }

    #[test]
    fn pieces_rebuild_the_content_within_the_size_bounds_and_an_insert_moves_about_one_chunk() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let data: Vec<u8> = (0..20 << 20).map(|_| rng.gen()).collect();
        let (a, summary) = pieces(&data);
        assert_eq!(a.iter().map(|p| p.data.len()).sum::<usize>(), data.len());
        assert_eq!(summary.content_hash, *blake3::hash(&data).as_bytes());
        let (last, rest) = a.split_last().unwrap();
        assert!(rest.iter().all(|p| (MIN_CHUNK_BYTES..=MAX_CHUNK_BYTES).contains(&(p.data.len() as u32))));
        assert!(last.data.len() as u32 <= MAX_CHUNK_BYTES);
        // 1 KB inserted in the middle: the pieces not already held are few.
        let mut edited = data[..10 << 20].to_vec();
        edited.extend((0..1000).map(|_| rng.gen::<u8>()));
        edited.extend_from_slice(&data[10 << 20..]);
        let (b, _) = pieces(&edited);
        let held: std::collections::HashSet<_> = a.iter().map(|p| p.hash).collect();
        let new_bytes: usize = b.iter().filter(|p| !held.contains(&p.hash)).map(|p| p.data.len()).sum();
        assert!(new_bytes <= 2 * MAX_CHUNK_BYTES as usize, "{new_bytes} new bytes");
    }

    #[test]
    fn csv_records_are_counted_outside_quotes_and_the_header_is_kept() {
        let csv = b"id,name\n1,\"two\nlines\"\n2,b";
        let (_, s) = pieces(csv);
        assert_eq!(s.first_line, b"id,name");
        assert_eq!((s.record_ends, s.open_record), (2, true));
    }
}
