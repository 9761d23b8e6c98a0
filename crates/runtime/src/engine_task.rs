//! The engine task: owns the sync engine and the store's write path. Events from
//! links and requests from the admin interface arrive on one channel; each group of
//! them is applied to the store in one batch and one flush (group commit) before any
//! frame is sent or any publish acknowledged.

use crate::catalog::{decide, CatalogError, CatalogOp, SavedEntry};
use crate::links::Outgoing;
use crate::status::{PeerStatus, Snapshot, VvEntry};
use cascade_access::{Permission, Principal};
use cascade_protocol::catalog::CatalogEntry;
use cascade_protocol::catalog::FieldError;
use cascade_protocol::{
    Action, Delta, DeltaBody, Engine, EngineError, Event, Frame, NodeId, RejectReason, Scope,
};
use cascade_store::{AuditEntry, Store, StoreError};
use cascade_transport::unix_now;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

/// Most commands handled in one group commit: bounds the latency of the first
/// request in a group while letting 256 publishes share one flush.
pub(crate) const MAX_GROUP: usize = 256;

/// Most deltas in one group commit: a catch-up arrives as frames of 512 deltas, and
/// a group of them all would hold back acknowledgements of local publishes.
pub(crate) const MAX_GROUP_DELTAS: usize = 4096;

/// Capacity of the engine's inbox. Link readers wait when it is full, which pushes
/// back on peers through QUIC flow control instead of growing memory.
pub(crate) const INBOX_CAPACITY: usize = 1024;

/// Capacity of the applied-delta notification channel; a subscriber that lags
/// further misses notifications (and is told so by `broadcast`).
pub(crate) const APPLIED_CAPACITY: usize = 4096;

/// A log advanced: every delta up to `seq` is durable here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The log.
    pub log: cascade_protocol::LogId,
    /// Its new head.
    pub seq: u64,
}

/// A request to the engine task.
pub(crate) enum Command {
    /// A link to a neighbour is up; `generation` tells this link from earlier ones.
    LinkUp {
        peer: NodeId,
        generation: u64,
        role: &'static str,
        outbox: mpsc::Sender<Outgoing>,
        connection: quinn::Connection,
    },
    /// A link is gone.
    LinkDown { peer: NodeId, generation: u64 },
    /// A frame from a link, holding its share of the inbox byte budget.
    Frame { peer: NodeId, generation: u64, frame: Frame, budget: tokio::sync::OwnedSemaphorePermit },
    /// Originate a delta.
    Originate { scope: Scope, body: DeltaBody, reply: oneshot::Sender<Result<Delta, String>> },
    /// Close the link to a neighbour (a blocked link).
    Drop { peer: NodeId, reason: String },
    /// Revoke a node, cut off at what this node holds of it now.
    Revoke { node: NodeId, reason: String, reply: oneshot::Sender<Result<Delta, String>> },
    /// Change this node's own catalog.
    Catalog {
        op: CatalogOp,
        /// Who asks: authorized and audited in this group, against the state the
        /// change will apply to. `None` for the node's own tools (simulator, benches).
        by: Option<Principal>,
        reply: oneshot::Sender<Result<SavedEntry, CatalogError>>,
    },
}

struct Link {
    generation: u64,
    role: &'static str,
    outbox: mpsc::Sender<Outgoing>,
    connection: quinn::Connection,
    last_frame_at: Option<u64>,
}

/// What one group of commands produced, executed after the flush.
#[derive(Default)]
struct Pending {
    deltas: Vec<Delta>,
    own: Vec<(Scope, CatalogEntry)>,
    /// Actions for neighbours, with the link generation they were decided for.
    sends: Vec<(Option<u64>, Action)>,
    replies: Vec<Reply>,
    /// Federation events for the audit log, appended with the group.
    audit: Vec<AuditEntry>,
}

/// An answer held back until the group is durable.
enum Reply {
    Delta(oneshot::Sender<Result<Delta, String>>, Result<Delta, String>),
    Catalog(oneshot::Sender<Result<SavedEntry, CatalogError>>, Result<SavedEntry, CatalogError>),
}

impl Pending {
    /// This node's own entry as it will be after this group.
    fn own_entry(&self, store: &Store, code: &str) -> Result<Option<(Scope, CatalogEntry)>, CatalogError> {
        if let Some(own) = self.own.iter().rev().find(|(_, e)| e.code == code) {
            return Ok(Some(own.clone()));
        }
        Ok(store.own_entry(code)?)
    }
}

/// A federation event for the audit log.
fn event(kind: &str, detail: String) -> AuditEntry {
    AuditEntry { actor: "federation".into(), org: None, kind: kind.into(), detail }
}

pub(crate) struct EngineTask {
    pub(crate) engine: Engine,
    pub(crate) store: Store,
    pub(crate) snapshot: Arc<RwLock<Snapshot>>,
    pub(crate) inbox: mpsc::Receiver<Command>,
    applied: tokio::sync::broadcast::Sender<Applied>,
    links: HashMap<NodeId, Link>,
    counters: Snapshot,
    /// When each neighbour was last seen fully in sync (unix seconds).
    in_sync_at: HashMap<NodeId, u64>,
}

impl EngineTask {
    pub(crate) fn new(
        engine: Engine,
        store: Store,
        snapshot: Arc<RwLock<Snapshot>>,
        inbox: mpsc::Receiver<Command>,
        applied: tokio::sync::broadcast::Sender<Applied>,
    ) -> Self {
        EngineTask {
            engine,
            store,
            snapshot,
            inbox,
            applied,
            links: HashMap::new(),
            counters: Snapshot::default(),
            in_sync_at: HashMap::new(),
        }
    }

    /// Runs until every sender is gone. A store failure stops the node: the engine
    /// state would otherwise run ahead of what is durable (restart restores it).
    pub(crate) async fn run(mut self) -> Result<(), StoreError> {
        self.publish_snapshot();
        while let Some(first) = self.inbox.recv().await {
            let mut pending = Pending::default();
            self.handle(first, &mut pending);
            for _ in 1..MAX_GROUP {
                if pending.deltas.len() >= MAX_GROUP_DELTAS {
                    break;
                }
                match self.inbox.try_recv() {
                    Ok(cmd) => self.handle(cmd, &mut pending),
                    Err(_) => break,
                }
            }
            if !pending.deltas.is_empty() || !pending.own.is_empty() || !pending.audit.is_empty() {
                let audit = std::mem::take(&mut pending.audit);
                self.store.audit().append(crate::node::unix_millis(), audit)?;
                let own: Vec<&(Scope, CatalogEntry)> = pending.own.iter().collect();
                if let Err(e) = self.store.apply(&pending.deltas, &own) {
                    error!(error = %e, "store refused a batch; stopping the node");
                    return Err(e);
                }
                self.store.flush().await?;
                let mut heads: HashMap<cascade_protocol::LogId, u64> = HashMap::new();
                for d in &pending.deltas {
                    heads.insert(d.log, d.seq);
                }
                for (log, seq) in heads {
                    let _ = self.applied.send(Applied { log, seq });
                }
            }
            for (generation, action) in pending.sends.drain(..) {
                self.execute(generation, action);
            }
            for reply in pending.replies.drain(..) {
                match reply {
                    Reply::Delta(tx, result) => drop(tx.send(result)),
                    Reply::Catalog(tx, result) => drop(tx.send(result)),
                }
            }
            self.publish_snapshot();
        }
        Ok(())
    }

    fn handle(&mut self, cmd: Command, pending: &mut Pending) {
        let now = unix_now();
        match cmd {
            Command::LinkUp { peer, generation, role, outbox, connection } => {
                if let Some(old) = self.links.remove(&peer) {
                    old.connection.close(cascade_transport::close::REFUSED.into(), b"replaced");
                    let actions = self.engine.handle(now, Event::PeerDown { peer });
                    self.collect(actions, pending);
                }
                info!(%peer, role, "link up");
                pending.audit.push(event("peer.connected", format!("{peer} ({role})")));
                self.links.insert(peer, Link { generation, role, outbox, connection, last_frame_at: None });
                let actions = self.engine.handle(now, Event::PeerUp { peer });
                self.collect(actions, pending);
            }
            Command::Drop { peer, reason } => {
                let generation = self.links.get(&peer).map(|l| l.generation);
                pending.sends.push((generation, Action::Disconnect { peer, reason }));
            }
            Command::LinkDown { peer, generation } => {
                if self.links.get(&peer).is_some_and(|l| l.generation == generation) {
                    self.links.remove(&peer);
                    info!(%peer, "link down");
                    pending.audit.push(event("peer.disconnected", peer.to_string()));
                    let actions = self.engine.handle(now, Event::PeerDown { peer });
                    self.collect(actions, pending);
                }
            }
            Command::Frame { peer, generation, frame, budget } => {
                match self.links.get_mut(&peer) {
                    Some(link) if link.generation == generation => link.last_frame_at = Some(now),
                    _ => return,
                }
                let actions = self.engine.handle(now, Event::Frame { peer, frame });
                // The frame is decoded and handled: its bytes no longer count.
                drop(budget);
                self.collect(actions, pending);
            }
            Command::Originate { scope, body, reply } => {
                let result = self.originate(now, scope, body, pending).map_err(|e| e.to_string());
                pending.replies.push(Reply::Delta(reply, result));
            }
            Command::Revoke { node, reason, reply } => {
                let mut actions = Vec::new();
                let result = self.engine.revoke(now, node, reason, &mut actions);
                self.collect(actions, pending);
                if result.is_ok() {
                    self.counters.deltas_originated += 1;
                }
                pending.replies.push(Reply::Delta(reply, result.map_err(|e| e.to_string())));
            }
            Command::Catalog { op, by, reply } => {
                let result = self.catalog(now, op, by, pending);
                pending.replies.push(Reply::Catalog(reply, result));
            }
        }
    }

    fn originate(
        &mut self,
        now: u64,
        scope: Scope,
        body: DeltaBody,
        pending: &mut Pending,
    ) -> Result<Delta, EngineError> {
        let mut actions = Vec::new();
        let result = self.engine.originate(now, scope, &body, &mut actions);
        // Executed even on error: a new log's Join may already be admitted.
        self.collect(actions, pending);
        match &result {
            Ok(_) => self.counters.deltas_originated += 1,
            Err(EngineError::Refused(_)) => {}
            Err(e) => warn!(error = %e, "could not originate"),
        }
        result
    }

    fn catalog(
        &mut self,
        now: u64,
        op: CatalogOp,
        by: Option<Principal>,
        pending: &mut Pending,
    ) -> Result<SavedEntry, CatalogError> {
        let store = self.store.clone();
        let me = self.engine.me().id;
        let (kind, code) = match &op {
            CatalogOp::Save(draft) => ("catalog.save", draft.code.clone()),
            CatalogOp::Publish(code, _) => ("catalog.publish", Some(code.clone())),
            CatalogOp::Withdraw(code) => ("catalog.withdraw", Some(code.clone())),
        };
        // The entry's current provider, as this group will see it.
        let before = match &code {
            Some(code) => pending.own_entry(&store, code)?.map(|(_, e)| e.provider),
            None => None,
        };
        if let Some(who) = &by {
            let parent_of = |c: &str| store.organization_at(c, me).ok().flatten().and_then(|o| o.parent);
            let mut providers: Vec<&str> = before.iter().map(String::as_str).collect();
            if let CatalogOp::Save(draft) = &op {
                providers.push(&draft.provider);
            }
            if let Some(code) = &code {
                if before.is_none() && !matches!(op, CatalogOp::Save(_)) {
                    return Err(CatalogError::NotFound(code.clone()));
                }
            }
            for provider in providers {
                if let Err(reason) = who.check(Permission::EditCatalog { provider }, &parent_of) {
                    pending.audit.push(AuditEntry {
                        actor: who.actor.clone(),
                        org: who.organization.clone(),
                        kind: "access.denied".into(),
                        detail: format!("{kind} {}: {reason}", code.as_deref().unwrap_or("(new)")),
                    });
                    return Err(CatalogError::Forbidden(reason));
                }
            }
        }
        let decision = decide(
            op,
            self.engine.me().id,
            |code| pending.own_entry(&store, code),
            || Ok(store.next_code_seq()?),
            |code| Ok(store.organization_at(code, me)?.is_some()),
        )?;
        let mut saved = decision.saved;
        if decision.emit {
            let delta = self
                .originate(now, saved.scope, DeltaBody::Catalog(saved.entry.clone()), pending)
                .map_err(|e| match e {
                    EngineError::Refused(RejectReason::Invalid(reason)) => {
                        CatalogError::Invalid(FieldError { field: "entry".into(), reason })
                    }
                    other => CatalogError::Conflict(other.to_string()),
                })?;
            saved.delta_seq = Some(delta.seq);
        }
        pending.own.push((saved.scope, saved.entry.clone()));
        if let Some(who) = by {
            let moved = match &before {
                Some(old) if *old != saved.entry.provider => format!(" (was {old})"),
                _ => String::new(),
            };
            pending.audit.push(AuditEntry {
                actor: who.actor,
                org: who.organization,
                kind: kind.into(),
                detail: format!(
                    "{} v{} {} {} provider {}{moved}",
                    saved.entry.code,
                    saved.entry.version,
                    saved.entry.status.as_str(),
                    saved.scope.as_str(),
                    saved.entry.provider
                ),
            });
        }
        Ok(saved)
    }

    fn collect(&mut self, actions: Vec<Action>, pending: &mut Pending) {
        for action in actions {
            match action {
                Action::Persist(deltas) => {
                    let me = self.engine.me().id;
                    self.counters.deltas_in += deltas.iter().filter(|d| d.log.origin != me).count() as u64;
                    for d in &deltas {
                        let kind = if d.log.origin == me { "delta.originated" } else { "delta.accepted" };
                        pending.audit.push(event(kind, format!("{} #{}", d.log, d.seq)));
                    }
                    pending.deltas.extend(deltas);
                }
                Action::Reject(r) => {
                    warn!(peer = %r.peer, log = %r.log, seq = r.seq, reason = %r.reason, "rejected delta");
                    pending.audit.push(event(
                        "delta.rejected",
                        format!("{} #{} from {}: {}", r.log, r.seq, r.peer, r.reason),
                    ));
                    *self.counters.rejected.entry(r.reason.label().to_string()).or_default() += 1;
                }
                other => {
                    let peer = match &other {
                        Action::Send { peer, .. }
                        | Action::SendRange { peer, .. }
                        | Action::Disconnect { peer, .. } => Some(*peer),
                        Action::Persist(_) | Action::Reject(_) => None,
                    };
                    let generation = peer.and_then(|p| self.links.get(&p)).map(|l| l.generation);
                    pending.sends.push((generation, other));
                }
            }
        }
    }

    /// Executes a neighbour action, unless the link it was decided for has since
    /// been replaced (a stale action must not reach, or cut, the new link).
    fn execute(&mut self, generation: Option<u64>, action: Action) {
        let current = |peer: &NodeId| self.links.get(peer).map(|l| l.generation);
        let target = match &action {
            Action::Send { peer, .. } | Action::SendRange { peer, .. } | Action::Disconnect { peer, .. } => {
                *peer
            }
            Action::Persist(_) | Action::Reject(_) => return,
        };
        if generation.is_none() || current(&target) != generation {
            return;
        }
        let (peer, item) = match action {
            Action::Send { peer, frame } => {
                if let Frame::Deltas(ds) = &frame {
                    self.counters.deltas_out += ds.len() as u64;
                }
                (peer, Outgoing::Frame(frame))
            }
            Action::SendRange { peer, log, from, to } => {
                self.counters.deltas_out += to.saturating_sub(from) + 1;
                (peer, Outgoing::Range { log, from, to })
            }
            Action::Disconnect { peer, reason } => {
                if let Some(link) = self.links.remove(&peer) {
                    warn!(%peer, %reason, "disconnecting");
                    link.connection.close(cascade_transport::close::REFUSED.into(), reason.as_bytes());
                    let _ = self.engine.handle(unix_now(), Event::PeerDown { peer });
                }
                return;
            }
            Action::Persist(_) | Action::Reject(_) => return,
        };
        let Some(link) = self.links.get(&peer) else {
            return;
        };
        if link.outbox.try_send(item).is_err() {
            // A neighbour that cannot keep up is dropped; on reconnect the Hello
            // exchange resends exactly what it lacks.
            debug!(%peer, "outbox full or closed; dropping link");
            link.connection.close(cascade_transport::close::PROTOCOL.into(), b"too slow");
            if let Some(link) = self.links.remove(&peer) {
                drop(link);
                let _ = self.engine.handle(unix_now(), Event::PeerDown { peer });
            }
        }
    }

    fn publish_snapshot(&mut self) {
        let now = unix_now();
        let greeted: HashMap<NodeId, bool> = self.engine.peers().collect();
        let mut lags = HashMap::new();
        for id in self.links.keys() {
            let lag = self.engine.peer_lag(*id);
            if lag == 0 {
                self.in_sync_at.insert(*id, now);
            }
            let since = self.in_sync_at.get(id).copied().unwrap_or(now);
            lags.insert(*id, (lag, if lag == 0 { 0 } else { now.saturating_sub(since) }));
        }
        let mut snap = Snapshot {
            peers: self
                .links
                .iter()
                .map(|(id, link)| {
                    let state =
                        if greeted.get(id).copied().unwrap_or(false) { "connected" } else { "syncing" };
                    let (lag_deltas, lag_seconds) = lags.get(id).copied().unwrap_or((0, 0));
                    (
                        *id,
                        PeerStatus {
                            id: *id,
                            role: link.role,
                            state,
                            last_frame_at: link.last_frame_at,
                            lag_deltas,
                            lag_seconds,
                        },
                    )
                })
                .collect(),
            version_vector: self
                .engine
                .version_vector()
                .into_iter()
                .map(|(log, seq)| VvEntry { origin: log.origin, scope: log.scope, seq })
                .collect(),
            children: self
                .engine
                .members()
                .filter(|m| m.parent == Some(self.engine.me().id))
                .map(|m| m.id)
                .collect(),
            revoked: self.engine.revoked().collect(),
            deltas_in: self.counters.deltas_in,
            deltas_originated: self.counters.deltas_originated,
            deltas_out: self.counters.deltas_out,
            rejected: self.counters.rejected.clone(),
        };
        std::mem::swap(&mut *self.snapshot.write().unwrap_or_else(|p| p.into_inner()), &mut snap);
    }
}
