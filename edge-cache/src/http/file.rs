//! Serving one published artifact: conditionals, ranges, and a body streamed chunk by chunk.
//!
//! - strong `ETag` = `"<sha256 hex>"`, `Last-Modified` from the manifest, `Accept-Ranges: bytes`;
//! - `If-None-Match` (any listed tag, weak comparison, or `*`) → 304; without it,
//!   `If-Modified-Since` not older than the artifact → 304;
//! - one `Range` (`a-b`, `a-`, `-n`) → 206 with `Content-Range`; an unsatisfiable one → 416 with
//!   `Content-Range: bytes */<len>`; several ranges or a malformed header → 200 with everything;
//! - `If-Range` (an ETag, compared strongly, or an HTTP date equal to `Last-Modified`) keeps the
//!   range only when it matches;
//! - the body is read from the chunk store one chunk at a time (each read verified against the
//!   chunk id), one chunk ahead, so memory stays bounded whatever the file size. A chunk that
//!   cannot be read aborts the response (the client sees a short body, never wrong bytes).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED, RANGE,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use sitecast_protocol::ArtifactManifest;

use super::text;
use crate::core::Core;
use crate::vfs::Content;

/// What a `Range` header asks for, against a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeReq {
    /// No (usable) range: the whole body.
    Full,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// Nothing satisfiable.
    Unsatisfiable,
}

/// Parse a `Range` header value for a body of `len` bytes (see the module docs).
pub(crate) fn parse_range(value: &str, len: u64) -> RangeReq {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeReq::Full;
    };
    if spec.contains(',') {
        return RangeReq::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeReq::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return RangeReq::Full;
        };
        if n == 0 || len == 0 {
            return RangeReq::Unsatisfiable;
        }
        return RangeReq::Part(len.saturating_sub(n), len - 1);
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeReq::Full;
    };
    let end = if b.is_empty() {
        None
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => Some(e),
            _ => return RangeReq::Full,
        }
    };
    if start >= len {
        return RangeReq::Unsatisfiable;
    }
    RangeReq::Part(start, end.map_or(len - 1, |e| e.min(len - 1)))
}

fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.trim_start_matches("W/") == etag)
}

fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("json") => "application/json",
        Some("txt" | "log" | "md") => "text/plain; charset=utf-8",
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("xml") => "application/xml",
        Some("tar") => "application/x-tar",
        Some("gz" | "tgz") => "application/gzip",
        Some("zip") => "application/zip",
        Some("pem" | "crt") => "application/x-pem-file",
        _ => "application/octet-stream",
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &axum::http::HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn set(r: &mut Response, name: axum::http::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

/// The conditional and range headers against an artifact with this strong `etag` (quoted),
/// modification time and length (see the module docs): `None` for 304 Not Modified, else
/// what to send.
pub(crate) fn conditional(
    headers: &HeaderMap,
    etag: &str,
    modified: SystemTime,
    len: u64,
) -> Option<RangeReq> {
    if let Some(inm) = header_str(headers, &IF_NONE_MATCH) {
        if etag_matches(inm, etag) {
            return None;
        }
    } else if let Some(ims) =
        header_str(headers, &IF_MODIFIED_SINCE).and_then(|s| httpdate::parse_http_date(s).ok())
    {
        if modified <= ims {
            return None;
        }
    }
    let mut range = header_str(headers, &RANGE).map_or(RangeReq::Full, |v| parse_range(v, len));
    if range != RangeReq::Full {
        if let Some(ir) = header_str(headers, &IF_RANGE) {
            let ok = if ir.trim_start().starts_with('"') {
                ir.trim() == etag
            } else {
                httpdate::parse_http_date(ir).is_ok_and(|d: SystemTime| d == modified)
            };
            if !ok {
                range = RangeReq::Full;
            }
        }
    }
    Some(range)
}

/// Serve `m` (already authorized).
pub(crate) async fn serve(
    core: &Arc<Core>,
    m: &ArtifactManifest,
    headers: &HeaderMap,
    head: bool,
) -> Response {
    let etag = format!("\"{}\"", m.sha256.to_hex());
    let modified = UNIX_EPOCH + Duration::from_secs(m.modified);
    let last_modified = httpdate::fmt_http_date(modified);
    let base = |status: StatusCode, body: Body| {
        let mut r = Response::new(body);
        *r.status_mut() = status;
        set(&mut r, ETAG, &etag);
        set(&mut r, LAST_MODIFIED, &last_modified);
        set(&mut r, ACCEPT_RANGES, "bytes");
        set(&mut r, CACHE_CONTROL, "no-cache");
        r
    };

    let range = match conditional(headers, &etag, modified, m.len) {
        Some(range) => range,
        None => return base(StatusCode::NOT_MODIFIED, Body::empty()),
    };
    let len = m.len;
    let (status, start, end) = match range {
        RangeReq::Full => (StatusCode::OK, 0, len),
        RangeReq::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b + 1),
        RangeReq::Unsatisfiable => {
            let mut r = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable");
            set(&mut r, CONTENT_RANGE, &format!("bytes */{len}"));
            set(&mut r, ETAG, &etag);
            set(&mut r, ACCEPT_RANGES, "bytes");
            return r;
        }
    };

    let body = if head || start == end {
        Body::empty()
    } else {
        match body_stream(core, m, start, end).await {
            Ok(b) => b,
            Err(msg) => {
                tracing::error!(path = %m.path, error = %msg, "cannot serve artifact");
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "artifact is unreadable at this edge",
                );
            }
        }
    };
    let mut r = base(status, body);
    set(&mut r, CONTENT_TYPE, content_type(m.path.name()));
    set(&mut r, CONTENT_LENGTH, &(end - start).to_string());
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            &mut r,
            CONTENT_RANGE,
            &format!("bytes {start}-{}/{len}", end - 1),
        );
    }
    r
}

/// The body for bytes `start..end` of `m`: chunks read in batches of about [`crate::vfs::READ_BATCH_BYTES`] on
/// the blocking pool (one thread hand-off per batch), the next batch read while this one is
/// sent.
async fn body_stream(
    core: &Arc<Core>,
    m: &ArtifactManifest,
    start: u64,
    end: u64,
) -> Result<Body, String> {
    let content = Arc::new(Content::open(core, m).await.map_err(|e| e.to_string())?);
    let (Some(first), Some(last)) = (content.chunk_at(start), content.chunk_at(end - 1)) else {
        return Ok(Body::empty());
    };
    let core = core.clone();
    let batches = content.batches(first..last + 1, crate::vfs::READ_BATCH_BYTES);
    let stream = futures::stream::iter(batches)
        .map(move |(from, to)| {
            let content = content.clone();
            async move {
                let pieces = content
                    .range_pieces(from, to, start, end)
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                Ok::<_, std::io::Error>(futures::stream::iter(
                    pieces.into_iter().map(Ok::<Bytes, std::io::Error>),
                ))
            }
        })
        .buffered(2)
        .try_flatten()
        .inspect_ok(move |piece: &Bytes| {
            core.metrics
                .http_bytes_served
                .fetch_add(piece.len() as u64, Ordering::Relaxed);
        });
    Ok(Body::from_stream(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeReq::{Full, Part, Unsatisfiable};
        let cases: &[(&str, u64, RangeReq)] = &[
            ("bytes=0-9", 100, Part(0, 9)),
            ("bytes=90-", 100, Part(90, 99)),
            ("bytes=90-200", 100, Part(90, 99)),
            ("bytes=-10", 100, Part(90, 99)),
            ("bytes=-200", 100, Part(0, 99)),
            ("bytes=100-", 100, Unsatisfiable),
            ("bytes=-0", 100, Unsatisfiable),
            ("bytes=0-0", 0, Unsatisfiable),
            ("bytes=5-2", 100, Full),
            ("bytes=0-1,5-6", 100, Full),
            ("items=0-1", 100, Full),
            ("bytes=x-1", 100, Full),
        ];
        for (h, len, want) in cases {
            assert_eq!(parse_range(h, *len), *want, "{h} of {len}");
        }
    }
}
