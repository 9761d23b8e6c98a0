//! rustls configurations for both roles, on the ring provider only.

use crate::TransportError;
use cascade_certs::NodeCredentials;
use cascade_protocol::ALPN;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use std::sync::Arc;

/// Streams a neighbour may open at once on a link: the sync stream, calls and
/// chunk requests (a node serves at most 256 calls and 128 chunk requests at
/// once, whatever the links); beyond, opening a stream waits for one to end.
const MAX_STREAMS_PER_LINK: u32 = 128;

/// Bytes one stream may carry ahead of its reader: one whole chunk (the largest
/// is 2 MiB), so a chunk flows without stalling on window updates, even over a
/// long link.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;

/// Bytes a whole link may carry ahead of its reader: a fetch keeps 8 chunk
/// requests in flight, 8 × 2 MiB. That is four times the bandwidth-delay product
/// of a 1 Gbit/s link at 30 ms (3.75 MB), so a long link stays full; and it caps
/// what one neighbour can make this node buffer (quinn's default is unbounded
/// per link, 1.25 MB per stream).
const LINK_WINDOW: u32 = 16 * 1024 * 1024;

fn tls_err(e: impl std::fmt::Display) -> TransportError {
    TransportError::Tls(e.to_string())
}

/// Builds the quinn server and client configs: TLS 1.3, client certificates
/// required, both sides verified against the federation root alone.
pub(crate) fn configs(
    creds: &NodeCredentials,
    root_der: &[u8],
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(root_der.to_vec())).map_err(tls_err)?;
    let roots = Arc::new(roots);
    let chain: Vec<CertificateDer<'static>> =
        creds.chain.iter().map(|c| CertificateDer::from(c.clone())).collect();
    let key = || PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(creds.key_pkcs8.clone()));

    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(tls_err)?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain.clone(), key())
        .map_err(tls_err)?;
    server.alpn_protocols = vec![ALPN.to_vec()];

    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key())
        .map_err(tls_err)?;
    client.alpn_protocols = vec![ALPN.to_vec()];

    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(crate::KEEP_ALIVE));
    transport.max_idle_timeout(Some(crate::IDLE_TIMEOUT.try_into().map_err(tls_err)?));
    // One sync stream per connection; a few spare for later protocols.
    // The sync stream, and one stream per service call in flight on the link.
    transport.max_concurrent_bidi_streams(MAX_STREAMS_PER_LINK.into());
    transport.max_concurrent_uni_streams(0u32.into());
    transport.stream_receive_window(STREAM_WINDOW.into());
    transport.receive_window(LINK_WINDOW.into());
    // What this node sends ahead of acknowledgements, on all streams of a link.
    transport.send_window(LINK_WINDOW.into());
    // Congestion control stays quinn's CUBIC: loss-based and proven; BBR is
    // experimental in quinn 0.11. Catalog sync and calls are kept ahead of bulk
    // transfers by stream priority instead (chunk streams are sent last).
    let transport = Arc::new(transport);

    let server_crypto = quinn::crypto::rustls::QuicServerConfig::try_from(server).map_err(tls_err)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
    server.transport_config(transport.clone());
    let client_crypto = quinn::crypto::rustls::QuicClientConfig::try_from(client).map_err(tls_err)?;
    let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
    client.transport_config(transport);
    Ok((server, client))
}
