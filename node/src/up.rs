//! `cascade up`: a whole topology on this machine, in this process or as one
//! `cascade run` process per node.

use crate::StopSignals;
use cascade_launcher::processes::{free_quic_addr, spawn_node, stop, write_config, NodeLog};
use cascade_launcher::topology::Topology;
use cascade_launcher::{Federation, LaunchOptions, ManifestNode};
use cascade_protocol::NodeId;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a node process may take to say it serves (a big store is verified
/// again at start).
const START_WITHIN: Duration = Duration::from_secs(300);

/// How long a node process may take to stop after SIGTERM (its own shutdown
/// grace is 5 s) before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// Every node in this process until Ctrl-C or SIGTERM.
pub(crate) async fn in_process(topology: Topology, options: LaunchOptions) -> anyhow::Result<()> {
    let mut signals = StopSignals::watch()?;
    std::fs::create_dir_all(&options.data)?;
    let federation = tokio::select! {
        federation = Federation::launch(topology, &options) => federation?,
        _ = signals.stopped() => return Ok(()),
    };
    let manifest = options.data.join("federation.json");
    federation.write_manifest(&manifest)?;
    print_nodes(&federation.topology().name, &federation.manifest(), &manifest);
    signals.stopped().await;
    println!("stopping...");
    federation.shutdown().await?;
    Ok(())
}

/// Every node as a `cascade run` child process until Ctrl-C or SIGTERM, when
/// each is sent SIGTERM. A node that exits meanwhile (killed, failed) is
/// reported and left down: restarting it is the operator's or the tester's.
pub(crate) async fn processes(
    topology: Topology,
    options: LaunchOptions,
    log_format: &str,
) -> anyhow::Result<()> {
    let mut signals = StopSignals::watch()?;
    std::fs::create_dir_all(&options.data)?;
    let fed = Federation::prepare(topology.clone(), &options)?;
    let bin = std::env::current_exe()?;
    let mut quic: HashMap<NodeId, std::net::SocketAddr> = HashMap::new();
    let mut manifest = Vec::new();
    let mut stops = Vec::new();
    let mut watchers = tokio::task::JoinSet::new();
    for node in &topology.nodes {
        let mut config =
            fed.config(node.id).ok_or_else(|| anyhow::anyhow!("no configuration for {}", node.id))?;
        config.listen = free_quic_addr().map_err(anyhow::Error::msg)?;
        config.parent_addr = node.parent.and_then(|p| quic.get(&p).copied());
        quic.insert(node.id, config.listen);
        let file = write_config(&config).map_err(anyhow::Error::msg)?;
        let log = options.data.join(format!("{}.log", node.id));
        let start =
            spawn_node(&bin, &file, NodeLog { file: &log, filter: None, format: log_format }, START_WITHIN);
        let (mut child, admin_url) = tokio::select! {
            started = start => started.map_err(anyhow::Error::msg)?,
            // The children started so far are killed as they are dropped.
            _ = signals.stopped() => return Ok(()),
        };
        let token = std::fs::read_to_string(config.data_dir.join(cascade_runtime::TOKEN_FILE))?;
        manifest.push(ManifestNode {
            id: node.id,
            name: node.name.clone(),
            tier: node.tier,
            parent: node.parent,
            admin_url,
            quic_addr: config.listen.to_string(),
            token: token.trim().to_string(),
            pid: child.id(),
        });
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        stops.push(stop_tx);
        let (id, file) = (node.id, file.clone());
        watchers.spawn(async move {
            tokio::select! {
                status = child.wait() => {
                    let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                    println!("node {id} exited ({status}); restart it with: cascade run --config {}", file.display());
                }
                _ = stop_rx => {
                    if let Err(e) = stop(&mut child, STOP_WITHIN).await {
                        println!("node {id}: {e}");
                    }
                }
            }
        });
    }
    let path = options.data.join("federation.json");
    let json = serde_json::to_vec_pretty(&serde_json::json!({ "nodes": manifest }))?;
    cascade_certs::write_private(&path, &json)?;
    print_nodes(&topology.name, &manifest, &path);
    signals.stopped().await;
    println!("stopping...");
    for stop in stops {
        let _ = stop.send(());
    }
    while watchers.join_next().await.is_some() {}
    Ok(())
}

fn print_nodes(name: &str, nodes: &[ManifestNode], manifest: &std::path::Path) {
    println!("federation {name:?}: {} nodes", nodes.len());
    for node in nodes {
        let pid = node.pid.map(|p| format!("pid {p}")).unwrap_or_default();
        println!("  {} {:<12} {:<10} {} {pid}", node.id, node.name, node.tier.as_str(), node.admin_url);
    }
    println!("tokens and addresses: {}", manifest.display());
    println!("press Ctrl-C to stop");
}
