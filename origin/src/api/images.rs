//! `/api/v1/images`: imports from upstream registries.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt as _;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, ApiJson, ApiResult, AppState, ErrorBody};
use crate::upstream::{self, ImportRequest, Imported};

/// The answer of `POST /images/import` (without `Accept: application/x-ndjson`).
#[derive(Serialize, ToSchema)]
pub(super) struct ImportAnswer {
    /// Each tag or digest imported.
    images: Vec<Imported>,
}

/// The checks of `POST /images/import` on a raw body, without contacting the upstream (for
/// [`super::check_body`]).
pub(super) fn check_import(bytes: &[u8]) -> ApiResult<()> {
    Ok(super::parse_json::<ImportRequest>(bytes)?
        .validate()
        .map(drop)?)
}

/// `POST /api/v1/images/import` → `{"images": [Imported…]}` once everything is stored. With
/// `Accept: application/x-ndjson` the answer is `200` at once and a stream of JSON lines:
/// progress events (`{"event":"blob","digest","size"}`, `{"event":"bytes","n"}`), then
/// `{"event":"done","images":[…]}` or `{"event":"error","code","message"}`.
#[utoipa::path(
    post,
    path = "/images/import",
    tag = "images",
    operation_id = "import_image",
    request_body = ImportRequest,
    responses(
        (status = 200, description = "Imported; or, with `Accept: application/x-ndjson`, \
            at once and one JSON object per line: `{\"event\":\"blob\",\"digest\",\"size\"}`, \
            `{\"event\":\"bytes\",\"n\"}`, then `{\"event\":\"done\",\"images\":[…]}` or \
            `{\"event\":\"error\",\"code\",\"message\"}`",
            content(
                (ImportAnswer = "application/json"),
                (String = "application/x-ndjson"),
            )),
        (status = 404, description = "`not_found`: the upstream lacks it", body = ErrorBody),
        (status = 502, description = "`upstream`: the upstream failed or refused", body = ErrorBody),
    )
)]
pub(super) async fn import(
    State(core): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ImportRequest>,
) -> ApiResult<Response> {
    let streamed = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"));
    if !streamed {
        let images = upstream::import(&core, req, None).await?;
        return Ok(Json(ImportAnswer { images }).into_response());
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    tokio::spawn(async move {
        let last = match upstream::import(&core, req, Some(tx.clone())).await {
            Ok(images) => serde_json::json!({"event": "done", "images": images}),
            Err(e) => {
                let e = ApiError::from(e);
                serde_json::json!({"event": "error", "code": e.code, "message": e.message})
            }
        };
        let _ = tx.send(last);
    });
    let lines = futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
        .map(|v| Ok::<_, std::io::Error>(format!("{v}\n")));
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}
