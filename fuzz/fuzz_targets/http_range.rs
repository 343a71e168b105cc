//! `Range` and `Content-Range` headers. Input: `<body length>\n<header value>`.
//!
//! The edge (HTTP and OCI mirror) and the origin registry parse `Range` separately: both
//! must agree, never panic or overflow (a last byte of `u64::MAX` once did), and only ever
//! answer with bytes inside the body. `Content-Range` (chunked uploads) gives a start and a
//! non-zero count that fit `u64`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sitecast_edge::fuzzing::{http_range, Answer};
use sitecast_origin::fuzzing::{registry_content_range, registry_range};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (len, value) = match s.split_once('\n') {
        Some((l, v)) => (l.trim().parse::<u64>().unwrap_or(l.len() as u64), v),
        None => (100, s),
    };
    let edge = http_range(value, len);
    let registry = registry_range(Some(value), len);
    match edge {
        Answer::Part(a, b) => {
            assert!(a <= b && b < len, "{value:?} of {len}: {a}-{b}");
            assert_eq!(registry, Ok(Some((a, b + 1))), "{value:?} of {len}");
        }
        Answer::Full | Answer::Unsatisfiable => {
            assert!(
                registry.is_err(),
                "{value:?} of {len}: registry {registry:?}, edge {edge:?}"
            )
        }
        Answer::NotModified => unreachable!("a range alone is never a 304"),
    }
    if let Ok(Some((start, end))) = registry {
        assert!(start < end && end <= len);
    }
    assert_eq!(registry_range(None, len), Ok(None));
    if let Some((start, count)) = registry_content_range(value) {
        assert!(count >= 1);
        assert!(start.checked_add(count - 1).is_some());
    }
});
