//! OCI distribution pulls: `GET /v2/<repo>/manifests/<ref>` with the Accept headers a container
//! runtime sends; an image index (or Docker manifest list) is resolved to the manifest of the
//! configured platform; then the config and every layer blob are fetched. Every document and
//! blob is verified against its content digest (`sha256:<hex>`), and a tag's manifest against
//! the `Docker-Content-Digest` header when the registry sends one.
//!
//! Item paths are `repo:tag` or `repo@sha256:<hex>`.

use futures::StreamExt;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::proto::http::build_client;
use crate::target::{Item, Target, Verifier};

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json,\
application/vnd.oci.image.manifest.v1+json,\
application/vnd.docker.distribution.manifest.list.v2+json,\
application/vnd.docker.distribution.manifest.v2+json";

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    os: String,
    architecture: String,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default, rename = "mediaType")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

/// One device's registry client.
pub(crate) struct OciClient {
    client: reqwest::Client,
    base: String,
    platform: (String, String),
    user: Option<String>,
    password: Option<String>,
}

/// Splits `repo:tag` / `repo@digest` into (repo, reference, digest-if-given).
fn split_ref(path: &str) -> Result<(String, String, Option<String>)> {
    let path = path.trim_start_matches('/');
    if let Some((repo, digest)) = path.split_once('@') {
        return Ok((
            repo.to_string(),
            digest.to_string(),
            Some(digest.to_string()),
        ));
    }
    // The tag follows the last ':' after the last '/' (a registry host may carry a port).
    let slash = path.rfind('/').map_or(0, |i| i + 1);
    match path[slash..].rfind(':') {
        Some(i) => Ok((
            path[..slash + i].to_string(),
            path[slash + i + 1..].to_string(),
            None,
        )),
        None => Err(Error::Config(format!(
            "oci reference {path:?} needs :tag or @digest"
        ))),
    }
}

fn sha_hex(digest: &str) -> Result<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64)
        .ok_or_else(|| Error::Protocol(format!("unsupported digest {digest:?}")))
}

impl OciClient {
    pub(crate) fn new(target: &Target) -> Result<Self> {
        let (os, arch) = target.platform.split_once('/').ok_or_else(|| {
            Error::Config(format!("platform {:?} is not os/arch", target.platform))
        })?;
        Ok(Self {
            client: build_client(target)?,
            base: target.url.trim_end_matches('/').to_string(),
            platform: (os.to_string(), arch.to_string()),
            user: target.user.clone(),
            password: target.password.clone(),
        })
    }

    async fn get(&self, url: &str, accept: Option<&str>) -> Result<reqwest::Response> {
        let mut req = self.client.get(url);
        if let Some(a) = accept {
            req = req.header(reqwest::header::ACCEPT, a);
        }
        if let Some(u) = &self.user {
            req = req.basic_auth(u, self.password.as_deref());
        }
        let resp = req.send().await?;
        match resp.status() {
            reqwest::StatusCode::OK => Ok(resp),
            reqwest::StatusCode::NOT_FOUND => Err(Error::NotFound(url.to_string())),
            s @ (reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN) => {
                Err(Error::Auth(format!("{url}: {s}")))
            }
            s => Err(Error::Status(format!("{url}: {s}"))),
        }
    }

    /// Fetches a manifest by tag or digest; verifies it; returns (bytes, parsed, digest).
    async fn manifest(
        &self,
        repo: &str,
        reference: &str,
        want: Option<&str>,
    ) -> Result<(u64, Manifest, String)> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base);
        let resp = self.get(&url, Some(ACCEPT)).await?;
        let header = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.bytes().await?;
        let mut v = Verifier::default();
        v.update(&body);
        let expected = want.map(str::to_string).or(header);
        let digest = match expected {
            Some(d) => {
                v.finish(&url, sha_hex(&d)?, None)?;
                d
            }
            None => {
                use sha2::Digest;
                format!("sha256:{}", hex::encode(sha2::Sha256::digest(&body)))
            }
        };
        let m: Manifest = serde_json::from_slice(&body)
            .map_err(|e| Error::Protocol(format!("{url}: manifest JSON: {e}")))?;
        Ok((body.len() as u64, m, digest))
    }

    async fn blob(&self, repo: &str, d: &Descriptor) -> Result<u64> {
        let url = format!("{}/v2/{repo}/blobs/{}", self.base, d.digest);
        let hex = sha_hex(&d.digest)?.to_string();
        let resp = self.get(&url, None).await?;
        let mut v = Verifier::default();
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            v.update(&chunk?);
        }
        v.finish(&url, &hex, d.size)
    }

    /// Pulls one image reference: manifest (through the index), config, layers.
    /// Returns (bytes received, documents verified).
    pub(crate) async fn fetch(&mut self, item: &Item) -> Result<(u64, u64)> {
        let (repo, reference, digest) = split_ref(&item.path)?;
        let (mut bytes, mut m, _) = self.manifest(&repo, &reference, digest.as_deref()).await?;
        let mut verified = 1;
        let is_index = m.manifests.is_some()
            || m.media_type
                .as_deref()
                .is_some_and(|t| t.contains("index") || t.contains("list"));
        if is_index {
            let list = m.manifests.take().unwrap_or_default();
            let (os, arch) = &self.platform;
            let pick = list
                .iter()
                .find(|d| {
                    d.platform
                        .as_ref()
                        .is_some_and(|p| &p.os == os && &p.architecture == arch)
                })
                .ok_or_else(|| {
                    Error::NotFound(format!("{}: no manifest for {os}/{arch}", item.path))
                })?;
            let (b, inner, _) = self
                .manifest(&repo, &pick.digest, Some(&pick.digest))
                .await?;
            bytes += b;
            verified += 1;
            m = inner;
        }
        let config = m
            .config
            .as_ref()
            .ok_or_else(|| Error::Protocol(format!("{}: manifest has no config", item.path)))?;
        bytes += self.blob(&repo, config).await?;
        verified += 1;
        for layer in m.layers.as_deref().unwrap_or_default() {
            bytes += self.blob(&repo, layer).await?;
            verified += 1;
        }
        Ok((bytes, verified))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_references() {
        assert_eq!(
            split_ref("peers/testimage:v1").unwrap(),
            ("peers/testimage".into(), "v1".into(), None)
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            split_ref(&format!("r@{d}")).unwrap(),
            ("r".into(), d.clone(), Some(d))
        );
        assert!(split_ref("peers/testimage").is_err());
    }
}
