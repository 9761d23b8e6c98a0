//! `cascade run` with `[admin_tls]`: the node announces and serves HTTPS with a
//! certificate from `cascade certs https`; beyond loopback it refuses plain HTTP
//! unless opted in, and a readable TLS key stops the start.

use cascade_launcher::processes::{spawn_node, write_config, NodeLog};
use cascade_launcher::topology::Topology;
use cascade_launcher::{Federation, LaunchOptions};
use cascade_runtime::AdminTls;
use cascade_tests::{https_request, nid, TWO_NODES};
use std::path::Path;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_cascade");

/// `cascade certs https` for 127.0.0.1, issued by the federation root (which
/// the launcher keeps in `DATA/pki`).
fn issue(data: &Path, out: &Path) {
    let status = std::process::Command::new(BIN)
        .args(["certs", "https", "--host", "127.0.0.1", "--out"])
        .arg(out)
        .arg("--issuer-cert")
        .arg(data.join("pki/root.pem"))
        .arg("--issuer-key")
        .arg(data.join("pki/root.key"))
        .status()
        .expect("cascade certs https");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascade_run_serves_https_and_refuses_plain_http_beyond_loopback() {
    let dir = tempfile::tempdir().expect("a folder");
    let options = LaunchOptions { data: dir.path().to_path_buf(), admin_port_base: None };
    let fed = Federation::prepare(Topology::parse(TWO_NODES).expect("topology"), &options).expect("prepared");
    let mut config = fed.config(nid("100000")).expect("a configuration");
    issue(dir.path(), &config.data_dir.join("https"));
    config.admin_tls = Some(AdminTls { cert: "https/https.pem".into(), key: "https/https.key".into() });
    let file = write_config(&config).expect("written");
    let log = dir.path().join("100000.log");
    let log = NodeLog { file: &log, filter: Some("warn"), format: "text" };
    let (mut node, url) =
        spawn_node(Path::new(BIN), &file, log, Duration::from_secs(120)).await.expect("started");
    let addr = url.strip_prefix("https://").expect("announced as https").parse().expect("an address");
    let root = cascade_certs::read_chain_pem(&config.resolve(&config.certs.root)).expect("root").remove(0);
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    assert_eq!(https_request(addr, &root, &request).await.map(|a| a.0), Ok(200));
    let _ = node.kill().await;

    // Beyond loopback without TLS: refused before anything starts, saying why.
    let mut open = config.clone();
    open.admin_tls = None;
    open.admin_listen = "0.0.0.0:0".parse().expect("an address");
    let text = toml::to_string(&open).expect("TOML");
    std::fs::write(&file, &text).expect("written");
    let out = std::process::Command::new(BIN).args(["run", "--config"]).arg(&file).output().expect("ran");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("admin_plain_http"), "{said}");

    // A TLS key others may read stops the start too.
    use std::os::unix::fs::PermissionsExt;
    let key = config.resolve(Path::new("https/https.key"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::write(&file, toml::to_string(&config).expect("TOML")).expect("written");
    let out = std::process::Command::new(BIN).args(["run", "--config"]).arg(&file).output().expect("ran");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("https.key") && said.contains("may have leaked"),
        "{said}"
    );
}
