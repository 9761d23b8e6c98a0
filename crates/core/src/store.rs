//! What the core needs from a store: a narrow trait of reads, and the batch of
//! writes it decides. The store keeps what the core decided; it knows no catalog,
//! organization or access rules and never decodes a delta body on the write path.

use crate::audit::SealedRecord;
use crate::workflow::{Application, GrantRecord};
use cascade_access::{Role, TokenKind};
use cascade_protocol::catalog::CatalogEntry;
use cascade_protocol::routed::{MessageId, Routed};
use cascade_protocol::service::Service;
use cascade_protocol::{CodecError, Delta, LogId, NodeId, Scope};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Errors of a store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The storage backend failed (I/O, sled).
    #[error("storage: {0}")]
    Backend(String),
    /// A stored record does not decode: the files are damaged.
    #[error("corrupt record {key}: {reason}")]
    Corrupt {
        /// Hex of the key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A value could not be encoded.
    #[error("encode: {0}")]
    Encode(String),
    /// A write would give a log a hole or make it go backwards: refused.
    #[error("log {log}: expected seq {expected}, got {got}")]
    OutOfOrder {
        /// The log.
        log: LogId,
        /// The next seq the store expects.
        expected: u64,
        /// What was offered.
        got: u64,
    },
    /// The store was written by an incompatible version of Cascade.
    #[error("store format {found}, this version reads format {expected}: {hint}")]
    Format {
        /// The format found.
        found: u32,
        /// The format this version reads.
        expected: u32,
        /// What the operator can do.
        hint: &'static str,
    },
}

impl From<CodecError> for StoreError {
    fn from(e: CodecError) -> Self {
        StoreError::Encode(e.to_string())
    }
}

/// An account of the admin interface, as stored (with its password hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// Login name.
    pub username: String,
    /// Credit code of the organization it belongs to.
    pub organization: String,
    /// Its roles.
    pub roles: Vec<Role>,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Unix seconds.
    pub created_at: u64,
    /// A disabled account cannot log in, and its tokens open nothing.
    pub disabled: bool,
    /// Bumped when its password changes or it is disabled: sessions opened
    /// before (of an older generation) are over.
    pub generation: u64,
}

/// A bearer token, as stored (only its secret's hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Its id.
    pub id: String,
    /// Session or API token.
    pub kind: TokenKind,
    /// The account it acts as.
    pub username: String,
    /// What it is for.
    pub label: String,
    /// Hash of the whole bearer token.
    pub secret_hash: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds; sessions expire, API tokens do not.
    pub expires_at: Option<u64>,
    /// Whether it was revoked.
    pub revoked: bool,
    /// The account's generation when it was issued (a session of an older one is over).
    pub generation: u64,
}

/// A new state of one of this node's own catalog entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnWrite {
    /// A draft: the working copy is kept as it is, until it is published.
    Draft {
        /// Its scope.
        scope: Scope,
        /// The entry.
        entry: CatalogEntry,
    },
    /// A signed state: its delta (materialized in the same batch) is the working
    /// copy now, so a store need not keep the entry a second time.
    Signed {
        /// Its scope.
        scope: Scope,
        /// The entry (for stores that keep their own copy).
        entry: CatalogEntry,
        /// Whether a draft was the working copy until now (and is to be dropped).
        replaces_draft: bool,
    },
}

impl OwnWrite {
    /// The entry and its scope.
    pub fn entry(&self) -> (Scope, &CatalogEntry) {
        match self {
            OwnWrite::Draft { scope, entry } | OwnWrite::Signed { scope, entry, .. } => (*scope, entry),
        }
    }
}

/// A materialized view row derived from an admitted delta: the store points at the
/// delta (it does not decode or copy its body) and may index the decoded entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Materialize {
    /// A catalog entry's latest state from `origin` (last in log order wins).
    Catalog {
        /// The log the delta belongs to.
        log: LogId,
        /// The entry, as the delta says (decoded once, by the engine).
        entry: Arc<CatalogEntry>,
        /// The delta.
        delta: Arc<Delta>,
        /// When this node stores it (unix ms): what "modified since" asks about
        /// here, whatever the origin's clock said.
        stored_ms: u64,
    },
    /// A service's latest state (its id names its origin).
    Service {
        /// The service, as the delta says.
        service: Arc<Service>,
        /// The delta.
        delta: Arc<Delta>,
    },
    /// A dataset version (its entry names its origin).
    Dataset {
        /// The manifest, as the delta says.
        manifest: Arc<cascade_protocol::dataset::Manifest>,
        /// The delta.
        delta: Arc<Delta>,
    },
    /// An organization as registered by `origin`.
    Organization {
        /// The registering node.
        origin: NodeId,
        /// The credit code.
        code: String,
        /// The delta.
        delta: Arc<Delta>,
    },
}

/// Node-wide counters kept with the state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The last resource-code sequence number handed out.
    pub code_seq: u64,
    /// The last routed message this node sent (its `MessageId::seq`).
    pub routed_seq: u64,
    /// The last application this node's consumers submitted.
    pub application_seq: u64,
    /// The last grant this node issued.
    pub grant_seq: u64,
}

/// A workflow message this node passed on toward its destination (an
/// application, a withdrawal, a decision or a revocation between two other
/// nodes): what a hub's operator sees of the applications passing through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RelayRecord {
    /// The routed message.
    pub message: MessageId,
    /// `apply`, `withdraw`, `decision` or `revoke`.
    pub kind: String,
    /// The node that sent it.
    pub from: NodeId,
    /// The node it is for.
    pub to: NodeId,
    /// The application (or, for a revocation, the grant) it is about.
    pub subject: String,
    /// What it says: the resource applied for, the state decided, the reason revoked.
    pub detail: String,
    /// When this node took it over (unix ms).
    pub at_ms: u64,
}

impl RelayRecord {
    /// The grant this record says its provider revoked: a revocation passed on
    /// from the node that signed the grant (grant ids name their provider node).
    pub fn revoked_grant(&self) -> Option<&str> {
        let own =
            self.subject.strip_prefix(&self.from.to_string()).is_some_and(|rest| rest.starts_with("-g"));
        (self.kind == "revoke" && own).then_some(self.subject.as_str())
    }

    /// The record of `message`, passed on at `at_ms`.
    pub fn of(message: &Routed, at_ms: u64) -> RelayRecord {
        use cascade_protocol::routed::RoutedBody;
        let (subject, detail) = match &message.body {
            RoutedBody::Apply(a) => (a.id.clone(), format!("{} for {}", a.resource, a.consumer)),
            RoutedBody::Withdraw { application } => (application.clone(), String::new()),
            RoutedBody::Decision(d) => (d.application.clone(), d.state.as_str().to_string()),
            RoutedBody::Revoke { grant, reason } => (grant.clone(), reason.clone()),
        };
        RelayRecord {
            message: message.id,
            kind: message.body.kind().to_string(),
            from: message.id.from,
            to: message.to,
            subject,
            detail,
            at_ms,
        }
    }
}

/// Everything one group commit writes, applied atomically by the store.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    /// Admitted deltas, in log order (each log contiguous with what is stored).
    pub deltas: Vec<Arc<Delta>>,
    /// View rows derived from them.
    pub materialize: Vec<Materialize>,
    /// Own catalog entries, by code (later writes of one code win).
    pub own: Vec<(String, OwnWrite)>,
    /// Accounts.
    pub accounts: Vec<AccountRecord>,
    /// Tokens.
    pub tokens: Vec<TokenRecord>,
    /// Tokens deleted (login sessions ended or expired), after `tokens` are written.
    pub forget_tokens: Vec<String>,
    /// The upstream URLs of this node's own services, by service id (kept here
    /// only: they never travel).
    pub upstreams: Vec<(String, String)>,
    /// Routed messages taken over for a next hop (kept until it acknowledges them).
    pub outbox: Vec<(NodeId, Arc<Routed>)>,
    /// Routed messages a next hop acknowledged: forgotten, after `outbox` is written.
    pub outbox_done: Vec<(NodeId, MessageId)>,
    /// Ids of routed messages seen, with when they may be forgotten (unix s).
    pub seen: Vec<(MessageId, u64)>,
    /// Forget the seen ids that may be forgotten before this time (unix s).
    pub sweep_seen: Option<u64>,
    /// Workflow messages this node passed on (kept `ROUTED_TTL_S`, swept with
    /// the seen ids).
    pub relayed: Vec<RelayRecord>,
    /// Applications (this node's consumers' and its providers'), whole.
    pub applications: Vec<Application>,
    /// Grants (issued here or received), whole.
    pub grants: Vec<GrantRecord>,
    /// Audit records, sealed by the core, in order.
    pub audit: Vec<SealedRecord>,
    /// Node counters, when they changed.
    pub meta: Option<Meta>,
}

impl WriteBatch {
    /// Whether it writes nothing.
    pub fn is_empty(&self) -> bool {
        self.deltas.is_empty()
            && self.materialize.is_empty()
            && self.own.is_empty()
            && self.accounts.is_empty()
            && self.tokens.is_empty()
            && self.forget_tokens.is_empty()
            && self.upstreams.is_empty()
            && self.outbox.is_empty()
            && self.outbox_done.is_empty()
            && self.seen.is_empty()
            && self.sweep_seen.is_none()
            && self.relayed.is_empty()
            && self.applications.is_empty()
            && self.grants.is_empty()
            && self.audit.is_empty()
            && self.meta.is_none()
    }

    /// The last seq of each log this batch appends to.
    pub fn heads(&self) -> Vec<(LogId, u64)> {
        let mut heads: Vec<(LogId, u64)> = Vec::new();
        for d in &self.deltas {
            match heads.iter_mut().find(|(log, _)| *log == d.log) {
                Some(head) => head.1 = head.1.max(d.seq),
                None => heads.push((d.log, d.seq)),
            }
        }
        heads
    }
}

/// What the core reads back when it boots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootState {
    /// Node counters.
    pub meta: Meta,
    /// The audit log's last record (seq and hash), if any.
    pub audit_head: Option<(u64, [u8; 32])>,
    /// The time of that record (ms; 0 with none, or when it cannot be read).
    pub audit_head_at_ms: u64,
    /// Every stored login session: account, id and expiry (unix s).
    pub sessions: Vec<(String, String, u64)>,
    /// How many accounts exist.
    pub accounts: usize,
    /// Routed messages waiting for each next hop, in the order they were taken over.
    pub outbox: Vec<(NodeId, Arc<Routed>)>,
    /// Applications waiting for this node's approvers: id and due time (unix s).
    pub pending: Vec<(String, u64)>,
}

/// The reads the core makes while deciding. Writes reach the store only as
/// `WriteBatch`es through the driver; what a batch wrote that these reads return,
/// the core keeps in memory until the batch is reported durable.
pub trait StateStore {
    /// This node's own working copy of an entry (any status), with its scope.
    fn own_entry(&self, code: &str) -> Result<Option<(Scope, CatalogEntry)>, StoreError>;
    /// An account.
    fn account(&self, username: &str) -> Result<Option<AccountRecord>, StoreError>;
    /// A token.
    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// A service as last registered (by any node).
    fn service(&self, id: &str) -> Result<Option<Service>, StoreError>;
    /// A dataset version of `origin`'s entry `code` (the latest when `version`
    /// is none).
    fn manifest(
        &self,
        origin: NodeId,
        code: &str,
        version: Option<u64>,
    ) -> Result<Option<cascade_protocol::dataset::Manifest>, StoreError>;
    /// Whether this node passed on its provider's revocation of `grant` (a hub
    /// learns revocations from the messages it relays).
    fn revocation_relayed(&self, grant: &str) -> Result<bool, StoreError>;
    /// The upstream URL of one of this node's own services.
    fn upstream(&self, id: &str) -> Result<Option<String>, StoreError>;
    /// Whether a routed message with this id was seen (and not yet forgotten).
    fn seen(&self, id: MessageId) -> Result<bool, StoreError>;
    /// An application this node holds (as consumer's node or provider's node).
    fn application(&self, id: &str) -> Result<Option<Application>, StoreError>;
    /// A grant this node issued or holds.
    fn grant(&self, id: &str) -> Result<Option<GrantRecord>, StoreError>;
    /// The stored hash of audit record `seq`, if the store holds it.
    fn audit_hash(&self, seq: u64) -> Result<Option<[u8; 32]>, StoreError>;
    /// Counters and heads read at boot.
    fn boot(&self) -> Result<BootState, StoreError>;
    /// Every stored delta, log by log, each log in order (for restoring the engine).
    fn deltas(&self) -> Box<dyn Iterator<Item = Result<Delta, StoreError>> + '_>;
}
