//! The origin's OCI registry (`registry_listen`): the push and pull sides of the OCI
//! distribution spec over the same chunk store and catalog as artifacts.
//!
//! Blobs are cut into content-defined chunks while they stream in (monolithic `POST`/`PUT` and
//! chunked `PATCH` uploads share [`crate::ingest::BlobWriter`]), so a layer shared with another
//! image or with a file is stored once, and memory stays flat for any layer size. Manifests and
//! indexes are stored byte-exact as blobs too; a manifest is accepted only when everything it
//! references is already in its repository.
//!
//! Auth ([`auth`]): a sitecast API token (everything), as `Authorization: Bearer <token>` or as
//! the password of HTTP Basic (any user name), so `skopeo --dest-creds x:TOKEN` and
//! `docker login -p TOKEN` work unchanged; or a user with registry grants on repository
//! patterns, by Basic or the bearer-token flow (`/token`).
//!
//! Routes are parsed by hand from the right (`…/manifests/<ref>`, `…/blobs/uploads/<id>`,
//! `…/blobs/<digest>`, `…/tags/list`, `…/referrers/<digest>`) because repository names contain
//! slashes.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use base64::Engine as _;
use sitecast_protocol::oci::{parse_digest, Reference, RepoName};

use crate::core::Core;

mod auth;
mod error;
pub(crate) mod manifests;
pub(crate) mod read;
pub(crate) mod uploads;

pub(crate) use error::{Code, OciError};

type RegResult<T> = Result<T, OciError>;

/// Shared state of the registry listener.
pub(crate) struct Registry {
    core: Arc<Core>,
    uploads: uploads::Sessions,
    auth: auth::Auth,
}

/// The registry's router.
pub(crate) fn router(core: Arc<Core>) -> Router {
    let reg = Arc::new(Registry {
        core,
        uploads: uploads::Sessions::default(),
        auth: auth::Auth::default(),
    });
    Router::new()
        .route("/token", any(token))
        .route("/v2", any(base))
        .route("/v2/", any(base))
        .route("/v2/{*rest}", any(dispatch))
        .fallback(|| async { OciError::no_route() })
        .layer(middleware::from_fn_with_state(Arc::clone(&reg), auth))
        .layer(middleware::from_fn(api_version))
        .with_state(reg)
}

async fn api_version(req: Request, next: Next) -> Response {
    // A request whose body an error answer leaves unread makes hyper close the connection after
    // the answer; say so, or a client that reuses the connection meanwhile sees a bare EOF.
    let has_body = req.headers().get(header::TRANSFER_ENCODING).is_some()
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("registry", %method, %path);
    let start = std::time::Instant::now();
    let mut resp = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    resp.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    if has_body && (resp.status().is_client_error() || resp.status().is_server_error()) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let _g = span.enter();
    tracing::debug!(
        status = resp.status().as_u16(),
        ms = start.elapsed().as_millis() as u64,
        "request"
    );
    resp
}

fn client_ip(req: &Request) -> std::net::IpAddr {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.ip())
}

/// Every route but `/token` needs credentials; who they are travels in the request's
/// extensions to [`handle`], which decides per repository.
async fn auth(State(reg): State<Arc<Registry>>, mut req: Request, next: Next) -> Response {
    if req.uri().path() == "/token" {
        return next.run(req).await;
    }
    let ip = client_ip(&req);
    match reg.auth.identify(&reg.core, ip, req.headers()).await {
        Ok(Some(who)) => {
            req.extensions_mut().insert(who);
            next.run(req).await
        }
        Ok(None) => auth::challenge(
            req.headers(),
            None,
            "authentication required: a sitecast API token, or a user with a registry grant",
        )
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /token` (Basic credentials) and the OAuth2 `POST /token` (`grant_type=password`).
async fn token(State(reg): State<Arc<Registry>>, req: Request) -> Response {
    let ip = client_ip(&req);
    let r: RegResult<Response> = async {
        let (parts, body) = req.into_parts();
        let (user, scopes) = if parts.method == Method::POST {
            let form = small_body(body, 16 * 1024, "token request").await?;
            let q = Query::parse(Some(&String::from_utf8_lossy(&form)));
            if q.get("grant_type") != Some("password") {
                return Err(
                    OciError::new(Code::Unsupported, "grant_type must be password")
                        .with_status(StatusCode::BAD_REQUEST),
                );
            }
            let (u, p) = (
                q.get("username").unwrap_or(""),
                q.get("password").unwrap_or(""),
            );
            reg.auth.login(&reg.core, ip, u, p).await?;
            (u.to_owned(), q.all("scope"))
        } else {
            let q = Query::parse(parts.uri.query());
            match reg.auth.identify(&reg.core, ip, &parts.headers).await? {
                // An API token is already a bearer token for everything.
                Some(auth::Identity::Token { .. }) => {
                    let t = presented_password(&parts.headers).unwrap_or_default();
                    return Ok(
                        axum::Json(serde_json::json!({"token": t, "access_token": t}))
                            .into_response(),
                    );
                }
                Some(auth::Identity::User { name, .. }) => (name, q.all("scope")),
                None => {
                    return Err(auth::challenge(
                        &parts.headers,
                        None,
                        "log in to get a token",
                    ))
                }
            }
        };
        let mut granted = Vec::new();
        for scope in scopes.iter().flat_map(|s| s.split(' ')) {
            let mut it = scope.splitn(3, ':');
            let (Some("repository"), Some(repo), Some(actions)) = (it.next(), it.next(), it.next())
            else {
                continue;
            };
            let wants_push = actions
                .split(',')
                .any(|a| a == "push" || a == "delete" || a == "*");
            if !auth::granted(&reg.core, &user, repo, auth::Action::Pull).await? {
                continue;
            }
            let push =
                wants_push && auth::granted(&reg.core, &user, repo, auth::Action::Push).await?;
            granted.push((repo.to_owned(), push));
        }
        let (t, ttl) = reg.auth.issue(&user, granted);
        Ok(
            axum::Json(serde_json::json!({"token": t, "access_token": t, "expires_in": ttl}))
                .into_response(),
        )
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

/// The API token of `Bearer <token>` or a Basic password.
fn presented_password(headers: &axum::http::HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = v.split_once(' ')?;
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Some(rest.trim().to_owned()),
        "basic" => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()?;
            let text = String::from_utf8(raw).ok()?;
            Some(text.split_once(':')?.1.to_owned())
        }
        _ => None,
    }
}

async fn base(method: Method) -> Response {
    if method == Method::GET || method == Method::HEAD {
        (StatusCode::OK, axum::Json(serde_json::json!({}))).into_response()
    } else {
        OciError::new(Code::Unsupported, "GET /v2/ only").into_response()
    }
}

/// Query parameters of a request, percent-decoded (a repeated key keeps its first value).
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        let mut out = Vec::new();
        for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let dec = |s: &str| percent_decode(&s.replace('+', " "));
            out.push((dec(k), dec(v)));
        }
        Self(out)
    }

    /// Every value of `key`.
    pub(crate) fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A parsed registry route.
enum Route {
    Catalog,
    Tags(RepoName),
    Manifest(RepoName, String),
    Blob(RepoName, String),
    Uploads(RepoName, Option<String>),
    Referrers(RepoName, String),
}

fn name(s: &str) -> RegResult<RepoName> {
    Ok(RepoName::parse(s)?)
}

fn route(rest: &str) -> RegResult<Route> {
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    if let Some(n) = rest.strip_suffix("/tags/list") {
        return Ok(Route::Tags(name(n)?));
    }
    if let Some((n, r)) = rest.rsplit_once("/manifests/") {
        return Ok(Route::Manifest(name(n)?, r.to_owned()));
    }
    if let Some(n) = rest
        .strip_suffix("/blobs/uploads")
        .or_else(|| rest.strip_suffix("/blobs/uploads/"))
    {
        return Ok(Route::Uploads(name(n)?, None));
    }
    if let Some((n, id)) = rest.rsplit_once("/blobs/uploads/") {
        return Ok(Route::Uploads(name(n)?, Some(id.to_owned())));
    }
    if let Some((n, d)) = rest.rsplit_once("/blobs/") {
        return Ok(Route::Blob(name(n)?, d.to_owned()));
    }
    if let Some((n, d)) = rest.rsplit_once("/referrers/") {
        return Ok(Route::Referrers(name(n)?, d.to_owned()));
    }
    Err(OciError::no_route())
}

async fn dispatch(State(reg): State<Arc<Registry>>, req: Request) -> Response {
    match handle(&reg, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(reg: &Arc<Registry>, req: Request) -> RegResult<Response> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let rest = path.strip_prefix("/v2/").unwrap_or(path);
    let mut q = Query::parse(parts.uri.query());
    let m = &parts.method;
    let head = *m == Method::HEAD;
    // Set by the `auth` middleware for every route it lets through; never assume more.
    let who = parts
        .extensions
        .get::<auth::Identity>()
        .cloned()
        .ok_or_else(|| OciError::new(Code::Unauthorized, "no credentials were checked"))?;
    let route = route(rest)?;
    match &route {
        Route::Catalog => {
            if !matches!(who, auth::Identity::Token { .. }) {
                return Err(OciError::new(
                    Code::Denied,
                    "the catalog needs an API token",
                ));
            }
        }
        Route::Tags(n)
        | Route::Manifest(n, _)
        | Route::Blob(n, _)
        | Route::Uploads(n, _)
        | Route::Referrers(n, _) => {
            let action = if matches!(route, Route::Uploads(..)) {
                auth::Action::Push
            } else {
                auth::action_of(m)
            };
            auth::authorize(&reg.core, &parts.headers, &who, n.as_str(), action).await?;
            if matches!(route, Route::Uploads(..)) && matches!(who, auth::Identity::User { .. }) {
                match q.get("from").map(str::to_owned) {
                    // A mount reads the source repository.
                    Some(from) => {
                        auth::authorize(&reg.core, &parts.headers, &who, &from, auth::Action::Pull)
                            .await?
                    }
                    // No mount from "any repository" for users: it would reveal blobs of
                    // repositories they may not read. The upload proceeds normally.
                    None => q.0.retain(|(k, _)| k != "mount"),
                }
            }
        }
    }
    match route {
        Route::Catalog if *m == Method::GET => manifests::catalog(reg, &q).await,
        Route::Tags(n) if *m == Method::GET => manifests::tags(reg, n, &q).await,
        Route::Manifest(n, r) => {
            // A reference that cannot exist is unknown to GET/HEAD/DELETE, invalid to PUT.
            let reference = Reference::parse(&r).map_err(|e| {
                if *m == Method::PUT {
                    OciError::from(e)
                } else {
                    OciError::new(
                        Code::ManifestUnknown,
                        format!("manifest {r:?} is unknown: {e}"),
                    )
                }
            })?;
            match *m {
                Method::GET | Method::HEAD => manifests::get(reg, n, reference, head).await,
                Method::PUT => manifests::put(reg, n, reference, &parts.headers, body).await,
                Method::DELETE => manifests::delete(reg, n, reference).await,
                _ => Err(unsupported()),
            }
        }
        Route::Blob(n, d) => {
            let digest = parse_digest(&d)?;
            match *m {
                Method::GET | Method::HEAD => {
                    let range = parts
                        .headers
                        .get(header::RANGE)
                        .and_then(|v| v.to_str().ok());
                    uploads::get_blob(reg, n, digest, range, head).await
                }
                Method::DELETE => uploads::delete_blob(reg, n, digest).await,
                _ => Err(unsupported()),
            }
        }
        Route::Uploads(n, None) if *m == Method::POST => uploads::start(reg, n, &q, body).await,
        Route::Uploads(n, Some(id)) => match *m {
            Method::PATCH => uploads::patch(reg, n, &id, &parts.headers, body).await,
            Method::PUT => uploads::finish(reg, n, &id, &q, body).await,
            Method::GET => uploads::status(reg, n, &id).await,
            Method::DELETE => uploads::cancel(reg, n, &id).await,
            _ => Err(unsupported()),
        },
        Route::Referrers(n, d) if *m == Method::GET => {
            let digest = parse_digest(&d)?;
            manifests::referrers(reg, n, digest, q.get("artifactType")).await
        }
        _ => Err(unsupported()),
    }
}

/// [`route`] as `(endpoint, repository, argument)`, for the fuzz targets.
pub(crate) fn fuzz_route(rest: &str) -> Option<(&'static str, String, Option<String>)> {
    let s = |n: RepoName| n.as_str().to_owned();
    Some(match route(rest).ok()? {
        Route::Catalog => ("catalog", String::new(), None),
        Route::Tags(n) => ("tags", s(n), None),
        Route::Manifest(n, r) => ("manifests", s(n), Some(r)),
        Route::Blob(n, d) => ("blobs", s(n), Some(d)),
        Route::Uploads(n, id) => ("uploads", s(n), id),
        Route::Referrers(n, d) => ("referrers", s(n), Some(d)),
    })
}

/// [`Query::parse`], for the fuzz targets.
pub(crate) fn fuzz_query(q: &str) -> Vec<(String, String)> {
    Query::parse(Some(q)).0
}

/// [`presented_password`], for the fuzz targets.
pub(crate) fn fuzz_password(headers: &axum::http::HeaderMap) -> Option<String> {
    presented_password(headers)
}

fn unsupported() -> OciError {
    OciError::new(Code::Unsupported, "method not allowed on this endpoint")
}

/// Read a body into memory, at most `limit` bytes.
pub(crate) async fn small_body(body: Body, limit: u64, what: &str) -> RegResult<bytes::Bytes> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        OciError::new(
            Code::SizeInvalid,
            format!("{what} exceeds the limit of {limit} bytes"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    })
}

/// Build a response with headers.
pub(crate) fn respond(status: StatusCode, headers: &[(&str, String)], body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            r.headers_mut().insert(name, value);
        }
    }
    r
}
