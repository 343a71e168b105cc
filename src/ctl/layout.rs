//! `sitecast ctl image push-layout DIR REPO`: push an OCI image-layout folder into the origin's
//! registry through the distribution API, as `skopeo copy --preserve-digests oci:DIR` does.
//!
//! Every tag of `index.json` (`org.opencontainers.image.ref.name`) is pushed: blobs first (a
//! `HEAD` skips those the repository holds; the rest stream from disk as monolithic uploads),
//! then platform manifests, then the index or manifest the tag names, byte-exact.

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::ApiError;

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

fn err(m: impl Into<String>) -> ApiError {
    ApiError::Transport(m.into())
}

/// The registry and credentials to push to.
pub(crate) struct Registry {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Registry {
    pub(crate) fn new(
        base: &str,
        token: String,
        ca: Option<&std::path::Path>,
    ) -> Result<Self, ApiError> {
        let base = base.trim_end_matches('/');
        let base = if base.contains("://") {
            base.to_owned()
        } else {
            format!("http://{base}")
        };
        let http = super::client::http_client(ca)?;
        Ok(Self { http, base, token })
    }

    fn req(&self, m: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(m, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    async fn check(
        &self,
        rb: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, ApiError> {
        let r = rb.send().await.map_err(|e| {
            err(format!(
                "{what}: cannot reach the registry at {}: {}",
                self.base,
                super::client::error_chain(&e)
            ))
        })?;
        if r.status().is_success() {
            return Ok(r);
        }
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        Err(ApiError::Api {
            status,
            code: body["errors"][0]["code"]
                .as_str()
                .unwrap_or("registry")
                .to_owned(),
            message: format!(
                "{what}: {}",
                body["errors"][0]["message"].as_str().unwrap_or("")
            ),
        })
    }
}

fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf, ApiError> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| err(format!("unsupported digest {digest:?} in the layout")))?;
    Ok(dir.join("blobs/sha256").join(hex))
}

fn read_json(p: &Path) -> Result<(Vec<u8>, Value), ApiError> {
    let bytes = std::fs::read(p).map_err(|e| err(format!("cannot read {}: {e}", p.display())))?;
    let v = serde_json::from_slice(&bytes)
        .map_err(|e| err(format!("{} is not JSON: {e}", p.display())))?;
    Ok((bytes, v))
}

/// Counts for the report.
#[derive(Default)]
struct Counts {
    uploaded: u64,
    bytes: u64,
    skipped: u64,
}

async fn push_blob(
    reg: &Registry,
    dir: &Path,
    repo: &str,
    digest: &str,
    c: &mut Counts,
) -> Result<(), ApiError> {
    let head = reg
        .req(Method::HEAD, &format!("/v2/{repo}/blobs/{digest}"))
        .send()
        .await
        .map_err(|e| {
            err(format!(
                "cannot reach the registry at {}: {}",
                reg.base,
                super::client::error_chain(&e)
            ))
        })?;
    if head.status() == StatusCode::OK {
        c.skipped += 1;
        return Ok(());
    }
    let p = blob_path(dir, digest)?;
    let f = tokio::fs::File::open(&p)
        .await
        .map_err(|e| err(format!("cannot open {}: {e}", p.display())))?;
    let len = f.metadata().await.map_err(|e| err(e.to_string()))?.len();
    let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024);
    reg.check(
        reg.req(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
        )
        .header(reqwest::header::CONTENT_LENGTH, len)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(reqwest::Body::wrap_stream(stream)),
        &format!("blob {digest}"),
    )
    .await?;
    c.uploaded += 1;
    c.bytes += len;
    Ok(())
}

/// Push one manifest (its blobs first, an index's children first) by digest or tag.
async fn push_manifest(
    reg: &Registry,
    dir: &Path,
    repo: &str,
    desc: &Value,
    tag: Option<&str>,
    c: &mut Counts,
) -> Result<(), ApiError> {
    let digest = desc["digest"]
        .as_str()
        .ok_or_else(|| err("descriptor without digest"))?;
    let (bytes, m) = read_json(&blob_path(dir, digest)?)?;
    let media_type = m["mediaType"]
        .as_str()
        .or_else(|| desc["mediaType"].as_str())
        .ok_or_else(|| err(format!("manifest {digest} has no media type")))?
        .to_owned();
    if INDEX_TYPES.contains(&media_type.as_str()) {
        for child in m["manifests"].as_array().into_iter().flatten() {
            Box::pin(push_manifest(reg, dir, repo, child, None, c)).await?;
        }
    } else {
        if let Some(d) = m["config"]["digest"].as_str() {
            push_blob(reg, dir, repo, d, c).await?;
        }
        for l in m["layers"].as_array().into_iter().flatten() {
            if let Some(d) = l["digest"].as_str() {
                push_blob(reg, dir, repo, d, c).await?;
            }
        }
    }
    let reference = tag.unwrap_or(digest);
    reg.check(
        reg.req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
            .header(reqwest::header::CONTENT_TYPE, media_type)
            .body(bytes),
        &format!("manifest {reference}"),
    )
    .await?;
    Ok(())
}

/// Push every tag of the layout at `dir` into `repo`.
pub(crate) async fn push(reg: &Registry, dir: &Path, repo: &str) -> Result<Value, ApiError> {
    sitecast_protocol::oci::RepoName::parse(repo).map_err(|e| err(e.to_string()))?;
    let (_, index) = read_json(&dir.join("index.json"))?;
    let mut tags = Vec::new();
    let mut c = Counts::default();
    for desc in index["manifests"].as_array().into_iter().flatten() {
        let tag = desc["annotations"]["org.opencontainers.image.ref.name"].as_str();
        push_manifest(reg, dir, repo, desc, tag, &mut c).await?;
        tags.push(json!({"tag": tag, "digest": desc["digest"]}));
    }
    if tags.is_empty() {
        return Err(err(format!(
            "{} names no manifests",
            dir.join("index.json").display()
        )));
    }
    Ok(
        json!({"repository": repo, "tags": tags, "blobs_uploaded": c.uploaded,
              "bytes_uploaded": c.bytes, "blobs_already_stored": c.skipped}),
    )
}
