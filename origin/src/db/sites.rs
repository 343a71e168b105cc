//! Sites, their join tokens, nodes and revisions.

use rusqlite::{params, Connection, OptionalExtension};

use super::{
    i64_of, labels_from_json, labels_json, u64_of, Labels, NodeInfo, NodeStatsInfo, SiteInfo,
};
use crate::error::{Error, Result};
use crate::util::{now, rfc3339};

/// Check a site or node name: 1–63 of `a-z A-Z 0-9 - _ .`, starting with a letter or digit.
pub(crate) fn check_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "invalid {kind} name {name:?}: use 1-63 letters, digits, '-', '_' or '.', starting with a letter or digit"
        )))
    }
}

/// Create a site holding the hash of its first join token.
pub(crate) fn create(
    c: &Connection,
    name: &str,
    labels: &Labels,
    max_rate: Option<u64>,
    https_names: &[String],
    token_hash: &[u8],
    token_expires: i64,
) -> Result<SiteInfo> {
    let n = c.execute(
        "INSERT OR IGNORE INTO sites (name, labels, max_rate, join_token_hash, created, https_names, join_token_expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![name, labels_json(labels), max_rate.map(i64_of), token_hash, now(), names_json(https_names), token_expires],
    )?;
    if n == 0 {
        return Err(Error::Conflict(format!("site {name:?} already exists")));
    }
    get(c, name)?.ok_or_else(|| Error::NotFound(format!("site {name:?} not found")))
}

fn nodes(c: &Connection, site: &str) -> Result<Vec<NodeInfo>> {
    let mut st = c.prepare_cached(
        "SELECT name, online, last_seen, address, software, enrolled, disk_total, disk_free,
                store_bytes, artifacts_held, artifacts_pending, bytes_pending, stats_at
         FROM nodes WHERE site = ?1 ORDER BY name",
    )?;
    let rows = st.query_map([site], |r| {
        let stats = match r.get::<_, Option<i64>>(12)? {
            Some(at) => Some(NodeStatsInfo {
                disk_total: u64_of(r.get(6)?),
                disk_free: u64_of(r.get(7)?),
                store_bytes: u64_of(r.get(8)?),
                artifacts_held: u64_of(r.get(9)?),
                artifacts_pending: u64_of(r.get(10)?),
                bytes_pending: u64_of(r.get(11)?),
                at: rfc3339(at),
            }),
            None => None,
        };
        Ok(NodeInfo {
            stats,
            name: r.get(0)?,
            state: if r.get::<_, i64>(1)? != 0 {
                "online"
            } else {
                "offline"
            },
            last_seen: r.get::<_, Option<i64>>(2)?.map(rfc3339),
            address: r.get(3)?,
            software: r.get(4)?,
            enrolled: rfc3339(r.get(5)?),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

type SiteRow = (
    String,
    String,
    Option<i64>,
    i64,
    String,
    String,
    String,
    Option<i64>,
);

/// The columns `site_row` reads, in order.
const SITE_COLUMNS: &str =
    "name, labels, max_rate, created, https_names, time_zone, windows, quota";

fn site_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SiteRow> {
    r.try_into()
}

fn names_json(names: &[String]) -> String {
    serde_json::to_string(names).expect("a list of strings serializes")
}

fn names_from_json(s: &str) -> Result<Vec<String>> {
    serde_json::from_str(s).map_err(|e| Error::Record {
        what: "sites.https_names".into(),
        reason: e.to_string(),
    })
}

fn info(
    c: &Connection,
    (name, labels, max_rate, created, https, time_zone, windows, quota): SiteRow,
) -> Result<SiteInfo> {
    Ok(SiteInfo {
        nodes: nodes(c, &name)?,
        labels: labels_from_json(&labels)?,
        max_rate: max_rate.map(u64_of),
        created: rfc3339(created),
        https_names: names_from_json(&https)?,
        windows: super::schedule::windows_from_json("sites.windows", &windows)?,
        time_zone,
        quota: quota.map(u64_of),
        name,
    })
}

/// The site's HTTPS names; `None` if there is no such site.
pub(crate) fn https_names(c: &Connection, site: &str) -> Result<Option<Vec<String>>> {
    let r: Option<String> = c
        .query_row(
            "SELECT https_names FROM sites WHERE name = ?1",
            [site],
            |r| r.get(0),
        )
        .optional()?;
    r.as_deref().map(names_from_json).transpose()
}

/// Replace the site's HTTPS names (its edges are sent new certificates); false if no such site.
pub(crate) fn set_https_names(c: &Connection, site: &str, names: &[String]) -> Result<bool> {
    Ok(c.execute(
        "UPDATE sites SET https_names = ?2, config_revision = config_revision + 1 WHERE name = ?1",
        params![site, names_json(names)],
    )? == 1)
}

/// Change a site's labels, bandwidth cap (`Some(None)` removes it) and/or HTTPS names; its
/// config revision moves so its edges get grants by label and certificates again. `None` if
/// there is no such site.
pub(crate) fn update(
    c: &mut Connection,
    site: &str,
    labels: Option<&Labels>,
    max_rate: Option<Option<u64>>,
    https_names: Option<&[String]>,
) -> Result<Option<SiteInfo>> {
    let tx = c.transaction()?;
    if get(&tx, site)?.is_none() {
        return Ok(None);
    }
    if let Some(l) = labels {
        tx.execute(
            "UPDATE sites SET labels = ?2 WHERE name = ?1",
            params![site, labels_json(l)],
        )?;
    }
    if let Some(r) = max_rate {
        tx.execute(
            "UPDATE sites SET max_rate = ?2 WHERE name = ?1",
            params![site, r.map(i64_of)],
        )?;
    }
    if let Some(n) = https_names {
        tx.execute(
            "UPDATE sites SET https_names = ?2 WHERE name = ?1",
            params![site, names_json(n)],
        )?;
    }
    tx.execute(
        "UPDATE sites SET config_revision = config_revision + 1 WHERE name = ?1",
        [site],
    )?;
    let info = get(&tx, site)?;
    tx.commit()?;
    Ok(info)
}

/// One site with its nodes.
pub(crate) fn get(c: &Connection, name: &str) -> Result<Option<SiteInfo>> {
    let r = c
        .query_row(
            &format!("SELECT {SITE_COLUMNS} FROM sites WHERE name = ?1"),
            [name],
            site_row,
        )
        .optional()?;
    r.map(|r| info(c, r)).transpose()
}

/// Every site, by name.
pub(crate) fn list(c: &Connection) -> Result<Vec<SiteInfo>> {
    let mut st = c.prepare(&format!("SELECT {SITE_COLUMNS} FROM sites ORDER BY name"))?;
    let rows: Vec<_> = st
        .query_map([], site_row)?
        .collect::<rusqlite::Result<_>>()?;
    rows.into_iter().map(|r| info(c, r)).collect()
}

/// Every site's name and labels.
pub(crate) fn labels_all(c: &Connection) -> Result<Vec<(String, Labels)>> {
    let mut st = c.prepare("SELECT name, labels FROM sites ORDER BY name")?;
    let rows: Vec<(String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    rows.into_iter()
        .map(|(n, l)| Ok((n, labels_from_json(&l)?)))
        .collect()
}

/// Delete a site: its nodes are revoked; its push history stays readable (rows marked
/// `site_deleted`, unfinished ones `cancelled`) and never applies to a new site of the same
/// name. False if unknown.
pub(crate) fn delete(c: &mut Connection, name: &str) -> Result<bool> {
    let tx = c.transaction()?;
    let t = now();
    tx.execute(
        "UPDATE push_sites SET state = 'cancelled', error = 'site deleted', updated = ?2
         WHERE site = ?1 AND site_deleted IS NULL AND state NOT IN ('complete', 'cancelled')",
        params![name, t],
    )?;
    tx.execute(
        "UPDATE push_sites SET site_deleted = ?2 WHERE site = ?1 AND site_deleted IS NULL",
        params![name, t],
    )?;
    tx.execute(
        "INSERT OR REPLACE INTO revoked_nodes (cert_sha256, site, name, revoked, reason)
         SELECT cert_sha256, site, name, ?2, 'its site was deleted' FROM nodes WHERE site = ?1",
        params![name, t],
    )?;
    let n = tx.execute("DELETE FROM sites WHERE name = ?1", [name])?;
    tx.commit()?;
    Ok(n > 0)
}

/// Replace the site's join token hash and expiry (invalidating any unused token). False if
/// unknown.
pub(crate) fn set_join_token(
    c: &Connection,
    name: &str,
    token_hash: &[u8],
    expires: i64,
) -> Result<bool> {
    Ok(c.execute(
        "UPDATE sites SET join_token_hash = ?2, join_token_expires = ?3 WHERE name = ?1",
        params![name, token_hash, expires],
    )? > 0)
}

/// The site whose unused join token has this hash, with the token's expiry (unix seconds;
/// `None` for tokens from before expiry existed).
pub(crate) fn site_for_token(
    c: &Connection,
    token_hash: &[u8],
) -> Result<Option<(String, Option<i64>)>> {
    Ok(c.query_row(
        "SELECT name, join_token_expires FROM sites WHERE join_token_hash = ?1",
        [token_hash],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?)
}

/// Consume the join token and record the node (replacing a node of the same name, whose old
/// certificate stops working). None if the token is no longer valid.
pub(crate) fn enroll(
    c: &mut Connection,
    token_hash: &[u8],
    node: &str,
    cert_sha256: &[u8],
) -> Result<Option<String>> {
    let tx = c.transaction()?;
    let Some((site, expires)) = site_for_token(&tx, token_hash)? else {
        return Ok(None);
    };
    if expires.is_some_and(|e| now() >= e) {
        return Ok(None);
    }
    tx.execute(
        "UPDATE sites SET join_token_hash = NULL WHERE name = ?1",
        [&site],
    )?;
    tx.execute(
        "DELETE FROM nodes WHERE site = ?1 AND name = ?2",
        [&site, node],
    )?;
    tx.execute(
        "INSERT INTO nodes (site, name, cert_sha256, enrolled) VALUES (?1, ?2, ?3, ?4)",
        params![site, node, cert_sha256, now()],
    )?;
    tx.commit()?;
    Ok(Some(site))
}

/// Revoke one node: its certificate stops working (remembered with `reason`, so the edge is
/// told why), its site and everything else stay. False if there is no such node.
pub(crate) fn revoke_node(
    c: &mut Connection,
    site: &str,
    node: &str,
    reason: &str,
) -> Result<bool> {
    let tx = c.transaction()?;
    let n = tx.execute(
        "INSERT OR REPLACE INTO revoked_nodes (cert_sha256, site, name, revoked, reason)
         SELECT cert_sha256, site, name, ?3, ?4 FROM nodes WHERE site = ?1 AND name = ?2",
        params![site, node, now(), reason],
    )?;
    tx.execute(
        "DELETE FROM nodes WHERE site = ?1 AND name = ?2",
        params![site, node],
    )?;
    tx.commit()?;
    Ok(n > 0)
}

/// Why the certificate with this fingerprint was revoked: "site/node … at time: reason".
pub(crate) fn revocation(c: &Connection, cert_sha256: &[u8]) -> Result<Option<String>> {
    let r: Option<(String, String, i64, String)> = c
        .query_row(
            "SELECT site, name, revoked, reason FROM revoked_nodes WHERE cert_sha256 = ?1",
            [cert_sha256],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    Ok(r.map(|(site, node, at, reason)| {
        format!(
            "node {node} of site {site} was revoked at {}: {reason}",
            rfc3339(at)
        )
    }))
}

/// Record the software version a node's Hello named.
pub(crate) fn node_software(c: &Connection, site: &str, node: &str, software: &str) -> Result<()> {
    c.execute(
        "UPDATE nodes SET software = ?3 WHERE site = ?1 AND name = ?2",
        params![site, node, software],
    )?;
    Ok(())
}

/// The (site, node) holding the certificate with this fingerprint.
pub(crate) fn node_by_cert(c: &Connection, cert_sha256: &[u8]) -> Result<Option<(String, String)>> {
    Ok(c.query_row(
        "SELECT site, name FROM nodes WHERE cert_sha256 = ?1",
        [cert_sha256],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()?)
}

/// Record contact with a node.
pub(crate) fn node_seen(
    c: &Connection,
    site: &str,
    node: &str,
    address: Option<&str>,
    online: bool,
) -> Result<()> {
    c.execute(
        "UPDATE nodes SET last_seen = ?3, address = COALESCE(?4, address), online = ?5 WHERE site = ?1 AND name = ?2",
        params![site, node, now(), address, i64::from(online)],
    )?;
    Ok(())
}

/// Record what a node said of its disk and content.
pub(crate) fn node_stats(
    c: &Connection,
    site: &str,
    node: &str,
    s: &sitecast_protocol::wire::NodeStats,
) -> Result<()> {
    c.execute(
        "UPDATE nodes SET disk_total = ?3, disk_free = ?4, store_bytes = ?5, artifacts_held = ?6,
                artifacts_pending = ?7, bytes_pending = ?8, stats_at = ?9
         WHERE site = ?1 AND name = ?2",
        params![
            site,
            node,
            i64_of(s.disk_total),
            i64_of(s.disk_free),
            i64_of(s.store_bytes),
            s.artifacts_held,
            s.artifacts_pending,
            i64_of(s.bytes_pending),
            now()
        ],
    )?;
    Ok(())
}

/// Mark every node offline (on start: no connection survives a restart).
pub(crate) fn all_offline(c: &Connection) -> Result<()> {
    c.execute("UPDATE nodes SET online = 0", [])?;
    Ok(())
}

/// (desired revision, config revision) of a site.
pub(crate) fn revisions(c: &Connection, site: &str) -> Result<Option<(u64, u64)>> {
    Ok(c.query_row(
        "SELECT desired_revision, config_revision FROM sites WHERE name = ?1",
        [site],
        |r| Ok((u64_of(r.get(0)?), u64_of(r.get(1)?))),
    )
    .optional()?)
}

/// Bump the desired-state revision of these sites.
pub(crate) fn bump_desired(c: &Connection, sites: &[String]) -> Result<()> {
    let mut st = c.prepare_cached(
        "UPDATE sites SET desired_revision = desired_revision + 1 WHERE name = ?1",
    )?;
    for s in sites {
        st.execute([s])?;
    }
    Ok(())
}

/// Bump every site's config revision (users or grants changed).
pub(crate) fn bump_config_all(c: &Connection) -> Result<()> {
    c.execute("UPDATE sites SET config_revision = config_revision + 1", [])?;
    Ok(())
}

/// The rate a site's chunk streams are paced at: the smallest of the site's `max_rate` and the
/// `max_rate` of its unfinished pushes not `held` (the site's gates: a held push's cap does not
/// slow the one that has the link); None = unlimited.
pub(crate) fn effective_rate(
    c: &Connection,
    site: &str,
    held: &std::collections::BTreeMap<i64, crate::schedule::Held>,
) -> Result<Option<u64>> {
    let site_rate: Option<i64> = c
        .query_row("SELECT max_rate FROM sites WHERE name = ?1", [site], |r| {
            r.get(0)
        })
        .optional()?
        .flatten();
    let mut st = c.prepare_cached(
        "SELECT p.id, p.max_rate FROM pushes p JOIN push_sites ps ON ps.push = p.id
         WHERE ps.site = ?1 AND ps.state NOT IN ('complete', 'cancelled')
           AND ps.site_deleted IS NULL AND ps.released IS NOT NULL AND p.max_rate IS NOT NULL",
    )?;
    let rows: Vec<(i64, i64)> = st
        .query_map([site], |r| r.try_into())?
        .collect::<rusqlite::Result<_>>()?;
    let pushes = rows
        .into_iter()
        .filter(|(id, _)| !held.contains_key(id))
        .map(|(_, r)| r);
    Ok(site_rate.into_iter().chain(pushes).min().map(u64_of))
}

/// Add to a site's persistent sent-bytes counters.
pub(crate) fn add_sent(c: &Connection, site: &str, payload: u64, framing: u64) -> Result<()> {
    c.prepare_cached("UPDATE sites SET sent_payload = sent_payload + ?2, sent_framing = sent_framing + ?3 WHERE name = ?1")?
        .execute(params![site, i64_of(payload), i64_of(framing)])?;
    Ok(())
}

/// (site, payload sent, framing sent, nodes online, nodes total).
pub(crate) type SiteMetrics = (String, u64, u64, u64, u64);

/// Per-site metrics.
pub(crate) fn metrics(c: &Connection) -> Result<Vec<SiteMetrics>> {
    let mut st = c.prepare(
        "SELECT s.name, s.sent_payload, s.sent_framing,
                (SELECT COUNT(*) FROM nodes n WHERE n.site = s.name AND n.online = 1),
                (SELECT COUNT(*) FROM nodes n WHERE n.site = s.name)
         FROM sites s ORDER BY s.name",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get(0)?,
            u64_of(r.get(1)?),
            u64_of(r.get(2)?),
            u64_of(r.get(3)?),
            u64_of(r.get(4)?),
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
