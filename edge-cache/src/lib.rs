//! sitecast edge cache: the site side.
//!
//! An edge node keeps a QUIC session to the origin (enrolling once with a join token), applies
//! the site config and desired state it receives, fetches only the chunks it lacks, verifies
//! and publishes complete artifacts atomically, and serves its published catalog over HTTP
//! with access control over HTTP, FTP and SFTP — also while the origin is unreachable.
//!
//! Entry point: [`run`]. Parts other protocols reuse: [`access`] (one decision function for
//! every protocol) and [`Core`] (catalog, store, site config, authenticator, counters).
//!
//! ```no_run
//! # async fn demo() -> Result<(), sitecast_edge::Error> {
//! let mut cfg = sitecast_edge::EdgeConfig::default();
//! cfg.data_dir = "/tmp/edge".into();
//! cfg.http_listen = "127.0.0.1:0".parse().unwrap();
//! cfg.metrics_listen = "127.0.0.1:0".parse().unwrap();
//! cfg.ftp.listen = "127.0.0.1:0".parse().unwrap();
//! cfg.sftp.listen = "127.0.0.1:0".parse().unwrap();
//! cfg.oci.listen = "127.0.0.1:0".parse().unwrap();
//! let cancel = tokio_util::sync::CancellationToken::new();
//! let (tx, rx) = tokio::sync::oneshot::channel();
//! let task = tokio::spawn(sitecast_edge::run(cfg, cancel.clone(), tx));
//! let ready = rx.await.expect("edge started");
//! println!("serving on http://{}", ready.http);
//! cancel.cancel();
//! task.await.expect("joined")?;
//! # Ok(()) }
//! ```
//!
//! # Errors
//! One error type, [`Error`], classified by [`Error::is_retryable`] and [`Error::is_no_space`]
//! (see the `error` module docs for the policy).

pub mod access;
mod catalog;
mod chunk_cache;
mod config;
mod core;
mod error;
mod ftp;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod https;
mod limits;
mod login;
mod metrics;
mod oci;
mod session;
mod sftp;
mod verify;
mod vfs;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use crate::catalog::{Catalog, DirEntry, PublishedMap, RECORD_VERSION};
pub use crate::config::{
    EdgeConfig, FtpConfig, HttpConfig, OciConfig, PortRange, QuicConfig, SftpConfig,
};
pub use crate::core::Core;
pub use crate::error::Error;
pub use crate::ftp::FtpServer;
pub use crate::http::HttpServer;
pub use crate::metrics::{Metrics, RepoCounters, SessionState};
pub use crate::oci::OciServer;
pub use crate::session::{PinnedCaVerifier, Session};
pub use crate::sftp::{host_key_path, SftpServer};
pub use crate::verify::verify;

/// Sent once the edge's listeners are bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeReady {
    /// Bound HTTP address.
    pub http: SocketAddr,
    /// Bound metrics address.
    pub metrics: SocketAddr,
    /// Bound FTP control address (`None` when `ftp.enabled` is false).
    pub ftp: Option<SocketAddr>,
    /// Bound SFTP address (`None` when `sftp.enabled` is false).
    pub sftp: Option<SocketAddr>,
    /// Bound OCI registry mirror address (`None` when `oci.enabled` is false).
    pub oci: Option<SocketAddr>,
    /// This node's name.
    pub node: String,
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Error> {
    let l = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let local = l
        .local_addr()
        .map_err(|source| Error::Bind { addr, source })?;
    Ok((l, local))
}

/// Run an edge node until `cancel` fires: open `data_dir`, bind the HTTP and metrics
/// listeners (and the FTP and SFTP ones unless disabled), send `ready`, then supervise the
/// The HTTPS identity of a listener from its `tls_cert`/`tls_key` files, if set.
fn tls_identity(
    field: &str,
    cert: &Option<std::path::PathBuf>,
    key: &Option<std::path::PathBuf>,
) -> Result<Option<sitecast_runtime::https::TlsIdentity>, Error> {
    match (cert, key) {
        (Some(c), Some(k)) => sitecast_runtime::https::TlsIdentity::from_files(c, k)
            .map(Some)
            .map_err(|e| Error::Config(format!("{field}.tls_cert/tls_key: {e}"))),
        _ => Ok(None),
    }
}

/// HTTP, FTP, SFTP and metrics servers and (when an origin is configured) the origin session. If a task fails, the others are stopped and its
/// error is returned.
///
/// # Errors
/// Invalid config, unusable data directory, a listener that cannot be bound, or a task failure.
pub async fn run(
    cfg: EdgeConfig,
    cancel: CancellationToken,
    ready: oneshot::Sender<EdgeReady>,
) -> Result<(), Error> {
    let cfg = cfg.validate()?;
    let data_dir = cfg.data_dir.clone();
    // Held until `run` returns: a second edge on this data dir is refused at once.
    let _lock = sitecast_runtime::datadir::DataDirLock::acquire(&data_dir, "sitecast edge")?;
    let core = Arc::new(error::blocking("open data dir", move || Core::open(cfg)).await?);
    let from_origin = |on: bool| core.https.as_ref().filter(|_| on).map(|h| h.identity());
    let http_tls = match from_origin(core.cfg.http.tls_from_origin) {
        Some(id) => Some(id),
        None => tls_identity("http", &core.cfg.http.tls_cert, &core.cfg.http.tls_key)?,
    };
    let oci_tls = match from_origin(core.cfg.oci.tls_from_origin) {
        Some(id) => Some(id),
        None => tls_identity("oci", &core.cfg.oci.tls_cert, &core.cfg.oci.tls_key)?,
    };
    let (http_l, http_addr) = bind(core.cfg.http_listen).await?;
    let (metrics_l, metrics_addr) = bind(core.cfg.metrics_listen).await?;
    let ftp = if core.cfg.ftp.enabled {
        Some(bind(core.cfg.ftp.listen).await?)
    } else {
        None
    };
    let sftp = if core.cfg.sftp.enabled {
        Some(bind(core.cfg.sftp.listen).await?)
    } else {
        None
    };
    let oci = if core.cfg.oci.enabled {
        Some(bind(core.cfg.oci.listen).await?)
    } else {
        None
    };
    let oci_addr = oci.as_ref().map(|(_, a)| *a);
    let ftp_addr = ftp.as_ref().map(|(_, a)| *a);
    let sftp_addr = sftp.as_ref().map(|(_, a)| *a);
    tracing::info!(http = %http_addr, metrics = %metrics_addr, ftp = ?ftp_addr, sftp = ?sftp_addr, oci = ?oci_addr, node = %core.cfg.node,
        data_dir = %data_dir.display(), published = core.catalog.published().len(), "edge listening");
    let _ = ready.send(EdgeReady {
        http: http_addr,
        metrics: metrics_addr,
        ftp: ftp_addr,
        sftp: sftp_addr,
        oci: oci_addr,
        node: core.cfg.node.clone(),
    });

    let stop = cancel.child_token();
    let mut tasks: JoinSet<(&'static str, Result<(), Error>)> = JoinSet::new();
    {
        let server = HttpServer::new(core.clone(), stop.clone());
        tasks.spawn(async move { ("http server", server.run(http_l, http_tls).await) });
    }
    if let Some((l, _)) = ftp {
        let server = FtpServer::new(core.clone(), stop.clone());
        tasks.spawn(async move { ("ftp server", server.run(l).await) });
    }
    if let Some((l, _)) = sftp {
        let server = SftpServer::new(core.clone(), stop.clone());
        tasks.spawn(async move { ("sftp server", server.run(l).await) });
    }
    if let Some((l, _)) = oci {
        let server = OciServer::new(core.clone(), stop.clone());
        tasks.spawn(async move { ("oci server", server.run(l, oci_tls).await) });
    }
    {
        let (core, stop) = (core.clone(), stop.clone());
        tasks.spawn(async move {
            (
                "metrics server",
                metrics::serve(core, metrics_l, stop).await,
            )
        });
    }
    if core.cfg.origin.is_some() {
        let session = Session::new(core.clone(), stop.clone());
        tasks.spawn(async move { ("origin session", session.run().await) });
    } else {
        core.metrics.set_session(SessionState::Disabled);
        tracing::warn!("no origin configured: serving the local catalog only");
    }

    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let (name, outcome) = match joined {
            Ok(r) => r,
            Err(e) => (
                "task",
                Err(Error::Task {
                    name: "edge task",
                    reason: e.to_string(),
                }),
            ),
        };
        match outcome {
            Ok(()) if stop.is_cancelled() => tracing::debug!(task = name, "stopped"),
            Ok(()) => tracing::info!(task = name, "finished"),
            Err(e) => {
                tracing::error!(task = name, error = %e, "task failed; stopping the edge");
                if result.is_ok() {
                    result = Err(e);
                }
                stop.cancel();
            }
        }
    }
    result
}
