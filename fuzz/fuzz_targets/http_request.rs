//! The edge HTTP server's request path and `Authorization: Basic` parsing. Input lines: the
//! raw URL path, the `Authorization` value.
//!
//! A path is percent-decoded once and must be a valid catalog path (so no encoding of `..`
//! gets through); a path without `%` is taken as written once runs of `/` are one separator
//! (as nginx's merge_slashes); decoded Basic credentials re-encode to the same pair.
#![no_main]
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use sitecast_edge::fuzzing::{http_basic, http_path};
use sitecast_protocol::CatalogPath;

fuzz_target!(|data: &[u8]| {
    let (path, auth) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    if let Ok(raw) = std::str::from_utf8(path) {
        if let Ok((p, slash)) = http_path(raw) {
            assert_eq!(CatalogPath::parse(p.as_str()).as_ref(), Ok(&p));
            assert!(!p.segments().any(|s| s == ".." || s == "."));
            if !raw.contains('%') {
                let mut merged = String::new();
                for c in raw.chars() {
                    if !(c == '/' && merged.ends_with('/')) {
                        merged.push(c);
                    }
                }
                let want = if slash {
                    &merged[..merged.len() - 1]
                } else {
                    &merged[..]
                };
                assert_eq!(p.as_str(), want);
            }
        }
    }
    if let Some(Ok((user, password))) = http_basic(auth) {
        assert!(!user.contains(':'));
        let again = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        assert_eq!(http_basic(again.as_bytes()), Some(Ok((user, password))));
    }
});
