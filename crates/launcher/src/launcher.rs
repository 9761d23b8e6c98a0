//! A whole topology of nodes in one process on loopback.

use crate::pki;
use crate::topology::Topology;
use cascade_protocol::NodeId;
use cascade_runtime::{CertPaths, Node, NodeConfig};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How a federation is laid out on this machine.
#[derive(Clone, Debug)]
pub struct LaunchOptions {
    /// Data folder: one sub-folder per node plus `pki/`.
    pub data: PathBuf,
    /// First admin port (node i gets base + i); `None` picks free ports.
    pub admin_port_base: Option<u16>,
}

/// One running node with its admin server.
pub struct RunningNode {
    /// The node.
    pub node: Node,
    /// Base URL of its admin interface.
    pub admin_url: String,
    stop_admin: oneshot::Sender<()>,
    admin_task: JoinHandle<std::io::Result<()>>,
}

/// Store cache shared by the nodes of a federation launched in one process
/// (MiB): 2 GiB keeps a national topology's 365 nodes within a few GiB however
/// long it runs, while a handful of nodes get the node's default.
const IN_PROCESS_CACHE_MB: u64 = 2048;

/// The least store cache a node launched in-process gets (MiB).
const MIN_CACHE_MB: u64 = 4;

/// Nodes stopped at once by `Federation::shutdown`: most of a stop is waiting
/// for connections to close, so a few dozen overlap well on two cores.
const STOPPING_AT_ONCE: usize = 32;

/// One line of `federation.json`.
#[derive(Debug, Serialize)]
pub struct ManifestNode {
    /// Division code.
    pub id: NodeId,
    /// Name.
    pub name: String,
    /// Tier.
    pub tier: cascade_protocol::Tier,
    /// Parent.
    pub parent: Option<NodeId>,
    /// Admin base URL.
    pub admin_url: String,
    /// QUIC address.
    pub quic_addr: String,
    /// Admin bearer token (secret; the file is written 0600).
    pub token: String,
    /// The node's process, when it runs as one of its own (`cascade up --processes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

/// A running federation.
pub struct Federation {
    topology: Topology,
    configs: BTreeMap<NodeId, NodeConfig>,
    running: BTreeMap<NodeId, RunningNode>,
}

impl Federation {
    /// Prepares certificates and starts every node, parents first.
    pub async fn launch(topology: Topology, options: &LaunchOptions) -> anyhow::Result<Federation> {
        let mut federation = Federation::prepare(topology, options)?;
        let ids: Vec<NodeId> = federation.topology.nodes.iter().map(|n| n.id).collect();
        for id in ids {
            federation.start(id).await?;
        }
        Ok(federation)
    }

    /// Prepares certificates and configurations without starting anything.
    pub fn prepare(topology: Topology, options: &LaunchOptions) -> anyhow::Result<Federation> {
        pki::prepare(&topology, &options.data).map_err(anyhow::Error::msg)?;
        let mut configs = BTreeMap::new();
        for (i, node) in topology.nodes.iter().enumerate() {
            let admin_port = options.admin_port_base.map_or(0, |base| base.saturating_add(i as u16));
            configs.insert(
                node.id,
                NodeConfig {
                    id: node.id,
                    name: node.name.clone(),
                    tier: node.tier,
                    parent: node.parent,
                    parent_addr: None,
                    listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                    admin_listen: SocketAddr::from(([127, 0, 0, 1], admin_port)),
                    admin_tls: None,
                    admin_plain_http: false,
                    data_dir: options.data.join(node.id.to_string()),
                    certs: CertPaths::default(),
                    workflow: Default::default(),
                    gateway: Default::default(),
                    datasets: Default::default(),
                    store_cache_mb: (IN_PROCESS_CACHE_MB / topology.nodes.len().max(1) as u64)
                        .clamp(MIN_CACHE_MB, 256),
                },
            );
        }
        Ok(Federation { topology, configs, running: BTreeMap::new() })
    }

    /// Points a node at a parent address of the caller's choosing (e.g. a test peer).
    pub fn set_parent_addr(&mut self, id: NodeId, addr: SocketAddr) -> anyhow::Result<()> {
        let config = self.configs.get_mut(&id).ok_or_else(|| anyhow::anyhow!("no node {id}"))?;
        config.parent_addr = Some(addr);
        Ok(())
    }

    /// Sets a node's gateway settings (body cap, idle time-out); effective at
    /// its next start.
    pub fn set_gateway(&mut self, id: NodeId, gateway: cascade_runtime::GatewayConfig) -> anyhow::Result<()> {
        let config = self.configs.get_mut(&id).ok_or_else(|| anyhow::anyhow!("no node {id}"))?;
        config.gateway = gateway;
        Ok(())
    }

    /// Sets a node's dataset settings (retention, version cap); effective at
    /// its next start.
    pub fn set_datasets(
        &mut self,
        id: NodeId,
        datasets: cascade_runtime::DatasetConfig,
    ) -> anyhow::Result<()> {
        let config = self.configs.get_mut(&id).ok_or_else(|| anyhow::anyhow!("no node {id}"))?;
        config.datasets = datasets;
        Ok(())
    }

    /// Gives a node the key it signed with before its current certificate (see
    /// `CertPaths::previous_key`), or takes it away; effective at its next start.
    pub fn set_previous_key(&mut self, id: NodeId, key: Option<PathBuf>) -> anyhow::Result<()> {
        let config = self.configs.get_mut(&id).ok_or_else(|| anyhow::anyhow!("no node {id}"))?;
        config.certs.previous_key = key;
        Ok(())
    }

    /// Starts (or restarts) one node from its data folder, on its previous ports.
    pub async fn start(&mut self, id: NodeId) -> anyhow::Result<()> {
        anyhow::ensure!(!self.running.contains_key(&id), "{id} is already running");
        let mut config = self.configs.get(&id).cloned().ok_or_else(|| anyhow::anyhow!("no node {id}"))?;
        if let (Some(parent), None) = (config.parent, config.parent_addr) {
            let running = self.running.get(&parent);
            let addr = running
                .map(|r| r.node.quic_addr())
                .ok_or_else(|| anyhow::anyhow!("parent {parent} of {id} is not running"))?;
            config.parent_addr = Some(addr);
            if let Some(c) = self.configs.get_mut(&id) {
                c.parent_addr = Some(addr);
            }
        }
        let node = Node::start(config.clone()).await?;
        let listener = tokio::net::TcpListener::bind(config.admin_listen)
            .await
            .map_err(|e| anyhow::anyhow!("admin {}: {e}", config.admin_listen))?;
        let admin_addr = listener.local_addr()?;
        // Keep the ports: a restarted node is found where it was.
        if let Some(c) = self.configs.get_mut(&id) {
            c.listen = node.quic_addr();
            c.admin_listen = admin_addr;
        }
        let (stop_admin, stopped) = oneshot::channel::<()>();
        let admin_task = tokio::spawn(cascade_admin::serve(node.clone(), listener, None, async {
            let _ = stopped.await;
        }));
        self.running.insert(
            id,
            RunningNode { node, admin_url: format!("http://{admin_addr}"), stop_admin, admin_task },
        );
        Ok(())
    }

    /// Stops one node cleanly (its data stays).
    pub async fn stop(&mut self, id: NodeId) -> anyhow::Result<()> {
        let running = self.running.remove(&id).ok_or_else(|| anyhow::anyhow!("{id} is not running"))?;
        let _ = running.stop_admin.send(());
        let _ = running.admin_task.await;
        running.node.shutdown().await;
        Ok(())
    }

    /// Kills one node abruptly (no shutdown path; its data folder stays).
    pub async fn kill(&mut self, id: NodeId) -> anyhow::Result<()> {
        let running = self.running.remove(&id).ok_or_else(|| anyhow::anyhow!("{id} is not running"))?;
        running.admin_task.abort();
        let _ = running.admin_task.await;
        drop(running.stop_admin);
        running.node.kill();
        Ok(())
    }

    /// A node's configuration as it would start now (its parent's address
    /// filled in when the parent runs here): to run it as a process of its own.
    pub fn config(&self, id: NodeId) -> Option<NodeConfig> {
        let mut config = self.configs.get(&id).cloned()?;
        if let (Some(parent), None) = (config.parent, config.parent_addr) {
            config.parent_addr = self.running.get(&parent).map(|r| r.node.quic_addr());
        }
        Some(config)
    }

    /// The data folder of a node (running or not).
    pub fn data_dir(&self, id: NodeId) -> Option<&Path> {
        self.configs.get(&id).map(|c| c.data_dir.as_path())
    }

    /// A running node.
    pub fn node(&self, id: NodeId) -> Option<&RunningNode> {
        self.running.get(&id)
    }

    /// Every running node, by id.
    pub fn nodes(&self) -> impl Iterator<Item = (&NodeId, &RunningNode)> {
        self.running.iter()
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The manifest of running nodes.
    pub fn manifest(&self) -> Vec<ManifestNode> {
        self.topology
            .nodes
            .iter()
            .filter_map(|n| {
                let r = self.running.get(&n.id)?;
                Some(ManifestNode {
                    id: n.id,
                    name: n.name.clone(),
                    tier: n.tier,
                    parent: n.parent,
                    admin_url: r.admin_url.clone(),
                    quic_addr: r.node.quic_addr().to_string(),
                    token: r.node.admin_token().to_string(),
                    pid: None,
                })
            })
            .collect()
    }

    /// Writes `federation.json` (mode 0600: it holds the tokens).
    pub fn write_manifest(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(&serde_json::json!({ "nodes": self.manifest() }))?;
        cascade_certs::write_private(path, &json)?;
        Ok(())
    }

    /// Stops every node, `STOPPING_AT_ONCE` at a time: each waits for its QUIC
    /// connections to close, which one node after another takes minutes for a
    /// national federation, while all at once would crowd each node's grace
    /// period for its last commit. Every node is stopped even if one fails.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let mut stopping = tokio::task::JoinSet::new();
        let mut first_failure = None;
        for (_, running) in std::mem::take(&mut self.running) {
            if stopping.len() >= STOPPING_AT_ONCE {
                if let Some(Err(e)) = stopping.join_next().await {
                    first_failure.get_or_insert(e);
                }
            }
            stopping.spawn(async move {
                let _ = running.stop_admin.send(());
                let _ = running.admin_task.await;
                running.node.shutdown().await;
            });
        }
        while let Some(stopped) = stopping.join_next().await {
            if let Err(e) = stopped {
                first_failure.get_or_insert(e);
            }
        }
        first_failure.map_or(Ok(()), |e| Err(e.into()))
    }
}
