//! `/api/v1/sites`: create (with a one-time join token), list, show, delete, rotate token, set
//! the names of the HTTPS certificate the origin issues to the site's edges.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::validate::{check_https_names, check_labels, check_rate, unique_labels};
use super::{ApiError, ApiJson, ApiPath, ApiResult, AppState};
use crate::db::{self, Labels};
use crate::util::{hash_secret, random_secret};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewSite {
    name: String,
    #[serde(default, deserialize_with = "unique_labels")]
    labels: Labels,
    #[serde(default)]
    max_rate: Option<u64>,
    /// DNS names and IP addresses of the HTTPS certificate the site's edges get from the
    /// origin (edges with `tls_from_origin`).
    #[serde(default)]
    https_names: Vec<String>,
}

impl NewSite {
    /// Every check `create` makes before the database; the HTTPS names as stored.
    fn validate(&self) -> ApiResult<Vec<String>> {
        db::sites::check_name("site", &self.name)?;
        check_rate("max_rate", self.max_rate)?;
        check_labels(&self.labels)?;
        check_https_names("https_names", &self.https_names)
    }
}

/// The body of `PUT /sites/{name}/https-names`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpsNames {
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

pub(super) async fn create(
    State(core): State<AppState>,
    ApiJson(req): ApiJson<NewSite>,
) -> ApiResult<Response> {
    let names = req.validate()?;
    let secret = random_secret();
    let hash = hash_secret(&secret);
    let site = core
        .db
        .call(move |c| db::sites::create(c, &req.name, &req.labels, req.max_rate, &names, &hash))
        .await?;
    tracing::info!(site = %site.name, "site created");
    let token = core.ca.join_token(&secret);
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"site": site, "join_token": token})),
    )
        .into_response())
}

pub(super) async fn list(State(core): State<AppState>) -> ApiResult<Response> {
    let sites = core.db.call(|c| db::sites::list(c)).await?;
    Ok(Json(serde_json::json!({ "sites": sites })).into_response())
}

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
    core.pushes_changed();
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn join_token(
    State(core): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Response> {
    let secret = random_secret();
    let hash = hash_secret(&secret);
    let n = name.clone();
    if !core
        .db
        .call(move |c| db::sites::set_join_token(c, &n, &hash))
        .await?
    {
        return Err(ApiError::not_found(format!("site {name:?} not found")));
    }
    tracing::info!(site = %name, "join token rotated");
    Ok(Json(serde_json::json!({"join_token": core.ca.join_token(&secret)})).into_response())
}

/// `PUT /sites/{name}/https-names`: replace the names; connected edges that take their
/// certificate from the origin get one for the new names at once.
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
