//! Where a node keeps chunks: content-addressed, verified group by group on the
//! way in and on the way out, and durable before they are known. The trait is
//! small so that a hub can later keep its chunks in an object store; `DiskStore`
//! keeps each chunk as one file named by its hash.
//!
//! A chunk exists only under its final name, and it gets that name only after
//! its bytes are flushed (write to a temporary file, `fsync`, rename, `fsync` the
//! directory): a crash leaves at most a temporary file, swept at the next open,
//! and never a name that promises bytes the disk does not hold. What the node
//! "knows it holds" is exactly the set of names, so there is no second record to
//! disagree with.

use crate::tree::{group_count, group_len, outboard, Hash, Mismatch, Verifier, GROUP_BYTES};
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why the chunk store failed.
#[derive(Debug, thiserror::Error)]
pub enum ChunkStoreError {
    /// The disk failed.
    #[error("chunk store i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Bytes do not match their address (arriving, or found so on disk and
    /// removed).
    #[error("chunk {hash}: {mismatch}")]
    Mismatch {
        /// The chunk, in hex.
        hash: String,
        /// What did not match.
        mismatch: Mismatch,
    },
    /// A writer was given more or fewer groups than its chunk has.
    #[error("chunk {0} written out of order or incomplete")]
    Incomplete(String),
}

/// The hex form of a hash.
pub fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A stored chunk being read: its length and outboard, then its groups, each
/// verified before it is returned.
pub trait ChunkReader: Send {
    /// The chunk's verifier (length and outboard).
    fn verifier(&self) -> &Verifier;
    /// Appends up to `max` of the next groups to `out`, each verified first;
    /// answers how many (0 after the last).
    fn next_groups(&mut self, max: usize, out: &mut Vec<u8>) -> Result<usize, ChunkStoreError>;
}

/// A chunk being written, group by group, each verified before it is written.
pub trait ChunkWriter: Send {
    /// Appends the next whole groups, laid end to end (one empty group for an
    /// empty chunk): all are checked before any is written.
    fn groups(&mut self, bytes: &[u8]) -> Result<(), ChunkStoreError>;
    /// Makes the chunk durable and known. Dropping a writer without committing
    /// leaves nothing behind.
    fn commit(self: Box<Self>) -> Result<(), ChunkStoreError>;
}

/// A node's chunks.
pub trait ChunkStore: Send + Sync {
    /// Whether the chunk is held.
    fn has(&self, hash: &Hash) -> Result<bool, ChunkStoreError>;
    /// Stores a whole chunk (cut locally), through a writer: verified against
    /// `hash` first, group by group. A chunk already held is kept as it is.
    fn put(&self, hash: &Hash, data: &[u8]) -> Result<(), ChunkStoreError> {
        if self.has(hash)? {
            // Named again: young again, so that a collection under way spares it.
            return self.touch(hash);
        }
        let verifier = Verifier::new(*hash, data.len() as u64, outboard(data))
            .map_err(|mismatch| ChunkStoreError::Mismatch { hash: hex(hash), mismatch })?;
        let mut w = self.writer(verifier)?;
        w.groups(data)?;
        w.commit()
    }
    /// Starts writing a chunk that arrives group by group.
    fn writer(&self, verifier: Verifier) -> Result<Box<dyn ChunkWriter>, ChunkStoreError>;
    /// Opens a held chunk for reading.
    fn reader(&self, hash: &Hash) -> Result<Option<Box<dyn ChunkReader>>, ChunkStoreError>;
    /// Forgets a chunk (garbage collection, or corruption found).
    fn remove(&self, hash: &Hash) -> Result<(), ChunkStoreError>;
    /// Every held chunk (for garbage collection).
    fn all(&self) -> Result<Vec<Hash>, ChunkStoreError>;
    /// Marks a held chunk as stored now (a new version or a fetch names it
    /// again): garbage collection spares it for its grace period.
    fn touch(&self, _hash: &Hash) -> Result<(), ChunkStoreError> {
        Ok(())
    }
    /// When a held chunk was stored (none if unknown or not held): garbage
    /// collection spares chunks younger than a grace period (a publish or fetch
    /// under way has not named them yet).
    fn stored_at(&self, hash: &Hash) -> Result<Option<std::time::SystemTime>, ChunkStoreError>;
}

/// The groups `first..last` a reader at group `next` reads next, at most `max`.
fn run(verifier: &Verifier, next: usize, max: usize) -> (usize, usize) {
    (next, next.saturating_add(max).min(verifier.groups()).max(next))
}

/// Checks whole groups from `first` on (`Verifier::check_run`), as a store error.
fn check_run(verifier: &Verifier, first: usize, bytes: &[u8]) -> Result<usize, ChunkStoreError> {
    verifier
        .check_run(first, bytes)
        .map_err(|mismatch| ChunkStoreError::Mismatch { hash: hex(&verifier.hash()), mismatch })
}

/// Largest chunk a file may claim to hold: the largest a list piece or a cut
/// chunk can be (a longer claim is damage, and is not read on).
const MAX_STORED_CHUNK: u64 = crate::cut::MAX_CHUNK_BYTES as u64;

/// Bytes a chunk writer gathers before it writes (16 groups).
const WRITE_BUFFER: usize = 16 * GROUP_BYTES;

/// File head: magic, then the chunk's length.
const MAGIC: &[u8; 8] = b"CSCHNK01";
const HEAD_BYTES: u64 = 16;

/// Chunks as files under one folder: `ab/abcdef…` (256 subfolders keep folders
/// small at millions of chunks), temporaries in `tmp/`.
pub struct DiskStore {
    root: PathBuf,
    temp_seq: AtomicU64,
}

fn parse_hex(name: &str) -> Option<Hash> {
    if name.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(name.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Creates `dir` (and its parents) private to this user, or makes it so: chunks
/// hold datasets that may be scoped or shared only under grants.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    {
        fs::create_dir_all(dir)
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl DiskStore {
    /// Opens (creating) the store at `root`, sweeping temporaries a crash left.
    /// Its 256 folders are made here, once, and the root flushed: a chunk's
    /// rename is then made durable by flushing its own folder alone.
    pub fn open(root: impl Into<PathBuf>) -> Result<DiskStore, ChunkStoreError> {
        let root = root.into();
        let tmp = root.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        private_dir(&root)?;
        private_dir(&tmp)?;
        for shard in 0..=255u8 {
            private_dir(&root.join(format!("{shard:02x}")))?;
        }
        sync_dir(&root)?;
        Ok(DiskStore { root, temp_seq: AtomicU64::new(0) })
    }

    /// Forgets a chunk found damaged (short, or not what its name says).
    fn rotten(path: &Path, hash: &Hash, mismatch: Mismatch) -> ChunkStoreError {
        tracing::warn!(path = %path.display(), "a stored chunk is damaged; removed");
        let _ = fs::remove_file(path);
        ChunkStoreError::Mismatch { hash: hex(hash), mismatch }
    }

    fn path(&self, hash: &Hash) -> PathBuf {
        let h = hex(hash);
        self.root.join(&h[..2]).join(h)
    }

    fn temp(&self, hash: &Hash) -> PathBuf {
        let n = self.temp_seq.fetch_add(1, Ordering::Relaxed);
        self.root.join("tmp").join(format!("{}.{n}", hex(hash)))
    }
}

/// A chunk arriving into a temporary file.
struct DiskWriter {
    /// Buffered: a chunk arrives group by group, and is written in larger pieces.
    file: std::io::BufWriter<File>,
    temp: PathBuf,
    dest: PathBuf,
    verifier: Verifier,
    next: usize,
}

impl ChunkWriter for DiskWriter {
    fn groups(&mut self, bytes: &[u8]) -> Result<(), ChunkStoreError> {
        let n = check_run(&self.verifier, self.next, bytes)?;
        self.file.write_all(bytes)?;
        self.next += n;
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<(), ChunkStoreError> {
        if self.next != self.verifier.groups() {
            return Err(ChunkStoreError::Incomplete(self.verifier_hash()));
        }
        let mut this = self;
        this.file.flush()?;
        this.file.get_ref().sync_all()?;
        fs::rename(&this.temp, &this.dest)?;
        if let Some(dir) = this.dest.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }
}

impl DiskWriter {
    fn verifier_hash(&self) -> String {
        hex(&self.verifier.hash())
    }
}

impl Drop for DiskWriter {
    fn drop(&mut self) {
        // After a commit the temporary is gone and this fails harmlessly.
        let _ = fs::remove_file(&self.temp);
    }
}

/// A held chunk being read back.
struct DiskReader {
    file: BufReader<File>,
    verifier: Verifier,
    next: usize,
    path: PathBuf,
}

impl ChunkReader for DiskReader {
    fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    fn next_groups(&mut self, max: usize, out: &mut Vec<u8>) -> Result<usize, ChunkStoreError> {
        let (first, last) = run(&self.verifier, self.next, max);
        let len: usize = (first..last).map(|i| group_len(self.verifier.len(), i)).sum();
        let start = out.len();
        out.resize(start + len, 0);
        let rotten = |m| DiskStore::rotten(&self.path, &self.verifier.hash(), m);
        let read = match self.file.read_exact(&mut out[start..]) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(rotten(Mismatch::Group { group: first }))
            }
            Err(e) => Err(e.into()),
            // Rotten on disk: forget it, so that it is fetched again.
            Ok(()) if last > first => {
                self.verifier.check_run(first, &out[start..]).map(|_| ()).map_err(rotten)
            }
            Ok(()) => Ok(()),
        };
        if let Err(e) = read {
            // Nothing unchecked is left in `out`.
            out.truncate(start);
            return Err(e);
        }
        self.next = last;
        Ok(last - first)
    }
}

impl ChunkStore for DiskStore {
    fn has(&self, hash: &Hash) -> Result<bool, ChunkStoreError> {
        Ok(self.path(hash).try_exists()?)
    }

    fn writer(&self, verifier: Verifier) -> Result<Box<dyn ChunkWriter>, ChunkStoreError> {
        let hash = verifier.hash();
        let temp = self.temp(&hash);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&temp)?;
        let mut file = std::io::BufWriter::with_capacity(WRITE_BUFFER, file);
        file.write_all(MAGIC)?;
        file.write_all(&verifier.len().to_be_bytes())?;
        for cv in verifier.outboard() {
            file.write_all(cv)?;
        }
        Ok(Box::new(DiskWriter { file, temp, dest: self.path(&hash), verifier, next: 0 }))
    }

    fn reader(&self, hash: &Hash) -> Result<Option<Box<dyn ChunkReader>>, ChunkStoreError> {
        let path = self.path(hash);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut file = BufReader::with_capacity(GROUP_BYTES, file);
        // The head: magic, length (at most a chunk's), then the outboard.
        let head = (|| -> std::io::Result<Option<(u64, Vec<[u8; 32]>)>> {
            let mut head = [0u8; HEAD_BYTES as usize];
            file.read_exact(&mut head)?;
            let len = u64::from_be_bytes(head[8..].try_into().unwrap_or_default());
            if &head[..8] != MAGIC || len > MAX_STORED_CHUNK {
                return Ok(None);
            }
            let mut cvs = vec![[0u8; 32]; if group_count(len) > 1 { group_count(len) } else { 0 }];
            for cv in &mut cvs {
                file.read_exact(cv)?;
            }
            Ok(Some((len, cvs)))
        })();
        let bad_head = Mismatch::Outboard { len: 0 };
        let (len, cvs) = match head {
            Ok(Some(head)) => head,
            Ok(None) => return Err(DiskStore::rotten(&path, hash, bad_head)),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(DiskStore::rotten(&path, hash, bad_head));
            }
            Err(e) => return Err(e.into()),
        };
        let verifier = Verifier::new(*hash, len, cvs).map_err(|m| DiskStore::rotten(&path, hash, m))?;
        file.seek(SeekFrom::Start(HEAD_BYTES + 32 * verifier.outboard().len() as u64))?;
        Ok(Some(Box::new(DiskReader { file, verifier, next: 0, path })))
    }

    fn remove(&self, hash: &Hash) -> Result<(), ChunkStoreError> {
        match fs::remove_file(self.path(hash)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    fn touch(&self, hash: &Hash) -> Result<(), ChunkStoreError> {
        match OpenOptions::new().append(true).open(self.path(hash)) {
            Ok(file) => Ok(file.set_modified(std::time::SystemTime::now())?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn stored_at(&self, hash: &Hash) -> Result<Option<std::time::SystemTime>, ChunkStoreError> {
        match fs::metadata(self.path(hash)) {
            Ok(meta) => Ok(meta.modified().ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn all(&self) -> Result<Vec<Hash>, ChunkStoreError> {
        let mut out = Vec::new();
        for dir in fs::read_dir(&self.root)? {
            let dir = dir?;
            if dir.file_name().len() != 2 || !dir.file_type()?.is_dir() {
                continue;
            }
            for f in fs::read_dir(dir.path())? {
                if let Some(h) = parse_hex(&f?.file_name().to_string_lossy()) {
                    out.push(h);
                }
            }
        }
        Ok(out)
    }
}

/// Held chunks by address, with their verifiers.
type MemChunks = std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<Hash, (Verifier, Vec<u8>)>>>;

/// Chunks in memory, behind the same trait and the same checks as on disk:
/// what the deterministic simulator keeps chunks in. A chunk is known once its
/// writer commits.
#[derive(Default)]
pub struct MemStore {
    chunks: MemChunks,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// Every held chunk with its bytes as they are (for checks that must not
    /// trust the store's own verification).
    pub fn raw(&self) -> Vec<(Hash, Vec<u8>)> {
        self.chunks.lock().map(|c| c.iter().map(|(h, (_, d))| (*h, d.clone())).collect()).unwrap_or_default()
    }
}

/// A chunk arriving into memory.
struct MemWriter {
    chunks: MemChunks,
    verifier: Verifier,
    data: Vec<u8>,
    next: usize,
}

impl ChunkWriter for MemWriter {
    fn groups(&mut self, bytes: &[u8]) -> Result<(), ChunkStoreError> {
        self.next += check_run(&self.verifier, self.next, bytes)?;
        self.data.extend_from_slice(bytes);
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<(), ChunkStoreError> {
        if self.next != self.verifier.groups() {
            return Err(ChunkStoreError::Incomplete(hex(&self.verifier.hash())));
        }
        let mut chunks = self.chunks.lock().map_err(|_| ChunkStoreError::Incomplete("poisoned".into()))?;
        chunks.insert(self.verifier.hash(), (self.verifier, self.data));
        Ok(())
    }
}

/// A held chunk read back from memory.
struct MemReader {
    verifier: Verifier,
    data: Vec<u8>,
    next: usize,
}

impl ChunkReader for MemReader {
    fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    fn next_groups(&mut self, max: usize, out: &mut Vec<u8>) -> Result<usize, ChunkStoreError> {
        let (first, last) = run(&self.verifier, self.next, max);
        let (from, to) = (first * GROUP_BYTES, (last * GROUP_BYTES).min(self.data.len()));
        let bytes = self.data.get(from..to).unwrap_or_default();
        // Every group asked for, whole: a copy cut short at a group's end is no
        // less damaged than one cut inside a group.
        if last > first && check_run(&self.verifier, first, bytes)? != last - first {
            let mismatch = Mismatch::Group { group: first };
            return Err(ChunkStoreError::Mismatch { hash: hex(&self.verifier.hash()), mismatch });
        }
        out.extend_from_slice(bytes);
        self.next = last;
        Ok(last - first)
    }
}

impl ChunkStore for MemStore {
    fn has(&self, hash: &Hash) -> Result<bool, ChunkStoreError> {
        Ok(self.chunks.lock().is_ok_and(|c| c.contains_key(hash)))
    }

    fn writer(&self, verifier: Verifier) -> Result<Box<dyn ChunkWriter>, ChunkStoreError> {
        Ok(Box::new(MemWriter { chunks: self.chunks.clone(), verifier, data: Vec::new(), next: 0 }))
    }

    fn reader(&self, hash: &Hash) -> Result<Option<Box<dyn ChunkReader>>, ChunkStoreError> {
        let held = self.chunks.lock().ok().and_then(|c| c.get(hash).cloned());
        Ok(held
            .map(|(verifier, data)| Box::new(MemReader { verifier, data, next: 0 }) as Box<dyn ChunkReader>))
    }

    fn remove(&self, hash: &Hash) -> Result<(), ChunkStoreError> {
        if let Ok(mut c) = self.chunks.lock() {
            c.remove(hash);
        }
        Ok(())
    }

    fn all(&self) -> Result<Vec<Hash>, ChunkStoreError> {
        Ok(self.chunks.lock().map(|c| c.keys().copied().collect()).unwrap_or_default())
    }

    fn stored_at(&self, _: &Hash) -> Result<Option<std::time::SystemTime>, ChunkStoreError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(len: usize, seed: u8) -> (Hash, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
        (*blake3::hash(&data).as_bytes(), data)
    }

    fn read_all(store: &DiskStore, hash: &Hash) -> Result<Vec<u8>, ChunkStoreError> {
        let mut r = store.reader(hash)?.expect("held");
        let mut out = Vec::new();
        r.next_groups(usize::MAX, &mut out)?;
        Ok(out)
    }

    #[test]
    fn chunks_are_known_only_once_whole_and_read_back_verified() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let (h, data) = chunk(5 * GROUP_BYTES + 3, 1);
        store.put(&h, &data).unwrap();
        assert!(store.has(&h).unwrap());
        assert_eq!(read_all(&store, &h).unwrap(), data);
        assert_eq!(store.all().unwrap(), vec![h]);

        // Arriving group by group: not known before the commit, nothing left if dropped.
        let (h2, data2) = chunk(3 * GROUP_BYTES, 2);
        let v = Verifier::new(h2, data2.len() as u64, outboard(&data2)).unwrap();
        let mut w = store.writer(v).unwrap();
        w.groups(&data2[..GROUP_BYTES]).unwrap();
        assert!(!store.has(&h2).unwrap());
        drop(w);
        assert!(fs::read_dir(dir.path().join("tmp")).unwrap().next().is_none());
        // A bad group is refused and the chunk never appears.
        let v = Verifier::new(h2, data2.len() as u64, outboard(&data2)).unwrap();
        let mut w = store.writer(v).unwrap();
        let mut bad = data2[GROUP_BYTES..2 * GROUP_BYTES].to_vec();
        w.groups(&data2[..GROUP_BYTES]).unwrap();
        bad[7] ^= 0x40;
        assert!(matches!(w.groups(&bad), Err(ChunkStoreError::Mismatch { .. })));
        assert!(matches!(w.commit(), Err(ChunkStoreError::Incomplete(_))));
        assert!(!store.has(&h2).unwrap());
        // The wrong bytes for an address are refused whole.
        assert!(store.put(&h2, &data).is_err());
    }

    #[test]
    fn a_chunk_rotten_on_disk_is_detected_on_read_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let (h, data) = chunk(4 * GROUP_BYTES, 3);
        store.put(&h, &data).unwrap();
        let path = store.path(&h);
        let mut bytes = fs::read(&path).unwrap();
        let at = bytes.len() - GROUP_BYTES - 5;
        bytes[at] ^= 1;
        fs::write(&path, bytes).unwrap();
        assert!(matches!(read_all(&store, &h), Err(ChunkStoreError::Mismatch { .. })));
        assert!(!store.has(&h).unwrap());
        // A file cut short (a disk that lost its tail) is damage too.
        store.put(&h, &data).unwrap();
        let path = store.path(&h);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(len - 100).unwrap();
        assert!(matches!(read_all(&store, &h), Err(ChunkStoreError::Mismatch { .. })));
        assert!(!store.has(&h).unwrap());
        store.put(&h, &data).unwrap();
        OpenOptions::new().write(true).open(&path).unwrap().set_len(10).unwrap();
        assert!(matches!(store.reader(&h), Err(ChunkStoreError::Mismatch { .. })));
        assert!(!store.has(&h).unwrap());
        // A crash's leftovers are swept at the next open.
        fs::write(dir.path().join("tmp").join("junk.1"), b"half").unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        assert!(store.all().unwrap().is_empty());
        assert!(fs::read_dir(dir.path().join("tmp")).unwrap().next().is_none());
    }
}
