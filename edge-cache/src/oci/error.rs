//! Mirror errors as the distribution spec's JSON (`{"errors":[{"code":…,"message":…}]}`) with
//! the spec's status codes.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sitecast_protocol::oci::OciNameError;

/// The spec's error codes the mirror answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    BlobUnknown,
    DigestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
}

impl Code {
    fn as_str(self) -> &'static str {
        match self {
            Self::BlobUnknown => "BLOB_UNKNOWN",
            Self::DigestInvalid => "DIGEST_INVALID",
            Self::ManifestUnknown => "MANIFEST_UNKNOWN",
            Self::NameInvalid => "NAME_INVALID",
            Self::NameUnknown => "NAME_UNKNOWN",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Denied => "DENIED",
            Self::Unsupported => "UNSUPPORTED",
            Self::TooManyRequests => "TOOMANYREQUESTS",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Self::BlobUnknown | Self::ManifestUnknown | Self::NameUnknown => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Denied => StatusCode::FORBIDDEN,
            Self::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::DigestInvalid | Self::NameInvalid => StatusCode::BAD_REQUEST,
        }
    }
}

/// An error answer of the mirror.
#[derive(Debug)]
pub(crate) struct OciError {
    pub(crate) status: StatusCode,
    code: Code,
    message: String,
    headers: Vec<(header::HeaderName, String)>,
}

impl OciError {
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            status: code.status(),
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub(crate) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub(crate) fn with_header(
        mut self,
        name: header::HeaderName,
        value: impl Into<String>,
    ) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// A server-side failure (database, store).
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Unsupported, message).with_status(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<OciNameError> for OciError {
    fn from(e: OciNameError) -> Self {
        let code = match e {
            OciNameError::Repository(_) => Code::NameInvalid,
            OciNameError::Tag(_) => Code::ManifestUnknown,
            OciNameError::Digest(_) | OciNameError::Algorithm(_) => Code::DigestInvalid,
        };
        let status = if code == Code::ManifestUnknown {
            StatusCode::BAD_REQUEST
        } else {
            code.status()
        };
        Self::new(code, e.to_string()).with_status(status)
    }
}

impl From<crate::error::Error> for OciError {
    fn from(e: crate::error::Error) -> Self {
        tracing::error!(error = %e, "registry mirror failure");
        Self::internal(e.to_string())
    }
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let code = if self.status.is_server_error() {
            "INTERNAL"
        } else {
            self.code.as_str()
        };
        let body = serde_json::json!({"errors": [{"code": code, "message": self.message}]});
        let mut r = (self.status, axum::Json(body)).into_response();
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                r.headers_mut().append(name, v);
            }
        }
        r
    }
}

/// Result of a mirror handler.
pub(crate) type OciResult<T> = Result<T, OciError>;
