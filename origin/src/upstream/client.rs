//! A client of an upstream OCI registry (reqwest): manifests and blobs, with the auth schemes
//! registries use — anonymous, HTTP Basic, and the Docker/OCI bearer-token flow (a `401` with
//! `WWW-Authenticate: Bearer realm=…,service=…,scope=…` sends us to the realm for a token,
//! with Basic credentials if we have them, and the request is retried with it).

use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{HeaderMap, ACCEPT, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use sitecast_protocol::oci::Reference;
use sitecast_protocol::Sha256Digest;

use crate::error::{Error, Result};

/// Every manifest type sitecast stores, for `Accept`.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Where and how to reach one upstream registry.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamSpec {
    /// Base URL, `https://registry.example:5000`.
    pub(crate) base: String,
    /// Basic credentials (also used to obtain bearer tokens).
    pub(crate) credentials: Option<(String, String)>,
}

impl UpstreamSpec {
    /// The registry of an image reference's host (`docker.io` is served by
    /// `registry-1.docker.io`).
    pub(crate) fn for_host(
        host: &str,
        insecure: bool,
        credentials: Option<(String, String)>,
    ) -> Self {
        let api_host = if host == "docker.io" {
            "registry-1.docker.io"
        } else {
            host
        };
        Self {
            base: format!("{}://{api_host}", if insecure { "http" } else { "https" }),
            credentials,
        }
    }
}

/// A client of one upstream registry.
pub(crate) struct Upstream {
    http: reqwest::Client,
    base: String,
    spec: UpstreamSpec,
    /// The last bearer token obtained (one scope at a time is enough for an import).
    token: Mutex<Option<String>>,
}

fn err(what: impl std::fmt::Display) -> Error {
    Error::Upstream(what.to_string())
}

impl Upstream {
    pub(crate) fn new(spec: UpstreamSpec) -> Result<Self> {
        let base = spec.base.trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("sitecast/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(err)?;
        Ok(Self {
            http,
            base,
            spec,
            token: Mutex::new(None),
        })
    }

    fn bearer(&self) -> Option<String> {
        self.token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// GET `path` (below the base URL), authenticating as the registry asks.
    async fn get(&self, path: &str, accept: Option<&str>) -> Result<Response> {
        self.request(reqwest::Method::GET, path, accept).await
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        accept: Option<&str>,
    ) -> Result<Response> {
        let url = format!("{}{path}", self.base);
        for attempt in 0..2 {
            let mut rb = self.http.request(method.clone(), &url);
            if let Some(a) = accept {
                rb = rb.header(ACCEPT, a);
            }
            if let Some(t) = self.bearer() {
                rb = rb.bearer_auth(t);
            } else if let (Some((u, p)), 1) = (&self.spec.credentials, attempt) {
                rb = rb.basic_auth(u, Some(p));
            }
            let resp = rb
                .send()
                .await
                .map_err(|e| err(format!("{method} {url}: {e}")))?;
            if resp.status() != StatusCode::UNAUTHORIZED || attempt == 1 {
                return Ok(resp);
            }
            self.authenticate(resp.headers()).await?;
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Answer a `401` challenge: obtain a bearer token, or arm Basic for the retry.
    async fn authenticate(&self, headers: &HeaderMap) -> Result<()> {
        let challenge = headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            if self.spec.credentials.is_none() {
                return Err(err(format!(
                    "{} requires credentials ({challenge:?})",
                    self.base
                )));
            }
            *self
                .token
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            return Ok(());
        }
        let params = parse_challenge(params);
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| err("bearer challenge without realm"))?;
        let query: Vec<(&str, &str)> = params
            .iter()
            .filter(|(k, _)| k == "service" || k == "scope")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut rb = self.http.get(&realm).query(&query);
        if let Some((u, p)) = &self.spec.credentials {
            rb = rb.basic_auth(u, Some(p));
        }
        let resp = rb
            .send()
            .await
            .map_err(|e| err(format!("token request to {realm}: {e}")))?;
        if !resp.status().is_success() {
            return Err(err(format!(
                "token request to {realm} answered {}",
                resp.status()
            )));
        }
        let v: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| err(format!("token response: {e}")))?;
        let token = v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .ok_or_else(|| err("token response without token"))?;
        *self
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(token.to_owned());
        Ok(())
    }

    /// A manifest: its bytes and media type. A digest reference is verified.
    pub(crate) async fn manifest(
        &self,
        path: &str,
        reference: &Reference,
        limit: u64,
    ) -> Result<(Vec<u8>, String)> {
        let resp = self
            .get(
                &format!("/v2/{path}/manifests/{reference}"),
                Some(MANIFEST_ACCEPT),
            )
            .await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Err(Error::NotFound(format!(
                "manifest {path}:{reference} is not at {}",
                self.base
            )));
        }
        if !status.is_success() {
            return Err(err(format!(
                "manifest {path}:{reference} at {}: HTTP {status}",
                self.base
            )));
        }
        let media_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
            .unwrap_or_default();
        if resp.content_length().is_some_and(|l| l > limit) {
            return Err(err(format!(
                "manifest {path}:{reference} exceeds {limit} bytes"
            )));
        }
        let bytes = resp.bytes().await.map_err(err)?;
        if bytes.len() as u64 > limit {
            return Err(err(format!(
                "manifest {path}:{reference} exceeds {limit} bytes"
            )));
        }
        if let Reference::Digest(d) = reference {
            if Sha256Digest::of(&bytes) != *d {
                return Err(err(format!(
                    "manifest {path}@{} arrived with another digest",
                    d.to_oci()
                )));
            }
        }
        Ok((bytes.to_vec(), media_type))
    }

    /// The digest a manifest reference names at the upstream, by `HEAD` (Docker Hub does not
    /// count a `HEAD` against its pull limit); `Ok(None)` when the upstream answers without a
    /// `Docker-Content-Digest`.
    pub(crate) async fn manifest_digest(
        &self,
        path: &str,
        reference: &Reference,
    ) -> Result<Option<Sha256Digest>> {
        let resp = self
            .request(
                reqwest::Method::HEAD,
                &format!("/v2/{path}/manifests/{reference}"),
                Some(MANIFEST_ACCEPT),
            )
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(Error::NotFound(format!(
                "manifest {path}:{reference} is not at {}",
                self.base
            )));
        }
        if !resp.status().is_success() {
            return Err(err(format!(
                "HEAD manifest {path}:{reference} at {}: HTTP {}",
                self.base,
                resp.status()
            )));
        }
        Ok(resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|d| sitecast_protocol::oci::parse_digest(d).ok()))
    }

    /// A blob as a streaming response (status checked).
    pub(crate) async fn blob(&self, path: &str, digest: &Sha256Digest) -> Result<Response> {
        let resp = self
            .get(&format!("/v2/{path}/blobs/{}", digest.to_oci()), None)
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(Error::NotFound(format!(
                "blob {} of {path} is not at {}",
                digest.to_oci(),
                self.base
            )));
        }
        if !resp.status().is_success() {
            return Err(err(format!(
                "blob {} of {path} at {}: HTTP {}",
                digest.to_oci(),
                self.base,
                resp.status()
            )));
        }
        Ok(resp)
    }

    /// Every tag of `path` (following `Link` pages).
    pub(crate) async fn tags(&self, path: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut next = Some(format!("/v2/{path}/tags/list?n=1000"));
        while let Some(p) = next.take() {
            let resp = self.get(&p, None).await?;
            if !resp.status().is_success() {
                return Err(err(format!("tags of {path}: HTTP {}", resp.status())));
            }
            next = resp
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| l.split_once('<'))
                .and_then(|(_, r)| r.split_once('>'))
                .map(|(u, _)| u.strip_prefix(&self.base).unwrap_or(u).to_owned());
            let v: serde_json::Value = resp.json().await.map_err(err)?;
            for t in v["tags"].as_array().into_iter().flatten() {
                if let Some(t) = t.as_str() {
                    out.push(t.to_owned());
                }
            }
            if out.len() > 100_000 {
                return Err(err(format!("{path} has more than 100,000 tags")));
            }
        }
        Ok(out)
    }
}

/// `realm="…",service="…",scope="…"` → pairs (quotes removed; commas inside quotes kept).
fn parse_challenge(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let key = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.push((key, value.to_owned()));
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::parse_challenge;

    #[test]
    fn bearer_challenges_parse() {
        let p = parse_challenge(
            r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push""#,
        );
        assert_eq!(
            p[0],
            ("realm".into(), "https://auth.docker.io/token".into())
        );
        assert_eq!(p[1], ("service".into(), "registry.docker.io".into()));
        assert_eq!(
            p[2],
            ("scope".into(), "repository:library/nginx:pull,push".into())
        );
        assert_eq!(
            parse_challenge("realm=x, service=y"),
            vec![("realm".into(), "x".into()), ("service".into(), "y".into())]
        );
        assert!(parse_challenge("").is_empty());
    }
}
