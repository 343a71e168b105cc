//! `/api/v1/registry-grants`: which users may pull from or push to the origin's registry.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::{ApiError, ApiJson, ApiPath, ApiResult, AppState};
use crate::db;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Req {
    user: String,
    repository: String,
    #[serde(default)]
    push: bool,
}

/// The checks of `POST /registry-grants` on a raw body, without the database (which checks
/// the rest; for [`super::check_body`]).
pub(super) fn check_new(bytes: &[u8]) -> ApiResult<()> {
    super::parse_json::<Req>(bytes).map(drop)
}

pub(super) async fn create(
    State(core): State<AppState>,
    ApiJson(r): ApiJson<Req>,
) -> ApiResult<Response> {
    let g = core
        .db
        .call(move |c| db::registry_grants::create(c, &r.user, &r.repository, r.push))
        .await?;
    Ok((StatusCode::CREATED, Json(g)).into_response())
}

pub(super) async fn list(State(core): State<AppState>) -> ApiResult<Response> {
    let grants = core.db.call(|c| db::registry_grants::list(c)).await?;
    Ok(Json(serde_json::json!({ "registry_grants": grants })).into_response())
}

pub(super) async fn delete(
    State(core): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid registry grant id {id:?}")))?;
    if !core
        .db
        .call(move |c| db::registry_grants::delete(c, id))
        .await?
    {
        return Err(ApiError::not_found(format!(
            "registry grant {id} not found"
        )));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
