//! Certificates for a local federation, generated on the spot and reused on restart.
//!
//! Layout under the data folder:
//! `pki/root.pem`, `pki/root.key` (the federation root; 0600 key),
//! `<id>/certs/root.pem`, `<id>/certs/node.pem`, `<id>/certs/node.key` per node,
//! `<province>/certs/ca.pem`, `<province>/certs/ca.key` per provincial CA.

use crate::topology::Topology;
use cascade_certs::{node_identity, write_private, Authority, NodeCredentials};
use cascade_protocol::{NodeId, Tier};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The certificate folder of a node.
pub fn node_certs_dir(data: &Path, id: NodeId) -> PathBuf {
    data.join(id.to_string()).join("certs")
}

fn write_pem(path: &Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn write_creds(dir: &Path, stem: &str, creds: &NodeCredentials) -> Result<(), String> {
    write_pem(&dir.join(format!("{stem}.pem")), &creds.chain_pem())?;
    write_private(&dir.join(format!("{stem}.key")), creds.key_pem().as_bytes()).map_err(|e| e.to_string())
}

fn read_creds(dir: &Path, stem: &str) -> Result<Option<NodeCredentials>, String> {
    let pem = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    if !pem.exists() || !key.exists() {
        return Ok(None);
    }
    Ok(Some(NodeCredentials {
        chain: cascade_certs::read_chain_pem(&pem).map_err(|e| e.to_string())?,
        key_pkcs8: cascade_certs::read_key_pem(&key).map_err(|e| e.to_string())?,
    }))
}

/// Makes sure the root and every node's certificates exist under `data`.
pub fn prepare(topology: &Topology, data: &Path) -> Result<(), String> {
    let pki = data.join("pki");
    let (root_pem, root_key) = (pki.join("root.pem"), pki.join("root.key"));
    let root = if root_pem.exists() && root_key.exists() {
        let cert = std::fs::read_to_string(&root_pem).map_err(|e| e.to_string())?;
        let key = std::fs::read_to_string(&root_key).map_err(|e| e.to_string())?;
        Authority::load_root(&cert, &key).map_err(|e| e.to_string())?
    } else {
        let root =
            Authority::new_root(&format!("Cascade root ({})", topology.name)).map_err(|e| e.to_string())?;
        write_pem(&root_pem, &root.cert_pem())?;
        write_private(&root_key, root.key_pem().as_bytes()).map_err(|e| e.to_string())?;
        root
    };
    let mut cas: BTreeMap<NodeId, Authority> = BTreeMap::new();
    for node in &topology.nodes {
        let dir = node_certs_dir(data, node.id);
        let identity =
            node_identity(node.id, node.tier, node.parent, &node.name).map_err(|e| e.to_string())?;
        if node.tier == Tier::Provincial {
            let ca = match read_creds(&dir, "ca")? {
                Some(ca) => ca,
                None => {
                    let ca = root.issue_provincial_ca(&identity).map_err(|e| e.to_string())?;
                    write_creds(&dir, "ca", &ca)?;
                    ca
                }
            };
            cas.insert(node.id, ca.into_authority().map_err(|e| e.to_string())?);
        }
        write_pem(&dir.join("root.pem"), &root.cert_pem())?;
        if read_creds(&dir, "node")?.is_some() {
            continue;
        }
        let creds = match (node.tier, node.parent) {
            (Tier::Municipal, Some(parent)) => {
                cas.get(&parent).ok_or_else(|| format!("no CA for province {parent}"))?.issue(&identity)
            }
            _ => root.issue(&identity),
        }
        .map_err(|e| e.to_string())?;
        write_creds(&dir, "node", &creds)?;
    }
    Ok(())
}
