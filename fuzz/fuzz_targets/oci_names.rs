//! OCI names as clients send them in URLs and as operators type image references:
//! repositories, tags, digests, references and `ImageRef`s. What parses is exactly the input
//! (names) or prints back to an equal value (references, digests, image references).
#![no_main]
use libfuzzer_sys::fuzz_target;
use sitecast_protocol::oci::{
    parse_digest, tag_ok, ImageRef, Reference, RepoName, MAX_REPO_LEN, MAX_TAG_LEN,
};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = RepoName::parse(s) {
        assert_eq!(r.as_str(), s);
        assert!(s.len() <= MAX_REPO_LEN);
        assert!(!s.contains("..") && !s.contains("//") && !s.starts_with('/'));
        if let Some(h) = r.registry_host() {
            assert!(s.starts_with(h) && s[h.len()..].starts_with('/'));
        }
    }
    if tag_ok(s) {
        assert!(s.len() <= MAX_TAG_LEN && !s.contains(':') && !s.contains('/'));
    }
    if let Ok(d) = parse_digest(s) {
        assert_eq!(
            d.to_oci(),
            s,
            "only the canonical sha256:<lowercase hex> parses"
        );
    }
    if let Ok(r) = Reference::parse(s) {
        assert_eq!(r.to_string(), s);
        assert_eq!(Reference::parse(&r.to_string()), Ok(r));
    }
    if let Ok(i) = ImageRef::parse(s) {
        let repo = i.repo();
        assert_eq!(RepoName::parse(repo.as_str()).as_ref(), Ok(&repo));
        let text = match &i.reference {
            Reference::Tag(t) => format!("{}:{t}", repo.as_str()),
            Reference::Digest(d) => format!("{}@{}", repo.as_str(), d.to_oci()),
        };
        assert_eq!(ImageRef::parse(&text), Ok(i), "{s:?} printed as {text:?}");
    }
});
