//! Passwords: logins throttled per account and per client address, and every
//! Argon2 computation (logins, new accounts, password changes) a few at a time in
//! pooled memory, so a guessing flood costs bounded CPU, memory and audit records.

use crate::api::{unexpected, IssuedToken};
use crate::driver::unix_millis;
use crate::node::Node;
use cascade_access::{mint_token, CredentialError, Hasher, Policy, Principal, Throttle, TokenKind};
use cascade_core::{Command, CommandError, Reply, StateStore};
use cascade_protocol::limits::MAX_CONCURRENT_LOGINS;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a password check waits for its turn before the node answers busy.
const ARGON_WAIT: Duration = Duration::from_secs(5);

/// Wrong passwords for one account: five are typing mistakes; then each doubles
/// the wait, from a second up to a quarter of an hour. Quiet for that long, the
/// account starts afresh; a success forgets at once.
const ACCOUNT_POLICY: Policy =
    Policy { free: 5, base_ms: 1_000, max_ms: 15 * 60_000, forget_ms: 15 * 60_000, capacity: 65_536 };

/// Wrong passwords from one address, whatever the account (an office behind one
/// address may mistype more often; a guesser spraying accounts is caught here).
const ADDRESS_POLICY: Policy =
    Policy { free: 20, base_ms: 1_000, max_ms: 15 * 60_000, forget_ms: 15 * 60_000, capacity: 65_536 };

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Wrong username or password (deliberately not saying which).
    #[error("wrong username or password")]
    BadCredentials,
    /// Too many wrong passwords for this account or from this address lately.
    #[error("too many failed logins; retry in {retry_after_s} s")]
    Throttled {
        /// Seconds to wait.
        retry_after_s: u64,
    },
    /// Too many logins are being checked; retry.
    #[error("too many logins in progress; retry")]
    Busy,
    /// The node failed, or refused the session (a disabled account).
    #[error(transparent)]
    Node(#[from] CommandError),
}

/// Password work of one node.
pub(crate) struct Passwords {
    hasher: Hasher,
    /// Argon2 computations at once (each holds a 19 MiB pooled buffer).
    turns: Semaphore,
    accounts: Mutex<Throttle<String>>,
    addresses: Mutex<Throttle<IpAddr>>,
}

impl Default for Passwords {
    fn default() -> Passwords {
        Passwords {
            hasher: Hasher::new(),
            turns: Semaphore::new(MAX_CONCURRENT_LOGINS),
            accounts: Mutex::new(Throttle::new(ACCOUNT_POLICY)),
            addresses: Mutex::new(Throttle::new(ADDRESS_POLICY)),
        }
    }
}

impl Passwords {
    /// Whether a login for `username` from `from` may be checked now; else how
    /// many ms to wait.
    fn admit(&self, username: &str, from: Option<IpAddr>) -> Result<(), u64> {
        let now = unix_millis();
        let account = self.accounts.lock().map_or(Ok(()), |t| t.check(&username.to_string(), now));
        let address = match from {
            Some(ip) => self.addresses.lock().map_or(Ok(()), |t| t.check(&ip, now)),
            None => Ok(()),
        };
        match (account, address) {
            (Ok(()), Ok(())) => Ok(()),
            (a, b) => Err(a.err().unwrap_or(0).max(b.err().unwrap_or(0))),
        }
    }

    fn failed(&self, username: &str, from: Option<IpAddr>) {
        let now = unix_millis();
        if let Ok(mut t) = self.accounts.lock() {
            t.fail(&username.to_string(), now);
        }
        if let (Some(ip), Ok(mut t)) = (from, self.addresses.lock()) {
            t.fail(&ip, now);
        }
    }

    fn succeeded(&self, username: &str) {
        if let Ok(mut t) = self.accounts.lock() {
            t.succeed(&username.to_string());
        }
    }
}

fn blocking_failed(e: tokio::task::JoinError) -> CommandError {
    CommandError::Unavailable(format!("a blocking task failed: {e}"))
}

fn credential(e: CredentialError) -> CommandError {
    match e {
        CredentialError::WeakPassword => CommandError::field("password", e.to_string()),
        other => CommandError::Unavailable(other.to_string()),
    }
}

impl Node {
    /// Runs Argon2 work on the blocking pool when a turn is free.
    async fn argon<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Hasher) -> T + Send + 'static,
    ) -> Result<T, LoginError> {
        let passwords = self.passwords();
        let permit = tokio::time::timeout(ARGON_WAIT, passwords.turns.acquire())
            .await
            .map_err(|_| LoginError::Busy)?
            .map_err(|_| LoginError::Busy)?;
        let node = self.clone();
        let result = tokio::task::spawn_blocking(move || work(&node.passwords().hasher))
            .await
            .map_err(|e| LoginError::Node(blocking_failed(e)));
        drop(permit);
        result
    }

    /// Hashes a new password (checked against the policy).
    pub(crate) async fn hash_password(&self, password: String) -> Result<String, CommandError> {
        match self.argon(move |h| h.hash_password(&password)).await {
            Ok(hashed) => hashed.map_err(credential),
            Err(LoginError::Node(e)) => Err(e),
            Err(e) => Err(CommandError::Busy(e.to_string())),
        }
    }

    /// Checks a password and opens a session. Refused at once (429) while the
    /// account or the address `from` is throttled; an unknown username costs the
    /// same Argon2 work as a known one. Failures are audited by tally.
    pub async fn login(
        &self,
        username: String,
        password: String,
        from: Option<IpAddr>,
    ) -> Result<IssuedToken, LoginError> {
        let by = Principal {
            actor: format!("account:{username}"),
            username: None,
            organization: None,
            roles: vec![],
        };
        if let Err(wait_ms) = self.passwords().admit(&username, from) {
            let command = Command::LoginFailed { username, reason: "throttled".into() };
            self.execute(by, command).await?;
            return Err(LoginError::Throttled { retry_after_s: wait_ms.div_ceil(1000).max(1) });
        }
        let store = self.store().clone();
        let name = username.clone();
        let verdict = self
            .argon(move |hasher| -> Result<bool, CommandError> {
                match store.account(&name)? {
                    Some(account) => hasher
                        .verify_password(&password, &account.password_hash)
                        .map_err(|e| CommandError::Unavailable(e.to_string())),
                    None => {
                        hasher.dummy_verify(&password);
                        Ok(false)
                    }
                }
            })
            .await??;
        if !verdict {
            self.passwords().failed(&username, from);
            let command = Command::LoginFailed { username, reason: "wrong username or password".into() };
            self.execute(by, command).await?;
            return Err(LoginError::BadCredentials);
        }
        self.passwords().succeeded(&username);
        let minted = mint_token(TokenKind::Session, &mut rand::rngs::OsRng);
        let command =
            Command::OpenSession { username, id: minted.id.clone(), secret_hash: minted.secret_hash };
        match self.execute(by, command).await? {
            Reply::Token { id, username, expires_at } => {
                Ok(IssuedToken { token: minted.token, id, username, expires_at })
            }
            other => Err(unexpected(other).into()),
        }
    }
}
