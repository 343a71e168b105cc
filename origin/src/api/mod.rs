//! The REST API (axum): routes, bearer-token auth, request logging, JSON bodies.
//!
//! Every route under `/api/v1` needs `Authorization: Bearer <token>` of a role allowed the
//! call, and every mutating call is audited ([`auth`]); `/healthz` and `/metrics` do not. Errors are rendered by [`ApiError`].
//! JSON bodies are limited to `max_json_body`; uploads to `max_upload`, streamed.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use axum::Router;

use crate::core::Core;

mod access;
mod artifacts;
mod auth;
mod error;
mod events;
mod extract;
mod images;
mod metrics;
mod pushes;
pub(crate) mod ratelimit;
mod registry_grants;
mod sites;
mod tokens;
mod validate;

pub(crate) use error::ApiError;
use extract::{ApiJson, ApiPath, ApiQuery};

type AppState = Arc<Core>;
type ApiResult<T> = Result<T, ApiError>;

/// The full router.
pub(crate) fn router(core: Arc<Core>) -> Router {
    let api = Router::new()
        .route("/artifacts", get(artifacts::list))
        .route(
            "/artifacts/{*path}",
            get(artifacts::show)
                .put(artifacts::upload)
                .delete(artifacts::remove),
        )
        .route("/sites", get(sites::list).post(sites::create))
        .route(
            "/sites/{name}",
            get(sites::show).patch(sites::patch).delete(sites::remove),
        )
        .route("/sites/{name}/join-token", post(sites::join_token))
        .route("/sites/{name}/nodes/{node}", delete(sites::revoke_node))
        .route("/sites/{name}/https-names", put(sites::set_https_names))
        .route("/users", get(access::list_users).post(access::create_user))
        .route(
            "/users/{name}",
            delete(access::delete_user).patch(access::patch_user),
        )
        .route("/users/{name}/keys", post(access::add_key))
        .route("/users/{name}/keys/{index}", delete(access::delete_key))
        .route(
            "/grants",
            get(access::list_grants).post(access::create_grant),
        )
        .route("/grants/{id}", delete(access::delete_grant))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{name}", delete(tokens::delete))
        .route("/audit", get(tokens::audit))
        .route(
            "/registry-grants",
            get(registry_grants::list).post(registry_grants::create),
        )
        .route("/registry-grants/{id}", delete(registry_grants::delete))
        .route("/pushes", get(pushes::list).post(pushes::create))
        .route("/pushes/{id}", get(pushes::show))
        .route("/pushes/{id}/cancel", post(pushes::cancel))
        .route("/pushes/{id}/pause", post(pushes::pause))
        .route("/pushes/{id}/resume", post(pushes::resume))
        .route("/pushes/{id}/approve", post(pushes::approve))
        .route("/pushes/{id}/retry", post(pushes::retry))
        .route("/pushes/{id}/events", get(events::push))
        .route("/events", get(events::all))
        .route("/images/import", post(images::import))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&core),
            auth::auth,
        ))
        .method_not_allowed_fallback(extract::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&core),
            auth::audit,
        ));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics::metrics))
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
