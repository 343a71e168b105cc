//! The demo's sample image: a small, deterministic OCI image (one layer holding `hello.txt`)
//! written as an OCI image layout in the demo's state directory, so the demo needs nothing
//! outside the binary. Pushed into the origin's registry with the same code as
//! `ctl image push-layout`.

use std::path::Path;

use anyhow::Context as _;
use serde_json::json;
use sha2::Digest as _;

/// The sample's repository at the origin and at the site, and its tag.
pub(crate) const SAMPLE_REPO: &str = "docker.io/library/sitecast-hello";
/// The sample's tag.
pub(crate) const SAMPLE_TAG: &str = "1.0";

fn digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

fn put(dir: &Path, bytes: &[u8]) -> anyhow::Result<String> {
    let d = digest(bytes);
    let p = dir.join("blobs/sha256").join(&d["sha256:".len()..]);
    std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
    Ok(d)
}

/// Write the layout at `dir`; returns the manifest digest.
pub(crate) fn write(dir: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir.join("blobs/sha256"))
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let text = b"hello from a sitecast edge\n";
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(text.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_704_067_200);
    h.set_cksum();
    tar.append_data(&mut h, "hello.txt", &text[..])?;
    let layer = tar.into_inner()?;
    let layer_digest = put(dir, &layer)?;
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/cat", "/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))?;
    let config_digest = put(dir, &config)?;
    let manifest = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer.len()}],
    }))?;
    let manifest_digest = put(dir, &manifest)?;
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": SAMPLE_TAG},
        }]}))?,
    )?;
    Ok(manifest_digest)
}
