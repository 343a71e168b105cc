//! Recipe and chunk streams. A site may only fetch blobs pushed to it, or (on demand, for its
//! registry mirror) blobs stored in an OCI repository.
//!
//! Chunks are read from the store on the blocking pool one ahead of the one being written, and
//! paced by the site's token bucket. Bytes are counted per site and, through
//! `ChunkRequest.blob`, per push.

use std::sync::atomic::Ordering;
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

/// Whether a blob is held at a site (outside every window of the pushes supplying it) and the
/// rate the site is paced at, as last looked up (from one [`db::schedule::gates`]); looked up
/// again once any site or push changed or the clock passed the next window edge.
struct HoldCheck {
    generation: u64,
    recheck_at_ms: Option<i64>,
    held: bool,
    rate: Option<u64>,
}

impl HoldCheck {
    async fn new(core: &Core, site: &str, blob: BlobId) -> Result<Self> {
        let generation = *core.site_changes.borrow();
        let now_ms = crate::util::now_millis();
        let site = site.to_owned();
        let (gates, rate) = core
            .db
            .call(move |c| {
                let gates = db::schedule::gates(c, &site, now_ms / 1000)?.unwrap_or_default();
                let rate = db::sites::effective_rate(c, &site, &gates.pushes)?;
                Ok((gates, rate))
            })
            .await?;
        Ok(Self {
            generation,
            recheck_at_ms: gates.next.map(|s| s * 1000),
            held: gates.blobs.contains(&blob),
            rate,
        })
    }

    fn stale(&self, core: &Core) -> bool {
        *core.site_changes.borrow() != self.generation
            || self
                .recheck_at_ms
                .is_some_and(|t| crate::util::now_millis() >= t)
    }
}

/// Refuse a held blob's chunks: `Held` to an edge that honours holds (it waits for `Holds`),
/// `Internal` ("retry later") to older edges.
async fn reject_held(
    core: &Arc<Core>,
    peer: &Peer,
    send: SendStream,
    recv: RecvStream,
    blob: BlobId,
) {
    let code = if peer.honors_holds.load(Ordering::Relaxed) {
        ErrorCode::Held
    } else {
        ErrorCode::Internal
    };
    let msg = format!(
        "blob {blob} is held at site {}: outside its transfer window or before its start time; retry later",
        peer.site
    );
    // What was sent is in push progress before the edge hears of the pause.
    if let Err(e) = core.flush_accounting().await {
        tracing::warn!(error = %e, "recording bytes sent failed");
    }
    reject(core, Some(peer), send, recv, code, msg).await;
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
    let mut hold = HoldCheck::new(core, &peer.site, blob).await?;
    let bucket = core.buckets.get(&peer.site, hold.rate);
    let mut next = r.chunks.first().map(|id| read_chunk(core, *id));
    for (i, id) in r.chunks.iter().enumerate() {
        if hold.stale(core) {
            hold = HoldCheck::new(core, &peer.site, blob).await?;
        }
        if hold.held {
            // At a chunk boundary: what was sent stays at the edge, nothing is sent twice.
            reject_held(core, peer, send, recv, blob).await;
            return Ok(());
        }
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
        // The pacer may have waited across a window's end.
        if hold.stale(core) {
            hold = HoldCheck::new(core, &peer.site, blob).await?;
            if hold.held {
                reject_held(core, peer, send, recv, blob).await;
                return Ok(());
            }
        }
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
