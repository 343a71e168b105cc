//! What the edge tells the origin about its node: disk size and free space, bytes stored, and
//! how many artifacts it serves and still fetches (`NodeStats`, about every [`EVERY`]).

use std::sync::Arc;
use std::time::Duration;

use sitecast_protocol::wire::{ArtifactState, NodeStats};

use super::state::Shared;
use crate::core::Core;
use crate::error::{blocking, Error};

/// How often the control stream sends `NodeStats` (and once after `Welcome`).
pub(crate) const EVERY: Duration = Duration::from_secs(60);

/// The node's figures now. Disk figures are of the file system holding the data directory;
/// the store's size is summed from its files (blocking pool).
pub(crate) async fn collect(core: &Arc<Core>, shared: &Shared) -> Result<NodeStats, Error> {
    let (dir, store) = (core.cfg.data_dir.clone(), core.store.clone());
    let (disk_total, disk_free, store_bytes) = blocking("measure the disk", move || {
        let (total, free) = sitecast_runtime::datadir::disk_space(&dir)
            .map_err(|e| Error::io("statvfs", &dir, e))?;
        Ok((total, free, store.total_bytes()?))
    })
    .await?;
    let (mut pending, mut bytes_pending) = (0u32, 0u64);
    for t in shared.lock().transfers.values() {
        if t.state != ArtifactState::Complete {
            pending = pending.saturating_add(1);
            // Before the lack is known (queued), the whole artifact.
            let left = if t.bytes_needed > 0 {
                t.bytes_needed.saturating_sub(t.bytes_fetched)
            } else {
                t.bytes_total
            };
            bytes_pending = bytes_pending.saturating_add(left);
        }
    }
    Ok(NodeStats {
        disk_total,
        disk_free,
        store_bytes,
        artifacts_held: u32::try_from(core.catalog.published().len()).unwrap_or(u32::MAX),
        artifacts_pending: pending,
        bytes_pending,
    })
}
