//! Passwords and bearer tokens.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use subtle::ConstantTimeEq;

/// How long a login session lasts: one working day.
pub const SESSION_SECONDS: u64 = 12 * 3600;
/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Length of a token id in hex characters (8 random bytes).
const ID_HEX: usize = 16;
/// Length of a token secret in hex characters (24 random bytes: 192 bits).
const SECRET_HEX: usize = 48;

/// Why a credential could not be made or checked.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The password breaks the policy.
    #[error("password: at least {MIN_PASSWORD_CHARS} characters")]
    WeakPassword,
    /// A stored password hash does not parse.
    #[error("stored password hash: {0}")]
    CorruptHash(String),
    /// Hashing failed.
    #[error("password hashing: {0}")]
    Hashing(String),
}

/// What a bearer token opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A login session: expires.
    Session,
    /// A long-lived API token for machines: revocable, never expires.
    Api,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            TokenKind::Session => "css",
            TokenKind::Api => "cst",
        }
    }
}

/// A freshly minted bearer token: the secret is shown to its owner once; only its
/// hash is ever stored.
#[derive(Clone)]
pub struct MintedToken {
    /// The bearer token: `css_<id>_<secret>` or `cst_<id>_<secret>`.
    pub token: String,
    /// Its id (part of the token, safe to show and log).
    pub id: String,
    /// The hash stored in its place.
    pub secret_hash: String,
}

impl std::fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedToken").field("id", &self.id).field("token", &"<secret>").finish()
    }
}

/// Mints a token from `rng` (the OS generator in a node; a seeded one in a simulation).
pub fn mint_token(kind: TokenKind, rng: &mut impl RngCore) -> MintedToken {
    let mut id = [0u8; ID_HEX / 2];
    let mut secret = [0u8; SECRET_HEX / 2];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let token = format!("{}_{id}_{}", kind.prefix(), hex::encode(secret));
    let secret_hash = secret_hash(&token);
    MintedToken { token, id, secret_hash }
}

/// The hash of a presented token, as stored.
pub fn secret_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// The kind and id a presented token claims, if it has the shape of one.
pub fn parse_token(token: &str) -> Option<(TokenKind, &str)> {
    let mut parts = token.splitn(3, '_');
    let kind = match parts.next()? {
        "css" => TokenKind::Session,
        "cst" => TokenKind::Api,
        _ => return None,
    };
    let id = parts.next().filter(|id| id.len() == ID_HEX && id.bytes().all(|b| b.is_ascii_hexdigit()))?;
    let secret = parts.next()?;
    (secret.len() == SECRET_HEX).then_some((kind, id))
}

/// Whether a presented token is the node's bootstrap token (constant time).
pub fn bootstrap_matches(presented: &str, bootstrap: &str) -> bool {
    bool::from(presented.as_bytes().ct_eq(bootstrap.as_bytes()))
}

/// Hashes a password with Argon2id (PHC string), enforcing the password policy.
/// Deliberately slow and memory-hard: call it off the async workers.
pub fn hash_password(password: &str) -> Result<String, CredentialError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(CredentialError::WeakPassword);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CredentialError::Hashing(e.to_string()))
}

/// Whether `password` matches the stored PHC string. Slow, like `hash_password`.
pub fn verify_password(password: &str, stored: &str) -> Result<bool, CredentialError> {
    let parsed = PasswordHash::new(stored).map_err(|e| CredentialError::CorruptHash(e.to_string()))?;
    Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// Spends the same Argon2 work as checking a real account, for an unknown
/// username: the answer's timing must not tell which usernames exist.
pub fn dummy_verify(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let stored = DUMMY.get_or_init(|| {
        let mut secret = [0u8; 16];
        OsRng.fill_bytes(&mut secret);
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(&secret, &salt).map(|h| h.to_string()).unwrap_or_default()
    });
    let _ = verify_password(password, stored);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn tokens_round_trip_and_forgeries_do_not_parse() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let minted = mint_token(TokenKind::Api, &mut rng);
        assert_eq!(parse_token(&minted.token), Some((TokenKind::Api, minted.id.as_str())));
        assert_eq!(secret_hash(&minted.token), minted.secret_hash);
        assert!(!format!("{minted:?}").contains(&minted.token));
        for bad in ["", "cst", "cst_zz_x", "xyz_0123456789abcdef_00", &minted.token[..minted.token.len() - 1]]
        {
            assert_eq!(parse_token(bad), None, "{bad}");
        }
        let again = mint_token(TokenKind::Session, &mut rand::rngs::StdRng::seed_from_u64(1));
        assert!(again.token.starts_with("css_") && again.id == minted.id, "seeded minting is reproducible");
        assert!(bootstrap_matches("abc", "abc") && !bootstrap_matches("abd", "abc"));
    }

    #[test]
    fn passwords_hash_and_verify() {
        assert!(matches!(hash_password("short"), Err(CredentialError::WeakPassword)));
        let stored = hash_password("correct horse battery").unwrap();
        assert!(verify_password("correct horse battery", &stored).unwrap());
        assert!(!verify_password("wrong horse battery!", &stored).unwrap());
        assert!(verify_password("x", "not a phc string").is_err());
        dummy_verify("anything at all");
    }
}
