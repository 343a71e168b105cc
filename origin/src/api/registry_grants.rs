//! `/api/v1/registry-grants`: which users may pull from or push to the origin's registry.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiJson, ApiPath, ApiResult, AppState, ErrorBody};
use crate::db::{self, registry_grants::RegistryGrantInfo};

/// The body of `POST /registry-grants`.
#[derive(Deserialize, ToSchema)]
#[schema(as = RegistryGrantReq, example = json!({"user": "ci", "repository": "docker.io/team/*", "push": true}))]
#[serde(deny_unknown_fields)]
pub(super) struct Req {
    /// An existing user.
    user: String,
    /// Repositories matching this pattern (`docker.io/team/*`; `*` and `?` globs, otherwise
    /// the OCI name grammar).
    repository: String,
    /// May also push and delete there, not only pull.
    #[serde(default)]
    push: bool,
}

/// The answer of `GET /registry-grants`.
#[derive(Serialize, ToSchema)]
pub(super) struct RegistryGrantList {
    /// By id.
    registry_grants: Vec<RegistryGrantInfo>,
}

/// The checks of `POST /registry-grants` on a raw body, without the database (which checks
/// the rest; for [`super::check_body`]).
pub(super) fn check_new(bytes: &[u8]) -> ApiResult<()> {
    super::parse_json::<Req>(bytes).map(drop)
}

/// `POST /api/v1/registry-grants`.
#[utoipa::path(
    post,
    path = "/registry-grants",
    tag = "registry-grants",
    operation_id = "create_registry_grant",
    request_body = Req,
    responses(
        (status = 201, description = "Created", body = RegistryGrantInfo),
        (status = 404, description = "`not_found`: no such user", body = ErrorBody),
    )
)]
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

/// `GET /api/v1/registry-grants`.
#[utoipa::path(
    get,
    path = "/registry-grants",
    tag = "registry-grants",
    operation_id = "list_registry_grants",
    responses((status = 200, description = "Every registry grant", body = RegistryGrantList))
)]
pub(super) async fn list(State(core): State<AppState>) -> ApiResult<Response> {
    let registry_grants = core.db.call(|c| db::registry_grants::list(c)).await?;
    Ok(Json(RegistryGrantList { registry_grants }).into_response())
}

/// `DELETE /api/v1/registry-grants/{id}`.
#[utoipa::path(
    delete,
    path = "/registry-grants/{id}",
    tag = "registry-grants",
    operation_id = "delete_registry_grant",
    params(("id" = i64, Path, description = "Registry grant id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`not_found`: no such registry grant", body = ErrorBody),
    )
)]
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
