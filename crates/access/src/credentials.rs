//! Passwords and bearer tokens.

use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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

/// Argon2id with its working memory drawn from a pool: each hash needs
/// `Params::DEFAULT_M_COST` KiB (19 MiB); allocating that afresh for every login
/// fragments the allocator until a guessing flood has taken gigabytes. Buffers are
/// handed back after each use, so memory is bounded by how many hashes run at once
/// (the caller bounds that) and reused whatever the load.
#[derive(Debug, Default)]
pub struct Hasher {
    pool: std::sync::Mutex<Vec<Vec<Block>>>,
}

/// Memory blocks (1 KiB each) of one pooled buffer: enough for the default
/// parameters, which every stored hash uses; a stored hash asking for more is
/// refused rather than allocated for.
const POOL_BLOCKS: usize = Params::DEFAULT_M_COST as usize;

/// Buffers kept between uses; more than this many at once are freed when returned.
const MAX_POOLED: usize = 8;

impl Hasher {
    /// A hasher with an empty pool.
    pub fn new() -> Hasher {
        Hasher::default()
    }

    /// How many buffers wait in the pool.
    pub fn pooled(&self) -> usize {
        self.pool.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Runs Argon2 over `password` with the parameters and salt of `phc`'s kind,
    /// in a pooled buffer.
    fn compute(
        &self,
        password: &[u8],
        algorithm: Algorithm,
        version: Version,
        params: Params,
        salt: Salt<'_>,
    ) -> Result<Output, CredentialError> {
        let hashing = |e: &dyn std::fmt::Display| CredentialError::Hashing(e.to_string());
        let blocks = params.block_count();
        if blocks > POOL_BLOCKS {
            return Err(CredentialError::CorruptHash(format!("{} KiB of memory asked for", params.m_cost())));
        }
        let mut salt_bytes = [0u8; 64];
        let salt = salt.decode_b64(&mut salt_bytes).map_err(|e| hashing(&e))?;
        let out_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let argon = Argon2::new(algorithm, version, params);
        let mut buffer = self
            .pool
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_else(|| vec![Block::default(); POOL_BLOCKS]);
        let output = Output::init_with(out_len, |out| {
            argon
                .hash_password_into_with_memory(password, salt, out, &mut buffer[..blocks])
                .map_err(|_| argon2::password_hash::Error::Crypto)
        })
        .map_err(|e| hashing(&e));
        if let Ok(mut pool) = self.pool.lock() {
            if pool.len() < MAX_POOLED {
                pool.push(buffer);
            }
        }
        output
    }

    /// Hashes a password with Argon2id (PHC string), enforcing the password
    /// policy. Deliberately slow and memory-hard: call it off the async workers.
    pub fn hash_password(&self, password: &str) -> Result<String, CredentialError> {
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(CredentialError::WeakPassword);
        }
        let salt = SaltString::generate(&mut OsRng);
        let params = Params::default();
        let hashing = |e: argon2::password_hash::Error| CredentialError::Hashing(e.to_string());
        let phc_params = ParamsString::try_from(&params).map_err(hashing)?;
        let output =
            self.compute(password.as_bytes(), Algorithm::Argon2id, Version::V0x13, params, salt.as_salt())?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: phc_params,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(phc.to_string())
    }

    /// Whether `password` matches the stored PHC string. Slow, like `hash_password`.
    pub fn verify_password(&self, password: &str, stored: &str) -> Result<bool, CredentialError> {
        let corrupt = |e: argon2::password_hash::Error| CredentialError::CorruptHash(e.to_string());
        let parsed = PasswordHash::new(stored).map_err(corrupt)?;
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Err(CredentialError::CorruptHash("no salt or hash".into()));
        };
        let algorithm = Algorithm::try_from(parsed.algorithm).map_err(corrupt)?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).map_err(|e| CredentialError::CorruptHash(e.to_string()))?,
            None => Version::default(),
        };
        let params = Params::try_from(&parsed).map_err(corrupt)?;
        let computed = self.compute(password.as_bytes(), algorithm, version, params, salt)?;
        // `Output`'s equality is constant-time.
        Ok(computed == expected)
    }

    /// Spends the same Argon2 work as checking a real account, for an unknown
    /// username: the answer's timing must not tell which usernames exist.
    pub fn dummy_verify(&self, password: &str) {
        static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let stored = DUMMY.get_or_init(|| {
            let mut secret = [0u8; 16];
            OsRng.fill_bytes(&mut secret);
            Hasher::new().hash_password(&hex::encode(secret)).unwrap_or_default()
        });
        let _ = self.verify_password(password, stored);
    }
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
    fn passwords_hash_and_verify_in_pooled_memory_as_standard_argon2id() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let hasher = Hasher::new();
        assert!(matches!(hasher.hash_password("short"), Err(CredentialError::WeakPassword)));
        let stored = hasher.hash_password("correct horse battery").unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
        assert!(hasher.verify_password("correct horse battery", &stored).unwrap());
        assert!(!hasher.verify_password("wrong horse battery!", &stored).unwrap());
        assert!(hasher.verify_password("x", "not a phc string").is_err());
        hasher.dummy_verify("anything at all");
        // The buffer went back to the pool and was reused, not reallocated.
        assert_eq!(hasher.pooled(), 1);
        // The same hashes as the argon2 crate's own, both ways.
        let parsed = PasswordHash::new(&stored).unwrap();
        assert!(Argon2::default().verify_password(b"correct horse battery", &parsed).is_ok());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default().hash_password(b"another good one", &salt).unwrap();
        assert!(hasher.verify_password("another good one", &theirs.to_string()).unwrap());
        // A stored hash that asks for more memory than a pooled buffer is refused.
        let greedy = stored.replace("m=19456", "m=65536");
        assert!(matches!(hasher.verify_password("x", &greedy), Err(CredentialError::CorruptHash(_))));
    }
}
