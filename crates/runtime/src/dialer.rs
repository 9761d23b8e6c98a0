//! The parent dialer: keeps a link to the parent up, redialing on the core's
//! schedule (`Redial`): soon after a lost link, minutes apart after a refusal.

use crate::driver::unix_millis;
use crate::links::{refusal, run_link, LinkContext};
use cascade_core::{LinkEnd, LinkRole, Redial, Status};
use cascade_protocol::NodeId;
use cascade_transport::{Endpoint, TransportError};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};

/// A refusal for the same reason is logged at most this often (the attempts
/// between are logged at debug level).
const WARN_EVERY: Duration = Duration::from_secs(600);

/// How a failed dial ended: a refusal (the parent will not have this node, or the
/// TLS handshake failed, which retrying does not change) or a transient failure.
fn dial_failure(e: &TransportError) -> LinkEnd {
    use quinn::ConnectionError as C;
    match e {
        TransportError::Refused(_) => LinkEnd::Refused,
        TransportError::Connection(C::ApplicationClosed(close)) if refusal(close.error_code) => {
            LinkEnd::Refused
        }
        // Turned away before any cryptography (the parent's handshake slots are
        // full, or this address failed too often): again in a second, then less often.
        TransportError::Connection(C::ConnectionClosed(close))
            if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
        {
            LinkEnd::TurnedAway
        }
        TransportError::Connection(C::TransportError(_) | C::ConnectionClosed(_) | C::VersionMismatch) => {
            LinkEnd::Refused
        }
        _ => LinkEnd::Lost,
    }
}

/// Keeps a link to the parent up until the node stops.
pub(crate) async fn dial_parent(
    endpoint: Endpoint,
    parent: NodeId,
    addr: SocketAddr,
    status: Arc<RwLock<Status>>,
    ctx: LinkContext,
) {
    let mut redial = Redial::new();
    let mut warned: Option<(String, Instant)> = None;
    while !ctx.cancel.is_cancelled() {
        // Blocked by the operator, or quarantined by this node's core: wait it out.
        let quarantined = status.read().ok().and_then(|s| s.quarantined.get(&parent).copied());
        let left = quarantined.map_or(0, |until| until.saturating_sub(unix_millis()));
        if left > 0 {
            pause(&ctx.cancel, Duration::from_millis(left)).await;
            continue;
        }
        if ctx.faults.is_blocked(parent) {
            pause(&ctx.cancel, Duration::from_millis(cascade_protocol::limits::REDIAL_MAX_MS)).await;
            continue;
        }
        ctx.traffic.parent_dial();
        let (end, why) = match endpoint.connect(addr, parent).await {
            Ok(link) => {
                let end = run_link(link, LinkRole::Parent, ctx.clone())
                    .instrument(info_span!("peer", peer = %parent))
                    .await;
                (end, "the link ended".to_string())
            }
            Err(e) => (dial_failure(&e), e.to_string()),
        };
        let wait = Duration::from_millis(redial.after(end));
        ctx.traffic.parent_wait(wait.as_millis() as u64);
        if end != LinkEnd::Heard {
            // Said once per reason and interval; the attempts between at debug level.
            let repeat = warned.as_ref().is_some_and(|(last, at)| *last == why && at.elapsed() < WARN_EVERY);
            if repeat {
                debug!(%parent, %addr, reason = %why, ?wait, ?end, "parent link failed again");
            } else {
                warn!(%parent, %addr, reason = %why, ?wait, ?end, "parent link failed; redialing later");
                warned = Some((why, Instant::now()));
            }
        }
        pause(&ctx.cancel, wait).await;
    }
}

/// Sleeps, or returns early when the node stops.
pub(crate) async fn pause(cancel: &CancellationToken, how_long: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(how_long) => {}
        _ = cancel.cancelled() => {}
    }
}
