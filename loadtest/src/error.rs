//! Errors of the load tool.
//!
//! Policy: one [`Error`] enum for the crate. A failed download is never a panic or an abort: the
//! runner records it under its [`Error::kind`] (a short stable string used as the key of the
//! report's `errors` map) and carries on, so a report always says how many downloads failed and
//! why. [`Error::is_retryable`] tells a device loop (`--wait-available`) whether trying again
//! later may succeed (content not there yet, connection refused, timeout) or not (wrong digest).
//! Only configuration errors (bad flags, unreadable manifest or key) stop the tool.

use std::io;

/// Everything that can go wrong in the load tool.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag, a scenario file or an env file is wrong; the message names the problem.
    #[error("configuration: {0}")]
    Config(String),
    /// TCP connect failed (refused, unreachable).
    #[error("connect to {addr}: {source}")]
    Connect {
        /// Address dialled.
        addr: String,
        /// Underlying error.
        source: io::Error,
    },
    /// The server does not have the content (HTTP 404, FTP 550, SFTP no such file).
    #[error("not found: {0}")]
    NotFound(String),
    /// The server refused the credentials.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The server answered with an unexpected status or reply.
    #[error("unexpected answer: {0}")]
    Status(String),
    /// The peer broke the protocol (unparsable reply, bad manifest JSON).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The body ended before the announced size.
    #[error("short body: got {got} of {want} bytes")]
    Short {
        /// Bytes received.
        got: u64,
        /// Bytes announced.
        want: u64,
    },
    /// The content's SHA-256 differs from the expected digest.
    #[error("sha256 mismatch for {path}: got {got}, want {want}")]
    Digest {
        /// What was fetched.
        path: String,
        /// Digest of the received bytes.
        got: String,
        /// Expected digest.
        want: String,
    },
    /// A download took longer than `--timeout`.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// Socket or file I/O failed mid-transfer.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// HTTP client error (reqwest).
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// SSH transport error.
    #[error("ssh: {0}")]
    Ssh(String),
}

impl Error {
    /// Stable short name used as the key of a report's `errors` map.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::Connect { .. } => "connect",
            Error::NotFound(_) => "not_found",
            Error::Auth(_) => "auth",
            Error::Status(_) => "status",
            Error::Protocol(_) => "protocol",
            Error::Short { .. } => "short_body",
            Error::Digest { .. } => "digest_mismatch",
            Error::Timeout(_) => "timeout",
            Error::Io(_) => "io",
            Error::Http(e) if e.is_timeout() => "timeout",
            Error::Http(e) if e.is_connect() => "connect",
            Error::Http(_) => "http",
            Error::Ssh(_) => "ssh",
        }
    }

    /// Whether trying again later may succeed (content not published yet, server not up yet,
    /// transient transport failure). Digest mismatches and configuration errors are final.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            Error::Config(_) | Error::Digest { .. } | Error::Auth(_)
        )
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
