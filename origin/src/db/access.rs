//! Users, grants, API tokens, and the site configuration edges enforce.

use rusqlite::{params, Connection, OptionalExtension};
use sitecast_protocol::{CatalogPath, Permissions, Principal, SiteConfig, SiteGrant, SiteUser};

use super::{labels_from_json, labels_json, labels_match, GrantInfo, Labels, UserInfo};
use crate::error::{Error, Result};
use crate::util::{now, rfc3339};

/// Create a user (password already hashed). Conflict if the name exists.
pub(crate) fn create_user(
    c: &Connection,
    name: &str,
    password_hash: Option<&str>,
    ssh_keys: &[String],
) -> Result<UserInfo> {
    let keys = serde_json::to_string(ssh_keys).map_err(|e| Error::BadRequest(e.to_string()))?;
    let n = c.execute(
        "INSERT OR IGNORE INTO users (name, password_hash, ssh_keys, created) VALUES (?1, ?2, ?3, ?4)",
        params![name, password_hash, keys, now()],
    )?;
    if n == 0 {
        return Err(Error::Conflict(format!("user {name:?} already exists")));
    }
    super::sites::bump_config_all(c)?;
    list_users(c)?
        .into_iter()
        .find(|u| u.name == name)
        .ok_or_else(|| Error::NotFound(format!("user {name:?} not found")))
}

/// (name, password hash, ssh keys, created).
type UserRow = (String, Option<String>, Vec<String>, i64);

fn user_rows(c: &Connection) -> Result<Vec<UserRow>> {
    let mut st =
        c.prepare("SELECT name, password_hash, ssh_keys, created FROM users ORDER BY name")?;
    let rows: Vec<(String, Option<String>, String, i64)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    rows.into_iter()
        .map(|(n, h, k, t)| {
            let keys: Vec<String> =
                serde_json::from_str(&k).map_err(|e| Error::record("ssh_keys", e))?;
            Ok((n, h, keys, t))
        })
        .collect()
}

/// Every user, by name.
pub(crate) fn list_users(c: &Connection) -> Result<Vec<UserInfo>> {
    Ok(user_rows(c)?
        .into_iter()
        .map(|(name, hash, ssh_keys, created)| UserInfo {
            name,
            has_password: hash.is_some(),
            ssh_keys,
            created: rfc3339(created),
        })
        .collect())
}

/// Delete a user and their grants. False if unknown.
pub(crate) fn delete_user(c: &Connection, name: &str) -> Result<bool> {
    let n = c.execute("DELETE FROM users WHERE name = ?1", [name])?;
    if n > 0 {
        super::sites::bump_config_all(c)?;
    }
    Ok(n > 0)
}

/// Replace a user's SSH keys. False if the user is unknown.
pub(crate) fn set_ssh_keys(c: &Connection, name: &str, keys: &[String]) -> Result<bool> {
    let json = serde_json::to_string(keys).map_err(|e| Error::BadRequest(e.to_string()))?;
    let n = c.execute(
        "UPDATE users SET ssh_keys = ?2 WHERE name = ?1",
        params![name, json],
    )?;
    if n > 0 {
        super::sites::bump_config_all(c)?;
    }
    Ok(n > 0)
}

/// Change a user's password hash (`Some(None)` removes the password) and/or SSH keys; grants
/// stay. `None` if the user is unknown; `BadRequest` if it would be left with no way to log in.
pub(crate) fn update_user(
    c: &mut Connection,
    name: &str,
    password_hash: Option<Option<&str>>,
    ssh_keys: Option<&[String]>,
) -> Result<Option<UserInfo>> {
    let tx = c.transaction()?;
    let Some((_, hash, keys, _)) = user_rows(&tx)?.into_iter().find(|u| u.0 == name) else {
        return Ok(None);
    };
    let hash = password_hash.map_or(hash, |h| h.map(str::to_owned));
    let keys = ssh_keys.map_or(keys, <[String]>::to_vec);
    if hash.is_none() && keys.is_empty() {
        return Err(Error::BadRequest(format!(
            "user {name:?} would have neither a password nor an ssh key"
        )));
    }
    let json = serde_json::to_string(&keys).map_err(|e| Error::BadRequest(e.to_string()))?;
    tx.execute(
        "UPDATE users SET password_hash = ?2, ssh_keys = ?3 WHERE name = ?1",
        params![name, hash, json],
    )?;
    super::sites::bump_config_all(&tx)?;
    let user = user(&tx, name)?;
    tx.commit()?;
    Ok(user)
}

/// One user, if known.
pub(crate) fn user(c: &Connection, name: &str) -> Result<Option<UserInfo>> {
    Ok(list_users(c)?.into_iter().find(|u| u.name == name))
}

/// A grant to create.
#[derive(Debug, Clone)]
pub(crate) struct NewGrant {
    pub(crate) user: Option<String>,
    pub(crate) prefix: CatalogPath,
    pub(crate) site: Option<String>,
    pub(crate) labels: Option<Labels>,
    pub(crate) read: bool,
    pub(crate) list: bool,
}

/// Create a grant; the user and the site must exist.
pub(crate) fn create_grant(c: &Connection, g: &NewGrant) -> Result<GrantInfo> {
    if let Some(u) = &g.user {
        if !c
            .prepare("SELECT 1 FROM users WHERE name = ?1")?
            .exists([u])?
        {
            return Err(Error::NotFound(format!("user {u:?} not found")));
        }
    }
    if let Some(s) = &g.site {
        if !c
            .prepare("SELECT 1 FROM sites WHERE name = ?1")?
            .exists([s])?
        {
            return Err(Error::NotFound(format!("site {s:?} not found")));
        }
    }
    c.execute(
        "INSERT INTO grants (user, prefix, site, labels, read, list, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            g.user,
            g.prefix.as_str(),
            g.site,
            g.labels.as_ref().map(labels_json),
            i64::from(g.read),
            i64::from(g.list),
            now()
        ],
    )?;
    let id = c.last_insert_rowid();
    super::sites::bump_config_all(c)?;
    list_grants(c)?
        .into_iter()
        .find(|x| x.id == id)
        .ok_or_else(|| Error::NotFound(format!("grant {id} not found")))
}

/// Every grant, by id.
pub(crate) fn list_grants(c: &Connection) -> Result<Vec<GrantInfo>> {
    let mut st = c.prepare(
        "SELECT id, user, prefix, site, labels, read, list, created FROM grants ORDER BY id",
    )?;
    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        i64,
        Option<String>,
        String,
        Option<String>,
        Option<String>,
        i64,
        i64,
        i64,
    )> = st
        .query_map([], |r| r.try_into())?
        .collect::<rusqlite::Result<_>>()?;
    rows.into_iter()
        .map(|(id, user, path, site, labels, read, list, created)| {
            Ok(GrantInfo {
                id,
                user,
                path,
                site,
                labels: labels.as_deref().map(labels_from_json).transpose()?,
                read: read != 0,
                list: list != 0,
                created: rfc3339(created),
            })
        })
        .collect()
}

/// The grants to `user` (`"anonymous"`: the anonymous ones), applying at `site`, covering
/// `path`: each filter only when given.
pub(crate) fn filter_grants(
    c: &Connection,
    user: Option<&str>,
    site: Option<&str>,
    path: Option<&CatalogPath>,
) -> Result<Vec<GrantInfo>> {
    let site_labels = match site {
        None => None,
        Some(s) => {
            let l: Option<String> = c
                .query_row("SELECT labels FROM sites WHERE name = ?1", [s], |r| {
                    r.get(0)
                })
                .optional()?;
            let l = l.ok_or_else(|| Error::NotFound(format!("site {s:?} not found")))?;
            Some((s, labels_from_json(&l)?))
        }
    };
    let mut out = Vec::new();
    for g in list_grants(c)? {
        if let Some(u) = user {
            let matches = match &g.user {
                Some(n) => n == u,
                None => u == "anonymous",
            };
            if !matches {
                continue;
            }
        }
        if let Some((s, labels)) = &site_labels {
            if !applies_at(&g, s, labels) {
                continue;
            }
        }
        if let Some(p) = path {
            let prefix =
                CatalogPath::parse(&g.path).map_err(|e| Error::record("grant prefix", e))?;
            if !p.is_under(&prefix) {
                continue;
            }
        }
        out.push(g);
    }
    Ok(out)
}

/// Whether grant `g` applies at `site` (named, by labels, or everywhere).
fn applies_at(g: &GrantInfo, site: &str, labels: &Labels) -> bool {
    match (&g.site, &g.labels) {
        (Some(s), _) => s == site,
        (None, Some(sel)) => labels_match(labels, sel),
        (None, None) => true,
    }
}

/// Delete a grant. False if unknown.
pub(crate) fn delete_grant(c: &Connection, id: i64) -> Result<bool> {
    let n = c.execute("DELETE FROM grants WHERE id = ?1", [id])?;
    if n > 0 {
        super::sites::bump_config_all(c)?;
    }
    Ok(n > 0)
}

/// The configuration an edge of `site` enforces: every user (with password hash and keys) and
/// the grants that apply at the site (named site, matching labels, or all sites).
pub(crate) fn site_config(c: &Connection, site: &str) -> Result<Option<SiteConfig>> {
    let Some((_, config_revision)) = super::sites::revisions(c, site)? else {
        return Ok(None);
    };
    let labels: Labels = {
        let l: String = c.query_row("SELECT labels FROM sites WHERE name = ?1", [site], |r| {
            r.get(0)
        })?;
        labels_from_json(&l)?
    };
    let users = user_rows(c)?
        .into_iter()
        .map(|(name, password_hash, ssh_keys, _)| SiteUser {
            name,
            password_hash,
            ssh_keys,
        })
        .collect();
    let mut grants = Vec::new();
    for g in list_grants(c)? {
        if !applies_at(&g, site, &labels) {
            continue;
        }
        let prefix = CatalogPath::parse(&g.path).map_err(|e| Error::record("grant prefix", e))?;
        grants.push(SiteGrant {
            principal: g.user.map_or(Principal::Anonymous, Principal::User),
            prefix,
            permissions: Permissions {
                read: g.read,
                list: g.list,
            },
        });
    }
    Ok(Some(SiteConfig {
        revision: config_revision,
        site: site.to_owned(),
        users,
        grants,
    }))
}
