//! Independent clients written in Python (pyshacl, ckanapi, ...), installed from
//! PyPI into a virtual environment under cargo's target folder the first time a
//! test needs them, and again whenever `conformance/requirements.txt` changes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The pinned packages.
const REQUIREMENTS: &str = include_str!("../conformance/requirements.txt");

/// The virtual environment's `python`, installing it first if needed. Blocking
/// (pip may take a minute on a fresh machine); test processes that need it at
/// once take turns on a lock file.
pub fn python_env(target_tmp: &Path) -> PathBuf {
    let dir = target_tmp.join("conformance-venv");
    std::fs::create_dir_all(target_tmp).expect("target tmp folder");
    let lock = File::create(target_tmp.join("conformance-venv.lock")).expect("lock file");
    lock.lock().expect("lock the virtual environment");
    let python = dir.join("bin").join("python");
    let stamp = dir.join("installed-requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(REQUIREMENTS) && python.exists() {
        return python;
    }
    run(Command::new("python3").args(["-m", "venv", "--clear"]).arg(&dir), "python3 -m venv");
    let requirements = dir.join("requirements.txt");
    std::fs::write(&requirements, REQUIREMENTS).expect("write requirements");
    run(
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements),
        "pip install (needs PyPI)",
    );
    std::fs::write(&stamp, REQUIREMENTS).expect("stamp");
    python
}

fn run(command: &mut Command, what: &str) {
    let status = command.status().unwrap_or_else(|e| panic!("{what}: {e} (is python3 installed?)"));
    assert!(status.success(), "{what} failed: {status}");
}

/// The conformance scripts' folder.
pub fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance")
}
