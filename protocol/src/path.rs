//! Catalog paths: the names artifacts are published under (`/firmware/ap-x200/2.1.0/fw.bin`).
//!
//! A [`CatalogPath`] is absolute, `/`-separated, with no empty, `.` or `..` segment, no NUL,
//! control character or backslash, at most [`MAX_PATH_LEN`] bytes and [`MAX_SEGMENT_LEN`] bytes
//! a segment. The root `/` is a valid path (a directory, a grant prefix) but never an artifact.
//! Every server parses client-supplied names into this type before touching the catalog, so no
//! encoding of a path can step outside it.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest accepted path, in bytes.
pub const MAX_PATH_LEN: usize = 1024;
/// Longest accepted segment, in bytes.
pub const MAX_SEGMENT_LEN: usize = 255;

/// Why a path was rejected. The message names the problem, for a 400 response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Not starting with `/`.
    #[error("path must start with '/'")]
    NotAbsolute,
    /// `//` or a trailing `/`.
    #[error("path has an empty segment ('//' or a trailing '/')")]
    EmptySegment,
    /// `.` or `..`.
    #[error("path has a '.' or '..' segment")]
    DotSegment,
    /// NUL byte.
    #[error("path contains a NUL byte")]
    Nul,
    /// Control characters or backslashes.
    #[error("path contains a control character or a backslash")]
    BadCharacter,
    /// Too long overall.
    #[error("path is longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    /// A segment is too long.
    #[error("a path segment is longer than {MAX_SEGMENT_LEN} bytes")]
    SegmentTooLong,
    /// The root where an artifact path is needed.
    #[error("path names the root, not an artifact")]
    Root,
}

/// A validated catalog path (see the module docs).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CatalogPath(String);

impl CatalogPath {
    /// The root, `/`.
    #[must_use]
    pub fn root() -> Self {
        Self("/".to_owned())
    }

    /// Parse a path exactly as given.
    ///
    /// # Errors
    /// A [`PathError`] naming the first problem found.
    pub fn parse(s: &str) -> Result<Self, PathError> {
        if s.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong);
        }
        if s.contains('\0') {
            return Err(PathError::Nul);
        }
        let Some(rest) = s.strip_prefix('/') else {
            return Err(PathError::NotAbsolute);
        };
        if rest.is_empty() {
            return Ok(Self::root());
        }
        for seg in rest.split('/') {
            if seg.is_empty() {
                return Err(PathError::EmptySegment);
            }
            if seg == "." || seg == ".." {
                return Err(PathError::DotSegment);
            }
            if seg.chars().any(|c| c.is_control() || c == '\\') {
                return Err(PathError::BadCharacter);
            }
            if seg.len() > MAX_SEGMENT_LEN {
                return Err(PathError::SegmentTooLong);
            }
        }
        Ok(Self(s.to_owned()))
    }

    /// Parse a path that must name an artifact (not the root).
    ///
    /// # Errors
    /// As [`CatalogPath::parse`], or [`PathError::Root`].
    pub fn parse_artifact(s: &str) -> Result<Self, PathError> {
        let p = Self::parse(s)?;
        if p.is_root() {
            return Err(PathError::Root);
        }
        Ok(p)
    }

    /// Parse a prefix as users write it: absolute, and one trailing `/` is allowed
    /// (`/firmware/` is `/firmware`). A relative prefix is refused, not made absolute.
    ///
    /// # Errors
    /// As [`CatalogPath::parse`].
    pub fn parse_prefix(s: &str) -> Result<Self, PathError> {
        let s = s.strip_suffix('/').filter(|t| !t.is_empty()).unwrap_or(s);
        Self::parse(s)
    }

    /// The path as text, starting with `/`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is `/`.
    #[must_use]
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The segments, none for the root.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }

    /// The last segment, `""` for the root.
    #[must_use]
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }

    /// The parent directory; the root is its own parent.
    #[must_use]
    pub fn parent(&self) -> Self {
        match self.0.rfind('/') {
            Some(0) | None => Self::root(),
            Some(i) => Self(self.0[..i].to_owned()),
        }
    }

    /// This path with one more segment.
    ///
    /// # Errors
    /// If `name` is not a valid segment or the result is too long.
    pub fn join(&self, name: &str) -> Result<Self, PathError> {
        if name.contains('/') {
            return Err(PathError::BadCharacter);
        }
        if self.is_root() {
            Self::parse(&format!("/{name}"))
        } else {
            Self::parse(&format!("{}/{name}", self.0))
        }
    }

    /// Whether `self` is `prefix` or lies below it (segment-wise: `/a/b` is under `/a`, and
    /// `/ab` is not).
    #[must_use]
    pub fn is_under(&self, prefix: &CatalogPath) -> bool {
        prefix.is_root()
            || self.0 == prefix.0
            || (self.0.starts_with(&prefix.0) && self.0.as_bytes()[prefix.0.len()] == b'/')
    }
}

impl fmt::Display for CatalogPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for CatalogPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::str::FromStr for CatalogPath {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for CatalogPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CatalogPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        for p in [
            "/",
            "/a",
            "/firmware/ap-x200/2.1.0/fw.bin",
            "/a b/ü.bin",
            "/.hidden/x",
        ] {
            CatalogPath::parse(p).unwrap();
        }
    }

    #[test]
    fn rejects_hostile_paths_naming_the_problem() {
        let long_seg = format!("/{}", "a".repeat(256));
        let long = "/ab".repeat(400);
        let cases: &[(&str, PathError)] = &[
            ("", PathError::NotAbsolute),
            ("a/b", PathError::NotAbsolute),
            ("/a//b", PathError::EmptySegment),
            ("/a/", PathError::EmptySegment),
            ("/a/../b", PathError::DotSegment),
            ("/..", PathError::DotSegment),
            ("/./a", PathError::DotSegment),
            ("/a\0b", PathError::Nul),
            ("/a\\..\\b", PathError::BadCharacter),
            ("/a\nb", PathError::BadCharacter),
            (&long_seg, PathError::SegmentTooLong),
            (&long, PathError::TooLong),
        ];
        for (p, want) in cases {
            assert_eq!(CatalogPath::parse(p).unwrap_err(), *want, "{p:?}");
        }
        assert_eq!(
            CatalogPath::parse_artifact("/").unwrap_err(),
            PathError::Root
        );
    }

    #[test]
    fn prefix_and_tree_relations() {
        let p = CatalogPath::parse_prefix("/firmware/").unwrap();
        assert_eq!(p.as_str(), "/firmware");
        assert_eq!(
            CatalogPath::parse_prefix("firmware").unwrap_err(),
            PathError::NotAbsolute
        );
        assert_eq!(CatalogPath::parse_prefix("/").unwrap(), CatalogPath::root());
        let f = CatalogPath::parse("/firmware/ap/fw.bin").unwrap();
        assert!(f.is_under(&p));
        assert!(f.is_under(&CatalogPath::root()));
        assert!(!CatalogPath::parse("/firmwarex").unwrap().is_under(&p));
        assert_eq!(f.parent().as_str(), "/firmware/ap");
        assert_eq!(f.name(), "fw.bin");
        assert_eq!(
            CatalogPath::parse("/a").unwrap().parent(),
            CatalogPath::root()
        );
        assert_eq!(CatalogPath::root().join("x").unwrap().as_str(), "/x");
        assert!(p.join("..").is_err());
    }
}
