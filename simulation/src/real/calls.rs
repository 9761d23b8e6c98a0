//! Service calls in real mode: a few nodes provide a service each, for an entry
//! open to unconditional sharing, whose upstream is an HTTP server of the
//! simulator's on 127.0.0.1 that counts every call reaching it; a few other
//! nodes hold a grant for every one of them; each planned call goes from a
//! consumer's gateway along the tree to its provider's and back. At the end,
//! every call answered 200 must have reached its upstream exactly once.

use crate::calls::CallTally;
use crate::workload::{draft, provider_of, service};
use crate::SimError;
use cascade_access::{Principal, Role};
use cascade_core::{Command, Reply};
use cascade_protocol::workflow::{Resource, State};
use cascade_protocol::{NodeId, Scope};
use cascade_runtime::CallRequest;
use cascade_runtime::Node;
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// Nodes providing a service: enough for calls to cross different parts of
/// the tree, few enough to set up in seconds.
const PROVIDERS: usize = 4;

/// Nodes whose consumers call.
const CONSUMERS: usize = 8;

/// How long the set-up may take to reach every consumer (services and grants
/// travel by sync like any change).
const SET_UP_WITHIN: Duration = Duration::from_secs(120);

/// The entry each provider offers its service for: numbered so the workload's
/// draft makes it open to unconditional sharing (granted at once).
const SERVICE_ENTRY: &str = "3/900000";

/// A call answered: the upstream's answer came back.
const SERVED: u16 = 200;

/// The services, their consumers and what the calls found.
pub(super) struct RealCalls {
    /// (provider node, service id).
    services: Vec<(NodeId, String)>,
    consumers: Vec<NodeId>,
    /// How often each call (by number) reached an upstream.
    reached: Arc<Mutex<HashMap<u64, u32>>>,
    next: Arc<AtomicU64>,
    tally: Arc<Mutex<CallTally>>,
    /// Calls answered 200, by number.
    answered: Arc<Mutex<Vec<u64>>>,
    /// Calls answered 200 with another body than the upstream gave.
    altered: Arc<AtomicU64>,
}

fn err(e: impl std::fmt::Display) -> SimError {
    SimError::Node(e.to_string())
}

impl RealCalls {
    /// Registers the services, grants them to the consumers and waits until
    /// every consumer holds every grant; `node` finds a running node.
    pub(super) async fn set_up(
        ids: &[NodeId],
        node: impl Fn(NodeId) -> Option<Node>,
        rng: &mut impl Rng,
    ) -> Result<RealCalls, SimError> {
        let reached: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
        let upstream = serve_upstream(reached.clone()).await?;
        let mut shuffled = ids.to_vec();
        shuffled.shuffle(rng);
        let providers: Vec<NodeId> = shuffled.iter().copied().take(PROVIDERS).collect();
        let consumers: Vec<NodeId> = shuffled.iter().copied().skip(PROVIDERS).take(CONSUMERS).collect();
        let mut services = Vec::new();
        for p in &providers {
            let at = node(*p).ok_or_else(|| err(format!("provider {p} is not running")))?;
            let code = SERVICE_ENTRY.to_string();
            at.execute(Principal::node(), Command::SaveEntry(Box::new(draft(*p, &code))))
                .await
                .map_err(err)?;
            let publish = Command::PublishEntry { code: code.clone(), scope: Some(Scope::Federation) };
            at.execute(Principal::node(), publish).await.map_err(err)?;
            let mut offered = service(*p, &code);
            offered.rate_limit_per_minute = cascade_protocol::service::MAX_RATE_LIMIT_PER_MINUTE;
            let save =
                Command::SaveService { id: None, draft: Box::new(offered), upstream: upstream.clone() };
            let Reply::Service(own) = at.execute(Principal::node(), save).await.map_err(err)? else {
                return Err(err("registering a service answered something else"));
            };
            services.push((*p, own.service.id.clone()));
        }
        let start = Instant::now();
        for c in &consumers {
            let at = node(*c).ok_or_else(|| err(format!("consumer {c} is not running")))?;
            for (_, id) in &services {
                let arrived = || async { Ok(at.service(id.clone()).await.map_err(err)?.map(|_| ())) };
                poll_until(start, || format!("service {id} did not reach {c}"), arrived).await?;
                let apply = Command::Apply {
                    resource: Resource::Service(id.clone()),
                    consumer: provider_of(*c).credit_code,
                    purpose: "simulated soak".into(),
                    period_days: 30,
                };
                let Reply::Application(a) = at.execute(Principal::node(), apply).await.map_err(err)? else {
                    return Err(err("applying answered something else"));
                };
                let granted = || async {
                    let now = at.application(&Principal::node(), a.id.clone()).await.map_err(err)?;
                    match now.map(|a| a.state) {
                        Some(State::Granted) => Ok(Some(())),
                        Some(s) if s.is_terminal() => Err(err(format!("{} ended {s:?} at {c}", a.id))),
                        _ => Ok(None),
                    }
                };
                poll_until(start, || format!("{} was not granted to {c} in time", a.id), granted).await?;
            }
        }
        Ok(RealCalls {
            services,
            consumers,
            reached,
            next: Arc::default(),
            tally: Arc::default(),
            answered: Arc::default(),
            altered: Arc::default(),
        })
    }

    /// Plans `count` calls over `over`, each by a random consumer to a random
    /// service, and starts the task that makes them on time (at whichever
    /// instance of the consumer's node runs then: a call to a node that is down
    /// is unreachable).
    pub(super) fn start(
        &self,
        count: u64,
        over: Duration,
        live: super::Live,
        rng: &mut impl Rng,
    ) -> tokio::task::JoinHandle<()> {
        let plan: Vec<(Duration, NodeId, String)> = (0..count)
            .map(|k| {
                let c = self.consumers[rng.gen_range(0..self.consumers.len())];
                let (_, service) = self.services[rng.gen_range(0..self.services.len())].clone();
                let offset =
                    if count > 1 { over.mul_f64(k as f64 / (count - 1) as f64) } else { Duration::ZERO };
                (offset, c, service)
            })
            .collect();
        let (next, tally, answered, altered) =
            (self.next.clone(), self.tally.clone(), self.answered.clone(), self.altered.clone());
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut calls = JoinSet::new();
            for (offset, consumer, service) in plan {
                tokio::time::sleep_until(start + offset).await;
                let n = next.fetch_add(1, Ordering::Relaxed);
                let at = super::live_node(&live, consumer);
                let (tally, answered, altered) = (tally.clone(), answered.clone(), altered.clone());
                calls.spawn(async move {
                    let answer = match at {
                        Some(at) => call(&at, consumer, service, n).await,
                        None => Answer::Status(503),
                    };
                    let mut t = tally.lock().unwrap_or_else(|p| p.into_inner());
                    match answer {
                        Answer::Served => {
                            t.served += 1;
                            answered.lock().unwrap_or_else(|p| p.into_inner()).push(n);
                        }
                        Answer::Altered => {
                            t.served += 1;
                            altered.fetch_add(1, Ordering::Relaxed);
                        }
                        Answer::Status(400..=499) => t.refused += 1,
                        Answer::Status(_) => t.unreachable += 1,
                    }
                });
                while calls.try_join_next().is_some() {}
            }
            while calls.join_next().await.is_some() {}
        })
    }

    /// The calls made so far, by outcome.
    pub(super) fn tally(&self) -> CallTally {
        *self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tally as it grows, for the timeline.
    pub(super) fn tally_handle(&self) -> Arc<Mutex<CallTally>> {
        self.tally.clone()
    }

    /// The end-of-run check: calls were answered, each answer is the one its
    /// upstream gave, every call answered 200 reached its upstream exactly once,
    /// and no call reached it twice; `Err` says what broke it.
    pub(super) fn check(&self) -> Result<String, String> {
        let reached = self.reached.lock().unwrap_or_else(|p| p.into_inner());
        let answered = self.answered.lock().unwrap_or_else(|p| p.into_inner());
        let twice = reached.iter().filter(|(_, times)| **times > 1).count();
        let unseen = answered.iter().filter(|n| !reached.contains_key(n)).count();
        let altered = self.altered.load(Ordering::Relaxed);
        if answered.is_empty() || twice + unseen > 0 || altered > 0 {
            return Err(format!(
                "{} calls answered; {twice} reached their upstream twice, {unseen} answered never reached it, \
                 {altered} answered with another body than the upstream gave",
                answered.len()
            ));
        }
        Ok(format!("each of the {} answered calls reached its upstream exactly once", answered.len()))
    }
}

/// Polls `check` every `POLL` until it answers `Some`; fails with `late` once
/// `SET_UP_WITHIN` has passed since `start`, or with `check`'s own error.
async fn poll_until<T, F, Fut>(start: Instant, late: impl Fn() -> String, mut check: F) -> Result<T, SimError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, SimError>>,
{
    loop {
        if let Some(done) = check().await? {
            return Ok(done);
        }
        if start.elapsed() > SET_UP_WITHIN {
            return Err(err(late()));
        }
        tokio::time::sleep(super::POLL).await;
    }
}

/// How a call ended for its caller.
enum Answer {
    /// 200 with the upstream's answer (the call's number), whole.
    Served,
    /// 200 with another body.
    Altered,
    /// Another status (or the body broke off: 502).
    Status(u16),
}

/// One call by `consumer`'s consumers through `at`'s gateway.
async fn call(at: &Node, consumer: NodeId, service: String, n: u64) -> Answer {
    let principal = Principal {
        actor: format!("account:soak-{consumer}"),
        username: Some(format!("soak-{consumer}")),
        organization: Some(provider_of(consumer).credit_code),
        roles: vec![Role::Consumer],
    };
    let (_, body) = tokio::sync::mpsc::channel(1);
    let request = CallRequest {
        service,
        method: "GET".into(),
        path: format!("/records/{n}"),
        headers: Vec::new(),
        body,
    };
    match at.call(&principal, request).await {
        Ok(mut answer) => {
            let mut got = Vec::new();
            while let Some(chunk) = answer.body.recv().await {
                match chunk {
                    Ok(bytes) => got.extend_from_slice(&bytes),
                    Err(_) => return Answer::Status(502),
                }
            }
            match answer.status {
                SERVED if got == n.to_string().as_bytes() => Answer::Served,
                SERVED => Answer::Altered,
                status => Answer::Status(status),
            }
        }
        Err(failure) => Answer::Status(failure.status),
    }
}

/// The upstream: `GET /records/{n}` counts that call `n` reached it and answers
/// `n`. Answers its URL.
async fn serve_upstream(reached: Arc<Mutex<HashMap<u64, u32>>>) -> Result<String, SimError> {
    use axum::extract::{Path, State};
    type Reached = Arc<Mutex<HashMap<u64, u32>>>;
    let record = |State(reached): State<Reached>, Path(n): Path<u64>| async move {
        *reached.lock().unwrap_or_else(|p| p.into_inner()).entry(n).or_default() += 1;
        n.to_string()
    };
    let app = axum::Router::new().route("/records/{n}", axum::routing::get(record)).with_state(reached);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(err)?;
    let url = format!("http://{}", listener.local_addr().map_err(err)?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
