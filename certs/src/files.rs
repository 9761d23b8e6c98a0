//! Reading and writing PEM files; private keys are written 0600.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

/// Errors reading or writing credential files.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not the PEM expected.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

fn io(path: &Path, source: std::io::Error) -> FileError {
    FileError::Io { path: path.display().to_string(), source }
}

/// Writes a secret file readable by its owner only (mode 0600), replacing any old one.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), FileError> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| io(path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(|e| io(path, e))?;
    }
    file.write_all(contents).map_err(|e| io(path, e))?;
    file.sync_all().map_err(|e| io(path, e))
}

/// Reads every CERTIFICATE block of a PEM file (DER, in file order).
pub fn read_chain_pem(path: &Path) -> Result<Vec<Vec<u8>>, FileError> {
    let text = std::fs::read(path).map_err(|e| io(path, e))?;
    let blocks = pem::parse_many(&text)
        .map_err(|e| FileError::Pem { path: path.display().to_string(), reason: e.to_string() })?;
    let chain: Vec<Vec<u8>> =
        blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE").map(|b| b.into_contents()).collect();
    if chain.is_empty() {
        return Err(FileError::Pem {
            path: path.display().to_string(),
            reason: "no certificate in file".into(),
        });
    }
    Ok(chain)
}

/// Reads the PKCS#8 PRIVATE KEY block of a PEM file.
pub fn read_key_pem(path: &Path) -> Result<Vec<u8>, FileError> {
    let text = std::fs::read(path).map_err(|e| io(path, e))?;
    let block = pem::parse(&text)
        .map_err(|e| FileError::Pem { path: path.display().to_string(), reason: e.to_string() })?;
    if block.tag() != "PRIVATE KEY" {
        return Err(FileError::Pem {
            path: path.display().to_string(),
            reason: format!("expected a PRIVATE KEY block, found {}", block.tag()),
        });
    }
    Ok(block.into_contents())
}
