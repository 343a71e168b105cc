//! Reading a stored blob as an HTTP body: chunks are read (and verified against their ids by
//! the store) in batches of about 1 MiB on the blocking pool, and only the requested byte range
//! is sent. A chunk that fails verification ends the stream with an error, so the client sees
//! a cut response, never bad bytes presented as good.

use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt as _;
use sitecast_protocol::{BlobRecipe, ChunkId};
use sitecast_runtime::chunks::ChunkStore;

use crate::core::Core;
use crate::error::{Error, Result};

const READ_BATCH_BYTES: u64 = 1024 * 1024;
/// Batches read ahead of the one being sent.
const READ_AHEAD: usize = 3;

/// The byte range `[start, end)` of `recipe` as a streamed body.
pub(crate) fn body(core: &Arc<Core>, recipe: &BlobRecipe, start: u64, end: u64) -> Body {
    // (chunk, skip at its start, bytes to take) for every chunk overlapping the range.
    let mut parts: Vec<(ChunkId, usize, usize)> = Vec::new();
    for (off, c) in recipe.offsets() {
        let c_end = off + u64::from(c.len);
        if c_end <= start || off >= end {
            continue;
        }
        let skip = start.saturating_sub(off);
        let take = c_end.min(end) - off - skip;
        parts.push((
            c.id,
            usize::try_from(skip).unwrap_or(0),
            usize::try_from(take).unwrap_or(0),
        ));
    }
    // Batches of about READ_BATCH_BYTES; the next READ_AHEAD are read (and verified) on the
    // blocking pool while the current one is being sent.
    let mut batches: Vec<Vec<(ChunkId, usize, usize)>> = Vec::new();
    let mut bytes = 0u64;
    for p in parts {
        if batches.is_empty() || bytes >= READ_BATCH_BYTES {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += p.2 as u64;
        if let Some(b) = batches.last_mut() {
            b.push(p);
        }
    }
    let core = Arc::clone(core);
    let stream = futures::stream::iter(batches)
        .map(move |batch| {
            let core = Arc::clone(&core);
            tokio::task::spawn_blocking(move || -> Result<Bytes> {
                let len: usize = batch.iter().map(|p| p.2).sum();
                let mut out = Vec::with_capacity(len);
                for (id, skip, take) in batch {
                    let data = core.store.get(&id)?;
                    let slice = data.get(skip..skip + take).ok_or_else(|| {
                        Error::record(
                            "chunk",
                            format!("{} shorter than its recipe says", id.short()),
                        )
                    })?;
                    out.extend_from_slice(slice);
                }
                Ok(Bytes::from(out))
            })
        })
        .buffered(READ_AHEAD)
        .map(|read| match read {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "blob read failed; cutting the response");
                Err(std::io::Error::other(e.to_string()))
            }
            Err(e) => Err(std::io::Error::other(e.to_string())),
        });
    // The first error ends the body: the client sees a cut response, never bad bytes.
    let stream = stream.scan(false, |failed, item| {
        let out = if *failed {
            None
        } else {
            *failed = item.is_err();
            Some(item)
        };
        futures::future::ready(out)
    });
    Body::from_stream(stream)
}

/// Read a whole (small) blob into memory: manifests, which are bounded by `max_manifest`.
pub(crate) async fn whole(core: &Arc<Core>, recipe: &BlobRecipe) -> Result<Vec<u8>> {
    let core = Arc::clone(core);
    let recipe = recipe.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(usize::try_from(recipe.len).unwrap_or(0));
        for c in &recipe.chunks {
            out.extend_from_slice(&core.store.get(&c.id)?);
        }
        if sitecast_protocol::Sha256Digest::of(&out) != recipe.sha256 {
            return Err(Error::record(
                "manifest",
                "stored bytes do not match their digest",
            ));
        }
        Ok(out)
    })
    .await?
}

/// A parsed `Range: bytes=…` header: `[start, end)` within `len`, `None` if absent,
/// `Err(())` if unsatisfiable or malformed.
pub(crate) fn range(header: Option<&str>, len: u64) -> std::result::Result<Option<(u64, u64)>, ()> {
    let Some(h) = header else { return Ok(None) };
    let spec = h.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        // One range only; multipart byteranges are not offered.
        return Err(());
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len)
    } else {
        let s: u64 = a.parse().map_err(|_| ())?;
        let e = if b.is_empty() {
            len
        } else {
            let e: u64 = b.parse().map_err(|_| ())?;
            if e < s {
                return Err(());
            }
            // `bytes=0-18446744073709551615` names the last possible byte: `e + 1` would
            // overflow.
            e.saturating_add(1).min(len)
        };
        (s, e)
    };
    if start >= len {
        return Err(());
    }
    Ok(Some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::range;

    #[test]
    fn ranges() {
        assert_eq!(range(None, 10), Ok(None));
        assert_eq!(range(Some("bytes=0-"), 10), Ok(Some((0, 10))));
        assert_eq!(range(Some("bytes=2-4"), 10), Ok(Some((2, 5))));
        assert_eq!(range(Some("bytes=2-40"), 10), Ok(Some((2, 10))));
        assert_eq!(range(Some("bytes=-3"), 10), Ok(Some((7, 10))));
        assert_eq!(range(Some("bytes=-30"), 10), Ok(Some((0, 10))));
        assert!(range(Some("bytes=10-"), 10).is_err());
        assert!(range(Some("bytes=5-2"), 10).is_err());
        assert!(range(Some("bytes=0-1,3-4"), 10).is_err());
        assert!(range(Some("items=0-1"), 10).is_err());
        assert!(range(Some("bytes=-0"), 10).is_err());
    }

    /// Regression (found by fuzzing): a last byte of `u64::MAX` overflowed `end + 1`.
    #[test]
    fn range_ending_at_u64_max_is_clamped() {
        let max = u64::MAX;
        assert_eq!(
            range(Some(&format!("bytes=0-{max}")), 10),
            Ok(Some((0, 10)))
        );
        assert_eq!(
            range(Some(&format!("bytes=3-{max}")), 10),
            Ok(Some((3, 10)))
        );
        assert_eq!(
            range(Some(&format!("bytes=0-{max}")), max),
            Ok(Some((0, max)))
        );
        assert!(range(Some(&format!("bytes={max}-{max}")), 10).is_err());
    }
}
