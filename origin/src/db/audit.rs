//! The audit log: one row per mutating REST call, newest last, paged newest first.

use rusqlite::{params, Connection};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Result;
use crate::util::rfc3339;

/// A call to record.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewEntry {
    /// Unix seconds.
    pub(crate) at: i64,
    pub(crate) token: Option<String>,
    pub(crate) role: Option<&'static str>,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) status: u16,
    pub(crate) remote: Option<String>,
    pub(crate) user_agent: Option<String>,
}

/// An entry as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Increasing id (the paging cursor).
    pub id: i64,
    /// When, RFC 3339.
    pub at: String,
    /// The token's name; null when none or an invalid one was presented.
    pub token: Option<String>,
    /// The token's role then.
    pub role: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The answer's HTTP status.
    pub status: u16,
    /// The client's address.
    pub remote: Option<String>,
    /// The client's User-Agent.
    pub user_agent: Option<String>,
}

/// Append one entry.
pub(crate) fn insert(c: &Connection, e: &NewEntry) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO audit (at, token, role, method, path, status, remote, user_agent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        e.at,
        e.token,
        e.role,
        e.method,
        e.path,
        e.status,
        e.remote,
        e.user_agent
    ])?;
    Ok(())
}

/// Up to `limit` entries older than `before` (an id; `None` = from the newest), newest first,
/// only of `token` when given.
pub(crate) fn page(
    c: &Connection,
    before: Option<i64>,
    limit: u32,
    token: Option<&str>,
) -> Result<Vec<AuditEntry>> {
    let mut st = c.prepare_cached(
        "SELECT id, at, token, role, method, path, status, remote, user_agent FROM audit
         WHERE (?1 IS NULL OR id < ?1) AND (?2 IS NULL OR token = ?2)
         ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = st.query_map(params![before, token, limit], |r| {
        Ok(AuditEntry {
            id: r.get(0)?,
            at: rfc3339(r.get(1)?),
            token: r.get(2)?,
            role: r.get(3)?,
            method: r.get(4)?,
            path: r.get(5)?,
            status: r.get(6)?,
            remote: r.get(7)?,
            user_agent: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
