use super::*;
use crate::access::{Permissions, Principal, SiteGrant, SiteUser};
use crate::ids::Sha256Digest;
use crate::recipe::ChunkRef;
use proptest::prelude::*;

fn samples() -> Vec<Message> {
    let path = CatalogPath::parse("/fw/a.bin").unwrap();
    let blob = BlobId::of(b"blob");
    vec![
        ErrorMsg {
            code: ErrorCode::BadToken,
            message: "no".into(),
        }
        .into(),
        Enroll {
            token: "t".into(),
            node: "n1".into(),
            csr_pem: "csr".into(),
        }
        .into(),
        Enrolled {
            site: "s".into(),
            cert_pem: "c".into(),
            ca_pem: "ca".into(),
        }
        .into(),
        Hello {
            software: "0.1".into(),
            config_revision: 3,
            desired_revision: 9,
        }
        .into(),
        Welcome {
            site: "s".into(),
            node: "n".into(),
            software: "0.1".into(),
        }
        .into(),
        SiteConfigMsg {
            config: SiteConfig {
                revision: 2,
                site: "s".into(),
                users: vec![SiteUser {
                    name: "u".into(),
                    password_hash: Some("$argon2id$x".into()),
                    ssh_keys: vec![],
                }],
                grants: vec![SiteGrant {
                    principal: Principal::Anonymous,
                    prefix: CatalogPath::root(),
                    permissions: Permissions {
                        read: true,
                        list: false,
                    },
                }],
            },
        }
        .into(),
        DesiredState {
            revision: 4,
            artifacts: vec![ArtifactManifest {
                path: path.clone(),
                blob,
                len: 5,
                sha256: Sha256Digest::of(b"x"),
                modified: 1,
            }],
        }
        .into(),
        StatusReport {
            desired_revision: 4,
            artifacts: vec![ArtifactStatus {
                path,
                blob,
                state: ArtifactState::Failed,
                bytes_total: 10,
                bytes_needed: 5,
                bytes_fetched: 1,
                error: Some("disk full".into()),
            }],
        }
        .into(),
        RecipeRequest { blob }.into(),
        RecipeResponse {
            recipe: BlobRecipe {
                len: 3,
                blake3: blob,
                sha256: Sha256Digest::of(b"abc"),
                chunks: vec![ChunkRef {
                    id: ChunkId::of(b"abc"),
                    len: 3,
                }],
            },
        }
        .into(),
        ChunkRequest {
            blob,
            chunks: vec![ChunkId::of(b"a"), ChunkId::of(b"b")],
        }
        .into(),
        ImageState {
            revision: 3,
            repos: vec![ImageRepo {
                repo: "docker.io/library/nginx".into(),
                tags: vec![ImageTag {
                    tag: "1.27".into(),
                    digest: Sha256Digest::of(b"m"),
                }],
                manifests: vec![ImageManifest {
                    digest: Sha256Digest::of(b"m"),
                    media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                    blobs: vec![Sha256Digest::of(b"l")],
                    children: vec![],
                }],
            }],
        }
        .into(),
        OciResolve {
            repo: "docker.io/library/nginx".into(),
            reference: "latest".into(),
        }
        .into(),
        OciResolved {
            manifest: ImageManifest {
                digest: Sha256Digest::of(b"i"),
                media_type: "application/vnd.oci.image.index.v1+json".into(),
                blobs: vec![],
                children: vec![Sha256Digest::of(b"m")],
            },
            recipe: BlobRecipe {
                blake3: blob,
                sha256: Sha256Digest::of(b"i"),
                len: 1,
                chunks: vec![ChunkRef {
                    id: ChunkId::of(b"i"),
                    len: 1,
                }],
            },
        }
        .into(),
        OciBlobRequest {
            repo: "docker.io/library/nginx".into(),
            digest: Sha256Digest::of(b"l"),
        }
        .into(),
        OciReferrers {
            repo: "docker.io/library/nginx".into(),
            subject: Sha256Digest::of(b"m"),
        }
        .into(),
        OciReferrersList {
            referrers: vec![OciReferrer {
                digest: Sha256Digest::of(b"sig"),
                size: 3,
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                artifact_type: Some("application/vnd.dev.cosign.artifact.sig.v1+json".into()),
                annotations_json: Some(r#"{"k":"v"}"#.into()),
            }],
        }
        .into(),
        OciTags {
            repo: "docker.io/library/nginx".into(),
        }
        .into(),
        OciTagList {
            tags: vec!["1.27".into(), "latest".into()],
        }
        .into(),
        HttpsCertRequest {
            csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\n".into(),
        }
        .into(),
        HttpsCert {
            names: vec!["edge.example".into(), "10.0.0.1".into()],
            chain_pem: "-----BEGIN CERTIFICATE-----\n".into(),
        }
        .into(),
        HoldsRequest {}.into(),
        NodeStats {
            disk_total: 1 << 40,
            disk_free: 1 << 30,
            store_bytes: 1 << 20,
            artifacts_held: 3,
            artifacts_pending: 1,
            bytes_pending: 65_536,
        }
        .into(),
        Holds {
            blobs: vec![BlobId::of(b"held")],
        }
        .into(),
        ChunkData {
            id: ChunkId::of(b"abc"),
            data: b"abc".to_vec(),
        }
        .into(),
    ]
}

#[test]
fn every_message_round_trips() {
    let all = samples();
    let kinds: std::collections::HashSet<u8> = all.iter().map(Message::kind).collect();
    assert_eq!(kinds.len(), all.len(), "one sample per kind");
    let every: std::collections::HashSet<u8> = (1..=super::LAST_KIND)
        .chain([super::CHUNK_DATA_KIND])
        .collect();
    assert_eq!(
        kinds, every,
        "a sample of every kind (the fuzz tests index them)"
    );
    for m in all {
        let bytes = encode(&m);
        let (back, used) = decode(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(back, m);
    }
}

#[test]
fn chunk_header_matches_encoded_frame() {
    let c = ChunkData {
        id: ChunkId::of(b"xyz"),
        data: b"xyz".to_vec(),
    };
    let full = encode(&c.clone().into());
    let mut manual = chunk_data_header(&c.id, 3).to_vec();
    manual.extend_from_slice(b"xyz");
    assert_eq!(full, manual);
}

#[test]
fn bad_headers_are_named() {
    let good = encode(
        &RecipeRequest {
            blob: BlobId::of(b""),
        }
        .into(),
    );
    let mut b = good.clone();
    b[0] = b'X';
    assert!(matches!(decode(&b), Err(WireError::BadMagic(_))));
    let mut b = good.clone();
    b[3] = 2;
    assert_eq!(decode(&b).unwrap_err(), WireError::UnsupportedVersion(2));
    let mut b = good.clone();
    b[4] = 99;
    assert_eq!(decode(&b).unwrap_err(), WireError::UnknownKind(99));
    let mut b = good.clone();
    b[5] = 1;
    assert_eq!(decode(&b).unwrap_err(), WireError::BadFlags(1));
    let mut b = good.clone();
    b[6..10].copy_from_slice(&(MAX_FRAME + 1).to_be_bytes());
    assert_eq!(decode(&b).unwrap_err(), WireError::TooLarge(MAX_FRAME + 1));
    // trailing bytes inside the announced payload
    let mut b = good.clone();
    b.push(0);
    let len = u32::from_be_bytes(b[6..10].try_into().unwrap()) + 1;
    b[6..10].copy_from_slice(&len.to_be_bytes());
    assert!(matches!(decode(&b), Err(WireError::Malformed { .. })));
}

#[test]
fn chunk_verify_detects_corruption() {
    let mut c = ChunkData {
        id: ChunkId::of(b"abc"),
        data: b"abc".to_vec(),
    };
    c.verify().unwrap();
    c.data[0] = b'x';
    assert!(matches!(c.verify(), Err(WireError::ChunkMismatch(_))));
}

proptest! {
    /// Every truncation of every valid frame is reported as truncated, never a panic.
    #[test]
    fn truncated_frames_are_rejected(i in 0usize..64, cut in 0usize..4096) {
        let all = samples();
        let m = &all[i % all.len()];
        let bytes = encode(m);
        let cut = cut % bytes.len();
        let truncated = matches!(decode(&bytes[..cut]), Err(WireError::Truncated { .. }));
        prop_assert!(truncated);
    }

    /// Arbitrary bytes never panic the decoder.
    #[test]
    fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&data);
    }

    /// Corrupting any payload byte after a valid header never panics and never yields
    /// a different message of another kind.
    #[test]
    fn corrupted_payload_is_rejected_or_same_kind(i in 0usize..64, pos in 0usize..4096, byte in any::<u8>()) {
        let all = samples();
        let m = &all[i % all.len()];
        let mut bytes = encode(m);
        if bytes.len() > HEADER_LEN {
            let p = HEADER_LEN + pos % (bytes.len() - HEADER_LEN);
            bytes[p] = byte;
        }
        if let Ok((back, _)) = decode(&bytes) {
            prop_assert_eq!(back.kind(), m.kind());
        }
    }

    /// Frames with arbitrary header-valid kinds (ChunkData, the most decoded, included) and
    /// random bodies never panic.
    #[test]
    fn random_bodies_never_panic(kind in prop_oneof![1u8..=super::LAST_KIND, Just(super::CHUNK_DATA_KIND)],
                                 body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut f = header(kind, body.len()).to_vec();
        f.extend_from_slice(&body);
        let _ = decode(&f);
    }
}
