//! The result of a run: [`Report`] (serialised as one JSON document with `--json`) and its text
//! rendering. Field meanings are part of the tool's contract (scripts parse them):
//!
//! - `requests`: downloads finished (ok + failed); `retries`: extra attempts made while waiting
//!   for content to become available (`--wait-available`), not counted as failures.
//! - `errors`: failed downloads by kind (see `Error::kind`); `error_samples`: the first messages.
//! - `bytes`: payload bytes received by successful downloads; `digests_verified`: SHA-256 checks
//!   that passed (one per file; OCI: one per manifest and blob).
//! - `wall_s`: start of the first download to the end of the last ("time to complete").
//! - `throughput_mb_s` = bytes / wall_s / 10^6; `requests_per_s` = ok / wall_s.
//! - `latency_ms`: duration of the successful attempt of each download (p50/p90/p99/max/mean).
//! - `completion_s`: for each successful download, seconds from the run's start until it was
//!   complete (in a campaign: when each device had its firmware).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Order statistics of a sample (all zero when empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Number of samples.
    pub n: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (sorted in place).
    pub fn of(samples: &mut [f64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        let rank = |p: f64| samples[((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1];
        Self {
            n: n as u64,
            p50: round3(rank(50.0)),
            p90: round3(rank(90.0)),
            p99: round3(rank(99.0)),
            max: round3(samples[n - 1]),
            mean: round3(samples.iter().sum::<f64>() / n as f64),
        }
    }
}

/// Rounds to 3 decimals (keeps the JSON readable).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Everything a run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Always `sitecast-loadtest`.
    pub tool: String,
    /// Free label (`--label`), e.g. `nginx` or `sitecast`.
    pub label: String,
    /// Protocol name.
    pub proto: String,
    /// Base URL measured.
    pub target: String,
    /// Item paths, in the order clients cycle through them.
    pub paths: Vec<String>,
    /// Concurrent clients (simulated devices).
    pub clients: u64,
    /// Whether every download used a new connection.
    pub fresh_connections: bool,
    /// Downloads finished (ok + failed).
    pub requests: u64,
    /// Successful, verified downloads.
    pub ok: u64,
    /// Failed downloads.
    pub failed: u64,
    /// Extra attempts while waiting for content (`--wait-available`).
    pub retries: u64,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// The first few error messages.
    pub error_samples: Vec<String>,
    /// Payload bytes of successful downloads.
    pub bytes: u64,
    /// SHA-256 checks passed.
    pub digests_verified: u64,
    /// Time to complete, seconds.
    pub wall_s: f64,
    /// bytes / wall_s / 10^6.
    pub throughput_mb_s: f64,
    /// ok / wall_s.
    pub requests_per_s: f64,
    /// Per-download latency, milliseconds.
    pub latency_ms: Percentiles,
    /// Completion time since start, seconds.
    pub completion_s: Percentiles,
}

impl Report {
    /// Human-readable summary (several lines).
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} {} {} ({} clients{}): {} ok, {} failed, {} retries in {:.2} s",
            self.label,
            self.proto,
            self.target,
            self.clients,
            if self.fresh_connections {
                ", fresh connections"
            } else {
                ""
            },
            self.ok,
            self.failed,
            self.retries,
            self.wall_s
        );
        let _ = writeln!(
            s,
            "  throughput {:.1} MB/s ({:.1} Mbit/s), {:.1} downloads/s, {} bytes, {} digests verified",
            self.throughput_mb_s,
            self.throughput_mb_s * 8.0,
            self.requests_per_s,
            self.bytes,
            self.digests_verified
        );
        let l = &self.latency_ms;
        let _ = writeln!(
            s,
            "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  mean {:.2}",
            l.p50, l.p90, l.p99, l.max, l.mean
        );
        let c = &self.completion_s;
        let _ = writeln!(
            s,
            "  completed at s: p50 {:.2}  p90 {:.2}  p99 {:.2}  last {:.2}",
            c.p50, c.p90, c.p99, c.max
        );
        if !self.errors.is_empty() {
            let kinds: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(s, "  errors: {}", kinds.join(" "));
            for e in &self.error_samples {
                let _ = writeln!(s, "    {e}");
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&mut v);
        assert_eq!(
            (p.p50, p.p90, p.p99, p.max, p.n),
            (50.0, 90.0, 99.0, 100.0, 100)
        );
        assert_eq!(p.mean, 50.5);
        let mut one = vec![7.0];
        assert_eq!(Percentiles::of(&mut one).p99, 7.0);
        assert_eq!(Percentiles::of(&mut []), Percentiles::default());
    }
}
