//! The FTP server (libunftp): a read-only view of the **published catalog**.
//!
//! Contract:
//! - logins: site users with their password, and `anonymous`/`ftp` wherever the site grants
//!   anything to anonymous ([`crate::login`]); what a login may list and read is decided by
//!   [`crate::access`] exactly as over HTTP ([`crate::vfs`]);
//! - commands: RETR (with REST), SIZE, MDTM, LIST, NLST, MLSD, MLST, CWD, CDUP, PWD, TYPE,
//!   NOOP, FEAT, QUIT, PASV/EPSV (ports from `ftp.passive_ports`, announced address
//!   `ftp.advertised_address`), PORT/EPRT only with `ftp.active_mode`; AUTH TLS when
//!   `ftp.ftps_cert`/`ftp.ftps_key` are set. STOR, APPE, DELE, MKD, RMD and RNFR/RNTO are
//!   answered 550; SITE (no site commands are registered) and unknown commands 5xx;
//! - every path is resolved against the working directory by [`crate::vfs::resolve`], so none
//!   leaves the catalog; a bad name is a 553;
//! - limits: `ftp.max_connections_per_ip` control connections per address (more are answered
//!   `421` and closed), `ftp.idle_timeout` on the control connection (not while a transfer
//!   runs), `ftp.login_grace` from connecting to logging in (then `421` and closed, however
//!   busy the client keeps itself), failed logins delayed and locked out per address
//!   ([`crate::limits::LoginGuard`]);
//! - RETR streams chunk by chunk from the chunk store, reading the next chunk while the
//!   current one is written.
//!
//! The accept loop is ours (for the per-address limit); each connection is handed to a
//! libunftp `Server` built for it. On cancel the listener closes and every open control
//! connection is answered `421` and closed.

mod auth;
mod backend;

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::fd::AsFd as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use libunftp::options::{ActivePassiveMode, PassiveHost};
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use self::auth::{FtpAuth, FtpUser, FtpUsers};
pub(crate) use self::backend::catalog_path;
use self::backend::CatalogFs;
use crate::core::Core;
use crate::error::Error;
use crate::limits::{accept, ConnLimiter, LoginGuard};

const GREETING: &str = "sitecast edge FTP server (read-only)";

/// The FTP server over an edge core.
pub struct FtpServer {
    core: Arc<Core>,
    cancel: CancellationToken,
}

/// What every connection's libunftp server is built from.
struct Shared {
    core: Arc<Core>,
    guard: Arc<LoginGuard>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl FtpServer {
    /// A server for `core`, stopping when `cancel` fires.
    #[must_use]
    pub fn new(core: Arc<Core>, cancel: CancellationToken) -> Self {
        Self { core, cancel }
    }

    /// Serve FTP on `listener` until cancelled.
    ///
    /// # Errors
    /// The FTPS certificate or key cannot be loaded, or the listener fails.
    pub async fn run(self, listener: TcpListener) -> Result<(), Error> {
        let cfg = &self.core.cfg.ftp;
        let tls = match (&cfg.ftps_cert, &cfg.ftps_key) {
            (Some(cert), Some(key)) => Some(load_tls(cert, key)?),
            _ => None,
        };
        let shared = Arc::new(Shared {
            core: self.core.clone(),
            guard: Arc::new(LoginGuard::new(
                cfg.login_failures_before_lockout,
                cfg.lockout_window,
            )),
            tls,
        });
        // Fail now, not on the first connection, if the options do not build.
        build(&shared, Arc::new(AtomicBool::new(false)))?;
        let limiter = ConnLimiter::new(cfg.max_connections_per_ip);
        // Connections are tracked so that shutdown waits (briefly) for each to say why it
        // closes, instead of the runtime dropping them mid-sentence.
        let sessions = tokio_util::task::TaskTracker::new();
        while let Some((stream, peer)) = accept(&listener, &self.cancel, "ftp").await {
            let Some(slot) = limiter.try_acquire(peer.ip()) else {
                tracing::warn!(client = %peer, "ftp: too many connections from this address");
                tokio::spawn(refuse(stream));
                continue;
            };
            let (shared, cancel) = (shared.clone(), self.cancel.clone());
            let span = tracing::info_span!("ftp", client = %peer);
            sessions.spawn(
                async move {
                    let _slot = slot;
                    serve(&shared, stream, peer, cancel).await;
                }
                .instrument(span),
            );
        }
        sessions.close();
        if tokio::time::timeout(SESSION_DRAIN, sessions.wait())
            .await
            .is_err()
        {
            tracing::info!(
                open = sessions.len(),
                "ftp: sessions still open after shutdown were dropped"
            );
        }
        Ok(())
    }
}

async fn refuse(mut stream: TcpStream) {
    let _ = stream
        .write_all(b"421 Too many connections from your address; try again later.\r\n")
        .await;
    let _ = stream.shutdown().await;
}

async fn serve(shared: &Shared, stream: TcpStream, peer: SocketAddr, cancel: CancellationToken) {
    let _ = stream.set_nodelay(true);
    shared
        .core
        .metrics
        .ftp_sessions
        .fetch_add(1, Ordering::Relaxed);
    // libunftp owns the stream (in a task of its own); a second descriptor of the same socket
    // lets the login grace timer end the connection.
    let control = match stream.as_fd().try_clone_to_owned() {
        Ok(fd) => std::net::TcpStream::from(fd),
        Err(e) => {
            tracing::warn!(error = %e, "ftp: cannot duplicate the control socket; closing");
            return;
        }
    };
    let logged_in = Arc::new(AtomicBool::new(false));
    let server = match build(shared, logged_in.clone()) {
        Ok(server) => server,
        Err(e) => {
            tracing::error!(error = %e, "ftp: cannot set up a session");
            return;
        }
    };
    // Say why, then close: the control loop reads end-of-file and ends. The reply goes out in
    // plain text only when FTPS is off (a TLS control connection would see garbage).
    let close = |why: &[u8]| {
        if shared.tls.is_none() {
            let _ = (&control).write(why);
        }
        let _ = control.shutdown(std::net::Shutdown::Both);
    };
    let service = server.service(stream);
    let grace = tokio::time::sleep(shared.core.cfg.ftp.login_grace);
    tokio::pin!(service, grace);
    let (mut graced, mut cancelled) = (false, false);
    let result = loop {
        tokio::select! {
            r = &mut service => break r,
            () = &mut grace, if !graced => {
                graced = true;
                if !logged_in.load(Ordering::Acquire) {
                    tracing::info!(client = %peer, "ftp: not logged in within login_grace; closing");
                    close(b"421 Login timeout: closing control connection.\r\n");
                }
            }
            () = cancel.cancelled(), if !cancelled => {
                cancelled = true;
                close(b"421 Server shutting down.\r\n");
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(client = %peer, error = %e, "ftp session ended with an error");
    }
}

/// How long shutdown waits for open FTP sessions to end after they were told to close.
const SESSION_DRAIN: Duration = Duration::from_secs(2);

/// A libunftp server for one connection; `logged_in` is set once its login succeeds.
fn build(
    shared: &Shared,
    logged_in: Arc<AtomicBool>,
) -> Result<libunftp::Server<CatalogFs, FtpUser>, Error> {
    let cfg = &shared.core.cfg.ftp;
    let core = shared.core.clone();
    let mut b =
        libunftp::ServerBuilder::<CatalogFs, FtpUser>::with_user_detail_provider::<FtpUser>(
            Box::new(move || CatalogFs { core: core.clone() }),
            Arc::new(FtpUsers),
        )
        .authenticator(Arc::new(FtpAuth {
            core: shared.core.clone(),
            guard: shared.guard.clone(),
            logged_in,
        }))
        .greeting(GREETING)
        .passive_ports(cfg.passive_ports.start..=cfg.passive_ports.end)
        .idle_session_timeout(cfg.idle_timeout.as_secs().max(1))
        .active_passive_mode(if cfg.active_mode {
            ActivePassiveMode::ActiveAndPassive
        } else {
            ActivePassiveMode::PassiveOnly
        })
        .logger(slog::Logger::root(slog::Discard, slog::o!()));
    if let Some(addr) = &cfg.advertised_address {
        b = b.passive_host(PassiveHost::from(addr.trim()));
    }
    if let Some(tls) = &shared.tls {
        b = b.ftps_manual::<std::path::PathBuf>(tls.clone());
    }
    b.build().map_err(|e| Error::Config(format!("ftp: {e}")))
}

/// Load the FTPS certificate chain and key into a rustls server config (ring provider).
fn load_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, Error> {
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| Error::io("read", p, e));
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "{}: no PEM certificate found",
            cert.display()
        )));
    }
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| Error::Tls(format!("{}: {e}", key.display())))?
        .ok_or_else(|| Error::Tls(format!("{}: no PEM private key found", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| Error::Tls(format!("ftps certificate/key: {e}")))?;
    // FTP clients resume the control connection's TLS session on data connections.
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(1024);
    Ok(Arc::new(config))
}
