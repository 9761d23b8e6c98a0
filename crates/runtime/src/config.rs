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
    /// Where the admin HTTP interface listens (console, API, open data). Default
    /// 127.0.0.1:0. Beyond loopback it needs `[admin_tls]`, or the explicit
    /// opt-in `admin_plain_http = true` (behind a TLS proxy).
    #[serde(default = "default_listen")]
    pub admin_listen: SocketAddr,
    /// HTTPS for the admin interface: a certificate chain and its key. Default
    /// none (plain HTTP).
    #[serde(default)]
    pub admin_tls: Option<AdminTls>,
    /// Opt-in: serve the admin interface in plain HTTP on an address beyond
    /// loopback (bearer tokens and passwords then cross that network in clear;
    /// for a node behind a TLS-terminating proxy). Default false.
    #[serde(default)]
    pub admin_plain_http: bool,
    /// The data folder: sled store, admin token, and by default the certificates.
    pub data_dir: PathBuf,
    /// Certificate files; relative paths are taken from `data_dir`.
    #[serde(default)]
    pub certs: CertPaths,
    /// How long approvers have to decide applications, in working days.
    #[serde(default)]
    pub workflow: WorkflowConfig,
    /// The service gateway.
    #[serde(default)]
    pub gateway: GatewayConfig,
    /// Dataset versions and the chunk store.
    #[serde(default)]
    pub datasets: DatasetConfig,
    /// Memory the store's cache may take, MiB (about; sled's page cache).
    /// Default 256. Without a bound, sled caches up to 1 GiB per node, which a
    /// process holding many nodes (`cascade up`, the simulator) cannot afford:
    /// they give each node a share instead.
    #[serde(default = "default_store_cache_mb")]
    pub store_cache_mb: u64,
}

/// The largest store cache a node may ask for (MiB): 64 GiB, far beyond any
/// catalog, and well within what `saturating_mul` to bytes keeps exact.
const MAX_STORE_CACHE_MB: u64 = 64 << 10;

fn default_store_cache_mb() -> u64 {
    256
}

/// Dataset settings: how long chunks are kept.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// Versions of each entry whose chunks this node keeps (its own, and those
    /// it fetched or cached), newest first; chunks no kept version uses are
    /// collected. 0 keeps every version. Default 0.
    #[serde(default)]
    pub keep_versions: u32,
    /// Seconds between two collections of unused chunks. Default 3600.
    #[serde(default = "default_gc_every_secs")]
    pub gc_every_secs: u64,
    /// Largest version a push may carry, in bytes: 413 at once when the body
    /// declares more, and when it reaches more (what was cut of it is collected
    /// later). Bounds the disk one push can fill. Default 64 GiB.
    #[serde(default = "default_max_version_bytes")]
    pub max_version_bytes: u64,
}

fn default_gc_every_secs() -> u64 {
    3600
}

fn default_max_version_bytes() -> u64 {
    64 << 30
}

impl Default for DatasetConfig {
    fn default() -> Self {
        DatasetConfig {
            keep_versions: 0,
            gc_every_secs: default_gc_every_secs(),
            max_version_bytes: default_max_version_bytes(),
        }
    }
}

/// The service gateway's settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Largest request body a call may carry: a consumer of this node may send
    /// no more (413 at once when declared, else when reached), and this node as a
    /// provider takes no more (413 to the consumer). Default 4 GiB (bodies
    /// stream: this bounds a call's length, not memory).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Seconds a hop waits for the next bytes of a call's body, either way,
    /// before it cuts the call (a cut body never reaches the upstream as whole).
    /// Default 30.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
}

fn default_max_body_bytes() -> u64 {
    4 << 30
}

fn default_idle_timeout_secs() -> u64 {
    30
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            max_body_bytes: default_max_body_bytes(),
            idle_timeout_secs: default_idle_timeout_secs(),
        }
    }
}

/// The deadline of conditional applications (有条件共享): the regulation gives
/// providers 10 working days; some provinces give 5.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowConfig {
    /// Working days an approver has to decide. Default 10.
    #[serde(default = "default_due_working_days")]
    pub due_working_days: u32,
    /// Public holidays falling on weekdays (`YYYY-MM-DD`), as the State Council
    /// announces them each year. Default none.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// Weekend days declared working days (调休, `YYYY-MM-DD`). Default none.
    #[serde(default)]
    pub workdays: Vec<String>,
}

fn default_due_working_days() -> u32 {
    cascade_core::DEFAULT_DUE_WORKING_DAYS
}

impl Default for WorkflowConfig {
    fn default() -> Self {
        WorkflowConfig {
            due_working_days: default_due_working_days(),
            holidays: Vec::new(),
            workdays: Vec::new(),
        }
    }
}

impl WorkflowConfig {
    /// The calendar the core counts with.
    pub fn calendar(&self) -> cascade_core::Calendar {
        cascade_core::Calendar {
            due_working_days: self.due_working_days,
            holidays: self.holidays.iter().cloned().collect(),
            workdays: self.workdays.iter().cloned().collect(),
        }
    }

    fn check(&self) -> Result<(), String> {
        if !(1..=60).contains(&self.due_working_days) {
            return Err("`workflow.due_working_days` must be 1 to 60".into());
        }
        let date = |d: &String| {
            let b = d.as_bytes();
            b.len() == 10
                && b[4] == b'-'
                && b[7] == b'-'
                && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        };
        match self.holidays.iter().chain(&self.workdays).find(|d| !date(d)) {
            Some(bad) => Err(format!("`workflow` dates are YYYY-MM-DD, not {bad:?}")),
            None => Ok(()),
        }
    }
}

/// The admin interface's HTTPS certificate: an operator's own, or one issued
/// from the federation PKI (`cascade certs https`). Relative paths are taken
/// from `data_dir`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTls {
    /// The chain, leaf first (PEM).
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1 PEM; mode 0600).
    pub key: PathBuf,
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
        self.workflow.check()?;
        if !(1..=MAX_STORE_CACHE_MB).contains(&self.store_cache_mb) {
            return Err(format!("`store_cache_mb` must be 1 to {MAX_STORE_CACHE_MB}"));
        }
        if !self.admin_listen.ip().is_loopback() && self.admin_tls.is_none() && !self.admin_plain_http {
            return Err(format!(
                "`admin_listen` {} is beyond loopback: configure `[admin_tls]` (cert, key), or set \
                 `admin_plain_http = true` if a TLS proxy stands in front",
                self.admin_listen
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str =
        "id = 100000\nname = \"中华人民共和国\"\ntier = \"national\"\ndata_dir = \"/tmp/x\"\n";

    #[test]
    fn the_store_cache_defaults_to_256_mib_and_zero_is_refused_saying_why() {
        assert_eq!(NodeConfig::from_toml(MINIMAL).map(|c| c.store_cache_mb), Ok(256));
        let bounded = NodeConfig::from_toml(&format!("{MINIMAL}store_cache_mb = 8\n"));
        assert_eq!(bounded.map(|c| c.store_cache_mb), Ok(8));
        let zero = NodeConfig::from_toml(&format!("{MINIMAL}store_cache_mb = 0\n")).unwrap_err();
        assert!(zero.contains("store_cache_mb"), "{zero}");
    }

    #[test]
    fn plain_http_beyond_loopback_needs_tls_or_an_explicit_opt_in() {
        let open = format!("{MINIMAL}admin_listen = \"0.0.0.0:8080\"\n");
        let refused = NodeConfig::from_toml(&open).unwrap_err();
        assert!(refused.contains("admin_tls") && refused.contains("admin_plain_http"), "{refused}");
        let tls =
            NodeConfig::from_toml(&format!("{open}[admin_tls]\ncert = \"https.pem\"\nkey = \"https.key\"\n"));
        assert!(tls.is_ok(), "{tls:?}");
        assert!(NodeConfig::from_toml(&format!("admin_plain_http = true\n{open}")).is_ok());
        let loopback = NodeConfig::from_toml(&format!("{MINIMAL}admin_listen = \"[::1]:8080\"\n"));
        assert!(loopback.is_ok_and(|c| !c.admin_plain_http && c.admin_tls.is_none()));
    }
}
