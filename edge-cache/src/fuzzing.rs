//! Entry points for the fuzz targets in `fuzz/` (not a stable API).
//!
//! Each function is a thin wrapper over the crate-private parser a client's bytes reach, so
//! the targets exercise exactly the code the servers run; nothing here is used by the edge
//! itself.

use std::path::Path;
use std::time::SystemTime;

use axum::http::header::{AUTHORIZATION, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, RANGE};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use sitecast_protocol::{CatalogPath, PathError, Sha256Digest};

use crate::http::RangeReq;

/// What the HTTP (and OCI) server sends for a `Range` header or conditional request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 304 Not Modified.
    NotModified,
    /// 200 with the whole body.
    Full,
    /// 206 with bytes `start..=end`.
    Part(u64, u64),
    /// 416 Range Not Satisfiable.
    Unsatisfiable,
}

impl From<RangeReq> for Answer {
    fn from(r: RangeReq) -> Self {
        match r {
            RangeReq::Full => Answer::Full,
            RangeReq::Part(a, b) => Answer::Part(a, b),
            RangeReq::Unsatisfiable => Answer::Unsatisfiable,
        }
    }
}

/// The edge's `Range` parser for a body of `len` bytes (never [`Answer::NotModified`]).
#[must_use]
pub fn http_range(value: &str, len: u64) -> Answer {
    crate::http::parse_range(value, len).into()
}

/// The conditional headers a request carries (raw bytes; values that are not valid header
/// values are left out, as hyper would refuse them).
#[derive(Debug, Clone, Default)]
pub struct Conditionals<'a> {
    /// `If-None-Match`.
    pub if_none_match: Option<&'a [u8]>,
    /// `If-Modified-Since`.
    pub if_modified_since: Option<&'a [u8]>,
    /// `Range`.
    pub range: Option<&'a [u8]>,
    /// `If-Range`.
    pub if_range: Option<&'a [u8]>,
}

/// How the HTTP server answers `c` for an artifact with this strong ETag (quoted),
/// modification time and length.
#[must_use]
pub fn http_conditional(
    c: &Conditionals<'_>,
    etag: &str,
    modified: SystemTime,
    len: u64,
) -> Answer {
    let mut h = HeaderMap::new();
    let mut put = |name: HeaderName, v: Option<&[u8]>| {
        if let Some(v) = v.and_then(|v| HeaderValue::from_bytes(v).ok()) {
            h.insert(name, v);
        }
    };
    put(IF_NONE_MATCH, c.if_none_match);
    put(IF_MODIFIED_SINCE, c.if_modified_since);
    put(RANGE, c.range);
    put(IF_RANGE, c.if_range);
    crate::http::file::conditional(&h, etag, modified, len)
        .map_or(Answer::NotModified, Answer::from)
}

/// The HTTP server's request-path parser: `(path, trailing slash)`.
///
/// # Errors
/// The message of the 400.
pub fn http_path(raw: &str) -> Result<(CatalogPath, bool), String> {
    crate::http::parse_request_path(raw)
}

/// The HTTP server's `Authorization: Basic` parser: `None` without a (valid) header value,
/// `Some(Err(()))` when it is not decodable Basic.
#[must_use]
pub fn http_basic(authorization: &[u8]) -> Option<Result<(String, String), ()>> {
    let mut h = HeaderMap::new();
    h.insert(AUTHORIZATION, HeaderValue::from_bytes(authorization).ok()?);
    crate::http::basic_credentials(&h)
}

/// Resolve a client-supplied name against a working directory, as FTP and SFTP do.
///
/// # Errors
/// The result is not a valid catalog path.
pub fn resolve(cwd: &str, name: &str) -> Result<CatalogPath, PathError> {
    crate::vfs::resolve(cwd, name)
}

/// The catalog path an FTP command names (`path` as libunftp hands it to the storage
/// back end, already joined with the session's working directory).
///
/// # Errors
/// The message of the FTP error reply.
pub fn ftp_path(path: &Path) -> Result<CatalogPath, String> {
    crate::ftp::catalog_path(path).map_err(|e| e.to_string())
}

/// The catalog path an SFTP request names.
///
/// # Errors
/// The path does not resolve to a valid catalog path.
pub fn sftp_path(path: &str) -> Result<CatalogPath, PathError> {
    crate::sftp::resolve(path)
}

/// The OCI mirror's route parser on the path after `/v2/`: `(repository, endpoint,
/// argument)`.
#[must_use]
pub fn oci_route(rest: &str) -> Option<(&str, &'static str, Option<&str>)> {
    crate::oci::fuzz_route(rest)
}

/// The OCI mirror's query parsers: the first and every value of `key`.
#[must_use]
pub fn oci_query(q: &str, key: &str) -> (Option<String>, Vec<String>) {
    (
        crate::oci::query(Some(q), key),
        crate::oci::query_all(Some(q), key),
    )
}

/// The child manifest the OCI mirror serves from an index to a client that accepts no index.
#[must_use]
pub fn oci_default_child(index: &[u8]) -> Option<Sha256Digest> {
    crate::oci::fuzz_default_child(index)
}
