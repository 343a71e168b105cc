//! Registry errors rendered as the distribution spec's JSON:
//! `{"errors":[{"code":"BLOB_UNKNOWN","message":"…","detail":…}]}` with the spec's status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sitecast_protocol::oci::OciNameError;

use crate::error::Error;

/// The spec's error codes (distribution-spec, "Error Codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
}

impl Code {
    fn as_str(self) -> &'static str {
        match self {
            Self::BlobUnknown => "BLOB_UNKNOWN",
            Self::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Self::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Self::DigestInvalid => "DIGEST_INVALID",
            Self::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Self::ManifestInvalid => "MANIFEST_INVALID",
            Self::ManifestUnknown => "MANIFEST_UNKNOWN",
            Self::NameInvalid => "NAME_INVALID",
            Self::NameUnknown => "NAME_UNKNOWN",
            Self::SizeInvalid => "SIZE_INVALID",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Denied => "DENIED",
            Self::Unsupported => "UNSUPPORTED",
            Self::TooManyRequests => "TOOMANYREQUESTS",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Self::BlobUnknown
            | Self::BlobUploadUnknown
            | Self::ManifestUnknown
            | Self::NameUnknown => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Denied => StatusCode::FORBIDDEN,
            Self::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// An error answer of the registry.
#[derive(Debug)]
pub(crate) struct OciError {
    status: StatusCode,
    code: Code,
    message: String,
    /// Extra headers (the upload's `Range` on a 416, `WWW-Authenticate` on a 401).
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

    /// What went wrong, for callers outside the registry (imports).
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// The same error with another status (e.g. 413 for an oversized manifest).
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

    /// Not a route of the distribution API.
    pub(crate) fn no_route() -> Self {
        Self::new(Code::Unsupported, "no such registry endpoint").with_status(StatusCode::NOT_FOUND)
    }
}

impl From<OciNameError> for OciError {
    fn from(e: OciNameError) -> Self {
        let code = match e {
            OciNameError::Repository(_) => Code::NameInvalid,
            OciNameError::Tag(_) => Code::ManifestInvalid,
            OciNameError::Digest(_) | OciNameError::Algorithm(_) => Code::DigestInvalid,
        };
        Self::new(code, e.to_string())
    }
}

impl From<Error> for OciError {
    fn from(e: Error) -> Self {
        let api = crate::api::ApiError::from(e);
        let code = match api.status {
            StatusCode::BAD_REQUEST => Code::BlobUploadInvalid,
            StatusCode::PAYLOAD_TOO_LARGE => Code::SizeInvalid,
            StatusCode::NOT_FOUND => Code::NameUnknown,
            _ => Code::Unsupported,
        };
        Self {
            status: api.status,
            code,
            message: api.message,
            headers: Vec::new(),
        }
    }
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let code = if self.status.is_server_error() {
            // Not a spec code: the spec has none for server failures.
            "INTERNAL"
        } else if self.status == StatusCode::INSUFFICIENT_STORAGE {
            "INSUFFICIENT_STORAGE"
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
