//! Recently served chunks, kept in memory.
//!
//! A fleet upgrade is hundreds of devices reading the same firmware: without a cache every
//! download reads each chunk file again and re-hashes it (the store verifies every read), which
//! cost about a third of the edge's CPU under load. Chunks are verified once, when read from
//! the store, and then served from here until evicted (least recently used first) once the
//! cache holds more than its capacity. Content addressing makes staleness impossible: an id
//! names one byte string forever, so nothing needs invalidating when the catalog changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use sitecast_protocol::ChunkId;

/// A byte-bounded least-recently-used map of chunk id → verified bytes.
#[derive(Debug)]
pub struct ChunkCache {
    capacity: u64,
    inner: Mutex<Inner>,
    /// Lookups answered from memory.
    pub hits: AtomicU64,
    /// Lookups that went to the store.
    pub misses: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    /// id → (bytes, last use).
    map: HashMap<ChunkId, (Bytes, u64)>,
    /// last use → id, oldest first.
    order: BTreeMap<u64, ChunkId>,
    tick: u64,
    bytes: u64,
}

impl ChunkCache {
    /// A cache holding at most `capacity` bytes of chunks (0: caches nothing).
    #[must_use]
    pub fn new(capacity: u64) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The chunk's bytes if cached (and mark it used).
    pub fn get(&self, id: &ChunkId) -> Option<Bytes> {
        if self.capacity == 0 {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let mut g = self.lock();
        let inner = &mut *g;
        let Some((data, used)) = inner.map.get_mut(id) else {
            drop(g);
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        inner.tick += 1;
        inner.order.remove(used);
        *used = inner.tick;
        inner.order.insert(inner.tick, *id);
        let data = data.clone();
        drop(g);
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(data)
    }

    /// Keep `data` (already verified against `id`), evicting the least recently used chunks
    /// beyond the capacity. A chunk larger than an eighth of the capacity is not kept.
    pub fn insert(&self, id: ChunkId, data: Bytes) {
        let len = data.len() as u64;
        if self.capacity == 0 || len > self.capacity / 8 {
            return;
        }
        let mut g = self.lock();
        let inner = &mut *g;
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((_, used)) = inner.map.insert(id, (data, tick)) {
            inner.order.remove(&used);
        } else {
            inner.bytes += len;
        }
        inner.order.insert(tick, id);
        while inner.bytes > self.capacity {
            let Some((_, old)) = inner.order.pop_first() else {
                break;
            };
            if let Some((d, _)) = inner.map.remove(&old) {
                inner.bytes -= d.len() as u64;
            }
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(i: u8, len: usize) -> (ChunkId, Bytes) {
        let d = vec![i; len];
        (ChunkId::of(&d), Bytes::from(d))
    }

    #[test]
    fn evicts_least_recently_used_beyond_capacity() {
        let c = ChunkCache::new(800);
        let (a, b, d) = (chunk(1, 100), chunk(2, 100), chunk(3, 100));
        c.insert(a.0, a.1.clone());
        c.insert(b.0, b.1.clone());
        assert_eq!(c.bytes(), 200);
        assert_eq!(c.get(&a.0).unwrap(), a.1); // a is now the most recent
        for i in 10..17 {
            let x = chunk(i, 100);
            c.insert(x.0, x.1);
        }
        // 8 × 100 bytes fit; inserting the 9th evicted the least recently used: b.
        assert_eq!(c.bytes(), 800);
        assert!(c.get(&b.0).is_none());
        assert!(c.get(&a.0).is_some());
        c.insert(d.0, d.1.clone());
        assert_eq!(c.bytes(), 800);
        assert!(c.get(&a.0).is_some(), "recently used survives");
        // Re-inserting an id does not count its bytes twice.
        c.insert(d.0, d.1);
        assert_eq!(c.bytes(), 800);
        assert_eq!(c.hits.load(Ordering::Relaxed), 3);
        assert_eq!(c.misses.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn oversized_chunks_and_zero_capacity_are_not_kept() {
        let c = ChunkCache::new(800);
        let big = chunk(1, 101);
        c.insert(big.0, big.1);
        assert_eq!(c.bytes(), 0);
        let off = ChunkCache::new(0);
        let a = chunk(2, 10);
        off.insert(a.0, a.1);
        assert!(off.get(&a.0).is_none());
        assert_eq!(off.bytes(), 0);
    }
}
