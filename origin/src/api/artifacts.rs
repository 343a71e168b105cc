//! `/api/v1/artifacts`: streamed upload, list, show, delete.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sitecast_protocol::CatalogPath;
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiPath, ApiQuery, ApiResult, AppState, ErrorBody};
use crate::db::{self, ArtifactInfo};
use crate::error::Error;
use crate::ingest;

pub(super) fn artifact_path(raw: &str) -> ApiResult<CatalogPath> {
    let full = format!("/{raw}");
    if sitecast_protocol::oci::is_blob_path(&full) {
        return Err(ApiError::bad_request(format!(
            "{full:?} is below {}, which is reserved for image blobs",
            sitecast_protocol::oci::BLOB_DIR
        )));
    }
    CatalogPath::parse_artifact(&full).map_err(|e| Error::bad_path(&full, e).into())
}

/// `PUT /api/v1/artifacts/{path}`: store the body (streamed) as the artifact at `path`.
///
/// Publishing happens only after every chunk is stored; a replaced version is
/// garbage-collected once no push needs it.
#[utoipa::path(
    put,
    path = "/artifacts/{*path}",
    tag = "artifacts",
    operation_id = "upload_artifact",
    params(PathParam),
    request_body(
        content = UploadBody,
        content_type = "application/octet-stream",
        description = "The artifact's bytes, of any `Content-Type`; at most `max_upload` (default 64 GiB)",
    ),
    responses(
        (status = 201, description = "Stored: new content at this path", body = Uploaded),
        (status = 200, description = "The path already held this content", body = Uploaded),
        (status = 409, description = "`conflict`: the path is a channel (move it instead)", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: over `max_upload`", body = ErrorBody),
        (status = 507, description = "`insufficient_storage`: the origin's disk is full; nothing was published", body = ErrorBody),
    )
)]
pub(super) async fn upload(
    State(core): State<AppState>,
    ApiPath(raw): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let path = artifact_path(&raw)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > core.cfg.max_upload) {
        return Err(Error::TooLarge {
            limit: core.cfg.max_upload,
        }
        .into());
    }
    let p = path.clone();
    if core
        .db
        .call(move |c| db::channels::get(c, &p))
        .await?
        .is_some()
    {
        // Read (and drop) a modest body first: a client still sending when the answer comes
        // sees a broken pipe instead of the reason.
        drain(body, 64 << 20).await;
        return Err(Error::Conflict(format!(
            "{path} is a channel: move it with PUT /api/v1/channels{path} (`ctl channel set`)"
        ))
        .into());
    }
    let published = ingest::ingest(&core, path.clone(), body).await?;
    if !published.changed {
        let answer = Uploaded {
            artifact: published.info,
            follow_up: db::follow::FollowUp::default(),
        };
        return Ok((StatusCode::OK, Json(answer)).into_response());
    }
    let follow_up = core
        .db
        .call(move |c| db::follow::after_publish(c, &path))
        .await?;
    if !follow_up.delivered_by.is_empty() {
        core.sites_changed();
        core.pushes_changed();
    }
    let answer = Uploaded {
        artifact: published.info,
        follow_up,
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// Read and drop up to `limit` bytes of `body`.
async fn drain(body: Body, limit: usize) {
    let mut body = body.into_data_stream();
    let mut seen = 0;
    while let Some(Ok(b)) = futures::StreamExt::next(&mut body).await {
        seen += b.len();
        if seen > limit {
            break;
        }
    }
}

/// What `PUT /artifacts/{path}` answers: the artifact, and what its new version set going.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Uploaded {
    #[serde(flatten)]
    pub(super) artifact: ArtifactInfo,
    #[serde(flatten)]
    pub(super) follow_up: db::follow::FollowUp,
}

/// `GET /api/v1/artifacts/{path}`.
#[utoipa::path(
    get,
    path = "/artifacts/{*path}",
    tag = "artifacts",
    operation_id = "show_artifact",
    params(PathParam),
    responses(
        (status = 200, description = "The artifact", body = ArtifactInfo),
        (status = 404, description = "`not_found`: no artifact at this path", body = ErrorBody),
    )
)]
pub(super) async fn show(
    State(core): State<AppState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<Response> {
    let path = artifact_path(&raw)?;
    let p = path.clone();
    match core.db.call(move |c| db::artifacts::get(c, &p)).await? {
        Some(a) => Ok(Json(a).into_response()),
        None => Err(ApiError::not_found(format!("artifact {path} not found"))),
    }
}

/// The `{path}` of `/artifacts/{path}` (for the document; the handlers read it as a string).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(super) struct PathParam {
    /// The artifact's catalog path without its leading `/`; it may contain `/`
    /// (`firmware/ap-x200/2.1.0/fw.bin`), written as it is (`%2F` is refused).
    path: String,
}

/// The body of an upload, for the document: any bytes.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
struct UploadBody(Vec<u8>);

/// `?prefix=` of `GET /artifacts`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Only artifacts at or below this path (segment-wise: `/fw` covers `/fw/a`, not
    /// `/fwx`); all when omitted. Starts with `/`.
    prefix: Option<String>,
}

/// The answer of `GET /artifacts`.
#[derive(Serialize, ToSchema)]
pub(super) struct ArtifactList {
    /// By path.
    artifacts: Vec<ArtifactInfo>,
}

/// `GET /api/v1/artifacts`.
#[utoipa::path(
    get,
    path = "/artifacts",
    tag = "artifacts",
    operation_id = "list_artifacts",
    params(ListQuery),
    responses((status = 200, description = "The artifacts under the prefix", body = ArtifactList))
)]
pub(super) async fn list(
    State(core): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
    let prefix = match q.prefix.as_deref() {
        None | Some("") => CatalogPath::root(),
        Some(p) => CatalogPath::parse_prefix(p).map_err(|e| Error::bad_path(p, e))?,
    };
    let artifacts = core
        .db
        .call(move |c| db::artifacts::list(c, &prefix))
        .await?;
    Ok(Json(ArtifactList { artifacts }).into_response())
}

/// `DELETE /api/v1/artifacts/{path}`: the artifact also leaves every site's desired state.
#[utoipa::path(
    delete,
    path = "/artifacts/{*path}",
    tag = "artifacts",
    operation_id = "delete_artifact",
    params(PathParam),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`not_found`: no artifact at this path", body = ErrorBody),
    )
)]
pub(super) async fn remove(
    State(core): State<AppState>,
    ApiPath(raw): ApiPath<String>,
) -> ApiResult<Response> {
    let path = artifact_path(&raw)?;
    let p = path.clone();
    let Some(deleted) = core.db.call(move |c| db::artifacts::delete(c, &p)).await? else {
        return Err(ApiError::not_found(format!("artifact {path} not found")));
    };
    tracing::info!(%path, sites = deleted.sites.len(), "artifact deleted");
    if !deleted.sites.is_empty() {
        core.sites_changed();
        core.pushes_changed();
    }
    if let Err(e) = core.collect_blob(deleted.blob).await {
        tracing::warn!(error = %e, "garbage collection after delete failed");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
