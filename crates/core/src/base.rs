//! Base management decided by the core: organizations, revocations, accounts,
//! API tokens and login sessions — each authorized, applied and audited in the
//! group that makes it durable.

use crate::command::{Account, CommandError, Reply};
use crate::core::Core;
use crate::store::{AccountRecord, StateStore, TokenRecord};
use cascade_access::{Permission, Principal, Role, TokenKind, SESSION_SECONDS};
use cascade_protocol::limits::{
    MAX_ACCOUNTS, MAX_REVOCATION_REASON_BYTES, MAX_SESSIONS_PER_ACCOUNT, MAX_TOKEN_LABEL_BYTES,
};
use cascade_protocol::org::Organization;
use cascade_protocol::{DeltaBody, EngineError, NodeId, RejectReason, Scope};
use std::collections::{HashMap, VecDeque};

/// Longest username, in bytes.
pub const MAX_USERNAME_BYTES: usize = 64;

/// Sessions one login deletes at most (expired ones, or the oldest past the limit).
const MAX_SESSIONS_ENDED_AT_ONCE: usize = 64;

/// Each account's stored login sessions (id and expiry, unix s), oldest first:
/// what `open_session` ends to keep an account within `MAX_SESSIONS_PER_ACCOUNT`.
#[derive(Debug, Default)]
pub(crate) struct Sessions(HashMap<String, VecDeque<(String, u64)>>);

impl Sessions {
    /// From the store's sessions (every session lasts as long, so expiry orders
    /// them by age).
    pub(crate) fn from_stored(mut stored: Vec<(String, String, u64)>) -> Sessions {
        stored.sort_by(|a, b| (a.2, &a.1).cmp(&(b.2, &b.1)));
        let mut sessions = Sessions::default();
        for (username, id, expires) in stored {
            sessions.0.entry(username).or_default().push_back((id, expires));
        }
        sessions
    }

    /// Records a new session of `username`; returns the sessions to delete: the
    /// expired ones, and the oldest beyond the limit — at most
    /// `MAX_SESSIONS_ENDED_AT_ONCE`, so one login's work is bounded whatever an
    /// older store left behind (the next logins take the rest).
    fn open(&mut self, username: &str, id: String, expires: u64, now_s: u64) -> Vec<String> {
        let mine = self.0.entry(username.to_string()).or_default();
        let mut ended = Vec::new();
        while let Some((old, expiry)) = mine.front() {
            let due = *expiry <= now_s || mine.len() >= MAX_SESSIONS_PER_ACCOUNT;
            if !due || ended.len() == MAX_SESSIONS_ENDED_AT_ONCE {
                break;
            }
            ended.push(old.clone());
            mine.pop_front();
        }
        mine.push_back((id, expires));
        ended
    }

    /// Every session of `username` (its password changed or it was disabled).
    fn take(&mut self, username: &str) -> Vec<String> {
        self.0.remove(username).map(|s| s.into_iter().map(|(id, _)| id).collect()).unwrap_or_default()
    }

    /// Forgets a session that ended otherwise (logout, or an administrator).
    fn end(&mut self, username: &str, id: &str) {
        if let Some(mine) = self.0.get_mut(username) {
            mine.retain(|(s, _)| s != id);
            if mine.is_empty() {
                self.0.remove(username);
            }
        }
    }
}

impl<S: StateStore> Core<S> {
    fn account(&self, username: &str) -> Result<Option<AccountRecord>, CommandError> {
        if let Some(a) = self.unstored(|w| w.accounts.get(username).cloned()) {
            return Ok(Some(a));
        }
        Ok(self.store.account(username)?)
    }

    fn token(&self, id: &str) -> Result<Option<TokenRecord>, CommandError> {
        if self.unstored(|w| w.forgotten.contains(id).then_some(())).is_some() {
            return Ok(None);
        }
        if let Some(t) = self.unstored(|w| w.tokens.get(id).cloned()) {
            return Ok(Some(t));
        }
        Ok(self.store.token(id)?)
    }

    fn write_account(&mut self, record: AccountRecord) {
        self.group.written.accounts.insert(record.username.clone(), record.clone());
        self.group.batch.accounts.push(record);
    }

    fn write_token(&mut self, record: TokenRecord) {
        self.group.written.forgotten.remove(&record.id);
        self.group.written.tokens.insert(record.id.clone(), record.clone());
        self.group.batch.tokens.push(record);
    }

    /// Deletes every session of an account (they ended with a new generation).
    fn end_sessions(&mut self, username: &str) {
        for id in self.sessions.take(username) {
            self.forget_token(id);
        }
    }

    /// Deletes a token (a login session that ended: nothing is left to grow).
    fn forget_token(&mut self, id: String) {
        self.group.written.tokens.remove(&id);
        self.group.written.forgotten.insert(id.clone());
        self.group.batch.forget_tokens.push(id);
    }

    pub(crate) fn register_organization(
        &mut self,
        by: &Principal,
        org: Organization,
    ) -> Result<Organization, CommandError> {
        self.authorize(by, Permission::RegisterOrganization, "organization.register")?;
        org.validate()?;
        let me = self.me;
        org.check_registrar(me)?;
        // The federation tolerates two nodes registering one code (neither blocks
        // the other's log); operators are stopped from doing it knowingly.
        if let Some(other) = self.engine.registrations(&org.credit_code).find(|n| *n != me) {
            return Err(CommandError::Conflict(format!(
                "organization {} is registered at {other}",
                org.credit_code
            )));
        }
        let mut actions = Vec::new();
        let result =
            self.engine.originate(Scope::Federation, DeltaBody::Organization(org.clone()), &mut actions);
        self.take(actions);
        result.map_err(|e| Self::refused(e, "organization"))?;
        // Known at once: later commands of this group may use it.
        self.own_orgs.insert(org.credit_code.clone(), org.parent.clone());
        self.audit_by(
            by,
            "organization.register",
            format!("{} {} ({})", org.credit_code, org.name, org.division),
        );
        Ok(org)
    }

    pub(crate) fn revoke(
        &mut self,
        by: &Principal,
        node: NodeId,
        reason: String,
    ) -> Result<Reply, CommandError> {
        self.authorize(by, Permission::Revoke, "node.revoke")?;
        if reason.trim().is_empty() || reason.len() > MAX_REVOCATION_REASON_BYTES {
            return Err(CommandError::field(
                "reason",
                format!("a revocation needs a reason of 1..{MAX_REVOCATION_REASON_BYTES} bytes"),
            ));
        }
        let mut actions = Vec::new();
        let result = self.engine.revoke(node, reason.clone(), &mut actions);
        self.take(actions);
        // Who may revoke whom is the protocol's rule (the national node anyone, a
        // province its cities): a refusal of it is the caller's, and audited.
        let delta = match result {
            Ok(delta) => delta,
            Err(EngineError::Refused(why)) => {
                let why = match why {
                    RejectReason::Invalid(why) => why,
                    other => other.to_string(),
                };
                self.audit_by(by, "access.denied", format!("node.revoke {node}: {why}"));
                return Err(CommandError::Forbidden(why));
            }
            Err(other) => return Err(CommandError::Unavailable(other.to_string())),
        };
        self.audit_by(by, "node.revoke", format!("{node}: {reason}"));
        Ok(Reply::Revoked { node, delta_seq: delta.seq })
    }

    pub(crate) fn create_account(
        &mut self,
        by: &Principal,
        username: String,
        organization: String,
        roles: Vec<Role>,
        password_hash: String,
    ) -> Result<Account, CommandError> {
        self.authorize(by, Permission::ManageAccounts, "account.create")?;
        let valid_name = !username.is_empty()
            && username.len() <= MAX_USERNAME_BYTES
            && username.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid_name {
            return Err(CommandError::field(
                "username",
                format!("1..{MAX_USERNAME_BYTES} of [A-Za-z0-9._-]"),
            ));
        }
        if roles.is_empty() {
            return Err(CommandError::field("roles", "at least one role"));
        }
        if !self.own_orgs.contains_key(&organization) {
            return Err(CommandError::field(
                "organization",
                format!("{organization} is not an organization registered at {}", self.me),
            ));
        }
        if password_hash.is_empty() {
            return Err(CommandError::field("password", "missing"));
        }
        if self.account(&username)?.is_some() {
            return Err(CommandError::Conflict(format!("account {username} exists")));
        }
        if self.accounts >= MAX_ACCOUNTS {
            return Err(CommandError::Conflict(format!(
                "this node holds its maximum of {MAX_ACCOUNTS} accounts"
            )));
        }
        let record = AccountRecord {
            username,
            organization,
            roles,
            password_hash,
            created_at: self.now_s(),
            disabled: false,
            generation: 0,
        };
        self.accounts += 1;
        let view = Account::of(&record);
        self.write_account(record);
        self.audit_by(
            by,
            "account.create",
            format!("{} of {} as {:?}", view.username, view.organization, view.roles),
        );
        Ok(view)
    }

    pub(crate) fn issue_token(
        &mut self,
        by: &Principal,
        username: Option<String>,
        label: String,
        id: String,
        secret_hash: String,
    ) -> Result<Reply, CommandError> {
        // Long-lived credentials for machines are an administrator's decision: a
        // short login session must not turn itself into permanent access.
        self.authorize(by, Permission::ManageAccounts, "token.create")?;
        let Some(username) = username.or_else(|| by.username.clone()) else {
            return Err(CommandError::field("username", "the bootstrap token must name an account"));
        };
        if label.len() > MAX_TOKEN_LABEL_BYTES {
            return Err(CommandError::field("label", format!("at most {MAX_TOKEN_LABEL_BYTES} bytes")));
        }
        let Some(account) = self.account(&username)? else {
            return Err(CommandError::NotFound(format!("account {username} not found")));
        };
        if account.disabled {
            return Err(CommandError::Conflict(format!("account {username} is disabled")));
        }
        if self.token(&id)?.is_some() {
            return Err(CommandError::Conflict(format!("token {id} exists")));
        }
        let detail = format!("{id} for {username} ({label})");
        let record = TokenRecord {
            id: id.clone(),
            kind: TokenKind::Api,
            username: username.clone(),
            label,
            secret_hash,
            created_at: self.now_s(),
            expires_at: None,
            revoked: false,
            generation: account.generation,
        };
        self.write_token(record);
        self.audit_by(by, "token.create", detail);
        Ok(Reply::Token { id, username, expires_at: None })
    }

    /// Revokes an API token or ends a session (logout): its owner, or an
    /// administrator.
    pub(crate) fn revoke_token(&mut self, by: &Principal, id: String) -> Result<Reply, CommandError> {
        let mut record =
            self.token(&id)?.ok_or_else(|| CommandError::NotFound(format!("token {id} not found")))?;
        let kind = match record.kind {
            TokenKind::Api => "token.revoke",
            TokenKind::Session => "session.end",
        };
        if by.username.as_deref() != Some(record.username.as_str()) {
            self.authorize(by, Permission::ManageAccounts, kind)?;
        }
        if record.revoked {
            return Ok(Reply::TokenRevoked { id });
        }
        let detail = format!("{id} of {}", record.username);
        match record.kind {
            // An ended session is deleted: logging in and out in a loop leaves nothing.
            TokenKind::Session => {
                self.sessions.end(&record.username, &id);
                self.forget_token(id.clone());
            }
            TokenKind::Api => {
                record.revoked = true;
                self.write_token(record);
            }
        }
        self.audit_by(by, kind, detail);
        Ok(Reply::TokenRevoked { id })
    }

    /// Disables or enables an account (an administrator; never one's own). A
    /// disabled account's sessions end and its tokens open nothing.
    pub(crate) fn set_disabled(
        &mut self,
        by: &Principal,
        username: String,
        disabled: bool,
    ) -> Result<Account, CommandError> {
        let kind = if disabled { "account.disable" } else { "account.enable" };
        self.authorize(by, Permission::ManageAccounts, kind)?;
        if by.username.as_deref() == Some(username.as_str()) {
            return Err(CommandError::Conflict("an administrator cannot disable their own account".into()));
        }
        let mut account = self
            .account(&username)?
            .ok_or_else(|| CommandError::NotFound(format!("account {username} not found")))?;
        if account.disabled != disabled {
            account.disabled = disabled;
            account.generation += 1;
            self.write_account(account.clone());
            if disabled {
                self.end_sessions(&username);
            }
            self.audit_by(by, kind, username);
        }
        Ok(Account::of(&account))
    }

    /// Sets an account's password (its owner, or an administrator); its sessions
    /// end, the caller's own included.
    pub(crate) fn set_password(
        &mut self,
        by: &Principal,
        username: String,
        password_hash: String,
    ) -> Result<Account, CommandError> {
        if by.username.as_deref() != Some(username.as_str()) {
            self.authorize(by, Permission::ManageAccounts, "account.password")?;
        }
        if password_hash.is_empty() {
            return Err(CommandError::field("password", "missing"));
        }
        let mut account = self
            .account(&username)?
            .ok_or_else(|| CommandError::NotFound(format!("account {username} not found")))?;
        account.password_hash = password_hash;
        account.generation += 1;
        self.write_account(account.clone());
        self.end_sessions(&username);
        self.audit_by(by, "account.password", format!("{username}: password changed, sessions ended"));
        Ok(Account::of(&account))
    }

    pub(crate) fn open_session(
        &mut self,
        username: String,
        id: String,
        secret_hash: String,
    ) -> Result<Reply, CommandError> {
        let account = self
            .account(&username)?
            .ok_or_else(|| CommandError::NotFound(format!("account {username} not found")))?;
        if account.disabled {
            self.login_failed(username, None, "account disabled");
            return Err(CommandError::Forbidden("this account is disabled".into()));
        }
        if self.token(&id)?.is_some() {
            return Err(CommandError::Conflict(format!("token {id} exists")));
        }
        let expires = self.now_s() + SESSION_SECONDS;
        let expires_at = Some(expires);
        for ended in self.sessions.open(&username, id.clone(), expires, self.now_s()) {
            self.forget_token(ended);
        }
        let record = TokenRecord {
            id: id.clone(),
            kind: TokenKind::Session,
            username: username.clone(),
            label: "login session".into(),
            secret_hash,
            created_at: self.now_s(),
            expires_at,
            revoked: false,
            generation: account.generation,
        };
        self.write_token(record);
        self.audit(
            &format!("account:{username}"),
            Some(&account.organization),
            "login.success",
            String::new(),
        );
        Ok(Reply::Token { id, username, expires_at })
    }
}
