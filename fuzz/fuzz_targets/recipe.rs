//! Blob recipes and artifact manifests as they arrive in `RecipeResponse`, `DesiredState` and
//! the origin's database (postcard), and as JSON: decoding never panics, `validate` accepts
//! only recipes whose chunk lengths add up, and both encodings round-trip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sitecast_protocol::{ArtifactManifest, BlobRecipe, MAX_CHUNK};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = postcard::from_bytes::<BlobRecipe>(data) {
        let bin = postcard::to_stdvec(&r).unwrap();
        assert_eq!(postcard::from_bytes::<BlobRecipe>(&bin).unwrap(), r);
        let json = serde_json::to_vec(&r).unwrap();
        assert_eq!(serde_json::from_slice::<BlobRecipe>(&json).unwrap(), r);
        if r.validate().is_ok() {
            let mut next = 0u64;
            for (off, c) in r.offsets() {
                assert_eq!(off, next, "offsets are contiguous");
                assert!(c.len > 0 && c.len <= MAX_CHUNK);
                next = off + u64::from(c.len);
            }
            assert_eq!(next, r.len, "a valid recipe covers its blob exactly");
        }
    }
    if let Ok(m) = postcard::from_bytes::<ArtifactManifest>(data) {
        let bin = postcard::to_stdvec(&m).unwrap();
        assert_eq!(postcard::from_bytes::<ArtifactManifest>(&bin).unwrap(), m);
        let json = serde_json::to_vec(&m).unwrap();
        assert_eq!(
            serde_json::from_slice::<ArtifactManifest>(&json).unwrap(),
            m
        );
    }
    // The same bytes as JSON (the REST API and the edge's catalog records use JSON).
    if let Ok(r) = serde_json::from_slice::<BlobRecipe>(data) {
        let json = serde_json::to_vec(&r).unwrap();
        assert_eq!(serde_json::from_slice::<BlobRecipe>(&json).unwrap(), r);
    }
});
