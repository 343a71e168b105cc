//! The fetcher: brings one artifact at a time to the published catalog.
//!
//! For an artifact not yet published with its desired blob:
//! 1. the recipe, from the database or by `RecipeRequest` (checked against the manifest:
//!    self-consistent, same blob id, length and SHA-256), stored before any chunk;
//! 2. the chunks the store lacks, fetched over `fetch_streams` parallel `ChunkRequest` streams
//!    of at most `batch_bytes` each; every chunk is verified against its id as it is stored
//!    (`ChunkStore::put`). A chunk that fails verification is re-requested once; a second
//!    failure fails the artifact;
//! 3. the whole blob is re-read from the store and its length, BLAKE3 and SHA-256 checked;
//! 4. it is published in one transaction, only if still desired with that blob.
//!
//! A failure of the connection leaves the artifact `fetching` and waits for the next
//! connection (which asks only for what is still missing). Any other failure marks it `failed`
//! with the reason (e.g. "no space left on device while storing chunk …"), reported to the
//! origin and retried after `retry_failed`; the edge keeps serving meanwhile.
//! Between artifacts, after a desired-state change or a publish, chunks no stored recipe
//! references are removed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use sha2::Digest as _;
use sitecast_protocol::wire::{
    ArtifactState, ArtifactStatus, ChunkRequest, ErrorCode, Message, RecipeRequest,
};
use sitecast_protocol::{ArtifactManifest, BlobId, BlobRecipe, ChunkId, Sha256Digest};
use sitecast_runtime::chunks::StoreError;
use sitecast_runtime::framed::{read_frame, write_frame};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::state::{batches, start_status, still_desired, Shared};
use crate::core::Core;
use crate::error::{blocking, Error};

/// The fetcher task (see the module docs). Returns only when cancelled.
pub(crate) async fn run(
    core: Arc<Core>,
    shared: Arc<Shared>,
    mut conn_rx: watch::Receiver<Option<quinn::Connection>>,
    cancel: CancellationToken,
) -> Result<(), Error> {
    let retry = (core.cfg.retry_failed, core.cfg.retry_failed_max);
    loop {
        if cancel.is_cancelled() {
            return Ok(());
        }
        let gc = std::mem::take(&mut shared.lock().gc_needed);
        if gc {
            if let Err(e) = collect_garbage(&core).await {
                tracing::warn!(error = %e, "removing unreferenced chunks failed");
            }
        }
        let next = shared.next(retry);
        let artifact = match next {
            Ok(a) => a,
            Err(wait) => {
                let sleep =
                    tokio::time::sleep(wait.unwrap_or(std::time::Duration::from_secs(3600)));
                tokio::select! {
                    () = cancel.cancelled() => return Ok(()),
                    () = shared.work.notified() => {}
                    () = sleep => {}
                }
                continue;
            }
        };
        // A usable connection.
        let conn = loop {
            let current = conn_rx.borrow_and_update().clone();
            if let Some(c) = current.filter(|c| c.close_reason().is_none()) {
                break c;
            }
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                r = conn_rx.changed() => if r.is_err() { return Ok(()) },
            }
        };
        let outcome = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            r = fetch_artifact(&core, &shared, &conn, &artifact) => r,
        };
        match outcome {
            Ok(true) => {
                core.metrics
                    .artifacts_published
                    .fetch_add(1, Ordering::Relaxed);
                shared.lock().gc_needed = true;
                if sitecast_protocol::oci::is_blob_path(artifact.path.as_str()) {
                    if let Err(e) = crate::oci::publish::refresh(&core).await {
                        tracing::warn!(error = %e, "publishing image tags failed");
                    }
                }
            }
            Ok(false) => tracing::debug!(path = %artifact.path, "no longer desired; dropped"),
            Err(Error::Held(why)) => {
                tracing::info!(path = %artifact.path, blob = %artifact.blob.short(), reason = %why,
                    "transfer paused; it continues when the origin releases it");
            }
            Err(e) if e.is_connection() && conn.close_reason().is_some() => {
                tracing::warn!(path = %artifact.path, error = %e, "connection lost mid-fetch; will resume");
                // Wait for the connection to be replaced before trying again.
                tokio::select! {
                    () = cancel.cancelled() => return Ok(()),
                    r = conn_rx.changed() => if r.is_err() { return Ok(()) },
                }
            }
            // Includes a stream failing on a live connection (e.g. reset by the origin):
            // retried after `retry_failed` rather than waiting for a reconnect.
            Err(e) => fail(&core, &shared, &artifact, &e).await,
        }
    }
}

async fn fail(core: &Arc<Core>, shared: &Arc<Shared>, a: &ArtifactManifest, e: &Error) {
    let reason = match e {
        Error::Db(_) if e.is_no_space() => {
            format!("no space left on device while writing the database: {e}")
        }
        _ => e.to_string(),
    };
    let failures = shared
        .lock()
        .failures
        .get(a.path.as_str())
        .copied()
        .unwrap_or(0)
        + 1;
    let retry_in =
        super::state::backoff((core.cfg.retry_failed, core.cfg.retry_failed_max), failures);
    tracing::error!(path = %a.path, blob = %a.blob.short(), reason = %reason, ?retry_in, failures,
        "artifact failed");
    core.metrics.fetch_failures.fetch_add(1, Ordering::Relaxed);
    let previous = shared.lock().transfers.get(a.path.as_str()).cloned();
    let mut status = previous
        .filter(|p| p.blob == a.blob)
        .unwrap_or_else(|| start_status(a, None, 0));
    status.state = ArtifactState::Failed;
    status.error = Some(reason);
    shared.update(status.clone());
    let catalog = core.catalog.clone();
    if let Err(e) = blocking("save transfer", move || catalog.save_transfer(&status)).await {
        tracing::warn!(error = %e, "cannot record the failure in the database");
    }
}

async fn get_recipe(
    core: &Arc<Core>,
    conn: &quinn::Connection,
    a: &ArtifactManifest,
) -> Result<Arc<BlobRecipe>, Error> {
    let catalog = core.catalog.clone();
    let blob = a.blob;
    if let Some(r) = blocking("read recipe", move || catalog.recipe(&blob)).await? {
        return Ok(r);
    }
    let (mut send, mut recv) = conn.open_bi().await?;
    write_frame(&mut send, &RecipeRequest { blob: a.blob }.into()).await?;
    let _ = send.finish();
    let recipe = match read_frame(&mut recv).await? {
        Some(Message::RecipeResponse(r)) => r.recipe,
        Some(Message::Error(e)) if e.code == ErrorCode::NotFound => {
            return Err(Error::Artifact(format!(
                "the origin no longer has blob {} ({})",
                a.blob, e.message
            )));
        }
        Some(Message::Error(e)) => {
            return Err(Error::Protocol(format!(
                "recipe request refused ({:?}): {}",
                e.code, e.message
            )));
        }
        Some(other) => {
            return Err(Error::Protocol(format!(
                "expected RecipeResponse, got {}",
                other.name()
            )))
        }
        None => {
            return Err(Error::Protocol(
                "origin closed the recipe stream without an answer".into(),
            ))
        }
    };
    check_recipe(&recipe, a)?;
    let catalog = core.catalog.clone();
    let stored = recipe.clone();
    blocking("save recipe", move || catalog.save_recipe(&stored)).await?;
    Ok(Arc::new(recipe))
}

/// A recipe must be self-consistent and describe exactly the manifest's blob.
pub(crate) fn check_recipe(r: &BlobRecipe, a: &ArtifactManifest) -> Result<(), Error> {
    r.validate()
        .map_err(|e| Error::Artifact(format!("recipe of {} is inconsistent: {e}", a.path)))?;
    if r.blake3 != a.blob || r.len != a.len || r.sha256 != a.sha256 {
        return Err(Error::Artifact(format!(
            "recipe of {} does not match its manifest (blob, length or sha256 differ)",
            a.path
        )));
    }
    Ok(())
}

/// Fetch, verify and publish one artifact. `Ok(false)` when it stopped being desired.
async fn fetch_artifact(
    core: &Arc<Core>,
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    a: &ArtifactManifest,
) -> Result<bool, Error> {
    let recipe = get_recipe(core, conn, a).await?;
    let missing = {
        let (store, recipe) = (core.store.clone(), recipe.clone());
        blocking("scan chunks", move || {
            let mut seen = std::collections::HashSet::new();
            let mut out = Vec::new();
            for c in &recipe.chunks {
                if seen.insert(c.id) && !store.has(&c.id)? {
                    out.push((c.id, c.len));
                }
            }
            Ok(out)
        })
        .await?
    };
    let missing_bytes: u64 = missing.iter().map(|(_, l)| u64::from(*l)).sum();
    let previous = shared.lock().transfers.get(a.path.as_str()).cloned();
    let status = start_status(a, previous.as_ref(), missing_bytes);
    tracing::info!(path = %a.path, blob = %a.blob.short(), total = a.len, missing = missing_bytes,
        chunks = missing.len(), "fetching artifact");
    shared.update(status.clone());
    {
        let catalog = core.catalog.clone();
        let s = status.clone();
        blocking("save transfer", move || catalog.save_transfer(&s)).await?;
    }

    let progress = Arc::new(Mutex::new(status));
    fetch_chunks(
        core,
        shared,
        conn,
        a,
        batches(&missing, core.cfg.quic.batch_bytes),
        &progress,
    )
    .await?;

    if !still_desired(shared, a) {
        return Ok(false);
    }
    verify_blob(core, &recipe).await?;
    let mut done = progress
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    done.state = ArtifactState::Complete;
    done.bytes_fetched = done.bytes_needed;
    done.error = None;
    let catalog = core.catalog.clone();
    let (m, s) = (a.clone(), done.clone());
    let published = blocking("publish", move || catalog.publish(&m, &s)).await?;
    if published {
        tracing::info!(path = %a.path, blob = %a.blob.short(), sha256 = %a.sha256, "published");
        shared.update(done);
    }
    Ok(published)
}

struct Queue {
    batches: VecDeque<Vec<(ChunkId, u32)>>,
    retried: HashMap<ChunkId, u32>,
}

async fn fetch_chunks(
    core: &Arc<Core>,
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    a: &ArtifactManifest,
    work: Vec<Vec<(ChunkId, u32)>>,
    progress: &Arc<Mutex<ArtifactStatus>>,
) -> Result<(), Error> {
    if work.is_empty() {
        return Ok(());
    }
    let streams = core.cfg.quic.fetch_streams.min(work.len()).max(1);
    let queue = Arc::new(Mutex::new(Queue {
        batches: work.into(),
        retried: HashMap::new(),
    }));
    // The first hold seen: the other workers read their streams to the origin's cut (every
    // chunk the origin sent is stored, none is sent twice) and take no new batch.
    let held: Mutex<Option<String>> = Mutex::new(None);
    let workers = (0..streams).map(|_| {
        let (queue, held) = (queue.clone(), &held);
        async move {
            loop {
                if held
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .is_some()
                {
                    return Ok(());
                }
                let next = queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .batches
                    .pop_front();
                let Some(batch) = next else {
                    return Ok::<(), Error>(());
                };
                if !still_desired(shared, a) {
                    return Ok(()); // superseded: the caller sees it and drops the artifact
                }
                match fetch_batch(core, shared, conn, a.blob, batch, &queue, progress).await {
                    Err(Error::Held(why)) => {
                        *held
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
                        return Ok(());
                    }
                    r => r?,
                }
            }
        }
    });
    // Workers finish when the queue is empty; a re-requested chunk is queued before the worker
    // that saw it fails returns, so some worker (at least that one) picks it up.
    futures::future::try_join_all(workers).await?;
    match held
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        Some(why) => Err(Error::Held(why)),
        None => Ok(()),
    }
}

async fn fetch_batch(
    core: &Arc<Core>,
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    blob: BlobId,
    batch: Vec<(ChunkId, u32)>,
    queue: &Arc<Mutex<Queue>>,
    progress: &Arc<Mutex<ArtifactStatus>>,
) -> Result<(), Error> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let req = ChunkRequest {
        blob,
        chunks: batch.iter().map(|(id, _)| *id).collect(),
    };
    write_frame(&mut send, &req.into()).await?;
    let _ = send.finish();
    for (i, (id, len)) in batch.iter().enumerate() {
        let data = match read_frame(&mut recv).await? {
            Some(Message::ChunkData(c)) if c.id == *id => c.data,
            Some(Message::ChunkData(c)) => {
                return Err(Error::Protocol(format!(
                    "asked for chunk {id}, origin sent {}",
                    c.id
                )));
            }
            Some(Message::Error(e)) if e.code == ErrorCode::NotFound => {
                return Err(Error::Artifact(format!(
                    "the origin no longer has chunk {id}: {}",
                    e.message
                )));
            }
            Some(Message::Error(e)) if e.code == ErrorCode::Held => {
                // Until the origin's next `Holds` releases it; its chunks so far are kept.
                shared.lock().held.insert(blob);
                return Err(Error::Held(e.message));
            }
            Some(Message::Error(e)) => {
                return Err(Error::Protocol(format!(
                    "chunk request refused ({:?}): {}",
                    e.code, e.message
                )));
            }
            Some(other) => {
                return Err(Error::Protocol(format!(
                    "expected ChunkData, got {}",
                    other.name()
                )))
            }
            None => {
                return Err(Error::Protocol(format!(
                    "origin ended the chunk stream after {i} of {} chunks",
                    batch.len()
                )));
            }
        };
        let n = data.len() as u64;
        let store = core.store.clone();
        let (id, len) = (*id, *len);
        let stored = tokio::task::spawn_blocking(move || {
            if data.len() != len as usize {
                return Err(StoreError::Mismatch(id));
            }
            store.put(&id, &data)
        })
        .await
        .map_err(|e| Error::Task {
            name: "store chunk",
            reason: e.to_string(),
        })?;
        match stored {
            Ok(_) => {
                core.metrics.chunks_fetched.fetch_add(1, Ordering::Relaxed);
                core.metrics.bytes_fetched.fetch_add(n, Ordering::Relaxed);
                let snapshot = {
                    let mut p = progress
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    p.bytes_fetched = (p.bytes_fetched + n).min(p.bytes_needed);
                    p.clone()
                };
                shared.update(snapshot);
            }
            Err(StoreError::Mismatch(_)) => {
                core.metrics.chunks_rejected.fetch_add(1, Ordering::Relaxed);
                let mut q = queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let tries = q.retried.entry(id).or_insert(0);
                *tries += 1;
                if *tries > 1 {
                    return Err(Error::Artifact(format!(
                        "chunk {id} failed verification twice (the origin sent bytes that do not match its id)"
                    )));
                }
                tracing::warn!(chunk = %id, "chunk failed verification; asking again");
                q.batches.push_back(vec![(id, len)]);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Re-read the blob from the store and check its length and hashes against the recipe.
async fn verify_blob(core: &Arc<Core>, recipe: &Arc<BlobRecipe>) -> Result<(), Error> {
    let (store, recipe) = (core.store.clone(), recipe.clone());
    blocking("verify blob", move || {
        let mut sha = sha2::Sha256::new();
        let mut b3 = blake3::Hasher::new();
        let mut len = 0u64;
        for c in &recipe.chunks {
            let data = store.get(&c.id)?;
            sha.update(&data);
            b3.update(&data);
            len += data.len() as u64;
        }
        let sha = Sha256Digest::from_bytes(sha.finalize().into());
        let b3 = BlobId::from_bytes(*b3.finalize().as_bytes());
        if len != recipe.len || sha != recipe.sha256 || b3 != recipe.blake3 {
            return Err(Error::Artifact(format!(
                "blob {} failed verification after assembly (length {len}, sha256 {sha})",
                recipe.blake3
            )));
        }
        Ok(())
    })
    .await
}

/// Remove chunks no stored recipe references (recipes of neither desired nor published
/// artifacts are forgotten first, except those of blobs a client is reading right now: the
/// last reader to finish runs this again).
pub(crate) async fn collect_garbage(core: &Arc<Core>) -> Result<usize, Error> {
    let _exclusive = core.gc_lock.write().await;
    let (catalog, store) = (core.catalog.clone(), core.store.clone());
    let in_use = core.blobs_being_read();
    let removed = blocking("collect garbage", move || {
        let keep = catalog.prune_recipes(&in_use)?;
        let mut removed = 0;
        for id in store.list()? {
            if !keep.contains(&id) {
                store.remove(&id)?;
                removed += 1;
            }
        }
        Ok(removed)
    })
    .await?;
    if removed > 0 {
        tracing::info!(chunks = removed, "removed unreferenced chunks");
    }
    Ok(removed)
}
