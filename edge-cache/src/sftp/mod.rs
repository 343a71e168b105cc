//! The SFTP server (russh + russh-sftp): a read-only view of the **published catalog**.
//!
//! Contract:
//! - the host key is an Ed25519 key generated once into
//!   `<data_dir>/identity/ssh_host_ed25519_key` (OpenSSH format, mode 0600) and reused;
//! - logins: password (checked like FTP and HTTP, [`crate::login`]) or public key (the keys
//!   the origin sent in `SiteUser.ssh_keys`, matched on key data; comments are ignored);
//!   `anonymous` logs in without credentials wherever the site grants anything to anonymous;
//!   failures are delayed and locked out per address like FTP;
//! - only the `sftp` subsystem is served ([`fs`]); shell, exec, pty, other subsystems, port
//!   forwarding (both directions) and agent/X11 forwarding are refused;
//! - limits: `sftp.max_connections_per_ip` connections per address (more are closed at once),
//!   `sftp.idle_timeout` of inactivity closes a connection, and one not authenticated within
//!   `sftp.login_grace` of connecting is cut off however slowly it keeps itself busy;
//! - on cancel, the listener closes and every open connection is disconnected.

mod fs;
mod hostkey;
mod serve;

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::AsFd as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub(crate) use self::fs::resolve;
pub use self::hostkey::host_key_path;
use crate::core::Core;
use crate::error::Error;
use crate::limits::{accept, ConnLimiter, LoginGuard};
use crate::login::{anonymous_allowed, fail, is_anonymous_name, password_login, Login};

/// The SFTP server over an edge core.
pub struct SftpServer {
    core: Arc<Core>,
    cancel: CancellationToken,
}

impl SftpServer {
    /// A server for `core`, stopping when `cancel` fires.
    #[must_use]
    pub fn new(core: Arc<Core>, cancel: CancellationToken) -> Self {
        Self { core, cancel }
    }

    /// Serve SFTP on `listener` until cancelled (loading or creating the host key first).
    ///
    /// # Errors
    /// The host key cannot be read or created.
    pub async fn run(self, listener: TcpListener) -> Result<(), Error> {
        let dir = self.core.cfg.data_dir.clone();
        let key =
            crate::error::blocking("sftp host key", move || hostkey::load_or_create(&dir)).await?;
        let cfg = &self.core.cfg.sftp;
        let mut methods = MethodSet::empty();
        methods.push(MethodKind::None);
        methods.push(MethodKind::Password);
        methods.push(MethodKind::PublicKey);
        let config = Arc::new(russh::server::Config {
            server_id: russh::SshId::Standard(
                format!("SSH-2.0-sitecast_{}", sitecast_protocol::SOFTWARE_VERSION).into(),
            ),
            methods,
            auth_rejection_time: Duration::from_millis(250),
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![key],
            inactivity_timeout: Some(cfg.idle_timeout),
            keepalive_interval: None,
            max_auth_attempts: 6,
            nodelay: true,
            // Bigger windows and packets than the defaults: fewer round trips per MiB.
            window_size: 16 * 1024 * 1024,
            maximum_packet_size: 65535,
            channel_buffer_size: 256,
            ..Default::default()
        });
        let limiter = ConnLimiter::new(cfg.max_connections_per_ip);
        let guard = Arc::new(LoginGuard::new(
            cfg.login_failures_before_lockout,
            cfg.lockout_window,
        ));
        while let Some((stream, peer)) = accept(&listener, &self.cancel, "sftp").await {
            let Some(slot) = limiter.try_acquire(peer.ip()) else {
                tracing::warn!(client = %peer, "sftp: too many connections from this address");
                drop(stream);
                continue;
            };
            self.core
                .metrics
                .sftp_sessions
                .fetch_add(1, Ordering::Relaxed);
            let _ = stream.set_nodelay(true);
            // russh owns the stream (in a task of its own); a second descriptor of the same
            // socket lets the login grace timer cut the connection off.
            let watch = match stream.as_fd().try_clone_to_owned() {
                Ok(fd) => std::net::TcpStream::from(fd),
                Err(e) => {
                    tracing::warn!(client = %peer, error = %e, "sftp: cannot duplicate the socket; closing");
                    continue;
                }
            };
            let authed = Arc::new(AtomicBool::new(false));
            let grace = cfg.login_grace;
            let handler = SshSession {
                core: self.core.clone(),
                guard: guard.clone(),
                ip: peer.ip(),
                login: None,
                authed: authed.clone(),
                pending: HashMap::new(),
            };
            let (config, cancel) = (config.clone(), self.cancel.clone());
            let span = tracing::info_span!("sftp", client = %peer);
            tokio::spawn(
                async move {
                    let _slot = slot;
                    let conn = connection(config, stream, handler, cancel);
                    tokio::pin!(conn);
                    tokio::select! {
                        () = &mut conn => {}
                        () = tokio::time::sleep(grace) => {
                            if !authed.load(Ordering::Acquire) {
                                tracing::info!("sftp: not authenticated within login_grace; closing");
                                let _ = watch.shutdown(std::net::Shutdown::Both);
                            }
                            conn.await;
                        }
                    }
                }
                .instrument(span),
            );
        }
        Ok(())
    }
}

/// Run one SSH connection to its end (disconnecting it when `cancel` fires).
async fn connection(
    config: Arc<russh::server::Config>,
    stream: tokio::net::TcpStream,
    handler: SshSession,
    cancel: CancellationToken,
) {
    let session = match russh::server::run_stream(config, stream, handler).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "ssh handshake failed");
            return;
        }
    };
    let handle = session.handle();
    tokio::select! {
        () = cancel.cancelled() => {
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, "server shutting down".into(), "en".into())
                .await;
        }
        r = session => if let Err(e) = r {
            tracing::debug!(error = %e, "ssh connection ended with an error");
        },
    }
}

/// One SSH connection.
struct SshSession {
    core: Arc<Core>,
    guard: Arc<LoginGuard>,
    ip: IpAddr,
    login: Option<Login>,
    /// Set once authentication succeeds (the login grace timer reads it).
    authed: Arc<AtomicBool>,
    /// Session channels opened and not yet turned into an SFTP subsystem.
    pending: HashMap<ChannelId, Channel<Msg>>,
}

impl SshSession {
    /// The user's keys from the site config (unparseable entries are skipped and logged).
    fn keys_of(&self, user: &str) -> Vec<PublicKey> {
        let site = self.core.site_config();
        let Some(u) = site.users.iter().find(|u| u.name == user) else {
            return Vec::new();
        };
        u.ssh_keys
            .iter()
            .filter_map(|k| match PublicKey::from_openssh(k.trim()) {
                Ok(pk) => Some(pk),
                Err(e) => {
                    tracing::warn!(user, error = %e, "ignoring an unparseable ssh key");
                    None
                }
            })
            .collect()
    }

    fn has_key(&self, user: &str, key: &PublicKey) -> bool {
        self.keys_of(user)
            .iter()
            .any(|k| k.key_data() == key.key_data())
    }

    fn accept(&mut self, login: Login) -> Auth {
        match &login {
            Login::User(u) => tracing::info!(user = %u, "sftp login"),
            _ => tracing::info!("sftp anonymous login"),
        }
        self.login = Some(login);
        self.authed.store(true, Ordering::Release);
        Auth::Accept
    }
}

fn reject() -> Auth {
    Auth::reject()
}

impl russh::server::Handler for SshSession {
    type Error = russh::Error;

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        let site = self.core.site_config();
        if is_anonymous_name(&site, user) && anonymous_allowed(&site) {
            if self.guard.locked_for(self.ip).is_some() {
                return Ok(reject());
            }
            return Ok(self.accept(Login::Anonymous));
        }
        Ok(reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        match password_login(&self.core, &self.guard, self.ip, user, password).await {
            l @ (Login::User(_) | Login::Anonymous) => Ok(self.accept(l)),
            Login::Rejected => {
                tracing::info!(user, "sftp password rejected");
                Ok(reject())
            }
            Login::LockedOut(wait) => {
                tracing::warn!(
                    retry_after_secs = wait.as_secs(),
                    "sftp login refused: too many failures"
                );
                Ok(reject())
            }
        }
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Unknown keys are not failures (clients try every key they hold).
        Ok(if self.has_key(user, offer.public_key) {
            Auth::Accept
        } else {
            reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.guard.locked_for(self.ip).is_some() {
            return Ok(reject());
        }
        if self.has_key(user, key.public_key) {
            return Ok(self.accept(Login::User(user.to_owned())));
        }
        fail(&self.guard, self.ip).await;
        Ok(reject())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The channel is taken again in `subsystem_request` through the session's handle;
        // keep it until then.
        self.pending.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let principal = self.login.as_ref().and_then(Login::principal);
        match (name, principal, self.pending.remove(&channel_id)) {
            ("sftp", Some(principal), Some(channel)) => {
                session.channel_success(channel_id)?;
                let fs = fs::SftpFs::new(self.core.clone(), principal);
                let (read, write) = channel.split();
                tokio::spawn(serve::serve(read, write, fs).in_current_span());
            }
            _ => {
                tracing::info!(subsystem = name, "sftp: refused subsystem");
                session.channel_failure(channel_id)?;
            }
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.close(channel)?;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.pending.remove(&channel);
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        tracing::info!("sftp: refused shell");
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        tracing::info!("sftp: refused exec");
        session.channel_failure(channel)?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        tracing::info!("sftp: refused port forwarding");
        drop(reply);
        Ok(())
    }
}
