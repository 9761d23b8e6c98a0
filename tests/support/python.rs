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

/// Debian's chromium, which the browser tests drive.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Debian's packages the browser tests need: the browser, and fonts for the
/// console's Chinese (screenshots otherwise show boxes).
const BROWSER_PACKAGES: [&str; 2] = ["chromium", "fonts-noto-cjk"];

/// Makes sure Debian's chromium and the CJK fonts are installed, installing
/// them with apt (as root, or through `sudo -n`) the first time; blocking, and
/// test processes take turns on a lock file. Panics, naming what to do, when
/// they cannot be installed: the browser tests fail rather than skip.
pub fn browser(target_tmp: &Path) -> PathBuf {
    std::fs::create_dir_all(target_tmp).expect("target tmp folder");
    let lock = File::create(target_tmp.join("browser.lock")).expect("lock file");
    lock.lock().expect("lock the browser install");
    let missing: Vec<&str> = BROWSER_PACKAGES
        .into_iter()
        .filter(|p| {
            let status = Command::new("dpkg-query").args(["-W", "-f=${Status}", p]).output();
            !status.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if !missing.is_empty() {
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
        let apt = |args: &[&str]| {
            let mut command = if root { Command::new("apt-get") } else { Command::new("sudo") };
            if !root {
                command.args(["-n", "apt-get"]);
            }
            command.args(args).env("DEBIAN_FRONTEND", "noninteractive").status().is_ok_and(|s| s.success())
        };
        let install = [&["install", "-y", "--no-install-recommends"][..], &missing].concat();
        let installed = apt(&install) || (apt(&["update"]) && apt(&install));
        assert!(installed, "could not install {missing:?} with apt-get (root or passwordless sudo needed)");
    }
    assert!(Path::new(CHROMIUM).exists(), "{CHROMIUM} missing after installing chromium");
    PathBuf::from(CHROMIUM)
}
