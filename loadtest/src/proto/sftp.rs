//! SFTP downloads over SSH (russh client + russh-sftp client session with pipelined reads).
//!
//! The server's host key must be listed for `[host]:port` (or `host` on port 22) in the
//! `known_hosts` file, unless `insecure_host_key`; otherwise the handshake fails (`ssh`).
//! Authentication: the private key when given, else the password. One SSH session per device,
//! kept between downloads unless `fresh_connections`.

use std::path::Path;
use std::sync::Arc;

use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh_sftp::client::SftpSession;
use tokio::io::AsyncReadExt;

use crate::error::{Error, Result};
use crate::target::{Item, Target, Verifier};

/// Host keys accepted for one endpoint.
#[derive(Clone, Debug)]
pub(crate) struct HostKeys {
    keys: Vec<PublicKey>,
    insecure: bool,
}

impl HostKeys {
    /// Reads the keys listed for `authority` (`host:port`) in an OpenSSH `known_hosts` file.
    pub(crate) fn load(path: &Path, authority: &str) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("read {}: {e}", path.display())))?;
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| Error::Config(format!("bad authority {authority}")))?;
        let wanted = [format!("[{host}]:{port}"), host.to_string()];
        let mut keys = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
            let mut f = line.split_whitespace();
            let (Some(hosts), Some(_alg), Some(b64)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let matches = hosts
                .split(',')
                .any(|h| h == wanted[0] || (port == "22" && h == wanted[1]));
            if matches {
                let k = russh::keys::parse_public_key_base64(b64)
                    .map_err(|e| Error::Config(format!("{}: bad key: {e}", path.display())))?;
                keys.push(k);
            }
        }
        if keys.is_empty() {
            return Err(Error::Config(format!(
                "{} lists no key for {authority}",
                path.display()
            )));
        }
        Ok(Self {
            keys,
            insecure: false,
        })
    }

    fn any() -> Self {
        Self {
            keys: Vec::new(),
            insecure: true,
        }
    }
}

struct Handler {
    hosts: HostKeys,
}

impl russh::client::Handler for Handler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        if self.hosts.insecure {
            return Ok(true);
        }
        Ok(match server_public_key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => self
                .hosts
                .keys
                .iter()
                .any(|k| k.key_data() == key.key_data()),
            russh::keys::PublicKeyOrCertificate::Certificate(_) => false,
        })
    }
}

/// Settings shared by every device of a run (keys loaded once).
#[derive(Clone)]
pub(crate) struct SftpShared {
    target: Target,
    hosts: HostKeys,
    key: Option<Arc<PrivateKey>>,
}

impl SftpShared {
    pub(crate) fn new(target: &Target) -> Result<Self> {
        let authority = target.authority()?;
        let hosts = match (&target.known_hosts, target.insecure_host_key) {
            (_, true) => HostKeys::any(),
            (Some(p), false) => HostKeys::load(p, &authority)?,
            (None, false) => return Err(Error::Config("sftp needs --known-hosts".into())),
        };
        let key = match &target.key {
            Some(p) => Some(Arc::new(
                russh::keys::load_secret_key(p, None)
                    .map_err(|e| Error::Config(format!("load key {}: {e}", p.display())))?,
            )),
            None => None,
        };
        Ok(Self {
            target: target.clone(),
            hosts,
            key,
        })
    }
}

struct Session {
    _handle: russh::client::Handle<Handler>,
    sftp: SftpSession,
}

/// One device's SFTP client.
pub(crate) struct SftpClient {
    shared: SftpShared,
    session: Option<Session>,
}

fn ssh(e: impl std::fmt::Display) -> Error {
    Error::Ssh(e.to_string())
}

impl SftpClient {
    pub(crate) fn new(shared: &SftpShared) -> Self {
        Self {
            shared: shared.clone(),
            session: None,
        }
    }

    async fn connect(&self) -> Result<Session> {
        let t = &self.shared.target;
        let addr = t.authority()?;
        let config = russh::client::Config {
            window_size: 16 * 1024 * 1024,
            maximum_packet_size: 65_535,
            nodelay: true,
            inactivity_timeout: Some(t.timeout),
            ..Default::default()
        };
        let handler = Handler {
            hosts: self.shared.hosts.clone(),
        };
        let mut handle = russh::client::connect(Arc::new(config), addr.as_str(), handler)
            .await
            .map_err(|e| match e {
                russh::Error::IO(source) => Error::Connect {
                    addr: addr.clone(),
                    source,
                },
                russh::Error::UnknownKey => {
                    Error::Ssh(format!("{addr}: host key not in known_hosts"))
                }
                other => ssh(other),
            })?;
        let user = t.user.clone().unwrap_or_default();
        let auth = if let Some(key) = &self.shared.key {
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .map_err(ssh)?
                .flatten();
            handle
                .authenticate_publickey(&user, PrivateKeyWithHashAlg::new(key.clone(), hash))
                .await
                .map_err(ssh)?
        } else {
            let pass = t.password.clone().unwrap_or_default();
            handle
                .authenticate_password(&user, pass)
                .await
                .map_err(ssh)?
        };
        if !auth.success() {
            return Err(Error::Auth(format!("{user}@{addr}")));
        }
        let channel = handle.channel_open_session().await.map_err(ssh)?;
        channel.request_subsystem(true, "sftp").await.map_err(ssh)?;
        let cfg = russh_sftp::client::Config {
            max_concurrent_reads: 32,
            request_timeout_secs: t.timeout.as_secs().max(1),
            ..Default::default()
        };
        let sftp = SftpSession::new_with_config(channel.into_stream(), cfg)
            .await
            .map_err(ssh)?;
        Ok(Session {
            _handle: handle,
            sftp,
        })
    }

    fn remote_path(&self, item: &Item) -> String {
        match &self.shared.target.sftp_root {
            Some(root) if !root.is_empty() => {
                format!(
                    "{}/{}",
                    root.trim_end_matches('/'),
                    item.path.trim_start_matches('/')
                )
            }
            _ => format!("/{}", item.path.trim_start_matches('/')),
        }
    }

    async fn get(session: &Session, path: &str, item: &Item) -> Result<u64> {
        let mut file = session.sftp.open(path).await.map_err(|e| match e {
            russh_sftp::client::error::Error::Status(s)
                if s.status_code == russh_sftp::protocol::StatusCode::NoSuchFile =>
            {
                Error::NotFound(path.to_string())
            }
            russh_sftp::client::error::Error::Status(s)
                if s.status_code == russh_sftp::protocol::StatusCode::PermissionDenied =>
            {
                Error::Auth(format!("{path}: permission denied"))
            }
            other => ssh(other),
        })?;
        let mut v = Verifier::default();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            v.update(&buf[..n]);
        }
        drop(file);
        let want = item
            .sha256
            .as_deref()
            .ok_or_else(|| Error::Config(format!("no digest for {}", item.path)))?;
        v.finish(&item.path, want, item.size)
    }

    /// Downloads one item (opening an SSH session first when there is none).
    pub(crate) async fn fetch(&mut self, item: &Item) -> Result<u64> {
        let session = match self.session.take() {
            Some(s) => s,
            None => self.connect().await?,
        };
        let path = self.remote_path(item);
        let result = Self::get(&session, &path, item).await;
        let keep = matches!(
            &result,
            Ok(_) | Err(Error::NotFound(_)) | Err(Error::Digest { .. })
        );
        if keep && !self.shared.target.fresh_connections {
            self.session = Some(session);
        } else {
            let _ = session.sftp.close().await;
        }
        result
    }
}
