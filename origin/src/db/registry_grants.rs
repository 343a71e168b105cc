//! Registry grants: which users may pull from, or push to, which repositories of the origin's
//! registry (API tokens may do everything). Patterns are `*`/`?` globs over repository names.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::util::{now, rfc3339};

/// A registry grant as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RegistryGrantInfo {
    /// Id.
    pub id: i64,
    /// The user.
    pub user: String,
    /// Repository pattern (`docker.io/library/*`).
    pub repository: String,
    /// May push (and delete), not only pull.
    pub push: bool,
    /// Creation time, RFC 3339.
    pub created: String,
}

/// A pattern is a repository name in which `*` and `?` may stand for characters.
pub(crate) fn check_pattern(p: &str) -> Result<()> {
    let probe = p.replace(['*', '?'], "x");
    sitecast_protocol::oci::RepoName::parse(&probe)
        .map(|_| ())
        .map_err(|e| Error::BadRequest(format!("repository pattern {p:?}: {e}")))
}

/// Create a grant; the user must exist.
pub(crate) fn create(
    c: &Connection,
    user: &str,
    pattern: &str,
    push: bool,
) -> Result<RegistryGrantInfo> {
    check_pattern(pattern)?;
    if !c
        .prepare("SELECT 1 FROM users WHERE name = ?1")?
        .exists([user])?
    {
        return Err(Error::NotFound(format!("user {user:?} not found")));
    }
    c.execute(
        "INSERT INTO registry_grants (user, pattern, push, created) VALUES (?1, ?2, ?3, ?4)",
        params![user, pattern, i64::from(push), now()],
    )?;
    let id = c.last_insert_rowid();
    list(c)?
        .into_iter()
        .find(|g| g.id == id)
        .ok_or_else(|| Error::NotFound(format!("registry grant {id} not found")))
}

/// Every registry grant, by id.
pub(crate) fn list(c: &Connection) -> Result<Vec<RegistryGrantInfo>> {
    let mut st =
        c.prepare("SELECT id, user, pattern, push, created FROM registry_grants ORDER BY id")?;
    let rows = st
        .query_map([], |r| {
            Ok(RegistryGrantInfo {
                id: r.get(0)?,
                user: r.get(1)?,
                repository: r.get(2)?,
                push: r.get(3)?,
                created: rfc3339(r.get(4)?),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// Delete a grant; false if there was none.
pub(crate) fn delete(c: &Connection, id: i64) -> Result<bool> {
    Ok(c.execute("DELETE FROM registry_grants WHERE id = ?1", [id])? > 0)
}

/// A user's password hash (if any) and their (pattern, push) grants.
pub(crate) type UserAccess = (Option<String>, Vec<(String, bool)>);

/// A user's password hash and grants; `None` if the user does not exist.
pub(crate) fn user_access(c: &Connection, user: &str) -> Result<Option<UserAccess>> {
    let hash: Option<Option<String>> = c
        .query_row(
            "SELECT password_hash FROM users WHERE name = ?1",
            [user],
            |r| r.get(0),
        )
        .optional()?;
    let Some(hash) = hash else { return Ok(None) };
    let grants = c
        .prepare_cached("SELECT pattern, push FROM registry_grants WHERE user = ?1")?
        .query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some((hash, grants)))
}
