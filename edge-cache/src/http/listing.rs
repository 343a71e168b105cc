//! Directory listings, as HTML (default) or JSON (`Accept: application/json`):
//!
//! ```json
//! {"path":"/fw","entries":[{"name":"a.bin","type":"file","size":3,"modified":"2026-01-01T00:00:00Z","sha256":"…"},
//!                          {"name":"sub","type":"dir","size":null,"modified":"…","sha256":null}]}
//! ```
//!
//! Only entries the principal may see are listed ([`crate::access::visible`]). Links are
//! absolute and percent-encoded, so the listing works with or without a trailing slash.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde::Serialize;
use sitecast_protocol::{CatalogPath, SiteConfig};

use crate::access::visible;
use crate::catalog::DirEntry;

/// Characters escaped in a path segment of a link.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'\'')
    .add(b'&');

#[derive(Serialize)]
struct JsonListing<'a> {
    path: &'a str,
    entries: Vec<JsonEntry>,
}

#[derive(Serialize)]
struct JsonEntry {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    size: Option<u64>,
    modified: String,
    sha256: Option<String>,
}

fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

fn href(path: &CatalogPath, dir: bool) -> String {
    let mut out = String::new();
    for seg in path.segments() {
        out.push('/');
        out.extend(utf8_percent_encode(seg, SEGMENT));
    }
    if dir || out.is_empty() {
        out.push('/');
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"))
}

/// Render the listing of `dir` (already authorized for listing).
pub(crate) fn serve(
    site: &SiteConfig,
    principal: Option<&str>,
    dir: &CatalogPath,
    entries: Vec<DirEntry>,
    headers: &HeaderMap,
    head: bool,
) -> Response {
    let entries: Vec<JsonEntry> = entries
        .into_iter()
        .filter_map(|e| match e {
            DirEntry::File(m) => visible(site, principal, &m.path, false).then(|| JsonEntry {
                name: m.path.name().to_owned(),
                kind: "file",
                size: Some(m.len),
                modified: rfc3339(m.modified),
                sha256: Some(m.sha256.to_hex()),
            }),
            DirEntry::Dir { path, modified } => {
                visible(site, principal, &path, true).then(|| JsonEntry {
                    name: path.name().to_owned(),
                    kind: "dir",
                    size: None,
                    modified: rfc3339(modified),
                    sha256: None,
                })
            }
        })
        .collect();
    let (ctype, body) = if wants_json(headers) {
        let listing = JsonListing {
            path: dir.as_str(),
            entries,
        };
        (
            "application/json",
            serde_json::to_string(&listing).unwrap_or_default(),
        )
    } else {
        ("text/html; charset=utf-8", html(dir, &entries))
    };
    let len = body.len();
    let mut r = Response::new(if head {
        Body::empty()
    } else {
        Body::from(body)
    });
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn html(dir: &CatalogPath, entries: &[JsonEntry]) -> String {
    let title = html_escape(dir.as_str());
    let mut out = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n\
         <body><h1>Index of {title}</h1>\n<table>\n<tr><th>Name</th><th>Size</th><th>Modified</th><th>SHA-256</th></tr>\n"
    );
    if !dir.is_root() {
        let _ = writeln!(
            out,
            "<tr><td><a href=\"{}\">../</a></td><td></td><td></td><td></td></tr>",
            href(&dir.parent(), true)
        );
    }
    for e in entries {
        let is_dir = e.kind == "dir";
        let link = dir
            .join(&e.name)
            .map(|p| href(&p, is_dir))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr><td><a href=\"{}\">{}{}</a></td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            html_escape(&link),
            html_escape(&e.name),
            if is_dir { "/" } else { "" },
            e.size.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            e.modified,
            e.sha256.as_deref().unwrap_or(""),
        );
    }
    out.push_str("</table>\n</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_encoded_and_escaped() {
        let p = CatalogPath::parse("/fw/a b/x&y<.bin").unwrap();
        assert_eq!(href(&p, false), "/fw/a%20b/x%26y%3C.bin");
        assert_eq!(href(&CatalogPath::root(), true), "/");
        assert_eq!(
            html_escape("<a href=\"x\">"),
            "&lt;a href=&quot;x&quot;&gt;"
        );
    }
}
