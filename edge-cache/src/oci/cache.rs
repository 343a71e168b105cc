//! The on-demand cache's disk quota (`oci.cache_max_bytes`): after each on-demand fetch, least
//! recently used blobs are dropped until the cache fits, never one a pushed image pins (it is a
//! published artifact) or one a client is reading; their chunks go at the garbage collection
//! that follows (chunks shared with pinned content stay, since a kept recipe references them).

use std::collections::HashSet;
use std::sync::Arc;

use crate::core::Core;
use crate::error::blocking;

/// Evict until the cache fits its quota, then collect unreferenced chunks.
pub(crate) async fn enforce_quota(core: &Arc<Core>) {
    let max = core.cfg.oci.cache_max_bytes;
    let mut spare: HashSet<_> = core.blobs_being_read();
    spare.extend(core.catalog.published().values().map(|m| m.blob));
    let catalog = core.catalog.clone();
    match blocking("evict cache", move || catalog.evict(max, &spare)).await {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(
                blobs = n,
                max_bytes = max,
                "evicted on-demand blobs over the cache quota"
            );
            if let Err(e) = crate::session::collect_garbage(core).await {
                tracing::warn!(error = %e, "removing unreferenced chunks failed");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cache eviction failed"),
    }
}
