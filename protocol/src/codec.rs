//! Bounded bincode codec: every decode of untrusted bytes has a hard size limit.

use crate::limits::MAX_FRAME_BYTES;
use serde::{de::DeserializeOwned, Serialize};

/// Errors of the codec.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value could not be encoded.
    #[error("encode: {0}")]
    Encode(String),
    /// The bytes are not a valid value of the expected type (or exceed the limit).
    #[error("decode: {0}")]
    Decode(String),
    /// Bytes were left over after the value.
    #[error("decode: {0} trailing bytes")]
    Trailing(usize),
    /// The input is larger than the limit.
    #[error("{len} bytes exceed the limit of {limit}")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The limit in force.
        limit: usize,
    },
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_big_endian().with_fixed_int_encoding().with_limit::<MAX_FRAME_BYTES>()
}

/// Encodes a value with the canonical configuration.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let bytes =
        bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError::Encode(e.to_string()))?;
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(CodecError::TooLarge { len: bytes.len(), limit: MAX_FRAME_BYTES });
    }
    Ok(bytes)
}

/// Decodes a value from untrusted bytes: bounded by `limit` and `MAX_FRAME_BYTES`,
/// every byte must be consumed.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, CodecError> {
    let limit = limit.min(MAX_FRAME_BYTES);
    if bytes.len() > limit {
        return Err(CodecError::TooLarge { len: bytes.len(), limit });
    }
    let (value, used) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_limits() {
        let v: Vec<u32> = vec![1, 2, 3];
        let bytes = encode(&v).unwrap();
        assert_eq!(decode::<Vec<u32>>(&bytes, 1024).unwrap(), v);
        assert!(matches!(decode::<Vec<u32>>(&bytes, 4), Err(CodecError::TooLarge { .. })));
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(matches!(decode::<Vec<u32>>(&extra, 1024), Err(CodecError::Trailing(1))));
    }

    #[test]
    fn huge_length_prefix_is_refused_without_allocating() {
        // A vector claiming u64::MAX elements must fail, not allocate.
        let bytes = [0xffu8; 8];
        assert!(decode::<Vec<u64>>(&bytes, 1024).is_err());
    }
}
