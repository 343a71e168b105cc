//! A userspace UDP relay that impairs a path the way a WAN does: fixed delay, uniform jitter,
//! random loss and periodic outages, independently in each direction. It sits on the QUIC path
//! between an edge and the origin (this kernel has no `netem`; rate limits are done by `tc tbf`
//! on the veth links, not here).
//!
//! Contract:
//! - Every client source address gets its own upstream socket (connected to `upstream`), so the
//!   upstream sees one peer per client, and answers go back to the client that sent.
//! - A packet is delayed by `delay + U(-jitter, +jitter)` (never below zero; jitter reorders),
//!   dropped with probability `loss`, and dropped while an outage is on: with `outage_every = P`
//!   and `outage_for = D`, the link is down during the last `D` of every period `P` counted from
//!   the relay's start.
//! - Client mappings idle for `idle_timeout` are forgotten.
//! - [`run_relay`] reports its bound address through `ready`, runs until `cancel`, then returns
//!   the counters ([`RelayStats`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::error::{Error, Result};

/// Relay settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Address to listen on. Default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// Where packets go (the origin's QUIC address). Default `127.0.0.1:4433`.
    pub upstream: SocketAddr,
    /// One-way delay added to every packet. Default 0.
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
    /// Uniform jitter around `delay`. Default 0.
    #[serde(with = "humantime_serde")]
    pub jitter: Duration,
    /// Drop probability per packet, 0.0–1.0. Default 0.
    pub loss: f64,
    /// Outage period (None: never). Default None.
    #[serde(with = "humantime_serde")]
    pub outage_every: Option<Duration>,
    /// Outage length within each period. Default 0.
    #[serde(with = "humantime_serde")]
    pub outage_for: Duration,
    /// Seed of the loss/jitter random numbers (None: from the OS). Default None.
    pub seed: Option<u64>,
    /// Forget a client mapping after this long without packets. Default 120 s.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            upstream: SocketAddr::from(([127, 0, 0, 1], 4433)),
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            outage_every: None,
            outage_for: Duration::ZERO,
            seed: None,
            idle_timeout: Duration::from_secs(120),
        }
    }
}

impl RelayConfig {
    /// Checks ranges.
    pub fn validate(self) -> Result<Self> {
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(Error::Config(format!(
                "loss {} is not within 0..1",
                self.loss
            )));
        }
        if let Some(p) = self.outage_every {
            if p.is_zero() || self.outage_for >= p {
                return Err(Error::Config(
                    "outage_for must be shorter than a non-zero outage_every".into(),
                ));
            }
        }
        if self.jitter > Duration::from_secs(10) || self.delay > Duration::from_secs(60) {
            return Err(Error::Config("delay/jitter out of range".into()));
        }
        Ok(self)
    }
}

/// Counters of one direction.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DirStats {
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded (UDP payload).
    pub bytes: u64,
    /// Packets dropped by random loss.
    pub dropped_loss: u64,
    /// Packets dropped during outages.
    pub dropped_outage: u64,
    /// Packets dropped because the delay queue was full.
    pub dropped_queue: u64,
}

/// What a relay did.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RelayStats {
    /// Client → upstream.
    pub up: DirStats,
    /// Upstream → client.
    pub down: DirStats,
    /// Distinct client addresses seen.
    pub clients: u64,
}

#[derive(Default)]
struct DirCounters {
    packets: AtomicU64,
    bytes: AtomicU64,
    loss: AtomicU64,
    outage: AtomicU64,
    queue: AtomicU64,
}

impl DirCounters {
    fn snapshot(&self) -> DirStats {
        DirStats {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            dropped_loss: self.loss.load(Ordering::Relaxed),
            dropped_outage: self.outage.load(Ordering::Relaxed),
            dropped_queue: self.queue.load(Ordering::Relaxed),
        }
    }
}

enum Dest {
    Client(SocketAddr),
    Upstream(Arc<UdpSocket>),
}

struct Pending {
    at: Instant,
    seq: u64,
    data: Vec<u8>,
    dest: Dest,
    up: bool,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

const QUEUE_LIMIT: usize = 65_536;

/// The impairment decisions of one direction.
struct Impair {
    cfg: Arc<RelayConfig>,
    rng: StdRng,
    start: Instant,
}

enum Verdict {
    Send(Instant),
    Loss,
    Outage,
}

impl Impair {
    fn judge(&mut self, now: Instant) -> Verdict {
        if let Some(p) = self.cfg.outage_every {
            let phase = now.duration_since(self.start).as_nanos() % p.as_nanos();
            if phase >= (p - self.cfg.outage_for).as_nanos() {
                return Verdict::Outage;
            }
        }
        if self.cfg.loss > 0.0 && self.rng.gen_bool(self.cfg.loss) {
            return Verdict::Loss;
        }
        let mut d = self.cfg.delay;
        if !self.cfg.jitter.is_zero() {
            let j = self.cfg.jitter.as_secs_f64();
            let off = self.rng.gen_range(-j..=j);
            d = Duration::from_secs_f64((d.as_secs_f64() + off).max(0.0));
        }
        Verdict::Send(now + d)
    }
}

/// Runs the relay until `cancel`; sends the bound listen address on `ready`.
pub async fn run_relay(
    cfg: RelayConfig,
    cancel: CancellationToken,
    ready: oneshot::Sender<SocketAddr>,
) -> Result<RelayStats> {
    let cfg = Arc::new(cfg.validate()?);
    let listener = Arc::new(
        UdpSocket::bind(cfg.listen)
            .await
            .map_err(|e| Error::Config(format!("bind {}: {e}", cfg.listen)))?,
    );
    let local = listener.local_addr()?;
    let _ = ready.send(local);
    let start = Instant::now();
    let seed = cfg.seed.unwrap_or_else(rand::random);
    let up = Arc::new(DirCounters::default());
    let down = Arc::new(DirCounters::default());
    let (tx, rx) = mpsc::channel::<Pending>(4096);
    let queued = Arc::new(AtomicU64::new(0));
    let sched = tokio::spawn(scheduler(
        rx,
        listener.clone(),
        up.clone(),
        down.clone(),
        queued.clone(),
    ));

    let mut clients: HashMap<SocketAddr, (Arc<UdpSocket>, Instant)> = HashMap::new();
    let mut seen = 0u64;
    let mut impair = Impair {
        cfg: cfg.clone(),
        rng: StdRng::seed_from_u64(seed),
        start,
    };
    let mut buf = vec![0u8; 65_536];
    let mut sweep = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = sweep.tick() => {
                let idle = cfg.idle_timeout;
                clients.retain(|_, (_, last)| last.elapsed() < idle);
            }
            r = listener.recv_from(&mut buf) => {
                let (n, from) = match r {
                    Ok(v) => v,
                    Err(e) => { warn!(error = %e, "relay recv"); continue; }
                };
                let now = Instant::now();
                let sock = match clients.get_mut(&from) {
                    Some((s, last)) => { *last = now; s.clone() }
                    None => {
                        let bind: SocketAddr = if cfg.upstream.is_ipv4() {
                            ([0, 0, 0, 0], 0).into()
                        } else {
                            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                        };
                        let s = Arc::new(UdpSocket::bind(bind).await?);
                        s.connect(cfg.upstream).await?;
                        seen += 1;
                        debug!(%from, "new relay client");
                        let rng = StdRng::seed_from_u64(seed.wrapping_add(seen));
                        tokio::spawn(upstream_reader(
                            s.clone(), from, Impair { cfg: cfg.clone(), rng, start },
                            tx.clone(), down.clone(), queued.clone(), cancel.clone(),
                        ));
                        clients.insert(from, (s.clone(), now));
                        s
                    }
                };
                let data = buf[..n].to_vec();
                enqueue(&mut impair, now, data, Dest::Upstream(sock), true, &tx, &up, &queued).await;
            }
        }
    }
    drop(tx);
    sched.abort();
    Ok(RelayStats {
        up: up.snapshot(),
        down: down.snapshot(),
        clients: seen,
    })
}

#[allow(clippy::too_many_arguments)]
async fn enqueue(
    impair: &mut Impair,
    now: Instant,
    data: Vec<u8>,
    dest: Dest,
    up: bool,
    tx: &mpsc::Sender<Pending>,
    counters: &DirCounters,
    queued: &AtomicU64,
) {
    match impair.judge(now) {
        Verdict::Loss => {
            counters.loss.fetch_add(1, Ordering::Relaxed);
        }
        Verdict::Outage => {
            counters.outage.fetch_add(1, Ordering::Relaxed);
        }
        Verdict::Send(at) => {
            if queued.load(Ordering::Relaxed) as usize >= QUEUE_LIMIT {
                counters.queue.fetch_add(1, Ordering::Relaxed);
                return;
            }
            queued.fetch_add(1, Ordering::Relaxed);
            let seq = rand::random();
            let _ = tx
                .send(Pending {
                    at,
                    seq,
                    data,
                    dest,
                    up,
                })
                .await;
        }
    }
}

async fn upstream_reader(
    sock: Arc<UdpSocket>,
    client: SocketAddr,
    mut impair: Impair,
    tx: mpsc::Sender<Pending>,
    down: Arc<DirCounters>,
    queued: Arc<AtomicU64>,
    cancel: CancellationToken,
) {
    let mut buf = vec![0u8; 65_536];
    let idle = impair.cfg.idle_timeout;
    loop {
        let r = tokio::select! {
            _ = cancel.cancelled() => return,
            r = tokio::time::timeout(idle, sock.recv(&mut buf)) => r,
        };
        match r {
            Err(_) => return, // idle: the mapping is forgotten by the main loop too
            Ok(Err(e)) => {
                // ICMP port unreachable surfaces here while the upstream is down: keep going.
                debug!(error = %e, "relay upstream recv");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(Ok(n)) => {
                let data = buf[..n].to_vec();
                enqueue(
                    &mut impair,
                    Instant::now(),
                    data,
                    Dest::Client(client),
                    false,
                    &tx,
                    &down,
                    &queued,
                )
                .await;
            }
        }
    }
}

async fn scheduler(
    mut rx: mpsc::Receiver<Pending>,
    listener: Arc<UdpSocket>,
    up: Arc<DirCounters>,
    down: Arc<DirCounters>,
    queued: Arc<AtomicU64>,
) {
    let mut heap: BinaryHeap<Reverse<Pending>> = BinaryHeap::new();
    loop {
        let next = heap.peek().map(|Reverse(p)| p.at);
        tokio::select! {
            biased;
            p = rx.recv() => match p {
                Some(p) => heap.push(Reverse(p)),
                None => return,
            },
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                let now = Instant::now();
                while heap.peek().is_some_and(|Reverse(p)| p.at <= now) {
                    let Some(Reverse(p)) = heap.pop() else { break };
                    queued.fetch_sub(1, Ordering::Relaxed);
                    let c = if p.up { &up } else { &down };
                    let sent = match &p.dest {
                        Dest::Upstream(s) => s.send(&p.data).await,
                        Dest::Client(a) => listener.send_to(&p.data, a).await,
                    };
                    if sent.is_ok() {
                        c.packets.fetch_add(1, Ordering::Relaxed);
                        c.bytes.fetch_add(p.data.len() as u64, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo() -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a = s.local_addr().unwrap();
        let h = tokio::spawn(async move {
            let mut b = [0u8; 2048];
            while let Ok((n, from)) = s.recv_from(&mut b).await {
                let _ = s.send_to(&b[..n], from).await;
            }
        });
        (a, h)
    }

    async fn start(
        cfg: RelayConfig,
    ) -> (
        SocketAddr,
        CancellationToken,
        tokio::task::JoinHandle<Result<RelayStats>>,
    ) {
        let cancel = CancellationToken::new();
        let (tx, rx) = oneshot::channel();
        let h = tokio::spawn(run_relay(cfg, cancel.clone(), tx));
        (rx.await.unwrap(), cancel, h)
    }

    #[tokio::test]
    async fn forwards_with_delay_both_ways() {
        tokio::time::timeout(Duration::from_secs(10), async {
            let (up, _e) = echo().await;
            let cfg = RelayConfig {
                upstream: up,
                delay: Duration::from_millis(30),
                ..Default::default()
            };
            let (addr, cancel, h) = start(cfg).await;
            let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let t0 = std::time::Instant::now();
            c.send_to(b"ping", addr).await.unwrap();
            let mut b = [0u8; 16];
            let (n, from) = c.recv_from(&mut b).await.unwrap();
            assert_eq!(&b[..n], b"ping");
            assert_eq!(from, addr);
            assert!(
                t0.elapsed() >= Duration::from_millis(60),
                "two delayed legs"
            );
            cancel.cancel();
            let st = h.await.unwrap().unwrap();
            assert_eq!((st.up.packets, st.down.packets, st.clients), (1, 1, 1));
        })
        .await
        .unwrap();
    }

    #[test]
    fn loss_rate_follows_the_setting() {
        for (loss, lo, hi) in [(0.0, 0, 0), (1.0, 10_000, 10_000), (0.1, 900, 1100)] {
            let cfg = Arc::new(RelayConfig {
                loss,
                ..Default::default()
            });
            let start = Instant::now();
            let mut im = Impair {
                cfg,
                rng: StdRng::seed_from_u64(7),
                start,
            };
            let lost = (0..10_000)
                .filter(|_| matches!(im.judge(start), Verdict::Loss))
                .count();
            assert!((lo..=hi).contains(&lost), "loss {loss}: {lost} of 10000");
        }
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let cfg = Arc::new(RelayConfig {
            delay: Duration::from_millis(50),
            jitter: Duration::from_millis(10),
            ..Default::default()
        });
        let start = Instant::now();
        let mut im = Impair {
            cfg,
            rng: StdRng::seed_from_u64(3),
            start,
        };
        for _ in 0..1000 {
            let Verdict::Send(at) = im.judge(start) else {
                panic!("no loss configured")
            };
            let d = at - start;
            assert!(
                d >= Duration::from_millis(40) && d <= Duration::from_millis(60),
                "{d:?}"
            );
        }
    }

    #[test]
    fn outage_schedule_and_validation() {
        let cfg = Arc::new(RelayConfig {
            outage_every: Some(Duration::from_secs(10)),
            outage_for: Duration::from_secs(2),
            ..Default::default()
        });
        let start = Instant::now();
        let mut im = Impair {
            cfg,
            rng: StdRng::seed_from_u64(1),
            start,
        };
        assert!(matches!(
            im.judge(start + Duration::from_secs(1)),
            Verdict::Send(_)
        ));
        assert!(matches!(
            im.judge(start + Duration::from_millis(8500)),
            Verdict::Outage
        ));
        assert!(matches!(
            im.judge(start + Duration::from_secs(11)),
            Verdict::Send(_)
        ));
        let bad = RelayConfig {
            loss: 1.5,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let bad = RelayConfig {
            outage_every: Some(Duration::from_secs(1)),
            outage_for: Duration::from_secs(1),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
