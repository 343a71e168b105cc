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
    /// How soon a failed artifact is retried (e.g. after a full disk). Default `10s`.
    #[serde(with = "humantime_serde")]
    pub retry_failed: Duration,
    /// HTTP server settings.
    pub http: HttpConfig,
}

/// QUIC session tuning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuicConfig {
    /// Parallel `ChunkRequest` streams while fetching an artifact. Default 4.
    pub fetch_streams: usize,
    /// Most chunk bytes asked for in one `ChunkRequest`. Default 4 MiB.
    pub batch_bytes: u64,
    /// Connection-level receive window in bytes. Default 2 MiB. Small windows bound what is
    /// lost (sent but not stored) when the edge is killed mid-transfer.
    pub receive_window: u64,
    /// Per-stream receive window in bytes. Default 1 MiB.
    pub stream_receive_window: u64,
    /// Shortest wait before reconnecting. Default `500ms`.
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    /// Longest wait before reconnecting (also the wait after a rejected join token).
    /// Default `30s`.
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
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
            http: HttpConfig::default(),
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
            .field("http", &self.http)
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
        if q.keep_alive.is_zero() || q.idle_timeout <= q.keep_alive {
            return bad("quic.idle_timeout must exceed quic.keep_alive (> 0)".into());
        }
        if self.retry_failed.is_zero() {
            return bad("retry_failed must be > 0".into());
        }
        if self.http.auth_failures_before_429 == 0 {
            return bad("http.auth_failures_before_429 must be > 0".into());
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
}
