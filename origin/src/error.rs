//! The origin's error type.
//!
//! Policy: every fallible function in this crate returns [`Error`]; it is the only error type
//! that crosses the crate boundary (to `src/main.rs` and `demo`). Lower-level errors are wrapped
//! with the context an operator needs (which file, which site, which path), and callers decide
//! from the value ([`Error::is_retryable`], [`Error::is_no_space`]), never from strings. The REST
//! API maps [`Error`] to its JSON error shape in `api::error`; the QUIC server maps it to
//! `ErrorMsg` codes. Messages of `Internal`-class errors are logged, not sent to clients in full.

use std::net::SocketAddr;
use std::path::PathBuf;

use sitecast_protocol::PathError;
use sitecast_runtime::chunks::StoreError;
use sitecast_runtime::framed::FrameError;
use sitecast_runtime::sqlite::SqliteError;

/// Everything that can go wrong in the origin.
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
    /// CA, certificate or TLS setup failed.
    #[error("tls: {0}")]
    Tls(String),
    /// A client-supplied path is invalid.
    #[error("invalid path {path:?}: {source}")]
    BadPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        source: PathError,
    },
    /// A request is invalid (the message says why).
    #[error("{0}")]
    BadRequest(String),
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Something already exists.
    #[error("{0}")]
    Conflict(String),
    /// An upload is over the configured limit.
    #[error("upload exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// A QUIC stream failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// An upstream registry failed or refused (unreachable, auth, bad content).
    #[error("upstream registry: {0}")]
    Upstream(String),
    /// A background task panicked or was cancelled unexpectedly.
    #[error("task {0} failed")]
    Task(String),
}

impl Error {
    /// Whether the failure is a full disk (or quota): the chunk store's, or SQLite's
    /// (`SQLITE_FULL`, e.g. the publish transaction after the last chunk fitted).
    #[must_use]
    pub fn is_no_space(&self) -> bool {
        match self {
            Error::Store(e) => e.is_no_space(),
            Error::Db(rusqlite::Error::SqliteFailure(f, _)) => {
                f.code == rusqlite::ErrorCode::DiskFull
            }
            Error::Io { source, .. } => matches!(source.raw_os_error(), Some(28 | 122)),
            _ => false,
        }
    }

    /// Whether trying again later may succeed (transient I/O, full disk, busy database), as
    /// opposed to a request or data that will never work.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Store(e) => e.is_retryable(),
            Error::Io { .. }
            | Error::Db(_)
            | Error::Frame(_)
            | Error::Task(_)
            | Error::Upstream(_) => true,
            _ => false,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn bad_path(path: &str, source: PathError) -> Self {
        Error::BadPath {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn record(what: impl Into<String>, reason: impl ToString) -> Self {
        Error::Record {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Task(e.to_string())
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
