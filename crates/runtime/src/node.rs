//! A running node: its tasks (the driver around the core, the accept loop, the
//! parent dialer), supervised as one set under one cancellation token, and the
//! handle callers use — cheap to clone, stoppable from any clone.

use crate::config::NodeConfig;
use crate::driver::{unix_millis, Applied, Driver, Message};
use crate::faults::{Faults, Traffic};
use crate::gateway::Gateway;
use crate::links::LinkContext;
use crate::login::Passwords;
use crate::query::Reads;
use cascade_access::Principal;
use cascade_certs::{read_chain_pem, read_key_pem, FederationVerifier, NodeCredentials, NodeIdentity};
use cascade_core::{BootError, Command, CommandError, Core, Identity, Reply, Status, StoreError};
use cascade_protocol::limits::{APPLIED_CAPACITY, INBOX_CAPACITY};
use cascade_protocol::{Incompatibility, NodeId};
use cascade_store::Store;
use cascade_transport::{unix_now, Endpoint};
use rand::RngCore;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, Instrument};

/// Name of the admin token file in the data folder (mode 0600).
pub const TOKEN_FILE: &str = "admin.token";
/// Name of the sled folder in the data folder.
pub const STORE_DIR: &str = "store";
/// Name of the chunk store's folder in the data folder (private: inside the
/// data folder, which is 0700; not walked at start, it may hold millions of files).
pub const CHUNK_DIR: &str = "chunks";
/// How long shutdown waits for the node's tasks to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Errors starting a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is inconsistent.
    #[error("config: {0}")]
    Config(String),
    /// Certificate files are missing or wrong.
    #[error("certificates: {0}")]
    Certs(String),
    /// The store failed or is damaged.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The core refused the stored state or its identity.
    #[error("{0}")]
    Boot(#[from] BootError),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] cascade_transport::TransportError),
    /// A file could not be read or written.
    #[error("io: {0}")]
    Io(String),
    /// A secret file is exposed to other users.
    #[error("refusing to start: {0}")]
    Insecure(String),
}

/// A running node. Clones share it.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    config: NodeConfig,
    identity: NodeIdentity,
    store: Store,
    status: Arc<RwLock<Status>>,
    inbox: mpsc::Sender<Message>,
    endpoint: Endpoint,
    quic_addr: SocketAddr,
    admin_token: String,
    applied: broadcast::Sender<Applied>,
    tasks: Mutex<JoinSet<()>>,
    cancel: CancellationToken,
    failed: watch::Receiver<Option<String>>,
    faults: Arc<Faults>,
    traffic: Arc<Traffic>,
    passwords: Passwords,
    reads: Reads,
    gateway: Arc<Gateway>,
    datasets: Arc<crate::datasets::Datasets>,
}

impl Node {
    /// Starts a node: opens its store, restores and verifies its state, binds QUIC,
    /// accepts children and keeps dialing its parent.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        config.check().map_err(NodeError::Config)?;
        crate::files::check_secret(&config.data_dir.join(TOKEN_FILE))?;
        crate::files::check_secret(&config.resolve(&config.certs.key))?;
        if let Some(tls) = &config.admin_tls {
            crate::files::check_secret(&config.resolve(&tls.key))?;
        }
        if let Some(previous) = &config.certs.previous_key {
            crate::files::check_secret(&config.resolve(previous))?;
        }
        crate::files::make_private(&config.data_dir)?;
        let certs_err = |e: cascade_certs::FileError| NodeError::Certs(e.to_string());
        let root = read_chain_pem(&config.resolve(&config.certs.root)).map_err(certs_err)?;
        let root = root.into_iter().next().ok_or_else(|| NodeError::Certs("empty root file".into()))?;
        let creds = NodeCredentials {
            chain: read_chain_pem(&config.resolve(&config.certs.chain)).map_err(certs_err)?,
            key_pkcs8: read_key_pem(&config.resolve(&config.certs.key)).map_err(certs_err)?,
        };
        let verifier = FederationVerifier::new(root.clone()).map_err(|e| NodeError::Certs(e.to_string()))?;
        let (identity, _) =
            verifier.verify(&creds.chain, unix_now()).map_err(|e| NodeError::Certs(e.to_string()))?;
        if identity.id != config.id || identity.tier != config.tier || identity.parent != config.parent {
            return Err(NodeError::Config(format!(
                "config says {} {} under {:?}, certificate says {} {} under {:?}",
                config.id,
                config.tier.as_str(),
                config.parent,
                identity.id,
                identity.tier.as_str(),
                identity.parent
            )));
        }
        let admin_token = load_or_create_token(&config.data_dir.join(TOKEN_FILE))?;
        let key = creds.signing_key().map_err(|e| NodeError::Certs(e.to_string()))?;
        let call_key = key.clone();
        let previous_key = match &config.certs.previous_key {
            Some(path) => {
                let pkcs8 = read_key_pem(&config.resolve(path)).map_err(certs_err)?;
                let previous = NodeCredentials { chain: Vec::new(), key_pkcs8: pkcs8 };
                Some(previous.signing_key().map_err(|e| NodeError::Certs(e.to_string()))?)
            }
            None => None,
        };
        let store_dir = config.data_dir.join(STORE_DIR);
        let chain = creds.chain.clone();
        let me = config.id;
        let data_dir = config.data_dir.clone();
        let calendar = config.workflow.calendar();
        let cache_bytes = config.store_cache_mb.saturating_mul(1 << 20);
        let (core, store) = tokio::task::spawn_blocking(move || -> Result<_, NodeError> {
            let store = Store::open_cached(&store_dir, me, cache_bytes)?;
            let identity = Identity { key, chain, verifier: Box::new(verifier), previous_key };
            let mut core = Core::boot(identity, store.clone(), unix_millis())?;
            core.set_calendar(calendar);
            // The store's files are sled's to create: made private once it has.
            crate::files::make_private(&data_dir)?;
            Ok((core, store))
        })
        .await
        .map_err(|e| NodeError::Io(format!("booting the core: {e}")))??;
        let endpoint = Endpoint::bind(&creds, &root, config.listen)?;
        let quic_addr = endpoint.local_addr().map_err(|e| NodeError::Io(e.to_string()))?;

        let status = Arc::new(RwLock::new(Status::default()));
        let (inbox, rx) = mpsc::channel(INBOX_CAPACITY);
        let (applied, _) = broadcast::channel(APPLIED_CAPACITY);
        let (failed_tx, failed) = watch::channel(None);
        let faults = Arc::new(Faults::default());
        let traffic = Arc::new(Traffic::default());
        let cancel = CancellationToken::new();
        let span = info_span!("node", id = %config.id);
        let mut tasks = JoinSet::new();
        let driver = Driver::new(
            core,
            store.clone(),
            rx,
            status.clone(),
            applied.clone(),
            failed_tx,
            faults.clone(),
            cancel.clone(),
        );
        tasks.spawn(driver.run().instrument(span.clone()));
        let gateway =
            Arc::new(Gateway::new(config.id, call_key, store.clone(), inbox.clone(), &config.gateway));
        tasks.spawn(
            crate::gateway::write_usage_every(gateway.clone(), cancel.clone()).instrument(span.clone()),
        );
        let chunk_dir = config.data_dir.join(CHUNK_DIR);
        let chunks = tokio::task::spawn_blocking(move || cascade_chunks::DiskStore::open(chunk_dir))
            .await
            .map_err(|e| NodeError::Io(e.to_string()))?
            .map_err(|e| NodeError::Io(e.to_string()))?;
        let datasets = Arc::new(crate::datasets::Datasets::new(
            config.id,
            store.clone(),
            Arc::new(chunks),
            gateway.clone(),
            inbox.clone(),
            faults.clone(),
        ));
        tasks.spawn(crate::datasets::resume_fetches(datasets.clone()).instrument(span.clone()));
        let gc_every = Duration::from_secs(config.datasets.gc_every_secs);
        let gc = crate::datasets::collect_every(
            datasets.clone(),
            config.datasets.keep_versions,
            gc_every,
            cancel.clone(),
        );
        tasks.spawn(gc.instrument(span.clone()));
        let ctx = LinkContext::new(
            inbox.clone(),
            store.clone(),
            faults.clone(),
            traffic.clone(),
            cancel.clone(),
            gateway.clone(),
            datasets.clone(),
        );
        tasks.spawn(
            crate::admission::accept_children(endpoint.clone(), status.clone(), ctx.clone())
                .instrument(span.clone()),
        );
        if let (Some(parent), Some(addr)) = (config.parent, config.parent_addr) {
            tasks.spawn(
                crate::dialer::dial_parent(endpoint.clone(), parent, addr, status.clone(), ctx)
                    .instrument(span),
            );
        }
        info!(node = %config.id, %quic_addr, "node started");
        let node = Node {
            inner: Arc::new(Inner {
                config,
                identity,
                store,
                status,
                inbox,
                endpoint,
                quic_addr,
                admin_token,
                applied,
                tasks: Mutex::new(tasks),
                cancel,
                failed,
                faults,
                traffic,
                passwords: Passwords::default(),
                reads: Reads::default(),
                gateway,
                datasets,
            }),
        };
        let follower = crate::datasets::follow_subscriptions(node.clone(), node.inner.cancel.clone());
        let span = info_span!("node", id = %node.inner.config.id);
        node.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()).spawn(follower.instrument(span));
        Ok(node)
    }

    /// Calls a service for a consumer of this node through the gateway: `by`
    /// must belong to an organization holding a valid grant for it.
    pub async fn call(
        &self,
        by: &Principal,
        request: crate::gateway::CallRequest,
    ) -> Result<crate::gateway::CallResponse, crate::gateway::CallFailure> {
        let Some(org) = by.organization.clone() else {
            return Err(crate::gateway::CallFailure {
                status: 403,
                reason: "the account has no organization to hold a grant".into(),
                retry_after: None,
            });
        };
        self.inner.gateway.call(by.actor.clone(), org, request).await
    }

    /// The calls this node saw (as consumer, relay or provider) that `filter`
    /// admits, newest first, at most `limit` (a page by default): all of them
    /// for an administrator or auditor, else those of `by`'s organization; and
    /// where the next page starts, if any. Read on the blocking pool, within the
    /// audit reads' limit.
    pub async fn usage(
        &self,
        by: &Principal,
        mut filter: cascade_store::UsageFilter,
        limit: Option<usize>,
    ) -> Result<(Vec<cascade_store::UsageRecord>, Option<cascade_store::UsageCursor>), CommandError> {
        use cascade_access::Role;
        if !(by.has(Role::Admin) || by.has(Role::Auditor)) {
            filter.consumer = Some(by.organization.clone().unwrap_or_default());
        }
        let limit = crate::query::limit_of(limit).max(1);
        let gateway = self.inner.gateway.clone();
        self.read(crate::query::ReadKind::Audit, move |_| gateway.usage(&filter, limit)).await
    }

    /// The workflow messages this node relayed that `filter` admits, newest
    /// first, at most `limit` (a page by default), and where the next page
    /// starts (the caller's permission to read them is checked by the caller:
    /// `Permission::Audit`).
    pub async fn relayed(
        &self,
        filter: cascade_store::RelayFilter,
        limit: Option<usize>,
    ) -> Result<(Vec<cascade_core::RelayRecord>, Option<cascade_store::RelayCursor>), CommandError> {
        let limit = crate::query::limit_of(limit).max(1);
        self.read(crate::query::ReadKind::Audit, move |store| store.relayed(&filter, limit)).await
    }

    /// Calls by role, service and status, and latency by role, for metrics.
    pub(crate) fn call_metrics(&self) -> crate::gateway::CallMetricsInner {
        self.inner.gateway.metrics.snapshot()
    }

    /// This node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// This node's certified identity.
    pub fn identity(&self) -> &NodeIdentity {
        &self.inner.identity
    }

    /// The bound QUIC address.
    pub fn quic_addr(&self) -> SocketAddr {
        self.inner.quic_addr
    }

    /// The admin bootstrap token (secret).
    pub fn admin_token(&self) -> &str {
        &self.inner.admin_token
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn passwords(&self) -> &Passwords {
        &self.inner.passwords
    }

    pub(crate) fn datasets(&self) -> Arc<crate::datasets::Datasets> {
        self.inner.datasets.clone()
    }

    pub(crate) fn reads(&self) -> &Reads {
        &self.inner.reads
    }

    /// Has the core decide `command` on behalf of `by`; answers once the change
    /// (and its audit record) is durable, or with why it was refused. A node whose
    /// core stopped answers `Unavailable` with the reason.
    pub async fn execute(&self, by: Principal, command: Command) -> Result<Reply, CommandError> {
        let (reply, rx) = oneshot::channel();
        if self.inner.inbox.send(Message::Command { by, command, reply }).await.is_err() {
            return Err(self.unavailable());
        }
        rx.await.map_err(|_| self.unavailable())?
    }

    fn unavailable(&self) -> CommandError {
        CommandError::Unavailable(self.failure().unwrap_or_else(|| "the node is stopping".into()))
    }

    /// Why the node stopped working (its store failed), if it did.
    pub fn failure(&self) -> Option<String> {
        self.inner.failed.borrow().clone()
    }

    /// Resolves when the node stops working on its own (not on `shutdown`).
    pub async fn failed(&self) -> String {
        let mut failed = self.inner.failed.clone();
        loop {
            if let Some(reason) = failed.borrow_and_update().clone() {
                return reason;
            }
            if failed.changed().await.is_err() {
                // The driver ended without an error: the node is shutting down.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Notifications of logs advancing (after the deltas are durable here).
    pub fn subscribe(&self) -> broadcast::Receiver<Applied> {
        self.inner.applied.subscribe()
    }

    /// The latest sync status.
    pub fn status(&self) -> Status {
        self.inner.status.read().map(|s| s.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The transport's counters.
    pub fn traffic(&self) -> crate::TransportCounters {
        self.inner.traffic.counters()
    }

    /// Blocks (or unblocks) the link to a neighbour: an existing connection is
    /// closed and new ones are neither dialed nor admitted. A fault for operators
    /// isolating a misbehaving peer, and for the real-mode simulator's partitions.
    pub async fn set_link_blocked(&self, peer: NodeId, blocked: bool) {
        self.inner.faults.set_blocked(peer, blocked);
        if blocked {
            let reason = Incompatibility::Blocked(peer).into();
            let _ = self.inner.inbox.send(Message::Close { peer, reason }).await;
        }
    }

    /// Collects the chunks no kept version uses (the newest `keep_versions` of
    /// each entry; 0 keeps all) and that are older than `grace`: what the node
    /// does every `datasets.gc_every_secs` with its configured `keep_versions`
    /// and `GC_GRACE`, now. Answers how many chunks went; audited.
    pub async fn collect_chunks(&self, keep_versions: u32, grace: Duration) -> Result<u64, CommandError> {
        crate::datasets::collect_and_record(&self.inner.datasets, keep_versions, grace)
            .await
            .map_err(CommandError::Unavailable)
    }

    /// What this node's data docking moved and refused so far.
    pub fn dataset_counters(&self) -> crate::datasets::DatasetCounters {
        self.inner.datasets.counters.snapshot()
    }

    /// Makes this node alter one byte in each of the next `n` chunks it serves
    /// or passes on, as a tampering relay would: a fault for the tests that show
    /// the next hop catches it and the fetch still ends with the right bytes.
    pub fn tamper_with_chunks(&self, n: u64) {
        self.inner.datasets.flip_next.store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Delays every frame this node sends, and every chunk it serves, by `delay`
    /// (zero removes the delay).
    pub fn set_send_delay(&self, delay: Duration) {
        self.inner.faults.set_delay(delay);
    }

    /// Makes the store refuse the next write, as a failing disk would: the node
    /// stops changing state and says why (health 503, commands `Unavailable`).
    /// A fault for tests of how a local failure is reported.
    pub fn inject_store_failure(&self) {
        self.inner.faults.fail_store();
    }

    /// Kills the node abruptly: every task is aborted mid-flight and no shutdown
    /// path runs. What was acknowledged is durable; anything in flight is lost.
    pub fn kill(&self) {
        self.inner.cancel.cancel();
        self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()).abort_all();
        self.inner.endpoint.abort();
    }

    /// Stops the node: links close, the core's last commit is made durable, and
    /// every task ends (aborted after a grace period if it does not).
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        let mut tasks = std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        let drained =
            tokio::time::timeout(SHUTDOWN_GRACE, async { while tasks.join_next().await.is_some() {} });
        if drained.await.is_err() {
            tracing::warn!("the node's tasks did not stop in time; aborting them");
            tasks.shutdown().await;
        }
        self.inner.endpoint.shutdown().await;
    }
}

fn load_or_create_token(path: &Path) -> Result<String, NodeError> {
    match std::fs::read_to_string(path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(NodeError::Io(format!("{}: {e}", path.display()))),
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    cascade_certs::write_private(path, token.as_bytes()).map_err(|e| NodeError::Io(e.to_string()))?;
    Ok(token)
}
