//! Request extractors and fallbacks whose every rejection is an API error: path parameters,
//! query strings and JSON bodies answer 400/405/413/415 in the documented
//! `{"error":{"code","message"}}` shape, never axum's plain text or an empty body.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::{ApiError, AppState};

/// `axum::extract::Path`, rejected as a JSON 400.
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(Self(v)),
            Err(e) => Err(rejection(e.status(), "invalid URL path", &e.body_text())),
        }
    }
}

/// `axum::extract::Query`, rejected as a JSON 400.
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Self(v)),
            Err(e) => Err(rejection(
                e.status(),
                "invalid query string",
                &e.body_text(),
            )),
        }
    }
}

fn rejection(status: StatusCode, what: &str, detail: &str) -> ApiError {
    if status.is_client_error() {
        ApiError::bad_request(format!("{what}: {detail}"))
    } else {
        tracing::error!(%status, detail, "request extractor failed");
        ApiError::new(status, "internal", "internal error; see the origin's log")
    }
}

/// A JSON body of at most `max_json_body` bytes. A `Content-Type` other than JSON is a 415; a
/// request without one is read as JSON (what `curl --data` users expect of an API that takes
/// nothing else).
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, core: &AppState) -> Result<Self, ApiError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("");
            if !is_json(ct) {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!("this endpoint takes a JSON body (Content-Type: application/json), not {ct:?}"),
                ));
            }
        }
        let limit = usize::try_from(core.cfg.max_json_body).unwrap_or(usize::MAX);
        let bytes = read_limited(req.into_body(), limit).await?;
        super::parse_json(&bytes).map(Self)
    }
}

/// `application/json`, or any `…+json` type, with parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The whole body, or 413 once it exceeds `limit`.
pub(crate) async fn read_limited(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("JSON body exceeds {limit} bytes"),
            )
        } else {
            ApiError::bad_request(format!("reading the request body: {e}"))
        }
    })
}

/// The answer to a method a route does not take (the router adds `Allow`).
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// Refuse percent-encoded slashes and backslashes in the URL path: every name the API takes is
/// one segment, and an artifact path's slashes are written as they are, so `%2F` would only
/// ever be reinterpreted (`/artifacts/a%2Fb` stored as `/a/b`).
pub(crate) async fn refuse_encoded_slashes(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_path",
            format!(
                "encoded slashes (%2F, %5C) are refused in URL paths ({path:?}): names are one \
                 segment, and an artifact path's slashes are written as plain '/'"
            ),
        )
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
    }
}
