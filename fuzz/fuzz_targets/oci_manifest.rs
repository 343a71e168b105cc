//! Image manifests and indexes as clients `PUT` them to the origin registry (input:
//! `<Content-Type>\n<body>`, an empty first line for none), and the edge mirror's choice of
//! an index's default child.
//!
//! Analysis never panics; it reads the same references from a re-encoding of the body (it
//! depends on the JSON, not its formatting); the child the edge serves from an index is one
//! of the manifests the origin recorded for it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sitecast_edge::fuzzing::oci_default_child;
use sitecast_origin::fuzzing::manifest;

fuzz_target!(|data: &[u8]| {
    let (ct, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (Some(&data[..i]).filter(|c| !c.is_empty()), &data[i + 1..]),
        None => (None, data),
    };
    let child = oci_default_child(body);
    let Ok((media_type, refs)) = manifest(ct, body) else {
        return;
    };
    assert!(!media_type.is_empty());
    let value: serde_json::Value = serde_json::from_slice(body).expect("accepted is JSON");
    let again = serde_json::to_vec(&value).unwrap();
    let (mt2, refs2) = manifest(Some(media_type.as_bytes()), &again).expect("re-encoded");
    assert_eq!((&mt2, &refs2), (&media_type, &refs));
    let is_index = refs.refs.iter().all(|(_, m)| *m) && !refs.refs.is_empty();
    if is_index {
        if let Some(d) = child {
            assert!(
                refs.refs.iter().any(|(r, _)| *r == d),
                "default child not in the index"
            );
        }
    }
});
