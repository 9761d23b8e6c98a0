//! Who may do what on a node's admin interface.
//!
//! Accounts belong to an organization and hold roles. A person logs in with a
//! password (hashed with Argon2id, memory-hard) and gets an expiring session
//! token; machines get long-lived API tokens that can be revoked. Only hashes of
//! tokens are stored. The bootstrap token generated at a node's first start stays
//! valid as an administrator.

mod role;

pub use role::{Permission, Principal, Role};

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// How long a login session lasts: one working day.
pub const SESSION_SECONDS: u64 = 12 * 3600;
/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Most accounts on one node (each login costs an Argon2 hash; the bound keeps
/// listing and storage small).
pub const MAX_ACCOUNTS: usize = 10_000;

const ACCOUNT: &str = "account/";
const SESSION: &str = "session/";
const TOKEN: &str = "token/";

/// Errors of access control.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// sled failed.
    #[error("store: {0}")]
    Store(#[from] sled::Error),
    /// A stored record is damaged.
    #[error("corrupt access record: {0}")]
    Corrupt(String),
    /// A request field is invalid.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The account or token already exists, or the limit is reached.
    #[error("{0}")]
    Conflict(String),
    /// No such account or token.
    #[error("{0} not found")]
    NotFound(String),
    /// Wrong username or password (deliberately not saying which).
    #[error("wrong username or password")]
    BadCredentials,
}

/// A stored account.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct AccountRecord {
    username: String,
    organization: String,
    roles: Vec<Role>,
    password_hash: String,
    created_at: u64,
}

/// An account as shown to operators (no password hash).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Account {
    /// Login name.
    pub username: String,
    /// Credit code of the organization it belongs to.
    pub organization: String,
    /// Its roles.
    pub roles: Vec<Role>,
    /// Unix seconds.
    pub created_at: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct TokenRecord {
    id: String,
    username: String,
    label: String,
    secret_hash: String,
    created_at: u64,
    /// Sessions expire; API tokens do not.
    expires_at: Option<u64>,
    revoked: bool,
}

/// An API token as listed (never its secret).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TokenInfo {
    /// Its id (part of the token, safe to show).
    pub id: String,
    /// The account it acts as.
    pub username: String,
    /// What it is for.
    pub label: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// A freshly issued secret: shown once, stored only as a hash.
#[derive(Clone, Debug, Serialize)]
pub struct Issued {
    /// The bearer token.
    pub token: String,
    /// Its id.
    pub id: String,
    /// Unix seconds, for sessions.
    pub expires_at: Option<u64>,
}

/// Access control of one node, stored in its own sled tree.
#[derive(Clone)]
pub struct Access {
    tree: sled::Tree,
    bootstrap: String,
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn secret_hash(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

impl Access {
    /// Access control over `tree`, with the node's bootstrap admin token.
    pub fn new(tree: sled::Tree, bootstrap: String) -> Access {
        Access { tree, bootstrap }
    }

    fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, AccessError> {
        match self.tree.get(key.as_bytes())? {
            None => Ok(None),
            Some(v) => {
                serde_json::from_slice(&v).map(Some).map_err(|e| AccessError::Corrupt(format!("{key}: {e}")))
            }
        }
    }

    fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), AccessError> {
        let bytes = serde_json::to_vec(value).map_err(|e| AccessError::Corrupt(e.to_string()))?;
        self.tree.insert(key.as_bytes(), bytes)?;
        self.tree.flush()?;
        Ok(())
    }

    /// Creates an account. The caller checks that the organization exists.
    pub fn create_account(
        &self,
        username: &str,
        password: &str,
        organization: &str,
        roles: Vec<Role>,
        now: u64,
    ) -> Result<Account, AccessError> {
        let valid_name = !username.is_empty()
            && username.len() <= 64
            && username.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid_name {
            return Err(AccessError::Invalid { field: "username", reason: "1..64 of [A-Za-z0-9._-]".into() });
        }
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(AccessError::Invalid {
                field: "password",
                reason: format!("at least {MIN_PASSWORD_CHARS} characters"),
            });
        }
        if roles.is_empty() {
            return Err(AccessError::Invalid { field: "roles", reason: "at least one role".into() });
        }
        let key = format!("{ACCOUNT}{username}");
        if self.tree.contains_key(key.as_bytes())? {
            return Err(AccessError::Conflict(format!("account {username} exists")));
        }
        if self.tree.scan_prefix(ACCOUNT.as_bytes()).count() >= MAX_ACCOUNTS {
            return Err(AccessError::Conflict("too many accounts".into()));
        }
        let salt = SaltString::generate(&mut OsRng);
        let password_hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| AccessError::Invalid { field: "password", reason: e.to_string() })?
            .to_string();
        let record = AccountRecord {
            username: username.into(),
            organization: organization.into(),
            roles,
            password_hash,
            created_at: now,
        };
        // Insert only if absent: two concurrent creations of one name cannot both win.
        let bytes = serde_json::to_vec(&record).map_err(|e| AccessError::Corrupt(e.to_string()))?;
        if self.tree.compare_and_swap(key.as_bytes(), None as Option<&[u8]>, Some(bytes))?.is_err() {
            return Err(AccessError::Conflict(format!("account {username} exists")));
        }
        self.tree.flush()?;
        Ok(view(&record))
    }

    /// Every account.
    pub fn accounts(&self) -> Result<Vec<Account>, AccessError> {
        self.tree
            .scan_prefix(ACCOUNT.as_bytes())
            .map(|kv| {
                let (k, v) = kv?;
                serde_json::from_slice::<AccountRecord>(&v)
                    .map(|r| view(&r))
                    .map_err(|e| AccessError::Corrupt(format!("{}: {e}", String::from_utf8_lossy(&k))))
            })
            .collect()
    }

    /// Checks a password and opens a session.
    pub fn login(&self, username: &str, password: &str, now: u64) -> Result<Issued, AccessError> {
        let Some(record) = self.get::<AccountRecord>(&format!("{ACCOUNT}{username}"))? else {
            // Spend the same Argon2 work as for a real account: the answer's timing
            // must not tell which usernames exist.
            let _ = Argon2::default().verify_password(password.as_bytes(), &dummy_hash()?);
            return Err(AccessError::BadCredentials);
        };
        let parsed =
            PasswordHash::new(&record.password_hash).map_err(|e| AccessError::Corrupt(e.to_string()))?;
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .map_err(|_| AccessError::BadCredentials)?;
        self.issue(SESSION, username, "login session", now, Some(now + SESSION_SECONDS))
    }

    /// Issues a long-lived API token acting as `username`.
    pub fn create_token(&self, username: &str, label: &str, now: u64) -> Result<Issued, AccessError> {
        if self.get::<AccountRecord>(&format!("{ACCOUNT}{username}"))?.is_none() {
            return Err(AccessError::NotFound(format!("account {username}")));
        }
        if label.len() > 200 {
            return Err(AccessError::Invalid { field: "label", reason: "at most 200 bytes".into() });
        }
        self.issue(TOKEN, username, label, now, None)
    }

    fn issue(
        &self,
        kind: &str,
        username: &str,
        label: &str,
        now: u64,
        expires_at: Option<u64>,
    ) -> Result<Issued, AccessError> {
        let id = random_hex(8);
        let secret = random_hex(24);
        let prefix = if kind == SESSION { "css" } else { "cst" };
        let token = format!("{prefix}_{id}_{secret}");
        let record = TokenRecord {
            id: id.clone(),
            username: username.into(),
            label: label.into(),
            secret_hash: secret_hash(&token),
            created_at: now,
            expires_at,
            revoked: false,
        };
        self.put(&format!("{kind}{id}"), &record)?;
        Ok(Issued { token, id, expires_at })
    }

    /// API tokens, optionally of one account.
    pub fn tokens(&self, username: Option<&str>) -> Result<Vec<TokenInfo>, AccessError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix(TOKEN.as_bytes()) {
            let (_, v) = kv?;
            let r: TokenRecord =
                serde_json::from_slice(&v).map_err(|e| AccessError::Corrupt(e.to_string()))?;
            if username.is_none_or(|u| u == r.username) {
                out.push(TokenInfo {
                    id: r.id,
                    username: r.username,
                    label: r.label,
                    created_at: r.created_at,
                    revoked: r.revoked,
                });
            }
        }
        Ok(out)
    }

    /// The owner of an API token.
    pub fn token_owner(&self, id: &str) -> Result<String, AccessError> {
        let r: TokenRecord =
            self.get(&format!("{TOKEN}{id}"))?.ok_or_else(|| AccessError::NotFound(format!("token {id}")))?;
        Ok(r.username)
    }

    /// Revokes an API token.
    pub fn revoke_token(&self, id: &str) -> Result<(), AccessError> {
        let key = format!("{TOKEN}{id}");
        let mut r: TokenRecord =
            self.get(&key)?.ok_or_else(|| AccessError::NotFound(format!("token {id}")))?;
        r.revoked = true;
        self.put(&key, &r)
    }

    /// Who a bearer token is, if it is valid now.
    pub fn authenticate(&self, bearer: &str, now: u64) -> Result<Option<Principal>, AccessError> {
        if bool::from(bearer.as_bytes().ct_eq(self.bootstrap.as_bytes())) {
            return Ok(Some(Principal::bootstrap()));
        }
        let mut parts = bearer.splitn(3, '_');
        let kind = match parts.next() {
            Some("css") => SESSION,
            Some("cst") => TOKEN,
            _ => return Ok(None),
        };
        let Some(id) = parts.next().filter(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        else {
            return Ok(None);
        };
        let Some(record) = self.get::<TokenRecord>(&format!("{kind}{id}"))? else { return Ok(None) };
        let presented = secret_hash(bearer);
        let matches = bool::from(presented.as_bytes().ct_eq(record.secret_hash.as_bytes()));
        if !matches || record.revoked || record.expires_at.is_some_and(|t| t <= now) {
            return Ok(None);
        }
        let Some(account) = self.get::<AccountRecord>(&format!("{ACCOUNT}{}", record.username))? else {
            return Ok(None);
        };
        Ok(Some(Principal {
            actor: format!("account:{}", account.username),
            username: Some(account.username),
            organization: Some(account.organization),
            roles: account.roles,
        }))
    }
}

/// A password hash nobody knows the password of, for unknown usernames.
fn dummy_hash() -> Result<PasswordHash<'static>, AccessError> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(random_hex(16).as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    });
    PasswordHash::new(hash).map_err(|e| AccessError::Corrupt(e.to_string()))
}

fn view(r: &AccountRecord) -> Account {
    Account {
        username: r.username.clone(),
        organization: r.organization.clone(),
        roles: r.roles.clone(),
        created_at: r.created_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> (tempfile::TempDir, Access) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        (dir, Access::new(db.open_tree("access").unwrap(), "boot".into()))
    }

    #[test]
    fn login_sessions_tokens_and_revocation() {
        let (_d, a) = access();
        assert!(a.create_account("alice", "short", "org", vec![Role::Cataloger], 100).is_err());
        a.create_account("alice", "correct horse battery", "91350100M000100Y43", vec![Role::Cataloger], 100)
            .unwrap();
        assert!(matches!(a.login("alice", "wrong password!!", 100), Err(AccessError::BadCredentials)));
        assert!(matches!(a.login("bob", "whatever-long", 100), Err(AccessError::BadCredentials)));
        let session = a.login("alice", "correct horse battery", 100).unwrap();
        let p = a.authenticate(&session.token, 200).unwrap().unwrap();
        assert_eq!(p.username.as_deref(), Some("alice"));
        assert!(a.authenticate(&session.token, 100 + SESSION_SECONDS).unwrap().is_none(), "expired");
        let token = a.create_token("alice", "ci", 100).unwrap();
        assert!(a.authenticate(&token.token, 10_000_000).unwrap().is_some());
        let mut forged = token.token.clone();
        forged.pop();
        forged.push('0');
        assert!(a.authenticate(&forged, 200).unwrap().is_none() || forged == token.token);
        a.revoke_token(&token.id).unwrap();
        assert!(a.authenticate(&token.token, 200).unwrap().is_none());
        assert!(a.authenticate("boot", 0).unwrap().unwrap().roles.contains(&Role::Admin));
        assert!(a.authenticate("nonsense", 0).unwrap().is_none());
        assert!(a.accounts().unwrap().iter().all(|acc| acc.username == "alice"));
    }
}
