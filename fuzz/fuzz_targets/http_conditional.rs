//! Conditional GETs at the edge. Input lines: body length, modification time (seconds),
//! `If-None-Match`, `If-Modified-Since`, `Range`, `If-Range` (an empty line = header absent).
//!
//! A matching `If-None-Match` is always a 304; without `Range` the answer is never partial; a
//! partial answer lies inside the body; without `If-Range` the range decision is exactly the
//! `Range` parser's.
#![no_main]
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use sitecast_edge::fuzzing::{http_conditional, http_range, Answer, Conditionals};

const ETAG: &str = "\"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae\"";

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let mut num = |default: u64| {
        lines
            .next()
            .and_then(|l| std::str::from_utf8(l).ok())
            .and_then(|l| l.trim().parse::<u64>().ok())
            .unwrap_or(default)
    };
    let len = num(100);
    // Keep the time representable (HTTP dates end in year 9999).
    let modified = UNIX_EPOCH + Duration::from_secs(num(1_700_000_000) % 253_402_300_799);
    let mut field = || lines.next().filter(|l| !l.is_empty());
    let c = Conditionals {
        if_none_match: field(),
        if_modified_since: field(),
        range: field(),
        if_range: field(),
    };
    let answer = http_conditional(&c, ETAG, modified, len);
    if let Some(inm) = text(c.if_none_match) {
        if inm.split(',').any(|t| t.trim() == ETAG || t.trim() == "*") {
            assert_eq!(answer, Answer::NotModified, "If-None-Match {inm:?}");
        }
    }
    match answer {
        Answer::Part(a, b) => assert!(a <= b && b < len),
        Answer::Unsatisfiable | Answer::Full | Answer::NotModified => {}
    }
    let range = text(c.range);
    if range.is_none() {
        assert!(matches!(answer, Answer::Full | Answer::NotModified));
    }
    if let (Some(r), None) = (range, c.if_range) {
        if answer != Answer::NotModified {
            assert_eq!(answer, http_range(r, len));
        }
    }
});

/// The header as the server reads it (`HeaderValue::to_str`), if it can.
fn text(v: Option<&[u8]>) -> Option<&str> {
    v.filter(|v| visible(v))
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Whether the server reads this header value as text (`HeaderValue::to_str`).
fn visible(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
}
