//! Verified streaming inside a chunk: a chunk is addressed by its plain BLAKE3
//! hash, and BLAKE3 is a tree, so the chaining values of its 16 KiB groups (the
//! chunk's *outboard*) can be checked against that hash before any data arrives;
//! then every group is checked on its own as it arrives. A corrupt byte is caught
//! within the group that carries it, and no more than one group is ever held
//! unverified.

use blake3::hazmat::{left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, HasherExt, Mode};

/// A BLAKE3 digest: a chunk's address.
pub type Hash = [u8; 32];

/// Bytes of one verified group: 16 BLAKE3 chunks. The outboard costs 32 bytes
/// per group (0.2 %), and a receiver holds at most one unverified group.
pub const GROUP_BYTES: usize = 16 * 1024;

/// How many groups a chunk of `len` bytes has (an empty chunk has one, empty).
pub fn group_count(len: u64) -> usize {
    len.div_ceil(GROUP_BYTES as u64).max(1) as usize
}

/// The length of group `i` of a chunk of `len` bytes.
pub fn group_len(len: u64, i: usize) -> usize {
    let start = i as u64 * GROUP_BYTES as u64;
    (len.saturating_sub(start)).min(GROUP_BYTES as u64) as usize
}

/// The chaining value of group `i` (not a root: the chunk has more than one group).
fn group_cv(i: usize, bytes: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.set_input_offset(i as u64 * GROUP_BYTES as u64);
    h.update(bytes);
    h.finalize_non_root()
}

/// The outboard of a chunk: the chaining value of each group, or nothing for a
/// chunk of one group (its hash checks it whole).
pub fn outboard(data: &[u8]) -> Vec<[u8; 32]> {
    if data.len() <= GROUP_BYTES {
        return Vec::new();
    }
    data.chunks(GROUP_BYTES).enumerate().map(|(i, g)| group_cv(i, g)).collect()
}

/// Why a chunk's bytes are not the chunk they claim to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// The outboard does not lead to the chunk's hash.
    #[error("the outboard of {len} bytes does not hash to the chunk's address")]
    Outboard {
        /// The chunk's length.
        len: u64,
    },
    /// A group's bytes do not match its chaining value.
    #[error("group {group} does not match")]
    Group {
        /// The group's index.
        group: usize,
    },
}

/// Folds group chaining values into the subtree over `len` bytes (a non-root node
/// unless `root`).
fn fold(cvs: &[[u8; 32]], len: u64, root: bool) -> Result<[u8; 32], ()> {
    if len <= GROUP_BYTES as u64 {
        // A lone group as root is never folded: the caller hashes it whole.
        return if root { Err(()) } else { cvs.first().copied().ok_or(()) };
    }
    let left = left_subtree_len(len);
    // `left` is a power of two above half of more than one group: whole groups.
    let split = (left / GROUP_BYTES as u64) as usize;
    if split == 0 || split >= cvs.len() {
        return Err(());
    }
    let l = fold(&cvs[..split], left, false)?;
    let r = fold(&cvs[split..], len - left, false)?;
    Ok(if root {
        *merge_subtrees_root(&l, &r, Mode::Hash).as_bytes()
    } else {
        merge_subtrees_non_root(&l, &r, Mode::Hash)
    })
}

/// Checks a chunk's bytes group by group against its address, as they arrive.
#[derive(Clone, Debug)]
pub struct Verifier {
    hash: Hash,
    len: u64,
    cvs: Vec<[u8; 32]>,
}

impl Verifier {
    /// A verifier of the chunk `hash` of `len` bytes, given its outboard: refused
    /// unless the outboard leads to the hash.
    pub fn new(hash: Hash, len: u64, outboard: Vec<[u8; 32]>) -> Result<Verifier, Mismatch> {
        let groups = group_count(len);
        let fits = if groups == 1 {
            outboard.is_empty()
        } else {
            outboard.len() == groups && fold(&outboard, len, true) == Ok(hash)
        };
        if !fits {
            return Err(Mismatch::Outboard { len });
        }
        Ok(Verifier { hash, len, cvs: outboard })
    }

    /// The chunk's address.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// How many groups the chunk has.
    pub fn groups(&self) -> usize {
        group_count(self.len)
    }

    /// The chunk's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the chunk is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunk's outboard.
    pub fn outboard(&self) -> &[[u8; 32]] {
        &self.cvs
    }

    /// Checks group `i` (exactly `group_len(len, i)` bytes).
    pub fn check(&self, i: usize, bytes: &[u8]) -> Result<(), Mismatch> {
        let fine = i < self.groups()
            && bytes.len() == group_len(self.len, i)
            && match self.cvs.is_empty() {
                true => *blake3::hash(bytes).as_bytes() == self.hash,
                false => group_cv(i, bytes) == self.cvs[i],
            };
        if fine {
            Ok(())
        } else {
            Err(Mismatch::Group { group: i })
        }
    }

    /// Checks whole groups from `first` on, laid end to end in `bytes` (one
    /// empty group for an empty chunk); answers how many there were.
    pub fn check_run(&self, first: usize, bytes: &[u8]) -> Result<usize, Mismatch> {
        if self.len == 0 {
            return self.check(first, bytes).map(|()| 1);
        }
        let (mut i, mut at) = (first, 0);
        while at < bytes.len() {
            let len = group_len(self.len, i);
            let group = bytes.get(at..at + len).filter(|_| len > 0);
            self.check(i, group.ok_or(Mismatch::Group { group: i })?)?;
            at += len;
            i += 1;
        }
        Ok(i - first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..len).map(|_| rng.gen()).collect()
    }

    #[test]
    fn the_outboard_leads_to_the_plain_blake3_hash_for_every_shape_of_tree() {
        let sizes = [
            0,
            1,
            1024,
            GROUP_BYTES,
            GROUP_BYTES + 1,
            2 * GROUP_BYTES,
            3 * GROUP_BYTES + 7,
            1 << 20,
            (1 << 20) + 5 * GROUP_BYTES - 3,
        ];
        for (seed, len) in sizes.into_iter().enumerate() {
            let data = bytes(len, seed as u64);
            let hash = *blake3::hash(&data).as_bytes();
            let v = Verifier::new(hash, len as u64, outboard(&data)).unwrap_or_else(|e| panic!("{len}: {e}"));
            for (i, g) in data.chunks(GROUP_BYTES).enumerate() {
                v.check(i, g).unwrap();
            }
            if len == 0 {
                v.check(0, &[]).unwrap();
            }
        }
    }

    #[test]
    fn a_flipped_byte_is_caught_in_its_own_group_and_a_forged_outboard_is_refused() {
        let data = bytes(5 * GROUP_BYTES + 100, 9);
        let hash = *blake3::hash(&data).as_bytes();
        let ob = outboard(&data);
        let v = Verifier::new(hash, data.len() as u64, ob.clone()).unwrap();
        let mut bad = data.clone();
        bad[3 * GROUP_BYTES + 17] ^= 1;
        for (i, g) in bad.chunks(GROUP_BYTES).enumerate() {
            assert_eq!(v.check(i, g).is_err(), i == 3, "group {i}");
        }
        // An outboard describing other bytes, or the right one for another length.
        let forged = outboard(&bad);
        assert!(Verifier::new(hash, data.len() as u64, forged).is_err());
        // A wrong length with the same tree shape is caught at the last group.
        let short = Verifier::new(hash, data.len() as u64 - 1, ob.clone()).unwrap();
        assert!(short.check(5, &data[5 * GROUP_BYTES..]).is_err());
        assert!(short.check(5, &data[5 * GROUP_BYTES..data.len() - 1]).is_err());
        assert!(Verifier::new(hash, data.len() as u64, ob[1..].to_vec()).is_err());
        // A short chunk is checked whole.
        let small = bytes(100, 3);
        let v = Verifier::new(*blake3::hash(&small).as_bytes(), 100, Vec::new()).unwrap();
        assert!(v.check(0, &small[..99]).is_err());
        assert!(v.check(0, &small).is_ok());
    }

    #[test]
    fn a_run_of_groups_is_checked_whole_groups_only_and_up_to_the_chunks_end() {
        let data = bytes(5 * GROUP_BYTES + 100, 4);
        let v = Verifier::new(*blake3::hash(&data).as_bytes(), data.len() as u64, outboard(&data)).unwrap();
        assert_eq!(v.check_run(0, &data), Ok(6));
        assert_eq!(v.check_run(2, &data[2 * GROUP_BYTES..4 * GROUP_BYTES]), Ok(2));
        assert_eq!(v.check_run(3, &[]), Ok(0));
        // A group cut short, a run past the end, a flipped byte.
        assert_eq!(v.check_run(0, &data[..GROUP_BYTES + 1]), Err(Mismatch::Group { group: 1 }));
        let mut long = data[5 * GROUP_BYTES..].to_vec();
        long.push(0);
        assert_eq!(v.check_run(5, &long), Err(Mismatch::Group { group: 6 }));
        let mut bad = data.clone();
        bad[4 * GROUP_BYTES] ^= 1;
        assert_eq!(v.check_run(0, &bad), Err(Mismatch::Group { group: 4 }));
        // The empty chunk is one empty group.
        let empty = Verifier::new(*blake3::hash(&[]).as_bytes(), 0, Vec::new()).unwrap();
        assert_eq!(empty.check_run(0, &[]), Ok(1));
        assert!(empty.check_run(1, &[]).is_err());
    }
}
