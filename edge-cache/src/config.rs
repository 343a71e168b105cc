//! The edge's configuration: one serde tree, every field defaulted (see each field's doc).
//!
//! Parse with [`EdgeConfig::from_toml`] (or build in code), override from flags, then call
//! [`EdgeConfig::validate`]; [`crate::run`] validates again and refuses an invalid config.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Configuration of `sitecast edge`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// Where the database, chunks and identity live. Default `/var/lib/sitecast/edge`.
    pub data_dir: PathBuf,
    /// The origin's QUIC address, `host:port`. No default: without it the edge serves its
    /// local catalog and never connects.
    pub origin: Option<String>,
    /// One-time join token (`scj1.…`) used to enroll when the edge has no identity yet.
    /// Default none; ignored once enrolled.
    pub join_token: Option<String>,
    /// This node's name within its site. Default: the host name.
    pub node: String,
    /// HTTP listen address. Default `0.0.0.0:8080`.
    pub http_listen: SocketAddr,
    /// Metrics (`/metrics`, `/healthz`) listen address. Default `127.0.0.1:9480`.
    pub metrics_listen: SocketAddr,
    /// QUIC session tuning.
    pub quic: QuicConfig,
    /// How soon a failed artifact is retried (e.g. after a full disk). Default `10s`. Each
    /// further consecutive failure doubles the wait, up to `retry_failed_max`; a new desired
    /// state from the origin (a push, or `ctl push retry`) retries at once.
    #[serde(with = "humantime_serde")]
    pub retry_failed: Duration,
    /// Longest wait between retries of a failing artifact. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub retry_failed_max: Duration,
    /// HTTP server settings.
    pub http: HttpConfig,
    /// FTP server settings.
    pub ftp: FtpConfig,
    /// SFTP server settings.
    pub sftp: SftpConfig,
    /// OCI registry mirror settings.
    pub oci: OciConfig,
    /// Bytes of recently served chunks kept in memory, verified, for every protocol (a fleet
    /// downloading one firmware reads each chunk from disk and hashes it once). Default
    /// 268435456 (256 MiB); 0 turns the cache off.
    #[serde(with = "sitecast_runtime::size")]
    pub chunk_cache_bytes: u64,
}

/// QUIC session tuning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuicConfig {
    /// Parallel `ChunkRequest` streams while fetching an artifact. Default 4.
    pub fetch_streams: usize,
    /// Most chunk bytes asked for in one `ChunkRequest`. Default 4 MiB.
    #[serde(with = "sitecast_runtime::size")]
    pub batch_bytes: u64,
    /// Connection-level receive window in bytes. Default 2 MiB. Small windows bound what is
    /// lost (sent but not stored) when the edge is killed mid-transfer.
    #[serde(with = "sitecast_runtime::size")]
    pub receive_window: u64,
    /// Per-stream receive window in bytes. Default 1 MiB.
    #[serde(with = "sitecast_runtime::size")]
    pub stream_receive_window: u64,
    /// Shortest wait before reconnecting. Default `500ms`.
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    /// Longest wait before reconnecting (also the wait after a rejected join token).
    /// Attempts start at most this far apart, so an origin that comes back is reached within
    /// `max(reconnect_max, connect_timeout)`. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// An attempt to reach the origin whose QUIC handshake has no answer after this long is
    /// given up (and logged), and the next one starts at its backoff time. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Keep-alive interval. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// A connection silent this long is dead. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

/// HTTP server settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Failed logins per minute from one client address before it gets 429. Default 10.
    pub auth_failures_before_429: u32,
    /// How long a successful password check is remembered. Default `5min`.
    #[serde(with = "humantime_serde")]
    pub auth_cache_ttl: Duration,
    /// A client must send a request's headers within this long of connecting or of its
    /// previous response, else its connection is closed (slow-header and idle keep-alive
    /// connections; a body streams as long as it moves). Also bounds TLS handshakes. Applies
    /// to the HTTP and OCI listeners. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// PEM certificate chain (leaf first): with `tls_key`, the HTTP listener serves HTTPS only.
    /// Default none (plain HTTP, what most devices on a site LAN can speak).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`. Default none.
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS only, with a certificate the origin's CA issues for the names its site lists
    /// (`ctl site https-names`); the key stays in `<data_dir>/https/`. Instead of `tls_cert`.
    /// Default `false`.
    pub tls_from_origin: bool,
}

/// An inclusive TCP port range, written `"30000-30099"` (or one port, `"30000"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PortRange {
    /// First port.
    pub start: u16,
    /// Last port (inclusive).
    pub end: u16,
}

impl PortRange {
    /// Number of ports in the range.
    #[must_use]
    pub fn len(&self) -> usize {
        usize::from(self.end.saturating_sub(self.start)) + 1
    }

    /// Never true: a range holds at least one port.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl TryFrom<String> for PortRange {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let bad = || format!("port range {s:?} is not FIRST-LAST (e.g. 30000-30099)");
        let (a, b) = s.split_once('-').unwrap_or((s.as_str(), s.as_str()));
        let start: u16 = a.trim().parse().map_err(|_| bad())?;
        let end: u16 = b.trim().parse().map_err(|_| bad())?;
        if start == 0 || end < start {
            return Err(bad());
        }
        Ok(Self { start, end })
    }
}

impl From<PortRange> for String {
    fn from(r: PortRange) -> String {
        format!("{}-{}", r.start, r.end)
    }
}

/// FTP server settings (read-only view of the catalog; see the `ftp` module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FtpConfig {
    /// Serve FTP at all. Default `true`.
    pub enabled: bool,
    /// Control connection listen address. Default `0.0.0.0:2121`.
    pub listen: SocketAddr,
    /// Ports for passive (PASV/EPSV) data connections. Default `30000-30099`. Each running
    /// transfer holds one port, so this bounds concurrent transfers.
    pub passive_ports: PortRange,
    /// Address announced in PASV replies (an IPv4 address or a DNS name), for clients behind
    /// NAT. Default none: the address the client connected to.
    pub advertised_address: Option<String>,
    /// Allow active mode (PORT/EPRT: the server connects back to the client). Default `false`.
    pub active_mode: bool,
    /// A control connection idle this long is closed. Default `5min`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A control connection not logged in this long after connecting is answered `421` and
    /// closed, however busy it keeps itself (NOOPs, failed logins). Default `1min`.
    #[serde(with = "humantime_serde")]
    pub login_grace: Duration,
    /// Concurrent control connections from one client address. Default 32.
    pub max_connections_per_ip: u32,
    /// Failed logins from one address within `lockout_window` before it is locked out until
    /// the window ends; every failure also delays the reply a little longer. Default 10.
    pub login_failures_before_lockout: u32,
    /// Window for counting failed logins. Default `10min`.
    #[serde(with = "humantime_serde")]
    pub lockout_window: Duration,
    /// PEM certificate chain for explicit FTPS (AUTH TLS). Default none (FTPS off).
    pub ftps_cert: Option<PathBuf>,
    /// PEM private key for explicit FTPS; required with `ftps_cert`.
    pub ftps_key: Option<PathBuf>,
}

/// SFTP server settings (read-only view of the catalog; see the `sftp` module). The host key is
/// generated once and kept in `<data_dir>/identity/ssh_host_ed25519_key` (mode 0600).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SftpConfig {
    /// Serve SFTP at all. Default `true`.
    pub enabled: bool,
    /// SSH listen address. Default `0.0.0.0:2222`.
    pub listen: SocketAddr,
    /// Concurrent connections from one client address. Default 32.
    pub max_connections_per_ip: u32,
    /// A connection idle this long is closed. Default `5min`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A connection not authenticated this long after connecting is disconnected, however
    /// slowly it sends its version line or key exchange (OpenSSH's `LoginGraceTime`).
    /// Default `1min`.
    #[serde(with = "humantime_serde")]
    pub login_grace: Duration,
    /// Failed logins from one address within `lockout_window` before it is locked out.
    /// Default 10.
    pub login_failures_before_lockout: u32,
    /// Window for counting failed logins. Default `10min`.
    #[serde(with = "humantime_serde")]
    pub lockout_window: Duration,
}

/// OCI registry mirror settings (see the `oci` module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OciConfig {
    /// Serve the mirror at all. Default `true`.
    pub enabled: bool,
    /// Listen address. Default `0.0.0.0:5000`.
    pub listen: SocketAddr,
    /// The registry a request without `ns` names. Default `docker.io`.
    pub default_registry: String,
    /// Longest wait for the origin's first answer to a miss before answering 404 (so
    /// containerd moves on to its next host). Default `2s`.
    #[serde(with = "humantime_serde")]
    pub miss_timeout: Duration,
    /// How long a tag learned on demand is served before the origin is asked again (pushed
    /// tags never are). Default `1min`.
    #[serde(with = "humantime_serde")]
    pub tag_ttl: Duration,
    /// Most bytes of blobs fetched on demand kept on disk (pushed images do not count).
    /// Default 10737418240 (10 GiB).
    #[serde(with = "sitecast_runtime::size")]
    pub cache_max_bytes: u64,
    /// Lifetime of the bearer tokens `/token` issues. Default `5min`.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// PEM certificate chain (leaf first): with `tls_key`, the mirror serves HTTPS only.
    /// Default none (plain HTTP; containerd's hosts.toml then names an `http://` host).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`. Default none.
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS only, with the certificate the origin issues (as `http.tls_from_origin`;
    /// both listeners share it). Default `false`.
    pub tls_from_origin: bool,
}

impl Default for OciConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([0, 0, 0, 0], 5000)),
            default_registry: "docker.io".to_owned(),
            miss_timeout: Duration::from_secs(2),
            tag_ttl: Duration::from_secs(60),
            cache_max_bytes: 10 * 1024 * 1024 * 1024,
            token_ttl: Duration::from_secs(300),
            tls_cert: None,
            tls_key: None,
            tls_from_origin: false,
        }
    }
}

impl Default for FtpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([0, 0, 0, 0], 2121)),
            passive_ports: PortRange {
                start: 30000,
                end: 30099,
            },
            advertised_address: None,
            active_mode: false,
            idle_timeout: Duration::from_secs(300),
            login_grace: Duration::from_secs(60),
            max_connections_per_ip: 32,
            login_failures_before_lockout: 10,
            lockout_window: Duration::from_secs(600),
            ftps_cert: None,
            ftps_key: None,
        }
    }
}

impl Default for SftpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([0, 0, 0, 0], 2222)),
            max_connections_per_ip: 32,
            idle_timeout: Duration::from_secs(300),
            login_grace: Duration::from_secs(60),
            login_failures_before_lockout: 10,
            lockout_window: Duration::from_secs(600),
        }
    }
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/sitecast/edge"),
            origin: None,
            join_token: None,
            node: default_node_name(),
            http_listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9480)),
            quic: QuicConfig::default(),
            retry_failed: Duration::from_secs(10),
            retry_failed_max: Duration::from_secs(300),
            http: HttpConfig::default(),
            ftp: FtpConfig::default(),
            sftp: SftpConfig::default(),
            oci: OciConfig::default(),
            chunk_cache_bytes: 256 * 1024 * 1024,
        }
    }
}

impl Default for QuicConfig {
    fn default() -> Self {
        Self {
            fetch_streams: 4,
            batch_bytes: 4 * 1024 * 1024,
            receive_window: 2 * 1024 * 1024,
            stream_receive_window: 1024 * 1024,
            reconnect_min: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            auth_failures_before_429: 10,
            auth_cache_ttl: Duration::from_secs(300),
            header_timeout: Duration::from_secs(30),
            tls_cert: None,
            tls_key: None,
            tls_from_origin: false,
        }
    }
}

impl std::fmt::Debug for EdgeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeConfig")
            .field("data_dir", &self.data_dir)
            .field("origin", &self.origin)
            .field(
                "join_token",
                &self.join_token.as_ref().map(|_| "<redacted>"),
            )
            .field("node", &self.node)
            .field("http_listen", &self.http_listen)
            .field("metrics_listen", &self.metrics_listen)
            .field("quic", &self.quic)
            .field("retry_failed", &self.retry_failed)
            .field("retry_failed_max", &self.retry_failed_max)
            .field("http", &self.http)
            .field("ftp", &self.ftp)
            .field("sftp", &self.sftp)
            .field("oci", &self.oci)
            .finish()
    }
}

/// The host name, or `edge` when it cannot be read.
fn default_node_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .find(|s| valid_node_name(s))
        .unwrap_or_else(|| "edge".to_owned())
}

fn valid_node_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl EdgeConfig {
    /// Parse a TOML document (missing fields take their defaults).
    ///
    /// # Errors
    /// [`Error::Config`] naming the offending field.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        toml::from_str(text).map_err(|e| Error::Config(e.to_string()))
    }

    /// Check values are usable; normalizes nothing but trims the origin and token.
    ///
    /// # Errors
    /// [`Error::Config`] naming the offending field.
    pub fn validate(mut self) -> Result<Self, Error> {
        let bad = |m: String| Err(Error::Config(m));
        self.origin = self
            .origin
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty());
        self.join_token = self
            .join_token
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        if let Some(origin) = &self.origin {
            let ok = origin
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
            if !ok {
                return bad(format!("origin {origin:?} is not host:port"));
            }
        }
        if let Some(token) = &self.join_token {
            if let Err(e) = token.parse::<sitecast_runtime::tls::JoinToken>() {
                return bad(format!("join_token is invalid: {e}"));
            }
        }
        if !valid_node_name(&self.node) {
            return bad(format!(
                "node {:?} must be 1-64 characters of letters, digits, '-', '_' or '.'",
                self.node
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir is empty".into());
        }
        let q = &self.quic;
        if q.fetch_streams == 0 || q.fetch_streams > 64 {
            return bad(format!(
                "quic.fetch_streams {} must be 1..=64",
                q.fetch_streams
            ));
        }
        let max_chunk = u64::from(sitecast_protocol::MAX_CHUNK);
        if q.batch_bytes < max_chunk {
            return bad(format!(
                "quic.batch_bytes must be at least {max_chunk} (one chunk)"
            ));
        }
        if q.stream_receive_window < max_chunk + 64 {
            return bad(format!(
                "quic.stream_receive_window must be at least {} (one chunk frame)",
                max_chunk + 64
            ));
        }
        if q.receive_window < q.stream_receive_window {
            return bad("quic.receive_window must be at least quic.stream_receive_window".into());
        }
        if q.reconnect_min.is_zero() || q.reconnect_min > q.reconnect_max {
            return bad("quic.reconnect_min must be > 0 and <= quic.reconnect_max".into());
        }
        if q.connect_timeout.is_zero() {
            return bad("quic.connect_timeout must be > 0".into());
        }
        if q.keep_alive.is_zero() || q.idle_timeout <= q.keep_alive {
            return bad("quic.idle_timeout must exceed quic.keep_alive (> 0)".into());
        }
        if self.retry_failed.is_zero() {
            return bad("retry_failed must be > 0".into());
        }
        if self.retry_failed_max < self.retry_failed {
            return bad("retry_failed_max must be at least retry_failed".into());
        }
        if self.http.auth_failures_before_429 == 0 {
            return bad("http.auth_failures_before_429 must be > 0".into());
        }
        let f = &self.ftp;
        if f.max_connections_per_ip == 0 || self.sftp.max_connections_per_ip == 0 {
            return bad("ftp/sftp max_connections_per_ip must be > 0".into());
        }
        if f.login_failures_before_lockout == 0 || self.sftp.login_failures_before_lockout == 0 {
            return bad("ftp/sftp login_failures_before_lockout must be > 0".into());
        }
        if f.idle_timeout < Duration::from_secs(1)
            || self.sftp.idle_timeout < Duration::from_secs(1)
        {
            return bad("ftp/sftp idle_timeout must be at least 1s".into());
        }
        if f.login_grace < Duration::from_secs(1) || self.sftp.login_grace < Duration::from_secs(1)
        {
            return bad("ftp/sftp login_grace must be at least 1s".into());
        }
        if f.lockout_window.is_zero() || self.sftp.lockout_window.is_zero() {
            return bad("ftp/sftp lockout_window must be > 0".into());
        }
        if let Some(a) = &f.advertised_address {
            let a = a.trim();
            if a.is_empty()
                || a.parse::<std::net::Ipv6Addr>().is_ok()
                || a.contains([' ', '/', ':'])
            {
                return bad(format!(
                    "ftp.advertised_address {a:?} must be an IPv4 address or a DNS name"
                ));
            }
        }
        if self.http.header_timeout < Duration::from_secs(1) {
            return bad("http.header_timeout must be at least 1s".into());
        }
        for (field, cert, key, from_origin) in [
            (
                "http",
                &self.http.tls_cert,
                &self.http.tls_key,
                self.http.tls_from_origin,
            ),
            (
                "oci",
                &self.oci.tls_cert,
                &self.oci.tls_key,
                self.oci.tls_from_origin,
            ),
        ] {
            if cert.is_some() != key.is_some() {
                return bad(format!(
                    "{field}.tls_cert and {field}.tls_key must be set together"
                ));
            }
            if from_origin && cert.is_some() {
                return bad(format!(
                    "{field}.tls_from_origin and {field}.tls_cert are two sources of one certificate; set one"
                ));
            }
            if from_origin && self.origin.is_none() {
                return bad(format!(
                    "{field}.tls_from_origin needs an origin to issue the certificate"
                ));
            }
            for p in [cert, key].into_iter().flatten() {
                if !p.is_file() {
                    return bad(format!("{field} TLS file {} is not readable", p.display()));
                }
            }
        }
        if f.ftps_cert.is_some() != f.ftps_key.is_some() {
            return bad("ftp.ftps_cert and ftp.ftps_key must be set together".into());
        }
        for p in [&f.ftps_cert, &f.ftps_key].into_iter().flatten() {
            if !p.is_file() {
                return bad(format!("ftp FTPS file {} is not readable", p.display()));
            }
        }
        if f.enabled
            && self.sftp.enabled
            && f.listen.port() != 0
            && f.listen.port() == self.sftp.listen.port()
        {
            return bad("ftp.listen and sftp.listen use the same port".into());
        }
        let o = &self.oci;
        if o.enabled {
            let taken = [
                (true, self.http_listen.port(), "http_listen"),
                (true, self.metrics_listen.port(), "metrics_listen"),
                (f.enabled, f.listen.port(), "ftp.listen"),
                (self.sftp.enabled, self.sftp.listen.port(), "sftp.listen"),
            ];
            if let Some((_, _, other)) = taken
                .iter()
                .find(|(on, port, _)| *on && *port != 0 && *port == o.listen.port())
            {
                return bad(format!("oci.listen and {other} use the same port"));
            }
            let host_ok =
                sitecast_protocol::oci::RepoName::parse(&format!("{}/x", o.default_registry))
                    .is_ok()
                    && !o.default_registry.contains('/');
            if !host_ok {
                return bad(format!(
                    "oci.default_registry {:?} is not a registry host (e.g. docker.io or registry.example:5000)",
                    o.default_registry
                ));
            }
            if o.miss_timeout.is_zero() || o.token_ttl.is_zero() {
                return bad("oci.miss_timeout and oci.token_ttl must be more than 0".into());
            }
        }
        Ok(self)
    }
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default, clippy::cloned_ref_to_slice_refs)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_documented_values_and_valid() {
        let c = EdgeConfig::from_toml("").unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/sitecast/edge"));
        assert_eq!(c.http_listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.metrics_listen.to_string(), "127.0.0.1:9480");
        assert_eq!(c.quic.fetch_streams, 4);
        assert_eq!(c.quic.batch_bytes, 4 << 20);
        assert_eq!(c.retry_failed, Duration::from_secs(10));
        assert_eq!(c.http.auth_cache_ttl, Duration::from_secs(300));
        c.validate().unwrap();
    }

    #[test]
    fn parses_humantime_and_rejects_bad_values() {
        let c = EdgeConfig::from_toml(
            "origin = \"127.0.0.1:4433\"\nnode = \"e1\"\n[quic]\nreconnect_max = \"2m\"\n",
        )
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(c.quic.reconnect_max, Duration::from_secs(120));
        assert!(EdgeConfig::from_toml("bogus = 1").is_err());
        let mut c = EdgeConfig::default();
        c.origin = Some("nohost".into());
        assert!(c
            .clone()
            .validate()
            .unwrap_err()
            .to_string()
            .contains("origin"));
        c.origin = None;
        c.node = "a/b".into();
        assert!(c.clone().validate().is_err());
        c.node = "ok".into();
        c.join_token = Some("garbage".into());
        assert!(c.validate().unwrap_err().to_string().contains("join_token"));
    }

    #[test]
    fn ftp_and_sftp_defaults_and_validation() {
        let c = EdgeConfig::from_toml("").unwrap();
        assert_eq!(c.ftp.listen.to_string(), "0.0.0.0:2121");
        assert_eq!(
            c.ftp.passive_ports,
            PortRange {
                start: 30000,
                end: 30099
            }
        );
        assert_eq!(c.ftp.passive_ports.len(), 100);
        assert!(!c.ftp.active_mode);
        assert_eq!(c.ftp.idle_timeout, Duration::from_secs(300));
        assert_eq!(c.ftp.max_connections_per_ip, 32);
        assert_eq!(c.ftp.login_failures_before_lockout, 10);
        assert_eq!(c.sftp.listen.to_string(), "0.0.0.0:2222");
        let c = EdgeConfig::from_toml(
            "[ftp]\npassive_ports = \"40000-40009\"\nadvertised_address = \"203.0.113.7\"\nidle_timeout = \"30s\"\n[sftp]\nmax_connections_per_ip = 5\n",
        )
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(
            c.ftp.passive_ports,
            PortRange {
                start: 40000,
                end: 40009
            }
        );
        assert_eq!(c.ftp.idle_timeout, Duration::from_secs(30));
        assert_eq!(c.sftp.max_connections_per_ip, 5);
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("passive_ports = \"40000-40009\""), "{text}");
        for bad in [
            "[ftp]\npassive_ports = \"9-1\"",
            "[ftp]\npassive_ports = \"a-b\"",
            "[ftp]\npassive_ports = \"0-10\"",
        ] {
            assert!(EdgeConfig::from_toml(bad).is_err(), "{bad}");
        }
        let mut c = EdgeConfig::default();
        c.ftp.ftps_cert = Some("/nonexistent.pem".into());
        assert!(c
            .clone()
            .validate()
            .unwrap_err()
            .to_string()
            .contains("ftps"));
        c.ftp.ftps_key = Some("/nonexistent.key".into());
        assert!(c.clone().validate().is_err());
        c.ftp.ftps_cert = None;
        c.ftp.ftps_key = None;
        c.ftp.advertised_address = Some("::1".into());
        assert!(c.clone().validate().is_err());
        c.ftp.advertised_address = None;
        c.ftp.max_connections_per_ip = 0;
        assert!(c.clone().validate().is_err());
        c.ftp.max_connections_per_ip = 1;
        c.sftp.listen = c.ftp.listen;
        assert!(c.clone().validate().is_err());
        c.sftp.listen = "0.0.0.0:2222".parse().unwrap();
        c.oci.listen = "0.0.0.0:8080".parse().unwrap();
        assert!(c
            .clone()
            .validate()
            .unwrap_err()
            .to_string()
            .contains("http_listen"));
        c.oci.listen = "0.0.0.0:5000".parse().unwrap();
        c.oci.default_registry = "https://docker.io".into();
        assert!(c.clone().validate().is_err());
        c.oci.default_registry = "registry.example:5000".into();
        c.clone().validate().unwrap();
    }
}
