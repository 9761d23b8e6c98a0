//! What the core reports about itself: the sync view and the metrics it owns.

use cascade_metrics::{counters, Collect, Exposition, Kind};
use cascade_protocol::{Fault, NodeId, RejectReason, Scope};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Which end of the tree a link leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkRole {
    /// The link to this node's parent.
    Parent,
    /// A link to one of this node's children.
    Child,
}

impl LinkRole {
    /// "parent" or "child".
    pub fn as_str(self) -> &'static str {
        match self {
            LinkRole::Parent => "parent",
            LinkRole::Child => "child",
        }
    }
}

/// A node learning its own logs back from its neighbours (see `Core` recovery).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RecoveryStatus {
    /// While it waits to hear from a neighbour: since when (unix s).
    pub waiting_since: Option<u64>,
    /// The parent it waits for, if any.
    pub waiting_for: Option<NodeId>,
    /// Whether it also waits for one of its children.
    pub waiting_for_child: bool,
    /// Its own logs a neighbour holds more of, coming back by sync.
    pub behind: Vec<BehindLog>,
}

/// An own log a neighbour holds more of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BehindLog {
    /// Which own log.
    pub scope: Scope,
    /// The head held here.
    pub held: u64,
    /// The head a neighbour said it holds.
    pub announced: u64,
}

/// One linked neighbour as seen now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerStatus {
    /// The neighbour.
    pub id: NodeId,
    /// Parent or child.
    pub role: LinkRole,
    /// "connected" (its Hello arrived) or "syncing" (waiting for its Hello).
    pub state: &'static str,
    /// Unix seconds of the last frame received, if any.
    pub last_frame_at: Option<u64>,
    /// Deltas this node holds that the neighbour may hold and (as far as we know) lacks.
    pub lag_deltas: u64,
    /// Seconds since the neighbour was last fully in sync (0 when in sync).
    pub lag_seconds: u64,
}

/// One log's head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VvEntry {
    /// The origin of the log.
    pub origin: NodeId,
    /// Its scope.
    pub scope: Scope,
    /// The highest contiguous seq held.
    pub seq: u64,
}

counters! {
    /// Sync traffic of a node.
    pub struct SyncCounters {
        /// Deltas received from neighbours and accepted.
        deltas_in => counter "cascade_deltas_in_total",
        /// Deltas sent to neighbours.
        deltas_out => counter "cascade_deltas_out_total",
        /// Deltas signed by this node.
        deltas_originated => counter "cascade_deltas_originated_total",
    }
}

counters! {
    /// Group commits of a node.
    pub struct CommitCounters {
        /// Groups made durable.
        groups => counter "cascade_commits_total",
        /// Commands decided.
        commands => counter "cascade_commands_total",
        /// Commands refused because of the caller (invalid, forbidden, not found, conflict).
        refused => counter "cascade_commands_refused_total",
        /// Audit records written.
        audit_records => gauge "cascade_audit_records",
    }
}

counters! {
    /// Routed messages through a node.
    pub struct RoutedCounters {
        /// Routed messages this node originated.
        sent => counter "cascade_routed_sent_total",
        /// Routed messages taken over for another node.
        relayed => counter "cascade_routed_relayed_total",
        /// Routed messages delivered here.
        delivered => counter "cascade_routed_delivered_total",
        /// Copies that arrived again (resends) and were acknowledged, not taken again.
        duplicates => counter "cascade_routed_duplicates_total",
        /// Routed messages dropped: revoked senders, expired, or undeliverable.
        dropped => counter "cascade_routed_dropped_total",
    }
}

counters! {
    /// Applications waiting at a node.
    pub struct WorkflowGauges {
        /// Applications waiting for this node's approvers.
        pending => gauge "cascade_applications_pending",
        /// Of those, how many are past their due time (10 working days by default).
        overdue => gauge "cascade_applications_overdue",
    }
}

/// Routed messages waiting for each next hop.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RoutedPending(pub BTreeMap<NodeId, u64>);

impl Collect for RoutedPending {
    fn collect(&self, out: &mut Exposition) {
        let hops: Vec<(String, u64)> = self.0.iter().map(|(hop, n)| (hop.to_string(), *n)).collect();
        out.labelled(
            "cascade_routed_pending",
            Kind::Gauge,
            "Routed messages stored here waiting for their next hop to acknowledge them, by next hop.",
            "next_hop",
            hops.iter().map(|(hop, n)| (hop.as_str(), *n)),
        );
    }
}

/// Deltas refused, by reason: every reason always present.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rejections([u64; RejectReason::LABELS.len()]);

impl Rejections {
    /// Counts one.
    pub fn add(&mut self, reason: &RejectReason) {
        self.0[reason.index()] += 1;
    }

    /// The count of one reason label.
    pub fn get(&self, label: &str) -> u64 {
        RejectReason::LABELS.iter().position(|l| *l == label).map_or(0, |i| self.0[i])
    }

    /// Every reason with its count.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        RejectReason::LABELS.iter().copied().zip(self.0.iter().copied())
    }
}

impl Serialize for Rejections {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

/// An object with every reason's count (the API's schema of it).
impl utoipa::PartialSchema for Rejections {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let count = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0));
        ObjectBuilder::new()
            .description(Some("Deltas rejected, by reason: every reason always present."))
            .additional_properties(Some(count))
            .into()
    }
}

impl utoipa::ToSchema for Rejections {}

impl Collect for Rejections {
    fn collect(&self, out: &mut Exposition) {
        out.labelled(
            "cascade_deltas_rejected_total",
            Kind::Counter,
            "Deltas rejected, by reason.",
            "reason",
            self.iter(),
        );
    }
}

/// Links ended because of the peer, by fault class.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PeerFaults {
    /// Links closed because the peer broke the protocol.
    pub misbehaved: u64,
    /// Links closed or refused because the peer may not be linked with.
    pub incompatible: u64,
}

impl PeerFaults {
    /// Counts one.
    pub fn add(&mut self, fault: Fault) {
        match fault {
            Fault::PeerMisbehaved => self.misbehaved += 1,
            Fault::PeerIncompatible => self.incompatible += 1,
            Fault::Caller | Fault::Local => {}
        }
    }
}

impl Collect for PeerFaults {
    fn collect(&self, out: &mut Exposition) {
        out.labelled(
            "cascade_peer_faults_total",
            Kind::Counter,
            "Links ended or refused because of the peer, by fault class.",
            "fault",
            [
                (Fault::PeerMisbehaved.label(), self.misbehaved),
                (Fault::PeerIncompatible.label(), self.incompatible),
            ],
        );
    }
}

/// The sync state of a node.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    /// Neighbours currently linked.
    pub peers: BTreeMap<NodeId, PeerStatus>,
    /// Version vector: head seq of every log held.
    pub version_vector: Vec<VvEntry>,
    /// Children known from their certificates (linked or not).
    pub children: BTreeSet<NodeId>,
    /// Revoked nodes.
    pub revoked: BTreeSet<NodeId>,
    /// Neighbours refused for now (after relaying junk), until when (unix ms).
    pub quarantined: BTreeMap<NodeId, u64>,
    /// Sync traffic.
    pub sync: SyncCounters,
    /// Deltas rejected, by reason.
    pub rejected: Rejections,
    /// Links ended because of the peer.
    pub peer_faults: PeerFaults,
    /// Group commits.
    pub commits: CommitCounters,
    /// Routed messages.
    pub routed: RoutedCounters,
    /// Routed messages waiting, by next hop.
    pub routed_pending: RoutedPending,
    /// Applications waiting here.
    pub workflow: WorkflowGauges,
    /// Set while the node originates nothing because it is learning its own logs
    /// back from its neighbours.
    pub recovering: Option<RecoveryStatus>,
    /// The latest audit checkpoint this node signed, as its witnesses hold it.
    pub audit_checkpoint: Option<cascade_protocol::AuditCheckpoint>,
}

impl Status {
    /// The head of one log (0 when not held).
    pub fn head(&self, origin: NodeId, scope: Scope) -> u64 {
        self.version_vector.iter().find(|v| v.origin == origin && v.scope == scope).map_or(0, |v| v.seq)
    }
}

impl Collect for Status {
    fn collect(&self, out: &mut Exposition) {
        out.add(&self.sync).add(&self.rejected).add(&self.peer_faults).add(&self.commits);
        out.add(&self.routed).add(&self.routed_pending).add(&self.workflow);
    }
}
