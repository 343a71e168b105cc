//! `/api/v1/channels`: point a channel path at a version (see [`db::channels`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sitecast_protocol::CatalogPath;
use utoipa::ToSchema;

use super::artifacts::{artifact_path, PathParam, Uploaded};
use super::{ApiJson, ApiPath, ApiResult, AppState, ErrorBody};
use crate::db::{self, channels::ChannelInfo};
use crate::error::Error;

/// The body of `PUT /channels/{path}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"version": "/firmware/ap-x200/2.1.0/fw.bin"}))]
pub(super) struct ChannelReq {
    /// The version's artifact path.
    version: String,
}

/// `GET /channels`.
#[derive(Serialize, ToSchema)]
pub(super) struct ChannelList {
    channels: Vec<ChannelInfo>,
}

/// `PUT /api/v1/channels/{path}`: point the channel at a version; its content is published at
/// the channel's path, so the pushes that follow the path deliver the move, and an edge
/// switches in one step once the version is complete there.
#[utoipa::path(
    put,
    path = "/channels/{*path}",
    tag = "channels",
    operation_id = "set_channel",
    params(PathParam),
    request_body = ChannelReq,
    responses(
        (status = 201, description = "Set or moved: the artifact now at the channel's path, and what the move set going", body = Uploaded),
        (status = 200, description = "It already named this content", body = Uploaded),
        (status = 404, description = "`not_found`: no artifact at `version`", body = ErrorBody),
        (status = 409, description = "`conflict`: the path holds an uploaded artifact, or is the version itself", body = ErrorBody),
    )
)]
pub(super) async fn set(
    State(core): State<AppState>,
    ApiPath(raw): ApiPath<String>,
    ApiJson(req): ApiJson<ChannelReq>,
) -> ApiResult<Response> {
    let path = artifact_path(&raw)?;
    let target =
        CatalogPath::parse_artifact(&req.version).map_err(|e| Error::bad_path(&req.version, e))?;
    let (p, t) = (path.clone(), target.clone());
    let published = core.db.call(move |c| db::channels::set(c, &p, &t)).await?;
    tracing::info!(channel = %path, version = %target, changed = published.changed, "channel set");
    let follow_up = if published.changed {
        let p = path.clone();
        let f = core
            .db
            .call(move |c| db::follow::after_publish(c, &p))
            .await?;
        if !f.delivered_by.is_empty() {
            core.sites_changed();
            core.pushes_changed();
        }
        f
    } else {
        db::follow::FollowUp::default()
    };
    if let Some(old) = published.replaced {
        if let Err(e) = core.collect_blob(old).await {
            tracing::warn!(error = %e, "garbage collection after a channel move failed");
        }
    }
    let status = if published.changed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let answer = Uploaded {
        artifact: published.info,
        follow_up,
    };
    Ok((status, Json(answer)).into_response())
}

/// `GET /api/v1/channels`: every channel, by path.
#[utoipa::path(
    get,
    path = "/channels",
    tag = "channels",
    operation_id = "list_channels",
    responses((status = 200, description = "Every channel, by path", body = ChannelList))
)]
pub(super) async fn list(State(core): State<AppState>) -> ApiResult<Response> {
    let channels = core.db.call(|c| db::channels::list(c)).await?;
    Ok(Json(ChannelList { channels }).into_response())
}
