//! The node's API for its callers: typed forms of the core's commands, and the
//! credential work that must happen before a command reaches the core (minting
//! tokens, hashing passwords: see `login`) — random or slow work kept off the
//! core's thread.

use crate::login::LoginError;
use crate::node::Node;
use cascade_access::{
    bootstrap_matches, mint_token, parse_token, secret_hash, Permission, Principal, Role, TokenKind,
};
use cascade_core::{Account, Command, CommandError, Reply, SavedEntry, StateStore};
use cascade_protocol::catalog::EntryDraft;
use cascade_protocol::org::Organization;
use cascade_protocol::{AuditCheckpoint, NodeId, Scope};
use std::net::IpAddr;

/// A bearer token issued to a caller: shown once (and never by `Debug`).
#[derive(Clone, serde::Serialize, utoipa::ToSchema)]
pub struct IssuedToken {
    /// The bearer token (secret).
    pub token: String,
    /// Its id.
    pub id: String,
    /// The account it acts as.
    pub username: String,
    /// Unix seconds, for sessions.
    pub expires_at: Option<u64>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"<secret>")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A new password, and for one's own account the current one (no `Debug`: it
/// holds secrets).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The new password (checked against the policy).
    pub password: String,
    /// The current password: required to change one's own.
    #[serde(default)]
    pub current: Option<String>,
}

pub(crate) fn unexpected(reply: Reply) -> CommandError {
    CommandError::Unavailable(format!("unexpected reply {reply:?}"))
}

impl Node {
    /// Creates or updates an own catalog entry (see `Command::SaveEntry`).
    pub async fn save_entry(&self, by: Principal, draft: EntryDraft) -> Result<SavedEntry, CommandError> {
        self.entry_change(by, Command::SaveEntry(Box::new(draft))).await
    }

    /// Publishes an own draft or withdrawn entry.
    pub async fn publish(
        &self,
        by: Principal,
        code: &str,
        scope: Option<Scope>,
    ) -> Result<SavedEntry, CommandError> {
        self.entry_change(by, Command::PublishEntry { code: code.into(), scope }).await
    }

    /// Withdraws an own published entry.
    pub async fn withdraw(&self, by: Principal, code: &str) -> Result<SavedEntry, CommandError> {
        self.entry_change(by, Command::WithdrawEntry { code: code.into() }).await
    }

    async fn entry_change(&self, by: Principal, command: Command) -> Result<SavedEntry, CommandError> {
        match self.execute(by, command).await? {
            Reply::Entry(saved) => Ok(*saved),
            other => Err(unexpected(other)),
        }
    }

    /// Registers (or updates) an organization of this node's subtree.
    pub async fn register_organization(
        &self,
        by: Principal,
        org: Organization,
    ) -> Result<Organization, CommandError> {
        match self.execute(by, Command::RegisterOrganization(org)).await? {
            Reply::Organization(org) => Ok(org),
            other => Err(unexpected(other)),
        }
    }

    /// Revokes a member; returns the seq of the revocation delta.
    pub async fn revoke(&self, by: Principal, node: NodeId, reason: String) -> Result<u64, CommandError> {
        match self.execute(by, Command::Revoke { node, reason }).await? {
            Reply::Revoked { delta_seq, .. } => Ok(delta_seq),
            other => Err(unexpected(other)),
        }
    }

    /// Signs the audit log's head into the federation log now (auditors only);
    /// answers the checkpoint and the seq of its delta.
    pub async fn checkpoint_audit(&self, by: Principal) -> Result<(AuditCheckpoint, u64), CommandError> {
        match self.execute(by, Command::CheckpointAudit).await? {
            Reply::Checkpoint { checkpoint, delta_seq } => Ok((checkpoint, delta_seq)),
            other => Err(unexpected(other)),
        }
    }

    /// Creates an account: the password is checked against the policy and hashed
    /// off the async workers, then the core decides.
    pub async fn create_account(
        &self,
        by: Principal,
        username: String,
        password: String,
        organization: String,
        roles: Vec<Role>,
    ) -> Result<Account, CommandError> {
        // Refuse before spending Argon2 work on a caller who may not do this.
        if let Err(reason) = by.check(Permission::ManageAccounts, |_| None) {
            self.execute(by, Command::Denied { what: "account.create".into(), reason: reason.clone() })
                .await?;
            return Err(CommandError::Forbidden(reason));
        }
        let password_hash = self.hash_password(password).await?;
        let command = Command::CreateAccount { username, organization, roles, password_hash };
        self.account_change(by, command).await
    }

    /// Sets an account's password (its owner, or an administrator): checked
    /// against the policy and hashed here; the core ends the account's sessions.
    ///
    /// An owner changing their own password proves it with `current` (checked
    /// under the login throttles): a stolen session alone cannot take the account
    /// over. An administrator setting another account's password needs none.
    pub async fn set_password(
        &self,
        by: Principal,
        username: String,
        change: PasswordChange,
        from: Option<IpAddr>,
    ) -> Result<Account, LoginError> {
        // Refuse before spending Argon2 work on a caller who may not do this.
        let own = by.username.as_deref() == Some(username.as_str());
        let allowed = if own { Ok(()) } else { by.check(Permission::ManageAccounts, |_| None) };
        if let Err(reason) = allowed {
            self.execute(by, Command::Denied { what: "account.password".into(), reason: reason.clone() })
                .await?;
            return Err(CommandError::Forbidden(reason).into());
        }
        if own {
            let Some(current) = change.current else {
                return Err(CommandError::field("current", "your current password is required").into());
            };
            match self.check_password(&username, current, from).await {
                Err(LoginError::BadCredentials) => {
                    return Err(CommandError::field("current", "not your current password").into());
                }
                checked => checked?,
            }
        }
        let password_hash = self.hash_password(change.password).await?;
        Ok(self.account_change(by, Command::SetPassword { username, password_hash }).await?)
    }

    /// Disables or enables an account (an administrator).
    pub async fn set_disabled(
        &self,
        by: Principal,
        username: String,
        disabled: bool,
    ) -> Result<Account, CommandError> {
        self.account_change(by, Command::SetDisabled { username, disabled }).await
    }

    async fn account_change(&self, by: Principal, command: Command) -> Result<Account, CommandError> {
        match self.execute(by, command).await? {
            Reply::Account(account) => Ok(account),
            other => Err(unexpected(other)),
        }
    }

    /// Issues a long-lived API token for `username` (default: the caller's own).
    pub async fn issue_token(
        &self,
        by: Principal,
        username: Option<String>,
        label: String,
    ) -> Result<IssuedToken, CommandError> {
        let minted = mint_token(TokenKind::Api, &mut rand::rngs::OsRng);
        let command =
            Command::IssueToken { username, label, id: minted.id.clone(), secret_hash: minted.secret_hash };
        match self.execute(by, command).await? {
            Reply::Token { id, username, expires_at } => {
                Ok(IssuedToken { token: minted.token, id, username, expires_at })
            }
            other => Err(unexpected(other)),
        }
    }

    /// Revokes an API token or ends a session (its owner or an administrator).
    pub async fn revoke_token(&self, by: Principal, id: String) -> Result<(), CommandError> {
        match self.execute(by, Command::RevokeToken { id }).await? {
            Reply::TokenRevoked { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Who a bearer token is, if it is valid now: the bootstrap token, or a session
    /// or API token of an account.
    pub fn authenticate(&self, bearer: &str) -> Result<Option<Principal>, CommandError> {
        if bootstrap_matches(bearer, self.admin_token()) {
            return Ok(Some(Principal::bootstrap()));
        }
        let Some((_, id)) = parse_token(bearer) else { return Ok(None) };
        let Some(record) = self.store().token(id)? else { return Ok(None) };
        let presented = secret_hash(bearer);
        let matches = bootstrap_matches(&presented, &record.secret_hash);
        let now = cascade_transport::unix_now();
        if !matches || record.revoked || record.expires_at.is_some_and(|t| t <= now) {
            return Ok(None);
        }
        let Some(account) = self.store().account(&record.username)? else { return Ok(None) };
        // A disabled account opens nothing; a session ends with its account's
        // generation (a password change, a disable).
        let stale = record.kind == TokenKind::Session && record.generation != account.generation;
        if account.disabled || stale {
            return Ok(None);
        }
        Ok(Some(Principal {
            actor: format!("account:{}", account.username),
            username: Some(account.username),
            organization: Some(account.organization),
            roles: account.roles,
        }))
    }

    /// Allows a read `permission` for `by`, or refuses it with the reason (the
    /// refusal is audited by the core).
    pub async fn check(&self, by: &Principal, permission: Permission<'_>) -> Result<(), CommandError> {
        match by.check(permission, |_| None) {
            Ok(()) => Ok(()),
            Err(reason) => {
                let command = Command::Denied { what: format!("{permission:?}"), reason: reason.clone() };
                self.execute(by.clone(), command).await?;
                Err(CommandError::Forbidden(reason))
            }
        }
    }
}
