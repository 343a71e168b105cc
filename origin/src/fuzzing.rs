//! Entry points for the fuzz targets in `fuzz/` (not a stable API).
//!
//! Each function is a thin wrapper over the crate-private parser a request's bytes reach, so
//! the targets exercise exactly the code the servers run; nothing here is used by the origin
//! itself.

use axum::http::{header, HeaderMap, HeaderValue};
use sitecast_protocol::Sha256Digest;

pub use crate::api::BodyKind;
use crate::db::oci::RefKind;

/// The registry's `Range` parser: `[start, end)` within `len`, `Ok(None)` without a header,
/// `Err(())` when unsatisfiable or malformed.
#[allow(clippy::result_unit_err)]
pub fn registry_range(value: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    crate::registry::read::range(value, len)
}

/// The registry's `Content-Range` parser (chunked uploads): `(start, count)`.
#[must_use]
pub fn registry_content_range(value: &str) -> Option<(u64, u64)> {
    crate::registry::uploads::parse_content_range(value)
}

/// The registry's route parser on the path after `/v2/`: `(endpoint, repository, argument)`,
/// `None` for no route.
#[must_use]
pub fn registry_route(rest: &str) -> Option<(&'static str, String, Option<String>)> {
    crate::registry::fuzz_route(rest)
}

/// The registry's query-string parser: every `(key, value)`, percent-decoded, in order.
#[must_use]
pub fn registry_query(query: &str) -> Vec<(String, String)> {
    crate::registry::fuzz_query(query)
}

/// The API token an `Authorization` header value presents to the registry (`Bearer` or the
/// Basic password).
#[must_use]
pub fn registry_password(authorization: &[u8]) -> Option<String> {
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_bytes(authorization).ok()?,
    );
    crate::registry::fuzz_password(&h)
}

/// What a manifest or index references, as the registry's `PUT` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRefs {
    /// Referenced digests; `true` for a child manifest, `false` for a blob.
    pub refs: Vec<(Sha256Digest, bool)>,
    /// The referrers API's artifact type.
    pub artifact_type: Option<String>,
    /// The subject, if any.
    pub subject: Option<Sha256Digest>,
    /// The annotations object, as JSON text.
    pub annotations: Option<String>,
}

/// Analyse a manifest upload: the media type (from `content_type`, else the body's
/// `mediaType`) and what the body references.
///
/// # Errors
/// The message of the registry's `MANIFEST_INVALID` answer.
pub fn manifest(
    content_type: Option<&[u8]>,
    bytes: &[u8],
) -> Result<(String, ManifestRefs), String> {
    let mut h = HeaderMap::new();
    if let Some(ct) = content_type.and_then(|c| HeaderValue::from_bytes(c).ok()) {
        h.insert(header::CONTENT_TYPE, ct);
    }
    let media_type =
        crate::registry::manifests::media_type_of(&h, bytes).map_err(|e| e.message().to_owned())?;
    let a = crate::registry::manifests::analyse(&media_type, bytes)
        .map_err(|e| e.message().to_owned())?;
    let refs = a
        .refs
        .into_iter()
        .map(|(d, k)| (d, matches!(k, RefKind::Manifest)))
        .collect();
    Ok((
        media_type,
        ManifestRefs {
            refs,
            artifact_type: a.artifact_type,
            subject: a.subject,
            annotations: a.annotations,
        },
    ))
}

/// Parse a REST request body as its handler does and make every check the handler makes
/// before the database or the network.
///
/// # Errors
/// The message of the 400 the handler would send.
pub fn rest_body(kind: BodyKind, bytes: &[u8]) -> Result<(), String> {
    crate::api::check_body(kind, bytes).map_err(|e| e.message)
}
