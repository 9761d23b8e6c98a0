//! Nodes as OS processes of their own: `cascade run` started from a written
//! configuration, on a QUIC port fixed beforehand (where its children, and its
//! own restarts, find it). A crash of such a node is a real one: `kill -9`
//! loses whatever the process had not made durable.

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// QUIC ports process nodes are given: below Linux's ephemeral range (32768 and
/// up), so that no socket bound to port 0 (another node, another test) takes
/// one while its node is down between a kill and its restart.
const PROCESS_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// Ports of `PROCESS_PORTS` tried before giving up.
const PORT_TRIES: usize = 100;

/// A UDP address of `PROCESS_PORTS` on 127.0.0.1 free now, drawn at random
/// (two federations started at once must not draw the same sequence).
pub fn free_quic_addr() -> Result<SocketAddr, String> {
    let span = u64::from(PROCESS_PORTS.end - PROCESS_PORTS.start);
    for _ in 0..PORT_TRIES {
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let port = PROCESS_PORTS.start + u16::try_from(random % span).unwrap_or(0);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if std::net::UdpSocket::bind(addr).is_ok() {
            return Ok(addr);
        }
    }
    Err(format!("no free UDP port among {PORT_TRIES} tried in {PROCESS_PORTS:?}"))
}

/// Writes `config` beside its data folder (`…/ID.toml` for `…/ID`), where
/// `cascade run --config` and a restart by hand find it; answers the file.
pub fn write_config(config: &cascade_runtime::NodeConfig) -> Result<std::path::PathBuf, String> {
    let file = config.data_dir.with_extension("toml");
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let text = toml::to_string(config).map_err(|e| e.to_string())?;
    std::fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(file)
}

/// Where and how a node process logs.
#[derive(Clone, Copy, Debug)]
pub struct NodeLog<'a> {
    /// The file its log (stderr) is appended to.
    pub file: &'a Path,
    /// Its `RUST_LOG`, when given (else inherited).
    pub filter: Option<&'a str>,
    /// Its `--log-format`: `text` or `json`.
    pub format: &'a str,
}

/// Starts `bin run --config config` (the `cascade` binary) logging as `log`
/// says, and waits up to `within` for the line it prints once serving; answers
/// the process (killed if dropped) and its admin URL.
pub async fn spawn_node(
    bin: &Path,
    config: &Path,
    log: NodeLog<'_>,
    within: Duration,
) -> Result<(Child, String), String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log.file)
        .map_err(|e| format!("{}: {e}", log.file.display()))?;
    let mut command = Command::new(bin);
    if let Some(filter) = log.filter {
        command.env("RUST_LOG", filter);
    }
    let mut child = command
        .args(["--log-format", log.format, "run", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    // `node … quic … admin http(s)://… token file …`
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    match tokio::time::timeout(within, stdout.read_line(&mut line)).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return Err(format!("{} did not start within {within:?}", config.display())),
    }
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        .ok_or_else(|| format!("{} did not say where it serves: {line:?}", config.display()))?;
    Ok((child, url.to_string()))
}

/// Stops `child` as its operator would: SIGTERM, then SIGKILL after `within`;
/// answers how it ended (it has exited either way).
pub async fn stop(child: &mut Child, within: Duration) -> Result<std::process::ExitStatus, String> {
    if let Some(pid) = child.id().and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    match tokio::time::timeout(within, child.wait()).await {
        Ok(status) => status.map_err(|e| e.to_string()),
        Err(_) => {
            let _ = child.kill().await;
            Err(format!("did not stop within {within:?}; killed"))
        }
    }
}
