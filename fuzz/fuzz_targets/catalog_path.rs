//! Catalog paths (every server parses client names into one): what parses is exactly the
//! input, has no empty, `.` or `..` segment, no NUL/control/backslash, respects the length
//! limits, and its parent/name/join/is_under relations hold. Prefix parsing and serde agree.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sitecast_protocol::{CatalogPath, PathError, MAX_PATH_LEN, MAX_SEGMENT_LEN};

fn check_valid(p: &CatalogPath) {
    let s = p.as_str();
    assert!(s.starts_with('/') && s.len() <= MAX_PATH_LEN);
    assert!(!s.chars().any(|c| c.is_control() || c == '\\'));
    if !p.is_root() {
        assert!(!s.ends_with('/'));
        for seg in s[1..].split('/') {
            assert!(!seg.is_empty() && seg != "." && seg != "..", "{s:?}");
            assert!(seg.len() <= MAX_SEGMENT_LEN);
        }
    }
    assert_eq!(CatalogPath::parse(s).as_ref(), Ok(p));
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = CatalogPath::parse(s);
    if let Ok(p) = &parsed {
        assert_eq!(p.as_str(), s, "a path is accepted exactly as given");
        check_valid(p);
        let parent = p.parent();
        check_valid(&parent);
        assert!(p.is_under(&parent) && p.is_under(&CatalogPath::root()));
        if p.is_root() {
            assert_eq!(p.segments().count(), 0);
        } else {
            assert_eq!(parent.join(p.name()).as_ref(), Ok(p));
            assert_eq!(
                format!("/{}", p.segments().collect::<Vec<_>>().join("/")),
                s
            );
        }
    }
    assert_eq!(
        CatalogPath::parse_artifact(s),
        parsed.clone().and_then(|p| if p.is_root() {
            Err(PathError::Root)
        } else {
            Ok(p)
        })
    );
    // serde (JSON bodies, catalog records) validates the same way.
    let json = serde_json::to_string(s).unwrap();
    assert_eq!(
        serde_json::from_str::<CatalogPath>(&json).ok(),
        parsed.clone().ok()
    );
    if let Ok(prefix) = CatalogPath::parse_prefix(s) {
        check_valid(&prefix);
        if let Ok(p) = &parsed {
            assert_eq!(&prefix, p, "an exact path is its own prefix");
        }
        // Segment-wise containment: `/ab` is not under `/a`.
        if let Ok(p) = &parsed {
            if p.is_under(&prefix) && !prefix.is_root() && p != &prefix {
                assert!(p.as_str().as_bytes()[prefix.as_str().len()] == b'/');
            }
        }
    }
    // `join` of an arbitrary name never yields an invalid path.
    if let Ok(j) = CatalogPath::root().join(s) {
        check_valid(&j);
    }
});
