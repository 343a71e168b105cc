//! The origin catalog: typed functions over one SQLite database (WAL, single writer).
//!
//! All SQL lives in this module's files; handlers call the typed functions through
//! [`Db::call`], which runs them on the blocking pool under the one connection's mutex, so
//! writes are serialised and no handler holds a database lock across an `.await`. Every
//! multi-statement change runs in one transaction: a crash leaves the previous state.
//!
//! The records returned here serialise to exactly the JSON shapes of the REST API
//! (docs/internals.md).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{Error, Result};

pub(crate) mod access;
pub(crate) mod artifacts;
pub(crate) mod audit;
pub(crate) mod channels;
pub(crate) mod follow;
pub(crate) mod images;
pub(crate) mod oci;
pub(crate) mod pushes;
pub(crate) mod registry_grants;
pub(crate) mod rollout;
pub(crate) mod schedule;
pub(crate) mod sites;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_rollout;
pub(crate) mod tokens;
pub(crate) mod verify;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../migrations/origin/0001_init.sql")),
    (2, include_str!("../../../migrations/origin/0002_oci.sql")),
    (
        3,
        include_str!("../../../migrations/origin/0003_push_images.sql"),
    ),
    (
        4,
        include_str!("../../../migrations/origin/0004_registry_grants.sql"),
    ),
    (
        5,
        include_str!("../../../migrations/origin/0005_https_names.sql"),
    ),
    (
        6,
        include_str!("../../../migrations/origin/0006_join_token_expiry.sql"),
    ),
    (
        7,
        include_str!("../../../migrations/origin/0007_tokens_audit.sql"),
    ),
    (
        8,
        include_str!("../../../migrations/origin/0008_push_history.sql"),
    ),
    (
        9,
        include_str!("../../../migrations/origin/0009_node_revocation.sql"),
    ),
    (
        10,
        include_str!("../../../migrations/origin/0010_schedule.sql"),
    ),
    (
        11,
        include_str!("../../../migrations/origin/0011_node_stats.sql"),
    ),
    (
        12,
        include_str!("../../../migrations/origin/0012_rollout.sql"),
    ),
    (
        13,
        include_str!("../../../migrations/origin/0013_follow.sql"),
    ),
    (
        14,
        include_str!("../../../migrations/origin/0014_channels.sql"),
    ),
];

/// Handle on the catalog database; cheap to clone.
#[derive(Clone)]
pub(crate) struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    /// Open (creating, migrating) the database at `path`.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let conn = sitecast_runtime::sqlite::open(path, MIGRATIONS)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Run `f` with the connection on the blocking pool.
    pub(crate) async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.blocking(f)).await?
    }

    /// Run `f` with the connection on this thread (only from blocking contexts and tests).
    pub(crate) fn blocking<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut guard = self
            .conn
            .lock()
            .map_err(|_| Error::Task("database mutex poisoned".into()))?;
        f(&mut guard)
    }
}

/// A site's labels: string keys to string values.
pub(crate) type Labels = std::collections::BTreeMap<String, String>;

/// Labels as the API document shows them (the code uses `Labels`): keys 1–63 of letters,
/// digits, `.`, `_`, `-`, `/`; values at most 63 of letters, digits, `.`, `_`, `-`; both
/// start and end with a letter or digit; a key at most once.
#[derive(ToSchema)]
#[schema(example = json!({"province": "gansu", "tier": "farm"}))]
#[allow(dead_code)]
pub(crate) struct LabelSet(std::collections::BTreeMap<String, String>);

pub(crate) fn labels_json(l: &Labels) -> String {
    serde_json::to_string(l).unwrap_or_else(|_| "{}".into())
}

pub(crate) fn labels_from_json(s: &str) -> Result<Labels> {
    serde_json::from_str(s).map_err(|e| Error::record("labels", e))
}

/// Whether every selector label is present with the same value.
pub(crate) fn labels_match(site: &Labels, selector: &Labels) -> bool {
    selector.iter().all(|(k, v)| site.get(k) == Some(v))
}

pub(crate) fn id32<T>(bytes: &[u8], what: &str, make: impl FnOnce([u8; 32]) -> T) -> Result<T> {
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| Error::record(what, format!("{} bytes, expected 32", bytes.len())))?;
    Ok(make(arr))
}

pub(crate) fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// An artifact as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ArtifactInfo {
    /// Catalog path.
    pub path: String,
    /// Length in bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// BLAKE3 (the blob id), hex.
    pub blake3: String,
    /// Number of chunks.
    pub chunks: u64,
    /// Upload time, RFC 3339.
    pub modified: String,
}

/// A site as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SiteInfo {
    /// Name.
    pub name: String,
    /// Labels.
    #[schema(value_type = LabelSet)]
    pub labels: Labels,
    /// Bandwidth limit in bytes/s, if any.
    pub max_rate: Option<u64>,
    /// Creation time, RFC 3339.
    pub created: String,
    /// Names (DNS or IP) of the HTTPS certificate the origin issues to the site's edges.
    pub https_names: Vec<String>,
    /// IANA time zone its transfer windows are read in.
    pub time_zone: String,
    /// Recurring transfer windows (`mon-fri 01:00 4h`); empty = the link may be used any time.
    pub windows: Vec<String>,
    /// Disk quota in bytes: pushes that would take its content past it are refused.
    pub quota: Option<u64>,
    /// Enrolled nodes.
    pub nodes: Vec<NodeInfo>,
}

/// A node as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// `online` or `offline`.
    #[schema(schema_with = node_state)]
    pub state: &'static str,
    /// Last contact, RFC 3339.
    pub last_seen: Option<String>,
    /// Last address seen.
    pub address: Option<String>,
    /// Software version from its last Hello.
    pub software: Option<String>,
    /// Enrollment time, RFC 3339.
    pub enrolled: String,
    /// What the node last said of its disk and content (None until it first says).
    pub stats: Option<NodeStatsInfo>,
}

/// A node's disk and content, as it last reported them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct NodeStatsInfo {
    /// Size of the file system of its data directory, bytes.
    pub disk_total: u64,
    /// Free on it, bytes.
    pub disk_free: u64,
    /// Bytes of chunks it stores.
    pub store_bytes: u64,
    /// Artifacts it serves.
    pub artifacts_held: u64,
    /// Desired artifacts not yet complete there.
    pub artifacts_pending: u64,
    /// Bytes it still has to fetch for them.
    pub bytes_pending: u64,
    /// When it said so, RFC 3339.
    pub at: String,
}

/// A user as the API shows it (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UserInfo {
    /// Login name.
    pub name: String,
    /// Whether a password is set.
    pub has_password: bool,
    /// OpenSSH public keys.
    pub ssh_keys: Vec<String>,
    /// Creation time, RFC 3339.
    pub created: String,
}

/// A grant as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct GrantInfo {
    /// Id (for delete).
    pub id: i64,
    /// User, or null for anonymous.
    pub user: Option<String>,
    /// Path prefix.
    pub path: String,
    /// One site, if the grant names one.
    pub site: Option<String>,
    /// Label selector, if the grant uses one.
    #[schema(value_type = Option<LabelSet>)]
    pub labels: Option<Labels>,
    /// May read.
    pub read: bool,
    /// May list.
    pub list: bool,
    /// Creation time, RFC 3339.
    pub created: String,
}

/// A push as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PushInfo {
    /// Id.
    pub id: i64,
    /// Creation time, RFC 3339.
    pub created: String,
    /// `in_progress`, `paused`, `halted` (its rollout's error threshold stopped it),
    /// `waiting_approval` (its next wave waits for an approval), `complete`, `failed` or
    /// `cancelled`.
    #[schema(schema_with = push_state)]
    pub state: &'static str,
    /// The artifact paths the push resolved to.
    pub content: Vec<String>,
    /// The images it resolved to: `repo:tag@digest`, or `repo@digest` when pushed by digest.
    /// Their manifests and blobs are counted in the sites' byte figures.
    pub images: Vec<String>,
    /// Bandwidth limit in bytes/s, if any.
    pub max_rate: Option<u64>,
    /// When it was cancelled, RFC 3339.
    pub cancelled: Option<String>,
    /// When it may start transferring, RFC 3339 (None: at once).
    pub start_at: Option<String>,
    /// Its own transfer windows, read in each site's time zone (empty: any time the site's
    /// windows allow).
    pub windows: Vec<String>,
    /// Where pushes compete for a site, an unfinished one of higher priority holds the others.
    pub priority: i64,
    /// When an admin paused it, RFC 3339 (None: running).
    pub paused: Option<String>,
    /// It follows its content: a version published later at a path it covers is delivered to
    /// its sites by a new push.
    pub follow: bool,
    /// The following push this one delivers a new version for.
    pub followed_from: Option<i64>,
    /// Chunk bytes/s to all its sites over the last 10 s (None: no site has a rate yet).
    pub rate: Option<u64>,
    /// Seconds until the slowest site has what it lacks, at its current rate.
    pub eta_seconds: Option<u64>,
    /// Its waves or rolling policy and where it stands (None: every site at once).
    pub rollout: Option<rollout::RolloutInfo>,
    /// Per-site progress.
    pub sites: Vec<PushSiteInfo>,
}

/// One site of a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PushSiteInfo {
    /// Site name.
    pub site: String,
    /// `waiting_wave` or `queued` (the push's rollout has not reached the site yet: its wave,
    /// or its turn in a rolling push, has not come), `pending`, `scheduled` (before the push's start time), `waiting_window` (outside the
    /// push's or the site's transfer windows), `waiting_priority` (a push of higher priority
    /// is transferring there), `paused` (by an admin), `transferring`, `complete`, `failed` or
    /// `cancelled` (the push was cancelled, or the site deleted, before it completed there).
    #[schema(schema_with = push_site_state)]
    pub state: String,
    /// While `scheduled` or `waiting_window`: when that may next change, RFC 3339.
    pub held_until: Option<String>,
    /// Sum of the pushed artifacts' sizes.
    pub bytes_total: u64,
    /// Bytes the site lacked (after dedup), as reported by its edge.
    pub bytes_needed: u64,
    /// `payload_bytes + framing_bytes`.
    pub bytes_sent: u64,
    /// Chunk bytes sent for this push.
    pub payload_bytes: u64,
    /// Framing bytes (headers, ids, recipes) sent for this push.
    pub framing_bytes: u64,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    /// When the site was deleted (the row is history), RFC 3339.
    pub site_deleted: Option<String>,
    /// When the push reached the site's desired state, RFC 3339 (None: not yet).
    pub released: Option<String>,
    /// The site's wave, when the push rolls out in waves.
    pub wave: Option<u32>,
    /// Chunk bytes/s to the site over the last 10 s (None until sampled twice; 0 when held or
    /// stalled).
    pub rate: Option<u64>,
    /// Seconds until the site has what it lacks (`bytes_needed − payload_bytes`) at `rate`.
    pub eta_seconds: Option<u64>,
    /// Each pushed artifact at this site (images' manifests and blobs under `/.oci/`).
    pub artifacts: Vec<PushArtifactInfo>,
}

/// One artifact of a push at one site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PushArtifactInfo {
    /// Catalog path.
    pub path: String,
    /// `queued`, `fetching`, `complete` or `failed`.
    #[schema(schema_with = push_artifact_state)]
    pub state: String,
    /// Its size.
    pub bytes_total: u64,
    /// Bytes of it the site lacked when the push reached it (after chunk dedup against
    /// everything the site held); 0 until its edge reports.
    pub bytes_needed: u64,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// A string schema that allows only `values` (for the API document's state fields).
fn one_of(values: &[&str]) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(values.iter().copied()))
        .build()
}

fn node_state() -> utoipa::openapi::Object {
    one_of(&["online", "offline"])
}

fn push_state() -> utoipa::openapi::Object {
    one_of(&[
        "in_progress",
        "paused",
        "halted",
        "waiting_approval",
        "complete",
        "failed",
        "cancelled",
    ])
}

fn push_site_state() -> utoipa::openapi::Object {
    one_of(&[
        "waiting_wave",
        "queued",
        "pending",
        "scheduled",
        "waiting_window",
        "waiting_priority",
        "paused",
        "transferring",
        "complete",
        "failed",
        "cancelled",
    ])
}

fn push_artifact_state() -> utoipa::openapi::Object {
    one_of(&["queued", "fetching", "complete", "failed"])
}
