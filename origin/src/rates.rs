//! Transfer rate and ETA per push and site, as the API shows them.
//!
//! After each accounting flush (every `accounting_flush`, default 1 s) the chunk bytes sent so
//! far to every unfinished push-site are sampled; a push-site's rate is the bytes it gained
//! over the samples of the last [`WINDOW`] divided by their time span (at least [`MIN_SPAN`]
//! apart, so one burst does not read as a rate), and its ETA is what it still lacks
//! (`bytes_needed − payload_bytes`) at that rate. Held or stalled transfers fall to 0 within
//! the window and show no ETA. Samples live in memory only: after a restart the figures are
//! back within seconds.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::db::PushInfo;

/// How far back the rate looks.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);
/// The shortest span a rate is computed over.
pub(crate) const MIN_SPAN: Duration = Duration::from_millis(900);

/// Recent (time, chunk bytes sent so far) samples of one push-site, oldest first.
type Samples = VecDeque<(Instant, u64)>;

/// [`Samples`] per (push, site).
#[derive(Default)]
pub(crate) struct RateBook {
    samples: Mutex<HashMap<(i64, String), Samples>>,
}

impl RateBook {
    /// Record the bytes sent so far to each unfinished (push, site) at `now`; push-sites not
    /// named any more (finished, cancelled) are forgotten.
    pub(crate) fn record(&self, rows: Vec<(i64, String, u64)>, now: Instant) {
        let mut s = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = HashMap::with_capacity(rows.len());
        for (push, site, bytes) in rows {
            let key = (push, site);
            let mut q = s.remove(&key).unwrap_or_default();
            q.push_back((now, bytes));
            while q
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
                && q.len() > 2
            {
                q.pop_front();
            }
            next.insert(key, q);
        }
        *s = next;
    }

    /// Bytes/s of (push, site) over the window; None until two samples span [`MIN_SPAN`].
    pub(crate) fn rate(&self, push: i64, site: &str) -> Option<u64> {
        let s = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let q = s.get(&(push, site.to_owned()))?;
        let (&(t0, b0), &(t1, b1)) = (q.front()?, q.back()?);
        let span = t1.duration_since(t0);
        if span < MIN_SPAN {
            return None;
        }
        Some((b1.saturating_sub(b0) as f64 / span.as_secs_f64()) as u64)
    }

    /// Fill in `rate` and `eta_seconds` of the push and its sites.
    pub(crate) fn annotate(&self, p: &mut PushInfo) {
        let (mut total, mut eta, mut known) = (0u64, None::<u64>, false);
        for s in &mut p.sites {
            if matches!(s.state.as_str(), "complete" | "cancelled") {
                continue;
            }
            s.rate = self.rate(p.id, &s.site);
            let Some(r) = s.rate else { continue };
            known = true;
            total += r;
            let left = s.bytes_needed.saturating_sub(s.payload_bytes);
            s.eta_seconds = (r > 0 && left > 0).then(|| left.div_ceil(r));
            if let Some(e) = s.eta_seconds {
                eta = Some(eta.map_or(e, |m: u64| m.max(e)));
            }
        }
        p.rate = known.then_some(total);
        p.eta_seconds = eta;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_over_the_window_and_forgetting_finished_sites() {
        let book = RateBook::default();
        let t = Instant::now();
        let row = |b| vec![(1, "s1".to_owned(), b)];
        book.record(row(0), t);
        assert_eq!(book.rate(1, "s1"), None, "one sample is no rate");
        book.record(row(500), t + Duration::from_millis(500));
        assert_eq!(book.rate(1, "s1"), None, "too short a span");
        book.record(row(2_000), t + Duration::from_secs(2));
        assert_eq!(book.rate(1, "s1"), Some(1_000));
        // Stalled for 20 s: old samples age out and the rate falls to 0.
        for i in 3..=22 {
            book.record(row(2_000), t + Duration::from_secs(i));
        }
        assert_eq!(book.rate(1, "s1"), Some(0));
        book.record(Vec::new(), t + Duration::from_secs(23));
        assert_eq!(book.rate(1, "s1"), None, "finished: forgotten");
    }
}
