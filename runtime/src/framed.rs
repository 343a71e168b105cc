//! Reading and writing wire frames on QUIC streams.
//!
//! A reader gets either a whole, decoded message or an error that says what was wrong; it
//! never hands back a partial frame. `Ok(None)` means the peer finished the stream cleanly at a
//! frame boundary.

use quinn::{ReadExactError, RecvStream, SendStream};
use sitecast_protocol::wire::{self, Message, WireError, HEADER_LEN};
use sitecast_protocol::ChunkId;

/// What went wrong on a framed stream.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer sent bytes that are not a valid frame.
    #[error("malformed frame: {0}")]
    Wire(#[from] WireError),
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({0} bytes short)")]
    Truncated(usize),
    /// The stream or connection failed while reading.
    #[error("read failed: {0}")]
    Read(#[from] quinn::ReadError),
    /// The stream or connection failed while writing.
    #[error("write failed: {0}")]
    Write(#[from] quinn::WriteError),
}

impl FrameError {
    /// Whether the failure was the peer's bad bytes (as opposed to the transport).
    #[must_use]
    pub fn is_malformed(&self) -> bool {
        matches!(self, FrameError::Wire(_) | FrameError::Truncated(_))
    }
}

/// Read the next frame; `Ok(None)` when the stream finished before a new frame began.
///
/// # Errors
/// A malformed or truncated frame, or a transport failure.
pub async fn read_frame(recv: &mut RecvStream) -> Result<Option<Message>, FrameError> {
    let mut head = [0u8; HEADER_LEN];
    match recv.read_exact(&mut head).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(ReadExactError::FinishedEarly(n)) => return Err(FrameError::Truncated(HEADER_LEN - n)),
        Err(ReadExactError::ReadError(e)) => return Err(e.into()),
    }
    let header = wire::decode_header(&head)?;
    let mut body = vec![0u8; header.len as usize];
    match recv.read_exact(&mut body).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(n)) => return Err(FrameError::Truncated(body.len() - n)),
        Err(ReadExactError::ReadError(e)) => return Err(e.into()),
    }
    Ok(Some(wire::decode_body(header, &body)?))
}

/// Write one message as a frame; returns the bytes written.
///
/// # Errors
/// Transport failures.
pub async fn write_frame(send: &mut SendStream, msg: &Message) -> Result<usize, FrameError> {
    let bytes = wire::encode(msg);
    send.write_all(&bytes).await?;
    Ok(bytes.len())
}

/// Write a `ChunkData` frame from borrowed bytes; returns the bytes written (framing + data).
///
/// # Errors
/// Transport failures.
pub async fn write_chunk(
    send: &mut SendStream,
    id: &ChunkId,
    data: &[u8],
) -> Result<usize, FrameError> {
    let head = wire::chunk_data_header(id, data.len());
    send.write_all(&head).await?;
    send.write_all(data).await?;
    Ok(head.len() + data.len())
}
