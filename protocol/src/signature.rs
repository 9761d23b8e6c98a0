//! The one rule every ed25519 signature a node checks is held to, and a batch
//! verifier that accepts exactly what that rule accepts.
//!
//! Single and batch verification of ed25519 disagree on edge cases ("Taming the
//! many EdDSAs", Chalkias et al. 2020): a batch folds many equations into one
//! random combination, so a signature whose points carry a small torsion
//! component can pass one check and fail the other. Cascade excludes that by the
//! rule itself (the one the paper recommends):
//!
//! - `S` must be canonical (`S < L`);
//! - `A` and `R` must be canonical encodings of curve points, neither of small
//!   order;
//! - the equation is the cofactored one, `[8]([S]B - R - [k]A) = 0` with
//!   `k = SHA-512(R || A || M)`.
//!
//! Because the final multiplication by 8 removes every torsion component, a sum
//! of such terms with random 128-bit coefficients is zero exactly when every term
//! is zero (up to a 2^-128 chance per batch), so the batch check and the single
//! check accept the same signatures. For signatures made by a real ed25519 signer
//! the rule agrees with `ed25519_dalek::VerifyingKey::verify_strict`; it also
//! accepts the torsion variants of the Taming vectors 4 and 5, which need a
//! signer holding a key with a torsion component, something no certificate of
//! the federation issues.
//!
//! The random coefficients are derived from a secret (`BatchSecret`, kept by each
//! node, derived from its own signing key) and a transcript of the whole batch, so
//! a signer cannot choose signatures that cancel out, and a run is reproducible.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha512};
use std::collections::HashMap;

/// Fewest signatures worth a thread of their own: below this, a thread's start
/// (tens of microseconds) is a sizeable share of the work (a signature costs about
/// 13 µs in a batch).
pub const MIN_SIGNATURES_PER_THREAD: usize = 64;

/// Most threads one batch is spread over, whatever the machine offers: a node
/// shares its cores with its QUIC connections and its store.
pub const MAX_VERIFY_THREADS: usize = 8;

/// A signature refused by the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// Not 64 bytes.
    #[error("a signature is 64 bytes")]
    Length,
    /// `S` is not below the group order.
    #[error("the signature's scalar is not canonical")]
    NonCanonicalScalar,
    /// `R` or the key is not the canonical encoding of a point.
    #[error("a point of the signature or the key is not canonically encoded")]
    NonCanonicalPoint,
    /// `R` or the key is a point of small order.
    #[error("a point of the signature or the key has small order")]
    SmallOrder,
    /// The equation does not hold (for a batch: for at least one signature).
    #[error("the signature does not verify")]
    Equation,
}

/// One signature to check: the key, the signed message and the signature bytes.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The signer's public key.
    pub key: &'a VerifyingKey,
    /// The exact signed bytes.
    pub message: &'a [u8],
    /// The signature as received (its length is checked here).
    pub signature: &'a [u8],
}

/// A node's secret for drawing batch coefficients, derived from its signing key.
#[derive(Clone)]
pub struct BatchSecret([u8; 32]);

impl BatchSecret {
    /// Derives the secret from a node's own signing key (never the key itself).
    pub fn from_signing_key(key: &SigningKey) -> BatchSecret {
        BatchSecret(blake3::derive_key("cascade 2026 ed25519 batch coefficients", key.as_bytes()))
    }
}

impl std::fmt::Debug for BatchSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BatchSecret(..)")
    }
}

/// A signature decoded and hashed, ready for either equation.
struct Prepared {
    r: EdwardsPoint,
    r_bytes: [u8; 32],
    s: Scalar,
    k: Scalar,
    key: [u8; 32],
}

/// Whether `bytes` is the one encoding of its point: `y` below the field's
/// prime, and no sign bit on a point whose `x` is zero (`y` = 1 or -1). Checked
/// on the bytes, because recompressing a point costs a field inversion.
fn canonical(bytes: &[u8; 32]) -> bool {
    let mut y = *bytes;
    y[31] &= 0x7f;
    let sign = bytes[31] >> 7 == 1;
    // p = 2^255 - 19: y >= p only for 0x7fff..ffed ..= 0x7fff..ffff.
    let at_least_p = y[0] >= 0xed && y[1..31].iter().all(|b| *b == 0xff) && y[31] == 0x7f;
    let one = y[0] == 1 && y[1..].iter().all(|b| *b == 0);
    let minus_one = y[0] == 0xec && y[1..31].iter().all(|b| *b == 0xff) && y[31] == 0x7f;
    !at_least_p && !(sign && (one || minus_one))
}

/// Decodes a point, refusing non-canonical encodings and small orders.
fn point(bytes: &[u8; 32]) -> Result<EdwardsPoint, SignatureError> {
    if !canonical(bytes) {
        return Err(SignatureError::NonCanonicalPoint);
    }
    let p = CompressedEdwardsY(*bytes).decompress().ok_or(SignatureError::NonCanonicalPoint)?;
    if p.is_small_order() {
        return Err(SignatureError::SmallOrder);
    }
    Ok(p)
}

/// The key's point, checked like `R` (the key holds it decompressed already).
fn key_point(key: &VerifyingKey) -> Result<EdwardsPoint, SignatureError> {
    if !canonical(key.as_bytes()) {
        return Err(SignatureError::NonCanonicalPoint);
    }
    let a = key.to_edwards();
    if a.is_small_order() {
        return Err(SignatureError::SmallOrder);
    }
    Ok(a)
}

/// Checks every encoding of `item` and computes its challenge `k`.
fn prepare(item: &Item<'_>) -> Result<(Prepared, EdwardsPoint), SignatureError> {
    let sig: &[u8; 64] = item.signature.try_into().map_err(|_| SignatureError::Length)?;
    let mut r_bytes = [0u8; 32];
    let mut s = [0u8; 32];
    r_bytes.copy_from_slice(&sig[..32]);
    s.copy_from_slice(&sig[32..]);
    let s =
        Option::<Scalar>::from(Scalar::from_canonical_bytes(s)).ok_or(SignatureError::NonCanonicalScalar)?;
    let key = *item.key.as_bytes();
    let a = key_point(item.key)?;
    let r = point(&r_bytes)?;
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(key);
    h.update(item.message);
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    Ok((Prepared { r, r_bytes, s, k, key }, a))
}

/// Verifies one signature under the rule of this module.
pub fn verify(item: &Item<'_>) -> Result<(), SignatureError> {
    let (p, a) = prepare(item)?;
    // [S]B - [k]A, then compare with R after clearing torsion.
    let expected = EdwardsPoint::vartime_double_scalar_mul_basepoint(&p.k, &(-a), &p.s);
    if (expected - p.r).mul_by_cofactor().is_identity() {
        Ok(())
    } else {
        Err(SignatureError::Equation)
    }
}

/// Verifies `items` together in one random linear combination: `Ok` only if every
/// one of them passes `verify`. Terms under the same key share one point, so a
/// batch from one origin costs little more than its `R` points.
pub fn verify_batch(items: &[Item<'_>], secret: &BatchSecret) -> Result<(), SignatureError> {
    let mut prepared = Vec::with_capacity(items.len());
    let mut keys: HashMap<[u8; 32], (EdwardsPoint, Scalar)> = HashMap::new();
    let mut transcript = blake3::Hasher::new_keyed(&secret.0);
    for item in items {
        let (p, a) = prepare(item)?;
        keys.entry(p.key).or_insert((a, Scalar::ZERO));
        transcript.update(&p.r_bytes);
        transcript.update(&p.key);
        transcript.update(p.s.as_bytes());
        transcript.update(p.k.as_bytes());
        prepared.push(p);
    }
    let mut coefficients = transcript.finalize_xof();
    let mut b = Scalar::ZERO;
    let mut scalars = Vec::with_capacity(prepared.len() + keys.len() + 1);
    let mut points = Vec::with_capacity(scalars.capacity());
    for p in &prepared {
        let mut z = [0u8; 32];
        coefficients.fill(&mut z[..16]);
        let z = Scalar::from_bytes_mod_order(z);
        b -= z * p.s;
        if let Some((_, sum)) = keys.get_mut(&p.key) {
            *sum += z * p.k;
        }
        scalars.push(z);
        points.push(p.r);
    }
    scalars.push(b);
    points.push(ED25519_BASEPOINT_POINT);
    for (a, sum) in keys.into_values() {
        scalars.push(sum);
        points.push(a);
    }
    let total = EdwardsPoint::vartime_multiscalar_mul(scalars, points);
    if total.mul_by_cofactor().is_identity() {
        Ok(())
    } else {
        Err(SignatureError::Equation)
    }
}

/// Verifies each of `items`, in batches spread over up to `threads` threads: the
/// answer for each is exactly what `verify` would say (a batch that fails is
/// checked again one signature at a time, so one bad signature costs its batch a
/// second pass, never a wrong answer).
pub fn verify_each(items: &[Item<'_>], secret: &BatchSecret, threads: usize) -> Vec<bool> {
    let threads = threads.clamp(1, MAX_VERIFY_THREADS).min(items.len() / MIN_SIGNATURES_PER_THREAD).max(1);
    let per_thread = items.len().div_ceil(threads).max(1);
    let check = |chunk: &[Item<'_>]| -> Vec<bool> {
        match verify_batch(chunk, secret) {
            Ok(()) => vec![true; chunk.len()],
            Err(_) => chunk.iter().map(|item| verify(item).is_ok()).collect(),
        }
    };
    if threads == 1 {
        return check(items);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            items.chunks(per_thread).map(|chunk| scope.spawn(move || check(chunk))).collect();
        handles
            .into_iter()
            .zip(items.chunks(per_thread))
            // A panicked thread is answered the slow way, on this one.
            .flat_map(|(handle, chunk)| handle.join().unwrap_or_else(|_| check(chunk)))
            .collect()
    })
}

/// How many threads `verify_each` should use on this machine.
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_VERIFY_THREADS)
}

#[cfg(test)]
mod tests;
