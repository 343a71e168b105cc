//! The origin core shared by the REST API and the QUIC server: catalog, chunk store, change
//! notifications, byte accounting and garbage collection.
//!
//! Garbage collection contract: a chunk is removed from the store only when (under the pin
//! lock) no ingest has it pinned and no blob row references it. Ingest pins every chunk before
//! writing it and unpins only after the blob is published (or abandoned), so a chunk that a
//! concurrent upload relies on is never removed under it. Lock order: pins, then database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use sitecast_protocol::{BlobId, ChunkId};
use sitecast_runtime::chunks::{ChunkStore, DiskChunkStore};
use tokio::sync::watch;

use crate::api::ratelimit::RateLimits;
use crate::ca::Ca;
use crate::config::OriginConfig;
use crate::db::{self, Db};
use crate::error::{Error, Result};
use crate::quic::pace::Buckets;
use crate::upstream::PullThrough;

/// Shared state of a running origin.
pub(crate) struct Core {
    pub(crate) cfg: OriginConfig,
    pub(crate) db: Db,
    pub(crate) store: Arc<DiskChunkStore>,
    pub(crate) ca: Ca,
    pins: Mutex<HashMap<ChunkId, usize>>,
    /// Bumped whenever any site's desired state or config revision changes.
    pub(crate) site_changes: watch::Sender<u64>,
    /// Bumped whenever a node is revoked (its live sessions check whether they are it).
    pub(crate) node_revocations: watch::Sender<u64>,
    /// Bumped whenever anything about any push changes.
    pub(crate) push_changes: watch::Sender<u64>,
    acct: Mutex<Counters>,
    pub(crate) buckets: Buckets,
    /// Open connections per (site, node).
    pub(crate) online: Mutex<HashMap<(String, String), usize>>,
    /// Upstream registries for content the registry lacks.
    pub(crate) pull: PullThrough,
    /// The REST API's `[[rate_limits]]`, their buckets and counters.
    pub(crate) rate_limits: RateLimits,
    /// Recent bytes sent per push-site, for rates and ETAs.
    pub(crate) rates: crate::rates::RateBook,
}

/// Unflushed (payload, framing) bytes by site and blob.
type Counters = HashMap<(String, Option<BlobId>), (u64, u64)>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Core {
    pub(crate) fn new(
        cfg: OriginConfig,
        db: Db,
        store: DiskChunkStore,
        ca: Ca,
        pull: PullThrough,
        rate_limits: RateLimits,
    ) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            db,
            store: Arc::new(store),
            ca,
            pins: Mutex::new(HashMap::new()),
            site_changes: watch::channel(0).0,
            node_revocations: watch::channel(0).0,
            push_changes: watch::channel(0).0,
            acct: Mutex::new(HashMap::new()),
            buckets: Buckets::default(),
            online: Mutex::new(HashMap::new()),
            pull,
            rate_limits,
            rates: crate::rates::RateBook::default(),
        })
    }

    /// Tell control streams that some site's revisions changed.
    pub(crate) fn sites_changed(&self) {
        self.site_changes.send_modify(|v| *v += 1);
    }

    /// A node was revoked: its open sessions close (see `quic::node_connection`).
    pub(crate) fn nodes_revoked(&self) {
        self.node_revocations.send_modify(|v| *v += 1);
    }

    /// Tell long-polls that some push changed.
    pub(crate) fn pushes_changed(&self) {
        self.push_changes.send_modify(|v| *v += 1);
    }

    /// Pin chunks against garbage collection.
    pub(crate) fn pin(&self, ids: &[ChunkId]) {
        let mut p = lock(&self.pins);
        for id in ids {
            *p.entry(*id).or_default() += 1;
        }
    }

    /// Release pins taken with [`Core::pin`].
    pub(crate) fn unpin(&self, ids: &[ChunkId]) {
        let mut p = lock(&self.pins);
        for id in ids {
            if let Some(n) = p.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    p.remove(id);
                }
            }
        }
    }

    /// Remove from the store those of `chunks` that are neither pinned nor referenced.
    /// Blocking.
    pub(crate) fn collect_chunks(&self, chunks: &[ChunkId]) -> Result<usize> {
        let mut removed = 0;
        for id in chunks {
            let pins = lock(&self.pins);
            if pins.contains_key(id) {
                continue;
            }
            if self
                .db
                .blocking(|c| db::artifacts::chunk_referenced(c, id))?
            {
                continue;
            }
            self.store.remove(id)?;
            drop(pins);
            removed += 1;
        }
        Ok(removed)
    }

    /// Remove every stored chunk that is neither pinned nor referenced: what an upload killed
    /// with the process (SIGKILL, power loss) had written. Safe beside running uploads, as
    /// [`Core::collect_chunks`] is. Blocking; reads the store's directory listing.
    pub(crate) fn collect_orphans(&self) -> Result<usize> {
        let all = self.store.list()?;
        self.collect_chunks(&all)
    }

    /// Delete `blob` if nothing references it any more, and its now unused chunks.
    pub(crate) async fn collect_blob(self: &Arc<Self>, blob: BlobId) -> Result<()> {
        let core = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let chunks = core.db.blocking(|c| db::artifacts::delete_blob(c, &blob))?;
            let n = core.collect_chunks(&chunks)?;
            if n > 0 {
                tracing::info!(blob = %blob.short(), chunks = n, "garbage-collected unused chunks");
            }
            Ok::<_, Error>(())
        })
        .await?
    }

    /// Retire the push artifacts no site wants any more (a newer push of their path reached
    /// every site of theirs; only the paths of push `of` when given) and collect their blobs
    /// that nothing else references: a replaced version leaves the store once no site's
    /// desired state and no push still delivering it names it.
    pub(crate) async fn collect_replaced(self: &Arc<Self>, of: Option<i64>) -> Result<()> {
        let blobs = self
            .db
            .call(move |c| db::pushes::retire_shadowed(c, of))
            .await?;
        for blob in blobs {
            self.collect_blob(blob).await?;
        }
        Ok(())
    }

    /// Count bytes written to a site's streams; `blob` attributes them to pushes.
    pub(crate) fn count_sent(&self, site: &str, blob: Option<BlobId>, payload: u64, framing: u64) {
        let mut a = lock(&self.acct);
        let e = a.entry((site.to_owned(), blob)).or_default();
        e.0 += payload;
        e.1 += framing;
    }

    /// Write pending byte counters to the database.
    pub(crate) async fn flush_accounting(&self) -> Result<()> {
        let pending: Vec<_> = std::mem::take(&mut *lock(&self.acct)).into_iter().collect();
        if pending.is_empty() {
            return Ok(());
        }
        let touched = self
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                let mut touched = false;
                for ((site, blob), (payload, framing)) in &pending {
                    db::sites::add_sent(&tx, site, *payload, *framing)?;
                    if let Some(b) = blob {
                        touched |= db::pushes::add_sent(&tx, site, b, *payload, *framing)?;
                    }
                }
                tx.commit()?;
                Ok(touched)
            })
            .await?;
        if touched {
            self.pushes_changed();
        }
        Ok(())
    }

    /// Record that a node connected (`+1`) or disconnected (`-1`).
    pub(crate) async fn node_presence(
        &self,
        site: &str,
        node: &str,
        address: Option<String>,
        up: bool,
    ) -> Result<()> {
        let online = {
            let mut m = lock(&self.online);
            let key = (site.to_owned(), node.to_owned());
            let n = m.entry(key.clone()).or_default();
            if up {
                *n += 1;
            } else {
                *n = n.saturating_sub(1);
            }
            let online = *n > 0;
            if !online {
                m.remove(&key);
            }
            online
        };
        let (site, node) = (site.to_owned(), node.to_owned());
        self.db
            .call(move |c| db::sites::node_seen(c, &site, &node, address.as_deref(), online))
            .await
    }
}
