use super::*;
use ed25519_dalek::{Signature, Signer};
use rand::{Rng, SeedableRng};

/// The twelve edge-case vectors of "Taming the many EdDSAs" (Chalkias, Garillot,
/// Nikolaenko, 2020), as published in novifinancial/ed25519-speccheck's
/// `cases.json` (Apache-2.0), unchanged.
const TAMING_CASES: &str = include_str!("taming-cases.json");

/// What this module's rule answers for each vector, by index, with the reason
/// from the paper's table: 3, 4 and 5 are the only ones passing a cofactored
/// equation with canonical, non-small points and a canonical scalar.
const EXPECTED: [Result<(), SignatureError>; 12] = [
    Err(SignatureError::SmallOrder),         // 0: small A and R, S = 0
    Err(SignatureError::SmallOrder),         // 1: small A
    Err(SignatureError::SmallOrder),         // 2: small R
    Ok(()),                                  // 3: mixed A and R, passes both equations
    Ok(()),                                  // 4: mixed A and R, passes cofactored only
    Ok(()),                                  // 5: passes cofactored unless 8h is pre-reduced
    Err(SignatureError::NonCanonicalScalar), // 6: S > L
    Err(SignatureError::NonCanonicalScalar), // 7: S >> L
    Err(SignatureError::NonCanonicalPoint),  // 8: non-canonical R, reduced for hash
    Err(SignatureError::NonCanonicalPoint),  // 9: non-canonical R, not reduced for hash
    Err(SignatureError::NonCanonicalPoint),  // 10: non-canonical A, reduced for hash
    Err(SignatureError::NonCanonicalPoint),  // 11: non-canonical A, not reduced for hash
];

struct Case {
    key: VerifyingKey,
    message: Vec<u8>,
    signature: Vec<u8>,
}

impl Case {
    fn item(&self) -> Item<'_> {
        Item { key: &self.key, message: &self.message, signature: &self.signature }
    }
}

fn taming_cases() -> Vec<Case> {
    let cases: Vec<serde_json::Value> = serde_json::from_str(TAMING_CASES).expect("cases.json");
    let field = |case: &serde_json::Value, name: &str| -> Vec<u8> {
        hex::decode(case[name].as_str().expect("a hex string")).expect("hex")
    };
    cases
        .iter()
        .map(|case| {
            let key: [u8; 32] = field(case, "pub_key").try_into().expect("32 bytes");
            Case {
                key: VerifyingKey::from_bytes(&key).expect("every vector's key decompresses"),
                message: field(case, "message"),
                signature: field(case, "signature"),
            }
        })
        .collect()
}

/// Honest signatures by a few keys over messages of varied length.
fn honest(count: usize, seed: u64) -> Vec<Case> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let keys: Vec<SigningKey> = (0..3).map(|_| SigningKey::from_bytes(&rng.gen())).collect();
    (0..count)
        .map(|i| {
            let key = &keys[i % keys.len()];
            let message: Vec<u8> = (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect();
            let signature = key.sign(&message).to_bytes().to_vec();
            Case { key: key.verifying_key(), message, signature }
        })
        .collect()
}

fn secret() -> BatchSecret {
    BatchSecret::from_signing_key(&SigningKey::from_bytes(&[7; 32]))
}

#[test]
fn the_single_rule_answers_each_taming_vector_as_the_paper_table_says() {
    let cases = taming_cases();
    assert_eq!(cases.len(), EXPECTED.len());
    for (i, case) in cases.iter().enumerate() {
        assert_eq!(verify(&case.item()), EXPECTED[i], "vector {i}");
    }
}

#[test]
fn the_batch_accepts_exactly_what_the_single_rule_accepts_on_every_taming_vector() {
    let cases = taming_cases();
    let others = honest(40, 1);
    for (i, case) in cases.iter().enumerate() {
        let single = verify(&case.item()).is_ok();
        // Alone, first, last and in the middle of honest signatures.
        let alone = verify_batch(&[case.item()], &secret()).is_ok();
        assert_eq!(alone, single, "vector {i} alone");
        for at in [0, 20, 40] {
            let mut items: Vec<Item<'_>> = others.iter().map(Case::item).collect();
            items.insert(at, case.item());
            assert_eq!(verify_batch(&items, &secret()).is_ok(), single, "vector {i} at {at}");
            let each = verify_each(&items, &secret(), 2);
            assert_eq!(each[at], single, "vector {i} at {at}, one by one");
            assert!(
                each.iter().enumerate().all(|(j, ok)| j == at || *ok),
                "vector {i}: an honest one refused"
            );
        }
    }
    // All twelve together: the batch fails, and each answer is the single one.
    let items: Vec<Item<'_>> = cases.iter().map(Case::item).collect();
    assert!(verify_batch(&items, &secret()).is_err());
    let each = verify_each(&items, &secret(), 1);
    let expected: Vec<bool> = EXPECTED.iter().map(Result::is_ok).collect();
    assert_eq!(each, expected);
    // The three accepted ones, under three different keys, pass as one batch.
    let accepted: Vec<Item<'_>> = cases[3..6].iter().map(Case::item).collect();
    assert_eq!(verify_batch(&accepted, &secret()), Ok(()));
}

#[test]
fn the_rule_agrees_with_strict_dalek_on_honest_and_damaged_signatures() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    for case in honest(200, 3) {
        let dalek = |signature: &[u8]| {
            let bytes: [u8; 64] = signature.try_into().expect("64 bytes");
            case.key.verify_strict(&case.message, &Signature::from_bytes(&bytes)).is_ok()
        };
        assert!(verify(&case.item()).is_ok());
        assert!(dalek(&case.signature));
        // One flipped bit anywhere in the signature or the message.
        let mut signature = case.signature.clone();
        let bit = rng.gen_range(0..512);
        signature[bit / 8] ^= 1 << (bit % 8);
        let damaged = Item { key: &case.key, message: &case.message, signature: &signature };
        assert_eq!(verify(&damaged).is_ok(), dalek(&signature), "bit {bit}");
        assert!(verify(&damaged).is_err());
        if !case.message.is_empty() {
            let mut message = case.message.clone();
            let at = rng.gen_range(0..message.len());
            message[at] ^= 1 << rng.gen_range(0..8);
            let damaged = Item { key: &case.key, message: &message, signature: &case.signature };
            assert!(verify(&damaged).is_err());
        }
    }
}

#[test]
fn one_bad_signature_fails_its_batch_and_is_named_by_verify_each() {
    let mut cases = honest(300, 4);
    cases[137].signature[40] ^= 0x10;
    cases[290].message.push(0);
    let items: Vec<Item<'_>> = cases.iter().map(Case::item).collect();
    assert_eq!(verify_batch(&items[..200], &secret()), Err(SignatureError::Equation));
    assert_eq!(verify_batch(&items[..137], &secret()), Ok(()));
    for threads in [1, 2, 3] {
        let each = verify_each(&items, &secret(), threads);
        let refused: Vec<usize> = each.iter().enumerate().filter(|(_, ok)| !**ok).map(|(i, _)| i).collect();
        assert_eq!(refused, vec![137, 290], "{threads} threads");
    }
    // A signature of the wrong length is refused, not a panic.
    let short = Item { key: items[0].key, message: items[0].message, signature: &[0; 63] };
    assert_eq!(verify(&short), Err(SignatureError::Length));
    assert_eq!(verify_each(&[short], &secret(), 2), vec![false]);
}

#[test]
fn a_signature_moved_to_another_key_or_swapped_between_messages_fails_the_batch() {
    let cases = honest(6, 5);
    // Same messages and signatures, keys rotated: every equation breaks.
    let items: Vec<Item<'_>> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| Item { key: &cases[(i + 1) % cases.len()].key, ..c.item() })
        .collect();
    assert!(verify_batch(&items, &secret()).is_err());
    // Two signatures swapped between their messages: the pair's sum could cancel
    // only if the coefficients were known, and they are not.
    let mut items: Vec<Item<'_>> = cases.iter().map(Case::item).collect();
    let (a, b) = (items[0].signature, items[3].signature);
    items[0].signature = b;
    items[3].signature = a;
    assert!(verify_batch(&items, &secret()).is_err());
}

#[test]
fn the_byte_check_of_canonical_encodings_agrees_with_recompressing_the_point() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    let mut encodings: Vec<[u8; 32]> = Vec::new();
    for low in 0..=40u8 {
        for sign in [0, 0x80] {
            // y = low, and y = 2^255 - 1 - low (reaching below and above p).
            let mut small = [0u8; 32];
            small[0] = low;
            small[31] = sign;
            let mut large = [0xffu8; 32];
            large[0] = 0xff - low;
            large[31] = 0x7f | sign;
            encodings.extend([small, large]);
        }
    }
    encodings.extend((0..500).map(|_| rng.gen::<[u8; 32]>()));
    encodings.extend((0..50).map(|_| SigningKey::from_bytes(&rng.gen()).verifying_key().to_bytes()));
    let mut points = 0;
    for bytes in encodings {
        let Some(p) = CompressedEdwardsY(bytes).decompress() else { continue };
        points += 1;
        assert_eq!(canonical(&bytes), p.compress().to_bytes() == bytes, "{}", hex::encode(bytes));
    }
    assert!(points > 100, "enough encodings were points ({points})");
}
