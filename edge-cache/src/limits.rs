//! Per-client-address limits shared by the FTP and SFTP servers.
//!
//! - [`ConnLimiter`] counts open connections per address; [`ConnLimiter::try_acquire`] returns
//!   a guard that releases its slot when dropped, or `None` at the limit.
//! - [`LoginGuard`] counts failed logins per address in a fixed window. Each failure earns a
//!   growing delay before the reply (250 ms doubling, at most 4 s) and, past
//!   `max_failures` in the window, the address is locked out until the window ends: even valid
//!   credentials are refused then, before any password hashing. A success does not reset the
//!   count (a guesser who also knows one password gains nothing).
//!
//! Both are in addition to the edge [`crate::access::Authenticator`]'s own per-minute limit,
//! which every protocol shares.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MAX_TRACKED: usize = 10_000;

/// The next connection on `listener`, or `None` once `cancel` fires. An accept error (out of
/// file descriptors and the like) is logged and retried after 50 ms: the connections already
/// open keep being served.
pub(crate) async fn accept(
    listener: &tokio::net::TcpListener,
    cancel: &tokio_util::sync::CancellationToken,
    server: &str,
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok(a) => return Some(a),
                Err(e) => {
                    tracing::warn!(error = %e, "{server} accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Open connections per client address.
#[derive(Debug)]
pub(crate) struct ConnLimiter {
    max: u32,
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

/// A held connection slot; released on drop.
#[derive(Debug)]
pub(crate) struct ConnSlot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl ConnLimiter {
    /// At most `max` concurrent connections per address.
    pub(crate) fn new(max: u32) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    /// Take a slot for `ip`, or `None` when it already holds `max`.
    pub(crate) fn try_acquire(&self, ip: IpAddr) -> Option<ConnSlot> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ConnSlot {
            ip,
            open: self.open.clone(),
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[derive(Debug)]
struct Window {
    start: Instant,
    failures: u32,
}

/// Failed-login delay and lock-out per address (module docs).
#[derive(Debug)]
pub(crate) struct LoginGuard {
    max_failures: u32,
    window: Duration,
    state: Mutex<HashMap<IpAddr, Window>>,
}

/// First delay after a failure; doubles per failure up to [`MAX_DELAY`].
const BASE_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(4);

impl LoginGuard {
    /// Lock an address out after `max_failures` failures within `window`.
    pub(crate) fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            max_failures,
            window,
            state: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Window>> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// If `ip` is locked out, for how much longer.
    pub(crate) fn locked_for(&self, ip: IpAddr) -> Option<Duration> {
        let mut state = self.lock();
        let w = state.get(&ip)?;
        let elapsed = w.start.elapsed();
        if elapsed >= self.window {
            state.remove(&ip);
            return None;
        }
        (w.failures >= self.max_failures)
            .then(|| (self.window - elapsed).max(Duration::from_secs(1)))
    }

    /// Record a failure from `ip`; returns how long to wait before answering.
    pub(crate) fn failed(&self, ip: IpAddr) -> Duration {
        let mut state = self.lock();
        let now = Instant::now();
        if state.len() >= MAX_TRACKED {
            let window = self.window;
            state.retain(|_, w| now.duration_since(w.start) < window);
        }
        let w = state.entry(ip).or_insert(Window {
            start: now,
            failures: 0,
        });
        if now.duration_since(w.start) >= self.window {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
        let shift = w.failures.saturating_sub(1).min(8);
        (BASE_DELAY * 2u32.pow(shift)).min(MAX_DELAY)
    }

    /// Failures counted for `ip` in its current window.
    #[cfg(test)]
    pub(crate) fn failures(&self, ip: IpAddr) -> u32 {
        self.lock().get(&ip).map_or(0, |w| w.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_slots_are_released() {
        let l = ConnLimiter::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = l.try_acquire(a).unwrap();
        let _s2 = l.try_acquire(a).unwrap();
        assert!(l.try_acquire(a).is_none());
        assert!(l.try_acquire(b).is_some());
        drop(s1);
        assert!(l.try_acquire(a).is_some());
    }

    #[test]
    fn failures_grow_delay_then_lock_out() {
        let g = LoginGuard::new(3, Duration::from_secs(600));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(g.locked_for(a), None);
        assert_eq!(g.failed(a), Duration::from_millis(250));
        assert_eq!(g.failed(a), Duration::from_millis(500));
        assert_eq!(g.locked_for(a), None);
        assert_eq!(g.failed(a), Duration::from_secs(1));
        assert!(g.locked_for(a).unwrap() > Duration::from_secs(590));
        assert_eq!(g.failures(a), 3);
        for _ in 0..10 {
            assert!(g.failed(a) <= MAX_DELAY);
        }
        assert_eq!(g.locked_for("10.0.0.2".parse().unwrap()), None);
        let short = LoginGuard::new(1, Duration::from_millis(1));
        short.failed(a);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(short.locked_for(a), None);
    }
}
