//! Passwords: logins throttled per account and per client address, and every
//! Argon2 computation (logins, new accounts, password changes) a few at a time in
//! pooled memory, so a guessing flood costs bounded CPU, memory and audit records.

use crate::api::{unexpected, IssuedToken};
use crate::driver::unix_millis;
use crate::node::Node;
use cascade_access::{
    address_key, mint_token, CredentialError, Hasher, Policy, Principal, Throttle, TokenKind,
};
use cascade_core::{Command, CommandError, Reply, StateStore, MAX_USERNAME_BYTES};
use cascade_protocol::limits::MAX_CONCURRENT_LOGINS;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
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
    turns: Arc<Semaphore>,
    accounts: Mutex<Throttle<String>>,
    addresses: Mutex<Throttle<IpAddr>>,
}

impl Default for Passwords {
    fn default() -> Passwords {
        Passwords {
            hasher: Hasher::new(),
            turns: Arc::new(Semaphore::new(MAX_CONCURRENT_LOGINS)),
            accounts: Mutex::new(Throttle::new(ACCOUNT_POLICY)),
            addresses: Mutex::new(Throttle::new(ADDRESS_POLICY)),
        }
    }
}

impl Passwords {
    fn accounts(&self) -> std::sync::MutexGuard<'_, Throttle<String>> {
        self.accounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn addresses(&self) -> std::sync::MutexGuard<'_, Throttle<IpAddr>> {
        self.addresses.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a login for `username` from `from` may be checked now (the try
    /// pending until judged); else how many ms to wait. The address is asked
    /// first, so a throttled address cannot run up accounts' counts.
    fn attempt(&self, username: &str, from: Option<IpAddr>) -> Result<(), u64> {
        let now = unix_millis();
        if let Some(ip) = from {
            self.addresses().attempt(&ip, now)?;
        }
        let account = self.accounts().attempt(&username.to_string(), now);
        if account.is_err() {
            // Not tried after all: the address's try is given back.
            if let Some(ip) = from {
                self.addresses().forgive(&ip);
            }
        }
        account
    }

    /// Judges a try a failure, for the account and the address.
    fn failed(&self, username: &str, from: Option<IpAddr>) {
        let now = unix_millis();
        self.accounts().fail(&username.to_string(), now);
        if let Some(ip) = from {
            self.addresses().fail(&ip, now);
        }
    }

    /// Takes back a try that was never judged (the node was busy or failed).
    fn untried(&self, username: &str, from: Option<IpAddr>) {
        self.accounts().forgive(&username.to_string());
        if let Some(ip) = from {
            self.addresses().forgive(&ip);
        }
    }

    /// A success clears the account; the address (perhaps shared) only gets its
    /// try back.
    fn succeeded(&self, username: &str, from: Option<IpAddr>) {
        self.accounts().succeed(&username.to_string());
        if let Some(ip) = from {
            self.addresses().forgive(&ip);
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
        // The permit travels with the work: a caller that goes away frees no turn
        // before its Argon2 computation ends.
        let permit = tokio::time::timeout(ARGON_WAIT, passwords.turns.clone().acquire_owned())
            .await
            .map_err(|_| LoginError::Busy)?
            .map_err(|_| LoginError::Busy)?;
        let node = self.clone();
        tokio::task::spawn_blocking(move || {
            let result = work(&node.passwords().hasher);
            drop(permit);
            result
        })
        .await
        .map_err(|e| LoginError::Node(blocking_failed(e)))
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
        self.check_password(&username, password, from).await?;
        let by = stranger(&username);
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

    /// Checks `username`'s password under the login throttles (a login, or an
    /// account owner proving who they are before changing it).
    pub(crate) async fn check_password(
        &self,
        username: &str,
        password: String,
        from: Option<IpAddr>,
    ) -> Result<(), LoginError> {
        let from = from.map(address_key);
        if username.len() > MAX_USERNAME_BYTES {
            // No such account can exist: refused without Argon2 work, a throttle
            // entry or an audit record of a stranger's megabyte.
            return Err(LoginError::BadCredentials);
        }
        let failed = |reason: &str| {
            let address = from.map(|ip| ip.to_string());
            (
                stranger(username),
                Command::LoginFailed { username: username.into(), address, reason: reason.into() },
            )
        };
        if let Err(wait_ms) = self.passwords().attempt(username, from) {
            let (by, command) = failed("throttled");
            self.execute(by, command).await?;
            return Err(LoginError::Throttled { retry_after_s: wait_ms.div_ceil(1000).max(1) });
        }
        let store = self.store().clone();
        let name = username.to_string();
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
            .await;
        match verdict {
            Ok(Ok(true)) => {
                self.passwords().succeeded(username, from);
                Ok(())
            }
            Ok(Ok(false)) => {
                self.passwords().failed(username, from);
                let (by, command) = failed("wrong username or password");
                self.execute(by, command).await?;
                Err(LoginError::BadCredentials)
            }
            Ok(Err(e)) => {
                self.passwords().untried(username, from);
                Err(e.into())
            }
            Err(e) => {
                self.passwords().untried(username, from);
                Err(e)
            }
        }
    }
}

/// Whoever presents a username and a password, not yet known to be its owner.
fn stranger(username: &str) -> Principal {
    Principal { actor: format!("account:{username}"), username: None, organization: None, roles: vec![] }
}
