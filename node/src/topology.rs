//! Topology files: the nodes of a federation and their tree.

use cascade_protocol::{NodeId, Tier};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// A federation's shape, read from TOML.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Short name, e.g. "shandong".
    pub name: String,
    /// What it models.
    #[serde(default)]
    pub description: String,
    /// The nodes; a parent must be listed before its children.
    #[serde(rename = "node")]
    pub nodes: Vec<TopologyNode>,
}

/// One node of a topology.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyNode {
    /// Division code.
    pub id: NodeId,
    /// Human name.
    pub name: String,
    /// Tier.
    pub tier: Tier,
    /// Parent's division code (absent for the national node).
    #[serde(default)]
    pub parent: Option<NodeId>,
}

impl Topology {
    /// Reads and checks a topology file.
    pub fn load(path: &Path) -> Result<Topology, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Topology::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and checks a topology.
    pub fn parse(text: &str) -> Result<Topology, String> {
        let topology: Topology = toml::from_str(text).map_err(|e| e.to_string())?;
        topology.check()?;
        Ok(topology)
    }

    /// Checks the tree: unique ids, one national root, parents listed first, and the
    /// federation's tier rules (cities under their own province).
    pub fn check(&self) -> Result<(), String> {
        let mut seen: BTreeMap<NodeId, Tier> = BTreeMap::new();
        for node in &self.nodes {
            cascade_certs::node_identity(node.id, node.tier, node.parent, &node.name)
                .map_err(|e| format!("node {}: {e}", node.id))?;
            if let Some(parent) = node.parent {
                if !seen.contains_key(&parent) {
                    return Err(format!("node {}: parent {parent} must be listed before it", node.id));
                }
            }
            if seen.insert(node.id, node.tier).is_some() {
                return Err(format!("node {} is listed twice", node.id));
            }
        }
        if self.nodes.first().map(|n| n.tier) != Some(Tier::National) {
            return Err("the first node must be the national node".into());
        }
        Ok(())
    }
}
