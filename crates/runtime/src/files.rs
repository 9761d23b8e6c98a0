//! The data folder is the node's alone: created 0700, everything under it 0700
//! (folders) or 0600 (files), since it holds password and token hashes, the audit
//! log and province-scoped data. A secret file another user could read (the
//! admin token, the node's private key) stops the start: a key that may have
//! leaked must be replaced, not silently re-protected.

use crate::node::NodeError;
use std::path::Path;

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

/// Makes `dir` (created if missing) and everything under it private to this user.
pub(crate) fn make_private(dir: &Path) -> Result<(), NodeError> {
    std::fs::create_dir_all(dir).map_err(|e| NodeError::Io(format!("{}: {e}", dir.display())))?;
    walk(dir, 0)
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
pub(crate) fn check_secret(path: &Path) -> Result<(), NodeError> {
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
pub(crate) fn check_secret(_: &Path) -> Result<(), NodeError> {
    Ok(())
}
