//! `/api/v1/images`: imports from upstream registries.

use axum::body::Body;
use axum::extract::State;
use axum::Json;

use super::{json_body, ApiResult, AppState};
use crate::upstream::{self, ImportRequest};

/// `POST /api/v1/images/import` → `{"images": [Imported…]}` once everything is stored.
pub(super) async fn import(
    State(core): State<AppState>,
    body: Body,
) -> ApiResult<Json<serde_json::Value>> {
    let req: ImportRequest = json_body(&core, body).await?;
    let images = upstream::import(&core, req).await?;
    Ok(Json(serde_json::json!({ "images": images })))
}
