//! The node's configuration: one typed struct, read from TOML.

use cascade_protocol::{NodeId, Tier};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Configuration of one node (`cascade run --config node.toml`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id: its 6-digit division code, e.g. "370100". Must match its certificate.
    pub id: NodeId,
    /// Human name, e.g. "济南市".
    pub name: String,
    /// The tier: "national", "provincial" or "municipal". Must match the certificate.
    pub tier: Tier,
    /// The parent's id; absent only for the national node.
    #[serde(default)]
    pub parent: Option<NodeId>,
    /// The parent's QUIC address; required when `parent` is set.
    #[serde(default)]
    pub parent_addr: Option<SocketAddr>,
    /// Where this node listens for QUIC (children dial it). Default 127.0.0.1:0 (any free port).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where the admin HTTP interface listens. Default 127.0.0.1:0; keep it on loopback
    /// unless a reverse proxy with TLS stands in front.
    #[serde(default = "default_listen")]
    pub admin_listen: SocketAddr,
    /// The data folder: sled store, admin token, and by default the certificates.
    pub data_dir: PathBuf,
    /// Certificate files; relative paths are taken from `data_dir`.
    #[serde(default)]
    pub certs: CertPaths,
}

/// Where the node's certificate material lives.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertPaths {
    /// The federation root certificate (PEM). Default `certs/root.pem`.
    pub root: PathBuf,
    /// This node's chain, leaf first (PEM). Default `certs/node.pem`.
    pub chain: PathBuf,
    /// This node's private key (PKCS#8 PEM, mode 0600). Default `certs/node.key`.
    pub key: PathBuf,
    /// The key this node signed with before its current certificate (PKCS#8 PEM,
    /// mode 0600), given once after a key rotation: at start the node hands its
    /// logs over from it to the new key, then no longer needs it. Default none.
    #[serde(default)]
    pub previous_key: Option<PathBuf>,
}

impl Default for CertPaths {
    fn default() -> Self {
        CertPaths {
            root: PathBuf::from("certs/root.pem"),
            chain: PathBuf::from("certs/node.pem"),
            key: PathBuf::from("certs/node.key"),
            previous_key: None,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl NodeConfig {
    /// Parses a TOML configuration.
    pub fn from_toml(text: &str) -> Result<NodeConfig, String> {
        let config: NodeConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    /// Checks the fields that depend on each other.
    pub fn check(&self) -> Result<(), String> {
        match (self.tier, self.parent, self.parent_addr) {
            (Tier::National, None, _) => Ok(()),
            (Tier::National, Some(_), _) => Err("the national node has no parent".into()),
            (_, None, _) => Err("a provincial or municipal node needs `parent`".into()),
            (_, Some(_), None) => Err("`parent_addr` is required with `parent`".into()),
            (_, Some(_), Some(_)) => Ok(()),
        }
    }

    /// A certificate path resolved against the data folder.
    pub fn resolve(&self, path: &std::path::Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.data_dir.join(path)
        }
    }
}
