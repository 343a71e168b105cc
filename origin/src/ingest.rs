//! Artifact ingest: a streamed upload is cut into chunks as it arrives, each chunk stored as
//! soon as it is cut, and the artifact published only after every chunk and the recipe are
//! stored.
//!
//! Memory stays flat whatever the upload size: the body is consumed frame by frame, the chunker
//! buffers at most two maximum-size chunks, and at most two batches of cut chunks (about
//! [`BATCH_BYTES`] each) exist at once: one being written on the blocking pool while the next
//! fills. A failed upload (client gone, over the limit, disk full) publishes nothing and removes
//! the chunks it alone had written.

use std::sync::Arc;

use axum::body::Body;
use futures::StreamExt as _;
use sitecast_protocol::{CatalogPath, ChunkId, Chunker, Cut};
use sitecast_runtime::chunks::ChunkStore;
use tokio::task::JoinHandle;

use crate::core::Core;
use crate::db::{self, artifacts::Published};
use crate::error::{Error, Result};
use crate::util::now;

/// Bytes of cut chunks handed to one blocking write.
pub(crate) const BATCH_BYTES: usize = 4 * 1024 * 1024;

type Pending = JoinHandle<Result<Vec<ChunkId>>>;

struct Upload {
    core: Arc<Core>,
    pinned: Vec<ChunkId>,
    written: Vec<ChunkId>,
    pending: Option<Pending>,
}

impl Upload {
    /// Wait for the previous batch, then start writing `batch`.
    async fn write(&mut self, batch: Vec<Cut>) -> Result<()> {
        self.wait().await?;
        if batch.is_empty() {
            return Ok(());
        }
        let ids: Vec<ChunkId> = batch.iter().map(|c| c.id).collect();
        self.core.pin(&ids);
        self.pinned.extend(ids);
        let core = Arc::clone(&self.core);
        self.pending = Some(tokio::task::spawn_blocking(move || {
            let items: Vec<_> = batch.iter().map(|c| (c.id, &c.data[..])).collect();
            let stored = core.store.put_many(&items)?;
            Ok(batch
                .iter()
                .zip(stored)
                .filter_map(|(c, fresh)| fresh.then_some(c.id))
                .collect())
        }));
        Ok(())
    }

    async fn wait(&mut self) -> Result<()> {
        if let Some(p) = self.pending.take() {
            let fresh = p.await??;
            self.written.extend(fresh);
        }
        Ok(())
    }

    /// Undo after a failure: unpin, and remove the chunks of this upload that nothing else
    /// references or pins. That is every chunk it wrote, including those of a batch that
    /// failed half-way (whose ids were never reported back).
    async fn abandon(mut self) {
        if let Some(p) = self.pending.take() {
            let _ = p.await;
        }
        self.core.unpin(&self.pinned);
        let core = Arc::clone(&self.core);
        let mut written = std::mem::take(&mut self.pinned);
        written.sort_unstable();
        written.dedup();
        let res = tokio::task::spawn_blocking(move || core.collect_chunks(&written)).await;
        if let Ok(Err(e)) | Err(e) = res.map_err(Error::from) {
            tracing::warn!(error = %e, "could not remove chunks of an abandoned upload");
        }
    }
}

/// Ingest `body` as the artifact at `path`.
///
/// # Errors
/// [`Error::TooLarge`] over `max_upload`, [`Error::BadRequest`] if the body stream fails,
/// store errors (disk full: [`Error::is_no_space`]); in every case nothing is published.
pub(crate) async fn ingest(core: &Arc<Core>, path: CatalogPath, body: Body) -> Result<Published> {
    let mut up = Upload {
        core: Arc::clone(core),
        pinned: Vec::new(),
        written: Vec::new(),
        pending: None,
    };
    match run(&mut up, &path, body).await {
        Ok(p) => {
            core.unpin(&up.pinned);
            if let Some(old) = p.replaced {
                if let Err(e) = core.collect_blob(old).await {
                    tracing::warn!(error = %e, "garbage collection after replace failed");
                }
            }
            Ok(p)
        }
        Err(e) => {
            up.abandon().await;
            Err(e)
        }
    }
}

async fn run(up: &mut Upload, path: &CatalogPath, body: Body) -> Result<Published> {
    let limit = up.core.cfg.max_upload;
    let mut stream = body.into_data_stream();
    let mut chunker = Chunker::new();
    let mut batch: Vec<Cut> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut total = 0u64;
    while let Some(frame) = stream.next().await {
        let data = frame.map_err(|e| Error::BadRequest(format!("upload interrupted: {e}")))?;
        total += data.len() as u64;
        if total > limit {
            return Err(Error::TooLarge { limit });
        }
        for cut in chunker.update(&data) {
            batch_bytes += cut.data.len();
            batch.push(cut);
        }
        if batch_bytes >= BATCH_BYTES {
            up.write(std::mem::take(&mut batch)).await?;
            batch_bytes = 0;
        }
    }
    let (rest, recipe) = chunker.finish();
    batch.extend(rest);
    up.write(batch).await?;
    up.wait().await?;
    let path = path.clone();
    let published = up
        .core
        .db
        .call(move |c| db::artifacts::publish(c, &path, &recipe, now()))
        .await?;
    tracing::info!(
        path = %published.info.path,
        size = published.info.size,
        chunks = published.info.chunks,
        new_chunks = up.written.len(),
        changed = published.changed,
        "artifact ingested"
    );
    Ok(published)
}
