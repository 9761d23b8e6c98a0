//! Starting and stopping one node.

use crate::config::NodeConfig;
use crate::engine_task::{Command, EngineTask, INBOX_CAPACITY};
use crate::links;
use crate::status::Snapshot;
use cascade_certs::{read_chain_pem, read_key_pem, FederationVerifier, NodeCredentials, NodeIdentity};
use cascade_protocol::{Delta, DeltaBody, Engine, Scope};
use cascade_store::Store;
use cascade_transport::{unix_now, Endpoint};
use rand::RngCore;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{info, info_span, Instrument};

/// Name of the admin token file in the data folder (mode 0600).
pub const TOKEN_FILE: &str = "admin.token";
/// Name of the sled folder in the data folder.
pub const STORE_DIR: &str = "store";
/// How long shutdown waits for links and the engine to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Errors starting or running a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration is inconsistent.
    #[error("config: {0}")]
    Config(String),
    /// Certificate files are missing or wrong.
    #[error("certificates: {0}")]
    Certs(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] cascade_store::StoreError),
    /// The engine refused the stored state or its identity.
    #[error("engine: {0}")]
    Engine(#[from] cascade_protocol::EngineError),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] cascade_transport::TransportError),
    /// A file could not be read or written.
    #[error("io: {0}")]
    Io(String),
    /// The node is stopping or stopped.
    #[error("node stopped")]
    Stopped,
}

/// A running node.
pub struct Node {
    config: NodeConfig,
    identity: NodeIdentity,
    store: Store,
    snapshot: Arc<RwLock<Snapshot>>,
    inbox: mpsc::Sender<Command>,
    endpoint: Endpoint,
    quic_addr: SocketAddr,
    admin_token: String,
    access: cascade_access::Access,
    applied: tokio::sync::broadcast::Sender<crate::engine_task::Applied>,
    tasks: Vec<JoinHandle<()>>,
    engine_task: JoinHandle<Result<(), cascade_store::StoreError>>,
    failed: tokio::sync::watch::Receiver<Option<String>>,
    faults: Arc<crate::faults::Faults>,
    traffic: Arc<crate::faults::Traffic>,
}

impl Node {
    /// Starts a node: opens its store, restores and verifies its state, binds QUIC,
    /// accepts children and keeps dialing its parent.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        config.check().map_err(NodeError::Config)?;
        std::fs::create_dir_all(&config.data_dir).map_err(|e| NodeError::Io(e.to_string()))?;
        let certs_err = |e: cascade_certs::FileError| NodeError::Certs(e.to_string());
        let root = read_chain_pem(&config.resolve(&config.certs.root)).map_err(certs_err)?;
        let root = root.into_iter().next().ok_or_else(|| NodeError::Certs("empty root file".into()))?;
        let creds = NodeCredentials {
            chain: read_chain_pem(&config.resolve(&config.certs.chain)).map_err(certs_err)?,
            key_pkcs8: read_key_pem(&config.resolve(&config.certs.key)).map_err(certs_err)?,
        };
        let verifier = FederationVerifier::new(root.clone()).map_err(|e| NodeError::Certs(e.to_string()))?;
        let (identity, _) = verifier.verify(&creds.chain, unix_now()).map_err(NodeError::Certs)?;
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
        let signing_key = creds.signing_key().map_err(|e| NodeError::Certs(e.to_string()))?;

        let store_dir = config.data_dir.join(STORE_DIR);
        let store = tokio::task::spawn_blocking(move || Store::open(&store_dir))
            .await
            .map_err(|e| NodeError::Io(format!("opening the store: {e}")))??;
        let access = cascade_access::Access::new(store.tree("access")?, admin_token.clone());
        let now = unix_now();
        let mut engine = Engine::new(signing_key, creds.chain.clone(), Box::new(verifier), now)?;
        let stored: Vec<Delta> = store.all_deltas().collect::<Result<_, _>>()?;
        let restored = stored.len();
        engine.restore(stored)?;
        for action in engine.join(now)? {
            if let cascade_protocol::Action::Persist(deltas) = action {
                store.apply(&deltas, &[])?;
            }
        }
        store.flush().await?;
        info!(node = %config.id, restored, "state restored");

        let endpoint = Endpoint::bind(&creds, &root, config.listen)?;
        let quic_addr = endpoint.local_addr().map_err(|e| NodeError::Io(e.to_string()))?;
        let snapshot = Arc::new(RwLock::new(Snapshot::default()));
        let (inbox, rx) = mpsc::channel(INBOX_CAPACITY);
        let (applied, _) = tokio::sync::broadcast::channel(crate::engine_task::APPLIED_CAPACITY);
        let span = info_span!("node", id = %config.id);
        let (failed_tx, failed) = tokio::sync::watch::channel(None);
        let faults = Arc::new(crate::faults::Faults::default());
        let traffic = Arc::new(crate::faults::Traffic::default());
        let task = EngineTask::new(engine, store.clone(), snapshot.clone(), rx, applied.clone());
        let engine_task = tokio::spawn(
            async move {
                let result = task.run().await;
                if let Err(e) = &result {
                    tracing::error!(error = %e, "engine stopped: the node no longer syncs");
                    let _ = failed_tx.send(Some(e.to_string()));
                }
                result
            }
            .instrument(span.clone()),
        );
        let ctx = links::LinkContext {
            inbox: inbox.clone(),
            store: store.clone(),
            budget: Arc::new(tokio::sync::Semaphore::new(links::INBOX_BUDGET_KIB)),
            faults: faults.clone(),
            traffic: traffic.clone(),
        };
        let mut tasks = vec![tokio::spawn(
            links::accept_children(endpoint.clone(), snapshot.clone(), ctx.clone()).instrument(span.clone()),
        )];
        if let (Some(parent), Some(addr)) = (config.parent, config.parent_addr) {
            tasks
                .push(tokio::spawn(links::dial_parent(endpoint.clone(), parent, addr, ctx).instrument(span)));
        }
        info!(node = %config.id, %quic_addr, "node started");
        Ok(Node {
            config,
            identity,
            store,
            snapshot,
            inbox,
            endpoint,
            quic_addr,
            admin_token,
            access,
            applied,
            tasks,
            engine_task,
            failed,
            faults,
            traffic,
        })
    }

    /// This node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// This node's certified identity.
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }

    /// The bound QUIC address.
    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// The admin bearer token (secret).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Accounts, sessions and tokens of the admin interface.
    pub fn access(&self) -> &cascade_access::Access {
        &self.access
    }

    /// Appends entries to the audit log and makes them durable.
    pub async fn audit(&self, entries: Vec<cascade_store::AuditEntry>) -> Result<(), NodeError> {
        self.store.audit().append(unix_millis(), entries)?;
        self.store.flush().await?;
        Ok(())
    }

    /// The store (reads; writes go through the engine task).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Why the node stopped working (its engine hit a store error), if it did.
    pub fn failure(&self) -> Option<String> {
        self.failed.borrow().clone()
    }

    /// Resolves when the node stops working on its own (not on `shutdown`).
    pub async fn failed(&self) -> String {
        let mut failed = self.failed.clone();
        loop {
            if let Some(reason) = failed.borrow_and_update().clone() {
                return reason;
            }
            if failed.changed().await.is_err() {
                // The engine ended without an error: the node is shutting down.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Notifications of logs advancing (after the deltas are durable here).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::engine_task::Applied> {
        self.applied.subscribe()
    }

    /// The latest sync snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot.read().map(|s| s.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Originates a delta; returns once it is durable.
    pub(crate) async fn originate(
        &self,
        scope: Scope,
        body: DeltaBody,
    ) -> Result<Result<Delta, String>, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.inbox.send(Command::Originate { scope, body, reply }).await.map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// Runs a change of the own catalog in the engine task; returns once durable.
    pub(crate) async fn catalog_op(
        &self,
        op: crate::catalog::CatalogOp,
        by: Option<cascade_access::Principal>,
    ) -> Result<crate::SavedEntry, crate::CatalogError> {
        let (reply, rx) = oneshot::channel();
        self.inbox.send(Command::Catalog { op, by, reply }).await.map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)?
    }

    /// Revokes a child (or, at the national node, any node): a signed, replicated
    /// statement. Deltas the child signed after the current head are rejected everywhere.
    pub async fn revoke(
        &self,
        node: cascade_protocol::NodeId,
        reason: String,
    ) -> Result<Result<Delta, String>, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.inbox.send(Command::Revoke { node, reason, reply }).await.map_err(|_| NodeError::Stopped)?;
        rx.await.map_err(|_| NodeError::Stopped)
    }

    /// Blocks (or unblocks) the link to a neighbour: an existing connection is
    /// closed and new ones are neither dialed nor admitted. A fault for operators
    /// isolating a misbehaving peer, and for the real-mode simulator's partitions.
    pub async fn set_link_blocked(
        &self,
        peer: cascade_protocol::NodeId,
        blocked: bool,
    ) -> Result<(), NodeError> {
        self.faults.set_blocked(peer, blocked);
        if blocked {
            let reason = format!("link to {peer} blocked");
            self.inbox.send(Command::Drop { peer, reason }).await.map_err(|_| NodeError::Stopped)?;
        }
        Ok(())
    }

    /// Delays every frame this node sends by `delay` (zero removes the delay).
    pub fn set_send_delay(&self, delay: Duration) {
        self.faults.set_delay(delay);
    }

    /// Frames and bytes sent to neighbours so far.
    pub fn traffic(&self) -> (u64, u64) {
        self.traffic.totals()
    }

    /// Kills the node abruptly: every task is aborted mid-flight and no shutdown
    /// path runs. What was acknowledged is durable; anything in flight is lost.
    pub fn kill(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.engine_task.abort();
        self.endpoint.abort();
    }

    /// Stops the node: closes all links, drains the engine and flushes the store.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        for task in &self.tasks {
            task.abort();
        }
        self.endpoint.shutdown().await;
        drop(self.inbox);
        let abort = self.engine_task.abort_handle();
        match tokio::time::timeout(SHUTDOWN_GRACE, self.engine_task).await {
            Ok(Ok(result)) => result?,
            Ok(Err(_)) => {}
            Err(_) => {
                tracing::warn!("engine did not stop in time; aborting it");
                abort.abort();
            }
        }
        self.store.flush().await?;
        Ok(())
    }
}

/// Milliseconds since the unix epoch (0 if the clock is before it).
pub(crate) fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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
