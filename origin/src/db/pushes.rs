//! Pushes: creation (content and site selection), desired state, progress from edges.
//!
//! Per push, site and artifact the edge's last report is kept in `push_site_artifacts`; a
//! push-site's state is derived from those rows whenever they change ([`recompute`]):
//! complete when every artifact is complete (or superseded by a newer push, or deleted); failed
//! when every artifact is complete or failed and at least one failed; transferring when any has
//! been started; else pending. While other artifacts are still in progress the error of a
//! failed one is already shown. A later
//! report of progress for a failed artifact moves it (and the site) back to transferring.
//!
//! `bytes_needed` per artifact is the first non-zero value the edge reports (what it lacked
//! when it first started on it), or 0 when the site already held the path complete with the
//! same blob when the push was created; it stays frozen afterwards, so an edge that resumes after a
//! restart (and then lacks less) does not shrink the figure. An artifact the edge already held
//! completely reports 0 and stays 0.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, Connection, OptionalExtension};
use sitecast_protocol::wire::{ArtifactState, StatusReport};
use sitecast_protocol::{ArtifactManifest, BlobId, CatalogPath, Sha256Digest};

use super::{i64_of, id32, labels_match, u64_of, Labels, PushArtifactInfo, PushInfo, PushSiteInfo};
use crate::error::{Error, Result};
use crate::schedule::Held;
use crate::util::{now, rfc3339};

/// A push to create.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewPush {
    /// Paths or prefixes (ending in `/`, or naming a directory).
    pub(crate) content: Vec<String>,
    /// Site names.
    pub(crate) sites: Vec<String>,
    /// Label selector (every label must match).
    pub(crate) labels: Option<Labels>,
    /// Bandwidth limit, bytes/s.
    pub(crate) max_rate: Option<u64>,
    /// Image selectors (see [`super::images`]).
    pub(crate) images: Vec<String>,
    /// Not before (unix seconds).
    pub(crate) start_at: Option<i64>,
    /// Transfer windows (canonical texts), in each site's time zone.
    pub(crate) windows: Vec<String>,
    /// Higher first (strict) where pushes compete for a site.
    pub(crate) priority: i64,
    /// A label expression the sites must also match (see [`crate::selector`]).
    pub(crate) selector: Option<crate::selector::Selector>,
    /// Waves or rolling (None: every site at once).
    pub(crate) rollout: Option<crate::rollout::Rollout>,
    /// Deliver later versions of the content too (see [`super::follow`]).
    pub(crate) follow: bool,
    /// The following push this one delivers a new version for.
    pub(crate) followed_from: Option<i64>,
}

struct Resolved {
    path: String,
    blob: Vec<u8>,
    len: i64,
    sha256: Vec<u8>,
    modified: i64,
}

fn resolve_content(c: &Connection, content: &[String]) -> Result<Vec<Resolved>> {
    let mut out: BTreeMap<String, Resolved> = BTreeMap::new();
    for entry in content {
        let mut found = 0usize;
        if !entry.ends_with('/') {
            let p = CatalogPath::parse_artifact(entry).map_err(|e| Error::bad_path(entry, e))?;
            if let Some((blob, len, sha256, modified)) = super::artifacts::resolve(c, p.as_str())? {
                out.insert(
                    p.to_string(),
                    Resolved {
                        path: p.to_string(),
                        blob,
                        len,
                        sha256,
                        modified,
                    },
                );
                found += 1;
            }
        }
        if found == 0 {
            let prefix = CatalogPath::parse_prefix(entry).map_err(|e| Error::bad_path(entry, e))?;
            for a in super::artifacts::list(c, &prefix)? {
                if let Some((blob, len, sha256, modified)) = super::artifacts::resolve(c, &a.path)?
                {
                    out.insert(
                        a.path.clone(),
                        Resolved {
                            path: a.path,
                            blob,
                            len,
                            sha256,
                            modified,
                        },
                    );
                    found += 1;
                }
            }
        }
        if found == 0 {
            return Err(Error::BadRequest(format!(
                "content {entry:?} matches no artifact"
            )));
        }
    }
    Ok(out.into_values().collect())
}

fn resolve_sites(
    c: &Connection,
    names: &[String],
    labels: Option<&Labels>,
    selector: Option<&crate::selector::Selector>,
) -> Result<Vec<String>> {
    let no_labels = match labels {
        Some(l) => l.is_empty(),
        None => true,
    } && selector.is_none();
    if names.is_empty() && no_labels {
        return Err(Error::BadRequest(
            "name at least one site or a label selector".into(),
        ));
    }
    let all = super::sites::labels_all(c)?;
    let mut out = BTreeSet::new();
    for n in names {
        if !all.iter().any(|(s, _)| s == n) {
            return Err(Error::BadRequest(format!("site {n:?} does not exist")));
        }
        out.insert(n.clone());
    }
    if !no_labels {
        for (s, l) in &all {
            let by_labels = labels.is_none_or(|sel| labels_match(l, sel));
            if by_labels && selector.is_none_or(|sel| sel.matches(l)) {
                out.insert(s.clone());
            }
        }
    }
    if out.is_empty() {
        return Err(Error::BadRequest("no site matches the selector".into()));
    }
    Ok(out.into_iter().collect())
}

/// Create a push: resolve content and sites now, set the sites' desired state.
pub(crate) fn create(c: &mut Connection, p: &NewPush) -> Result<PushInfo> {
    if p.content.is_empty() && p.images.is_empty() {
        return Err(Error::BadRequest(
            "content must name at least one path, prefix or image".into(),
        ));
    }
    let tx = c.transaction()?;
    let mut arts = resolve_content(&tx, &p.content)?;
    let images = super::images::resolve(&tx, &p.images)?;
    arts.extend(images.blobs.into_iter().map(|b| Resolved {
        path: b.path,
        blob: b.blob,
        len: b.len,
        sha256: b.sha256,
        modified: 0,
    }));
    let sites = resolve_sites(&tx, &p.sites, p.labels.as_ref(), p.selector.as_ref())?;
    let content_json =
        serde_json::to_string(&p.content).map_err(|e| Error::BadRequest(e.to_string()))?;
    let rollout = p
        .rollout
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| Error::BadRequest(e.to_string()))?;
    tx.execute(
        "INSERT INTO pushes (created, content, max_rate, start_at, windows, priority, rollout,
                             follow, followed_from)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            now(),
            content_json,
            p.max_rate.map(i64_of),
            p.start_at,
            super::schedule::windows_json(&p.windows),
            p.priority,
            rollout,
            p.follow,
            p.followed_from
        ],
    )?;
    let id = tx.last_insert_rowid();
    super::images::insert(&tx, id, &images.images)?;
    let total: i64 = arts.iter().map(|a| a.len).sum();
    for a in &arts {
        tx.execute(
            "INSERT INTO push_artifacts (push, path, blob, len, sha256, modified) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, a.path, a.blob, a.len, a.sha256, a.modified],
        )?;
    }
    let waves = p
        .rollout
        .as_ref()
        .filter(|r| !r.waves.is_empty())
        .map(|r| crate::rollout::assign_waves(&r.waves, sites.len()));
    for (i, s) in sites.iter().enumerate() {
        tx.execute(
            "INSERT INTO push_sites (push, site, state, bytes_total, updated, wave)
             VALUES (?1, ?2, 'pending', ?3, ?4, ?5)",
            params![id, s, total, now(), waves.as_ref().map(|w| w[i])],
        )?;
        for a in &arts {
            tx.execute(
                "INSERT INTO push_site_artifacts (push, site, path, blob, state)
                 VALUES (?1, ?2, ?3, ?4, 'queued')",
                params![id, s, a.path, a.blob],
            )?;
        }
    }
    check_quotas(&tx, &sites)?;
    if p.rollout.is_some() {
        super::rollout::advance(&tx, id)?;
    } else {
        for s in &sites {
            release(&tx, id, s)?;
        }
        super::sites::bump_desired(&tx, &sites)?;
    }
    let info = get(&tx, id)?.ok_or_else(|| Error::NotFound(format!("push {id} not found")))?;
    tx.commit()?;
    Ok(info)
}

/// Push `push` reaches `site`: its content joins the site's desired state (the caller bumps the
/// site's desired revision). What the site already holds complete at a path (pushed before,
/// same blob) is needed 0 and done at once; an older push's different content for a path at
/// the site is superseded.
pub(crate) fn release(c: &Connection, push: i64, site: &str) -> Result<()> {
    c.prepare_cached("UPDATE push_sites SET released = ?3 WHERE push = ?1 AND site = ?2")?
        .execute(params![push, site, now()])?;
    let arts: Vec<(String, Vec<u8>)> = c
        .prepare_cached("SELECT path, blob FROM push_site_artifacts WHERE push = ?1 AND site = ?2")?
        .query_map(params![push, site], |r| r.try_into())?
        .collect::<rusqlite::Result<_>>()?;
    let mut older = BTreeSet::new();
    for (path, blob) in &arts {
        // Otherwise the edge would re-report the figure of its first transfer.
        let held = c
            .prepare_cached(
                "SELECT 1 FROM push_site_artifacts a JOIN push_sites ps
                   ON ps.push = a.push AND ps.site = a.site AND ps.site_deleted IS NULL
                 WHERE a.site = ?1 AND a.path = ?2 AND a.blob = ?3 AND a.state = 'complete'
                   AND ps.state <> 'cancelled' AND a.push <> ?4 LIMIT 1",
            )?
            .exists(params![site, path, blob, push])?;
        if held {
            c.prepare_cached(
                "UPDATE push_site_artifacts SET state = 'complete', bytes_needed = 0
                 WHERE push = ?1 AND site = ?2 AND path = ?3",
            )?
            .execute(params![push, site, path])?;
        }
        let ids: Vec<i64> = c
            .prepare_cached(
                "UPDATE push_site_artifacts SET state = 'superseded'
                 WHERE site = ?1 AND path = ?2 AND push <> ?3 AND blob <> ?4
                   AND state NOT IN ('complete', 'superseded', 'removed')
                 RETURNING push",
            )?
            .query_map(params![site, path, push, blob], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        older.extend(ids);
    }
    for p in older {
        recompute(c, p, site)?;
    }
    recompute(c, push, site) // complete at once when the site held everything
}

/// Re-derive one push-site's state and bytes_needed from its artifact rows.
pub(crate) fn recompute(c: &Connection, push: i64, site: &str) -> Result<()> {
    let current: Option<String> = c
        .prepare_cached("SELECT state FROM push_sites WHERE push = ?1 AND site = ?2")?
        .query_row(params![push, site], |r| r.get(0))
        .optional()?;
    if current.as_deref().is_none_or(|s| s == "cancelled") {
        return Ok(()); // cancelled stays cancelled: history, not progress
    }
    let mut st = c.prepare_cached(
        "SELECT path, state, bytes_needed, error FROM push_site_artifacts
         WHERE push = ?1 AND site = ?2 AND state NOT IN ('superseded', 'removed') ORDER BY path",
    )?;
    let rows: Vec<(String, String, Option<i64>, Option<String>)> = st
        .query_map(params![push, site], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let needed: i64 = rows.iter().filter_map(|r| r.2).sum();
    let error = rows.iter().find(|r| r.1 == "failed").map(|f| {
        format!(
            "{}: {}",
            f.0,
            f.3.as_deref().unwrap_or("failed at the edge")
        )
    });
    let state = if rows.iter().all(|r| r.1 == "complete") {
        "complete"
    } else if error.is_some() && rows.iter().all(|r| r.1 == "complete" || r.1 == "failed") {
        "failed"
    } else if rows.iter().any(|r| r.1 != "queued") {
        "transferring"
    } else {
        "pending"
    };
    c.prepare_cached(
        "UPDATE push_sites SET state = ?3, bytes_needed = ?4, error = ?5, updated = ?6 WHERE push = ?1 AND site = ?2",
    )?
    .execute(params![push, site, state, needed, error, now()])?;
    Ok(())
}

/// Re-derive every site of a push.
pub(crate) fn recompute_push(c: &Connection, push: i64) -> Result<()> {
    let sites: Vec<String> = c
        .prepare_cached("SELECT site FROM push_sites WHERE push = ?1")?
        .query_map([push], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for s in sites {
        recompute(c, push, &s)?;
    }
    Ok(())
}

fn state_name(s: ArtifactState) -> &'static str {
    match s {
        ArtifactState::Queued => "queued",
        ArtifactState::Fetching => "fetching",
        ArtifactState::Complete => "complete",
        ArtifactState::Failed => "failed",
    }
}

/// Apply an edge's status report to every push of `site` that carries the reported
/// (path, blob). Returns whether anything changed.
#[cfg(test)]
pub(crate) fn apply_report(c: &mut Connection, site: &str, report: &StatusReport) -> Result<bool> {
    Ok(apply_report_completing(c, site, report)?.is_some())
}

/// What a status report changed beyond the reporting site's rows.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Moved {
    /// Pushes that became complete at the site: their replaced versions may be collectable.
    pub(crate) completed: Vec<i64>,
    /// Sites a rollout released because of it (their desired revisions were bumped).
    pub(crate) released: Vec<String>,
}

/// [`apply_report`], returning what moved (`None` if nothing changed).
pub(crate) fn apply_report_completing(
    c: &mut Connection,
    site: &str,
    report: &StatusReport,
) -> Result<Option<Moved>> {
    let tx = c.transaction()?;
    let mut touched = BTreeSet::new();
    for a in &report.artifacts {
        let blob = a.blob.as_bytes().to_vec();
        let pushes: Vec<i64> = tx
            .prepare_cached(
                "SELECT a.push FROM push_site_artifacts a JOIN push_sites ps
                   ON ps.push = a.push AND ps.site = a.site
                 WHERE a.site = ?1 AND a.path = ?2 AND a.blob = ?3
                   AND a.state NOT IN ('superseded', 'removed') AND ps.released IS NOT NULL
                   AND ps.state <> 'cancelled' AND ps.site_deleted IS NULL",
            )?
            .query_map(params![site, a.path.as_str(), blob], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if pushes.is_empty() {
            continue;
        }
        tx.prepare_cached(
            "UPDATE push_site_artifacts SET state = ?4, error = ?5,
                 bytes_needed = CASE WHEN state = 'complete' AND bytes_needed IS NOT NULL THEN bytes_needed
                                     WHEN bytes_needed IS NULL OR bytes_needed = 0 THEN ?6
                                     ELSE bytes_needed END
             WHERE site = ?1 AND path = ?2 AND blob = ?3 AND state NOT IN ('superseded', 'removed')
               AND push IN (SELECT push FROM push_sites WHERE site = ?1 AND released IS NOT NULL
                            AND state <> 'cancelled' AND site_deleted IS NULL)",
        )?
        .execute(params![
            site,
            a.path.as_str(),
            blob,
            state_name(a.state),
            a.error,
            i64_of(a.bytes_needed)
        ])?;
        touched.extend(pushes);
    }
    let state = |tx: &rusqlite::Transaction<'_>, p: i64| -> Result<Option<String>> {
        Ok(tx
            .prepare_cached("SELECT state FROM push_sites WHERE push = ?1 AND site = ?2")?
            .query_row(params![p, site], |r| r.get(0))
            .optional()?)
    };
    let mut moved = Moved::default();
    for p in &touched {
        let before = state(&tx, *p)?;
        recompute(&tx, *p, site)?;
        let after = state(&tx, *p)?;
        if after.as_deref() == Some("complete") && before != after {
            moved.completed.push(*p);
        }
        if before != after {
            moved.released.extend(super::rollout::advance(&tx, *p)?);
        }
    }
    tx.commit()?;
    Ok((!touched.is_empty()).then_some(moved))
}

/// Attribute bytes sent to `site` for `blob` to every unfinished push of that site carrying it.
pub(crate) fn add_sent(
    c: &Connection,
    site: &str,
    blob: &BlobId,
    payload: u64,
    framing: u64,
) -> Result<bool> {
    let n = c
        .prepare_cached(
            "UPDATE push_sites SET payload_bytes = payload_bytes + ?3, framing_bytes = framing_bytes + ?4
             WHERE site = ?1 AND state NOT IN ('complete', 'cancelled') AND site_deleted IS NULL
               AND push IN (SELECT push FROM push_artifacts WHERE blob = ?2 AND removed = 0)",
        )?
        .execute(params![site, blob.as_bytes().to_vec(), i64_of(payload), i64_of(framing)])?;
    Ok(n > 0)
}

/// One push with its sites.
pub(crate) fn get(c: &Connection, id: i64) -> Result<Option<PushInfo>> {
    type Head = (
        i64,
        Option<i64>,
        Option<i64>,
        i64,
        Option<i64>,
        bool,
        Option<i64>,
    );
    let head: Option<Head> = c
        .query_row(
            "SELECT created, max_rate, cancelled, priority, paused, follow, followed_from
             FROM pushes WHERE id = ?1",
            [id],
            |r| r.try_into(),
        )
        .optional()?;
    let Some((created, max_rate, cancelled, priority, paused, follow, followed_from)) = head else {
        return Ok(None);
    };
    let (start_at, windows) = super::schedule::push_schedule(c, id)?.unwrap_or_default();
    let content: Vec<String> = c
        .prepare_cached(
            "SELECT path FROM push_artifacts WHERE push = ?1 AND path NOT LIKE '/.oci/%' ORDER BY path",
        )?
        .query_map([id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let images = super::images::of_push(c, id)?;
    let mut sites: Vec<PushSiteInfo> = c
        .prepare_cached(
            "SELECT site, state, bytes_total, bytes_needed, payload_bytes, framing_bytes, error,
                    site_deleted, released, wave
             FROM push_sites WHERE push = ?1 ORDER BY site",
        )?
        .query_map([id], |r| {
            let payload = u64_of(r.get(4)?);
            let framing = u64_of(r.get(5)?);
            Ok(PushSiteInfo {
                site: r.get(0)?,
                state: r.get(1)?,
                bytes_total: u64_of(r.get(2)?),
                bytes_needed: u64_of(r.get(3)?),
                bytes_sent: payload + framing,
                payload_bytes: payload,
                framing_bytes: framing,
                error: r.get(6)?,
                site_deleted: r.get::<_, Option<i64>>(7)?.map(rfc3339),
                released: r.get::<_, Option<i64>>(8)?.map(rfc3339),
                wave: r.get(9)?,
                rate: None,
                eta_seconds: None,
                held_until: None,
                artifacts: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let rollout = super::rollout::info(c, id)?;
    for s in &mut sites {
        if s.released.is_none() && s.state == "pending" {
            s.state = if s.wave.is_some() {
                "waiting_wave"
            } else {
                "queued"
            }
            .to_owned();
        } else if matches!(s.state.as_str(), "pending" | "transferring") && s.site_deleted.is_none()
        {
            let gates = super::schedule::gates(c, &s.site, now())?.unwrap_or_default();
            if let Some(h) = gates.pushes.get(&id) {
                s.state = h.as_str().to_owned();
                s.held_until = gates
                    .next
                    .filter(|_| *h != Held::WaitingPriority)
                    .map(rfc3339);
            }
        }
        s.artifacts = c
            .prepare_cached(
                "SELECT a.path, a.state, b.len, a.bytes_needed, a.error
                 FROM push_site_artifacts a JOIN blobs b ON b.blake3 = a.blob
                 WHERE a.push = ?1 AND a.site = ?2 AND a.state NOT IN ('superseded', 'removed')
                 ORDER BY a.path",
            )?
            .query_map(params![id, s.site], |r| {
                Ok(PushArtifactInfo {
                    path: r.get(0)?,
                    state: r.get(1)?,
                    bytes_total: u64_of(r.get(2)?),
                    bytes_needed: r.get::<_, Option<i64>>(3)?.map_or(0, u64_of),
                    error: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    // Sites deleted before the push reached them count for nothing.
    let live: Vec<&PushSiteInfo> = sites
        .iter()
        .filter(|s| !(s.site_deleted.is_some() && s.state == "cancelled"))
        .collect();
    let state = if cancelled.is_some() {
        "cancelled"
    } else if live.iter().all(|s| s.state == "complete") {
        "complete"
    } else if live
        .iter()
        .all(|s| s.state == "complete" || s.state == "failed")
    {
        "failed"
    } else if paused.is_some() {
        "paused"
    } else if rollout.as_ref().is_some_and(|r| r.halted.is_some()) {
        "halted"
    } else if rollout.as_ref().is_some_and(|r| r.waiting_approval) {
        "waiting_approval"
    } else {
        "in_progress"
    };
    Ok(Some(PushInfo {
        id,
        created: rfc3339(created),
        state,
        content,
        images,
        max_rate: max_rate.map(u64_of),
        cancelled: cancelled.map(rfc3339),
        start_at: start_at.map(rfc3339),
        windows,
        priority,
        paused: paused.map(rfc3339),
        follow,
        followed_from,
        rate: None,
        eta_seconds: None,
        rollout,
        sites,
    }))
}

/// Chunk bytes sent so far to every push-site a push has reached and not finished.
pub(crate) fn sent_unfinished(c: &Connection) -> Result<Vec<(i64, String, u64)>> {
    let mut st = c.prepare_cached(
        "SELECT push, site, payload_bytes FROM push_sites
         WHERE state NOT IN ('complete', 'cancelled') AND released IS NOT NULL
           AND site_deleted IS NULL",
    )?;
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, u64_of(r.get(2)?))))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// The pushes not finished at some live site (pending, transferring or failed there), oldest
/// first.
pub(crate) fn unfinished(c: &Connection) -> Result<Vec<i64>> {
    let mut st = c.prepare_cached(
        "SELECT DISTINCT ps.push FROM push_sites ps JOIN pushes p ON p.id = ps.push
         WHERE ps.state NOT IN ('complete', 'cancelled') AND ps.site_deleted IS NULL
           AND p.cancelled IS NULL ORDER BY ps.push",
    )?;
    let ids = st
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}

/// Cancel push `id` at every site where it is not complete: those push-sites become
/// `cancelled` (with `reason`), their desired states drop its content (an older push's version
/// of a path, if any, is wanted again), and the push is marked cancelled. Returns the sites
/// changed; `None` if there is no such push.
pub(crate) fn cancel(c: &mut Connection, id: i64, reason: &str) -> Result<Option<Vec<String>>> {
    let tx = c.transaction()?;
    let n = tx.execute(
        "UPDATE pushes SET cancelled = COALESCE(cancelled, ?2) WHERE id = ?1",
        params![id, now()],
    )?;
    if n == 0 {
        return Ok(None);
    }
    let sites: Vec<String> = tx
        .prepare_cached(
            "UPDATE push_sites SET state = 'cancelled', error = ?2, updated = ?3
             WHERE push = ?1 AND state NOT IN ('complete', 'cancelled') RETURNING site",
        )?
        .query_map(params![id, reason, now()], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for site in &sites {
        revive_superseded(&tx, id, site)?;
    }
    super::sites::bump_desired(&tx, &sites)?;
    tx.commit()?;
    Ok(Some(sites))
}

/// After push `cancelled` stopped at `site`: for each of its paths, the push now newest there
/// for the path delivers it again, so a row of it marked superseded goes back to queued.
pub(crate) fn revive_superseded(c: &Connection, cancelled: i64, site: &str) -> Result<()> {
    let paths: Vec<String> = c
        .prepare_cached("SELECT path FROM push_site_artifacts WHERE push = ?1 AND site = ?2")?
        .query_map(params![cancelled, site], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for path in paths {
        let winner: Option<i64> = c
            .prepare_cached(
                "SELECT MAX(pa.push) FROM push_artifacts pa JOIN push_sites ps ON ps.push = pa.push
                 WHERE ps.site = ?1 AND pa.path = ?2 AND pa.removed = 0 AND ps.released IS NOT NULL
                   AND ps.state <> 'cancelled' AND ps.site_deleted IS NULL",
            )?
            .query_row(params![site, path], |r| r.get(0))?;
        if let Some(w) = winner {
            let n = c
                .prepare_cached(
                    "UPDATE push_site_artifacts SET state = 'queued'
                     WHERE push = ?1 AND site = ?2 AND path = ?3 AND state = 'superseded'",
                )?
                .execute(params![w, site, path])?;
            if n > 0 {
                recompute(c, w, site)?;
            }
        }
    }
    Ok(())
}

/// Every push, newest first.
pub(crate) fn list(c: &Connection) -> Result<Vec<PushInfo>> {
    let ids: Vec<i64> = c
        .prepare("SELECT id FROM pushes ORDER BY id DESC")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    ids.into_iter()
        .filter_map(|id| get(c, id).transpose())
        .collect()
}

/// A site's desired state: the union of the artifacts of every push that targeted it (newest
/// push wins for a path), minus deleted artifacts. None if the site does not exist.
pub(crate) fn desired_state(
    c: &Connection,
    site: &str,
) -> Result<Option<(u64, Vec<ArtifactManifest>)>> {
    let Some((revision, _)) = super::sites::revisions(c, site)? else {
        return Ok(None);
    };
    let artifacts = desired_with_push(c, site, false)?
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    Ok(Some((revision, artifacts)))
}

/// Refuse (Conflict, naming each) sites whose desired state would hold more distinct blob
/// bytes than their quota.
fn check_quotas(c: &Connection, sites: &[String]) -> Result<()> {
    let mut over = Vec::new();
    for s in sites {
        let quota: Option<i64> = c
            .query_row("SELECT quota FROM sites WHERE name = ?1", [s], |r| r.get(0))
            .optional()?
            .flatten();
        let Some(quota) = quota.map(u64_of) else {
            continue;
        };
        let mut blobs = BTreeSet::new();
        let total: u64 = desired_with_push(c, s, true)?
            .into_iter()
            .filter(|(_, m)| blobs.insert(m.blob))
            .map(|(_, m)| m.len)
            .sum();
        if total > quota {
            over.push(format!(
                "{s} would hold {total} bytes, its quota is {quota}"
            ));
        }
    }
    if over.is_empty() {
        return Ok(());
    }
    Err(Error::Conflict(format!(
        "the push exceeds site disk quotas: {} (raise the quota with `ctl site set NAME --quota`, or push less)",
        over.join("; ")
    )))
}

/// The site's desired artifacts (the newest live push of each path), by path, each with the
/// push that supplies it. With `planned`, also the pushes that have not reached the site yet
/// (waiting for their wave or turn): what the site will hold.
pub(crate) fn desired_with_push(
    c: &Connection,
    site: &str,
    planned: bool,
) -> Result<Vec<(i64, ArtifactManifest)>> {
    let mut st = c.prepare_cached(
        "SELECT pa.path, pa.blob, pa.len, pa.sha256, pa.modified, pa.push FROM push_artifacts pa
         JOIN push_sites ps ON ps.push = pa.push
         WHERE ps.site = ?1 AND pa.removed = 0 AND ps.state <> 'cancelled'
           AND ps.site_deleted IS NULL AND (?2 OR ps.released IS NOT NULL)
         ORDER BY pa.push DESC",
    )?;
    let rows: Vec<(String, super::artifacts::ManifestRow, i64)> = st
        .query_map(params![site, planned], |r| {
            Ok((
                r.get(0)?,
                (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
                r.get(5)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut out: BTreeMap<String, (i64, ArtifactManifest)> = BTreeMap::new();
    for (path, (blob, len, sha, modified), push) in rows {
        if out.contains_key(&path) {
            continue;
        }
        let m = ArtifactManifest {
            path: CatalogPath::parse(&path).map_err(|e| Error::record("push artifact path", e))?,
            blob: id32(&blob, "push artifact blob", BlobId::from_bytes)?,
            len: u64_of(len),
            sha256: id32(&sha, "push artifact sha256", Sha256Digest::from_bytes)?,
            modified: u64_of(modified),
        };
        out.insert(path, (push, m));
    }
    Ok(out.into_values().collect())
}

/// Retire the push artifacts no site wants any more: a row of push P at path X is retired
/// (`removed = 1`) once, at every site of P, a newer push carrying X is complete (and at once
/// when P has no live site left: cancelled or deleted). Until then the older version stays,
/// so a cancelled newer push can fall back to it. Limited to the paths of push `of` when given, else every row. Returns the
/// retired rows' blobs (distinct), for the caller to collect: the desired states are unchanged,
/// as they already named the newest push of each path.
pub(crate) fn retire_shadowed(c: &Connection, of: Option<i64>) -> Result<Vec<BlobId>> {
    let mut st = c.prepare_cached(
        "UPDATE push_artifacts AS o SET removed = 1
         WHERE o.removed = 0
           AND (?1 IS NULL OR o.path IN (SELECT path FROM push_artifacts WHERE push = ?1))
           AND NOT EXISTS (
             SELECT 1 FROM push_sites ps WHERE ps.push = o.push
               AND ps.state <> 'cancelled' AND ps.site_deleted IS NULL
               AND NOT EXISTS (
                 SELECT 1 FROM push_site_artifacts n JOIN push_sites ns
                   ON ns.push = n.push AND ns.site = n.site
                 WHERE n.path = o.path AND n.push > o.push AND n.state = 'complete'
                   AND n.site = ps.site AND ns.state <> 'cancelled'
                   AND ns.site_deleted IS NULL))
         RETURNING blob",
    )?;
    let blobs: BTreeSet<Vec<u8>> = st
        .query_map([of], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    blobs
        .iter()
        .map(|b| id32(b, "push artifact blob", BlobId::from_bytes))
        .collect()
}

/// Whether `blob` was pushed to `site` (by a push whose artifact was not deleted since).
pub(crate) fn site_has_blob(c: &Connection, site: &str, blob: &BlobId) -> Result<bool> {
    Ok(c.prepare_cached(
        "SELECT 1 FROM push_artifacts pa JOIN push_sites ps ON ps.push = pa.push
             WHERE ps.site = ?1 AND pa.blob = ?2 AND pa.removed = 0 AND ps.released IS NOT NULL
               AND ps.state <> 'cancelled' AND ps.site_deleted IS NULL LIMIT 1",
    )?
    .exists(params![site, blob.as_bytes().to_vec()])?)
}
