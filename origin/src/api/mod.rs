//! The REST API (axum): routes, bearer-token auth, request logging, JSON bodies.
//!
//! Every route under `/api/v1` needs `Authorization: Bearer <token>` of a role allowed the
//! call, and every mutating call is audited ([`auth`]); `/healthz`, `/metrics`, the OpenAPI
//! document (`/api/v1/openapi.json`) and its docs page (`/api/v1/docs`) do not. Errors are
//! rendered by [`ApiError`]. Routes are registered with their documentation ([`openapi`]).
//! JSON bodies are limited to `max_json_body`; uploads to `max_upload`, streamed.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core::Core;

mod access;
mod artifacts;
mod auth;
mod channels;
mod error;
mod events;
mod extract;
mod images;
mod metrics;
mod openapi;
mod pushes;
pub(crate) mod ratelimit;
mod registry_grants;
mod sites;
mod tokens;
mod validate;

pub(crate) use error::{ApiError, ErrorBody};
use extract::{ApiJson, ApiPath, ApiQuery};
pub(crate) use openapi::document_json;

type AppState = Arc<Core>;
type ApiResult<T> = Result<T, ApiError>;

/// The routes under `/api/v1` that need a token. Each handler's `#[utoipa::path]` is both its
/// route and its entry in the OpenAPI document, so no route goes undocumented; register routes
/// only through `routes!` (a unit test in [`openapi`] refuses `.route(` in this module).
fn token_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(artifacts::list))
        .routes(routes!(
            artifacts::show,
            artifacts::upload,
            artifacts::remove
        ))
        .routes(routes!(channels::list))
        .routes(routes!(channels::set))
        .routes(routes!(sites::list, sites::create))
        .routes(routes!(sites::show, sites::patch, sites::remove))
        .routes(routes!(sites::join_token))
        .routes(routes!(sites::revoke_node))
        .routes(routes!(sites::set_https_names))
        .routes(routes!(access::list_users, access::create_user))
        .routes(routes!(access::delete_user, access::patch_user))
        .routes(routes!(access::add_key))
        .routes(routes!(access::delete_key))
        .routes(routes!(access::list_grants, access::create_grant))
        .routes(routes!(access::delete_grant))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::delete))
        .routes(routes!(tokens::audit))
        .routes(routes!(registry_grants::list, registry_grants::create))
        .routes(routes!(registry_grants::delete))
        .routes(routes!(pushes::list, pushes::create))
        .routes(routes!(pushes::show))
        .routes(routes!(pushes::cancel))
        .routes(routes!(pushes::pause))
        .routes(routes!(pushes::resume))
        .routes(routes!(pushes::approve))
        .routes(routes!(pushes::retry))
        .routes(routes!(events::push))
        .routes(routes!(events::all))
        .routes(routes!(images::import))
}

/// The routes under `/api/v1` that need no token: the API's own document (the docs page,
/// `/api/v1/docs`, is added by [`router`]: it is a page, not an API operation).
fn open_api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi::serve))
}

/// The routes outside `/api/v1`, which need no token.
fn top_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(metrics::metrics))
}

/// Every documented route, with the document's paths as served.
fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .nest("/api/v1", token_routes().merge(open_api_routes()))
        .merge(top_routes())
}

/// The full router.
pub(crate) fn router(core: Arc<Core>) -> Router {
    let (api, _) = token_routes().split_for_parts();
    let (open, _) = open_api_routes().split_for_parts();
    let api = api
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&core),
            auth::auth,
        ))
        .merge(open)
        .method_not_allowed_fallback(extract::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&core),
            auth::audit,
        ));
    let (top, _) = top_routes().split_for_parts();
    Router::new()
        .nest("/api/v1", api)
        .merge(top)
        .merge(openapi::docs_page())
        .method_not_allowed_fallback(extract::method_not_allowed)
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(middleware::from_fn(extract::refuse_encoded_slashes))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&core),
            ratelimit::limit,
        ))
        .layer(middleware::from_fn(log_request))
        .with_state(core)
}

/// `GET /healthz`: `ok` while the origin serves.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    operation_id = "healthz",
    security(()),
    responses((status = 200, description = "The origin serves", body = String, content_type = "text/plain", example = "ok"))
)]
async fn healthz() -> &'static str {
    "ok"
}

async fn log_request(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if path == "/healthz" {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let span = tracing::info_span!("http", %method, %path, token = tracing::field::Empty);
    let start = Instant::now();
    let resp = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    let _g = span.enter();
    tracing::info!(
        status = resp.status().as_u16(),
        ms = start.elapsed().as_millis() as u64,
        "request"
    );
    resp
}

/// Parse a JSON request body (the one place bodies are deserialized).
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// A REST request with a JSON body, for [`check_body`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `POST /users`.
    User,
    /// `PATCH /users/{name}`.
    UserPatch,
    /// `PATCH /sites/{name}`.
    SitePatch,
    /// `POST /users/{name}/keys`.
    Key,
    /// `POST /grants`.
    Grant,
    /// `POST /tokens`.
    Token,
    /// `POST /sites`.
    Site,
    /// `PUT /sites/{name}/https-names`.
    HttpsNames,
    /// `POST /pushes`.
    Push,
    /// `POST /registry-grants`.
    RegistryGrant,
    /// `POST /images/import`.
    Import,
}

impl BodyKind {
    /// Every kind.
    pub const ALL: [BodyKind; 11] = [
        BodyKind::User,
        BodyKind::Key,
        BodyKind::Grant,
        BodyKind::Token,
        BodyKind::Site,
        BodyKind::Push,
        BodyKind::RegistryGrant,
        BodyKind::Import,
        BodyKind::HttpsNames,
        BodyKind::UserPatch,
        BodyKind::SitePatch,
    ];
}

/// Parse `bytes` as the JSON body of `kind` and make every check its handler makes before the
/// database or the network: the same answer a request gets up to that point.
///
/// # Errors
/// The 400 the handler would send.
pub(crate) fn check_body(kind: BodyKind, bytes: &[u8]) -> ApiResult<()> {
    match kind {
        BodyKind::User => access::check_user(bytes),
        BodyKind::Key => access::check_key(bytes),
        BodyKind::UserPatch => access::check_user_patch(bytes),
        BodyKind::SitePatch => sites::check_patch(bytes),
        BodyKind::Grant => access::check_grant(bytes),
        BodyKind::Token => tokens::check_token(bytes),
        BodyKind::Site => sites::check_new(bytes),
        BodyKind::HttpsNames => sites::check_https_body(bytes),
        BodyKind::Push => pushes::check_new(bytes),
        BodyKind::RegistryGrant => registry_grants::check_new(bytes),
        BodyKind::Import => images::check_import(bytes),
    }
}
