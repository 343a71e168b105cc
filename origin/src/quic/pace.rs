//! Per-site pacing of chunk streams: one token bucket per site, shared by all of the site's
//! streams and connections, at the smallest limit of the site and its unfinished pushes.
//!
//! The bucket may go into debt: a sender takes the bytes it is about to write and sleeps for
//! the debt, so chunks larger than the bucket's capacity still pass at the set rate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// tokio's clock (the real one outside tests), so the tests run on a paused clock.
use tokio::time::Instant;

/// Token buckets by site.
#[derive(Default)]
pub(crate) struct Buckets {
    map: Mutex<HashMap<String, Arc<Bucket>>>,
}

impl Buckets {
    /// The site's bucket, set to `rate` bytes/s (None = unlimited).
    pub(crate) fn get(&self, site: &str, rate: Option<u64>) -> Arc<Bucket> {
        let b = {
            let mut m = self
                .map
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(
                m.entry(site.to_owned())
                    .or_insert_with(|| Arc::new(Bucket::new())),
            )
        };
        b.set_rate(rate);
        b
    }

    /// Drop a deleted site's bucket (streams still holding it keep it until they end).
    pub(crate) fn forget(&self, site: &str) {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(site);
    }
}

/// One site's token bucket.
pub(crate) struct Bucket {
    state: Mutex<State>,
}

struct State {
    rate: Option<u64>,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new() -> Self {
        Self {
            state: Mutex::new(State {
                rate: None,
                tokens: 0.0,
                last: Instant::now(),
            }),
        }
    }

    fn set_rate(&self, rate: Option<u64>) {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if s.rate != rate {
            s.rate = rate;
            s.tokens = s.tokens.min(0.0);
            s.last = Instant::now();
        }
    }

    /// Wait until `n` bytes may be sent.
    pub(crate) async fn acquire(&self, n: u64) {
        let wait = {
            let mut s = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(rate) = s.rate.filter(|r| *r > 0) else {
                return;
            };
            let rate = rate as f64;
            let cap = (rate / 4.0).max(64.0 * 1024.0);
            let now = Instant::now();
            let elapsed = now.duration_since(s.last).as_secs_f64();
            s.last = now;
            s.tokens = (s.tokens + elapsed * rate).min(cap);
            s.tokens -= n as f64;
            if s.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-s.tokens / rate)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On tokio's paused clock: the bounds are exact, whatever the machine's load.
    #[tokio::test(start_paused = true)]
    async fn paces_at_the_rate_and_unlimited_is_free() {
        let b = Buckets::default();
        let free = b.get("a", None);
        let t = Instant::now();
        for _ in 0..100 {
            free.acquire(1 << 20).await;
        }
        assert_eq!(
            t.elapsed(),
            Duration::ZERO,
            "an unlimited bucket never waits"
        );
        // 1 MiB/s; the first 256 KiB come from the bucket, the remaining 512 KiB take ~0.5 s.
        let slow = b.get("b", Some(1 << 20));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t = Instant::now();
        for _ in 0..12 {
            slow.acquire(64 * 1024).await;
        }
        let e = t.elapsed();
        assert!(
            e >= Duration::from_millis(490) && e <= Duration::from_millis(520),
            "{e:?}"
        );
        // A deleted site's bucket is dropped; a site created again under the name starts fresh.
        assert!(Arc::ptr_eq(&slow, &b.get("b", Some(1 << 20))));
        b.forget("b");
        assert!(!Arc::ptr_eq(&slow, &b.get("b", Some(1 << 20))));
        assert_eq!(b.map.lock().unwrap().len(), 2);
    }
}
