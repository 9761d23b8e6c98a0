//! Length-prefixed frames on a QUIC stream, with a hard size limit.

use bytes::{Bytes, BytesMut};
use cascade_protocol::call::{CallError, CallFrame, FrameHead, FRAME_HEAD_BYTES};
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
    /// A call's body frame breaks the call protocol.
    #[error("{0}")]
    Call(#[from] CallError),
    /// Reading a call's body failed.
    #[error("read: {0}")]
    ReadBody(#[from] quinn::ReadError),
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
    // One write: the length and the message leave in one packet when they fit.
    let mut framed = Vec::with_capacity(4 + bytes.len());
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&bytes);
    send.write_all(&framed).await?;
    Ok(framed.len())
}

/// Data frames up to this size go out in one write with their head (a copy);
/// larger ones go out as they are, without one.
const COPY_BELOW: usize = 4096;

/// Reads one body frame of a call; `Ok(None)` at a clean end of stream. Its data
/// is taken from the stream as QUIC delivered it, copied only when it arrived in
/// pieces; a frame head announcing more than a frame may hold is refused before
/// anything of its data is read.
pub async fn read_call_frame(recv: &mut quinn::RecvStream) -> Result<Option<CallFrame>, FrameError> {
    let mut head = [0u8; FRAME_HEAD_BYTES];
    match recv.read_exact(&mut head).await {
        Ok(_) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let (len, tag) = match FrameHead::parse(&head)? {
        FrameHead::End { total, tag } => return Ok(Some(CallFrame::End { total, tag })),
        FrameHead::Data { len, tag } => (len, tag),
    };
    let mut pieces: Option<BytesMut> = None;
    let mut first: Option<Bytes> = None;
    let mut have = 0;
    while have < len {
        let chunk = recv
            .read_chunk(len - have, true)
            .await?
            .ok_or(FrameError::Read(quinn::ReadExactError::FinishedEarly(have)))?;
        have += chunk.bytes.len();
        match (&mut pieces, first.take()) {
            (Some(all), _) => all.extend_from_slice(&chunk.bytes),
            (None, None) => first = Some(chunk.bytes),
            (None, Some(earlier)) => {
                let mut all = BytesMut::with_capacity(len);
                all.extend_from_slice(&earlier);
                all.extend_from_slice(&chunk.bytes);
                pieces = Some(all);
            }
        }
    }
    let bytes = match pieces {
        Some(all) => all.freeze(),
        None => first.unwrap_or_default(),
    };
    Ok(Some(CallFrame::Data { bytes, tag }))
}

/// Writes one body frame of a call.
pub async fn write_call_frame(send: &mut quinn::SendStream, frame: CallFrame) -> Result<(), FrameError> {
    let head = frame.head();
    match frame {
        CallFrame::Data { bytes, .. } if bytes.len() >= COPY_BELOW => {
            send.write_all_chunks(&mut [Bytes::copy_from_slice(&head), bytes]).await?
        }
        CallFrame::Data { bytes, .. } => {
            let mut all = Vec::with_capacity(FRAME_HEAD_BYTES + bytes.len());
            all.extend_from_slice(&head);
            all.extend_from_slice(&bytes);
            send.write_all(&all).await?
        }
        CallFrame::End { .. } => send.write_all(&head).await?,
    }
    Ok(())
}
