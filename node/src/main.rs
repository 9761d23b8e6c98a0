//! `cascade`: one binary for every tier of the federation.

use anyhow::{bail, Context};
use cascade_certs::{
    node_identity, read_chain_pem, read_key_pem, write_private, Authority, NodeCredentials, NodeIdentity,
};
use cascade_launcher::topology::Topology;
use cascade_launcher::LaunchOptions;
use cascade_protocol::{NodeId, Tier};
use cascade_runtime::{Node, NodeConfig};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

mod dataset;
mod up;

/// mimalloc: the node allocates and frees many small objects across threads (frames,
/// deltas, sled pages), where it is markedly faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Cascade: a government data-sharing federation node (national, provincial, municipal).
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Log format on stderr: `text` (coloured only on a terminal) or `json`
    /// (one object per line, with the span fields, for log collectors). The
    /// level comes from `RUST_LOG` (default `info,quinn=warn,sled=warn`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The value of `--log-format` that asks for this format (for child processes).
    fn as_arg(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Installs the log subscriber: `RUST_LOG` filters, stderr receives.
fn init_logs(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,quinn=warn,sled=warn"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            // Colour only on a terminal, and never when NO_COLOR asks for none.
            let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
            logs.with_ansi(std::io::stderr().is_terminal() && !no_color).init()
        }
        // Every enclosing span with its fields (the current one is the last).
        LogFormat::Json => logs.json().with_current_span(false).with_span_list(true).init(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run one node from its TOML configuration (what operators deploy).
    Run {
        /// The node configuration file (see README, "Operator's guide").
        #[arg(long)]
        config: PathBuf,
    },
    /// Boot every node of a topology in this process on 127.0.0.1, with certificates
    /// generated on the spot and one sled folder per node. Writes DIR/federation.json.
    /// Restarting on the same --data reuses the state. Ctrl-C stops cleanly.
    Up {
        /// A topology file, e.g. topologies/three-tier.toml.
        topology: PathBuf,
        /// The data folder (created if missing).
        #[arg(long, default_value = "data")]
        data: PathBuf,
        /// First admin HTTP port: node i listens on BASE+i. 0 picks free ports.
        #[arg(long, default_value_t = 8100)]
        admin_port_base: u16,
        /// Run each node as a `cascade run` process of its own (configuration
        /// `DATA/ID.toml`, log `DATA/ID.log`, pid in federation.json), so that a
        /// node can be killed (`kill -9`) and restarted (`cascade run --config
        /// DATA/ID.toml`) on its own, as on separate machines.
        #[arg(long)]
        processes: bool,
    },
    /// Dataset versions: publish a file, fetch a version (see README, "Datasets").
    Dataset {
        #[command(subcommand)]
        command: dataset::DatasetCommand,
    },
    /// Manage the federation PKI.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Topology files.
    Topology {
        #[command(subcommand)]
        command: TopologyCommand,
    },
    /// Simulate a federation under a scenario of publishes and faults, check the
    /// invariants and report. Exits non-zero (printing the replay command) when an
    /// invariant is violated.
    Sim {
        /// A topology file, e.g. topologies/china.toml.
        topology: PathBuf,
        /// A scenario file, e.g. simulation/scenarios/steady.toml.
        #[arg(long)]
        scenario: PathBuf,
        /// The seed (deterministic mode replays exactly from it).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// deterministic: every node's core on a simulated network and clock; real: every
        /// node over QUIC on 127.0.0.1 with sled folders.
        #[arg(long, value_enum, default_value_t = SimMode::Deterministic)]
        mode: SimMode,
        /// Write the JSON report here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Real mode: run each node that a `crash` step names as a process of its
        /// own (`cascade run`, this binary), so its crash is a SIGKILL that loses
        /// whatever it had not made durable; the other nodes run in this process.
        #[arg(long)]
        kill_processes: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum SimMode {
    Deterministic,
    Real,
}

#[derive(Subcommand)]
enum TopologyCommand {
    /// Generate a topology from the GB/T 2260 division table.
    Generate {
        /// A division table (code,name,tier,parent) to use instead of the built-in one.
        #[arg(long)]
        divisions: Option<PathBuf>,
        /// Keep only these provinces and their cities (comma-separated codes).
        #[arg(long, value_delimiter = ',')]
        provinces: Vec<NodeId>,
        /// Keep only these nodes (comma-separated codes).
        #[arg(long, value_delimiter = ',')]
        only: Vec<NodeId>,
        /// The topology's name.
        #[arg(long)]
        name: String,
        /// One line saying what it models.
        #[arg(long, default_value = "")]
        description: String,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a federation root (held by the national operators): DIR/root.pem, DIR/root.key.
    InitRoot {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// The root's common name.
        #[arg(long, default_value = "Cascade federation root")]
        name: String,
    },
    /// Issue a node certificate (OUT/node.pem, OUT/node.key) or, with --ca, a
    /// provincial issuing CA (OUT/ca.pem, OUT/ca.key). The root issues national and
    /// provincial nodes and provincial CAs; a provincial CA issues its cities.
    Issue {
        /// The issuer's certificate: root.pem or a provincial ca.pem.
        #[arg(long)]
        issuer_cert: PathBuf,
        /// The issuer's private key.
        #[arg(long)]
        issuer_key: PathBuf,
        /// Node id: 6-digit division code.
        #[arg(long)]
        id: NodeId,
        /// national, provincial or municipal.
        #[arg(long)]
        tier: Tier,
        /// The parent's division code (absent for the national node).
        #[arg(long)]
        parent: Option<NodeId>,
        /// Human name, e.g. 济南市.
        #[arg(long)]
        name: String,
        /// Issue the provincial issuing CA instead of the node certificate.
        #[arg(long)]
        ca: bool,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Issue an HTTPS certificate for a node's admin interface (OUT/https.pem,
    /// OUT/https.key): an ECDSA P-256 key for the given host names or addresses,
    /// signed by the root or a provincial CA; it can serve HTTPS but never join
    /// the federation. Point `[admin_tls]` at the two files. (Browsers do not
    /// check the federation's Ed25519 signatures: for people's browsers, use a
    /// certificate from a CA they trust; this one suits scripts and curl
    /// `--cacert root.pem`.)
    Https {
        /// The issuer's certificate: root.pem or a provincial ca.pem.
        #[arg(long)]
        issuer_cert: PathBuf,
        /// The issuer's private key.
        #[arg(long)]
        issuer_key: PathBuf,
        /// A host name or IP address the node is reached at (repeat for more).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the identity a certificate names.
    Show {
        /// A PEM certificate file (the first certificate is shown).
        file: PathBuf,
    },
}

/// Files this process creates are its user's alone (the data folder holds secrets),
/// and it may hold as many open files as the system allows it (every node's admin
/// server keeps up to `cascade_admin::MAX_CONNECTIONS` connections).
fn process_limits() {
    use rustix::process::{getrlimit, setrlimit, umask, Resource};
    umask(rustix::fs::Mode::from_raw_mode(0o077));
    let mut files = getrlimit(Resource::Nofile);
    if files.current < files.maximum {
        files.current = files.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, files) {
            tracing::warn!(error = %e, "could not raise the open-file limit");
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    cascade_runtime::memory::no_huge_pages();
    process_limits();
    match cli.command {
        Command::Certs { command } => certs(command),
        Command::Topology { command } => topology(command),
        command => tokio::runtime::Runtime::new()?.block_on(async_main(command, cli.log_format)),
    }
}

async fn async_main(command: Command, log_format: LogFormat) -> anyhow::Result<()> {
    match command {
        Command::Run { config } => run(&config).await,
        Command::Up { topology, data, admin_port_base, processes } => {
            let topology = Topology::load(&topology).map_err(anyhow::Error::msg)?;
            let options =
                LaunchOptions { data, admin_port_base: (admin_port_base != 0).then_some(admin_port_base) };
            if processes {
                up::processes(topology, options, log_format.as_arg()).await
            } else {
                up::in_process(topology, options).await
            }
        }
        Command::Sim { topology, scenario, seed, mode, report, kill_processes } => {
            sim(&topology, &scenario, seed, mode, report.as_deref(), kill_processes).await
        }
        Command::Dataset { command } => dataset::dataset(command).await,
        Command::Certs { .. } | Command::Topology { .. } => unreachable!("handled synchronously"),
    }
}

async fn run(path: &Path) -> anyhow::Result<()> {
    let mut stop = StopSignals::watch()?;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config = NodeConfig::from_toml(&text).map_err(anyhow::Error::msg).context("invalid config")?;
    let admin = config.admin_listen;
    // The certificate is read before the node starts: a bad one stops nothing half-way.
    let tls = match &config.admin_tls {
        Some(tls) => {
            // Its mode first: a key others may read is refused unread.
            cascade_runtime::check_secret(&config.resolve(&tls.key))?;
            let loaded =
                cascade_admin::tls::server_config(&config.resolve(&tls.cert), &config.resolve(&tls.key));
            Some(loaded.context("admin_tls")?)
        }
        None => None,
    };
    if tls.is_none() && !admin.ip().is_loopback() {
        tracing::warn!(
            %admin,
            "the admin interface serves plain HTTP beyond loopback (admin_plain_http = true): bearer tokens \
             and passwords cross that network in clear unless a TLS proxy stands in front"
        );
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    // A stop during a long start (a big store verified again) ends it there.
    let node = tokio::select! {
        node = Node::start(config) => node?,
        _ = stop.stopped() => return Ok(()),
    };
    let listener = tokio::net::TcpListener::bind(admin).await.with_context(|| format!("admin {admin}"))?;
    println!(
        "node {} ({}) quic {} admin {scheme}://{} token file {}",
        node.identity().id,
        node.identity().name,
        node.quic_addr(),
        listener.local_addr()?,
        node.config().data_dir.join(cascade_runtime::TOKEN_FILE).display()
    );
    let watched = node.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<String>();
    tokio::spawn(async move {
        let reason = tokio::select! {
            _ = stop.stopped() => String::new(),
            reason = watched.failed() => reason,
        };
        let _ = stop_tx.send(reason);
    });
    let (failure_tx, failure_rx) = tokio::sync::oneshot::channel::<String>();
    cascade_admin::serve(node.clone(), listener, tls, async move {
        let reason = stop_rx.await.unwrap_or_default();
        let _ = failure_tx.send(reason);
    })
    .await?;
    let failure = failure_rx.await.unwrap_or_default();
    node.shutdown().await;
    if !failure.is_empty() {
        bail!("node failed: {failure}");
    }
    Ok(())
}

/// The operator's stop: Ctrl-C (SIGINT) or SIGTERM, which service managers
/// such as systemd send; either stops the node cleanly (its last commit, its
/// connections closed). Watched from before the node starts: a stop during a
/// long start-up abandons the start (the store is crash-safe) instead of being
/// either the signal's default action or held until the start is done.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Starts watching both signals.
    fn watch() -> anyhow::Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt()).context("watching SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("watching SIGTERM")?,
        })
    }

    /// Waits for either.
    async fn stopped(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

fn topology(command: TopologyCommand) -> anyhow::Result<()> {
    let TopologyCommand::Generate { divisions, provinces, only, name, description, out } = command;
    let table = match &divisions {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
        None => cascade_protocol::division::TABLE_CSV.to_string(),
    };
    let selection = cascade_launcher::topology::Selection { provinces, only };
    let topology = cascade_launcher::topology::from_divisions(&table, &name, &description, &selection)
        .map_err(anyhow::Error::msg)?;
    std::fs::write(&out, topology.to_toml())?;
    println!("{}: {} nodes", out.display(), topology.nodes.len());
    Ok(())
}

async fn sim(
    topology_path: &Path,
    scenario_path: &Path,
    seed: u64,
    mode: SimMode,
    report_path: Option<&Path>,
    kill_processes: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !kill_processes || mode == SimMode::Real,
        "--kill-processes is for real mode: deterministic mode has no processes"
    );
    let topology = Topology::load(topology_path).map_err(anyhow::Error::msg)?;
    let scenario = cascade_simulation::Scenario::load(scenario_path).map_err(anyhow::Error::msg)?;
    let report = match mode {
        SimMode::Deterministic => {
            let options =
                cascade_simulation::deterministic::Options { seed, progress: true, ..Default::default() };
            let sim = cascade_simulation::deterministic::Simulator::new(&topology, &scenario, &options)?;
            sim.run(&topology, &scenario, seed)?
        }
        SimMode::Real => {
            let processes = if kill_processes { Some(std::env::current_exe()?) } else { None };
            let options = cascade_simulation::real::Options { progress: true, processes };
            cascade_simulation::real::run(&topology, &scenario, seed, &options).await?
        }
    };
    print!("{report}");
    if let Some(path) = report_path {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
        println!("report: {}", path.display());
    }
    if !report.invariants.ok() {
        let mode = match mode {
            SimMode::Deterministic => "deterministic",
            SimMode::Real => "real",
        };
        bail!(
            "invariants violated; replay with: cascade sim {} --scenario {} --seed {seed} --mode {mode}",
            topology_path.display(),
            scenario_path.display()
        );
    }
    Ok(())
}

/// An issuing authority from its files: the root, or a provincial CA.
fn load_issuer(cert: &Path, key: &Path) -> anyhow::Result<Authority> {
    let chain = read_chain_pem(cert)?;
    let first = chain.first().context("issuer file holds no certificate")?;
    Ok(if NodeIdentity::from_der(first).is_ok() {
        NodeCredentials { chain, key_pkcs8: read_key_pem(key)? }.into_authority()?
    } else {
        Authority::load_root(&std::fs::read_to_string(cert)?, &std::fs::read_to_string(key)?)?
    })
}

fn certs(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::InitRoot { out, name } => {
            std::fs::create_dir_all(&out)?;
            let (cert, key) = (out.join("root.pem"), out.join("root.key"));
            if cert.exists() || key.exists() {
                bail!("{} already holds a root; refusing to overwrite", out.display());
            }
            let root = Authority::new_root(&name)?;
            std::fs::write(&cert, root.cert_pem())?;
            write_private(&key, root.key_pem().as_bytes())?;
            println!("root: {} (key {}, mode 0600)", cert.display(), key.display());
        }
        CertsCommand::Issue { issuer_cert, issuer_key, id, tier, parent, name, ca, out } => {
            let issuer = load_issuer(&issuer_cert, &issuer_key)?;
            let identity = node_identity(id, tier, parent, &name)?;
            let (creds, stem) = if ca {
                (issuer.issue_provincial_ca(&identity)?, "ca")
            } else {
                (issuer.issue(&identity)?, "node")
            };
            std::fs::create_dir_all(&out)?;
            let pem = out.join(format!("{stem}.pem"));
            let key = out.join(format!("{stem}.key"));
            std::fs::write(&pem, creds.chain_pem())?;
            write_private(&key, creds.key_pem().as_bytes())?;
            println!("issued {id} ({}): {} (key {}, mode 0600)", tier.as_str(), pem.display(), key.display());
        }
        CertsCommand::Https { issuer_cert, issuer_key, hosts, out } => {
            let creds = load_issuer(&issuer_cert, &issuer_key)?.issue_https(&hosts)?;
            std::fs::create_dir_all(&out)?;
            let (pem, key) = (out.join("https.pem"), out.join("https.key"));
            std::fs::write(&pem, creds.chain_pem())?;
            write_private(&key, creds.key_pem().as_bytes())?;
            println!(
                "issued HTTPS for {}: {} (key {}, mode 0600)",
                hosts.join(", "),
                pem.display(),
                key.display()
            );
        }
        CertsCommand::Show { file } => {
            let chain = read_chain_pem(&file)?;
            let first = chain.first().context("no certificate")?;
            let identity = NodeIdentity::from_der(first).map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string_pretty(&identity)?);
        }
    }
    Ok(())
}
