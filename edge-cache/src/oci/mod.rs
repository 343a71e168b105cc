//! The site's OCI registry mirror on `oci.listen`: the pull side of the distribution spec.
//!
//! Routes (GET and HEAD; anything else is `UNSUPPORTED` 405, the mirror is read-only):
//! `/v2/`, `/v2/_catalog`, `/v2/<name>/tags/list`, `/v2/<name>/manifests/<reference>`,
//! `/v2/<name>/blobs/<digest>`, `/v2/<name>/referrers/<digest>`, and `/token` (GET and POST).
//!
//! Names: the `ns` query parameter containerd adds for a mirror names the upstream registry, so
//! `ns=docker.io` + `library/nginx` is the repository `docker.io/library/nginx`. Without `ns`,
//! a name whose first component contains a `.` or `:` is taken as already qualified
//! (`harbor.example/team/app`); any other is prefixed with `oci.default_registry` (default
//! `docker.io`, where a one-component name also gains `library/`, as Docker does).
//!
//! What is served: pushed images (pinned, see [`publish`]) and what was fetched on demand
//! ([`ondemand`], bounded by [`cache`]); access as in [`auth`]; errors as spec JSON
//! ([`error`]).

mod auth;
pub(crate) mod cache;
mod db;
mod error;
pub(crate) mod ondemand;
pub(crate) mod publish;
mod serve;
mod token;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::Router;
use sitecast_protocol::oci::RepoName;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use self::error::{Code, OciError, OciResult};
use crate::core::Core;
use crate::error::Error;

/// The mirror server.
pub struct OciServer {
    core: Arc<Core>,
    cancel: CancellationToken,
}

impl OciServer {
    /// A server over `core`, stopping when `cancel` fires.
    #[must_use]
    pub fn new(core: Arc<Core>, cancel: CancellationToken) -> Self {
        Self { core, cancel }
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
        let app = Router::new().fallback(handle).with_state(self.core.clone());
        let header_timeout = self.core.cfg.http.header_timeout;
        sitecast_runtime::https::serve(listener, app, tls.as_ref(), header_timeout, self.cancel)
            .await
            .map_err(|e| Error::Task {
                name: "oci server",
                reason: e.to_string(),
            })
    }
}

/// A repository as the client named it and as the site stores it.
#[derive(Debug, Clone)]
pub(crate) struct Repo {
    /// `docker.io/library/nginx`.
    pub name: RepoName,
}

/// Map a request's name (and `ns`) to the site's repository (see the module docs).
pub(crate) fn map_name(core: &Core, name: &str, ns: Option<&str>) -> OciResult<Repo> {
    let full = match ns.filter(|n| !n.is_empty()) {
        Some(ns) => format!("{}/{name}", normalise_host(ns)),
        None => {
            let first = name.split('/').next().unwrap_or("");
            if first.contains('.') || first.contains(':') || first == "localhost" {
                name.to_owned()
            } else {
                let host = normalise_host(&core.cfg.oci.default_registry);
                if host == "docker.io" && !name.contains('/') {
                    format!("docker.io/library/{name}")
                } else {
                    format!("{host}/{name}")
                }
            }
        }
    };
    Ok(Repo {
        name: RepoName::parse(&full)?,
    })
}

/// Docker Hub goes by several host names; the site stores it as `docker.io`.
fn normalise_host(h: &str) -> String {
    match h {
        "registry-1.docker.io" | "index.docker.io" => "docker.io".to_owned(),
        other => other.to_owned(),
    }
}

/// The query parameter `key`, percent-decoded.
pub(crate) fn query(q: Option<&str>, key: &str) -> Option<String> {
    q?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Every value of query parameter `key`.
pub(crate) fn query_all(q: Option<&str>, key: &str) -> Vec<String> {
    q.map(|q| {
        q.split('&')
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k == key).then(|| {
                    percent_encoding::percent_decode_str(&v.replace('+', " "))
                        .decode_utf8_lossy()
                        .into_owned()
                })
            })
            .collect()
    })
    .unwrap_or_default()
}

async fn handle(
    State(core): State<Arc<Core>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let span = tracing::info_span!("oci", %method, %path, %client);
    let mut resp = route(&core, client, request)
        .instrument(span.clone())
        .await
        .unwrap_or_else(IntoResponse::into_response);
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    let status = resp.status();
    core.metrics.http_response(status.as_u16());
    span.in_scope(|| tracing::debug!(status = status.as_u16(), "request"));
    resp
}

/// What a `/v2/<name>/…` path asks for.
enum Endpoint<'a> {
    Manifest(&'a str),
    Blob(&'a str),
    Tags,
    Referrers(&'a str),
}

fn split_v2(rest: &str) -> Option<(&str, Endpoint<'_>)> {
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some((name, Endpoint::Tags));
    }
    for (k, marker) in ["/manifests/", "/blobs/", "/referrers/"]
        .into_iter()
        .enumerate()
    {
        if let Some(i) = rest.rfind(marker) {
            let (name, tail) = (&rest[..i], &rest[i + marker.len()..]);
            if !tail.is_empty() && !tail.contains('/') {
                let e = match k {
                    0 => Endpoint::Manifest(tail),
                    1 => Endpoint::Blob(tail),
                    _ => Endpoint::Referrers(tail),
                };
                return Some((name, e));
            }
        }
    }
    None
}

/// [`split_v2`] as `(repository, endpoint, argument)`, for the fuzz targets.
pub(crate) fn fuzz_route(rest: &str) -> Option<(&str, &'static str, Option<&str>)> {
    let (name, e) = split_v2(rest)?;
    Some(match e {
        Endpoint::Manifest(r) => (name, "manifests", Some(r)),
        Endpoint::Blob(d) => (name, "blobs", Some(d)),
        Endpoint::Tags => (name, "tags", None),
        Endpoint::Referrers(d) => (name, "referrers", Some(d)),
    })
}

/// [`serve::default_child`], for the fuzz targets.
pub(crate) fn fuzz_default_child(index: &[u8]) -> Option<sitecast_protocol::Sha256Digest> {
    serve::default_child(index)
}

async fn route(core: &Arc<Core>, client: SocketAddr, request: Request) -> OciResult<Response> {
    let (parts, body) = request.into_parts();
    let (method, headers, uri) = (parts.method, parts.headers, parts.uri);
    let path = uri.path();
    let q = uri.query();
    if path == "/token" {
        return match method {
            Method::GET => token::get(core, client.ip(), &headers, q).await,
            Method::POST => token::post(core, client.ip(), &headers, body).await,
            _ => Err(OciError::new(
                Code::Unsupported,
                "the token endpoint answers GET and POST",
            )),
        };
    }
    if method != Method::GET && method != Method::HEAD {
        return Err(OciError::new(
            Code::Unsupported,
            "the site mirror is read-only: push to the origin's registry",
        ));
    }
    let head = method == Method::HEAD;
    let caller = auth::caller(core, client.ip(), &headers).await?;
    if path == "/v2/" || path == "/v2" {
        return serve::base(core, &headers, &caller);
    }
    if path == "/v2/_catalog" {
        return serve::catalog(core, &caller, q).await;
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Err(OciError::new(Code::Unsupported, "no such endpoint")
            .with_status(axum::http::StatusCode::NOT_FOUND));
    };
    let Some((name, endpoint)) = split_v2(rest) else {
        return Err(
            OciError::new(Code::Unsupported, "no such registry endpoint")
                .with_status(axum::http::StatusCode::NOT_FOUND),
        );
    };
    let repo = map_name(core, name, query(q, "ns").as_deref())?;
    auth::check(core, &headers, &caller, repo.name.as_str(), name)?;
    match endpoint {
        Endpoint::Manifest(r) => serve::manifest(core, &repo, r, &headers, head).await,
        Endpoint::Blob(d) => serve::blob(core, &repo, d, &headers, head).await,
        Endpoint::Tags => serve::tags(core, &repo, q).await,
        Endpoint::Referrers(d) => serve::referrers(core, &repo, d, q).await,
    }
}
