//! Commands a caller asks the core to decide, and their outcomes.

use crate::workflow::{Application, Approval, GrantRecord};
use cascade_access::Role;
use cascade_protocol::catalog::{CatalogEntry, EntryDraft, FieldError};
use cascade_protocol::org::Organization;
use cascade_protocol::service::{Service, ServiceDraft};
use cascade_protocol::workflow::Resource;
use cascade_protocol::{Fault, NodeId, Scope};
use serde::Serialize;

/// A change to the node's state, decided (authorized, applied and audited) by the
/// core in the group commit that makes it durable.
#[derive(Clone, Debug)]
pub enum Command {
    /// Sign the audit log's head into the node's federation log now (it is also
    /// done every `AUDIT_CHECKPOINT_MS` while the log grows).
    CheckpointAudit,
    /// Create or update an own catalog entry. A draft (or withdrawn entry) is saved
    /// locally; an update of a published entry publishes a new version at once.
    SaveEntry(Box<EntryDraft>),
    /// Publish an own draft or withdrawn entry as a new version.
    PublishEntry {
        /// Its resource code.
        code: String,
        /// How far it travels; fixed at first publication (default federation-wide).
        scope: Option<Scope>,
    },
    /// Withdraw an own published entry (a new version with status withdrawn).
    WithdrawEntry {
        /// Its resource code.
        code: String,
    },
    /// Register (or update) an organization of this node's subtree.
    RegisterOrganization(Organization),
    /// Register a service of one of this node's organizations (`id` none), or
    /// update an active one; a new version travels federation-wide.
    SaveService {
        /// The service to update, if any.
        id: Option<String>,
        /// What the provider says about it.
        draft: Box<ServiceDraft>,
        /// Where this node proxies its calls (kept here only).
        upstream: String,
    },
    /// Publish a version of an own published entry's dataset: its chunks are
    /// stored; the core fills in the entry, version, previous version and time.
    PublishVersion {
        /// The entry's resource code.
        code: String,
        /// The manifest as cut (size, hashes, chunk list, media type, CSV shape).
        content: Box<cascade_protocol::dataset::Manifest>,
    },
    /// Retire an own service (a last version with status retired).
    RetireService {
        /// Its id.
        id: String,
    },
    /// Revoke a member of the federation.
    Revoke {
        /// The node.
        node: NodeId,
        /// Why, for operators.
        reason: String,
    },
    /// Create an account. The password was checked against the policy and hashed
    /// by the caller (Argon2 is too slow for the core's thread).
    CreateAccount {
        /// Login name.
        username: String,
        /// Credit code of its organization (registered at this node).
        organization: String,
        /// Its roles.
        roles: Vec<Role>,
        /// Argon2id PHC string.
        password_hash: String,
    },
    /// Issue a long-lived API token (minted by the caller; only its hash is kept).
    IssueToken {
        /// The account it acts as; default: the caller's own.
        username: Option<String>,
        /// What it is for.
        label: String,
        /// The token's id.
        id: String,
        /// Hash of the bearer token.
        secret_hash: String,
    },
    /// Revoke an API token or end a login session.
    RevokeToken {
        /// Its id.
        id: String,
    },
    /// Disable an account (its sessions end, its tokens open nothing) or enable it.
    SetDisabled {
        /// The account.
        username: String,
        /// Disabled or not.
        disabled: bool,
    },
    /// Set an account's password (hashed by the caller); its sessions end.
    SetPassword {
        /// The account.
        username: String,
        /// Argon2id PHC string.
        password_hash: String,
    },
    /// Open a login session for an account whose password the caller verified.
    OpenSession {
        /// The account.
        username: String,
        /// The session token's id.
        id: String,
        /// Hash of the bearer token.
        secret_hash: String,
    },
    /// Record a failed login, by tally of the address it came from (a stranger
    /// chooses the names it tries, not its address).
    LoginFailed {
        /// The name tried.
        username: String,
        /// The client's address (its throttle key), when known.
        address: Option<String>,
        /// Why it failed.
        reason: String,
    },
    /// Apply for a resource, for a consumer organization of this node.
    Apply {
        /// A service or an entry, anywhere in the federation.
        resource: Resource,
        /// The consumer (credit code).
        consumer: String,
        /// What the data is for.
        purpose: String,
        /// How long access is asked for.
        period_days: u32,
    },
    /// Withdraw a pending application of this node's consumers.
    Withdraw {
        /// The application.
        id: String,
    },
    /// Approve an application waiting at this node.
    Approve {
        /// The application.
        id: String,
        /// What the approver sets.
        approval: Approval,
    },
    /// Reject an application waiting at this node.
    Reject {
        /// The application.
        id: String,
        /// Why (required).
        reason: String,
    },
    /// Revoke a grant this node issued.
    RevokeGrant {
        /// The grant.
        id: String,
        /// Why (required).
        reason: String,
    },
    /// Start fetching a version of an entry's dataset with a grant this node
    /// holds (answers the grant to present).
    StartFetch {
        /// The grant.
        grant: String,
        /// The entry.
        entry: cascade_protocol::service::EntryRef,
        /// The version.
        version: u64,
    },
    /// Subscribe to (or unsubscribe from) an entry's dataset versions with a
    /// grant this node holds (answers the grant).
    Subscribe {
        /// The grant.
        grant: String,
        /// The entry.
        entry: cascade_protocol::service::EntryRef,
        /// Subscribe (true) or end the subscription (false).
        on: bool,
    },
    /// Record a collection of unused chunks (by the node itself).
    ChunksCollected {
        /// Chunks removed.
        removed: u64,
        /// Versions kept per entry (0: all).
        keep_versions: u32,
    },
    /// Audit a chunk request refused at this node (by `admit_chunk`, or because
    /// the chunk is not in the version), by tally of the neighbour it came from.
    ChunkRefused {
        /// The neighbour.
        peer: NodeId,
        /// A short label (the refusal's status).
        reason: &'static str,
        /// What was asked and why it was refused.
        detail: String,
    },
    /// Record a refusal decided outside the core (a read the caller may not make).
    Denied {
        /// What was asked.
        what: String,
        /// Why it was refused.
        reason: String,
    },
}

/// The state an own catalog entry was saved in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SavedEntry {
    /// The entry as stored.
    #[serde(flatten)]
    pub entry: CatalogEntry,
    /// Its scope.
    pub scope: Scope,
    /// Whether it was created (rather than updated).
    #[serde(skip)]
    pub created: bool,
    /// The seq of the delta that published this state, when it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta_seq: Option<u64>,
}

/// An account as shown to operators (no password hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Account {
    /// Login name.
    pub username: String,
    /// Credit code of the organization it belongs to.
    pub organization: String,
    /// Its roles.
    pub roles: Vec<Role>,
    /// Unix seconds.
    pub created_at: u64,
    /// Whether it is disabled.
    pub disabled: bool,
}

impl Account {
    /// The view of a stored account.
    pub fn of(record: &crate::store::AccountRecord) -> Account {
        Account {
            username: record.username.clone(),
            organization: record.organization.clone(),
            roles: record.roles.clone(),
            created_at: record.created_at,
            disabled: record.disabled,
        }
    }
}

/// What a command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// An audit checkpoint, signed at this seq of the node's federation log.
    Checkpoint {
        /// What it witnesses.
        checkpoint: cascade_protocol::AuditCheckpoint,
        /// The seq of its delta.
        delta_seq: u64,
    },
    /// An own entry's new state.
    Entry(Box<SavedEntry>),
    /// A registered organization.
    Organization(Organization),
    /// An own service's new state and its upstream.
    Service(Box<OwnService>),
    /// A revocation, signed at this seq of the node's federation log.
    Revoked {
        /// The revoked node.
        node: NodeId,
        /// The seq of the revocation delta.
        delta_seq: u64,
    },
    /// A created account.
    Account(Account),
    /// An issued token or opened session.
    Token {
        /// Its id.
        id: String,
        /// The account it acts as.
        username: String,
        /// Unix seconds, for sessions.
        expires_at: Option<u64>,
    },
    /// A revoked token.
    TokenRevoked {
        /// Its id.
        id: String,
    },
    /// An application, as it stands after the command.
    Application(Box<Application>),
    /// A grant, as it stands after the command.
    Grant(Box<GrantRecord>),
    /// A published dataset version.
    Dataset(Box<cascade_protocol::dataset::Manifest>),
    /// An event recorded.
    Recorded,
}

/// Why a command was refused, grouped by who is at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A field breaks a rule (the caller's fault; HTTP 422).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The caller may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such thing (404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// This node failed: its store or engine (a local fault; HTTP 503).
    #[error("node unavailable: {0}")]
    Unavailable(String),
    /// This node is at its limit for this kind of work: retry shortly (HTTP 503
    /// with Retry-After). Nobody's fault; nothing was done.
    #[error("busy: {0}")]
    Busy(String),
    /// The caller asked again before a minimum gap passed (HTTP 429 with
    /// Retry-After): the caller's to wait; nothing was done.
    #[error("too soon: {what}")]
    TooSoon {
        /// What may be asked how often.
        what: String,
        /// Seconds until it may be asked again.
        retry_after_s: u64,
    },
}

impl CommandError {
    /// Its class.
    pub fn fault(&self) -> Fault {
        match self {
            CommandError::Unavailable(_) | CommandError::Busy(_) => Fault::Local,
            _ => Fault::Caller,
        }
    }

    /// A 422 naming `field`.
    pub fn field(field: &str, reason: impl Into<String>) -> CommandError {
        CommandError::Invalid(FieldError { field: field.into(), reason: reason.into() })
    }
}

impl From<crate::store::StoreError> for CommandError {
    fn from(e: crate::store::StoreError) -> Self {
        CommandError::Unavailable(e.to_string())
    }
}

/// One of this node's services: as every node sees it, plus its upstream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OwnService {
    /// The service.
    pub service: Service,
    /// Where this node proxies its calls.
    pub upstream: String,
}
