//! The decoders of untrusted bytes, one function per fuzz target. `cargo fuzz`
//! (the `fuzz` folder, nightly) drives them with generated inputs, and the seed
//! corpus in `fuzz/corpus/<target>/` replays through them as ordinary tests.
//! Each must return for every input: an error is an answer, a panic or a hang
//! is a bug.

use cascade_chunks::tree::Verifier;
use cascade_protocol::call::{CallHead, FrameHead, ReplyHead, FRAME_HEAD_BYTES, MAX_CALL_HEAD_BYTES};
use cascade_protocol::dataset::{
    ChunkReply, ChunkRequest, Manifest, MAX_CHUNK_REPLY_BYTES, MAX_CHUNK_REQUEST_BYTES,
};
use cascade_protocol::limits::{MAX_FRAME_BYTES, MAX_ROUTED_BYTES};
use cascade_protocol::routed::Routed;
use cascade_protocol::{decode, Frame};

/// A fuzz target: takes any bytes, returns for all of them.
pub type Target = fn(&[u8]);

/// The fuzz targets by name (the names of `fuzz/fuzz_targets/*.rs` and of the
/// corpus folders).
pub const TARGETS: [(&str, Target); 8] = [
    ("frame", frame),
    ("routed", routed),
    ("call_head", call_head),
    ("manifest", manifest),
    ("chunk", chunk),
    ("certificate", certificate),
    ("admin_body", admin_body),
    ("signature", signature),
];

/// A key no input was signed with: signature checks run to their refusal.
fn stranger() -> ed25519_dalek::VerifyingKey {
    ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key()
}

/// A sync-stream frame, and each delta in it: body, hash, signature.
pub fn frame(data: &[u8]) {
    let Ok(frame) = decode::<Frame>(data, MAX_FRAME_BYTES) else { return };
    match frame {
        Frame::Deltas(deltas) => {
            for delta in deltas {
                let _ = delta.decode_body();
                let _ = delta.hash();
                let _ = delta.verify(&stranger());
            }
        }
        Frame::Routed(message) => check_routed(&message),
        _ => {}
    }
}

fn check_routed(message: &Routed) {
    let _ = message.check_form();
    let _ = message.check([&stranger()], 0);
}

/// A routed message (applications, decisions, grants, revocations).
pub fn routed(data: &[u8]) {
    if let Ok(message) = decode::<Routed>(data, MAX_ROUTED_BYTES) {
        check_routed(&message);
    }
}

/// A service call's head, its answer's head, and a body frame's head.
pub fn call_head(data: &[u8]) {
    if let Ok(head) = decode::<CallHead>(data, MAX_CALL_HEAD_BYTES) {
        let _ = head.check_form();
        let _ = head.signer([&stranger()]);
    }
    let _ = decode::<ReplyHead>(data, MAX_CALL_HEAD_BYTES);
    if let Some(head) = data.first_chunk::<FRAME_HEAD_BYTES>() {
        let _ = FrameHead::parse(head);
    }
}

/// A dataset version's manifest, checked as a hub checks one.
pub fn manifest(data: &[u8]) {
    if let Ok(manifest) = decode::<Manifest>(data, MAX_FRAME_BYTES) {
        let _ = manifest.validate(manifest.entry.origin);
        let _ = manifest.validate(cascade_protocol::ids::NATIONAL);
    }
}

/// A chunk request, a chunk reply's head, and the reply's outboard and groups
/// checked against the address it claims.
pub fn chunk(data: &[u8]) {
    let _ = decode::<ChunkRequest>(data, MAX_CHUNK_REQUEST_BYTES);
    let Ok(reply) = decode::<ChunkReply>(data, MAX_CHUNK_REPLY_BYTES) else { return };
    let hash = *blake3::hash(data).as_bytes();
    if let Ok(verifier) = Verifier::new(hash, reply.len, reply.outboard) {
        let _ = verifier.check_run(0, data);
    }
}

/// A peer's certificate: the node identity in its extension.
pub fn certificate(data: &[u8]) {
    let _ = cascade_certs::NodeIdentity::from_der(data);
}

/// A JSON body of the admin API, as every route that reads one parses it.
pub fn admin_body(data: &[u8]) {
    cascade_admin::parse_every_body(data);
}

/// Bytes of one `signature` record: a selector, a signature, a message.
const SIGNATURE_RECORD: usize = 1 + 64 + 16;

/// Batch and single verification must answer alike for every signature (a
/// panic here is a disagreement). The input is cut into records of a selector
/// byte, 64 signature bytes and a 16-byte message: bit 0 of the selector picks
/// one of two keys; bit 1 replaces the signature by that key's real one, which
/// bit 2 then damages with the record's signature bytes.
pub fn signature(data: &[u8]) {
    use cascade_protocol::signature::{verify, verify_batch, verify_each, BatchSecret, Item};
    let signers =
        [ed25519_dalek::SigningKey::from_bytes(&[1; 32]), ed25519_dalek::SigningKey::from_bytes(&[2; 32])];
    let keys = [signers[0].verifying_key(), signers[1].verifying_key()];
    let records: Vec<(usize, Vec<u8>, &[u8])> = data
        .chunks_exact(SIGNATURE_RECORD)
        .take(32)
        .map(|r| {
            let (selector, signature, message) = (r[0], &r[1..65], &r[65..]);
            let key = usize::from(selector & 1);
            let mut sig = signature.to_vec();
            if selector & 2 != 0 {
                let real = ed25519_dalek::Signer::sign(&signers[key], message).to_bytes();
                sig = if selector & 4 != 0 {
                    real.iter().zip(signature).map(|(a, b)| a ^ b).collect()
                } else {
                    real.to_vec()
                };
            }
            (key, sig, message)
        })
        .collect();
    let items: Vec<Item<'_>> = records
        .iter()
        .map(|(key, sig, message)| Item { key: &keys[*key], message, signature: sig })
        .collect();
    let single: Vec<bool> = items.iter().map(|item| verify(item).is_ok()).collect();
    let secret = BatchSecret::from_signing_key(&signers[0]);
    assert_eq!(verify_each(&items, &secret, 1), single, "batch and single verification disagree");
    assert_eq!(verify_batch(&items, &secret).is_ok(), single.iter().all(|ok| *ok), "the batch disagrees");
}
