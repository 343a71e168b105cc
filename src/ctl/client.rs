//! A thin client of the origin's REST API, shared by `ctl` and `demo`.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt as _;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// An API failure: the server's error code and message, or a transport problem.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// The API answered with an error document.
    #[error("{code}: {message} (HTTP {status})")]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// The `error.code` field.
        code: String,
        /// The `error.message` field.
        message: String,
    },
    /// The API could not be reached or answered something that is not JSON.
    #[error("{0}")]
    Transport(String),
    /// Refused before sending: the argument is invalid (e.g. a hostile path).
    #[error("{0}")]
    Invalid(String),
}

impl ApiError {
    pub(crate) fn status(&self) -> Option<StatusCode> {
        match self {
            ApiError::Api { status, .. } => Some(*status),
            ApiError::Transport(_) | ApiError::Invalid(_) => None,
        }
    }
}

/// An error with its causes (`reqwest` puts the TLS or connect reason in the source chain).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

/// An HTTP client for the origin's API and registry: HTTPS servers are verified against the
/// system's roots and, with `ca`, the certificates in that PEM file too (the origin's own
/// `<data_dir>/ca/ca.pem` when it issues its certificate itself).
pub(crate) fn http_client(ca: Option<&Path>) -> Result<reqwest::Client, ApiError> {
    let mut b = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).map_err(|e| {
            ApiError::Invalid(format!("cannot read the CA file {}: {e}", ca.display()))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            ApiError::Invalid(format!("{}: not a PEM certificate: {e}", ca.display()))
        })?;
        if certs.is_empty() {
            return Err(ApiError::Invalid(format!(
                "{} holds no PEM certificate",
                ca.display()
            )));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| ApiError::Transport(e.to_string()))
}

/// REST client bound to one origin and token.
#[derive(Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    ca: Option<std::path::PathBuf>,
}

impl Client {
    pub(crate) fn new(
        base: &str,
        token: Option<String>,
        ca: Option<&Path>,
    ) -> Result<Self, ApiError> {
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(ApiError::Transport(format!(
                "invalid API URL {base:?}: expected http://HOST:PORT or https://HOST:PORT"
            )));
        }
        let http = http_client(ca)?;
        Ok(Self {
            http,
            base,
            token,
            ca: ca.map(Path::to_owned),
        })
    }

    /// The extra CA file servers are verified with, if one was given.
    pub(crate) fn ca(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// The API token, if one was given.
    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        rb
    }

    fn unreachable(&self, e: &reqwest::Error) -> ApiError {
        ApiError::Transport(format!(
            "cannot reach the origin API at {}: {}",
            self.base,
            error_chain(e)
        ))
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<Value, ApiError> {
        let resp = rb.send().await.map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ApiError::Transport(format!("reading the API response: {e}")))?;
        if status == StatusCode::NO_CONTENT || bytes.is_empty() {
            return if status.is_success() {
                Ok(Value::Null)
            } else {
                Err(ApiError::Api {
                    status,
                    code: "http".into(),
                    message: status.to_string(),
                })
            };
        }
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| {
            ApiError::Transport(format!(
                "the API answered HTTP {status} with something that is not JSON: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ))
        })?;
        if status.is_success() {
            Ok(v)
        } else {
            Err(refused(status, &v))
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.send(self.request(Method::GET, path)).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Result<Value, ApiError> {
        self.send(self.request(Method::DELETE, path)).await
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    pub(crate) async fn patch(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.send(self.request(Method::PATCH, path).json(body))
            .await
    }

    pub(crate) async fn put(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.send(self.request(Method::PUT, path).json(body)).await
    }

    /// POST `body` asking for JSON lines (`Accept: application/x-ndjson`); `on_line` sees every
    /// line as it arrives. Returns the last line. A non-2xx answer is an error as for [`post`].
    ///
    /// [`post`]: Client::post
    pub(crate) async fn post_lines(
        &self,
        path: &str,
        body: &Value,
        mut on_line: impl FnMut(&Value),
    ) -> Result<Value, ApiError> {
        let rb = self
            .request(Method::POST, path)
            .header(reqwest::header::ACCEPT, "application/x-ndjson")
            .json(body);
        let resp = rb.send().await.map_err(|e| self.unreachable(&e))?;
        if !resp.status().is_success()
            || !resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-ndjson"))
        {
            // An error before the stream started (or an origin without streaming): as post().
            let status = resp.status();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            if status.is_success() {
                return Ok(v);
            }
            return Err(refused(status, &v));
        }
        let mut stream = resp.bytes_stream();
        let (mut buf, mut last) = (Vec::new(), Value::Null);
        while let Some(piece) = stream.next().await {
            let piece =
                piece.map_err(|e| ApiError::Transport(format!("reading the API response: {e}")))?;
            buf.extend_from_slice(&piece);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                    on_line(&v);
                    last = v;
                }
            }
        }
        Ok(last)
    }

    /// GET a Server-Sent Events stream; `on_event(name, data)` sees each event whose data is
    /// JSON, and returns false to stop. A non-2xx answer is an error as for [`get`].
    ///
    /// [`get`]: Client::get
    pub(crate) async fn events(
        &self,
        path: &str,
        mut on_event: impl FnMut(&str, &Value) -> bool,
    ) -> Result<(), ApiError> {
        let rb = self
            .request(Method::GET, path)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        let resp = rb.send().await.map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        if !status.is_success() {
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            return Err(refused(status, &v));
        }
        let mut stream = resp.bytes_stream();
        let mut buf = Vec::new();
        while let Some(piece) = stream.next().await {
            let piece =
                piece.map_err(|e| ApiError::Transport(format!("reading the event stream: {e}")))?;
            buf.extend_from_slice(&piece);
            // Events end with a blank line; `event:` names it, `data:` lines carry it.
            while let Some(i) = buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = buf.drain(..i + 2).collect();
                let text = String::from_utf8_lossy(&block);
                let (mut name, mut data) = ("message", String::new());
                for line in text.lines() {
                    if let Some(n) = line.strip_prefix("event:") {
                        name = n.trim();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.strip_prefix(' ').unwrap_or(d));
                    }
                }
                if let Ok(v) = serde_json::from_str::<Value>(&data) {
                    if !on_event(name, &v) {
                        return Ok(());
                    }
                }
            }
        }
        Err(ApiError::Transport(
            "the origin ended the event stream".into(),
        ))
    }

    /// Stream a file to `PUT /api/v1/artifacts{path}`, calling `progress` with bytes sent.
    pub(crate) async fn upload(
        &self,
        file: &Path,
        path: &str,
        progress: impl Fn(u64) + Send + Sync + 'static,
    ) -> Result<Value, ApiError> {
        let f = tokio::fs::File::open(file)
            .await
            .map_err(|e| ApiError::Transport(format!("cannot open {}: {e}", file.display())))?;
        let len = f
            .metadata()
            .await
            .map_err(|e| ApiError::Transport(format!("cannot stat {}: {e}", file.display())))?
            .len();
        let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024).map(move |r| {
            if let Ok(b) = &r {
                progress(b.len() as u64);
            }
            r
        });
        let rb = self
            .request(
                Method::PUT,
                &format!("/api/v1/artifacts{}", encode_path(path)),
            )
            .header(reqwest::header::CONTENT_LENGTH, len)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream));
        self.send(rb).await
    }
}

/// Percent-encode each segment of a catalog path for a URL, keeping the `/`s.
pub(crate) fn encode_path(path: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    let p = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    percent_encoding::utf8_percent_encode(&p, SET).to_string()
}

/// The API's JSON error answer as an [`ApiError`].
fn refused(status: StatusCode, v: &Value) -> ApiError {
    ApiError::Api {
        status,
        code: v["error"]["code"].as_str().unwrap_or("unknown").to_owned(),
        message: v["error"]["message"].as_str().unwrap_or("").to_owned(),
    }
}
