//! Chunk lists: which chunks, in order, make up a version's content. A list is
//! cut into pieces that are themselves content-addressed chunks, and the signed
//! manifest names the pieces: a manifest stays a few hundred bytes whatever the
//! content's size, and a list piece is fetched and verified like any chunk.

use crate::tree::Hash;

/// Bytes of one list entry: the chunk's hash and its length.
pub const ENTRY_BYTES: usize = 32 + 4;

/// Entries in one list piece: 16,384 chunks (8 GiB of content at the average
/// chunk size) in a 576 KiB piece, below the largest chunk.
pub const MAX_PIECE_ENTRIES: usize = 16_384;

/// One chunk of a version's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkRef {
    /// Its address.
    pub hash: Hash,
    /// Its length.
    pub len: u32,
}

/// Why bytes are not a list piece.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a chunk list piece: {0}")]
pub struct ListError(pub &'static str);

/// Encodes a list in pieces of at most `MAX_PIECE_ENTRIES`.
pub fn encode(chunks: &[ChunkRef]) -> Vec<Vec<u8>> {
    chunks
        .chunks(MAX_PIECE_ENTRIES)
        .map(|piece| {
            let mut out = Vec::with_capacity(piece.len() * ENTRY_BYTES);
            for c in piece {
                out.extend_from_slice(&c.hash);
                out.extend_from_slice(&c.len.to_be_bytes());
            }
            out
        })
        .collect()
}

/// Decodes one piece (bounded: a piece has at most `MAX_PIECE_ENTRIES`, each
/// chunk at most `max_len` bytes and none empty).
pub fn decode(piece: &[u8], max_len: u32) -> Result<Vec<ChunkRef>, ListError> {
    if piece.is_empty()
        || !piece.len().is_multiple_of(ENTRY_BYTES)
        || piece.len() / ENTRY_BYTES > MAX_PIECE_ENTRIES
    {
        return Err(ListError("length"));
    }
    piece
        .chunks_exact(ENTRY_BYTES)
        .map(|e| {
            let mut hash = [0u8; 32];
            hash.copy_from_slice(&e[..32]);
            let len = u32::from_be_bytes([e[32], e[33], e[34], e[35]]);
            match len == 0 || len > max_len {
                true => Err(ListError("chunk length")),
                false => Ok(ChunkRef { hash, len }),
            }
        })
        .collect()
}

/// A version's chunk list as `store` holds it: its `pieces` read (each group
/// checked on the way), decoded, and checked against the chunk count and size
/// its manifest states; `None` while a piece is missing or the list does not
/// fit. Blocking: disk reads.
pub fn read(
    store: &dyn crate::ChunkStore,
    pieces: &[Hash],
    chunks: u64,
    size: u64,
) -> Result<Option<Vec<ChunkRef>>, crate::ChunkStoreError> {
    // Reserved for a piece at most: the count is the origin's word.
    let mut out = Vec::with_capacity((chunks as usize).min(MAX_PIECE_ENTRIES));
    for piece in pieces {
        let Some(mut reader) = store.reader(piece)? else { return Ok(None) };
        let mut bytes = Vec::new();
        reader.next_groups(usize::MAX, &mut bytes)?;
        match decode(&bytes, crate::cut::MAX_CHUNK_BYTES) {
            Ok(refs) => out.extend(refs),
            Err(_) => return Ok(None),
        }
    }
    let fits = out.len() as u64 == chunks && out.iter().map(|c| c.len as u64).sum::<u64>() == size;
    Ok(fits.then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_round_trips_through_bounded_pieces_and_junk_is_refused() {
        let chunks: Vec<ChunkRef> =
            (0..MAX_PIECE_ENTRIES as u32 + 3).map(|i| ChunkRef { hash: [i as u8; 32], len: i + 1 }).collect();
        let pieces = encode(&chunks);
        assert_eq!(pieces.len(), 2);
        let back: Vec<ChunkRef> = pieces.iter().flat_map(|p| decode(p, u32::MAX).unwrap()).collect();
        assert_eq!(back, chunks);
        assert!(decode(&pieces[1][..35], u32::MAX).is_err());
        assert!(decode(&[], u32::MAX).is_err());
        assert!(decode(&pieces[1], 2).is_err());
        assert!(decode(&[0u8; ENTRY_BYTES], u32::MAX).is_err());
    }
}
