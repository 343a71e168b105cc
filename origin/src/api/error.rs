//! REST API errors: `{"error":{"code","message"}}` with the matching HTTP status.
//!
//! [`ErrorBody`] is that shape, written to the wire and described in the OpenAPI document by
//! the same type. Errors do not name the offending field in a field of their own; the message
//! names it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Error;

/// An error answer of the REST API.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub(crate) fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        if e.is_no_space() {
            tracing::error!(error = %e, "disk full");
            return Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                "the origin's disk is full; nothing was stored",
            );
        }
        match e {
            Error::BadPath { path, source } => Self::new(
                StatusCode::BAD_REQUEST,
                "bad_path",
                format!("invalid path {path:?}: {source}"),
            ),
            Error::BadRequest(m) => Self::bad_request(m),
            Error::NotFound(m) => Self::not_found(m),
            Error::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            Error::Upstream(m) => Self::new(
                StatusCode::BAD_GATEWAY,
                "upstream",
                format!("upstream registry: {m}"),
            ),
            Error::TooLarge { limit } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("body exceeds the limit of {limit} bytes"),
            ),
            e => {
                tracing::error!(error = %e, "request failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; see the origin's log",
                )
            }
        }
    }
}

/// Every error answer of the REST API, whatever raised it (a handler, an extractor, the
/// router).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "not_found", "message": "site \"farm-9\" not found"}}))]
pub(crate) struct ErrorBody {
    /// What went wrong.
    pub(crate) error: ErrorDetail,
}

/// The `error` of an [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Machine-readable; one per HTTP status (`upstream`: 502 from an image import).
    #[schema(schema_with = error_code)]
    pub(crate) code: &'static str,
    /// For people: what was refused and why, naming the field or value at fault.
    pub(crate) message: String,
}

/// Every `code` an [`ErrorDetail`] may carry, with its status.
pub(crate) const ERROR_CODES: [(&str, StatusCode); 13] = [
    ("bad_request", StatusCode::BAD_REQUEST),
    ("bad_path", StatusCode::BAD_REQUEST),
    ("unauthorized", StatusCode::UNAUTHORIZED),
    ("forbidden", StatusCode::FORBIDDEN),
    ("not_found", StatusCode::NOT_FOUND),
    ("method_not_allowed", StatusCode::METHOD_NOT_ALLOWED),
    ("conflict", StatusCode::CONFLICT),
    ("payload_too_large", StatusCode::PAYLOAD_TOO_LARGE),
    ("unsupported_media_type", StatusCode::UNSUPPORTED_MEDIA_TYPE),
    ("internal", StatusCode::INTERNAL_SERVER_ERROR),
    ("upstream", StatusCode::BAD_GATEWAY),
    ("insufficient_storage", StatusCode::INSUFFICIENT_STORAGE),
    ("too_many_requests", StatusCode::TOO_MANY_REQUESTS),
];

fn error_code() -> utoipa::openapi::Object {
    let codes: Vec<&str> = ERROR_CODES.iter().map(|(c, _)| *c).collect();
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(codes))
        .build()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sitecast\""),
            );
        }
        r
    }
}
