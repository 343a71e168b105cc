//! The edge's error type.
//!
//! Policy: every fallible function in this crate returns [`Error`]; it is the only error type
//! that crosses the crate boundary (to `src/main.rs`). Lower-level errors are wrapped with the
//! context an operator needs (which file, which chunk, which artifact), never stringly matched:
//! callers decide from [`Error::is_retryable`] and [`Error::is_no_space`]. HTTP handlers map
//! their own outcomes to status codes and never expose these messages beyond a short reason.

use std::net::SocketAddr;
use std::path::PathBuf;

use sitecast_runtime::chunks::StoreError;
use sitecast_runtime::framed::FrameError;
use sitecast_runtime::sqlite::SqliteError;

/// Everything that can go wrong in the edge.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A local file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Opening or migrating the database failed.
    #[error(transparent)]
    Open(#[from] SqliteError),
    /// The data directory is held by another process, or cannot be created or locked.
    #[error(transparent)]
    DataDir(#[from] sitecast_runtime::datadir::LockError),
    /// A database statement failed.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The chunk store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record does not decode (written by an unknown version, or damaged).
    #[error("stored record {what} does not decode: {reason}")]
    Record {
        /// Which record.
        what: String,
        /// Why.
        reason: String,
    },
    /// Identity or TLS setup failed (bad key file, bad certificate).
    #[error("tls: {0}")]
    Tls(String),
    /// Could not reach or handshake with the origin.
    #[error("connecting to origin {origin}: {reason}")]
    Connect {
        /// The origin address.
        origin: String,
        /// Why.
        reason: String,
    },
    /// The QUIC connection to the origin failed.
    #[error("origin connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// A stream to the origin failed or carried a bad frame.
    #[error("origin stream: {0}")]
    Frame(#[from] FrameError),
    /// The origin refused the join token.
    #[error("origin rejected the join token: {0}")]
    BadToken(String),
    /// The origin answered with an error or an unexpected message.
    #[error("origin: {0}")]
    Protocol(String),
    /// The origin holds this blob for now (outside its transfer window): not a failure.
    #[error("held by the origin: {0}")]
    Held(String),
    /// An artifact failed verification or could not be completed (reason included).
    #[error("{0}")]
    Artifact(String),
    /// A background task failed unexpectedly.
    #[error("task {name} failed: {reason}")]
    Task {
        /// Which task.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// Whether trying again later may succeed (network, full disk, transient I/O).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::Connection(_)
            | Error::Frame(_)
            | Error::BadToken(_)
            | Error::Protocol(_)
            | Error::Artifact(_) => true,
            Error::Store(e) => e.is_retryable(),
            Error::Db(e) => is_sqlite_full(e),
            _ => false,
        }
    }

    /// Whether the failure is a full disk (chunk store or database).
    #[must_use]
    pub fn is_no_space(&self) -> bool {
        match self {
            Error::Store(e) => e.is_no_space(),
            Error::Db(e) => is_sqlite_full(e),
            Error::Io { source, .. } => source.raw_os_error() == Some(28),
            _ => false,
        }
    }

    /// Whether the failure is the connection to the origin (as opposed to local state).
    #[must_use]
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. } | Error::Connection(_) | Error::Frame(_)
        )
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

fn is_sqlite_full(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull)
}

/// Run blocking work off the async runtime, mapping a panic to [`Error::Task`].
pub(crate) async fn blocking<T, F>(name: &'static str, f: F) -> Result<T, Error>
where
    F: FnOnce() -> Result<T, Error> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Task {
            name,
            reason: e.to_string(),
        })?
}
