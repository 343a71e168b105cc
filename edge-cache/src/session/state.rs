//! Reconcile bookkeeping shared by the control stream and the fetcher: the desired state in
//! force, each desired artifact's transfer status (what the origin is told), which statuses
//! changed since the last report, and when failed artifacts may be retried.
//!
//! The planning functions ([`plan`], [`start_status`], [`batches`]) are pure, so they are
//! unit-tested without a network.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sitecast_protocol::wire::{
    ArtifactState, ArtifactStatus, DesiredState, MAX_CHUNKS_PER_REQUEST,
};
use sitecast_protocol::{ArtifactManifest, BlobId, ChunkId};
use tokio::sync::Notify;

use crate::catalog::PublishedMap;

/// Mutable reconcile state (behind one mutex in [`Shared`]).
pub(crate) struct State {
    pub desired: DesiredState,
    pub transfers: BTreeMap<String, ArtifactStatus>,
    pub dirty: BTreeSet<String>,
    pub failed_at: HashMap<String, Instant>,
    /// Consecutive failures per path (cleared when it completes, or by a new desired
    /// revision): each doubles the wait before the next attempt.
    pub failures: HashMap<String, u32>,
    pub gc_needed: bool,
    /// The desired revision of the last report sent (an empty report still announces a new
    /// revision).
    pub reported_revision: Option<u64>,
    /// Blobs the origin holds for now (`Holds`): not fetched until released.
    pub held: HashSet<BlobId>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            desired: DesiredState {
                revision: 0,
                artifacts: Vec::new(),
            },
            transfers: BTreeMap::new(),
            dirty: BTreeSet::new(),
            failed_at: HashMap::new(),
            failures: HashMap::new(),
            gc_needed: false,
            reported_revision: None,
            held: HashSet::new(),
        }
    }
}

/// Reconcile state plus the wake-ups of the tasks that act on it.
#[derive(Default)]
pub(crate) struct Shared {
    pub state: Mutex<State>,
    /// Something for the fetcher to do (new desired state, retry, new connection).
    pub work: Notify,
    /// A status changed: the control stream should send a report.
    pub report: Notify,
}

impl Shared {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replace one status, mark it for the next report, and wake the reporter.
    pub(crate) fn update(&self, status: ArtifactStatus) {
        let mut st = self.lock();
        let key = status.path.as_str().to_owned();
        if !st
            .desired
            .artifacts
            .iter()
            .any(|a| a.path == status.path && a.blob == status.blob)
        {
            return; // no longer desired (or now another blob): drop the stale update
        }
        match status.state {
            ArtifactState::Failed => {
                st.failed_at.insert(key.clone(), Instant::now());
                *st.failures.entry(key.clone()).or_default() += 1;
            }
            ArtifactState::Complete => {
                st.failed_at.remove(&key);
                st.failures.remove(&key);
            }
            // A retry under way keeps its count of failures.
            ArtifactState::Queued | ArtifactState::Fetching => {
                st.failed_at.remove(&key);
            }
        }
        st.transfers.insert(key.clone(), status);
        st.dirty.insert(key);
        drop(st);
        self.report.notify_one();
    }

    /// The next artifact to work on: queued or interrupted ones first (desired order), then
    /// failed ones whose retry time has come; never a held one. Otherwise, how long until the
    /// next retry. A failed artifact waits `retry.0` after its first failure, twice that after
    /// its second, and so on up to `retry.1`.
    pub(crate) fn next(
        &self,
        retry: (Duration, Duration),
    ) -> Result<ArtifactManifest, Option<Duration>> {
        let st = self.lock();
        let now = Instant::now();
        let mut wait: Option<Duration> = None;
        for a in &st.desired.artifacts {
            let Some(t) = st.transfers.get(a.path.as_str()) else {
                continue;
            };
            if st.held.contains(&a.blob) {
                continue;
            }
            match t.state {
                ArtifactState::Queued | ArtifactState::Fetching => return Ok(a.clone()),
                ArtifactState::Failed => {
                    let n = st.failures.get(a.path.as_str()).copied().unwrap_or(1);
                    let retry_failed = backoff(retry, n);
                    let since = st
                        .failed_at
                        .get(a.path.as_str())
                        .map_or(retry_failed, |t| now - *t);
                    if since >= retry_failed {
                        return Ok(a.clone());
                    }
                    let left = retry_failed - since;
                    wait = Some(wait.map_or(left, |w| w.min(left)));
                }
                ArtifactState::Complete => {}
            }
        }
        Err(wait)
    }
}

/// The wait after the `n`th consecutive failure: `base`, doubling with each, at most `max`.
pub(crate) fn backoff((base, max): (Duration, Duration), n: u32) -> Duration {
    base.saturating_mul(1 << n.saturating_sub(1).min(20))
        .min(max.max(base))
}

fn fresh(a: &ArtifactManifest, state: ArtifactState) -> ArtifactStatus {
    ArtifactStatus {
        path: a.path.clone(),
        blob: a.blob,
        state,
        bytes_total: a.len,
        bytes_needed: 0,
        bytes_fetched: 0,
        error: None,
    }
}

/// The transfer statuses for a desired state: an artifact already published with the
/// desired blob is complete; one with a status for the same blob keeps it (progress, or a
/// failure and its retry time); anything else is queued. Paths no longer desired are dropped.
///
/// With `new_revision` (a desired state newer than the one `existing` was planned for), an
/// artifact that was already complete reports `bytes_needed` 0: a push that reaches the site
/// now finds it held, and must not be charged the bytes of the transfer that brought it.
pub(crate) fn plan(
    desired: &DesiredState,
    published: &PublishedMap,
    existing: &BTreeMap<String, ArtifactStatus>,
    new_revision: bool,
) -> BTreeMap<String, ArtifactStatus> {
    desired
        .artifacts
        .iter()
        .map(|a| {
            let key = a.path.as_str();
            let old = existing.get(key).filter(|s| s.blob == a.blob);
            let status = if published.get(key).is_some_and(|p| p.blob == a.blob) {
                let mut s = old
                    .filter(|s| !(new_revision && s.state == ArtifactState::Complete))
                    .cloned()
                    .unwrap_or_else(|| fresh(a, ArtifactState::Complete));
                s.state = ArtifactState::Complete;
                s.error = None;
                s
            } else if let Some(s) = old.filter(|s| s.state != ArtifactState::Complete) {
                s.clone()
            } else {
                fresh(a, ArtifactState::Queued)
            };
            (key.to_owned(), status)
        })
        .collect()
}

/// The status when fetching starts with `missing` bytes absent from the store. A transfer of
/// the same blob that already began keeps its original `bytes_needed`, so a resumed transfer
/// reports what arrived before the interruption as fetched.
pub(crate) fn start_status(
    a: &ArtifactManifest,
    previous: Option<&ArtifactStatus>,
    missing: u64,
) -> ArtifactStatus {
    let needed = previous
        .filter(|p| p.blob == a.blob && p.bytes_needed > 0)
        .map_or(missing, |p| p.bytes_needed.max(missing));
    ArtifactStatus {
        path: a.path.clone(),
        blob: a.blob,
        state: ArtifactState::Fetching,
        bytes_total: a.len,
        bytes_needed: needed,
        bytes_fetched: needed - missing,
        error: None,
    }
}

/// Split the missing chunks (in order, deduplicated) into requests of at most `max_bytes`
/// (a single larger chunk still gets its own request) and [`MAX_CHUNKS_PER_REQUEST`] ids.
pub(crate) fn batches(missing: &[(ChunkId, u32)], max_bytes: u64) -> Vec<Vec<(ChunkId, u32)>> {
    let mut seen = HashSet::new();
    let mut out: Vec<Vec<(ChunkId, u32)>> = Vec::new();
    let mut cur: Vec<(ChunkId, u32)> = Vec::new();
    let mut bytes = 0u64;
    for &(id, len) in missing {
        if !seen.insert(id) {
            continue;
        }
        if !cur.is_empty()
            && (bytes + u64::from(len) > max_bytes || cur.len() >= MAX_CHUNKS_PER_REQUEST)
        {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += u64::from(len);
        cur.push((id, len));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Whether `blob` is still what the desired state wants at `path`.
pub(crate) fn still_desired(shared: &Shared, a: &ArtifactManifest) -> bool {
    shared
        .lock()
        .desired
        .artifacts
        .iter()
        .any(|d| d.path == a.path && d.blob == a.blob)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sitecast_protocol::{BlobId, CatalogPath, Sha256Digest};

    fn m(path: &str, blob: &[u8], len: u64) -> ArtifactManifest {
        ArtifactManifest {
            path: CatalogPath::parse(path).unwrap(),
            blob: BlobId::of(blob),
            len,
            sha256: Sha256Digest::of(blob),
            modified: 1,
        }
    }

    #[test]
    fn plan_keeps_progress_and_completes_published() {
        let a = m("/a", b"a1", 10);
        let b = m("/b", b"b2", 20);
        let c = m("/c", b"c1", 30);
        let desired = DesiredState {
            revision: 2,
            artifacts: vec![a.clone(), b.clone(), c.clone()],
        };
        let mut published = PublishedMap::new();
        published.insert("/a".into(), a.clone());
        published.insert("/b".into(), m("/b", b"b1", 5)); // old version published
        let mut existing = BTreeMap::new();
        let mut cs = fresh(&c, ArtifactState::Failed);
        cs.error = Some("disk full".into());
        existing.insert("/c".into(), cs.clone());
        existing.insert(
            "/gone".into(),
            fresh(&m("/gone", b"g", 1), ArtifactState::Complete),
        );
        let mut old_b = fresh(&m("/b", b"b1", 5), ArtifactState::Complete);
        old_b.bytes_needed = 5;
        existing.insert("/b".into(), old_b);

        let mut done_a = fresh(&a, ArtifactState::Complete);
        done_a.bytes_needed = 10;
        existing.insert("/a".into(), done_a.clone());

        // The same revision again (a reconnect): /a keeps the figure of its transfer.
        assert_eq!(plan(&desired, &published, &existing, false)["/a"], done_a);
        let out = plan(&desired, &published, &existing, true);
        assert_eq!(out.len(), 3);
        // A newer revision finds /a held: nothing needed for it.
        assert_eq!(out["/a"].bytes_needed, 0);
        assert_eq!(out["/a"].state, ArtifactState::Complete);
        assert_eq!(out["/b"].state, ArtifactState::Queued);
        assert_eq!(out["/b"].blob, b.blob);
        assert_eq!(out["/b"].bytes_needed, 0);
        assert_eq!(out["/c"], cs);
    }

    #[test]
    fn start_status_resumes_counts() {
        let a = m("/a", b"a", 100);
        let s = start_status(&a, None, 60);
        assert_eq!(
            (s.bytes_needed, s.bytes_fetched, s.state),
            (60, 0, ArtifactState::Fetching)
        );
        // Interrupted after 40 of 60 bytes: 20 still missing.
        let s2 = start_status(&a, Some(&s), 20);
        assert_eq!((s2.bytes_needed, s2.bytes_fetched), (60, 40));
        // A status of another blob does not count.
        let other = start_status(&m("/a", b"z", 1), None, 1);
        assert_eq!(start_status(&a, Some(&other), 20).bytes_needed, 20);
    }

    #[test]
    fn batches_respect_limits_and_dedup() {
        let ids: Vec<(ChunkId, u32)> = (0u32..10)
            .map(|i| (ChunkId::of(&i.to_le_bytes()), 100))
            .collect();
        let mut input = ids.clone();
        input.push(ids[0]);
        let b = batches(&input, 250);
        assert_eq!(
            b.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 2, 2, 2, 2]
        );
        assert_eq!(b.concat(), ids);
        let big = batches(&[(ids[0].0, 1000)], 250);
        assert_eq!(big.len(), 1);
        let many: Vec<(ChunkId, u32)> = (0u32..5000)
            .map(|i| (ChunkId::of(&i.to_le_bytes()), 1))
            .collect();
        let b = batches(&many, u64::MAX);
        assert_eq!(b[0].len(), MAX_CHUNKS_PER_REQUEST);
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn next_prefers_queued_then_due_failures() {
        let shared = Shared::default();
        let a = m("/a", b"a", 1);
        let b = m("/b", b"b", 1);
        {
            let mut st = shared.lock();
            st.desired = DesiredState {
                revision: 1,
                artifacts: vec![a.clone(), b.clone()],
            };
            st.transfers
                .insert("/a".into(), fresh(&a, ArtifactState::Complete));
            st.transfers
                .insert("/b".into(), fresh(&b, ArtifactState::Queued));
        }
        let retry = (Duration::from_secs(10), Duration::from_secs(35));
        assert_eq!(shared.next(retry).unwrap().path, b.path);
        let mut failed = fresh(&b, ArtifactState::Failed);
        failed.error = Some("x".into());
        shared.update(failed.clone());
        let wait = shared.next(retry).unwrap_err().unwrap();
        assert!(wait <= Duration::from_secs(10) && wait > Duration::from_secs(5));
        assert_eq!(
            shared.next((Duration::ZERO, Duration::ZERO)).unwrap().path,
            b.path
        );
        // The retry fails again: twice the wait, then capped.
        shared.update(fresh(&b, ArtifactState::Fetching));
        shared.update(failed.clone());
        let wait = shared.next(retry).unwrap_err().unwrap();
        assert!(wait <= Duration::from_secs(20) && wait > Duration::from_secs(15));
        shared.update(failed.clone());
        shared.update(failed.clone());
        let wait = shared.next(retry).unwrap_err().unwrap();
        assert!(wait <= Duration::from_secs(35) && wait > Duration::from_secs(30));
        assert_eq!(backoff(retry, 1), Duration::from_secs(10));
        assert_eq!(backoff(retry, 3), Duration::from_secs(35));
        assert_eq!(backoff(retry, u32::MAX), Duration::from_secs(35));
        // Completing clears the count: the next failure waits the base again.
        shared.update(fresh(&b, ArtifactState::Complete));
        shared.update(failed);
        let wait = shared.next(retry).unwrap_err().unwrap();
        assert!(wait <= Duration::from_secs(10));
        // A stale update for a blob no longer desired is ignored.
        shared.update(fresh(&m("/b", b"old", 1), ArtifactState::Complete));
        assert_eq!(shared.lock().transfers["/b"].state, ArtifactState::Failed);
    }

    #[test]
    fn next_skips_held_blobs_until_released() {
        let shared = Shared::default();
        let (a, b) = (m("/a", b"a", 1), m("/b", b"b", 1));
        {
            let mut st = shared.lock();
            st.desired = DesiredState {
                revision: 1,
                artifacts: vec![a.clone(), b.clone()],
            };
            st.transfers
                .insert("/a".into(), fresh(&a, ArtifactState::Fetching));
            let mut failed = fresh(&b, ArtifactState::Failed);
            failed.error = Some("x".into());
            st.transfers.insert("/b".into(), failed);
            st.held = [a.blob, b.blob].into_iter().collect();
        }
        // Neither an interrupted nor a failed artifact is taken while held.
        assert_eq!(
            shared.next((Duration::ZERO, Duration::ZERO)).unwrap_err(),
            None
        );
        shared.lock().held.remove(&b.blob);
        assert_eq!(
            shared.next((Duration::ZERO, Duration::ZERO)).unwrap().path,
            b.path
        );
        shared.lock().held.clear();
        assert_eq!(
            shared.next((Duration::ZERO, Duration::ZERO)).unwrap().path,
            a.path
        );
    }
}
