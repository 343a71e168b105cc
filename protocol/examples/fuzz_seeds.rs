//! Writes the binary seeds of the fuzz corpus: one real frame per wire message kind (from the
//! encoders) and real recipes and artifact manifests (postcard and JSON), into
//! `<dir>/wire_frame/` and `<dir>/recipe/`.
//!
//! ```text
//! cargo run -p sitecast-protocol --example fuzz_seeds -- fuzz/corpus
//! ```

use std::path::Path;

use sitecast_protocol::wire::{self, Message};
use sitecast_protocol::{
    chunk_all, ArtifactManifest, BlobId, BlobRecipe, CatalogPath, ChunkId, Permissions, Principal,
    Sha256Digest, SiteConfig, SiteGrant, SiteUser,
};

fn data(len: usize, seed: u8) -> Vec<u8> {
    // Deterministic, not compressible enough to be one chunk per run.
    let mut x = u32::from(seed) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn manifest(path: &str, body: &[u8]) -> ArtifactManifest {
    ArtifactManifest {
        path: CatalogPath::parse(path).expect("a valid seed path"),
        blob: BlobId::of(body),
        len: body.len() as u64,
        sha256: Sha256Digest::of(body),
        modified: 1_700_000_000,
    }
}

fn image_manifest(body: &[u8]) -> wire::ImageManifest {
    wire::ImageManifest {
        digest: Sha256Digest::of(body),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        blobs: vec![Sha256Digest::of(b"config"), Sha256Digest::of(b"layer")],
        children: vec![],
    }
}

fn messages() -> Vec<(&'static str, Message)> {
    let fw = data(300_000, 7);
    let (cuts, recipe) = chunk_all(&fw);
    let small = b"hello, site".to_vec();
    let (_, small_recipe) = chunk_all(&small);
    let m1 = manifest("/firmware/ap-x200/2.1.0/fw.bin", &fw);
    let m2 = manifest("/pub/readme.txt", &small);
    let config = SiteConfig {
        revision: 3,
        site: "plant-7".into(),
        users: vec![SiteUser {
            name: "tech".into(),
            password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".into()),
            ssh_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBAD tech@laptop".into()],
        }],
        grants: vec![
            SiteGrant {
                principal: Principal::User("tech".into()),
                prefix: CatalogPath::parse("/firmware").unwrap(),
                permissions: Permissions {
                    read: true,
                    list: true,
                },
            },
            SiteGrant {
                principal: Principal::Anonymous,
                prefix: CatalogPath::parse("/pub").unwrap(),
                permissions: Permissions {
                    read: true,
                    list: false,
                },
            },
        ],
    };
    let repo = wire::ImageRepo {
        repo: "docker.io/library/nginx".into(),
        tags: vec![wire::ImageTag {
            tag: "1.27".into(),
            digest: Sha256Digest::of(b"{}"),
        }],
        manifests: vec![image_manifest(b"{}")],
    };
    vec![
        (
            "error",
            wire::ErrorMsg {
                code: wire::ErrorCode::NotFound,
                message: "blob is not at the origin".into(),
            }
            .into(),
        ),
        (
            "enroll",
            wire::Enroll {
                token: format!("scj1.{}.s3cr3t-_Token", "ab".repeat(32)),
                node: "edge-1".into(),
                csr_pem:
                    "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
                        .into(),
            }
            .into(),
        ),
        (
            "enrolled",
            wire::Enrolled {
                site: "plant-7".into(),
                cert_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
                ca_pem: "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n".into(),
            }
            .into(),
        ),
        (
            "hello",
            wire::Hello {
                software: "0.1.0".into(),
                config_revision: 3,
                desired_revision: 12,
            }
            .into(),
        ),
        (
            "welcome",
            wire::Welcome {
                site: "plant-7".into(),
                node: "edge-1".into(),
                software: "0.1.0".into(),
            }
            .into(),
        ),
        ("site_config", wire::SiteConfigMsg { config }.into()),
        (
            "desired_state",
            wire::DesiredState {
                revision: 12,
                artifacts: vec![m1.clone(), m2.clone()],
            }
            .into(),
        ),
        (
            "status_report",
            wire::StatusReport {
                desired_revision: 12,
                artifacts: vec![
                    wire::ArtifactStatus {
                        path: m1.path.clone(),
                        blob: m1.blob,
                        state: wire::ArtifactState::Fetching,
                        bytes_total: m1.len,
                        bytes_needed: 200_000,
                        bytes_fetched: 65_536,
                        error: None,
                    },
                    wire::ArtifactStatus {
                        path: m2.path.clone(),
                        blob: m2.blob,
                        state: wire::ArtifactState::Failed,
                        bytes_total: m2.len,
                        bytes_needed: m2.len,
                        bytes_fetched: 0,
                        error: Some("disk full".into()),
                    },
                ],
            }
            .into(),
        ),
        (
            "recipe_request",
            wire::RecipeRequest {
                blob: recipe.blake3,
            }
            .into(),
        ),
        (
            "recipe_response",
            wire::RecipeResponse {
                recipe: recipe.clone(),
            }
            .into(),
        ),
        (
            "chunk_request",
            wire::ChunkRequest {
                blob: recipe.blake3,
                chunks: recipe.chunks.iter().map(|c| c.id).collect(),
            }
            .into(),
        ),
        (
            "chunk_data",
            wire::ChunkData {
                id: ChunkId::of(&small),
                data: small.clone(),
            }
            .into(),
        ),
        (
            "chunk_data_real",
            wire::ChunkData {
                id: cuts[0].id,
                data: cuts[0].data[..512.min(cuts[0].data.len())].to_vec(),
            }
            .into(),
        ),
        (
            "image_state",
            wire::ImageState {
                revision: 12,
                repos: vec![repo],
            }
            .into(),
        ),
        (
            "oci_resolve",
            wire::OciResolve {
                repo: "docker.io/library/nginx".into(),
                reference: "1.27".into(),
            }
            .into(),
        ),
        (
            "oci_resolved",
            wire::OciResolved {
                manifest: image_manifest(b"{}"),
                recipe: small_recipe,
            }
            .into(),
        ),
        (
            "oci_blob_request",
            wire::OciBlobRequest {
                repo: "registry.example:5000/team/app".into(),
                digest: Sha256Digest::of(b"layer"),
            }
            .into(),
        ),
        (
            "oci_referrers",
            wire::OciReferrers {
                repo: "docker.io/library/nginx".into(),
                subject: Sha256Digest::of(b"manifest"),
            }
            .into(),
        ),
        (
            "oci_referrers_list",
            wire::OciReferrersList {
                referrers: vec![wire::OciReferrer {
                    digest: Sha256Digest::of(b"sig"),
                    size: 512,
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                    artifact_type: Some("application/vnd.example.sbom".into()),
                    annotations_json: Some(r#"{"org.example":"x"}"#.into()),
                }],
            }
            .into(),
        ),
        (
            "oci_tags",
            wire::OciTags {
                repo: "docker.io/library/nginx".into(),
            }
            .into(),
        ),
        (
            "oci_tag_list",
            wire::OciTagList {
                tags: vec!["1.27".into(), "latest".into()],
            }
            .into(),
        ),
        (
            "https_cert_request",
            wire::HttpsCertRequest {
                csr_pem:
                    "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"
                        .into(),
            }
            .into(),
        ),
        (
            "https_cert",
            wire::HttpsCert {
                names: vec!["edge.farm17.example".into(), "10.0.0.1".into()],
                chain_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
            }
            .into(),
        ),
        ("holds_request", wire::HoldsRequest {}.into()),
        (
            "holds",
            wire::Holds {
                blobs: vec![BlobId::of(b"held")],
            }
            .into(),
        ),
        (
            "node_stats",
            wire::NodeStats {
                disk_total: 1 << 40,
                disk_free: 1 << 30,
                store_bytes: 1 << 20,
                artifacts_held: 3,
                artifacts_pending: 1,
                bytes_pending: 65_536,
            }
            .into(),
        ),
    ]
}

fn recipes() -> Vec<(&'static str, BlobRecipe)> {
    [
        ("empty", 0usize),
        ("small", 11),
        ("one_chunk", 20_000),
        ("many", 400_000),
    ]
    .into_iter()
    .map(|(name, len)| (name, chunk_all(&data(len, 3)).1))
    .collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create the corpus directory");
    std::fs::write(dir.join(name), bytes).expect("write a seed");
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".into());
    let root = Path::new(&root);
    let wire_dir = root.join("wire_frame");
    for (name, msg) in messages() {
        write(&wire_dir, name, &wire::encode(&msg));
    }
    // Two frames back to back: decode takes the first.
    let two = [
        wire::encode(
            &wire::RecipeRequest {
                blob: BlobId::of(b"a"),
            }
            .into(),
        ),
        wire::encode(
            &wire::RecipeRequest {
                blob: BlobId::of(b"b"),
            }
            .into(),
        ),
    ]
    .concat();
    write(&wire_dir, "two_frames", &two);

    let recipe_dir = root.join("recipe");
    for (name, r) in recipes() {
        // Trim the big one so the seed stays small.
        let mut r = r;
        if r.chunks.len() > 4 {
            r.chunks.truncate(4);
            r.len = r.chunks.iter().map(|c| u64::from(c.len)).sum();
        }
        write(
            &recipe_dir,
            &format!("{name}.postcard"),
            &postcard::to_stdvec(&r).unwrap(),
        );
        write(
            &recipe_dir,
            &format!("{name}.json"),
            &serde_json::to_vec(&r).unwrap(),
        );
    }
    let m = manifest("/firmware/ap-x200/2.1.0/fw.bin", b"firmware");
    write(
        &recipe_dir,
        "manifest.postcard",
        &postcard::to_stdvec(&m).unwrap(),
    );
    write(
        &recipe_dir,
        "manifest.json",
        &serde_json::to_vec(&m).unwrap(),
    );
}
