//! `cascade dataset`: publish a file as a dataset version at its entry's origin,
//! and fetch a version to a consumer's node, with progress (redrawn on a
//! terminal, a plain line every few seconds otherwise).

use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// How often progress is drawn on a terminal, and printed otherwise.
const REDRAW: Duration = Duration::from_millis(200);
const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// Bytes read from the file per piece sent.
const PIECE: usize = 256 * 1024;

#[derive(Subcommand)]
pub(crate) enum DatasetCommand {
    /// Publish FILE as the next version of one of the node's entries (run
    /// against the entry's origin node, as one of its provider's catalogers).
    Push {
        /// The file.
        file: PathBuf,
        /// The node's admin URL, e.g. http://127.0.0.1:8103.
        #[arg(long)]
        node: String,
        /// The entry's resource code, e.g. 3/000001.
        #[arg(long)]
        code: String,
        /// Its media type (default: text/csv for .csv files, else application/octet-stream).
        #[arg(long)]
        media_type: Option<String>,
        /// A bearer token (default: the CASCADE_TOKEN environment variable).
        #[arg(long, env = "CASCADE_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// Fetch a version to this node (run against the consumer's own node, as an
    /// account of an organization holding a grant for the entry); waits for the
    /// fetch to end, showing its progress.
    Fetch {
        /// The consumer's node's admin URL.
        #[arg(long)]
        node: String,
        /// The entry's origin node, e.g. 440100.
        #[arg(long)]
        origin: u32,
        /// The entry's resource code.
        #[arg(long)]
        code: String,
        /// The version.
        #[arg(long)]
        version: u64,
        /// Save the content here once fetched.
        #[arg(long)]
        out: Option<PathBuf>,
        /// A bearer token (default: the CASCADE_TOKEN environment variable).
        #[arg(long, env = "CASCADE_TOKEN", hide_env_values = true)]
        token: String,
    },
}

/// Progress of one transfer, drawn as told by the output.
struct Progress {
    what: &'static str,
    total: u64,
    started: Instant,
    drawn: Instant,
    terminal: bool,
}

impl Progress {
    fn new(what: &'static str, total: u64) -> Progress {
        let now = Instant::now();
        Progress { what, total, started: now, drawn: now, terminal: std::io::stderr().is_terminal() }
    }

    fn show(&mut self, done: u64, force: bool) {
        let every = if self.terminal { REDRAW } else { PLAIN_EVERY };
        if !force && self.drawn.elapsed() < every {
            return;
        }
        self.drawn = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / secs;
        let pct = if self.total == 0 { 100.0 } else { done as f64 * 100.0 / self.total as f64 };
        let eta = match rate > 0.0 {
            true => format!("{:.0}s", self.total.saturating_sub(done) as f64 / rate),
            false => "?".into(),
        };
        let line = format!(
            "{} {:>5.1}% {} / {} MiB, {:.1} MiB/s, {} left",
            self.what,
            pct,
            done >> 20,
            self.total >> 20,
            rate / 1048576.0,
            eta
        );
        let mut err = std::io::stderr();
        if self.terminal {
            let _ = write!(err, "\r\x1b[2K{line}");
            if force {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }
}

fn path_of(code: &str) -> String {
    code.replace('/', "%2F")
}

async fn answer(resp: reqwest::Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{status}: {}", body["error"].as_str().unwrap_or(&body.to_string()));
    }
    Ok(body)
}

pub(crate) async fn dataset(command: DatasetCommand) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    match command {
        DatasetCommand::Push { file, node, code, media_type, token } => {
            let f =
                tokio::fs::File::open(&file).await.with_context(|| format!("opening {}", file.display()))?;
            let total = f.metadata().await?.len();
            let media = media_type.unwrap_or_else(|| {
                let csv = file.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
                if csv { "text/csv" } else { "application/octet-stream" }.to_string()
            });
            let origin = http
                .get(format!("{node}/api/v1/node"))
                .bearer_auth(&token)
                .send()
                .await
                .context("asking the node who it is")?;
            let origin = answer(origin).await?["id"].clone();
            let mut progress = Progress::new("push", total);
            let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let body =
                futures_util::stream::unfold((f, 0u64, sent.clone()), |(mut f, done, cell)| async move {
                    let mut buf = vec![0u8; PIECE];
                    match f.read(&mut buf).await {
                        Ok(0) => None,
                        Ok(n) => {
                            buf.truncate(n);
                            let done = done + n as u64;
                            cell.store(done, std::sync::atomic::Ordering::Relaxed);
                            Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), (f, done, cell)))
                        }
                        Err(e) => Some((Err(e), (f, done, cell))),
                    }
                });
            let request = http
                .put(format!("{node}/api/v1/datasets/{origin}/{}/versions", path_of(&code)))
                .bearer_auth(&token)
                .header("content-type", media)
                .header("content-length", total)
                .body(reqwest::Body::wrap_stream(body))
                .send();
            tokio::pin!(request);
            let resp = loop {
                tokio::select! {
                    resp = &mut request => break resp?,
                    _ = tokio::time::sleep(REDRAW) => progress.show(sent.load(std::sync::atomic::Ordering::Relaxed), false),
                }
            };
            progress.show(total, true);
            let m = answer(resp).await?;
            println!(
                "version {} of {origin}:{code}: {} bytes in {} chunks, content hash {}",
                m["version"],
                m["size"],
                m["chunks"],
                m["content_hash"].as_str().unwrap_or("")
            );
        }
        DatasetCommand::Fetch { node, origin, code, version, out, token } => {
            let version_path =
                format!("{node}/api/v1/datasets/{origin}/{}/versions/{version}", path_of(&code));
            let resp = http.post(format!("{version_path}/fetch")).bearer_auth(&token).send().await?;
            let job = answer(resp).await?;
            let id = job["id"].as_str().context("no job id")?.to_string();
            let mut progress = Progress::new("fetch", job["bytes_total"].as_u64().unwrap_or(0));
            let job = loop {
                let resp = http.get(format!("{node}/api/v1/fetches/{id}")).bearer_auth(&token).send().await?;
                let job = answer(resp).await?;
                progress.total = job["bytes_total"].as_u64().unwrap_or(progress.total);
                if job["state"] != "running" {
                    break job;
                }
                progress.show(job["bytes_done"].as_u64().unwrap_or(0), false);
                tokio::time::sleep(REDRAW).await;
            };
            progress.show(job["bytes_done"].as_u64().unwrap_or(0), true);
            if job["state"] != "done" {
                bail!("fetch {id} failed: {}", job["reason"].as_str().unwrap_or("no reason given"));
            }
            println!("fetch {id} done: {} bytes transferred", job["bytes_transferred"]);
            if let Some(out) = out {
                let mut resp = http.get(format!("{version_path}/content")).bearer_auth(&token).send().await?;
                if !resp.status().is_success() {
                    return answer(resp).await.map(|_| ());
                }
                let mut file = tokio::fs::File::create(&out).await?;
                while let Some(piece) = resp.chunk().await? {
                    tokio::io::AsyncWriteExt::write_all(&mut file, &piece).await?;
                }
                tokio::io::AsyncWriteExt::flush(&mut file).await?;
                println!("saved to {}", out.display());
            }
        }
    }
    Ok(())
}
