//! The data folder is the node's alone: made 0700, and what the node keeps in it
//! (its store, its admin token, its default certificate folder) 0700 (folders) or
//! 0600 (files), since it holds password and token hashes, the audit log and
//! province-scoped data. Anything else an operator put in the folder is left as it
//! is. A secret file another user could read (the
//! admin token, the node's private key) stops the start: a key that may have
//! leaked must be replaced, not silently re-protected.

use crate::node::{NodeError, STORE_DIR, TOKEN_FILE};
use std::path::Path;

/// What the node keeps in its data folder (`certs` is the default certificate
/// folder; certificate paths elsewhere are the operator's to protect).
const OWN_ENTRIES: [&str; 3] = [STORE_DIR, TOKEN_FILE, "certs"];

/// How deep the permission walk goes (sled's folder holds files one level down).
const MAX_DEPTH: usize = 4;

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), NodeError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| NodeError::Io(format!("{}: {e}", path.display())))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> Result<(), NodeError> {
    Ok(())
}

/// Makes the data folder `dir` (created if missing) and the node's own entries
/// in it private to this user.
pub(crate) fn make_private(dir: &Path) -> Result<(), NodeError> {
    std::fs::create_dir_all(dir).map_err(|e| NodeError::Io(format!("{}: {e}", dir.display())))?;
    set_mode(dir, 0o700)?;
    for name in OWN_ENTRIES {
        let path = dir.join(name);
        // Not followed through a symbolic link: what it points at is not ours.
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => walk(&path, 1)?,
            Ok(meta) if meta.is_file() => set_mode(&path, 0o600)?,
            _ => {}
        }
    }
    Ok(())
}

fn walk(dir: &Path, depth: usize) -> Result<(), NodeError> {
    set_mode(dir, 0o700)?;
    if depth == MAX_DEPTH {
        return Ok(());
    }
    let io = |e: std::io::Error| NodeError::Io(format!("{}: {e}", dir.display()));
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        // Symbolic links are left alone: what they point at is not ours to change.
        let kind = entry.file_type().map_err(io)?;
        if kind.is_dir() {
            walk(&entry.path(), depth + 1)?;
        } else if kind.is_file() {
            set_mode(&entry.path(), 0o600)?;
        }
    }
    Ok(())
}

/// Refuses a secret file that users other than its owner may read or write.
#[cfg(unix)]
pub fn check_secret(path: &Path) -> Result<(), NodeError> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else { return Ok(()) };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(NodeError::Insecure(format!(
            "{} is readable or writable by other users (mode {mode:03o}); it may have leaked: replace it (or, \
             if you are sure it did not, `chmod 600` it) and start again",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn check_secret(_: &Path) -> Result<(), NodeError> {
    Ok(())
}
