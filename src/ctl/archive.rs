//! `sitecast ctl image push-archive FILE REPO`: push an image archive into the origin's
//! registry: an OCI archive (a tar of an OCI image layout, `skopeo copy … oci-archive:`) or a
//! Docker archive (`docker save`, `skopeo copy … docker-archive:`).
//!
//! The tar is unpacked into a temporary directory next to nothing else (entries with `..` or
//! absolute paths are refused by the `tar` crate's `unpack_in`), then:
//! - an OCI layout is pushed byte-exact with [`super::layout::push`];
//! - a Docker archive has no manifest bytes of its own (`manifest.json` only names the config
//!   and layer files), so a Docker schema 2 manifest is written for each image, as `docker
//!   load` + `docker push` would: config and layers keep their bytes and digests, the manifest
//!   digest is new. Each `RepoTags` entry's tag names it (`latest` when there is none).

use std::io::Read as _;
use std::path::Path;

use serde_json::{json, Value};
use sha2::Digest as _;

use super::layout::{self, Registry};
use super::ApiError;

fn err(m: impl Into<String>) -> ApiError {
    ApiError::Transport(m.into())
}

/// Unpack `file` into `dir`.
fn unpack(file: &Path, dir: &Path) -> Result<(), ApiError> {
    let f = std::fs::File::open(file)
        .map_err(|e| err(format!("cannot open {}: {e}", file.display())))?;
    let mut ar = tar::Archive::new(f);
    for entry in ar
        .entries()
        .map_err(|e| err(format!("{} is not a tar archive: {e}", file.display())))?
    {
        let mut entry = entry.map_err(|e| err(format!("{}: {e}", file.display())))?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            continue; // links and devices have no place in an image archive
        }
        let unpacked = entry
            .unpack_in(dir)
            .map_err(|e| err(format!("{}: cannot unpack: {e}", file.display())))?;
        if !unpacked {
            return Err(err(format!(
                "{}: entry {:?} leaves the archive (absolute or '..' path)",
                file.display(),
                entry
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )));
        }
    }
    Ok(())
}

/// SHA-256 of a file, streamed.
fn sha256_file(p: &Path) -> Result<(String, u64), ApiError> {
    let mut f =
        std::fs::File::open(p).map_err(|e| err(format!("cannot open {}: {e}", p.display())))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f
            .read(&mut buf)
            .map_err(|e| err(format!("{}: {e}", p.display())))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((format!("sha256:{}", hex::encode(h.finalize())), n))
}

/// A file of the archive named by `manifest.json`, which must stay inside it.
fn member(dir: &Path, name: &str) -> Result<std::path::PathBuf, ApiError> {
    let rel = Path::new(name);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(err(format!(
            "manifest.json names {name:?} outside the archive"
        )));
    }
    Ok(dir.join(rel))
}

/// Turn an unpacked Docker archive into an OCI layout (blobs moved under `blobs/sha256`).
fn docker_to_layout(dir: &Path) -> Result<(), ApiError> {
    let text =
        std::fs::read(dir.join("manifest.json")).map_err(|e| err(format!("manifest.json: {e}")))?;
    let images: Vec<Value> = serde_json::from_slice(&text)
        .map_err(|e| err(format!("manifest.json is not a JSON list: {e}")))?;
    if images.is_empty() {
        return Err(err("manifest.json names no image"));
    }
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| err(e.to_string()))?;
    let put = |p: &Path| -> Result<(String, u64), ApiError> {
        let (d, n) = sha256_file(p)?;
        let target = blobs.join(&d["sha256:".len()..]);
        if !target.exists() {
            std::fs::copy(p, &target).map_err(|e| err(format!("{}: {e}", p.display())))?;
        }
        Ok((d, n))
    };
    let mut index = Vec::new();
    for img in &images {
        let config = img["Config"]
            .as_str()
            .ok_or_else(|| err("an image without Config"))?;
        let (cd, cl) = put(&member(dir, config)?)?;
        let mut layers = Vec::new();
        for l in img["Layers"].as_array().into_iter().flatten() {
            let l = l
                .as_str()
                .ok_or_else(|| err("a layer that is not a file name"))?;
            let (d, n) = put(&member(dir, l)?)?;
            layers.push(
                json!({"mediaType": "application/vnd.docker.image.rootfs.diff.tar",
                               "digest": d, "size": n}),
            );
        }
        let manifest = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                       "digest": cd, "size": cl},
            "layers": layers,
        }))
        .map_err(|e| err(e.to_string()))?;
        let md = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&manifest)));
        std::fs::write(blobs.join(&md["sha256:".len()..]), &manifest)
            .map_err(|e| err(e.to_string()))?;
        let tags: Vec<String> = img["RepoTags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str())
            .map(|t| {
                let slash = t.rfind('/').map_or(0, |i| i + 1);
                t[slash..]
                    .rsplit_once(':')
                    .map_or("latest", |(_, tag)| tag)
                    .to_owned()
            })
            .collect();
        for tag in if tags.is_empty() {
            vec!["latest".to_owned()]
        } else {
            tags
        } {
            index.push(
                json!({"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "digest": md, "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": tag}}),
            );
        }
    }
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(|e| err(e.to_string()))?;
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": index}))
            .map_err(|e| err(e.to_string()))?,
    )
    .map_err(|e| err(e.to_string()))
}

/// Push the archive `file` into `repo` (see the module docs); the report of
/// [`layout::push`] with the archive's `format`.
pub(crate) async fn push(reg: &Registry, file: &Path, repo: &str) -> Result<Value, ApiError> {
    let tmp = tempfile::Builder::new()
        .prefix("sitecast-archive-")
        .tempdir()
        .map_err(|e| err(format!("cannot create a temporary directory: {e}")))?;
    let (f, d) = (file.to_owned(), tmp.path().to_owned());
    let format = tokio::task::spawn_blocking(move || {
        unpack(&f, &d)?;
        if d.join("index.json").is_file() && d.join("oci-layout").is_file() {
            Ok("oci-archive")
        } else if d.join("manifest.json").is_file() {
            docker_to_layout(&d).map(|()| "docker-archive")
        } else {
            Err(err(format!(
                "{} is neither an OCI archive (oci-layout, index.json) nor a Docker archive (manifest.json)",
                f.display()
            )))
        }
    })
    .await
    .map_err(|e| err(e.to_string()))??;
    let mut v = layout::push(reg, tmp.path(), repo).await?;
    v["format"] = format.into();
    Ok(v)
}
