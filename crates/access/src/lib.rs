//! Who may do what on a node's admin interface, and how callers prove who they are.
//!
//! Accounts belong to an organization and hold roles ([`Role`]); a caller is a
//! [`Principal`] and every action a [`Permission`]. A person logs in with a
//! password (hashed with Argon2id, memory-hard) and gets an expiring session
//! token; machines get long-lived API tokens. Only hashes of tokens are stored.
//! Everything here is a pure function: the node core decides and records, this
//! crate only checks and derives; its [`Throttle`] turns away whoever keeps
//! failing (password guesses, failed handshakes).

mod credentials;
mod role;
mod throttle;

pub use credentials::{
    bootstrap_matches, mint_token, parse_token, secret_hash, CredentialError, Hasher, MintedToken, TokenKind,
    MIN_PASSWORD_CHARS, SESSION_SECONDS,
};
pub use role::{Permission, Principal, Role};
pub use throttle::{address_key, Policy, Throttle};
