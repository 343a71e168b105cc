//! Pushes that follow their content: a version published at a path a following push's content
//! entries cover (a prefix ending in `/`, a directory, or the path itself) is delivered to that
//! push's sites by a new push, with the same cap, windows, priority and rollout (so a new
//! version goes through the waves again) and `followed_from` naming it. The sites are the
//! following push's live sites, fixed when it was created (as any push's). Images are not
//! followed.
//!
//! [`after_publish`] also says which sites keep the version they have at that path: those whose
//! desired state names another blob there and that no following push covers.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use sitecast_protocol::{BlobId, CatalogPath};

use super::pushes::{self, NewPush};
use crate::error::{Error, Result};
use crate::rollout::Rollout;

/// What publishing a new version set going, as the upload answers it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FollowUp {
    /// Pushes created to deliver the new version, one per following push.
    pub delivered_by: Vec<i64>,
    /// Sites that keep another version at this path until it is pushed to them.
    pub kept_old_at: Vec<String>,
    /// Following pushes that could not deliver it, and why (e.g. a site's quota).
    pub follow_errors: Vec<String>,
}

/// Whether a push content entry covers `path`.
fn covers(entry: &str, path: &str) -> bool {
    if entry.ends_with('/') {
        path.starts_with(entry)
    } else {
        path == entry
            || path
                .strip_prefix(entry)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// Deliver the version now at `path` through every following push that covers it, and say who
/// keeps an older version.
pub(crate) fn after_publish(c: &mut Connection, path: &CatalogPath) -> Result<FollowUp> {
    let blob: Option<Vec<u8>> = c
        .query_row(
            "SELECT blob FROM artifacts WHERE path = ?1",
            [path.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    let Some(blob) = blob else {
        return Ok(FollowUp::default()); // deleted meanwhile
    };
    let blob = super::id32(&blob, "artifact blob", BlobId::from_bytes)?;
    type Row = (i64, String, Option<i64>, String, i64, Option<String>);
    let following: Vec<Row> = c
        .prepare_cached(
            "SELECT id, content, max_rate, windows, priority, rollout FROM pushes
             WHERE follow = 1 AND cancelled IS NULL ORDER BY id",
        )?
        .query_map([], |r| r.try_into())?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = FollowUp::default();
    for (id, content, max_rate, windows, priority, rollout) in following {
        let entries: Vec<String> =
            serde_json::from_str(&content).map_err(|e| Error::record("pushes.content", e))?;
        if !entries.iter().any(|e| covers(e, path.as_str())) {
            continue;
        }
        let sites: Vec<String> = c
            .prepare_cached(
                "SELECT site FROM push_sites WHERE push = ?1 AND state <> 'cancelled'
                   AND site_deleted IS NULL ORDER BY site",
            )?
            .query_map([id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if sites.is_empty() {
            continue;
        }
        let rollout: Option<Rollout> = rollout
            .map(|r| serde_json::from_str(&r).map_err(|e| Error::record("pushes.rollout", e)))
            .transpose()?;
        let np = NewPush {
            content: vec![path.as_str().to_owned()],
            sites,
            max_rate: max_rate.map(super::u64_of),
            windows: super::schedule::windows_from_json("pushes.windows", &windows)?,
            priority,
            rollout,
            followed_from: Some(id),
            ..NewPush::default()
        };
        match pushes::create(c, &np) {
            Ok(p) => {
                tracing::info!(push = p.id, follows = id, path = %path, "new version delivered by a following push");
                out.delivered_by.push(p.id);
            }
            Err(e) => {
                tracing::warn!(follows = id, path = %path, error = %e, "a following push could not deliver the new version");
                out.follow_errors.push(format!("push {id}: {e}"));
            }
        }
    }
    let sites: Vec<String> = c
        .prepare_cached(
            "SELECT DISTINCT a.site FROM push_site_artifacts a JOIN push_sites ps
               ON ps.push = a.push AND ps.site = a.site
             WHERE a.path = ?1 AND ps.state <> 'cancelled' AND ps.site_deleted IS NULL
             ORDER BY a.site",
        )?
        .query_map(params![path.as_str()], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for site in sites {
        let planned = pushes::desired_with_push(c, &site, true)?;
        if planned
            .iter()
            .any(|(_, m)| m.path == *path && m.blob != blob)
        {
            out.kept_old_at.push(site);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn entries_cover_paths_below_them() {
        use super::covers;
        assert!(covers("/fw/", "/fw/a.bin"));
        assert!(covers("/fw", "/fw/a.bin"));
        assert!(covers("/fw/a.bin", "/fw/a.bin"));
        assert!(!covers("/fw", "/fwx/a.bin"));
        assert!(!covers("/fw/a.bin", "/fw/a.bin2"));
        assert!(!covers("/fw/", "/fw"));
    }
}
