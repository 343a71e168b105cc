//! OCI names: repository names, tags, digests and references, validated as the distribution
//! spec defines them.
//!
//! A repository is named after the upstream registry it mirrors (`docker.io/library/nginx`),
//! so the first component may contain dots and a port is not allowed (the grammar has no `:`).
//! Only `sha256` digests are accepted: every blob in sitecast is addressed by its SHA-256.

use std::fmt;

use crate::ids::Sha256Digest;

/// Longest repository name accepted (the spec suggests clients keep below 255 with the host).
pub const MAX_REPO_LEN: usize = 255;
/// Longest tag (the spec's grammar allows 128 characters).
pub const MAX_TAG_LEN: usize = 128;

/// Why an OCI name does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OciNameError {
    /// The repository name breaks the spec's grammar.
    #[error("invalid repository name {0:?}: lowercase components [a-z0-9] joined by '.', '_', '__' or '-', separated by '/', at most 255 characters")]
    Repository(String),
    /// The tag breaks the spec's grammar.
    #[error("invalid tag {0:?}: [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}")]
    Tag(String),
    /// The digest is not `sha256:` and 64 lowercase hex digits.
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex digits>")]
    Digest(String),
    /// A well-formed digest of an algorithm sitecast does not store.
    #[error("unsupported digest algorithm in {0:?}: only sha256 is supported")]
    Algorithm(String),
}

/// A validated repository name (`docker.io/library/nginx`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoName(String);

impl RepoName {
    /// Validate `s` against the spec's grammar:
    /// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`,
    /// extended by one thing: when there are two or more components, the first may end in a
    /// port (`registry.example:5000/team/app`), so a repository can be named after an upstream
    /// registry that listens on one.
    ///
    /// # Errors
    /// [`OciNameError::Repository`].
    pub fn parse(s: &str) -> Result<Self, OciNameError> {
        let bad = || OciNameError::Repository(s.chars().take(300).collect());
        if s.is_empty() || s.len() > MAX_REPO_LEN {
            return Err(bad());
        }
        for (i, comp) in s.split('/').enumerate() {
            let comp = match comp.split_once(':') {
                Some((host, port)) if i == 0 && s.contains('/') => {
                    if port.is_empty()
                        || port.len() > 5
                        || !port.bytes().all(|b| b.is_ascii_digit())
                    {
                        return Err(bad());
                    }
                    host
                }
                _ => comp,
            };
            if !component_ok(comp.as_bytes()) {
                return Err(bad());
            }
        }
        Ok(Self(s.to_owned()))
    }

    /// The first component when it names a registry host (contains `.` or `:`, or is
    /// `localhost`), as Docker's reference grammar decides.
    #[must_use]
    pub fn registry_host(&self) -> Option<&str> {
        let (first, _) = self.0.split_once('/')?;
        (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One path component: alphanumeric runs joined by `.`, `_`, `__` or one or more `-`.
fn component_ok(c: &[u8]) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < c.len() && alnum(c[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == c.len() {
            return true;
        }
        let sep = i;
        match c[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < c.len() && c[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < c.len() && c[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == sep || i == c.len() {
            return false;
        }
    }
}

/// Whether `s` is a valid tag.
#[must_use]
pub fn tag_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Parse an OCI digest; only `sha256:<hex>` is supported.
///
/// # Errors
/// [`OciNameError::Algorithm`] for another well-formed algorithm, else
/// [`OciNameError::Digest`].
pub fn parse_digest(s: &str) -> Result<Sha256Digest, OciNameError> {
    let short = || s.chars().take(200).collect::<String>();
    let Some((alg, hex)) = s.split_once(':') else {
        return Err(OciNameError::Digest(short()));
    };
    let alg_ok = !alg.is_empty()
        && alg
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
    let hex_ok = !hex.is_empty()
        && hex
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b));
    if alg != "sha256" {
        return Err(if alg_ok && hex_ok {
            OciNameError::Algorithm(short())
        } else {
            OciNameError::Digest(short())
        });
    }
    hex.parse().map_err(|_| OciNameError::Digest(short()))
}

/// Directory of the catalog under which image blobs (layers, configs, manifests) travel to
/// sites as ordinary artifacts, one per digest. Reserved: no artifact may be uploaded below it,
/// and the file protocols of an edge never show it.
pub const BLOB_DIR: &str = "/.oci";

/// The catalog path an image blob travels under: `/.oci/sha256/<hex>`.
#[must_use]
pub fn blob_path(digest: &Sha256Digest) -> crate::CatalogPath {
    crate::CatalogPath::parse(&format!("{BLOB_DIR}/sha256/{}", digest.to_hex()))
        .expect("a hex digest is a valid path segment")
}

/// Whether `path` lies in the reserved [`BLOB_DIR`].
#[must_use]
pub fn is_blob_path(path: &str) -> bool {
    path == BLOB_DIR || path.starts_with("/.oci/")
}

/// What a manifest request names: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A mutable tag.
    Tag(String),
    /// A content digest.
    Digest(Sha256Digest),
}

impl Reference {
    /// Parse a reference: a digest if it contains `:`, else a tag.
    ///
    /// # Errors
    /// [`OciNameError::Tag`] or a digest error.
    pub fn parse(s: &str) -> Result<Self, OciNameError> {
        if s.contains(':') {
            parse_digest(s).map(Self::Digest)
        } else if tag_ok(s) {
            Ok(Self::Tag(s.to_owned()))
        } else {
            Err(OciNameError::Tag(s.chars().take(200).collect()))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag(t) => f.write_str(t),
            Self::Digest(d) => f.write_str(&d.to_oci()),
        }
    }
}

/// An image reference as users type it: `[host[:port]/]path[:tag][@digest]`, normalised the
/// way Docker does (`nginx` → `docker.io/library/nginx:latest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry host (and port): `docker.io`, `registry.example:5000`.
    pub host: String,
    /// The repository path at that registry: `library/nginx`, `team/app`.
    pub path: String,
    /// Tag or digest (a digest wins when both are given).
    pub reference: Reference,
}

impl ImageRef {
    /// Parse and normalise.
    ///
    /// # Errors
    /// The first part that does not parse.
    pub fn parse(s: &str) -> Result<Self, OciNameError> {
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(parse_digest(d)?)),
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
            None => (rest, None),
        };
        let (host, path) = match name.split_once('/') {
            Some((h, p)) if h.contains('.') || h.contains(':') || h == "localhost" => {
                (h.to_owned(), p.to_owned())
            }
            _ => ("docker.io".to_owned(), name.to_owned()),
        };
        let path = if host == "docker.io" && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        RepoName::parse(&format!("{host}/{path}"))?;
        let reference = match (digest, tag) {
            (Some(d), _) => Reference::Digest(d),
            (None, Some(t)) if tag_ok(t) => Reference::Tag(t.to_owned()),
            (None, Some(t)) => return Err(OciNameError::Tag(t.to_owned())),
            (None, None) => Reference::Tag("latest".to_owned()),
        };
        Ok(Self {
            host,
            path,
            reference,
        })
    }

    /// The sitecast repository this image is stored under: `host/path`.
    #[must_use]
    pub fn repo(&self) -> RepoName {
        RepoName(format!("{}/{}", self.host, self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_the_spec_grammar() {
        for ok in [
            "nginx",
            "docker.io/library/nginx",
            "harbor.example/team/app",
            "a/b__c/d-e---f/g.h",
            "conformance/repo-a",
            "0",
            "registry.example:5000/team/app",
        ] {
            assert!(RepoName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Nginx",
            "/nginx",
            "nginx/",
            "a//b",
            "a/../b",
            "a/./b",
            "a___b",
            "a-",
            "-a",
            "a.",
            "host:5000",
            "a/host:5000/app",
            "host:/app",
            "host:12345678/app",
            "a b",
            "a\0b",
            "ü",
        ] {
            assert!(RepoName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(RepoName::parse(&"a".repeat(256)).is_err());
        assert!(RepoName::parse(&"a".repeat(255)).is_ok());
    }

    #[test]
    fn tags_and_digests() {
        assert!(tag_ok("1.27"));
        assert!(tag_ok("_x"));
        assert!(tag_ok(&"a".repeat(128)));
        assert!(!tag_ok(&"a".repeat(129)));
        assert!(!tag_ok(".x"));
        assert!(!tag_ok("-x"));
        assert!(!tag_ok("a/b"));
        let d = Sha256Digest::of(b"x");
        assert_eq!(parse_digest(&d.to_oci()), Ok(d));
        assert_eq!(Reference::parse(&d.to_oci()), Ok(Reference::Digest(d)));
        assert_eq!(Reference::parse("v1"), Ok(Reference::Tag("v1".into())));
        assert!(matches!(
            parse_digest(&format!("sha512:{}", "ab".repeat(64))),
            Err(OciNameError::Algorithm(_))
        ));
        assert!(matches!(
            parse_digest("sha256:ABC"),
            Err(OciNameError::Digest(_))
        ));
        assert!(matches!(parse_digest("nope"), Err(OciNameError::Digest(_))));
        assert!(Reference::parse("a b").is_err());
    }

    #[test]
    fn image_references_normalise_like_docker() {
        let r = ImageRef::parse("nginx").unwrap();
        assert_eq!(r.repo().as_str(), "docker.io/library/nginx");
        assert_eq!(r.reference, Reference::Tag("latest".into()));
        let r = ImageRef::parse("registry.example:5000/team/app:1.4").unwrap();
        assert_eq!(
            (r.host.as_str(), r.path.as_str()),
            ("registry.example:5000", "team/app")
        );
        assert_eq!(r.reference, Reference::Tag("1.4".into()));
        let d = Sha256Digest::of(b"m");
        let r = ImageRef::parse(&format!("localhost/a/b:1@{}", d.to_oci())).unwrap();
        assert_eq!(r.reference, Reference::Digest(d));
        assert_eq!(r.repo().registry_host(), Some("localhost"));
        assert!(ImageRef::parse("Upper/x").is_err());
        assert!(ImageRef::parse("x:bad tag").is_err());
    }
}
