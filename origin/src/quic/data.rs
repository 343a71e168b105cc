//! Recipe and chunk streams. A site may only fetch blobs pushed to it, or (on demand, for its
//! registry mirror) blobs stored in an OCI repository.
//!
//! Chunks are read from the store on the blocking pool one ahead of the one being written, and
//! paced by the site's token bucket. Bytes are counted per site and, through
//! `ChunkRequest.blob`, per push.

use std::sync::Arc;

use quinn::{RecvStream, SendStream};
use sitecast_protocol::wire::{
    ChunkRequest, ErrorCode, Message, RecipeRequest, RecipeResponse, MAX_CHUNKS_PER_REQUEST,
};
use sitecast_protocol::{BlobId, ChunkId};
use sitecast_runtime::chunks::{ChunkStore, StoreError};
use sitecast_runtime::framed::{write_chunk, write_frame};

use super::{reject, Peer};
use crate::core::Core;
use crate::db;
use crate::error::{Error, Result};

async fn allowed(core: &Core, peer: &Peer, blob: BlobId) -> Result<bool> {
    let site = peer.site.to_string();
    core.db
        .call(move |c| {
            Ok(db::pushes::site_has_blob(c, &site, &blob)? || db::oci::is_image_blob(c, &blob)?)
        })
        .await
}

pub(super) async fn recipe(
    core: &Arc<Core>,
    peer: &Peer,
    mut send: SendStream,
    recv: RecvStream,
    r: RecipeRequest,
) -> Result<()> {
    let blob = r.blob;
    let recipe = if allowed(core, peer, blob).await? {
        core.db
            .call(move |c| db::artifacts::recipe(c, &blob))
            .await?
    } else {
        None
    };
    let Some(recipe) = recipe else {
        let msg = format!("blob {blob} is not pushed to site {}", peer.site);
        reject(core, Some(peer), send, recv, ErrorCode::NotFound, msg).await;
        return Ok(());
    };
    let n = write_frame(
        &mut send,
        &Message::RecipeResponse(RecipeResponse { recipe }),
    )
    .await?;
    core.count_sent(&peer.site, Some(blob), 0, n as u64);
    let _ = send.finish();
    Ok(())
}

fn read_chunk(
    core: &Arc<Core>,
    id: ChunkId,
) -> tokio::task::JoinHandle<Result<Vec<u8>, StoreError>> {
    let core = Arc::clone(core);
    tokio::task::spawn_blocking(move || core.store.get(&id))
}

pub(super) async fn chunks(
    core: &Arc<Core>,
    peer: &Peer,
    mut send: SendStream,
    recv: RecvStream,
    r: ChunkRequest,
) -> Result<()> {
    if r.chunks.len() > MAX_CHUNKS_PER_REQUEST {
        let msg = format!(
            "ChunkRequest names {} chunks, at most {MAX_CHUNKS_PER_REQUEST} allowed",
            r.chunks.len()
        );
        reject(core, Some(peer), send, recv, ErrorCode::BadRequest, msg).await;
        return Ok(());
    }
    let blob = r.blob;
    let recipe = if allowed(core, peer, blob).await? {
        core.db
            .call(move |c| db::artifacts::recipe(c, &blob))
            .await?
    } else {
        None
    };
    let Some(recipe) = recipe else {
        let msg = format!("blob {blob} is not pushed to site {}", peer.site);
        reject(core, Some(peer), send, recv, ErrorCode::NotFound, msg).await;
        return Ok(());
    };
    let members: std::collections::HashSet<ChunkId> = recipe.chunks.iter().map(|c| c.id).collect();
    if let Some(bad) = r.chunks.iter().find(|c| !members.contains(c)) {
        let msg = format!("chunk {bad} is not part of blob {blob}");
        reject(core, Some(peer), send, recv, ErrorCode::BadRequest, msg).await;
        return Ok(());
    }
    let site = peer.site.to_string();
    let rate = core
        .db
        .call(move |c| db::sites::effective_rate(c, &site))
        .await?;
    let bucket = core.buckets.get(&peer.site, rate);
    let mut next = r.chunks.first().map(|id| read_chunk(core, *id));
    for (i, id) in r.chunks.iter().enumerate() {
        let Some(pending) = next.take() else { break };
        let data = match pending.await.map_err(Error::from)? {
            Ok(d) => d,
            Err(e) => {
                let (code, msg) = match e {
                    StoreError::NotFound(_) | StoreError::Corrupt(_) => (
                        ErrorCode::NotFound,
                        format!("chunk {id} is not available at the origin"),
                    ),
                    e => {
                        tracing::error!(error = %e, "reading chunk failed");
                        (
                            ErrorCode::Internal,
                            format!("origin could not read chunk {id}; retry later"),
                        )
                    }
                };
                reject(core, Some(peer), send, recv, code, msg).await;
                return Ok(());
            }
        };
        next = r.chunks.get(i + 1).map(|id| read_chunk(core, *id));
        bucket.acquire(data.len() as u64).await;
        let n = write_chunk(&mut send, id, &data).await?;
        core.count_sent(
            &peer.site,
            Some(blob),
            data.len() as u64,
            (n - data.len()) as u64,
        );
    }
    let _ = send.finish();
    Ok(())
}
