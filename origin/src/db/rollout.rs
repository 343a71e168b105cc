//! Which of a push's sites it has reached, by its rollout policy (see [`crate::rollout`]):
//! releasing the next wave or the next sites of a rolling push, halting on the error
//! threshold, approvals, and the rollout as the API shows it.
//!
//! [`advance`] runs in the transaction of whatever may move a rollout (a push created, a
//! site's report changing its state, an approval, a resume), so a rollout never waits for a
//! timer and two reports cannot release one slot twice.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::rollout::Rollout;
use crate::util::{now, rfc3339};

/// A push's rollout as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RolloutInfo {
    /// `waves` or `rolling`.
    pub mode: &'static str,
    /// The policy as given (waves, rolling, success, approval, max_failures).
    #[schema(value_type = crate::rollout::Rollout)]
    pub policy: serde_json::Value,
    /// Waves: the highest wave started (0 before the first) and how many there are.
    pub wave: Option<u32>,
    /// Waves: their number.
    pub waves: Option<u32>,
    /// Sites the push has reached.
    pub released: u32,
    /// Sites it has not reached yet (waiting for their wave or turn).
    pub waiting: u32,
    /// Sites reached and failed.
    pub failed: u32,
    /// Failures the error threshold allows (None: no threshold), beyond those approved.
    pub failures_allowed: Option<u32>,
    /// Failures an approval accepted.
    pub failures_accepted: u32,
    /// When the error threshold halted it, RFC 3339.
    pub halted: Option<String>,
    /// Why it halted.
    pub halt_reason: Option<String>,
    /// The next wave waits for `POST /pushes/{id}/approve`.
    pub waiting_approval: bool,
}

/// One site of a push, as the rollout sees it.
struct Row {
    site: String,
    wave: u32,
    released: bool,
    state: String,
    online: bool,
}

/// A push's rollout columns.
struct Head {
    policy: Rollout,
    halted: Option<i64>,
    halt_reason: Option<String>,
    accepted: u32,
    approved_wave: u32,
    stopped: bool,
}

fn head(c: &Connection, push: i64) -> Result<Option<Head>> {
    type Raw = (
        Option<String>,
        Option<i64>,
        Option<String>,
        i64,
        i64,
        Option<i64>,
        Option<i64>,
    );
    let raw: Option<Raw> = c
        .prepare_cached(
            "SELECT rollout, halted, halt_reason, failures_accepted, approved_wave, cancelled, paused
             FROM pushes WHERE id = ?1",
        )?
        .query_row([push], |r| r.try_into())
        .optional()?;
    let Some((Some(json), halted, halt_reason, accepted, approved_wave, cancelled, paused)) = raw
    else {
        return Ok(None);
    };
    let policy: Rollout =
        serde_json::from_str(&json).map_err(|e| Error::record("pushes.rollout", e))?;
    Ok(Some(Head {
        policy,
        halted,
        halt_reason,
        accepted: u32::try_from(accepted).unwrap_or(u32::MAX),
        approved_wave: u32::try_from(approved_wave).unwrap_or(0),
        stopped: cancelled.is_some() || paused.is_some(),
    }))
}

fn rows(c: &Connection, push: i64) -> Result<Vec<Row>> {
    let mut st = c.prepare_cached(
        "SELECT ps.site, ps.wave, ps.released IS NOT NULL, ps.state,
                EXISTS (SELECT 1 FROM nodes n WHERE n.site = ps.site AND n.online = 1)
         FROM push_sites ps WHERE ps.push = ?1 AND ps.site_deleted IS NULL
           AND ps.state <> 'cancelled' ORDER BY ps.site",
    )?;
    let rows = st
        .query_map([push], |r| {
            Ok(Row {
                site: r.get(0)?,
                wave: r.get::<_, Option<u32>>(1)?.unwrap_or(0),
                released: r.get(2)?,
                state: r.get(3)?,
                online: r.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

fn failed(rows: &[Row]) -> Vec<&str> {
    rows.iter()
        .filter(|r| r.released && r.state == "failed")
        .map(|r| r.site.as_str())
        .collect()
}

/// The sites the next step of the rollout would release now (empty when it must wait).
fn next(h: &Head, rows: &[Row]) -> Vec<String> {
    if let Some(k) = h.policy.rolling {
        let active = rows
            .iter()
            .filter(|r| r.released && !matches!(r.state.as_str(), "complete" | "failed"))
            .count();
        let free = k.of(rows.len()).max(1).saturating_sub(active);
        let mut waiting: Vec<&Row> = rows.iter().filter(|r| !r.released).collect();
        waiting.sort_by_key(|r| !r.online); // stable: name order within each group
        return waiting
            .into_iter()
            .take(free)
            .map(|r| r.site.clone())
            .collect();
    }
    let current = rows
        .iter()
        .filter(|r| r.released)
        .map(|r| r.wave)
        .max()
        .unwrap_or(0);
    let Some(next) = rows.iter().filter(|r| !r.released).map(|r| r.wave).min() else {
        return Vec::new();
    };
    let in_current: Vec<&Row> = rows.iter().filter(|r| r.wave == current).collect();
    let complete = in_current.iter().filter(|r| r.state == "complete").count();
    let ready = current == 0
        || h.approved_wave >= next
        || (!h.policy.approval && complete >= h.policy.success.of(in_current.len()).max(1));
    if !ready {
        return Vec::new();
    }
    rows.iter()
        .filter(|r| !r.released && r.wave == next)
        .map(|r| r.site.clone())
        .collect()
}

/// Move push `push`'s rollout as far as it may go now: halt it when its failures pass the
/// threshold, else release the sites whose wave or turn has come (a released wave that is
/// complete at once releases the next). Bumps the released sites' desired revisions and
/// returns them. A push without a rollout, or cancelled, paused or halted, does not move.
pub(crate) fn advance(c: &Connection, push: i64) -> Result<Vec<String>> {
    let Some(h) = head(c, push)? else {
        return Ok(Vec::new());
    };
    if h.stopped || h.halted.is_some() {
        return Ok(Vec::new());
    }
    let mut released = Vec::new();
    loop {
        let rows = rows(c, push)?;
        if let Some(max) = h.policy.max_failures {
            let failed = failed(&rows);
            let allowed = max.of(rows.len());
            if failed.len().saturating_sub(h.accepted as usize) > allowed {
                let reason = format!(
                    "{} sites failed, more than the {allowed} allowed (max_failures {max}{}): {}",
                    failed.len(),
                    if h.accepted > 0 {
                        format!(", beyond {} accepted", h.accepted)
                    } else {
                        String::new()
                    },
                    failed.join(", ")
                );
                tracing::warn!(push, %reason, "rollout halted");
                c.prepare_cached("UPDATE pushes SET halted = ?2, halt_reason = ?3 WHERE id = ?1")?
                    .execute(params![push, now(), reason])?;
                break;
            }
        }
        let sites = next(&h, &rows);
        if sites.is_empty() {
            break;
        }
        for s in &sites {
            super::pushes::release(c, push, s)?;
        }
        tracing::info!(push, sites = sites.join(","), "rollout released sites");
        released.extend(sites);
    }
    super::sites::bump_desired(c, &released)?;
    Ok(released)
}

/// Approve push `push`: a halted rollout accepts the failures seen so far and goes on (in
/// waves, with its next wave); a rollout in waves releases its next wave (whether or not the
/// current one reached its threshold). Returns the sites released; `None` if there is no such push.
///
/// # Errors
/// [`Error::Conflict`] when there is nothing to approve (no rollout, finished, cancelled,
/// paused, or rolling and not halted).
pub(crate) fn approve(c: &Connection, push: i64) -> Result<Option<Vec<String>>> {
    let exists: Option<Option<String>> = c
        .query_row("SELECT rollout FROM pushes WHERE id = ?1", [push], |r| {
            r.get(0)
        })
        .optional()?;
    let Some(exists) = exists else {
        return Ok(None);
    };
    let nothing = |why: &str| {
        Err(Error::Conflict(format!(
            "push {push} has nothing to approve: {why}"
        )))
    };
    if exists.is_none() {
        return nothing("it has no rollout (it went to every site at once)");
    }
    let Some(h) = head(c, push)? else {
        return Ok(None);
    };
    if h.stopped {
        return nothing("it is cancelled or paused (resume it first)");
    }
    let rows = rows(c, push)?;
    let waiting_wave = rows.iter().filter(|r| !r.released).map(|r| r.wave).min();
    if h.halted.is_some() {
        let failed = u32::try_from(failed(&rows).len()).unwrap_or(u32::MAX);
        c.execute(
            "UPDATE pushes SET halted = NULL, halt_reason = NULL, failures_accepted = ?2 WHERE id = ?1",
            params![push, failed],
        )?;
        tracing::info!(push, accepted = failed, "halted rollout approved");
        if let Some(w) = waiting_wave {
            // Going on means the next wave too, whether or not the current one succeeded.
            c.execute(
                "UPDATE pushes SET approved_wave = MAX(approved_wave, ?2) WHERE id = ?1",
                params![push, w],
            )?;
        }
    } else if h.policy.rolling.is_some() {
        return nothing("a rolling push moves by itself; only a halted one needs approval");
    } else if let Some(w) = waiting_wave {
        c.execute(
            "UPDATE pushes SET approved_wave = MAX(approved_wave, ?2) WHERE id = ?1",
            params![push, w],
        )?;
        tracing::info!(push, wave = w, "wave approved");
    } else {
        return nothing("every wave has started");
    }
    advance(c, push).map(Some)
}

/// The rollout of push `push` as the API shows it; None without a rollout.
pub(crate) fn info(c: &Connection, push: i64) -> Result<Option<RolloutInfo>> {
    let Some(h) = head(c, push)? else {
        return Ok(None);
    };
    let rows = rows(c, push)?;
    let count = |f: &dyn Fn(&Row) -> bool| {
        u32::try_from(rows.iter().filter(|r| f(r)).count()).unwrap_or(u32::MAX)
    };
    let waves =
        (h.policy.rolling.is_none()).then(|| rows.iter().map(|r| r.wave).max().unwrap_or(0));
    let wave = waves.map(|_| {
        rows.iter()
            .filter(|r| r.released)
            .map(|r| r.wave)
            .max()
            .unwrap_or(0)
    });
    let waiting = count(&|r| !r.released);
    let waiting_approval = h.policy.approval
        && !h.stopped
        && h.halted.is_none()
        && waiting > 0
        && next(&h, &rows).is_empty()
        && {
            // The current wave is done (every site complete or failed) or met its threshold.
            let current = wave.unwrap_or(0);
            let in_current: Vec<&Row> = rows.iter().filter(|r| r.wave == current).collect();
            let complete = in_current.iter().filter(|r| r.state == "complete").count();
            in_current
                .iter()
                .all(|r| matches!(r.state.as_str(), "complete" | "failed"))
                || complete >= h.policy.success.of(in_current.len()).max(1)
        };
    Ok(Some(RolloutInfo {
        mode: h.policy.mode(),
        policy: serde_json::to_value(&h.policy).map_err(|e| Error::record("pushes.rollout", e))?,
        wave,
        waves,
        released: count(&|r| r.released),
        waiting,
        failed: count(&|r| r.released && r.state == "failed"),
        failures_allowed: h
            .policy
            .max_failures
            .map(|m| u32::try_from(m.of(rows.len())).unwrap_or(u32::MAX)),
        failures_accepted: h.accepted,
        halted: h.halted.map(rfc3339),
        halt_reason: h.halt_reason,
        waiting_approval,
    }))
}

/// Retry push `push` at its failed sites now: their desired revisions are bumped, and an edge
/// given a new revision retries its failed artifacts at once (instead of at its next backoff
/// time). Returns those sites; `None` if there is no such push.
///
/// # Errors
/// [`Error::Conflict`] when no site of the push has failed.
pub(crate) fn retry(c: &Connection, push: i64) -> Result<Option<Vec<String>>> {
    if !c
        .prepare_cached("SELECT 1 FROM pushes WHERE id = ?1")?
        .exists([push])?
    {
        return Ok(None);
    }
    let sites: Vec<String> = c
        .prepare_cached(
            "SELECT site FROM push_sites WHERE push = ?1 AND state = 'failed'
               AND released IS NOT NULL AND site_deleted IS NULL ORDER BY site",
        )?
        .query_map([push], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if sites.is_empty() {
        return Err(Error::Conflict(format!(
            "push {push} has no failed site to retry"
        )));
    }
    super::sites::bump_desired(c, &sites)?;
    tracing::info!(push, sites = sites.join(","), "retrying failed sites");
    Ok(Some(sites))
}
