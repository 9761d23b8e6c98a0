//! Length-prefixed frames on a QUIC stream, with a hard size limit.

use cascade_protocol::limits::MAX_FRAME_BYTES;
use cascade_protocol::{codec, CodecError, Frame};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Errors reading or writing frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer announced a frame over the limit; nothing of it was read.
    #[error("frame of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// The frame's bytes are not a valid frame.
    #[error("malformed frame: {0}")]
    Malformed(#[from] CodecError),
    /// Reading the stream failed.
    #[error("read: {0}")]
    Read(#[from] quinn::ReadExactError),
    /// Writing failed.
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
}

/// Reads one frame and its encoded size; `Ok(None)` at a clean end of stream.
pub async fn read_frame(recv: &mut quinn::RecvStream) -> Result<Option<(Frame, usize)>, FrameError> {
    read_message(recv, MAX_FRAME_BYTES).await
}

/// Writes one frame; returns the bytes written.
pub async fn write_frame(send: &mut quinn::SendStream, frame: &Frame) -> Result<usize, FrameError> {
    write_message(send, frame).await
}

/// Reads one length-prefixed message of at most `limit` bytes and its size;
/// `Ok(None)` at a clean end of stream. Nothing of a longer one is read.
pub async fn read_message<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    limit: usize,
) -> Result<Option<(T, usize)>, FrameError> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Ok(_) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > limit.min(MAX_FRAME_BYTES) {
        return Err(FrameError::TooLarge(len));
    }
    let mut buf = vec![0u8; len];
    recv.read_exact(&mut buf).await?;
    Ok(Some((codec::decode(&buf, limit)?, len)))
}

/// Writes one length-prefixed message; returns the bytes written.
pub async fn write_message<T: Serialize>(
    send: &mut quinn::SendStream,
    message: &T,
) -> Result<usize, FrameError> {
    let bytes = codec::encode(message)?;
    let len = u32::try_from(bytes.len()).map_err(|_| FrameError::TooLarge(bytes.len()))?;
    send.write_all(&len.to_be_bytes()).await?;
    send.write_all(&bytes).await?;
    Ok(bytes.len() + 4)
}
