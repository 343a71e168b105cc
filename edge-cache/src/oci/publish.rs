//! When a pushed tag may be served: only once its manifest, and everything that manifest
//! references (config and layers; for an index, every pushed platform manifest and theirs), is
//! published and verified here. Until then the tag keeps the digest it had (the old version
//! keeps serving), or stays unknown.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sitecast_protocol::wire::{ImageManifest, ImageState};
use sitecast_protocol::Sha256Digest;

use crate::core::Core;
use crate::error::{blocking, Error};

/// Whether manifest `d` and all it references are present (`have`), following an index's
/// children. A manifest the state does not describe is incomplete.
fn complete(
    manifests: &HashMap<Sha256Digest, &ImageManifest>,
    d: &Sha256Digest,
    have: &dyn Fn(&Sha256Digest) -> bool,
    depth: usize,
) -> bool {
    let Some(m) = manifests.get(d) else {
        return false;
    };
    depth < 8
        && have(d)
        && m.blobs.iter().all(have)
        && m.children
            .iter()
            .all(|c| complete(manifests, c, have, depth + 1))
}

/// The pushed tags to serve: each tag whose manifest is complete gets its new digest; an
/// incomplete one keeps its `current` digest if it had one. Tags the state no longer names
/// are left out (and so dropped).
pub(crate) fn tags_to_serve(
    state: &ImageState,
    current: &dyn Fn(&str, &str) -> Option<Sha256Digest>,
    have: &dyn Fn(&Sha256Digest) -> bool,
) -> BTreeMap<(String, String), Sha256Digest> {
    let mut out = BTreeMap::new();
    for r in &state.repos {
        let manifests: HashMap<Sha256Digest, &ImageManifest> =
            r.manifests.iter().map(|m| (m.digest, m)).collect();
        for t in &r.tags {
            let digest = if complete(&manifests, &t.digest, have, 0) {
                Some(t.digest)
            } else {
                current(&r.repo, &t.tag)
            };
            if let Some(d) = digest {
                out.insert((r.repo.clone(), t.tag.clone()), d);
            }
        }
    }
    out
}

/// Re-derive the served pushed tags from the stored image state and what is published (after
/// a new image state, and after every publish).
///
/// # Errors
/// Database failures.
pub(crate) async fn refresh(core: &Arc<Core>) -> Result<(), Error> {
    let catalog = core.catalog.clone();
    let changed = blocking("publish image tags", move || {
        let Some(state) = catalog.image_state()? else {
            return Ok(0);
        };
        let published = catalog.published();
        let have = |d: &Sha256Digest| {
            published.contains_key(sitecast_protocol::oci::blob_path(d).as_str())
        };
        let current = |repo: &str, tag: &str| {
            catalog
                .tag(repo, tag)
                .ok()
                .flatten()
                .filter(|t| t.pinned)
                .map(|t| t.digest)
        };
        let tags = tags_to_serve(&state, &current, &have);
        catalog.publish_tags(&tags)
    })
    .await?;
    if changed > 0 {
        tracing::info!(changed, "image tags published");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sitecast_protocol::wire::{ImageRepo, ImageTag};

    fn d(s: &str) -> Sha256Digest {
        Sha256Digest::of(s.as_bytes())
    }

    fn state(tag_to: &str) -> ImageState {
        let m = |name: &str, blobs: &[&str], children: &[&str]| ImageManifest {
            digest: d(name),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            blobs: blobs.iter().map(|b| d(b)).collect(),
            children: children.iter().map(|c| d(c)).collect(),
        };
        ImageState {
            revision: 1,
            repos: vec![ImageRepo {
                repo: "docker.io/library/app".into(),
                tags: vec![ImageTag {
                    tag: "1".into(),
                    digest: d(tag_to),
                }],
                manifests: vec![
                    m("v1", &["cfg1", "l1"], &[]),
                    m("v2", &["cfg2", "l1", "l2"], &[]),
                    m("idx", &[], &["amd", "arm"]),
                    m("amd", &["cfg1", "l1"], &[]),
                    m("arm", &["cfg2", "l2"], &[]),
                ],
            }],
        }
    }

    fn key() -> (String, String) {
        ("docker.io/library/app".into(), "1".into())
    }

    #[test]
    fn a_tag_moves_only_when_everything_is_here() {
        let held = ["v1", "cfg1", "l1", "v2", "cfg2"]; // l2 still missing
        let have = |x: &Sha256Digest| held.iter().any(|h| d(h) == *x);
        let none = |_: &str, _: &str| None;
        let old = |_: &str, _: &str| Some(d("v1"));
        // First push of v1: complete, served.
        assert_eq!(tags_to_serve(&state("v1"), &none, &have)[&key()], d("v1"));
        // Tag moved to v2 while a layer is missing: v1 keeps serving; unknown before stays so.
        assert_eq!(tags_to_serve(&state("v2"), &old, &have)[&key()], d("v1"));
        assert!(tags_to_serve(&state("v2"), &none, &have).is_empty());
        let all = |_: &Sha256Digest| true;
        assert_eq!(tags_to_serve(&state("v2"), &old, &all)[&key()], d("v2"));
    }

    #[test]
    fn an_index_waits_for_every_platform() {
        let without_arm_layer = |x: &Sha256Digest| *x != d("l2");
        let none = |_: &str, _: &str| None;
        assert!(tags_to_serve(&state("idx"), &none, &without_arm_layer).is_empty());
        let all = |_: &Sha256Digest| true;
        assert_eq!(tags_to_serve(&state("idx"), &none, &all)[&key()], d("idx"));
        // A manifest the state does not describe is never complete.
        assert!(tags_to_serve(&state("nope"), &none, &all).is_empty());
    }
}
