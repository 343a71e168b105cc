//! Registry request lines at the origin and at the edge mirror. Input lines: the path after
//! `/v2/`, the query string, the `Authorization` value.
//!
//! A route names a valid repository and prints back to the path it came from (repository
//! names contain slashes, so routes are cut from the right); query parsing never panics and
//! the edge's first-value and all-values lookups agree; a Bearer token is presented as sent.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sitecast_edge::fuzzing::{oci_query, oci_route};
use sitecast_origin::fuzzing::{registry_password, registry_query, registry_route};
use sitecast_protocol::oci::RepoName;

fuzz_target!(|data: &[u8]| {
    let mut lines = data.splitn(3, |&b| b == b'\n');
    let rest = lines
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .unwrap_or("");
    let query = lines
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .unwrap_or("");
    let auth = lines.next().unwrap_or(b"");

    if let Some((kind, repo, arg)) = registry_route(rest) {
        let path = match (kind, arg.as_deref()) {
            ("catalog", None) => "_catalog".to_owned(),
            ("tags", None) => format!("{repo}/tags/list"),
            ("uploads", None) => {
                assert!(
                    rest == format!("{repo}/blobs/uploads")
                        || rest == format!("{repo}/blobs/uploads/")
                );
                rest.to_owned()
            }
            ("uploads", Some(id)) => format!("{repo}/blobs/uploads/{id}"),
            (endpoint, Some(a)) => format!("{repo}/{endpoint}/{a}"),
            other => panic!("unexpected route {other:?}"),
        };
        assert_eq!(path, rest);
        if kind != "catalog" {
            assert!(RepoName::parse(&repo).is_ok());
        }
    }
    if let Some((name, endpoint, arg)) = oci_route(rest) {
        let path = match arg {
            Some(a) => {
                assert!(!a.is_empty() && !a.contains('/'));
                format!("{name}/{endpoint}/{a}")
            }
            None => format!("{name}/tags/list"),
        };
        assert_eq!(path, rest);
    }

    let pairs = registry_query(query);
    assert!(pairs.len() <= query.split('&').count());
    let key = query
        .split('&')
        .next()
        .and_then(|kv| kv.split('=').next())
        .unwrap_or("");
    let (first, all) = oci_query(query, key);
    assert_eq!(first.as_ref(), all.first());

    if let Some(token) = registry_password(auth) {
        let text = std::str::from_utf8(auth).unwrap().trim();
        if text.len() > 7 && text[..7].eq_ignore_ascii_case("bearer ") {
            assert_eq!(token, text[7..].trim());
        }
    }
});
