//! The SFTP request loop over one SSH channel: requests are read as fast as the client sends
//! them and answered in order, so any number of outstanding requests is answered.
//!
//! Why not `russh_sftp::server::run`: it reads one request, writes its answer, then reads the
//! next. A client that sends many reads before reading any answer (paramiko's `get()` sends
//! every read of a file at once; WinSCP, FileZilla and rclone pipeline deeply too) fills its own
//! receive window with answers; the server then waits for a window adjust while it stops reading
//! requests; russh's per-channel queue fills and its session loop, blocked on that queue, no
//! longer reads the window adjust: a deadlock (seen with 512 outstanding 32 KiB reads).
//!
//! Here one task only reads requests into a queue, the other answers them. The queue is bounded
//! by bytes ([`MAX_QUEUED_BYTES`], ~2 million read requests); only a client beyond that is
//! slowed by back-pressure. Answers are produced one at a time, when the previous one has been
//! written, so memory per session is the queue plus one answer whatever the client does.

use std::sync::Arc;

use bytes::Bytes;
use russh::server::Msg;
use russh::{ChannelReadHalf, ChannelWriteHalf};
use russh_sftp::protocol::{Packet, StatusCode};
use russh_sftp::server::{Handler, StatusReply};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Largest request packet accepted (a 256 KiB write plus its header, as russh-sftp allows).
const MAX_PACKET: u32 = 256 * 1024 + 1024;
/// Most request bytes queued and not yet answered per session.
const MAX_QUEUED_BYTES: usize = 64 << 20;

/// Serve SFTP on a channel's halves with `fs` until the client closes it.
pub(crate) async fn serve<H>(mut read: ChannelReadHalf, write: ChannelWriteHalf<Msg>, mut fs: H)
where
    H: Handler + Send,
{
    let budget = Arc::new(Semaphore::new(MAX_QUEUED_BYTES));
    let (tx, mut rx) = mpsc::unbounded_channel::<(Bytes, OwnedSemaphorePermit)>();
    let reader = tokio::spawn(async move {
        let mut r = read.make_reader();
        // Until the client closes the channel (or breaks the framing).
        while let Ok(len) = r.read_u32().await {
            if len > MAX_PACKET {
                tracing::warn!(len, "sftp: request packet too long; closing");
                break;
            }
            let Ok(permit) = budget.clone().acquire_many_owned(len.max(1)).await else {
                break;
            };
            let mut buf = vec![0; len as usize];
            if r.read_exact(&mut buf).await.is_err() {
                break;
            }
            if tx.send((Bytes::from(buf), permit)).is_err() {
                break;
            }
        }
    });
    let mut w = write.make_writer();
    while let Some((mut bytes, permit)) = rx.recv().await {
        let reply = match Packet::try_from(&mut bytes) {
            Ok(request) => answer(request, &mut fs).await,
            Err(_) => Packet::error(0, StatusCode::BadMessage),
        };
        drop(permit);
        let Ok(out) = Bytes::try_from(reply) else {
            tracing::warn!("sftp: an answer could not be encoded; closing");
            break;
        };
        if w.write_all(&out).await.is_err() {
            break;
        }
        if rx.is_empty() && w.flush().await.is_err() {
            break;
        }
    }
    reader.abort();
    let _ = w.shutdown().await;
    tracing::debug!("sftp stream ended");
}

/// The answer to one request (a status for anything refused or unknown).
async fn answer<H: Handler + Send>(request: Packet, fs: &mut H) -> Packet {
    let id = request.get_request_id();
    let reply = match request {
        Packet::Init(r) => fs.init(r.version, r.extensions).await.map(Packet::from),
        Packet::Open(r) => fs
            .open(r.id, r.filename, r.pflags, r.attrs)
            .await
            .map(Into::into),
        Packet::Close(r) => fs.close(r.id, r.handle).await.map(Into::into),
        Packet::Read(r) => fs
            .read(r.id, r.handle, r.offset, r.len)
            .await
            .map(Into::into),
        Packet::Write(r) => fs
            .write(r.id, r.handle, r.offset, r.data)
            .await
            .map(Into::into),
        Packet::Lstat(r) => fs.lstat(r.id, r.path).await.map(Into::into),
        Packet::Fstat(r) => fs.fstat(r.id, r.handle).await.map(Into::into),
        Packet::SetStat(r) => fs.setstat(r.id, r.path, r.attrs).await.map(Into::into),
        Packet::FSetStat(r) => fs.fsetstat(r.id, r.handle, r.attrs).await.map(Into::into),
        Packet::OpenDir(r) => fs.opendir(r.id, r.path).await.map(Into::into),
        Packet::ReadDir(r) => fs.readdir(r.id, r.handle).await.map(Into::into),
        Packet::Remove(r) => fs.remove(r.id, r.filename).await.map(Into::into),
        Packet::MkDir(r) => fs.mkdir(r.id, r.path, r.attrs).await.map(Into::into),
        Packet::RmDir(r) => fs.rmdir(r.id, r.path).await.map(Into::into),
        Packet::RealPath(r) => fs.realpath(r.id, r.path).await.map(Into::into),
        Packet::Stat(r) => fs.stat(r.id, r.path).await.map(Into::into),
        Packet::Rename(r) => fs.rename(r.id, r.oldpath, r.newpath).await.map(Into::into),
        Packet::ReadLink(r) => fs.readlink(r.id, r.path).await.map(Into::into),
        Packet::Symlink(r) => fs
            .symlink(r.id, r.linkpath, r.targetpath)
            .await
            .map(Into::into),
        Packet::Extended(r) => fs.extended(r.id, r.request, r.data).await,
        _ => return Packet::error(0, StatusCode::BadMessage),
    };
    reply.unwrap_or_else(|e| {
        let StatusReply {
            status_code,
            error_message,
            language_tag,
        } = e.into();
        Packet::status(
            id,
            status_code,
            &error_message.unwrap_or_else(|| status_code.to_string()),
            &language_tag.unwrap_or_else(|| "en-US".to_owned()),
        )
    })
}
