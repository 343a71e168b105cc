//! Channels: an artifact path (`/firmware/ap-x200/stable/fw.bin`) that names a version's
//! content instead of holding an upload of its own. Setting or moving a channel publishes the
//! version's blob at the channel's path (no bytes are copied or stored again), so everything
//! that works for a path works for it: pushes deliver it, following pushes deliver its moves,
//! and an edge switches the path to the new version in one step once that is complete there.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use sitecast_protocol::CatalogPath;

use super::artifacts::{self, Published};
use crate::error::{Error, Result};
use crate::util::{now, rfc3339};

/// A channel as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ChannelInfo {
    /// The channel's path.
    pub path: String,
    /// The version path it was pointed at.
    pub target: String,
    /// When it was last set or moved, RFC 3339.
    pub moved: String,
    /// The content it names now (the version's, when it was set).
    pub sha256: String,
    /// Its size.
    pub size: u64,
}

/// Point channel `path` at the version at `target`: its blob is published at `path`.
///
/// # Errors
/// [`Error::NotFound`] without an artifact at `target`; [`Error::Conflict`] when `path` holds
/// an uploaded artifact (not a channel), or is `target` itself.
pub(crate) fn set(
    c: &mut Connection,
    path: &CatalogPath,
    target: &CatalogPath,
) -> Result<Published> {
    if path == target {
        return Err(Error::Conflict(format!(
            "channel {path} cannot point at itself"
        )));
    }
    let is_channel = c
        .prepare_cached("SELECT 1 FROM channels WHERE path = ?1")?
        .exists([path.as_str()])?;
    if !is_channel && artifacts::get(c, path)?.is_some() {
        return Err(Error::Conflict(format!(
            "{path} holds an uploaded artifact, not a channel (delete it first, or pick another path)"
        )));
    }
    let Some((blob, ..)) = artifacts::resolve(c, target.as_str())? else {
        return Err(Error::NotFound(format!(
            "no artifact at {target} to point {path} at"
        )));
    };
    let blob = super::id32(
        &blob,
        "artifact blob",
        sitecast_protocol::BlobId::from_bytes,
    )?;
    let recipe = artifacts::recipe(c, &blob)?
        .ok_or_else(|| Error::NotFound(format!("the content of {target} is gone")))?;
    let published = artifacts::publish(c, path, &recipe, now())?;
    c.execute(
        "INSERT INTO channels (path, target, moved) VALUES (?1, ?2, ?3)
         ON CONFLICT (path) DO UPDATE SET target = ?2, moved = CASE WHEN target = ?2 THEN moved ELSE ?3 END",
        params![path.as_str(), target.as_str(), now()],
    )?;
    Ok(published)
}

/// Every channel, by path.
pub(crate) fn list(c: &Connection) -> Result<Vec<ChannelInfo>> {
    let rows: Vec<(String, String, i64)> = c
        .prepare_cached("SELECT path, target, moved FROM channels ORDER BY path")?
        .query_map([], |r| r.try_into())?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (path, target, moved) in rows {
        let p = CatalogPath::parse(&path).map_err(|e| Error::record("channels.path", e))?;
        let Some(a) = artifacts::get(c, &p)? else {
            continue;
        };
        out.push(ChannelInfo {
            path,
            target,
            moved: rfc3339(moved),
            sha256: a.sha256,
            size: a.size,
        });
    }
    Ok(out)
}

/// The channel at `path`, if it is one.
pub(crate) fn get(c: &Connection, path: &CatalogPath) -> Result<Option<ChannelInfo>> {
    let exists: Option<i64> = c
        .query_row(
            "SELECT 1 FROM channels WHERE path = ?1",
            [path.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Ok(None);
    }
    Ok(list(c)?.into_iter().find(|ch| ch.path == path.as_str()))
}
