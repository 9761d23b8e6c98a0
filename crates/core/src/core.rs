//! The node core: one pure state machine. Inputs arrive through [`Core::handle`]
//! (link events, frames, commands, commit completions); effects leave through
//! [`Core::poll`] (write a batch durably, send, close, reply). It reads state
//! through [`StateStore`] and never touches a socket, a clock or a disk.
//!
//! Group commit lives here: every change of a group — the deltas it admits or
//! signs, their materialization, own entries, accounts, tokens and the audit
//! records saying who did it — leaves as one `Effect::Commit`. Sends and replies
//! decided in a group are held until the driver reports that group durable
//! (`Input::Committed`), so nothing is acknowledged, originated or passed on
//! from a neighbour before it would survive a crash; only deltas relayed from
//! beyond the neighbours go on at once (see `may_forward_now`). While one group
//! is being made durable the next one collects.

use crate::audit::{AuditEvent, Chain};
use crate::catalog::CatalogOp;
use crate::command::{Command, CommandError, Reply};
use crate::status::{
    CommitCounters, LinkRole, PeerFaults, PeerStatus, Rejections, RoutedCounters, Status, SyncCounters,
    VvEntry,
};
use crate::store::{
    AccountRecord, BootState, Materialize, Meta, StateStore, StoreError, TokenRecord, WriteBatch,
};
use cascade_access::Principal;
use cascade_protocol::catalog::CatalogEntry;
use cascade_protocol::limits::{
    LINK_REPLACE_MS, MAX_GROUP_COMMANDS, MAX_GROUP_DELTAS, MAX_QUARANTINE_MS, MAX_REJECTIONS_PER_LINK,
    QUARANTINE_MS, REJECTIONS_WINDOW_MS, SEEN_SWEEP_S,
};
use cascade_protocol::routed::MessageId;
use cascade_protocol::service::Service;
use cascade_protocol::{
    Action, Admitted, DeltaBody, Engine, EngineError, Event, Frame, LogId, MembershipVerifier, NodeId,
    PeerError, Scope,
};
use ed25519_dalek::SigningKey;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// Identifies one link (one connection) to a neighbour, unique within a node's
/// life; the driver picks it. A newer link of the same neighbour replaces an older
/// one, and effects decided for the older one are dropped by the driver.
pub type LinkId = u64;

/// Identifies a command, so that its reply finds the caller.
pub type Ticket = u64;

/// Something that happened to the node.
#[derive(Debug)]
pub enum Input {
    /// A link to a neighbour is up (its identity checked by the transport).
    LinkUp {
        /// The link.
        link: LinkId,
        /// The neighbour.
        peer: NodeId,
        /// Parent or child.
        role: LinkRole,
    },
    /// A link is gone; `cause` says so when the peer was at fault.
    LinkDown {
        /// The link.
        link: LinkId,
        /// Why, when the peer broke the protocol or may not talk to us.
        cause: Option<PeerError>,
    },
    /// A frame arrived on a link.
    Frame {
        /// The link.
        link: LinkId,
        /// The frame.
        frame: Frame,
    },
    /// The link to a neighbour must close (an operator blocked it).
    Close {
        /// The neighbour.
        peer: NodeId,
        /// Why.
        reason: PeerError,
    },
    /// A connection attempt was refused at admission.
    Refused {
        /// Where it came from (an address, without its port).
        remote: String,
        /// Why.
        reason: PeerError,
    },
    /// A caller asks for a change.
    Command {
        /// Where the reply goes.
        ticket: Ticket,
        /// Who asks.
        by: Principal,
        /// What.
        command: Command,
    },
    /// The batch of this group is durable.
    Committed {
        /// The group.
        group: u64,
    },
    /// The time `poll_timeout` named has come.
    Tick,
    /// The node is stopping: every open tally is closed with its summary, so what
    /// a flood cost is on record before the process ends.
    Stopping,
}

/// Something the driver must do.
#[derive(Debug)]
pub enum Effect {
    /// Apply this batch atomically and make it durable, then report
    /// `Input::Committed`. Until then the core reads what the batch wrote from
    /// memory, so the driver may apply it in the background.
    Commit {
        /// The group.
        group: u64,
        /// What it writes.
        batch: Box<WriteBatch>,
    },
    /// Send a frame on a link.
    Send {
        /// The link.
        link: LinkId,
        /// The neighbour.
        peer: NodeId,
        /// The frame.
        frame: Frame,
    },
    /// Stream the stored deltas `from..=to` of `log` on a link, in batches.
    SendRange {
        /// The link.
        link: LinkId,
        /// The neighbour.
        peer: NodeId,
        /// The log.
        log: LogId,
        /// First seq.
        from: u64,
        /// Last seq.
        to: u64,
    },
    /// Close a link.
    Close {
        /// The link.
        link: LinkId,
        /// The neighbour.
        peer: NodeId,
        /// Why.
        reason: PeerError,
    },
    /// Answer a command.
    Reply {
        /// The command.
        ticket: Ticket,
        /// Its outcome.
        result: Result<Reply, CommandError>,
    },
}

/// The identity a node runs with.
pub struct Identity {
    /// Its delta-signing key (its certificate's key).
    pub key: SigningKey,
    /// Its certificate chain, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// Checks other members' chains against the federation root.
    pub verifier: Box<dyn MembershipVerifier>,
    /// The key this node signed with before its current certificate, when its
    /// logs are to be handed over to the new key (see `Engine::hand_over`).
    pub previous_key: Option<SigningKey>,
}

/// Why a core could not boot.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The store failed or is damaged.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The engine refused the stored state or the identity.
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
}

mod peers;
mod recovery;
mod routing;
mod witness;

struct Link {
    id: LinkId,
    role: LinkRole,
    /// When it came up.
    up_ms: u64,
    last_frame_ms: Option<u64>,
    in_sync_ms: u64,
    /// Its Hello arrived: what it lacks of the logs went out first, so routed
    /// messages (which may depend on those deltas: a new key, a registration) follow.
    greeted: bool,
    /// Deltas it relayed that every honest relay would have refused, counted
    /// since `junk_since_ms` (a window of `REJECTIONS_WINDOW_MS`).
    junk: u32,
    junk_since_ms: u64,
}

/// A neighbour refused for a while after it relayed junk.
#[derive(Clone, Copy, Debug)]
struct Quarantine {
    until_ms: u64,
    /// How many times it was dropped: each doubles the next refusal.
    strikes: u32,
}

/// What a group wrote that the core reads back, kept until the store holds it
/// (a driver may apply a batch while the core decides the next group).
#[derive(Default)]
pub(crate) struct Written {
    pub(crate) own: HashMap<String, (Scope, CatalogEntry)>,
    pub(crate) accounts: HashMap<String, AccountRecord>,
    pub(crate) tokens: HashMap<String, TokenRecord>,
    pub(crate) services: HashMap<String, Service>,
    pub(crate) upstreams: HashMap<String, String>,
    /// The latest dataset version of own entries, by code.
    pub(crate) versions: HashMap<String, cascade_protocol::dataset::Manifest>,
    pub(crate) seen: HashSet<MessageId>,
    pub(crate) applications: HashMap<String, crate::workflow::Application>,
    pub(crate) grants: HashMap<String, crate::workflow::GrantRecord>,
    /// Tokens deleted.
    pub(crate) forgotten: HashSet<String>,
}

/// The changes of one group, not yet handed to the driver.
#[derive(Default)]
pub(crate) struct Group {
    pub(crate) batch: WriteBatch,
    held: Vec<Effect>,
    commands: usize,
    pub(crate) written: Written,
    /// Routed messages taken over from each neighbour, acknowledged once durable.
    acks: BTreeMap<NodeId, Vec<MessageId>>,
}

impl Group {
    fn is_empty(&self) -> bool {
        self.batch.is_empty() && self.held.is_empty() && self.acks.is_empty()
    }
}

struct InFlight {
    group: u64,
    held: Vec<Effect>,
    written: Written,
}

/// The node core.
pub struct Core<S> {
    pub(crate) me: NodeId,
    /// This node's signing key (routed messages, grants); the engine signs deltas with it too.
    pub(crate) key: SigningKey,
    pub(crate) engine: Engine,
    pub(crate) store: S,
    pub(crate) now_ms: u64,
    links: BTreeMap<NodeId, Link>,
    pub(crate) group: Group,
    next_group: u64,
    inflight: Option<InFlight>,
    ready: VecDeque<Effect>,
    audit: Chain,
    pub(crate) meta: Meta,
    /// Organizations registered at this node, with their parents (for a
    /// cataloger's scope and for accounts).
    pub(crate) own_orgs: HashMap<String, Option<String>>,
    /// Own entries recently read or changed (see `limits::OWN_ENTRY_CACHE`).
    pub(crate) own_cache: HashMap<String, (Scope, CatalogEntry)>,
    pub(crate) accounts: usize,
    /// Each account's login sessions, oldest first.
    pub(crate) sessions: crate::base::Sessions,
    tallies: crate::tally::Tallies,
    quarantine: BTreeMap<NodeId, Quarantine>,
    sync: SyncCounters,
    rejected: Rejections,
    peer_faults: PeerFaults,
    commits: CommitCounters,
    /// Routed messages waiting for each next hop.
    outbox: BTreeMap<NodeId, routing::HopQueue>,
    routed: RoutedCounters,
    /// How the due dates of applications are counted.
    pub(crate) calendar: crate::calendar::Calendar,
    /// Applications waiting for this node's approvers, with their due times.
    pub(crate) pending: HashMap<String, u64>,
    /// When the seen routed-message ids were last swept (unix s).
    swept_s: u64,
    /// Set while the node waits to hear its own heads from a neighbour.
    recovery: Option<recovery::Recovery>,
    /// The hand-over and Join put off by a recovery.
    hand_over: Option<recovery::HandOver>,
    /// When audit checkpoints were and are next made.
    checkpointing: witness::Checkpointing,
    /// Each neighbour's lag in deltas as last counted, and when (see `LAG_EVERY_MS`).
    lags: BTreeMap<NodeId, u64>,
    lags_at_ms: u64,
}

/// How often, while busy, the status counts again what each neighbour lacks:
/// counting walks every log for every neighbour (a national node: hundreds of
/// logs times dozens of children), and the lag is shown in whole seconds anyway.
const LAG_EVERY_MS: u64 = 1_000;

impl<S: StateStore> Core<S> {
    /// Boots a core from what `store` holds: every stored delta is verified again
    /// (a damaged store is refused, not trusted), and the node's Join is signed if
    /// its log is new — so the first `poll` may already ask for a commit.
    pub fn boot(identity: Identity, store: S, now_ms: u64) -> Result<Core<S>, BootError> {
        let Identity { key, chain, verifier, previous_key } = identity;
        let mut engine = Engine::new(key.clone(), chain, verifier, now_ms / 1000)?;
        let me = engine.me().id;
        let BootState { meta, audit_head, audit_head_at_ms, sessions, accounts, outbox, pending } =
            store.boot()?;
        let mut own_orgs = HashMap::new();
        let mut failure = None;
        let deltas = store.deltas().map_while(|d| match d {
            Ok(d) => Some(d),
            Err(e) => {
                failure = Some(e);
                None
            }
        });
        let restored = engine.restore(deltas, |delta, body| {
            if let (true, DeltaBody::Organization(org)) = (delta.log.origin == me, body) {
                own_orgs.insert(org.credit_code.clone(), org.parent.clone());
            }
        });
        // A store that failed to read ends the stream early: that, not what the
        // engine made of the shortened stream, is the error.
        if let Some(e) = failure {
            return Err(e.into());
        }
        restored?;
        let mut core = Core {
            me,
            key,
            engine,
            store,
            now_ms,
            links: BTreeMap::new(),
            group: Group::default(),
            next_group: 1,
            inflight: None,
            ready: VecDeque::new(),
            audit: Chain::after(audit_head).not_before(audit_head_at_ms),
            meta,
            own_orgs,
            own_cache: HashMap::new(),
            accounts,
            sessions: crate::base::Sessions::from_stored(sessions),
            tallies: crate::tally::Tallies::default(),
            quarantine: BTreeMap::new(),
            sync: SyncCounters::default(),
            rejected: Rejections::default(),
            peer_faults: PeerFaults::default(),
            commits: CommitCounters::default(),
            outbox: BTreeMap::new(),
            routed: RoutedCounters::default(),
            calendar: crate::calendar::Calendar::default(),
            pending: pending.into_iter().collect(),
            swept_s: now_ms / 1000,
            recovery: None,
            hand_over: None,
            checkpointing: witness::Checkpointing::default(),
            lags: BTreeMap::new(),
            lags_at_ms: 0,
        };
        core.checkpointing = witness::Checkpointing::at_boot(now_ms, core.engine.checkpoint(me));
        core.restore_outbox(outbox);
        core.audit("node", None, "node.started", format!("{me} restored its state"));
        if core.needs_recovery() {
            // The hand-over and the Join wait until its own heads are known (a
            // missing previous key is still reported now).
            core.engine.set_recovering(true);
            match core.engine.hand_over(previous_key.as_ref(), &mut Vec::new()) {
                Ok(_) | Err(EngineError::Recovering { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            core.begin_recovery(previous_key);
            return Ok(core);
        }
        core.hand_over_and_join(previous_key.as_ref())?;
        Ok(core)
    }

    /// Hands this node's logs over to its current key if they are signed with
    /// `previous_key`, and starts its log if it has none.
    fn hand_over_and_join(&mut self, previous_key: Option<&SigningKey>) -> Result<(), EngineError> {
        let mut actions = Vec::new();
        let handed_over = self.engine.hand_over(previous_key, &mut actions);
        let joined = handed_over.is_ok().then(|| self.engine.join(&mut actions));
        self.take(actions);
        let handed_over = handed_over?;
        joined.transpose()?;
        if handed_over > 0 {
            let key: String = self.engine.me().key.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
            let detail = format!("{handed_over} logs handed over to key {key}");
            self.audit("node", None, "node.rekey", detail);
        }
        Ok(())
    }

    /// Sets how due dates of applications are counted (working days, holidays).
    pub fn set_calendar(&mut self, calendar: crate::calendar::Calendar) {
        self.calendar = calendar;
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// The sync engine (read-only: heads, members, revocations).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Shares a cache of verified signatures (simulations of many nodes in one process).
    pub fn set_signature_cache(&mut self, cache: std::sync::Arc<cascade_protocol::SignatureCache>) {
        self.engine.set_signature_cache(cache);
    }

    /// Deliberately breaks this core's engine (signatures no longer checked), so the
    /// simulator can prove its invariant checker catches a broken node.
    #[doc(hidden)]
    pub fn testing_skip_signature_checks(&mut self) {
        self.engine.testing_skip_signature_checks();
    }

    /// The store the core reads.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The store, for a driver applying batches to it.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Gives the store back (a simulated crash keeps only what it made durable).
    pub fn into_store(self) -> S {
        self.store
    }

    /// Whether the group collecting now is full while another is being made
    /// durable: the driver should hold further inputs (but `Committed`) until
    /// `poll` hands out the next commit.
    pub fn is_congested(&self) -> bool {
        self.inflight.is_some() && self.is_full()
    }

    /// Whether the group collecting now holds as many commands or deltas as one
    /// group commit may: the driver should let `poll` close it before feeding more.
    pub fn is_full(&self) -> bool {
        self.group.commands >= MAX_GROUP_COMMANDS || self.group.batch.deltas.len() >= MAX_GROUP_DELTAS
    }

    /// Handles one input at unix time `now_ms`.
    pub fn handle(&mut self, now_ms: u64, input: Input) {
        self.now_ms = self.now_ms.max(now_ms);
        match input {
            Input::LinkUp { link, peer, role } => self.link_up(link, peer, role),
            Input::LinkDown { link, cause } => self.link_down(link, cause),
            Input::Frame { link, frame } => {
                let Some(peer) = self.peer_of(link) else { return };
                if let Some(l) = self.links.get_mut(&peer) {
                    l.last_frame_ms = Some(self.now_ms);
                }
                match frame {
                    Frame::Routed(message) => self.on_routed(peer, message),
                    Frame::RoutedAck(ids) => self.on_routed_ack(peer, ids),
                    frame => {
                        let hello = matches!(frame, Frame::Hello { .. });
                        let actions = self.engine.handle(self.now_s(), Event::Frame { peer, frame });
                        self.take(actions);
                        if hello {
                            if let Some(l) = self.links.get_mut(&peer) {
                                l.greeted = true;
                            }
                            self.routed_resume(peer);
                        }
                    }
                }
            }
            Input::Close { peer, reason } => {
                if self.links.contains_key(&peer) {
                    self.close(peer, reason);
                }
            }
            Input::Refused { remote, reason } => {
                self.peer_faults.add(reason.fault());
                self.tally(format!("peer:{remote}"), "peer.refused", reason.label(), reason.to_string());
            }
            Input::Stopping => {
                for (actor, org, kind, detail) in self.tallies.close_all(self.now_ms) {
                    self.audit(&actor, org.as_deref(), kind, detail);
                }
            }
            Input::Tick => {
                for (actor, org, kind, detail) in self.tallies.expire(self.now_ms) {
                    self.audit(&actor, org.as_deref(), kind, detail);
                }
                // Strikes are forgiven after a calm spell as long as the longest refusal.
                let now = self.now_ms;
                self.quarantine.retain(|_, q| q.until_ms + MAX_QUARANTINE_MS > now);
                self.routed_tick();
                self.checkpoint_if_due();
                if self.now_s() >= self.swept_s + SEEN_SWEEP_S {
                    self.swept_s = self.now_s();
                    self.group.batch.sweep_seen = Some(self.swept_s);
                }
            }
            Input::Command { ticket, by, command } => {
                self.group.commands += 1;
                self.commits.commands += 1;
                let result = self.command(&by, command);
                if matches!(&result, Err(e) if e.fault() == cascade_protocol::Fault::Caller) {
                    self.commits.refused += 1;
                }
                self.group.held.push(Effect::Reply { ticket, result });
            }
            Input::Committed { group } => {
                if let Some(inflight) = self.inflight.take_if(|f| f.group == group) {
                    self.commits.groups += 1;
                    self.ready.extend(inflight.held);
                }
            }
        }
        self.settle_recovery();
    }

    /// When the core wants `Input::Tick` next (unix ms), if at all.
    pub fn poll_timeout(&self) -> Option<u64> {
        let sweep = (self.swept_s + SEEN_SWEEP_S) * 1000;
        [self.tallies.deadline(), self.routed_deadline(), self.recovery_deadline()]
            .into_iter()
            .flatten()
            .fold(sweep.min(self.checkpoint_deadline()), u64::min)
            .into()
    }

    /// The next effect to execute, if any.
    pub fn poll(&mut self) -> Option<Effect> {
        if let Some(effect) = self.ready.pop_front() {
            return Some(effect);
        }
        if self.inflight.is_some() || self.group.is_empty() {
            return None;
        }
        // One signature per log per group: the engine signs the last delta of each
        // log this group originated, then persists and pushes them all.
        let mut actions = Vec::new();
        self.engine.seal(&mut actions);
        self.take(actions);
        self.flush_acks();
        let group = std::mem::take(&mut self.group);
        if group.batch.is_empty() {
            // Nothing to make durable: what it decided may go out at once.
            self.ready.extend(group.held);
            return self.ready.pop_front();
        }
        let id = self.next_group;
        self.next_group += 1;
        self.inflight = Some(InFlight { group: id, held: group.held, written: group.written });
        Some(Effect::Commit { group: id, batch: Box::new(group.batch) })
    }

    /// The sync view now, also marking neighbours seen in sync.
    pub fn status(&mut self) -> Status {
        let now = self.now_ms;
        let greeted: HashMap<NodeId, bool> = self.engine.peers().collect();
        let mut peers = BTreeMap::new();
        // Counted again when due, when links came or went, and when the node
        // settles (nothing in flight) with a lag counted mid-commit.
        let settled = self.inflight.is_none() && self.group.is_empty() && self.lags.values().any(|l| *l > 0);
        if now >= self.lags_at_ms + LAG_EVERY_MS || self.lags.len() != self.links.len() || settled {
            self.lags = self.links.keys().map(|id| (*id, self.engine.peer_lag(*id))).collect();
            self.lags_at_ms = now;
        }
        for (id, link) in self.links.iter_mut() {
            let lag = self.lags.get(id).copied().unwrap_or(0);
            if lag == 0 {
                link.in_sync_ms = now;
            }
            let state = if greeted.get(id).copied().unwrap_or(false) { "connected" } else { "syncing" };
            let status = PeerStatus {
                id: *id,
                role: link.role,
                state,
                last_frame_at: link.last_frame_ms.map(|ms| ms / 1000),
                lag_deltas: lag,
                lag_seconds: if lag == 0 { 0 } else { now.saturating_sub(link.in_sync_ms) / 1000 },
            };
            peers.insert(*id, status);
        }
        let mut commits = self.commits.clone();
        commits.audit_records = self.audit.len();
        Status {
            peers,
            version_vector: self
                .engine
                .version_vector()
                .into_iter()
                .map(|(log, seq)| VvEntry { origin: log.origin, scope: log.scope, seq })
                .collect(),
            children: self.engine.members().filter(|m| m.parent == Some(self.me)).map(|m| m.id).collect(),
            revoked: self.engine.revoked().collect(),
            quarantined: self
                .quarantine
                .iter()
                .filter(|(_, q)| q.until_ms > now)
                .map(|(id, q)| (*id, q.until_ms))
                .collect(),
            sync: self.sync.clone(),
            rejected: self.rejected.clone(),
            peer_faults: self.peer_faults.clone(),
            commits,
            routed: self.routed.clone(),
            routed_pending: crate::status::RoutedPending(self.routed_pending()),
            workflow: crate::status::WorkflowGauges {
                pending: self.pending.len() as u64,
                overdue: self.overdue(),
            },
            recovering: self.recovery_status(),
            audit_checkpoint: self.engine.checkpoint(self.me),
        }
    }

    /// Reads what the groups not yet in the store wrote: the collecting one
    /// first, then the one being committed.
    pub(crate) fn unstored<T>(&self, read: impl Fn(&Written) -> Option<T>) -> Option<T> {
        read(&self.group.written).or_else(|| self.inflight.as_ref().and_then(|f| read(&f.written)))
    }

    pub(crate) fn now_s(&self) -> u64 {
        self.now_ms / 1000
    }

    /// Records a failed login by tally: a guessing flood against one account costs
    /// two audit records a window, however fast it guesses.
    pub(crate) fn login_failed(&mut self, username: String, address: Option<String>, reason: &str) {
        let label = match reason {
            "account disabled" => "disabled",
            "throttled" => "throttled",
            _ => "credentials",
        };
        let actor = match address {
            Some(address) => format!("address:{address}"),
            None => format!("account:{username}"),
        };
        self.tally(actor, "login.failure", label, format!("{username}: {reason}"));
    }

    /// Audits a refused request by tally: a caller repeating a forbidden request
    /// costs the audit log two records a window, not one a request (the tally is
    /// per action, named by the first word of `detail`).
    pub(crate) fn denied(&mut self, by: &Principal, detail: String) {
        let action = detail.split([' ', ':']).next().unwrap_or("").to_string();
        self.tally_as(by.actor.clone(), by.organization.clone(), "access.denied", &action, detail);
    }

    /// Counts an event into its tally, writing a record when it opens a window.
    pub(crate) fn tally(&mut self, actor: String, kind: &'static str, reason: &str, detail: String) {
        self.tally_as(actor, None, kind, reason, detail);
    }

    /// `tally` for an actor acting for an organization.
    fn tally_as(
        &mut self,
        actor: String,
        org: Option<String>,
        kind: &'static str,
        reason: &str,
        detail: String,
    ) {
        if let Some((actor, org, kind, detail)) =
            self.tallies.count(self.now_ms, actor, org, kind, reason, detail)
        {
            self.audit(&actor, org.as_deref(), kind, detail);
        }
    }

    /// Seals an audit record into the current group.
    pub(crate) fn audit(&mut self, actor: &str, org: Option<&str>, kind: &str, detail: String) {
        let event = AuditEvent {
            actor: actor.to_string(),
            org: org.map(str::to_string),
            kind: kind.to_string(),
            detail,
        };
        let sealed = self.audit.seal(self.now_ms, event);
        self.group.batch.audit.push(sealed);
    }

    /// Audits an action of `by`.
    pub(crate) fn audit_by(&mut self, by: &Principal, kind: &str, detail: String) {
        let event =
            AuditEvent { actor: by.actor.clone(), org: by.organization.clone(), kind: kind.into(), detail };
        let sealed = self.audit.seal(self.now_ms, event);
        self.group.batch.audit.push(sealed);
    }

    /// Writes the node counters with the current group.
    pub(crate) fn write_meta(&mut self) {
        self.group.batch.meta = Some(self.meta);
    }

    fn command(&mut self, by: &Principal, command: Command) -> Result<Reply, CommandError> {
        match command {
            Command::CheckpointAudit => {
                self.authorize(by, cascade_access::Permission::Audit, "audit.checkpoint")?;
                self.checkpoint_audit()
            }
            Command::SaveEntry(draft) => self.catalog(by, CatalogOp::Save(draft)),
            Command::PublishEntry { code, scope } => self.catalog(by, CatalogOp::Publish { code, scope }),
            Command::WithdrawEntry { code } => self.catalog(by, CatalogOp::Withdraw { code }),
            Command::RegisterOrganization(org) => {
                self.register_organization(by, org).map(Reply::Organization)
            }
            Command::SaveService { id, draft, upstream } => self.save_service(by, id, *draft, upstream),
            Command::RetireService { id } => self.retire_service(by, id),
            Command::PublishVersion { code, content } => self.publish_version(by, code, *content),
            Command::Apply { resource, consumer, purpose, period_days } => {
                self.apply(by, resource, consumer, purpose, period_days)
            }
            Command::Withdraw { id } => self.withdraw(by, id),
            Command::Approve { id, approval } => self.approve(by, id, approval),
            Command::Reject { id, reason } => self.reject(by, id, reason),
            Command::RevokeGrant { id, reason } => self.revoke_grant(by, id, reason),
            Command::Revoke { node, reason } => self.revoke(by, node, reason),
            Command::CreateAccount { username, organization, roles, password_hash } => {
                self.create_account(by, username, organization, roles, password_hash).map(Reply::Account)
            }
            Command::IssueToken { username, label, id, secret_hash } => {
                self.issue_token(by, username, label, id, secret_hash)
            }
            Command::RevokeToken { id } => self.revoke_token(by, id),
            Command::OpenSession { username, id, secret_hash } => {
                self.open_session(username, id, secret_hash)
            }
            Command::SetDisabled { username, disabled } => {
                self.set_disabled(by, username, disabled).map(Reply::Account)
            }
            Command::SetPassword { username, password_hash } => {
                self.set_password(by, username, password_hash).map(Reply::Account)
            }
            Command::LoginFailed { username, address, reason } => {
                self.login_failed(username, address, &reason);
                Ok(Reply::Recorded)
            }
            Command::StartFetch { grant, entry, version } => self.start_fetch(by, grant, entry, version),
            Command::Subscribe { grant, entry, on } => self.subscribe(by, grant, entry, on),
            Command::ChunksCollected { removed, keep_versions } => {
                let kept = match keep_versions {
                    0 => "every version".to_string(),
                    n => format!("the newest {n} versions of each entry"),
                };
                let detail = format!("{removed} chunks no kept version uses removed (keeping {kept})");
                self.audit_by(by, "dataset.gc", detail);
                Ok(Reply::Recorded)
            }
            Command::ChunkRefused { peer, reason, detail } => {
                self.chunk_refused(peer, reason, detail);
                Ok(Reply::Recorded)
            }
            Command::Denied { what, reason } => {
                self.denied(by, format!("{what}: {reason}"));
                Ok(Reply::Recorded)
            }
        }
    }

    /// Checks `by` may do `permission`; a refusal is audited in this group.
    pub(crate) fn authorize(
        &mut self,
        by: &Principal,
        permission: cascade_access::Permission<'_>,
        what: &str,
    ) -> Result<(), CommandError> {
        let own_orgs = &self.own_orgs;
        match by.check(permission, |code| own_orgs.get(code).cloned().flatten()) {
            Ok(()) => Ok(()),
            Err(reason) => {
                self.denied(by, format!("{what}: {reason}"));
                Err(CommandError::Forbidden(reason))
            }
        }
    }

    /// An engine refusal of an origination, as the caller's error: something every
    /// node would refuse (an invalid body names `field`); anything else failed here.
    pub(crate) fn refused(e: EngineError, field: &str) -> CommandError {
        match e {
            EngineError::Refused(cascade_protocol::RejectReason::Invalid(reason)) => {
                CommandError::field(field, reason)
            }
            EngineError::Refused(reason) => CommandError::Conflict(reason.to_string()),
            recovering @ EngineError::Recovering { .. } => CommandError::Busy(recovering.to_string()),
            other => CommandError::Unavailable(other.to_string()),
        }
    }
}
