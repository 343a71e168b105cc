//! The edge core every server and the origin session share: config, database, chunk store,
//! the current site config (swapped atomically), the authenticator and the counters.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use sitecast_protocol::{BlobId, SiteConfig};
use sitecast_runtime::chunks::{ChunkStore, DiskChunkStore, DiskOptions};

use crate::access::Authenticator;
use crate::catalog::Catalog;
use crate::config::EdgeConfig;
use crate::error::Error;
use crate::metrics::Metrics;

/// Shared state of one edge node.
pub struct Core {
    /// The validated configuration.
    pub cfg: EdgeConfig,
    /// Database and published snapshot.
    pub catalog: Arc<Catalog>,
    /// Chunk store.
    pub store: Arc<dyn ChunkStore>,
    /// The site config in force (users, grants); replaced as a whole.
    pub site: Arc<RwLock<Arc<SiteConfig>>>,
    /// Password checks and failure limiting.
    pub auth: Authenticator,
    /// Counters.
    pub metrics: Metrics,
    /// Recently served chunks, verified, in memory.
    pub(crate) cache: crate::chunk_cache::ChunkCache,
    /// The current session with the origin (`None` while offline), for on-demand fetches.
    pub(crate) uplink: tokio::sync::watch::Sender<Option<quinn::Connection>>,
    /// Registry mirror fetches in flight.
    pub(crate) flights: crate::oci::ondemand::Flights,
    /// Held exclusively by a garbage collection from its snapshot of what is in use until its
    /// last chunk removal, and shared by a registry flight while it registers its blob and
    /// stores its recipe: a collection that started earlier cannot then remove the new recipe
    /// or the chunks that arrive for it.
    pub(crate) gc_lock: tokio::sync::RwLock<()>,
    /// The HTTPS certificate from the origin, when a listener takes it from there.
    pub(crate) https: Option<crate::https::OriginHttps>,
    /// Key of the registry mirror's bearer tokens (born with the process).
    pub(crate) token_key: [u8; 32],
    /// Blobs being read by a client right now, with the number of readers: garbage collection
    /// keeps their chunks, so a download of a version that was just replaced completes.
    readers: Mutex<HashMap<BlobId, usize>>,
}

impl Core {
    /// Open the data directory: database `<data_dir>/edge.db`, chunks in `<data_dir>/chunks`.
    ///
    /// # Errors
    /// The directory, database or store cannot be opened.
    pub fn open(cfg: EdgeConfig) -> Result<Self, Error> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| Error::io("create", &cfg.data_dir, e))?;
        let catalog = Catalog::open(&cfg.data_dir.join("edge.db"))?;
        let store = DiskChunkStore::open(cfg.data_dir.join("chunks"), DiskOptions::default())?;
        Self::with_parts(cfg, catalog, Arc::new(store))
    }

    /// Assemble a core from an opened catalog and store (tests use a memory store).
    ///
    /// # Errors
    /// The stored site config does not decode.
    pub fn with_parts(
        cfg: EdgeConfig,
        catalog: Catalog,
        store: Arc<dyn ChunkStore>,
    ) -> Result<Self, Error> {
        let site = Arc::new(RwLock::new(Arc::new(
            catalog.site_config()?.unwrap_or_default(),
        )));
        let auth = Authenticator::new(site.clone(), &cfg.http);
        let cache = crate::chunk_cache::ChunkCache::new(cfg.chunk_cache_bytes);
        let https = if cfg.http.tls_from_origin || cfg.oci.tls_from_origin {
            Some(crate::https::OriginHttps::open(&cfg.data_dir, &cfg.node)?)
        } else {
            None
        };
        Ok(Self {
            https,
            cache,
            uplink: tokio::sync::watch::channel(None).0,
            flights: crate::oci::ondemand::Flights::default(),
            token_key: rand::random(),
            gc_lock: tokio::sync::RwLock::new(()),
            readers: Mutex::default(),
            cfg,
            catalog: Arc::new(catalog),
            store,
            site,
            auth,
            metrics: Metrics::default(),
        })
    }

    fn readers(&self) -> std::sync::MutexGuard<'_, HashMap<BlobId, usize>> {
        self.readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A client started reading `blob`.
    pub(crate) fn start_reading(&self, blob: BlobId) {
        *self.readers().entry(blob).or_insert(0) += 1;
    }

    /// A client stopped reading `blob`; true if it was the last one.
    pub(crate) fn stop_reading(&self, blob: BlobId) -> bool {
        let mut r = self.readers();
        match r.get_mut(&blob) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                r.remove(&blob);
                true
            }
            None => false,
        }
    }

    /// Blobs with at least one reader.
    pub(crate) fn blobs_being_read(&self) -> HashSet<BlobId> {
        self.readers().keys().copied().collect()
    }

    /// The site config in force.
    #[must_use]
    pub fn site_config(&self) -> Arc<SiteConfig> {
        self.site
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replace the site config in force (after it was persisted).
    pub fn set_site_config(&self, cfg: SiteConfig) {
        *self
            .site
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(cfg);
    }
}
