//! WAN scenario files (TOML): sites, link rates, nodes, devices per site, protocol mix, content
//! and the impairments of the relay on the QUIC path. `sitecast-loadtest scenario FILE` validates
//! one and prints it as `KEY=value` lines for the `wan/` shell scripts ([`Scenario::to_env`]).
//!
//! ```toml
//! name = "campaign"
//! content = "fw/fw-64MiB.bin"       # path under the data directory, pushed and fetched
//! sites = 3                         # sites s1..s3, unless [[site]] entries are given
//! nodes_per_site = 1
//! devices_per_site = 12
//! link_rate = "100mbit"             # tc tbf rate of each site's WAN link, both directions
//! mix = { ftp = 6, http = 4, sftp = 2 }   # relative weights of the devices' protocols
//! [relay]                           # on the QUIC path only (optional)
//! delay = "20ms"
//! jitter = "5ms"
//! loss = 0.002
//! [[site]]                          # optional per-site overrides
//! name = "far"
//! link_rate = "20mbit"
//! devices = 30
//! ```
//!
//! Devices of a site are split over its protocols by largest remainder of the weights, and over
//! its nodes round-robin by the scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A scenario file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Name used in reports. Default `campaign`.
    pub name: String,
    /// Content path under the data directory. Default `fw/fw-64MiB.bin`.
    pub content: String,
    /// Number of sites when no `[[site]]` is given. Default 2.
    pub sites: u32,
    /// Edge nodes per site. Default 1.
    pub nodes_per_site: u32,
    /// Devices per site. Default 8.
    pub devices_per_site: u32,
    /// Default WAN link rate (`100mbit`, `1gbit`, `500kbit`). Default `100mbit`.
    pub link_rate: String,
    /// Protocol weights of devices. Default `{ ftp = 1 }`.
    pub mix: BTreeMap<String, u32>,
    /// Impairments of the relay on the QUIC path. Default none.
    pub relay: RelaySettings,
    /// Per-site overrides; when present they define the sites.
    pub site: Vec<SiteSpec>,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            name: "campaign".into(),
            content: "fw/fw-64MiB.bin".into(),
            sites: 2,
            nodes_per_site: 1,
            devices_per_site: 8,
            link_rate: "100mbit".into(),
            mix: BTreeMap::from([("ftp".into(), 1)]),
            relay: RelaySettings::default(),
            site: Vec::new(),
        }
    }
}

/// Relay impairments (see `relay::RelayConfig`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelaySettings {
    /// One-way delay. Default 0.
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
    /// Jitter. Default 0.
    #[serde(with = "humantime_serde")]
    pub jitter: Duration,
    /// Loss probability. Default 0.
    pub loss: f64,
    /// Outage period. Default none.
    #[serde(with = "humantime_serde")]
    pub outage_every: Option<Duration>,
    /// Outage length. Default 0.
    #[serde(with = "humantime_serde")]
    pub outage_for: Duration,
}

/// One site's overrides.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SiteSpec {
    /// Site name (`[a-z0-9-]`, ≤ 12 chars: it names network interfaces). Default `s<i>`.
    pub name: Option<String>,
    /// Link rate. Default the scenario's.
    pub link_rate: Option<String>,
    /// Nodes. Default the scenario's.
    pub nodes: Option<u32>,
    /// Devices. Default the scenario's.
    pub devices: Option<u32>,
}

/// A site after defaults are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// Name.
    pub name: String,
    /// Link rate, bits per second.
    pub rate_bps: u64,
    /// Edge nodes.
    pub nodes: u32,
    /// Devices per protocol (ftp/http/sftp).
    pub devices: BTreeMap<String, u32>,
}

/// Parses `100mbit`, `1gbit`, `512kbit`, `2500000bit`, `10mbps` (bytes!) into bits per second.
pub fn parse_rate(s: &str) -> Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| Error::Config(format!("bad rate {s:?}")))?;
    let mult = match unit {
        "bit" | "" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        _ => {
            return Err(Error::Config(format!(
                "bad rate unit in {s:?} (use kbit, mbit, gbit)"
            )))
        }
    };
    let bps = (n * mult) as u64;
    if bps < 8_000 {
        return Err(Error::Config(format!("rate {s:?} is below 8 kbit/s")));
    }
    Ok(bps)
}

const PROTOS: [&str; 3] = ["ftp", "http", "sftp"];

/// Splits `n` devices by weights (largest remainder, ties by protocol order).
fn split(n: u32, mix: &BTreeMap<String, u32>) -> BTreeMap<String, u32> {
    let total: u32 = mix.values().sum();
    let mut out: BTreeMap<String, u32> = PROTOS.iter().map(|p| (p.to_string(), 0)).collect();
    if total == 0 {
        return out;
    }
    let mut rem: Vec<(String, u64)> = Vec::new();
    let mut given = 0;
    for (p, w) in mix {
        let exact = u64::from(n) * u64::from(*w);
        let base = (exact / u64::from(total)) as u32;
        out.insert(p.clone(), base);
        given += base;
        rem.push((p.clone(), exact % u64::from(total)));
    }
    rem.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (p, _) in rem.into_iter().take((n - given) as usize) {
        *out.entry(p).or_default() += 1;
    }
    out
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("read {}: {e}", path.display())))?;
        let s: Scenario =
            toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        s.validate()
    }

    /// Checks names, rates, counts and the mix.
    pub fn validate(self) -> Result<Self> {
        if let Some(p) = self.mix.keys().find(|p| !PROTOS.contains(&p.as_str())) {
            return Err(Error::Config(format!(
                "mix: unknown protocol {p:?} (ftp, http, sftp)"
            )));
        }
        if self.mix.values().sum::<u32>() == 0 {
            return Err(Error::Config("mix: weights sum to zero".into()));
        }
        if self.content.is_empty() || self.content.contains("..") {
            return Err(Error::Config(format!(
                "bad content path {:?}",
                self.content
            )));
        }
        crate::relay::RelayConfig {
            loss: self.relay.loss,
            outage_every: self.relay.outage_every,
            outage_for: self.relay.outage_for,
            delay: self.relay.delay,
            jitter: self.relay.jitter,
            ..Default::default()
        }
        .validate()?;
        let sites = self.resolve()?;
        if sites.is_empty() || sites.len() > 200 {
            return Err(Error::Config("sites must be within 1..=200".into()));
        }
        let mut names = std::collections::BTreeSet::new();
        for s in &sites {
            if s.name.is_empty()
                || s.name.len() > 12
                || !s
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(Error::Config(format!(
                    "site name {:?}: use 1-12 of [a-z0-9-]",
                    s.name
                )));
            }
            if !names.insert(s.name.clone()) {
                return Err(Error::Config(format!("site {:?} appears twice", s.name)));
            }
            if s.nodes == 0 || s.nodes > 16 {
                return Err(Error::Config(format!(
                    "site {}: nodes must be 1..=16",
                    s.name
                )));
            }
        }
        Ok(self)
    }

    /// The sites with every default applied.
    pub fn resolve(&self) -> Result<Vec<Site>> {
        let specs: Vec<SiteSpec> = if self.site.is_empty() {
            (0..self.sites).map(|_| SiteSpec::default()).collect()
        } else {
            self.site.clone()
        };
        specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Ok(Site {
                    name: s.name.clone().unwrap_or_else(|| format!("s{}", i + 1)),
                    rate_bps: parse_rate(s.link_rate.as_deref().unwrap_or(&self.link_rate))?,
                    nodes: s.nodes.unwrap_or(self.nodes_per_site),
                    devices: split(s.devices.unwrap_or(self.devices_per_site), &self.mix),
                })
            })
            .collect()
    }

    /// `KEY=value` lines for the shell scripts (values contain no spaces or quotes).
    pub fn to_env(&self) -> Result<String> {
        let sites = self.resolve()?;
        let mut s = String::new();
        let d = |x: Duration| format!("{}ms", x.as_millis());
        let _ = writeln!(
            s,
            "SCN_NAME={}",
            self.name.replace(char::is_whitespace, "_")
        );
        let _ = writeln!(s, "SCN_CONTENT={}", self.content);
        let _ = writeln!(s, "SCN_SITES={}", sites.len());
        let _ = writeln!(s, "SCN_RELAY_DELAY={}", d(self.relay.delay));
        let _ = writeln!(s, "SCN_RELAY_JITTER={}", d(self.relay.jitter));
        let _ = writeln!(s, "SCN_RELAY_LOSS={}", self.relay.loss);
        let _ = writeln!(
            s,
            "SCN_RELAY_OUTAGE_EVERY={}",
            self.relay.outage_every.map(d).unwrap_or_default()
        );
        let _ = writeln!(s, "SCN_RELAY_OUTAGE_FOR={}", d(self.relay.outage_for));
        for (i, site) in sites.iter().enumerate() {
            let i = i + 1;
            let _ = writeln!(s, "SCN_SITE_{i}_NAME={}", site.name);
            let _ = writeln!(s, "SCN_SITE_{i}_RATE_BPS={}", site.rate_bps);
            let _ = writeln!(s, "SCN_SITE_{i}_NODES={}", site.nodes);
            for (p, n) in &site.devices {
                let _ = writeln!(s, "SCN_SITE_{i}_{}={n}", p.to_ascii_uppercase());
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("100mbit").unwrap(), 100_000_000);
        assert_eq!(parse_rate("1.5gbit").unwrap(), 1_500_000_000);
        assert_eq!(parse_rate("10mbps").unwrap(), 80_000_000);
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("10 furlongs").is_err());
        assert!(parse_rate("1bit").is_err());
    }

    #[test]
    fn devices_split_by_weight() {
        let mix = BTreeMap::from([("ftp".into(), 6), ("http".into(), 3), ("sftp".into(), 1)]);
        let d = split(12, &mix);
        assert_eq!(d.values().sum::<u32>(), 12);
        assert_eq!((d["ftp"], d["http"], d["sftp"]), (7, 4, 1));
    }

    #[test]
    fn scenario_round_trip_and_errors() {
        let s: Scenario = toml::from_str(
            r#"name = "t"
sites = 2
devices_per_site = 5
link_rate = "50mbit"
mix = { ftp = 1, http = 1 }
[relay]
delay = "20ms"
loss = 0.01
"#,
        )
        .unwrap();
        let s = s.validate().unwrap();
        let env = s.to_env().unwrap();
        assert!(env.contains("SCN_SITES=2\n"));
        assert!(env.contains("SCN_SITE_2_NAME=s2\n"));
        assert!(env.contains("SCN_SITE_1_RATE_BPS=50000000\n"));
        assert!(env.contains("SCN_SITE_1_FTP=3\n") && env.contains("SCN_SITE_1_HTTP=2\n"));
        assert!(env.contains("SCN_RELAY_DELAY=20ms\n"));
        let bad: Scenario = toml::from_str("mix = { gopher = 1 }").unwrap();
        assert!(bad.validate().is_err());
        let bad: Scenario = toml::from_str("[[site]]\nname = \"Bad Name\"").unwrap();
        assert!(bad.validate().is_err());
        assert!(toml::from_str::<Scenario>("sitez = 3").is_err());
    }
}
