//! `/api/v1/sites`: create (with a one-time join token), list, show, delete, rotate token, set
//! the names of the HTTPS certificate the origin issues to the site's edges.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::validate::{
    check_https_names, check_labels, check_quota, check_rate, check_time_zone, check_windows,
    double_option, ttl, unique_labels, unique_labels_opt,
};
use super::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, AppState, ErrorBody};
use crate::db::{self, Labels, SiteInfo};
use crate::util::{hash_secret, random_secret};

/// The body of `POST /sites`.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"name": "farm-7", "labels": {"province": "gansu"}, "max_rate": 625_000,
    "https_names": ["edge.farm7.example", "10.17.0.5"], "join_token_ttl": "24h",
    "time_zone": "Asia/Shanghai", "windows": ["mon-fri 01:00 4h"], "quota": 10_000_000_000_u64}))]
#[serde(deny_unknown_fields)]
pub(super) struct NewSite {
    /// 1–63 of letters, digits, `-`, `_`, `.`, starting with a letter or digit.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
    name: String,
    /// Labels (grants and pushes select sites by them); a key at most once.
    #[serde(default, deserialize_with = "unique_labels")]
    #[schema(value_type = crate::db::LabelSet)]
    labels: Labels,
    /// Bandwidth cap in bytes/s (at most 2^63−1); none when omitted or null.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
    max_rate: Option<u64>,
    /// DNS names and IP addresses of the HTTPS certificate the site's edges get from the
    /// origin (edges with `tls_from_origin`).
    #[serde(default)]
    https_names: Vec<String>,
    /// How long the join token is valid: a duration from `1s` to `365days` (`"24h"`, the
    /// default).
    #[serde(default)]
    join_token_ttl: Option<String>,
    /// IANA time zone its windows are read in (default UTC).
    #[serde(default)]
    time_zone: Option<String>,
    /// Recurring transfer windows (`mon-fri 01:00 4h`); none = any time.
    #[serde(default)]
    windows: Vec<String>,
    /// Disk quota in bytes (1 to 2^63−1); none when omitted or null.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
    quota: Option<u64>,
}

/// The answer of `POST /sites`.
#[derive(Serialize, ToSchema)]
pub(super) struct Created {
    /// The new site.
    site: SiteInfo,
    /// `scj1…`: a one-time token for its first node's `sitecast edge` (`--join-token`).
    join_token: String,
    /// When it stops being accepted, RFC 3339.
    join_token_expires: String,
}

/// A one-time join token for one node of a site.
#[derive(Serialize, ToSchema)]
pub(super) struct JoinToken {
    /// `scj1…`: give it to one node's `sitecast edge` (`--join-token`).
    join_token: String,
    /// When it stops being accepted, RFC 3339.
    join_token_expires: String,
}

/// The answer of `GET /sites`.
#[derive(Serialize, ToSchema)]
pub(super) struct SiteList {
    /// By name.
    sites: Vec<SiteInfo>,
}

/// The default lifetime of a join token.
const JOIN_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// The longest lifetime a join token may be given.
const MAX_JOIN_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);

/// A join token lifetime in seconds: a humantime duration from 1 s to 365 days; `None` is 24 h.
fn token_ttl(field: &str, v: Option<&str>) -> ApiResult<i64> {
    let d = v.map_or(Ok(JOIN_TOKEN_TTL), |v| ttl(field, v, MAX_JOIN_TOKEN_TTL))?;
    Ok(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `?ttl=` of `POST /sites/{name}/join-token`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenQuery {
    /// How long the token is valid: a duration from `1s` to `365days` (default `24h`).
    ttl: Option<String>,
}

impl NewSite {
    /// Every check `create` makes before the database; the HTTPS names and windows as
    /// stored and the join token's lifetime in seconds.
    fn validate(&self) -> ApiResult<(Vec<String>, Vec<String>, i64)> {
        db::sites::check_name("site", &self.name)?;
        check_rate("max_rate", self.max_rate)?;
        check_labels(&self.labels)?;
        if let Some(tz) = &self.time_zone {
            check_time_zone("time_zone", tz)?;
        }
        check_quota("quota", self.quota)?;
        let ttl = token_ttl("join_token_ttl", self.join_token_ttl.as_deref())?;
        Ok((
            check_https_names("https_names", &self.https_names)?,
            check_windows("windows", &self.windows)?,
            ttl,
        ))
    }
}

/// The body of `PUT /sites/{name}/https-names`.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"names": ["edge.farm17.example", "10.17.0.5"]}))]
#[serde(deny_unknown_fields)]
pub(super) struct HttpsNames {
    /// DNS names (an optional leading `*.`) and IP addresses, each once, at most 100; `[]`
    /// clears them.
    names: Vec<String>,
}

/// The checks of `PUT /sites/{name}/https-names` on a raw body (for [`super::check_body`]).
pub(super) fn check_https_body(bytes: &[u8]) -> ApiResult<()> {
    check_https_names("names", &super::parse_json::<HttpsNames>(bytes)?.names).map(drop)
}

/// The checks of `POST /sites` on a raw body, without the database (for
/// [`super::check_body`]).
pub(super) fn check_new(bytes: &[u8]) -> ApiResult<()> {
    super::parse_json::<NewSite>(bytes)?.validate().map(drop)
}

/// `POST /api/v1/sites`: a new site and a one-time join token for its first node.
#[utoipa::path(
    post,
    path = "/sites",
    tag = "sites",
    operation_id = "create_site",
    request_body = NewSite,
    responses(
        (status = 201, description = "Created", body = Created),
        (status = 409, description = "`conflict`: a site of this name exists", body = ErrorBody),
    )
)]
pub(super) async fn create(
    State(core): State<AppState>,
    ApiJson(req): ApiJson<NewSite>,
) -> ApiResult<Response> {
    let (names, windows, ttl) = req.validate()?;
    let secret = random_secret();
    let hash = hash_secret(&secret);
    let expires = crate::util::now().saturating_add(ttl);
    let site = core
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            db::sites::create(
                &tx,
                &req.name,
                &req.labels,
                req.max_rate,
                &names,
                &hash,
                expires,
            )?;
            db::schedule::set_site(&tx, &req.name, req.time_zone.as_deref(), Some(&windows))?;
            db::schedule::set_quota(&tx, &req.name, Some(req.quota))?;
            let site = db::sites::get(&tx, &req.name)?;
            tx.commit()?;
            site.ok_or_else(|| {
                crate::error::Error::NotFound(format!("site {:?} not found", req.name))
            })
        })
        .await?;
    tracing::info!(site = %site.name, "site created");
    let token = core.ca.join_token(&secret);
    let created = Created {
        site,
        join_token: token,
        join_token_expires: crate::util::rfc3339(expires),
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `GET /api/v1/sites`.
#[utoipa::path(
    get,
    path = "/sites",
    tag = "sites",
    operation_id = "list_sites",
    responses((status = 200, description = "Every site", body = SiteList))
)]
pub(super) async fn list(State(core): State<AppState>) -> ApiResult<Response> {
    let sites = core.db.call(|c| db::sites::list(c)).await?;
    Ok(Json(SiteList { sites }).into_response())
}

/// `GET /api/v1/sites/{name}`.
#[utoipa::path(
    get,
    path = "/sites/{name}",
    tag = "sites",
    operation_id = "show_site",
    params(("name" = String, Path, description = "Site name")),
    responses(
        (status = 200, description = "The site", body = SiteInfo),
        (status = 404, description = "`not_found`: no such site", body = ErrorBody),
    )
)]
pub(super) async fn show(
    State(core): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Response> {
    let n = name.clone();
    match core.db.call(move |c| db::sites::get(c, &n)).await? {
        Some(s) => Ok(Json(s).into_response()),
        None => Err(ApiError::not_found(format!("site {name:?} not found"))),
    }
}

/// `DELETE /api/v1/sites/{name}`: its nodes' certificates stop working at once; its push
/// history stays readable.
#[utoipa::path(
    delete,
    path = "/sites/{name}",
    tag = "sites",
    operation_id = "delete_site",
    params(("name" = String, Path, description = "Site name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`not_found`: no such site", body = ErrorBody),
    )
)]
pub(super) async fn remove(
    State(core): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Response> {
    let n = name.clone();
    if !core.db.call(move |c| db::sites::delete(c, &n)).await? {
        return Err(ApiError::not_found(format!("site {name:?} not found")));
    }
    core.buckets.forget(&name);
    tracing::info!(site = %name, "site deleted; its nodes are revoked");
    core.sites_changed();
    core.nodes_revoked();
    core.pushes_changed();
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/sites/{name}/join-token`: a new one-time join token; any unused one stops
/// working.
#[utoipa::path(
    post,
    path = "/sites/{name}/join-token",
    tag = "sites",
    operation_id = "new_join_token",
    params(("name" = String, Path, description = "Site name"), TokenQuery),
    responses(
        (status = 200, description = "The new token", body = JoinToken),
        (status = 404, description = "`not_found`: no such site", body = ErrorBody),
    )
)]
pub(super) async fn join_token(
    State(core): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<TokenQuery>,
) -> ApiResult<Response> {
    let ttl = token_ttl("ttl", q.ttl.as_deref())?;
    let secret = random_secret();
    let hash = hash_secret(&secret);
    let expires = crate::util::now().saturating_add(ttl);
    let n = name.clone();
    if !core
        .db
        .call(move |c| db::sites::set_join_token(c, &n, &hash, expires))
        .await?
    {
        return Err(ApiError::not_found(format!("site {name:?} not found")));
    }
    tracing::info!(site = %name, "join token rotated");
    Ok(Json(JoinToken {
        join_token: core.ca.join_token(&secret),
        join_token_expires: crate::util::rfc3339(expires),
    })
    .into_response())
}

/// The body of `PATCH /sites/{name}`: the fields given are replaced whole, the others stay.
#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"labels": {"province": "gansu", "tier": "farm"}, "max_rate": null,
    "time_zone": "Asia/Kolkata", "windows": ["sat,sun 00:00 8h"]}))]
#[serde(deny_unknown_fields)]
pub(super) struct SitePatch {
    /// The whole new label set (grants and future pushes by label follow it).
    #[serde(default, deserialize_with = "unique_labels_opt")]
    #[schema(value_type = Option<crate::db::LabelSet>)]
    labels: Option<Labels>,
    /// The site's bandwidth cap in bytes/s; `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
    max_rate: Option<Option<u64>>,
    /// The whole new list of HTTPS names.
    #[serde(default)]
    https_names: Option<Vec<String>>,
    /// The IANA time zone its windows are read in.
    #[serde(default)]
    time_zone: Option<String>,
    /// The whole new list of transfer windows (`[]`: any time).
    #[serde(default)]
    windows: Option<Vec<String>>,
    /// The disk quota in bytes; `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>, minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
    quota: Option<Option<u64>>,
}

/// What `PATCH /sites/{name}` stores besides labels and the cap: HTTPS names and windows.
type Checked = (Option<Vec<String>>, Option<Vec<String>>);

impl SitePatch {
    /// Every check `patch` makes before the database; the HTTPS names and windows as stored.
    fn validate(&self) -> ApiResult<Checked> {
        if self.labels.is_none()
            && self.max_rate.is_none()
            && self.https_names.is_none()
            && self.time_zone.is_none()
            && self.windows.is_none()
            && self.quota.is_none()
        {
            return Err(ApiError::bad_request(
                "nothing to change: give labels, max_rate, https_names, time_zone, windows and/or quota",
            ));
        }
        check_quota("quota", self.quota.flatten())?;
        if let Some(l) = &self.labels {
            check_labels(l)?;
        }
        check_rate("max_rate", self.max_rate.flatten())?;
        if let Some(tz) = &self.time_zone {
            check_time_zone("time_zone", tz)?;
        }
        let names = self
            .https_names
            .as_deref()
            .map(|n| check_https_names("https_names", n))
            .transpose()?;
        let windows = self
            .windows
            .as_deref()
            .map(|w| check_windows("windows", w))
            .transpose()?;
        Ok((names, windows))
    }
}

/// `PATCH /api/v1/sites/{name}`: labels (the site's grants are sent again), the bandwidth cap
/// (the next chunk batch is paced at it), HTTPS names (new certificates are issued), time zone
/// and windows (transfers pause or resume at once).
#[utoipa::path(
    patch,
    path = "/sites/{name}",
    tag = "sites",
    operation_id = "patch_site",
    params(("name" = String, Path, description = "Site name")),
    request_body(content = SitePatch, description = "At least one field; `{}` is a 400"),
    responses(
        (status = 200, description = "The site as changed", body = SiteInfo),
        (status = 404, description = "`not_found`: no such site", body = ErrorBody),
    )
)]
pub(super) async fn patch(
    State(core): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<SitePatch>,
) -> ApiResult<Response> {
    let (https, windows) = req.validate()?;
    let n = name.clone();
    let (labels, rate, tz, quota) = (req.labels, req.max_rate, req.time_zone, req.quota);
    let site = core
        .db
        .call(move |c| {
            db::schedule::set_site(c, &n, tz.as_deref(), windows.as_deref())?;
            db::schedule::set_quota(c, &n, quota)?;
            db::sites::update(c, &n, labels.as_ref(), rate, https.as_deref())
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("site {name:?} not found")))?;
    tracing::info!(site = %name, labels = ?site.labels, max_rate = ?site.max_rate, https_names = ?site.https_names, time_zone = %site.time_zone, windows = ?site.windows, "site changed");
    core.sites_changed();
    Ok(Json(site).into_response())
}

/// See [`check_new`].
pub(super) fn check_patch(bytes: &[u8]) -> ApiResult<()> {
    super::parse_json::<SitePatch>(bytes)?.validate().map(drop)
}

/// `PUT /api/v1/sites/{name}/https-names`: replace the names; connected edges that take their
/// certificate from the origin get one for the new names at once.
#[utoipa::path(
    put,
    path = "/sites/{name}/https-names",
    tag = "sites",
    operation_id = "set_https_names",
    params(("name" = String, Path, description = "Site name")),
    request_body = HttpsNames,
    responses(
        (status = 200, description = "The site with its new names", body = SiteInfo),
        (status = 404, description = "`not_found`: no such site", body = ErrorBody),
    )
)]
pub(super) async fn set_https_names(
    State(core): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<HttpsNames>,
) -> ApiResult<Response> {
    let names = check_https_names("names", &req.names)?;
    let n = name.clone();
    let site = core
        .db
        .call(move |c| {
            if !db::sites::set_https_names(c, &n, &names)? {
                return Ok(None);
            }
            db::sites::get(c, &n)
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("site {name:?} not found")))?;
    tracing::info!(site = %name, names = ?site.https_names, "HTTPS names set");
    core.sites_changed();
    Ok(Json(site).into_response())
}

/// `DELETE /api/v1/sites/{name}/nodes/{node}`: revoke one node. Its certificate stops working
/// at once, its open session is closed with the reason, and the site, its other nodes, grants
/// and push history stay. The node enrolls again with a fresh join token.
#[utoipa::path(
    delete,
    path = "/sites/{name}/nodes/{node}",
    tag = "sites",
    operation_id = "revoke_node",
    params(
        ("name" = String, Path, description = "Site name"),
        ("node" = String, Path, description = "Node name"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "`not_found`: no such site or node", body = ErrorBody),
    )
)]
pub(super) async fn revoke_node(
    State(core): State<AppState>,
    ApiPath((site, node)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let (s, n) = (site.clone(), node.clone());
    if !core
        .db
        .call(move |c| db::sites::revoke_node(c, &s, &n, "revoked by the admin"))
        .await?
    {
        return Err(ApiError::not_found(format!(
            "site {site:?} has no node {node:?}"
        )));
    }
    tracing::info!(site = %site, node = %node, "node revoked");
    core.nodes_revoked();
    Ok(StatusCode::NO_CONTENT.into_response())
}
