//! `/api/v1/artifacts`: streamed upload, list, show, delete.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use sitecast_protocol::CatalogPath;

use super::{ApiError, ApiPath, ApiQuery, ApiResult, AppState};
use crate::db;
use crate::error::Error;
use crate::ingest;

fn artifact_path(raw: &str) -> ApiResult<CatalogPath> {
    let full = format!("/{raw}");
    if sitecast_protocol::oci::is_blob_path(&full) {
        return Err(ApiError::bad_request(format!(
            "{full:?} is below {}, which is reserved for image blobs",
            sitecast_protocol::oci::BLOB_DIR
        )));
    }
    CatalogPath::parse_artifact(&full).map_err(|e| Error::bad_path(&full, e).into())
}

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
    let published = ingest::ingest(&core, path, body).await?;
    if published.changed {
        // Pushes resolve content at creation; nothing else to notify.
        Ok((StatusCode::CREATED, Json(published.info)).into_response())
    } else {
        Ok((StatusCode::OK, Json(published.info)).into_response())
    }
}

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

#[derive(Deserialize)]
pub(super) struct ListQuery {
    prefix: Option<String>,
}

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
    Ok(Json(serde_json::json!({ "artifacts": artifacts })).into_response())
}

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
