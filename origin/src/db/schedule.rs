//! The stored side of scheduling: sites' time zones and windows, pushes' start times and
//! windows, and which of a site's desired blobs are held (not to be transferred now).

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, Connection, OptionalExtension};
use sitecast_protocol::BlobId;

use crate::error::{Error, Result};
use crate::schedule::{self, Held, Window};

/// A JSON array of window texts, as stored.
pub(crate) fn windows_json(windows: &[String]) -> String {
    serde_json::to_string(windows).expect("a list of strings serializes")
}

/// The stored window texts of `what` (a column name, for the error).
pub(crate) fn windows_from_json(what: &str, s: &str) -> Result<Vec<String>> {
    serde_json::from_str(s).map_err(|e| Error::record(what, e))
}

fn parsed(what: &str, s: &str) -> Result<Vec<Window>> {
    schedule::parse_all(&windows_from_json(what, s)?).map_err(|e| Error::record(what, e))
}

/// Set a site's time zone and/or windows (already validated); false if there is no such site.
pub(crate) fn set_site(
    c: &Connection,
    site: &str,
    time_zone: Option<&str>,
    windows: Option<&[String]>,
) -> Result<bool> {
    let n = c.execute(
        "UPDATE sites SET time_zone = coalesce(?2, time_zone), windows = coalesce(?3, windows)
         WHERE name = ?1",
        params![site, time_zone, windows.map(windows_json)],
    )?;
    Ok(n == 1)
}

/// Set (`Some(Some(bytes))`) or remove (`Some(None)`) a site's disk quota.
pub(crate) fn set_quota(c: &Connection, site: &str, quota: Option<Option<u64>>) -> Result<()> {
    if let Some(q) = quota {
        c.execute(
            "UPDATE sites SET quota = ?2 WHERE name = ?1",
            params![site, q.map(super::i64_of)],
        )?;
    }
    Ok(())
}

/// A push's start time and windows as the API shows them.
pub(crate) fn push_schedule(
    c: &Connection,
    push: i64,
) -> Result<Option<(Option<i64>, Vec<String>)>> {
    let r: Option<(Option<i64>, String)> = c
        .query_row(
            "SELECT start_at, windows FROM pushes WHERE id = ?1",
            [push],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    r.map(|(at, w)| Ok((at, windows_from_json("pushes.windows", &w)?)))
        .transpose()
}

/// A site's time zone and windows, parsed; None if there is no such site.
fn site(c: &Connection, site: &str) -> Result<Option<(jiff::tz::TimeZone, Vec<Window>)>> {
    let Some((tz, windows)) = c
        .query_row(
            "SELECT time_zone, windows FROM sites WHERE name = ?1",
            [site],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
        )
        .optional()?
    else {
        return Ok(None);
    };
    let tz = schedule::time_zone(&tz).map_err(|e| Error::record("sites.time_zone", e))?;
    Ok(Some((tz, parsed("sites.windows", &windows)?)))
}

/// Pause (`true`) or resume a push; returns the sites where it is unfinished (their edges must
/// be told), None if there is no such push.
pub(crate) fn set_paused(c: &Connection, push: i64, paused: bool) -> Result<Option<Vec<String>>> {
    let n = c.execute(
        "UPDATE pushes SET paused = CASE WHEN ?2 THEN coalesce(paused, ?3) END WHERE id = ?1",
        params![push, paused, crate::util::now()],
    )?;
    if n == 0 {
        return Ok(None);
    }
    let mut st = c.prepare_cached(
        "SELECT site FROM push_sites WHERE push = ?1
           AND state NOT IN ('complete', 'cancelled') AND site_deleted IS NULL",
    )?;
    let sites = st
        .query_map([push], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    if !paused {
        // A rollout does not move while paused: what it would have released goes now.
        super::rollout::advance(c, push)?;
    }
    Ok(Some(sites))
}

/// What of a site's desired state may not be transferred now.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Gates {
    /// The site's unfinished pushes that may not transfer now, and why.
    pub(crate) pushes: BTreeMap<i64, Held>,
    /// Desired blobs every supplying push of which is held.
    pub(crate) blobs: BTreeSet<BlobId>,
    /// When this may next change by the clock alone (unix seconds).
    pub(crate) next: Option<i64>,
}

/// The gates of `site` at `now`; None if there is no such site.
pub(crate) fn gates(c: &Connection, site: &str, now: i64) -> Result<Option<Gates>> {
    let Some((tz, site_windows)) = self::site(c, site)? else {
        return Ok(None);
    };
    let mut st = c.prepare_cached(
        "SELECT p.id, p.start_at, p.windows, p.priority, ps.state, p.paused FROM pushes p
         JOIN push_sites ps ON ps.push = p.id
         WHERE ps.site = ?1 AND ps.state NOT IN ('cancelled', 'complete')
           AND ps.site_deleted IS NULL AND ps.released IS NOT NULL",
    )?;
    type Row = (i64, Option<i64>, String, i64, String, Option<i64>);
    let rows: Vec<Row> = st
        .query_map([site], |r| r.try_into())?
        .collect::<rusqlite::Result<_>>()?;
    let mut g = Gates::default();
    // The highest priority among the pushes that may transfer now and have not failed.
    let mut top: Option<i64> = None;
    for (push, start_at, windows, priority, state, paused) in &rows {
        let windows = parsed("pushes.windows", windows)?;
        let (held, next) = schedule::gate(now, *start_at, &windows, &site_windows, &tz);
        let held = if paused.is_some() {
            Some(Held::Paused)
        } else {
            held
        };
        match held {
            Some(h) => {
                g.pushes.insert(*push, h);
            }
            None if state != "failed" => top = Some(top.map_or(*priority, |t| t.max(*priority))),
            None => {}
        }
        if let Some(n) = next {
            g.next = Some(g.next.map_or(n, |m| m.min(n)));
        }
    }
    if let Some(top) = top {
        for (push, _, _, priority, _, _) in &rows {
            if *priority < top {
                g.pushes.entry(*push).or_insert(Held::WaitingPriority);
            }
        }
    }
    if g.pushes.is_empty() {
        return Ok(Some(g));
    }
    let mut free = BTreeSet::new();
    for (push, m) in super::pushes::desired_with_push(c, site, false)? {
        if g.pushes.contains_key(&push) {
            g.blobs.insert(m.blob);
        } else {
            free.insert(m.blob);
        }
    }
    g.blobs.retain(|b| !free.contains(b));
    Ok(Some(g))
}
