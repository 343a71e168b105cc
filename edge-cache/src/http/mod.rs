//! The HTTP server: GET/HEAD over the **published catalog** (never files on disk).
//!
//! Contract:
//! - every URL path is percent-decoded and parsed as a [`CatalogPath`]; a hostile path
//!   (`%2e%2e`, NUL, backslash, empty segments) is a 400 naming the problem;
//! - a path that names a published artifact serves it (see [`file`]); a path that is a prefix
//!   of published artifacts (or `/`) serves a directory listing (see [`listing`]), with or
//!   without a trailing slash — no redirect; listing links are absolute, so both forms work;
//!   a trailing slash always means the directory;
//! - access is decided by [`crate::access::decide`] before anything about the path is revealed:
//!   no credentials and the anonymous principal not granted → 401 with
//!   `WWW-Authenticate: Basic realm="sitecast"`; wrong password → 401; valid credentials that
//!   do not grant → 403; granted but absent → 404. Clients with too many failed logins get 429
//!   with `Retry-After`, decided before any password hashing.
//! - methods other than GET and HEAD get 405.

pub(crate) mod file;
pub(crate) use self::file::{parse_range, RangeReq};
mod listing;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use base64::Engine as _;
use sitecast_protocol::CatalogPath;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::access::{decide, Action, AuthOutcome, Decision};
use crate::catalog::DirEntry;
use crate::core::Core;
use crate::error::Error;

/// The HTTP server over an edge core.
pub struct HttpServer {
    core: Arc<Core>,
    cancel: CancellationToken,
}

impl HttpServer {
    /// A server for `core`, stopping gracefully when `cancel` fires.
    #[must_use]
    pub fn new(core: Arc<Core>, cancel: CancellationToken) -> Self {
        Self { core, cancel }
    }

    /// The axum router (for embedding and tests).
    pub fn router(core: Arc<Core>) -> Router {
        Router::new().fallback(handle).with_state(core)
    }

    /// Serve on `listener` until cancelled: HTTPS with `tls`, plain HTTP without.
    ///
    /// # Errors
    /// The listener fails.
    pub async fn run(
        self,
        listener: TcpListener,
        tls: Option<sitecast_runtime::https::TlsIdentity>,
    ) -> Result<(), Error> {
        let header_timeout = self.core.cfg.http.header_timeout;
        sitecast_runtime::https::serve(
            listener,
            Self::router(self.core),
            tls.as_ref(),
            header_timeout,
            self.cancel,
        )
        .await
        .map_err(|e| Error::Task {
            name: "http server",
            reason: e.to_string(),
        })
    }
}

/// A short plain-text response.
pub(crate) fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut body = msg.into();
    body.push('\n');
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn unauthorized(msg: &str) -> Response {
    let mut r = text(StatusCode::UNAUTHORIZED, msg);
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"sitecast\""),
    );
    r
}

/// Percent-decode and validate a request path; `Ok((path, trailing_slash))`. Runs of `/` are
/// one separator, as nginx's `merge_slashes` has them (`//firmware/x` is `/firmware/x`); an
/// encoded slash or backslash (`%2F`, `%5C`) is refused, never decoded into a separator.
pub(crate) fn parse_request_path(raw: &str) -> Result<(CatalogPath, bool), String> {
    let lower = raw.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return Err("bad path: encoded slashes (%2F, %5C) are refused".to_owned());
    }
    let mut merged = String::with_capacity(raw.len());
    for c in raw.chars() {
        if !(c == '/' && merged.ends_with('/')) {
            merged.push(c);
        }
    }
    let decoded = percent_encoding::percent_decode_str(&merged)
        .decode_utf8()
        .map_err(|_| "path is not valid UTF-8".to_owned())?;
    let (text, slash) = match decoded.strip_suffix('/') {
        Some(rest) if !rest.is_empty() => (rest, true),
        _ => (decoded.as_ref(), false),
    };
    CatalogPath::parse(text)
        .map(|p| (p, slash))
        .map_err(|e| format!("bad path: {e}"))
}

/// `Authorization: Basic` credentials: `None` without the header, `Some(Err(()))` when it is not
/// decodable Basic (another scheme included).
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<Result<(String, String), ()>> {
    let value = headers.get(AUTHORIZATION)?;
    let parsed = (|| {
        let s = value.to_str().ok()?;
        let (scheme, rest) = s.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        Some((u.to_owned(), p.to_owned()))
    })();
    Some(parsed.ok_or(()))
}

async fn handle(State(core): State<Arc<Core>>, request: Request) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
    let (parts, _body) = request.into_parts();
    let (method, headers, uri) = (parts.method, parts.headers, parts.uri);
    let span = tracing::info_span!("http", %method, path = %uri.path(), %client, user = tracing::field::Empty);
    let resp = serve(&core, client, &method, &headers, &uri)
        .instrument(span.clone())
        .await;
    let status = resp.status();
    core.metrics.http_response(status.as_u16());
    span.in_scope(|| tracing::debug!(status = status.as_u16(), "request"));
    resp
}

async fn serve(
    core: &Arc<Core>,
    client: SocketAddr,
    method: &Method,
    headers: &HeaderMap,
    uri: &Uri,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are supported",
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let (path, slash) = match parse_request_path(uri.path()) {
        Ok(p) => p,
        Err(msg) => return text(StatusCode::BAD_REQUEST, msg),
    };

    let principal = match basic_credentials(headers) {
        None => None,
        Some(Err(())) => return unauthorized("malformed Authorization header (expected Basic)"),
        Some(Ok((user, password))) => {
            match core.auth.authenticate(client.ip(), &user, &password).await {
                AuthOutcome::User(u) => {
                    tracing::Span::current().record("user", u.as_str());
                    Some(u)
                }
                AuthOutcome::Invalid => return unauthorized("invalid user name or password"),
                AuthOutcome::TooMany(wait) => {
                    let mut r = text(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too many failed logins; try again later",
                    );
                    r.headers_mut()
                        .insert(RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
                    return r;
                }
            }
        }
    };

    enum Target {
        File(sitecast_protocol::ArtifactManifest),
        Dir(Vec<DirEntry>),
        Missing,
    }
    let target = match (!slash).then(|| core.catalog.lookup(&path)).flatten() {
        Some(m) => Target::File(m),
        None => core
            .catalog
            .list_dir(&path)
            .map_or(Target::Missing, Target::Dir),
    };
    let action = if matches!(target, Target::Dir(_)) {
        Action::List
    } else {
        Action::Read
    };
    let site = core.site_config();
    if decide(&site, principal.as_deref(), &path, action) == Decision::Deny {
        return match principal {
            None => unauthorized("authentication required"),
            Some(_) => text(StatusCode::FORBIDDEN, "access to this path is not granted"),
        };
    }
    let head = method == Method::HEAD;
    match target {
        Target::File(m) => file::serve(core, &m, headers, head).await,
        Target::Dir(entries) => {
            listing::serve(&site, principal.as_deref(), &path, entries, headers, head)
        }
        Target::Missing => text(StatusCode::NOT_FOUND, "not found"),
    }
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default, clippy::cloned_ref_to_slice_refs)]
mod tests;
