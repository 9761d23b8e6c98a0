//! The accept loop for children: a bounded number of handshakes at once, an
//! address that keeps failing them turned away before any cryptography, and
//! members the core refuses (revoked, blocked, quarantined) closed with a reason.
//! Every refusal reaches the core, which counts it and writes it to the audit log
//! by tally, never one record per attempt.

use crate::driver::{unix_millis, Message};
use crate::links::{run_link, LinkContext};
use cascade_access::{address_key, Policy, Throttle};
use cascade_core::{LinkRole, Status};
use cascade_protocol::limits::MAX_CONCURRENT_ADMISSIONS;
use cascade_protocol::{Incompatibility, PeerError};
use cascade_transport::{Endpoint, TransportError};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, info_span, Instrument};

/// Failed handshakes from one address: a few are mistakes (a misconfigured node,
/// a restart with the wrong files); past 16, each doubles the time the address is
/// turned away, up to a minute, so a flood costs one handshake a minute. Ten quiet
/// minutes forget it; 4096 addresses are remembered (the ones failing most).
const HANDSHAKE_POLICY: Policy =
    Policy { free: 16, base_ms: 1_000, max_ms: 60_000, forget_ms: 600_000, capacity: 4096 };

/// Accepts children until the node stops. Every link runs in a task of this loop's
/// set, aborted when the loop ends.
pub(crate) async fn accept_children(endpoint: Endpoint, status: Arc<RwLock<Status>>, ctx: LinkContext) {
    let admissions = Arc::new(Semaphore::new(MAX_CONCURRENT_ADMISSIONS));
    let failures = Arc::new(Mutex::new(Throttle::<IpAddr>::new(HANDSHAKE_POLICY)));
    // Addresses whose handshake failed before they proved they hear us (they may
    // be forged): not held against them, but asked to prove it next time.
    let suspects = Arc::new(Mutex::new(Throttle::<IpAddr>::new(HANDSHAKE_POLICY)));
    let mut links = JoinSet::new();
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            _ = ctx.cancel.cancelled() => None,
            Some(_) = links.join_next(), if !links.is_empty() => continue,
        };
        let Some(incoming) = incoming else { break };
        let ip = address_key(incoming.remote_address().ip());
        let now = unix_millis();
        let throttled = failures.lock().map(|f| f.check(&ip, now).is_err()).unwrap_or(false);
        if throttled {
            incoming.refuse();
            ctx.traffic.handshake_throttled();
            refused(&ctx, ip, Incompatibility::Throttled.into());
            continue;
        }
        // An address that has not yet shown it receives our packets proves it
        // first (a QUIC Retry costs one packet and no state) when the node is
        // under load or the address failed before: a flood from forged addresses
        // cannot hold the handshake slots, and only a proven address's failures
        // count against it.
        let validated = incoming.remote_address_validated();
        let doubted = failures.lock().is_ok_and(|f| f.remembers(&ip, now))
            || suspects.lock().is_ok_and(|s| s.remembers(&ip, now));
        if !validated
            && incoming.may_retry()
            && (doubted || admissions.available_permits() < MAX_CONCURRENT_ADMISSIONS / 2)
        {
            let _ = incoming.retry();
            continue;
        }
        let Ok(admission) = admissions.clone().try_acquire_owned() else {
            debug!(%ip, "too many handshakes in progress; refused");
            incoming.refuse();
            continue;
        };
        let endpoint = endpoint.clone();
        let status = status.clone();
        let failures = if validated { failures.clone() } else { suspects.clone() };
        let ctx = ctx.clone();
        links.spawn(async move {
            let admit = |id: &cascade_certs::NodeIdentity| -> Result<(), Incompatibility> {
                let now = unix_millis();
                let status = status.read().map_err(|_| Incompatibility::Blocked(id.id))?;
                if status.revoked.contains(&id.id) {
                    Err(Incompatibility::Revoked { node: id.id, reason: None })
                } else if let Some(until_ms) = status.quarantined.get(&id.id).filter(|u| **u > now) {
                    Err(Incompatibility::Quarantined { node: id.id, until_ms: *until_ms })
                } else if ctx.faults.is_blocked(id.id) {
                    Err(Incompatibility::Blocked(id.id))
                } else {
                    Ok(())
                }
            };
            let admitted = endpoint.admit(incoming, admit).await;
            drop(admission);
            let reason: PeerError = match admitted {
                Ok(link) => {
                    let peer = link.identity.id;
                    run_link(link, LinkRole::Child, ctx).instrument(info_span!("peer", %peer)).await;
                    return;
                }
                // A member the core or its certificate refuses: known, counted.
                Err(TransportError::Refused(
                    reason @ PeerError::Incompatible(
                        Incompatibility::Revoked { .. }
                        | Incompatibility::Blocked(_)
                        | Incompatibility::Quarantined { .. }
                        | Incompatibility::NotChild { .. },
                    ),
                )) => reason,
                // No certificate of this federation, or no handshake at all.
                Err(TransportError::Refused(reason)) => {
                    unauthenticated(&failures, ip);
                    reason
                }
                Err(e) => {
                    unauthenticated(&failures, ip);
                    Incompatibility::Handshake(e.to_string()).into()
                }
            };
            refused(&ctx, ip, reason);
        });
    }
    links.shutdown().await;
}

/// Counts a handshake that proved no membership against its address (in the
/// throttle when the address was proven, else among the suspects).
fn unauthenticated(failures: &Mutex<Throttle<IpAddr>>, ip: IpAddr) {
    if let Ok(mut f) = failures.lock() {
        f.fail(&ip, unix_millis());
    }
}

/// Tells the core about a refusal, unless its inbox is full (a flood must not
/// hold up the accept loop; the transport counters still count it).
fn refused(ctx: &LinkContext, ip: IpAddr, reason: PeerError) {
    ctx.traffic.handshake_refused();
    let _ = ctx.inbox.try_send(Message::Refused { remote: ip.to_string(), reason });
}
