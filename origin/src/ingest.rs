//! Artifact ingest: a streamed upload is cut into chunks as it arrives, each chunk stored as
//! soon as it is cut, and the artifact published only after every chunk and the recipe are
//! stored.
//!
//! The CPU work is split over two threads: the upload's task cuts chunks (FastCDC) and hashes
//! each (BLAKE3), while the whole-blob hashes (SHA-256 and BLAKE3) of each MiB of frames run on
//! the blocking pool (the frames are shared, not copied), overlapping the cutting of the next
//! MiB; writes run on the blocking pool too. On two cores that is what lets ingest keep up with
//! the disk (see BENCHMARKS.md). No thread waits on an idle upload (a registry upload session
//! between two PATCHes holds only its state).
//!
//! Memory stays flat whatever the upload size: the body is consumed frame by frame, the cutter
//! buffers about a MiB, at most two [`HASH_BATCH`]es of frames wait for the whole-blob hasher,
//! and at most two batches of cut chunks (about [`BATCH_BYTES`] each) exist at once: one being
//! written on the blocking pool while the next fills. A failed upload (client gone, over the
//! limit, disk full) publishes nothing and removes the chunks it alone had written.

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt as _;
use sitecast_protocol::{BlobHasher, BlobHashes, BlobRecipe, CatalogPath, ChunkId, Cut, Cutter};
use sitecast_runtime::chunks::ChunkStore;
use tokio::task::JoinHandle;

use crate::core::Core;
use crate::db::{self, artifacts::Published};
use crate::error::{Error, Result};
use crate::util::now;

/// Bytes of cut chunks handed to one blocking write.
pub(crate) const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Bytes of frames handed to one whole-blob hashing job.
pub(crate) const HASH_BATCH: usize = 1024 * 1024;

type Pending = JoinHandle<Result<Vec<ChunkId>>>;

/// The whole-blob hashes, computed a batch of frames at a time on the blocking pool.
#[derive(Default)]
struct WholeHash {
    /// The job hashing the previous batch; it hands the hasher back (none yet: a new hasher).
    running: Option<JoinHandle<BlobHasher>>,
    frames: Vec<Bytes>,
    frames_len: usize,
}

impl WholeHash {
    /// Queue a frame; a full batch starts a job once the previous one is done.
    async fn feed(&mut self, frame: Bytes) -> Result<()> {
        self.frames_len += frame.len();
        self.frames.push(frame);
        if self.frames_len >= HASH_BATCH {
            self.start().await?;
        }
        Ok(())
    }

    async fn start(&mut self) -> Result<()> {
        let mut h = match self.running.take() {
            Some(job) => job.await?,
            None => BlobHasher::new(),
        };
        let frames = std::mem::take(&mut self.frames);
        self.frames_len = 0;
        self.running = Some(tokio::task::spawn_blocking(move || {
            for f in &frames {
                h.update(f);
            }
            h
        }));
        Ok(())
    }

    /// The hashes of every frame fed.
    async fn finish(&mut self) -> Result<BlobHashes> {
        self.start().await?;
        let h = match self.running.take() {
            Some(job) => job.await?,
            None => BlobHasher::new(),
        };
        Ok(h.finish())
    }
}

/// Stores a stream of bytes as chunks while it arrives: the seam shared by artifact uploads
/// and OCI blob uploads. Every chunk is pinned against garbage collection from before it is
/// written until the writer is [`BlobWriter::release`]d (after the blob row is in the
/// database) or [`BlobWriter::abandon`]ed.
pub(crate) struct BlobWriter {
    core: Arc<Core>,
    cutter: Cutter,
    hasher: WholeHash,
    batch: Vec<Cut>,
    batch_bytes: usize,
    len: u64,
    pinned: Vec<ChunkId>,
    written: Vec<ChunkId>,
    pending: Option<Pending>,
}

impl BlobWriter {
    /// A writer with nothing stored yet.
    pub(crate) fn new(core: &Arc<Core>) -> Self {
        Self {
            core: Arc::clone(core),
            cutter: Cutter::new(),
            hasher: WholeHash::default(),
            batch: Vec::new(),
            batch_bytes: 0,
            len: 0,
            pinned: Vec::new(),
            written: Vec::new(),
            pending: None,
        }
    }

    /// Bytes fed so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Feed the next bytes (copied; see [`BlobWriter::feed_bytes`]).
    pub(crate) async fn feed(&mut self, data: &[u8]) -> Result<()> {
        self.feed_bytes(Bytes::copy_from_slice(data)).await
    }

    /// Feed the next frame; a full batch is handed to the blocking pool.
    pub(crate) async fn feed_bytes(&mut self, data: Bytes) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.len += data.len() as u64;
        for cut in self.cutter.update(&data) {
            self.batch_bytes += cut.data.len();
            self.batch.push(cut);
        }
        self.hasher.feed(data).await?;
        if self.batch_bytes >= BATCH_BYTES {
            let batch = std::mem::take(&mut self.batch);
            self.batch_bytes = 0;
            self.write(batch).await?;
        }
        Ok(())
    }

    /// Feed a whole stream of byte frames, refusing more than `limit` bytes in all
    /// ([`Error::TooLarge`]); a failing frame is [`Error::BadRequest`] ("upload interrupted").
    pub(crate) async fn feed_stream<S, B, E>(&mut self, mut stream: S, limit: u64) -> Result<()>
    where
        S: futures::Stream<Item = std::result::Result<B, E>> + Unpin,
        B: Into<Bytes>,
        E: std::fmt::Display,
    {
        while let Some(frame) = stream.next().await {
            let data: Bytes = frame
                .map_err(|e| Error::BadRequest(format!("upload interrupted: {e}")))?
                .into();
            if self.len + data.len() as u64 > limit {
                return Err(Error::TooLarge { limit });
            }
            self.feed_bytes(data).await?;
        }
        Ok(())
    }

    /// Cut and store the rest; returns the recipe. Every chunk of it is stored and pinned.
    pub(crate) async fn finish(&mut self) -> Result<BlobRecipe> {
        let hashes = self.hasher.finish().await?;
        let cutter = std::mem::take(&mut self.cutter);
        let (rest, recipe) = cutter.finish(hashes);
        let mut batch = std::mem::take(&mut self.batch);
        batch.extend(rest);
        self.write(batch).await?;
        self.wait().await?;
        Ok(recipe)
    }

    /// Chunks this writer stored that were not in the store before.
    pub(crate) fn new_chunks(&self) -> usize {
        self.written.len()
    }

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

    /// Release the pins once the blob row references every chunk.
    pub(crate) fn release(mut self) {
        self.core.unpin(&std::mem::take(&mut self.pinned));
    }

    /// Undo after a failure: unpin, and remove the chunks of this upload that nothing else
    /// references or pins. That is every chunk it wrote, including those of a batch that
    /// failed half-way (whose ids were never reported back).
    pub(crate) async fn abandon(mut self) {
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

impl Drop for BlobWriter {
    /// A writer dropped without `release` or `abandon` (a client gone mid-request, an expired
    /// upload session) is abandoned in the background.
    fn drop(&mut self) {
        if self.pinned.is_empty() {
            return;
        }
        let pinned = std::mem::take(&mut self.pinned);
        self.core.unpin(&pinned);
        let core = Arc::clone(&self.core);
        let pending = self.pending.take();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Some(p) = pending {
                    let _ = p.await;
                }
                let mut ids = pinned;
                ids.sort_unstable();
                ids.dedup();
                let _ = tokio::task::spawn_blocking(move || core.collect_chunks(&ids)).await;
            });
        }
    }
}

/// Ingest `body` as the artifact at `path`.
///
/// # Errors
/// [`Error::TooLarge`] over `max_upload`, [`Error::BadRequest`] if the body stream fails,
/// store errors (disk full: [`Error::is_no_space`]); in every case nothing is published.
pub(crate) async fn ingest(core: &Arc<Core>, path: CatalogPath, body: Body) -> Result<Published> {
    let mut up = BlobWriter::new(core);
    match run(&mut up, &path, body).await {
        Ok(p) => {
            up.release();
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

async fn run(up: &mut BlobWriter, path: &CatalogPath, body: Body) -> Result<Published> {
    let limit = up.core.cfg.max_upload;
    up.feed_stream(body.into_data_stream(), limit).await?;
    let recipe = up.finish().await?;
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
        new_chunks = up.new_chunks(),
        changed = published.changed,
        "artifact ingested"
    );
    Ok(published)
}
