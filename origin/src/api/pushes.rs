//! `/api/v1/pushes`: create, list, show with long poll.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::validate::{check_labels, check_rate, check_time, check_windows, unique_labels_opt};
use super::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, AppState};
use crate::db::{self, pushes::NewPush, Labels};
use crate::rollout::Rollout;
use crate::selector::Selector;

/// Longest accepted `wait_ms`.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// The body of `POST /pushes`.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"content": ["/firmware/ap-x200/2.1.0/"], "selector": "province=gansu,tier!=hub",
    "max_rate": 625_000, "start_at": "2026-12-05T01:00:00+08:00", "windows": ["* 01:00 4h"], "priority": 10}))]
#[serde(deny_unknown_fields)]
pub(super) struct PushReq {
    /// Artifact paths; an entry ending in `/`, or naming a directory, selects every artifact
    /// below. `content` or `images` must be non-empty, each entry must match something.
    #[serde(default)]
    content: Vec<String>,
    /// `REPO:TAG`, `REPO@sha256:…` or `REPO:PATTERN` with `*`/`?`.
    #[serde(default)]
    images: Vec<String>,
    /// Site names (not with `labels` or `selector`).
    #[serde(default)]
    sites: Vec<String>,
    /// Every one must match a site's labels (not with `sites`).
    #[serde(default, deserialize_with = "unique_labels_opt")]
    #[schema(value_type = Option<crate::db::LabelSet>)]
    labels: Option<Labels>,
    /// Bandwidth cap in bytes/s for this push.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_u64)]
    max_rate: Option<u64>,
    /// Not before this RFC 3339 time.
    #[serde(default)]
    start_at: Option<String>,
    /// Transfer windows, in each site's time zone.
    #[serde(default)]
    windows: Vec<String>,
    /// -1000..=1000, default 0; higher first where pushes compete for a site.
    #[serde(default)]
    #[schema(minimum = -1000, maximum = 1000)]
    priority: i64,
    /// A label expression (`province=gansu,tier!=hub`, `region in (north,west)`).
    #[serde(default)]
    selector: Option<String>,
    /// Waves or rolling (see [`crate::rollout`]); none: every site at once.
    #[serde(default)]
    rollout: Option<Rollout>,
    /// Follow the content: a version published later at a path `content` covers is delivered
    /// to these sites by a new push with the same settings (images are not followed).
    #[serde(default)]
    follow: bool,
}

impl PushReq {
    /// Every check `create` makes before the database: the start time in unix seconds, the
    /// windows as stored and the parsed selector.
    fn validate(&self) -> ApiResult<Checked> {
        check_rate("max_rate", self.max_rate)?;
        if let Some(l) = &self.labels {
            check_labels(l)?;
        }
        let by_labels =
            self.labels.as_ref().is_some_and(|l| !l.is_empty()) || self.selector.is_some();
        if !self.sites.is_empty() && by_labels {
            return Err(ApiError::bad_request(
                "a push selects sites by name or by labels, not both",
            ));
        }
        let selector = self
            .selector
            .as_deref()
            .map(|s| Selector::parse(s).map_err(ApiError::bad_request))
            .transpose()?;
        if !(-1000..=1000).contains(&self.priority) {
            return Err(ApiError::bad_request(format!(
                "priority {} is out of range -1000..=1000",
                self.priority
            )));
        }
        if self.follow && self.content.is_empty() {
            return Err(ApiError::bad_request(
                "follow needs content paths or prefixes (images are not followed)",
            ));
        }
        if let Some(r) = &self.rollout {
            r.check().map_err(ApiError::bad_request)?;
        }
        let start_at = self
            .start_at
            .as_deref()
            .map(|s| check_time("start_at", s))
            .transpose()?;
        Ok((start_at, check_windows("windows", &self.windows)?, selector))
    }
}

/// What [`PushReq::validate`] returns: start time, windows, selector.
type Checked = (Option<i64>, Vec<String>, Option<Selector>);

/// The checks of `POST /pushes` on a raw body, without the database (for
/// [`super::check_body`]).
pub(super) fn check_new(bytes: &[u8]) -> ApiResult<()> {
    super::parse_json::<PushReq>(bytes)?.validate().map(drop)
}

#[utoipa::path(
    post,
    path = "/pushes",
    tag = "pushes",
    operation_id = "create_push",
    request_body = PushReq,
    responses(
        (status = 201, description = "Created", body = crate::db::PushInfo),
        (status = 409, description = "`conflict`: a site's quota would be exceeded (nothing is created)", body = super::ErrorBody),
    )
)]
pub(super) async fn create(
    State(core): State<AppState>,
    ApiJson(req): ApiJson<PushReq>,
) -> ApiResult<Response> {
    let (start_at, windows, selector) = req.validate()?;
    let p = NewPush {
        selector,
        start_at,
        windows,
        priority: req.priority,
        content: req.content,
        sites: req.sites,
        labels: req.labels.filter(|l| !l.is_empty()),
        max_rate: req.max_rate,
        images: req.images,
        rollout: req.rollout,
        follow: req.follow,
        followed_from: None,
    };
    let push = core.db.call(move |c| db::pushes::create(c, &p)).await?;
    tracing::info!(
        push = push.id,
        artifacts = push.content.len(),
        images = push.images.len(),
        sites = push.sites.len(),
        "push created"
    );
    core.sites_changed();
    core.pushes_changed();
    if let Err(e) = core.collect_replaced(Some(push.id)).await {
        tracing::warn!(error = %e, "collecting the versions this push replaced failed");
    }
    Ok((StatusCode::CREATED, Json(push)).into_response())
}

#[utoipa::path(
    get,
    path = "/pushes",
    tag = "pushes",
    operation_id = "list_pushes",
    responses((status = 200, description = "Every push, newest first", body = super::openapi::PushList))
)]
pub(super) async fn list(State(core): State<AppState>) -> ApiResult<Response> {
    let mut pushes = core.db.call(|c| db::pushes::list(c)).await?;
    for p in &mut pushes {
        core.rates.annotate(p);
    }
    Ok(Json(serde_json::json!({ "pushes": pushes })).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ShowQuery {
    /// Answer as soon as anything in the push changes, or after this many milliseconds
    /// (at most 60000; more waits 60000).
    wait_ms: Option<u64>,
}

#[utoipa::path(
    get,
    path = "/pushes/{id}",
    tag = "pushes",
    operation_id = "show_push",
    params(("id" = i64, Path, description = "Push id"), ShowQuery),
    responses(
        (status = 200, description = "The push", body = crate::db::PushInfo),
        (status = 404, description = "`not_found`: no such push", body = super::ErrorBody),
    )
)]
pub(super) async fn show(
    State(core): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ShowQuery>,
) -> ApiResult<Response> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid push id {id:?}")))?;
    let mut changes = core.push_changes.subscribe();
    let first = core
        .db
        .call(move |c| db::pushes::get(c, id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("push {id} not found")))?;
    let Some(wait) = q.wait_ms.map(|ms| Duration::from_millis(ms).min(MAX_WAIT)) else {
        return Ok(Json(annotated(&core, first)).into_response());
    };
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return Ok(Json(annotated(&core, first)).into_response()),
        }
        let now = core.db.call(move |c| db::pushes::get(c, id)).await?;
        match now {
            Some(p) if p == first => continue,
            Some(p) => return Ok(Json(annotated(&core, p)).into_response()),
            None => return Err(ApiError::not_found(format!("push {id} not found"))),
        }
    }
}

/// `POST /api/v1/pushes/{id}/pause` and `/resume`: hold the push at every site where it is
/// unfinished (a running transfer stops at a chunk boundary, keeping what arrived), or let it
/// go on from there. Pausing or resuming twice is harmless.
#[utoipa::path(
    post,
    path = "/pushes/{id}/pause",
    tag = "pushes",
    operation_id = "pause_push",
    params(("id" = i64, Path, description = "Push id")),
    responses(
        (status = 200, description = "The push, paused", body = crate::db::PushInfo),
        (status = 404, description = "`not_found`: no such push", body = super::ErrorBody),
    )
)]
pub(super) async fn pause(
    State(core): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    set_paused(core, id, true).await
}

/// See [`pause`].
#[utoipa::path(
    post,
    path = "/pushes/{id}/resume",
    tag = "pushes",
    operation_id = "resume_push",
    params(("id" = i64, Path, description = "Push id")),
    responses(
        (status = 200, description = "The push, resumed", body = crate::db::PushInfo),
        (status = 404, description = "`not_found`: no such push", body = super::ErrorBody),
    )
)]
pub(super) async fn resume(
    State(core): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    set_paused(core, id, false).await
}

async fn set_paused(core: AppState, id: i64, paused: bool) -> ApiResult<Response> {
    let sites = core
        .db
        .call(move |c| db::schedule::set_paused(c, id, paused))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("push {id} not found")))?;
    tracing::info!(push = id, sites = ?sites, paused, "push paused or resumed");
    core.sites_changed();
    core.pushes_changed();
    shown(&core, id).await
}

/// `POST /api/v1/pushes/{id}/approve`: a halted rollout accepts the failures so far and goes
/// on; one in waves starts its next wave now (see [`db::rollout::approve`]).
#[utoipa::path(
    post,
    path = "/pushes/{id}/approve",
    tag = "pushes",
    operation_id = "approve_push",
    params(("id" = i64, Path, description = "Push id")),
    responses(
        (status = 200, description = "The push, its rollout moved on", body = crate::db::PushInfo),
        (status = 404, description = "`not_found`: no such push", body = super::ErrorBody),
        (status = 409, description = "`conflict`: nothing to approve (no rollout, paused, every wave started, or rolling and not halted)", body = super::ErrorBody),
    )
)]
pub(super) async fn approve(
    State(core): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    let sites = core
        .db
        .call(move |c| db::rollout::approve(c, id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("push {id} not found")))?;
    tracing::info!(push = id, released = ?sites, "push approved");
    core.sites_changed();
    core.pushes_changed();
    shown(&core, id).await
}

/// `POST /api/v1/pushes/{id}/retry`: the push's failed sites retry now instead of at their
/// edges' next backoff time.
#[utoipa::path(
    post,
    path = "/pushes/{id}/retry",
    tag = "pushes",
    operation_id = "retry_push",
    params(("id" = i64, Path, description = "Push id")),
    responses(
        (status = 200, description = "The push; its failed sites retry now", body = crate::db::PushInfo),
        (status = 404, description = "`not_found`: no such push", body = super::ErrorBody),
        (status = 409, description = "`conflict`: no site of the push has failed", body = super::ErrorBody),
    )
)]
pub(super) async fn retry(
    State(core): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    let sites = core
        .db
        .call(move |c| db::rollout::retry(c, id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("push {id} not found")))?;
    tracing::info!(push = id, sites = ?sites, "push retried");
    core.sites_changed();
    shown(&core, id).await
}

/// Push `id` as `GET /pushes/{id}` shows it (404 when gone).
async fn shown(core: &AppState, id: i64) -> ApiResult<Response> {
    let push = core
        .db
        .call(move |c| db::pushes::get(c, id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("push {id} not found")))?;
    Ok(Json(annotated(core, push)).into_response())
}

/// `p` with its current rates and ETAs (see [`crate::rates`]).
fn annotated(core: &AppState, mut p: db::PushInfo) -> db::PushInfo {
    core.rates.annotate(&mut p);
    p
}

/// `POST /api/v1/pushes/{id}/cancel`: stop the push at every site where it is not complete
/// (see [`db::pushes::cancel`]); complete sites keep what they got.
#[utoipa::path(
    post,
    path = "/pushes/{id}/cancel",
    tag = "pushes",
    operation_id = "cancel_push",
    params(("id" = i64, Path, description = "Push id")),
    responses(
        (status = 200, description = "The push, cancelled where it was not complete", body = crate::db::PushInfo),
        (status = 404, description = "`not_found`: no such push", body = super::ErrorBody),
    )
)]
pub(super) async fn cancel(
    State(core): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    let sites = core
        .db
        .call(move |c| db::pushes::cancel(c, id, "cancelled by the admin"))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("push {id} not found")))?;
    tracing::info!(push = id, sites = ?sites, "push cancelled");
    core.sites_changed();
    core.pushes_changed();
    if let Err(e) = core.collect_replaced(Some(id)).await {
        tracing::warn!(error = %e, "collecting the cancelled push's content failed");
    }
    shown(&core, id).await
}
