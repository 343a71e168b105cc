//! API tokens: stored by the SHA-256 of their secret, each with a unique name, a role and an
//! optional expiry. The secret itself is shown once, when the token is made.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::util::{now, rfc3339};

/// What a token may do (see the REST API docs, "Roles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Artifacts, images, sites and pushes; reads everything but tokens and the audit log.
    Operator,
    /// Reads everything but tokens and the audit log.
    Viewer,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Role; 3] = [Role::Admin, Role::Operator, Role::Viewer];

    /// The name stored and shown.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    /// Parse a role name.
    ///
    /// # Errors
    /// `BadRequest` naming the roles.
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                Error::BadRequest(format!("unknown role {s:?}: use admin, operator or viewer"))
            })
    }
}

/// A token as the API lists it (never its secret or hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TokenInfo {
    /// Unique name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Creation time, RFC 3339.
    pub created: String,
    /// When it stops working, RFC 3339; null = never.
    pub expires: Option<String>,
    /// Last request made with it, RFC 3339 (updated at most once a minute).
    pub last_used: Option<String>,
}

/// The token a request presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    pub(crate) name: String,
    pub(crate) role: Role,
    /// Unix seconds; `None` = never.
    pub(crate) expires: Option<i64>,
}

impl Caller {
    /// Whether it has expired at `now` (unix seconds).
    pub(crate) fn expired(&self, now: i64) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }
}

/// (id or created, name, role, expires, last_used) as stored.
type TokenRow = (i64, String, String, Option<i64>, Option<i64>);

fn role_of(s: &str) -> Result<Role> {
    Role::parse(s).map_err(|_| Error::record("api_tokens.role", s))
}

/// Register a token by its hash. Conflict if the name is taken.
pub(crate) fn add(
    c: &Connection,
    name: &str,
    token_hash: &[u8],
    role: Role,
    expires: Option<i64>,
) -> Result<TokenInfo> {
    let n = c.execute(
        "INSERT OR IGNORE INTO api_tokens (name, token_hash, created, role, expires) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![name, token_hash, now(), role.as_str(), expires],
    )?;
    if n == 0 {
        return Err(Error::Conflict(format!(
            "a token named {name:?} already exists (revoke it first, or pick another name)"
        )));
    }
    list(c)?
        .into_iter()
        .find(|t| t.name == name)
        .ok_or_else(|| Error::NotFound(format!("token {name:?} not found")))
}

/// Make `token_hash` the (only) token named `name`, an admin that never expires (the admin
/// token file, on start).
pub(crate) fn set_named(c: &mut Connection, name: &str, token_hash: &[u8]) -> Result<()> {
    let tx = c.transaction()?;
    tx.execute("DELETE FROM api_tokens WHERE name = ?1", [name])?;
    tx.execute("DELETE FROM api_tokens WHERE token_hash = ?1", [token_hash])?;
    add(&tx, name, token_hash, Role::Admin, None)?;
    tx.commit()?;
    Ok(())
}

/// The token with this hash (expired ones too: the caller says why it refuses). Records the
/// use at most once a minute.
pub(crate) fn by_hash(c: &Connection, token_hash: &[u8]) -> Result<Option<Caller>> {
    let row: Option<TokenRow> = c
        .prepare_cached(
            "SELECT id, name, role, expires, last_used FROM api_tokens WHERE token_hash = ?1",
        )?
        .query_row([token_hash], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    let Some((id, name, role, expires, last_used)) = row else {
        return Ok(None);
    };
    let t = now();
    if last_used.is_none_or(|u| t - u >= 60) {
        c.prepare_cached("UPDATE api_tokens SET last_used = ?2 WHERE id = ?1")?
            .execute(params![id, t])?;
    }
    Ok(Some(Caller {
        name,
        role: role_of(&role)?,
        expires,
    }))
}

/// Every token, by name.
pub(crate) fn list(c: &Connection) -> Result<Vec<TokenInfo>> {
    let mut st = c.prepare_cached(
        "SELECT name, role, created, expires, last_used FROM api_tokens ORDER BY name",
    )?;
    let rows: Vec<TokenRow> = st
        .query_map([], |r| {
            Ok((r.get(2)?, r.get(0)?, r.get(1)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    rows.into_iter()
        .map(|(created, name, role, expires, last_used)| {
            Ok(TokenInfo {
                name,
                role: role_of(&role)?,
                created: rfc3339(created),
                expires: expires.map(rfc3339),
                last_used: last_used.map(rfc3339),
            })
        })
        .collect()
}

/// Revoke (delete) the token named `name`. False if unknown.
pub(crate) fn delete(c: &Connection, name: &str) -> Result<bool> {
    Ok(c.execute("DELETE FROM api_tokens WHERE name = ?1", [name])? > 0)
}
