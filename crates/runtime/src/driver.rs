//! The tokio shell around the node core: it feeds the core what arrives (link
//! events, frames, commands) and executes the effects it asks for — apply a batch
//! to sled and flush it on the blocking pool, hand frames to link writers, close
//! connections, answer callers. It decides nothing.

use crate::faults::Faults;
use crate::links::Outgoing;
use cascade_access::Principal;
use cascade_core::{Command, CommandError, Core, Effect, Input, LinkId, LinkRole, Reply, Status, Ticket};
use cascade_protocol::limits::MAX_GROUP_COMMANDS;
use cascade_protocol::{Frame, LogId, NodeId, PeerError};
use cascade_store::Store;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot, watch, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, warn};

/// How often the published status is refreshed while the node is busy (it is
/// refreshed whenever the inbox runs empty too).
const STATUS_EVERY: Duration = Duration::from_millis(50);

/// A log advanced: every delta up to `seq` is durable here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The log.
    pub log: LogId,
    /// Its new head.
    pub seq: u64,
}

/// What reaches the driver.
pub(crate) enum Message {
    /// A link is up.
    LinkUp {
        link: LinkId,
        peer: NodeId,
        role: LinkRole,
        outbox: mpsc::Sender<Outgoing>,
        connection: quinn::Connection,
    },
    /// A link is gone.
    LinkDown { link: LinkId, cause: Option<PeerError> },
    /// A frame, holding its share of the inbox byte budget until the core took it.
    Frame { link: LinkId, frame: Frame, budget: OwnedSemaphorePermit },
    /// Close the link to a neighbour.
    Close { peer: NodeId, reason: PeerError },
    /// A connection was refused at admission.
    Refused { remote: String, reason: PeerError },
    /// A command and where to answer it.
    Command { by: Principal, command: Command, reply: oneshot::Sender<Result<Reply, CommandError>> },
    /// Every key a member signed with, as the engine knows them, its current key
    /// first (a read: answered at once, outside any group).
    Keys { node: NodeId, reply: oneshot::Sender<Vec<ed25519_dalek::VerifyingKey>> },
}

struct LinkHandle {
    outbox: mpsc::Sender<Outgoing>,
    connection: quinn::Connection,
}

/// A commit being made durable.
struct Flushing {
    group: u64,
    heads: Vec<(LogId, u64)>,
}

/// What woke the driver.
enum Wake {
    Flushed(Option<Result<(), String>>),
    Cancelled,
    Tick,
    Message(Option<Message>),
}

pub(crate) struct Driver {
    pub(crate) core: Core<Store>,
    pub(crate) store: Store,
    pub(crate) inbox: mpsc::Receiver<Message>,
    pub(crate) status: Arc<RwLock<Status>>,
    pub(crate) applied: broadcast::Sender<Applied>,
    pub(crate) failed: watch::Sender<Option<String>>,
    pub(crate) faults: Arc<Faults>,
    pub(crate) cancel: CancellationToken,
    links: HashMap<LinkId, LinkHandle>,
    replies: HashMap<Ticket, oneshot::Sender<Result<Reply, CommandError>>>,
    next_ticket: Ticket,
    flushing: Option<Flushing>,
    flush_done: mpsc::UnboundedSender<Result<(), String>>,
    flushed: mpsc::UnboundedReceiver<Result<(), String>>,
    published_at: Instant,
}

/// Unix milliseconds now.
pub(crate) fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        core: Core<Store>,
        store: Store,
        inbox: mpsc::Receiver<Message>,
        status: Arc<RwLock<Status>>,
        applied: broadcast::Sender<Applied>,
        failed: watch::Sender<Option<String>>,
        faults: Arc<Faults>,
        cancel: CancellationToken,
    ) -> Driver {
        let (flush_done, flushed) = mpsc::unbounded_channel();
        Driver {
            core,
            store,
            inbox,
            status,
            applied,
            failed,
            faults,
            cancel,
            links: HashMap::new(),
            replies: HashMap::new(),
            next_ticket: 1,
            flushing: None,
            flush_done,
            flushed,
            published_at: Instant::now(),
        }
    }

    /// Runs until the node stops; on a local failure (the store refused a batch or
    /// a flush) it stops feeding the core, reports why, and every caller waiting
    /// for a reply is told the node is unavailable.
    pub(crate) async fn run(mut self) {
        if let Err(reason) = self.serve().await {
            error!(%reason, "the node core stopped: the node no longer changes state");
            let _ = self.failed.send(Some(reason));
        }
        for (_, link) in self.links.drain() {
            link.connection.close(cascade_transport::close::SHUTDOWN.into(), b"node stopping");
        }
    }

    async fn serve(&mut self) -> Result<(), String> {
        loop {
            self.execute_effects()?;
            self.publish_status(false);
            let congested = self.core.is_congested();
            let timer = self.core.poll_timeout();
            let tick = tokio::time::sleep(Duration::from_millis(
                timer.map_or(0, |at| at.saturating_sub(unix_millis())),
            ));
            let wake = tokio::select! {
                biased;
                done = self.flushed.recv() => Wake::Flushed(done),
                _ = self.cancel.cancelled() => Wake::Cancelled,
                _ = tick, if timer.is_some() => Wake::Tick,
                message = self.inbox.recv(), if !congested => Wake::Message(message),
            };
            match wake {
                Wake::Flushed(done) => self.flushed(done)?,
                Wake::Tick => self.core.handle(unix_millis(), Input::Tick),
                Wake::Cancelled | Wake::Message(None) => break,
                Wake::Message(Some(message)) => {
                    self.handle(message);
                    // Take what else is waiting, so that it shares the next commit
                    // (as much as one group holds).
                    for _ in 1..MAX_GROUP_COMMANDS {
                        if self.core.is_full() {
                            break;
                        }
                        match self.inbox.try_recv() {
                            Ok(message) => self.handle(message),
                            Err(_) => break,
                        }
                    }
                }
            }
        }
        // Stopping: what was decided is made durable and answered before the task
        // ends (the commit in flight, then the group that collected meanwhile,
        // which holds the summaries of the tallies still open).
        self.core.handle(unix_millis(), Input::Stopping);
        loop {
            self.execute_effects()?;
            if self.flushing.is_none() {
                break;
            }
            let done = self.flushed.recv().await;
            self.flushed(done)?;
        }
        self.publish_status(true);
        self.store.flush().map_err(|e| e.to_string())
    }

    fn handle(&mut self, message: Message) {
        let now = unix_millis();
        let input = match message {
            Message::LinkUp { link, peer, role, outbox, connection } => {
                self.links.insert(link, LinkHandle { outbox, connection });
                Input::LinkUp { link, peer, role }
            }
            Message::LinkDown { link, cause } => {
                self.links.remove(&link);
                Input::LinkDown { link, cause }
            }
            Message::Frame { link, frame, budget } => {
                self.core.handle(now, Input::Frame { link, frame });
                // The frame is decoded and handled: its bytes no longer count.
                drop(budget);
                return;
            }
            Message::Close { peer, reason } => Input::Close { peer, reason },
            Message::Refused { remote, reason } => Input::Refused { remote, reason },
            Message::Keys { node, reply } => {
                // A revoked member's calls verify with no key.
                let engine = self.core.engine();
                let keys = if engine.is_revoked(node) {
                    Vec::new()
                } else {
                    // Its current key first: the one a pair key is derived from.
                    let current = engine.member(node).map(|m| m.key);
                    let older = engine.keys_of(node).filter(|k| Some(**k) != current).copied();
                    current.into_iter().chain(older).collect()
                };
                let _ = reply.send(keys);
                return;
            }
            Message::Command { by, command, reply } => {
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                self.replies.insert(ticket, reply);
                Input::Command { ticket, by, command }
            }
        };
        self.core.handle(now, input);
    }

    fn execute_effects(&mut self) -> Result<(), String> {
        while let Some(effect) = self.core.poll() {
            match effect {
                Effect::Commit { group, batch } => {
                    if self.faults.store_fails() {
                        return Err("the store refused a write (injected fault)".into());
                    }
                    // Applied before the core's next input, so its reads see it.
                    self.store.apply(&batch).map_err(|e| format!("the store refused a batch: {e}"))?;
                    let heads = batch.heads();
                    let store = self.store.clone();
                    let done = self.flush_done.clone();
                    tokio::task::spawn_blocking(move || {
                        let _ =
                            done.send(store.flush().map_err(|e| format!("flushing the store failed: {e}")));
                    });
                    self.flushing = Some(Flushing { group, heads });
                }
                Effect::Send { link, peer, frame } => self.send(link, peer, Outgoing::Frame(frame)),
                Effect::SendRange { link, peer, log, from, to } => {
                    self.send(link, peer, Outgoing::Range { log, from, to })
                }
                Effect::Close { link, peer, reason } => {
                    if let Some(handle) = self.links.remove(&link) {
                        warn!(%peer, %reason, "closing link");
                        use cascade_transport::close;
                        let code = match reason {
                            PeerError::Misbehaved(_) => close::PROTOCOL,
                            PeerError::Incompatible(cascade_protocol::Incompatibility::AlreadyLinked(_)) => {
                                close::RETRY
                            }
                            PeerError::Incompatible(_) => close::REFUSED,
                        };
                        handle.connection.close(code.into(), reason.to_string().as_bytes());
                    }
                }
                Effect::Reply { ticket, result } => {
                    if let Some(reply) = self.replies.remove(&ticket) {
                        let _ = reply.send(result);
                    }
                }
            }
        }
        Ok(())
    }

    fn flushed(&mut self, done: Option<Result<(), String>>) -> Result<(), String> {
        let Some(flushing) = self.flushing.take() else { return Ok(()) };
        done.unwrap_or_else(|| Err("the flush task ended without an answer".into()))?;
        self.core.handle(unix_millis(), Input::Committed { group: flushing.group });
        for (log, seq) in flushing.heads {
            let _ = self.applied.send(Applied { log, seq });
        }
        Ok(())
    }

    /// Hands an item to a link's writer. A link decided for but since gone is
    /// skipped; a neighbour that cannot keep up is dropped (on reconnect the Hello
    /// exchange resends exactly what it lacks).
    fn send(&mut self, link: LinkId, peer: NodeId, item: Outgoing) {
        let Some(handle) = self.links.get(&link) else { return };
        if handle.outbox.try_send(item).is_err() {
            debug!(%peer, "outbox full or closed; dropping link");
            handle.connection.close(cascade_transport::close::PROTOCOL.into(), b"too slow");
        }
    }

    fn publish_status(&mut self, force: bool) {
        if !force && !self.inbox.is_empty() && self.published_at.elapsed() < STATUS_EVERY {
            return;
        }
        self.published_at = Instant::now();
        let mut status = self.core.status();
        std::mem::swap(&mut *self.status.write().unwrap_or_else(|p| p.into_inner()), &mut status);
    }
}
