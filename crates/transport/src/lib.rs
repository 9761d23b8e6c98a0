//! The QUIC transport of a Cascade node: one quinn endpoint serving both roles,
//! mutual TLS against the federation root (rustls with the ring provider), peer
//! admission by the identity in the peer's certificate, and bounded framing.

mod framing;
mod tls;

pub use framing::{
    read_call_frame, read_frame, read_message, write_call_frame, write_frame, write_message, FrameError,
};

use cascade_certs::{FederationVerifier, NodeCredentials, NodeIdentity};
use cascade_protocol::{Incompatibility, NodeId, PeerError};
use std::net::SocketAddr;
use std::time::Duration;
use tracing::debug;

/// How often an idle connection is probed; keeps NAT state and detects dead peers.
pub const KEEP_ALIVE: Duration = Duration::from_secs(2);
/// A peer silent this long is considered gone (five missed keep-alives).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on the TLS handshake plus admission of one incoming connection.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// QUIC application close codes.
pub mod close {
    /// The peer is not allowed to connect here (wrong parent, revoked, ...).
    pub const REFUSED: u32 = 1;
    /// The peer broke the protocol (oversized or malformed frame, ...).
    pub const PROTOCOL: u32 = 2;
    /// The node is shutting down.
    pub const SHUTDOWN: u32 = 3;
    /// Not now (a live link of the same node exists): try again soon.
    pub const RETRY: u32 = 4;
}

/// Errors of the transport.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The TLS configuration could not be built from the credentials.
    #[error("tls config: {0}")]
    Tls(String),
    /// Binding the UDP socket failed.
    #[error("bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Connecting failed.
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection failed or was closed (includes TLS handshake failures).
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The peer is not who it should be, or may not connect here.
    #[error("peer refused: {0}")]
    Refused(PeerError),
    /// Timed out.
    #[error("timed out")]
    Timeout,
}

fn refused(reason: Incompatibility) -> TransportError {
    TransportError::Refused(PeerError::Incompatible(reason))
}

/// A connected and admitted neighbour.
pub struct PeerLink {
    /// Who the peer is, from its verified certificate.
    pub identity: NodeIdentity,
    /// The QUIC connection.
    pub connection: quinn::Connection,
    /// Our half of the sync stream.
    pub send: quinn::SendStream,
    /// The peer's half of the sync stream.
    pub recv: quinn::RecvStream,
}

/// A node's QUIC endpoint.
#[derive(Clone)]
pub struct Endpoint {
    endpoint: quinn::Endpoint,
    verifier: FederationVerifier,
    me: NodeIdentity,
}

impl Endpoint {
    /// Binds a server-and-client endpoint with this node's credentials.
    pub fn bind(
        creds: &NodeCredentials,
        root_der: &[u8],
        addr: SocketAddr,
    ) -> Result<Endpoint, TransportError> {
        let verifier =
            FederationVerifier::new(root_der.to_vec()).map_err(|e| TransportError::Tls(e.to_string()))?;
        let me = verifier.verify(&creds.chain, unix_now()).map_err(|e| TransportError::Tls(e.to_string()))?.0;
        let (server, client) = tls::configs(creds, root_der)?;
        let mut endpoint =
            quinn::Endpoint::server(server, addr).map_err(|source| TransportError::Bind { addr, source })?;
        endpoint.set_default_client_config(client);
        Ok(Endpoint { endpoint, verifier, me })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// This node's identity.
    pub fn identity(&self) -> &NodeIdentity {
        &self.me
    }

    /// Dials the parent at `addr` and checks that it is `parent`; opens the sync stream.
    pub async fn connect(&self, addr: SocketAddr, parent: NodeId) -> Result<PeerLink, TransportError> {
        let connecting = self.endpoint.connect(addr, &cascade_certs::NodeIdentity::server_name_of(parent))?;
        let connection = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
            .await
            .map_err(|_| TransportError::Timeout)??;
        let identity = self.peer_identity(&connection)?;
        if identity.id != parent {
            connection.close(close::REFUSED.into(), b"not the expected parent");
            return Err(refused(Incompatibility::WrongNode { expected: parent, found: identity.id }));
        }
        let (send, recv) = connection.open_bi().await?;
        Ok(PeerLink { identity, connection, send, recv })
    }

    /// Waits for the next incoming connection attempt; `None` once the endpoint closed.
    pub async fn accept(&self) -> Option<quinn::Incoming> {
        self.endpoint.accept().await
    }

    /// Completes an incoming connection: TLS (the client's chain must lead to the
    /// root), then admission: the peer must be a child naming this node as parent,
    /// and `admit` (e.g. the revocation list) must agree. Refusals are closed with a
    /// reason the peer can read.
    pub async fn admit(
        &self,
        incoming: quinn::Incoming,
        admit: impl FnOnce(&NodeIdentity) -> Result<(), Incompatibility>,
    ) -> Result<PeerLink, TransportError> {
        let remote = incoming.remote_address();
        let fut = async {
            let connection = incoming.await?;
            let identity = self.peer_identity(&connection)?;
            let verdict = if identity.parent != Some(self.me.id) {
                Err(Incompatibility::NotChild { node: identity.id, parent: identity.parent })
            } else {
                admit(&identity)
            };
            if let Err(reason) = verdict {
                connection.close(close::REFUSED.into(), reason.to_string().as_bytes());
                return Err(refused(reason));
            }
            let (send, recv) = connection.accept_bi().await?;
            Ok(PeerLink { identity, connection, send, recv })
        };
        let result = tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
            .await
            .map_err(|_| TransportError::Timeout)
            .and_then(|r| r);
        if let Err(e) = &result {
            debug!(%remote, error = %e, "incoming peer not admitted");
        }
        result
    }

    fn peer_identity(&self, connection: &quinn::Connection) -> Result<NodeIdentity, TransportError> {
        let chain = connection
            .peer_identity()
            .and_then(|any| any.downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>().ok())
            .ok_or_else(|| refused(Incompatibility::NoCertificate))?;
        let chain: Vec<Vec<u8>> = chain.iter().map(|c| c.to_vec()).collect();
        let (identity, _) = self.verifier.verify(&chain, unix_now()).map_err(|reason| {
            connection.close(close::REFUSED.into(), reason.to_string().as_bytes());
            refused(Incompatibility::NotMember(reason))
        })?;
        Ok(identity)
    }

    /// Closes every connection at once, without waiting (a crash).
    pub fn abort(&self) {
        self.endpoint.close(close::SHUTDOWN.into(), b"killed");
    }

    /// Closes every connection and stops accepting.
    pub async fn shutdown(&self) {
        self.endpoint.close(close::SHUTDOWN.into(), b"shutting down");
        self.endpoint.wait_idle().await;
    }
}

/// Seconds since the unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
