//! Whether a provider's node serves a call (服务对接): the decision it makes over
//! its own records before a call reaches the upstream. The runtime's gateway
//! and the deterministic simulator both ask this gate, so a call is admitted by
//! the same rules whichever drives the node. The head's signature is checked
//! before (by whoever holds the keys); everything else is decided here.

use crate::store::StateStore;
use cascade_protocol::call::{endpoint_allowed, CallHead, CallId};
use cascade_protocol::service::{Service, ServiceStatus};
use cascade_protocol::workflow::Resource;
use cascade_protocol::NodeId;
use std::collections::HashMap;
use std::sync::Mutex;

/// How far a call's start may be from the provider's clock; a call outside it, or
/// one whose id was seen, is refused (a relay cannot replay a recorded call).
pub const CALL_WINDOW_MS: u64 = 5 * 60_000;
/// Most call ids a gate remembers within the window (~50 MB at most): beyond,
/// calls are refused until the oldest leave the window.
pub const MAX_CALLS_REMEMBERED: usize = 1_000_000;
/// Most grants whose minute a gate counts at once; beyond, windows of earlier
/// minutes are dropped first (a grant is only counted once its call passed every
/// other check, so only the provider's own grants take room here).
pub const MAX_RATE_WINDOWS: usize = 100_000;

/// Why a call is not served (by the provider's gate, or by a hop on the way).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRefusal {
    /// HTTP status: 400 malformed, 403 no or bad grant or a replay, 404 no such
    /// service, 413 body over a cap, 429 over the rate, 502 no upstream (or it is
    /// down, or a body was tampered with), 503 busy or too many to remember, 504 a
    /// hop could not forward.
    pub status: u16,
    /// Why, for people (the consumer sees it).
    pub reason: String,
    /// Seconds to wait, on 429.
    pub retry_after: Option<u64>,
}

fn refuse(status: u16, reason: impl Into<String>) -> CallRefusal {
    CallRefusal { status, reason: reason.into(), retry_after: None }
}

/// A call the provider serves: the service and its upstream.
#[derive(Clone, Debug)]
pub struct Admitted {
    /// The service called.
    pub service: Service,
    /// Its upstream's base URL.
    pub upstream: String,
}

/// How often, at most, a full replay memory is swept of ids past the window:
/// a sweep visits every id, so it is not done call after call.
const SWEEP_EVERY_MS: u64 = 1_000;

/// A provider's memory of the calls it admitted: ids within the window, and
/// each grant's count in the current minute. It lives in memory: a node that
/// restarts refuses calls started before it booted, so a call it served in an
/// earlier life cannot be replayed in this one. Shared by the calls a node
/// serves at once: each lock covers one map's update, never a store read.
pub struct CallGate {
    booted_ms: u64,
    /// Call ids served, with when they started; and when the memory was last swept.
    seen: Mutex<(HashMap<CallId, u64>, u64)>,
    rates: Mutex<HashMap<String, (u64, u32)>>,
}

impl CallGate {
    /// The gate of a node that booted at `booted_ms` (unix ms).
    pub fn new(booted_ms: u64) -> CallGate {
        CallGate { booted_ms, seen: Mutex::new((HashMap::new(), 0)), rates: Mutex::new(HashMap::new()) }
    }

    /// Decides whether `me` serves the call `head` at `now_ms`, by its records
    /// in `state`: a call never seen, started within the window and after this
    /// node booted; a grant that is this node's own record of it as presented,
    /// unrevoked, current, for the calling node, this service and endpoint; an
    /// active service with an upstream; and room in the grant's rate.
    pub fn admit(
        &self,
        state: &impl StateStore,
        me: NodeId,
        head: &CallHead,
        now_ms: u64,
    ) -> Result<Admitted, CallRefusal> {
        head.check_form().map_err(|e| refuse(400, e.to_string()))?;
        self.first_time(head.id, now_ms)?;
        let read = |e: crate::StoreError| refuse(503, e.to_string());
        let record = state
            .grant(&head.grant.id)
            .map_err(read)?
            .filter(|r| r.grant.provider_node == me)
            .ok_or_else(|| refuse(403, format!("grant {} is not one this node signed", head.grant.id)))?;
        let grant = &record.grant;
        if *grant != head.grant {
            return Err(refuse(403, format!("grant {} is not one this node signed as presented", grant.id)));
        }
        if let Some(at) = record.revoked_at {
            return Err(refuse(403, format!("grant {} was revoked at {at}", grant.id)));
        }
        if !grant.is_current(now_ms / 1000) {
            return Err(refuse(403, format!("grant {} expired at {}", grant.id, grant.expires_at)));
        }
        if grant.grantee_node != head.id.node {
            return Err(refuse(403, format!("grant {} belongs to node {}", grant.id, grant.grantee_node)));
        }
        if grant.resource != Resource::Service(head.service.clone()) {
            return Err(refuse(403, format!("grant {} is for {}", grant.id, grant.resource)));
        }
        if !endpoint_allowed(&grant.endpoints, &head.method, &head.path) {
            return Err(refuse(403, format!("{} {} is not granted", head.method, head.path)));
        }
        let service = state
            .service(&head.service)
            .map_err(read)?
            .filter(|s| s.status == ServiceStatus::Active)
            .ok_or_else(|| refuse(404, format!("service {} is not offered here", head.service)))?;
        let upstream = state
            .upstream(&head.service)
            .map_err(read)?
            .ok_or_else(|| refuse(502, "no upstream configured"))?;
        self.count(&grant.id, grant.rate_limit_per_minute, now_ms)?;
        Ok(Admitted { service, upstream })
    }

    /// Refuses a call started outside the window, before this node booted, or
    /// seen before (a replay by a relay that recorded it).
    fn first_time(&self, id: CallId, now: u64) -> Result<(), CallRefusal> {
        if id.started_ms + CALL_WINDOW_MS < now || id.started_ms > now + CALL_WINDOW_MS {
            return Err(refuse(403, format!("call {id} started outside the accepted window")));
        }
        if id.started_ms < self.booted_ms {
            return Err(refuse(403, format!("call {id} started before this node restarted")));
        }
        let mut guard = self.seen.lock().map_err(|_| refuse(503, "call memory poisoned"))?;
        let (seen, swept_ms) = &mut *guard;
        if seen.len() >= MAX_CALLS_REMEMBERED {
            if now >= *swept_ms + SWEEP_EVERY_MS {
                seen.retain(|_, at| *at + CALL_WINDOW_MS >= now);
                *swept_ms = now;
            }
            if seen.len() >= MAX_CALLS_REMEMBERED {
                return Err(refuse(503, "too many calls to remember"));
            }
        }
        if seen.insert(id, id.started_ms).is_some() {
            return Err(refuse(403, format!("call {id} was served before: a replay")));
        }
        Ok(())
    }

    /// Counts a call against its grant's rate for this minute.
    fn count(&self, grant: &str, per_minute: u32, now: u64) -> Result<(), CallRefusal> {
        let minute = now / 60_000;
        let mut rates = self.rates.lock().map_err(|_| refuse(503, "rate memory poisoned"))?;
        if rates.len() >= MAX_RATE_WINDOWS && !rates.contains_key(grant) {
            rates.retain(|_, (m, _)| *m == minute);
        }
        let entry = match rates.get_mut(grant) {
            Some(entry) => entry,
            None => rates.entry(grant.to_string()).or_insert((minute, 0)),
        };
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if entry.1 >= per_minute {
            let wait = 60 - (now / 1000) % 60;
            return Err(CallRefusal {
                status: 429,
                reason: format!("{per_minute} calls a minute granted"),
                retry_after: Some(wait),
            });
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn id(started_ms: u64, n: u64) -> CallId {
        CallId { node: NodeId::new(370100).unwrap_or_else(|_| unreachable!()), started_ms, n }
    }

    #[test]
    fn a_call_is_admitted_once_within_the_window_and_after_the_boot() {
        let gate = CallGate::new(NOW - 10_000);
        assert!(gate.first_time(id(NOW - 1_000, 1), NOW).is_ok());
        let replay = gate.first_time(id(NOW - 1_000, 1), NOW).unwrap_err();
        assert!(replay.reason.contains("replay"), "{replay:?}");
        assert_eq!(gate.first_time(id(NOW - CALL_WINDOW_MS - 1, 2), NOW).unwrap_err().status, 403);
        assert_eq!(gate.first_time(id(NOW + CALL_WINDOW_MS + 1, 3), NOW).unwrap_err().status, 403);
        // Served in an earlier life, replayed after a restart: refused.
        let before = gate.first_time(id(NOW - 20_000, 4), NOW).unwrap_err();
        assert!(before.reason.contains("restarted"), "{before:?}");
    }

    #[test]
    fn a_grant_gets_its_rate_a_minute_then_429_until_the_next() {
        let gate = CallGate::new(0);
        let minute = NOW - NOW % 60_000;
        for _ in 0..3 {
            assert!(gate.count("g", 3, minute + 1_000).is_ok());
        }
        let over = gate.count("g", 3, minute + 50_000).unwrap_err();
        assert_eq!((over.status, over.retry_after), (429, Some(10)));
        assert!(gate.count("other", 3, minute + 50_000).is_ok());
        assert!(gate.count("g", 3, minute + 60_000).is_ok());
    }
}
