//! HTTP listeners over TLS: the origin's REST API and registry, and the edge's HTTP and OCI
//! listeners serve HTTPS (rustls, ring) when given a certificate chain and key, and plain HTTP
//! otherwise.
//!
//! Connections are served by `axum-server` (hyper underneath, the same stack as `axum::serve`),
//! which adds the rustls acceptor and lets hyper's timer run: a client must send a request's
//! headers within `header_timeout` of connecting or of its previous response (slow-header and
//! idle keep-alive connections are closed, a body streams as long as it moves), and a TLS
//! handshake must end within it too. On the cancellation token the listener stops accepting
//! and connections still open get [`DRAIN`] to finish before they are closed, so a server
//! always stops within a bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long open TLS connections may finish their requests after shutdown starts.
pub const DRAIN: Duration = Duration::from_secs(10);

/// A listener's TLS identity could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsLoadError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The PEM holds no certificate, no key, or something rustls refuses.
    #[error("{0}")]
    Invalid(String),
}

/// A certificate chain and key for a listener, parsed and checked against each other.
///
/// Clones share one slot: [`TlsIdentity::replace_with`] on any clone changes the certificate
/// every listener serving a clone presents to new connections (connections already open keep
/// theirs).
#[derive(Clone)]
pub struct TlsIdentity {
    config: RustlsConfig,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsIdentity")
    }
}

impl TlsIdentity {
    /// Load a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or
    /// SEC1) from files.
    ///
    /// # Errors
    /// A file cannot be read, holds no certificate or key, or the key does not match.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsLoadError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| TlsLoadError::Read {
                path: p.to_owned(),
                source,
            })
        };
        Self::from_pem(&read(cert)?, &read(key)?).map_err(|e| match e {
            TlsLoadError::Invalid(m) => {
                TlsLoadError::Invalid(format!("{} / {}: {m}", cert.display(), key.display()))
            }
            other => other,
        })
    }

    /// Parse a PEM certificate chain and key.
    ///
    /// # Errors
    /// No certificate, no key, or rustls refuses the pair.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsLoadError> {
        let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &cert_pem[..])
            .collect::<Result<_, _>>()
            .map_err(|e| TlsLoadError::Invalid(format!("certificate PEM: {e}")))?;
        if chain.is_empty() {
            return Err(TlsLoadError::Invalid("no certificate in the PEM".into()));
        }
        let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
            .map_err(|e| TlsLoadError::Invalid(format!("key PEM: {e}")))?
            .ok_or_else(|| TlsLoadError::Invalid("no private key in the PEM".into()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsLoadError::Invalid(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| TlsLoadError::Invalid(format!("certificate and key: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            config: RustlsConfig::from_config(Arc::new(config)),
        })
    }

    /// Present `other`'s certificate and key from now on, here and in every clone.
    pub fn replace_with(&self, other: &TlsIdentity) {
        self.config.reload_from_config(other.config.get_inner());
    }
}

/// The default of `header_timeout` (hyper's own default, once a timer runs).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve `app` on `listener` until `cancel` fires: HTTPS with `tls`, plain HTTP without.
/// Handlers see the client's address as `ConnectInfo<SocketAddr>` either way.
///
/// # Errors
/// The listener fails.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<&TlsIdentity>,
    header_timeout: Duration,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let make = app.into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::<SocketAddr>::new();
    let h = handle.clone();
    tokio::spawn(async move {
        cancel.cancelled().await;
        h.graceful_shutdown(Some(DRAIN));
    });
    let mut server = axum_server::Server::from_listener(listener).handle(handle);
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    match tls {
        None => server.serve(make).await,
        Some(tls) => {
            let acceptor =
                RustlsAcceptor::new(tls.config.clone()).handshake_timeout(header_timeout);
            server.acceptor(acceptor).serve(make).await
        }
    }
}
