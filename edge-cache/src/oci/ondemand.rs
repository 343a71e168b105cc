//! On demand: a manifest or blob the site lacks is fetched through the site's QUIC session
//! (the origin asks its pull-through upstream when it lacks it too).
//!
//! - One **flight** per digest: concurrent requests at the site share one WAN transfer. The
//!   flight runs in its own task, so it completes (and the blob is cached) even if the client
//!   that started it goes away or its wait timed out.
//! - A flight stores the recipe first (so garbage collection keeps its chunks), then fetches
//!   the missing chunks in blob order over `quic.fetch_streams` parallel streams, each chunk
//!   verified against its id as it is stored. Readers follow its progress: the first bytes are
//!   served as soon as the first batch is stored, not after the whole layer. The whole blob is
//!   then re-read and its SHA-256 checked against the digest; the last piece a reader gets is
//!   held back until then, so no client receives a complete response of wrong bytes.
//! - **Fail fast**: with no session a miss answers at once; otherwise the wait for the origin's
//!   first answer is bounded by `oci.miss_timeout` (default 2 s), so containerd moves on to its
//!   next host instead of hanging.
//! - A platform manifest fetched on demand **prefetches** its config and layers (flights
//!   without a client), so the blob requests that follow are hits or join a running flight.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use sitecast_protocol::wire::{
    ChunkRequest, ErrorCode, ImageManifest, Message, OciBlobRequest, OciReferrer, OciReferrers,
    OciResolve, OciTags,
};
use sitecast_protocol::{ArtifactManifest, BlobRecipe, ChunkId, Sha256Digest};
use sitecast_runtime::chunks::StoreError;
use sitecast_runtime::framed::{read_frame, write_frame};
use tokio::sync::watch;

use crate::core::Core;
use crate::error::{blocking, Error};

/// Why a miss could not be served.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Miss {
    /// No session with the origin.
    #[error("the site is offline (no session with the origin)")]
    Offline,
    /// The origin did not answer in time.
    #[error("the origin did not answer within {0:?}")]
    Timeout(Duration),
    /// Neither the origin nor its upstream has it.
    #[error("{0}")]
    NotFound(String),
    /// Anything else (a failed transfer, a bad recipe, a full disk).
    #[error("{0}")]
    Failed(String),
}

impl From<Error> for Miss {
    fn from(e: Error) -> Self {
        Self::Failed(e.to_string())
    }
}

/// How far a flight is.
#[derive(Debug, Clone, Default)]
pub(crate) struct Progress {
    /// Known once the origin answered.
    pub recipe: Option<Arc<BlobRecipe>>,
    /// Chunks `0..ready` of the recipe are in the store.
    pub ready: usize,
    /// Every chunk stored and the whole blob verified.
    pub done: bool,
    /// Why it stopped.
    pub failed: Option<Miss>,
}

/// A reader's view of one flight.
pub(crate) type Flight = watch::Receiver<Progress>;

/// Flights in progress, by digest.
#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<Sha256Digest, Flight>>,
}

impl Flights {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Sha256Digest, Flight>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn connection(core: &Core) -> Result<quinn::Connection, Miss> {
    core.uplink
        .borrow()
        .clone()
        .filter(|c| c.close_reason().is_none())
        .ok_or(Miss::Offline)
}

async fn ask(conn: &quinn::Connection, msg: Message) -> Result<Message, Miss> {
    let fail = |e: String| Miss::Failed(format!("origin stream: {e}"));
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| fail(e.to_string()))?;
    write_frame(&mut send, &msg)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let _ = send.finish();
    match read_frame(&mut recv).await {
        Ok(Some(Message::Error(e))) if e.code == ErrorCode::NotFound => {
            Err(Miss::NotFound(e.message))
        }
        Ok(Some(Message::Error(e))) => Err(Miss::Failed(format!(
            "origin refused ({:?}): {}",
            e.code, e.message
        ))),
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(fail("closed without an answer".into())),
        Err(e) => Err(fail(e.to_string())),
    }
}

/// Ask the origin on a stream of its own, its first answer bounded by `oci.miss_timeout`.
async fn ask_within(core: &Arc<Core>, msg: Message) -> Result<Message, Miss> {
    let conn = connection(core)?;
    let limit = core.cfg.oci.miss_timeout;
    tokio::time::timeout(limit, ask(&conn, msg))
        .await
        .map_err(|_| Miss::Timeout(limit))?
}

fn unexpected(want: &str, got: &Message) -> Miss {
    Miss::Failed(format!("expected {want}, got {}", got.name()))
}

/// Ask the origin what `reference` names in `repo`, bounded by `oci.miss_timeout`.
pub(crate) async fn resolve(
    core: &Arc<Core>,
    repo: &str,
    reference: &str,
) -> Result<(ImageManifest, BlobRecipe), Miss> {
    let msg = OciResolve {
        repo: repo.to_owned(),
        reference: reference.to_owned(),
    };
    let answer = ask_within(core, msg.into()).await?;
    let Message::OciResolved(r) = answer else {
        return Err(unexpected("OciResolved", &answer));
    };
    if r.recipe.sha256 != r.manifest.digest || r.recipe.validate().is_err() {
        return Err(Miss::Failed(format!(
            "the origin's recipe for manifest {} does not describe it",
            r.manifest.digest.to_oci()
        )));
    }
    Ok((r.manifest, r.recipe))
}

/// Ask the origin for the referrers of `subject` in `repo`, bounded by `oci.miss_timeout`.
pub(crate) async fn referrers(
    core: &Arc<Core>,
    repo: &str,
    subject: Sha256Digest,
) -> Result<Vec<OciReferrer>, Miss> {
    let msg = OciReferrers {
        repo: repo.to_owned(),
        subject,
    };
    match ask_within(core, msg.into()).await? {
        Message::OciReferrersList(l) => Ok(l.referrers),
        other => Err(unexpected("OciReferrersList", &other)),
    }
}

/// Ask the origin for the tags of `repo`, bounded by `oci.miss_timeout`.
pub(crate) async fn tags(core: &Arc<Core>, repo: &str) -> Result<Vec<String>, Miss> {
    let msg = OciTags {
        repo: repo.to_owned(),
    };
    match ask_within(core, msg.into()).await? {
        Message::OciTagList(l) => Ok(l.tags),
        other => Err(unexpected("OciTagList", &other)),
    }
}

/// Join (or start) the flight for blob `digest` of `repo`. `recipe` is given when already
/// known (a manifest just resolved); otherwise the flight asks the origin for it.
pub(crate) fn flight(
    core: &Arc<Core>,
    repo: &str,
    digest: Sha256Digest,
    recipe: Option<BlobRecipe>,
) -> Flight {
    let mut map = core.flights.lock();
    map.retain(|_, f| {
        let p = f.borrow();
        !p.done && p.failed.is_none()
    });
    if let Some(f) = map.get(&digest) {
        return f.clone();
    }
    let (tx, rx) = watch::channel(Progress::default());
    map.insert(digest, rx.clone());
    drop(map);
    let (core, repo) = (core.clone(), repo.to_owned());
    tokio::spawn(async move {
        let outcome = run_flight(&core, &repo, digest, recipe, &tx).await;
        if let Err(miss) = outcome {
            tracing::warn!(repo = %repo, digest = %digest.to_oci(), error = %miss, "on-demand fetch failed");
            tx.send_modify(|p| p.failed = Some(miss));
        }
    });
    rx
}

/// Wait until the flight knows its recipe (bounded by `oci.miss_timeout`).
pub(crate) async fn recipe_of(core: &Core, f: &mut Flight) -> Result<Arc<BlobRecipe>, Miss> {
    let limit = core.cfg.oci.miss_timeout;
    let waited = tokio::time::timeout(
        limit,
        f.wait_for(|p| p.recipe.is_some() || p.failed.is_some()),
    )
    .await
    .map_err(|_| Miss::Timeout(limit))?
    .map_err(|_| Miss::Failed("the fetch stopped".into()))?;
    if let Some(m) = &waited.failed {
        return Err(m.clone());
    }
    waited
        .recipe
        .clone()
        .ok_or_else(|| Miss::Failed("no recipe".into()))
}

/// Wait until chunks `..to` are stored (and, if `whole`, the blob verified).
pub(crate) async fn wait_ready(f: &mut Flight, to: usize, whole: bool) -> Result<(), Miss> {
    let p = f
        .wait_for(|p| p.failed.is_some() || p.done || (!whole && p.ready >= to))
        .await
        .map_err(|_| Miss::Failed("the fetch stopped".into()))?;
    match &p.failed {
        Some(m) => Err(m.clone()),
        None => Ok(()),
    }
}

async fn run_flight(
    core: &Arc<Core>,
    repo: &str,
    digest: Sha256Digest,
    recipe: Option<BlobRecipe>,
    tx: &watch::Sender<Progress>,
) -> Result<(), Miss> {
    let conn = connection(core)?;
    let recipe = match recipe {
        Some(r) => r,
        None => {
            let msg = OciBlobRequest {
                repo: repo.to_owned(),
                digest,
            };
            match ask(&conn, msg.into()).await? {
                Message::RecipeResponse(r) => r.recipe,
                other => {
                    return Err(Miss::Failed(format!(
                        "expected RecipeResponse, got {}",
                        other.name()
                    )))
                }
            }
        }
    };
    if recipe.sha256 != digest {
        return Err(Miss::Failed(format!(
            "the origin's recipe for {} has digest {}",
            digest.to_oci(),
            recipe.sha256.to_oci()
        )));
    }
    recipe
        .validate()
        .map_err(|e| Miss::Failed(format!("recipe of {}: {e}", digest.to_oci())))?;
    let recipe = Arc::new(recipe);
    // Marked as being read and its recipe stored, under the collection lock, before any chunk
    // arrives: garbage collection keeps its chunks (a collection already running finishes
    // first; one that starts later sees the blob in use).
    let _reading = {
        let _shared = core.gc_lock.read().await;
        core.start_reading(recipe.blake3);
        let guard = ReadingGuard(core.clone(), recipe.blake3);
        let (catalog, r) = (core.catalog.clone(), recipe.clone());
        blocking("save recipe", move || catalog.save_recipe(&r)).await?;
        guard
    };
    tx.send_modify(|p| p.recipe = Some(recipe.clone()));

    let present: HashSet<ChunkId> = {
        let (store, r) = (core.store.clone(), recipe.clone());
        blocking("scan chunks", move || {
            let mut out = HashSet::new();
            for c in &r.chunks {
                if store.has(&c.id)? {
                    out.insert(c.id);
                }
            }
            Ok(out)
        })
        .await?
    };
    let missing: Vec<(ChunkId, u32)> = recipe
        .chunks
        .iter()
        .filter(|c| !present.contains(&c.id))
        .map(|c| (c.id, c.len))
        .collect();
    let batches = crate::session::batches(&missing, core.cfg.quic.batch_bytes);
    let mut stored = present;
    let mut ready = 0usize;
    let advance = |stored: &HashSet<ChunkId>, ready: &mut usize| {
        while *ready < recipe.chunks.len() && stored.contains(&recipe.chunks[*ready].id) {
            *ready += 1;
        }
    };
    advance(&stored, &mut ready);
    tx.send_modify(|p| p.ready = ready);
    let streams = core.cfg.quic.fetch_streams.max(1);
    let blob = recipe.blake3;
    let mut results = futures::stream::iter(batches.into_iter().map(|b| {
        let conn = conn.clone();
        async move { fetch_batch(core, &conn, blob, &b).await.map(|n| (b, n)) }
    }))
    .buffered(streams);
    while let Some(r) = results.next().await {
        let (batch, bytes) = r?;
        stored.extend(batch.iter().map(|(id, _)| *id));
        advance(&stored, &mut ready);
        tx.send_modify(|p| p.ready = ready);
        core.metrics.repo(repo).add_fetched(bytes);
    }
    verify(core, &recipe).await?;
    {
        let (catalog, r) = (core.catalog.clone(), recipe.clone());
        let repo = repo.to_owned();
        blocking("cache blob", move || {
            catalog.cache_blob(&digest, &r.blake3, r.len)?;
            catalog.link(&repo, &digest, None)
        })
        .await?;
    }
    tx.send_modify(|p| p.done = true);
    tracing::info!(repo, digest = %digest.to_oci(), len = recipe.len, "fetched on demand");
    super::cache::enforce_quota(core).await;
    Ok(())
}

struct ReadingGuard(Arc<Core>, sitecast_protocol::BlobId);

impl Drop for ReadingGuard {
    fn drop(&mut self) {
        self.0.stop_reading(self.1);
    }
}

/// Fetch one batch of chunks into the store; returns the bytes received.
async fn fetch_batch(
    core: &Arc<Core>,
    conn: &quinn::Connection,
    blob: sitecast_protocol::BlobId,
    batch: &[(ChunkId, u32)],
) -> Result<u64, Miss> {
    let fail = |e: String| Miss::Failed(format!("chunk stream: {e}"));
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| fail(e.to_string()))?;
    let req = ChunkRequest {
        blob,
        chunks: batch.iter().map(|(id, _)| *id).collect(),
    };
    write_frame(&mut send, &req.into())
        .await
        .map_err(|e| fail(e.to_string()))?;
    let _ = send.finish();
    let mut bytes = 0u64;
    for (id, len) in batch {
        let data = match read_frame(&mut recv).await {
            Ok(Some(Message::ChunkData(c))) if c.id == *id => c.data,
            Ok(Some(Message::Error(e))) => {
                return Err(Miss::Failed(format!("chunk {id}: {}", e.message)))
            }
            Ok(Some(other)) => return Err(fail(format!("unexpected {}", other.name()))),
            Ok(None) => return Err(fail("ended early".into())),
            Err(e) => return Err(fail(e.to_string())),
        };
        bytes += data.len() as u64;
        let (store, id, len) = (core.store.clone(), *id, *len);
        let put = tokio::task::spawn_blocking(move || {
            if data.len() != len as usize {
                return Err(StoreError::Mismatch(id));
            }
            store.put(&id, &data)
        })
        .await
        .map_err(|e| fail(e.to_string()))?;
        put.map_err(|e| Miss::Failed(format!("storing chunk {id}: {e}")))?;
        core.metrics.chunks_fetched.fetch_add(1, Ordering::Relaxed);
        core.metrics
            .bytes_fetched
            .fetch_add(len.into(), Ordering::Relaxed);
    }
    Ok(bytes)
}

async fn verify(core: &Arc<Core>, recipe: &Arc<BlobRecipe>) -> Result<(), Miss> {
    let (store, r) = (core.store.clone(), recipe.clone());
    blocking("verify blob", move || {
        use sha2::Digest as _;
        let mut sha = sha2::Sha256::new();
        let mut len = 0u64;
        for c in &r.chunks {
            let data = store.get(&c.id)?;
            sha.update(&data);
            len += data.len() as u64;
        }
        let got = Sha256Digest::from_bytes(sha.finalize().into());
        if len != r.len || got != r.sha256 {
            return Err(Error::Artifact(format!(
                "blob {} failed verification after assembly (length {len}, {})",
                r.sha256.to_oci(),
                got.to_oci()
            )));
        }
        Ok(())
    })
    .await
    .map_err(Miss::from)
}

/// The artifact-shaped view of a blob (what [`crate::vfs::Content`] reads).
pub(crate) fn as_manifest(
    digest: &Sha256Digest,
    blob: sitecast_protocol::BlobId,
    len: u64,
) -> ArtifactManifest {
    ArtifactManifest {
        path: sitecast_protocol::oci::blob_path(digest),
        blob,
        len,
        sha256: *digest,
        modified: 0,
    }
}

/// Start flights for a platform manifest's config and layers the site lacks.
pub(crate) fn prefetch(core: &Arc<Core>, repo: &str, manifest_bytes: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(manifest_bytes) else {
        return;
    };
    let mut digests = Vec::new();
    if let Some(d) = v.pointer("/config/digest").and_then(|d| d.as_str()) {
        digests.push(d.to_owned());
    }
    if let Some(layers) = v.get("layers").and_then(|l| l.as_array()) {
        digests.extend(
            layers
                .iter()
                .filter_map(|l| l.get("digest").and_then(|d| d.as_str()).map(str::to_owned)),
        );
    }
    for d in digests {
        let Ok(d) = sitecast_protocol::oci::parse_digest(&d) else {
            continue;
        };
        if core.catalog.image_blob(&d).is_some() {
            continue;
        }
        let catalog = core.catalog.clone();
        let (core, repo) = (core.clone(), repo.to_owned());
        tokio::spawn(async move {
            let cached = blocking("look up cache", move || catalog.cached_blob(&d)).await;
            if matches!(cached, Ok(None)) {
                tracing::debug!(repo = %repo, digest = %d.to_oci(), "prefetching layer");
                let _ = flight(&core, &repo, d, None);
            }
        });
    }
}
