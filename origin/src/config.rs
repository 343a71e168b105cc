//! The origin's configuration: one serde tree, read from TOML, every field defaulted.
//!
//! Load with `toml::from_str::<OriginConfig>(..)`, override fields from flags, then call
//! [`OriginConfig::validate`], which normalises and rejects impossible values with a message
//! naming the field. Secrets (the admin token) live in their own file, not here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Configuration of `sitecast origin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OriginConfig {
    /// Where the database, chunk store, CA and admin token live.
    /// Default `/var/lib/sitecast/origin`.
    pub data_dir: PathBuf,
    /// REST API listen address (HTTP). Default `0.0.0.0:8440`.
    pub api_listen: SocketAddr,
    /// QUIC listen address (UDP) for edges. Default `0.0.0.0:8441`.
    pub quic_listen: SocketAddr,
    /// OCI registry listen address (HTTP; the distribution API under `/v2/`). Default
    /// `0.0.0.0:8442`.
    pub registry_listen: SocketAddr,
    /// File holding the admin bearer token; created with a fresh token (mode 0600) if missing.
    /// Default `<data_dir>/admin.token`.
    pub admin_token_file: Option<PathBuf>,
    /// Largest accepted artifact upload, in bytes (a number, or a string such as `"64GiB"`).
    /// Default 64 GiB.
    #[serde(with = "sitecast_runtime::size")]
    pub max_upload: u64,
    /// Largest accepted JSON request body, in bytes. Default 1 MiB.
    #[serde(with = "sitecast_runtime::size")]
    pub max_json_body: u64,
    /// `fsync` every chunk before it is visible. Default true; turn off only for throwaway data.
    pub fsync: bool,
    /// QUIC transport settings.
    pub quic: QuicOptions,
    /// How often per-push byte counters are written to the database. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub accounting_flush: Duration,
    /// Upstream registries the registry fetches missing images from (pull-through), chosen by
    /// the longest matching repository prefix. Default none.
    pub registry_upstreams: Vec<UpstreamConfig>,
    /// HTTPS for the REST API and registry listeners. Default plain HTTP.
    pub tls: HttpsOptions,
    /// Rate limits of the REST API listener, decided before authentication: the first rule
    /// matching a request takes a token from its bucket or refuses the request with 429.
    /// Default none (nothing is limited).
    pub rate_limits: Vec<RateLimitRule>,
}

/// One `[[rate_limits]]` rule: which requests it matches (every condition given must hold;
/// none given matches every request) and its token bucket. See `api::ratelimit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitRule {
    /// Names the rule in errors, in the 429's message and in the metrics' `rule` label:
    /// 1–63 letters, digits, `-`, `_`, `.`; unique. Required.
    pub name: String,
    /// A regular expression (Rust `regex` syntax, unanchored: write `^` to anchor) that the
    /// `User-Agent` header must match; a request without one is matched as the empty string.
    /// Default any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// HTTP methods (`GET` also covers `HEAD`). Default `[]`: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// URL path pattern, matched segment by segment against the path as sent (without the
    /// query): a literal segment, `*` for exactly one segment, and a final `**` for the rest
    /// (none or more segments): `/api/v1/pushes`, `/api/v1/pushes/*/cancel`,
    /// `/api/v1/artifacts/**`. Default any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How fast the bucket refills: `N/s`, `N/min` or `N/h` (N from 1 to 1,000,000). Required.
    pub rate: String,
    /// How many tokens the bucket holds: the requests let through at once after a quiet
    /// period (at least 1). Required.
    pub burst: u32,
    /// `client`: one bucket per client IP address (the TCP peer); `rule`: one bucket shared by
    /// every request the rule matches. Default `client`.
    #[serde(default)]
    pub per: RateLimitPer,
}

/// Whose requests share a rate-limit bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitPer {
    /// One bucket per client IP address.
    #[default]
    Client,
    /// One bucket for the rule.
    Rule,
}

/// `[tls]`: the certificate the REST API and registry listeners serve HTTPS with: files the
/// operator provides (`cert` and `key`), or one the origin issues itself from its CA for
/// `names`. With neither, both listeners are plain HTTP (admin tokens and passwords then cross
/// the network in the clear: only for loopback or a network as trusted as the origin host).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpsOptions {
    /// PEM certificate chain, leaf first. Set with `key`. Default none.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert` (PKCS#8, PKCS#1 or SEC1). Default none.
    pub key: Option<PathBuf>,
    /// Without `cert`: DNS names and IP addresses for a certificate the origin issues from its
    /// own CA at every start (never stored); clients then trust `<data_dir>/ca/ca.pem`
    /// (`sitecast ctl --ca`). Default none.
    pub names: Vec<String>,
}

impl HttpsOptions {
    /// Whether the listeners serve HTTPS.
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.cert.is_some() || !self.names.is_empty()
    }
}

/// One pull-through upstream: `[[registry_upstreams]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Repository prefix served from this upstream, ending in `/`: `docker.io/`. The rest of
    /// the repository name is the path at the upstream (`docker.io/library/nginx` →
    /// `library/nginx`).
    pub prefix: String,
    /// Base URL of the upstream registry: `https://registry-1.docker.io`, `http://127.0.0.1:5000`.
    pub url: String,
    /// User name for Basic auth and the token service, if the upstream needs one.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the password (kept out of the config itself).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// A tag fetched from this upstream is served this long before the upstream is asked
    /// again (by `HEAD`; the manifest is fetched only when the digest changed). `0s` asks
    /// every time. While the upstream cannot be reached the stored digest keeps serving.
    /// Default `5min`.
    #[serde(default = "default_tag_ttl", with = "humantime_serde")]
    pub tag_ttl: Duration,
}

fn default_tag_ttl() -> Duration {
    Duration::from_secs(300)
}

/// QUIC transport settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuicOptions {
    /// Close a connection silent for this long (edges send keep-alives). Default `30s`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Per-connection send window in bytes (at most 4 MiB). Default 4 MiB.
    #[serde(with = "sitecast_runtime::size")]
    pub send_window: u64,
    /// Most concurrent bidirectional streams an edge may open. Default 64.
    pub max_streams: u32,
    /// Packets a later-sent packet may be acknowledged ahead of an earlier one before the
    /// earlier one is declared lost (RFC 9002's packet threshold, 3 there). Links with jitter
    /// reorder packets; at 3, every reordering counts as a loss, which makes a loss-based
    /// controller cut its window (with Cubic, 32 instead of 3 took a 17 MB on-demand pull over a
    /// 20 Mbit/s link with 20 ms ± 5 ms and 0.5 % loss from 125 s to 96 s). Real losses are
    /// still found by the time threshold (9/8 of the RTT). Default 32.
    pub reordering_threshold: u32,
    /// Congestion controller of the connections to edges: `bbr`, `cubic` or `new_reno`.
    /// Default `bbr`: it keeps a thin link full under loss and jitter, where the loss-based
    /// ones collapse (measured through a 20 Mbit/s link with 20 ms ± 5 ms and 0.5 % loss: 17 MB
    /// in 8.2 s with BBR, 96 s with Cubic; the same 7.9 s on a clean link). BBR does not back
    /// off for other traffic's losses: cap each site's rate (`--max-rate`) on links shared with
    /// production, or choose `cubic`.
    pub congestion: Congestion,
}

/// QUIC congestion controllers (quinn's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Congestion {
    /// Model-based (bandwidth and RTT), quinn's `BbrConfig`.
    Bbr,
    /// Loss-based, RFC 9438.
    Cubic,
    /// Loss-based, RFC 9002's reference.
    NewReno,
}

impl Default for QuicOptions {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30),
            send_window: 4 * MIB,
            max_streams: 64,
            reordering_threshold: 32,
            congestion: Congestion::Bbr,
        }
    }
}

/// Letters, digits, `-` and `.` in labels of at most 63, `*.` allowed as the first label.
/// A DNS name for a certificate: labels of letters, digits and `-`, at most 253 characters, with
/// an optional leading `*.` wildcard.
pub(crate) fn is_dns_name(n: &str) -> bool {
    let n = n.strip_prefix("*.").unwrap_or(n);
    n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

impl Default for OriginConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/sitecast/origin"),
            api_listen: SocketAddr::from(([0, 0, 0, 0], 8440)),
            quic_listen: SocketAddr::from(([0, 0, 0, 0], 8441)),
            registry_listen: SocketAddr::from(([0, 0, 0, 0], 8442)),
            admin_token_file: None,
            max_upload: 64 * GIB,
            max_json_body: MIB,
            fsync: true,
            quic: QuicOptions::default(),
            accounting_flush: Duration::from_secs(1),
            registry_upstreams: Vec::new(),
            tls: HttpsOptions::default(),
            rate_limits: Vec::new(),
        }
    }
}

impl OriginConfig {
    /// A configuration for tests and the demo: everything under `dir`, listeners on loopback
    /// port 0.
    #[must_use]
    pub fn local(dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: dir.into(),
            api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            quic_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            registry_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Self::default()
        }
    }

    /// Check and normalise (fills in `admin_token_file`).
    ///
    /// # Errors
    /// [`Error::Config`] naming the offending field.
    pub fn validate(mut self) -> Result<Self> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(Error::Config("data_dir must not be empty".into()));
        }
        if self.admin_token_file.is_none() {
            self.admin_token_file = Some(self.data_dir.join("admin.token"));
        }
        if self.max_upload == 0 {
            return Err(Error::Config("max_upload must be more than 0".into()));
        }
        if self.max_json_body < 1024 {
            return Err(Error::Config("max_json_body must be at least 1 KiB".into()));
        }
        if self.quic.idle_timeout < Duration::from_secs(2) {
            return Err(Error::Config(
                "quic.idle_timeout must be at least 2s".into(),
            ));
        }
        if !(64 * 1024..=4 * MIB).contains(&self.quic.send_window) {
            return Err(Error::Config(
                "quic.send_window must be between 64 KiB and 4 MiB".into(),
            ));
        }
        if self.quic.reordering_threshold < 3 {
            return Err(Error::Config(
                "quic.reordering_threshold must be at least 3 (RFC 9002)".into(),
            ));
        }
        if self.quic.max_streams == 0 {
            return Err(Error::Config("quic.max_streams must be more than 0".into()));
        }
        if self.accounting_flush.is_zero() || self.accounting_flush > Duration::from_secs(60) {
            return Err(Error::Config(
                "accounting_flush must be between 1ms and 60s".into(),
            ));
        }
        let t = &self.tls;
        if t.cert.is_some() != t.key.is_some() {
            return Err(Error::Config(
                "tls.cert and tls.key must be set together".into(),
            ));
        }
        if t.cert.is_some() && !t.names.is_empty() {
            return Err(Error::Config(
                "tls.names is for a certificate the origin issues itself; leave it empty with tls.cert".into(),
            ));
        }
        for n in &t.names {
            if n.is_empty() || (n.parse::<std::net::IpAddr>().is_err() && !is_dns_name(n)) {
                return Err(Error::Config(format!(
                    "tls.names: {n:?} is neither a DNS name nor an IP address"
                )));
            }
        }
        for (i, u) in self.registry_upstreams.iter().enumerate() {
            if !u.prefix.ends_with('/') || u.prefix.len() < 2 {
                return Err(Error::Config(format!(
                    "registry_upstreams[{i}].prefix {:?} must be a repository prefix ending in '/'",
                    u.prefix
                )));
            }
            if !(u.url.starts_with("http://") || u.url.starts_with("https://")) {
                return Err(Error::Config(format!(
                    "registry_upstreams[{i}].url {:?} must start with http:// or https://",
                    u.url
                )));
            }
            if u.username.is_some() != u.password_file.is_some() {
                return Err(Error::Config(format!(
                    "registry_upstreams[{i}]: username and password_file go together"
                )));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, r) in self.rate_limits.iter().enumerate() {
            crate::api::ratelimit::check_rule(r)
                .map_err(|e| Error::Config(format!("rate_limits[{i}] (rule {:?}): {e}", r.name)))?;
            if !names.insert(r.name.as_str()) {
                return Err(Error::Config(format!(
                    "rate_limits[{i}]: a rule named {:?} comes earlier; names must be unique",
                    r.name
                )));
            }
        }
        Ok(self)
    }

    /// The admin token file (after [`OriginConfig::validate`], always set).
    #[must_use]
    pub fn admin_token_path(&self) -> PathBuf {
        self.admin_token_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin.token"))
    }
}

/// Parse a byte size (see [`sitecast_runtime::size::parse`]).
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_size(s: &str) -> Result<u64, String> {
    sitecast_runtime::size::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_toml_overrides() {
        let c: OriginConfig = toml::from_str("").unwrap();
        assert_eq!(c, OriginConfig::default());
        let c: OriginConfig = toml::from_str(
            "data_dir = \"/tmp/x\"\nmax_upload = \"2GiB\"\naccounting_flush = \"250ms\"\n[quic]\nidle_timeout = \"10s\"\n",
        )
        .unwrap();
        let c = c.validate().unwrap();
        assert_eq!(c.max_upload, 2 * GIB);
        assert_eq!(c.quic.idle_timeout, Duration::from_secs(10));
        assert_eq!(c.admin_token_path(), PathBuf::from("/tmp/x/admin.token"));
        assert!(toml::from_str::<OriginConfig>("bogus = 1").is_err());
    }

    #[test]
    fn validate_names_the_field() {
        let mut c = OriginConfig::default();
        c.quic.send_window = 64 * MIB;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("send_window"), "{e}");
        assert!(parse_size("12 parsecs").is_err());
        let rules = |extra: &str| {
            toml::from_str::<OriginConfig>(&format!(
                "[[rate_limits]]\nname = \"ci\"\nrate = \"10/s\"\nburst = 5\n\
                 [[rate_limits]]\nname = \"py\"\nuser_agent = \"^python-requests/\"\n\
                 methods = [\"POST\"]\npath = \"/api/v1/pushes\"\nper = \"rule\"\n{extra}"
            ))
            .unwrap()
            .validate()
        };
        let c = rules("rate = \"1/min\"\nburst = 1").unwrap();
        assert_eq!(c.rate_limits[0].per, RateLimitPer::Client, "the default");
        assert_eq!(c.rate_limits[1].per, RateLimitPer::Rule);
        let e = rules("rate = \"0/s\"\nburst = 1").unwrap_err().to_string();
        assert!(
            e.contains("rate_limits[1] (rule \"py\"): rate \"0/s\""),
            "{e}"
        );
        let mut c = rules("rate = \"1/s\"\nburst = 1").unwrap();
        c.rate_limits[1].name = "ci".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("rate_limits[1]") && e.contains("unique"), "{e}");
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
    }
}
