//! The fleet runner: `clients` simulated devices download items concurrently until `total`
//! downloads are done or `duration` has passed, each download verified, each outcome recorded.
//!
//! Contract:
//! - Devices cycle through the items (device `i` starts at item `i`), so a run over several
//!   paths spreads them evenly.
//! - A failed attempt counts as one failed download, unless `wait_available` is set and the
//!   error is retryable (`Error::is_retryable`: not found yet, connection refused, …): then the
//!   device retries with a capped backoff (100 ms doubling to 1 s, ±20 % jitter) until the
//!   deadline `wait_available` after the run started, and each extra attempt counts in
//!   `retries`. This is how a campaign's devices poll an edge that is still receiving content.
//! - Each attempt is limited by the target's timeout.
//! - `Stop::Duration`: no new download starts after the duration; running ones finish.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::Mutex;
use tracing::{debug, info_span, Instrument};

use crate::error::{Error, Result};
use crate::proto::{Client, Shared};
use crate::report::{round3, Percentiles, Report};
use crate::target::{Item, Target};

/// When a run ends.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this many downloads in total (shared by all devices).
    Total(u64),
    /// When this much time has passed (no new downloads start after it).
    Duration(Duration),
}

/// A run's parameters.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Where and how.
    pub target: Target,
    /// What (at least one item).
    pub items: Vec<Item>,
    /// Concurrent simulated devices (≥ 1).
    pub clients: usize,
    /// When to stop.
    pub stop: Stop,
    /// Retry retryable failures until this long after the start.
    pub wait_available: Option<Duration>,
    /// Label copied into the report.
    pub label: String,
}

const MAX_SAMPLES: usize = 8;

#[derive(Default)]
struct Stats {
    latencies_ms: Vec<f64>,
    completions_s: Vec<f64>,
    ok: u64,
    failed: u64,
    retries: u64,
    bytes: u64,
    verified: u64,
    errors: BTreeMap<String, u64>,
    samples: Vec<String>,
}

impl Stats {
    fn merge(&mut self, o: Stats) {
        self.latencies_ms.extend(o.latencies_ms);
        self.completions_s.extend(o.completions_s);
        self.ok += o.ok;
        self.failed += o.failed;
        self.retries += o.retries;
        self.bytes += o.bytes;
        self.verified += o.verified;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for s in o.samples {
            if self.samples.len() < MAX_SAMPLES && !self.samples.contains(&s) {
                self.samples.push(s);
            }
        }
    }

    fn fail(&mut self, e: &Error) {
        self.failed += 1;
        *self.errors.entry(e.kind().to_string()).or_default() += 1;
        let msg = e.to_string();
        if self.samples.len() < MAX_SAMPLES && !self.samples.contains(&msg) {
            self.samples.push(msg);
        }
    }
}

/// Runs a fleet and returns its report. Fails only on configuration errors; download failures
/// are in the report.
pub async fn run(spec: RunSpec) -> Result<Report> {
    spec.target.validate()?;
    if spec.items.is_empty() {
        return Err(Error::Config("nothing to fetch".into()));
    }
    if spec.clients == 0 {
        return Err(Error::Config("--clients must be at least 1".into()));
    }
    let shared = Shared::new(&spec.target)?;
    let start = Instant::now();
    let issued = Arc::new(AtomicU64::new(0));
    let total = Arc::new(Mutex::new(Stats::default()));
    let items = Arc::new(spec.items.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for device in 0..spec.clients {
        let shared = shared.clone();
        let issued = issued.clone();
        let total = total.clone();
        let items = items.clone();
        let stop = spec.stop;
        let wait = spec.wait_available;
        let timeout = spec.target.timeout;
        let span = info_span!("device", device);
        tasks.spawn(
            async move {
                let mut stats = Stats::default();
                let mut client = match Client::new(&shared) {
                    Ok(c) => c,
                    Err(e) => {
                        stats.fail(&e);
                        total.lock().await.merge(stats);
                        return;
                    }
                };
                let mut n = device;
                loop {
                    match stop {
                        Stop::Total(t) => {
                            if issued.fetch_add(1, Ordering::Relaxed) >= t {
                                break;
                            }
                        }
                        Stop::Duration(d) => {
                            if start.elapsed() >= d {
                                break;
                            }
                        }
                    }
                    let item = &items[n % items.len()];
                    n += 1;
                    download(&mut client, item, timeout, start, wait, &mut stats).await;
                }
                total.lock().await.merge(stats);
            }
            .instrument(span),
        );
    }
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r {
            // A panicking device is a bug in this tool; say so instead of hiding it.
            return Err(Error::Config(format!("device task failed: {e}")));
        }
    }
    let wall = start.elapsed().as_secs_f64().max(1e-9);
    let mut s = std::mem::take(&mut *total.lock().await);
    Ok(Report {
        tool: "sitecast-loadtest".into(),
        label: spec.label.clone(),
        proto: spec.target.proto.name().into(),
        target: spec.target.url.clone(),
        paths: spec.items.iter().map(|i| i.path.clone()).collect(),
        clients: spec.clients as u64,
        fresh_connections: spec.target.fresh_connections,
        requests: s.ok + s.failed,
        ok: s.ok,
        failed: s.failed,
        retries: s.retries,
        errors: s.errors.clone(),
        error_samples: s.samples.clone(),
        bytes: s.bytes,
        digests_verified: s.verified,
        wall_s: round3(wall),
        throughput_mb_s: round3(s.bytes as f64 / wall / 1e6),
        requests_per_s: round3(s.ok as f64 / wall),
        latency_ms: Percentiles::of(&mut s.latencies_ms),
        completion_s: Percentiles::of(&mut s.completions_s),
    })
}

/// One download, with retries while waiting for availability.
async fn download(
    client: &mut Client,
    item: &Item,
    timeout: Duration,
    start: Instant,
    wait: Option<Duration>,
    stats: &mut Stats,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let t0 = Instant::now();
        let result = match tokio::time::timeout(timeout, client.fetch(item)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout(timeout)),
        };
        match result {
            Ok((bytes, verified)) => {
                stats.ok += 1;
                stats.bytes += bytes;
                stats.verified += verified;
                stats.latencies_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
                stats.completions_s.push(start.elapsed().as_secs_f64());
                return;
            }
            Err(e) => {
                let deadline_ok = wait.is_some_and(|w| start.elapsed() + backoff < w);
                if e.is_retryable() && deadline_ok {
                    debug!(error = %e, "not available yet, retrying");
                    stats.retries += 1;
                    let jitter = rand::thread_rng().gen_range(0.8..1.2);
                    tokio::time::sleep(backoff.mul_f64(jitter)).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
                stats.fail(&e);
                return;
            }
        }
    }
}
