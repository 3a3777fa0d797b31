//! Unrevoked API keys by public prefix, kept for a second: every API request looks its key
//! up, and a round trip per request for a row that almost never changes is waste.
//!
//! Several nodes share the database and any of them (or the CLI) may revoke a key, so an
//! entry expires after [`crate::API_KEY_CACHE_TTL`]: a key revoked elsewhere is refused
//! everywhere within a second. A revocation through this store takes effect at once: it
//! forgets every entry, and a read that raced it may not store what it read (a
//! generation counter), or the revoked key could live on for another second.
//!
//! The same rule as `wagate-store-sqlite`'s row cache, cut down to the one use here (the
//! devices are not cached: other nodes change them, and a device's state must not lag).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Entries kept at most; past it the cache starts over (it only ever saves reads).
const MAX_ENTRIES: usize = 100_000;

pub(crate) struct TtlCache<V> {
    inner: Mutex<Inner<V>>,
    ttl: Duration,
}

struct Inner<V> {
    generation: u64,
    rows: HashMap<String, (V, Instant)>,
}

/// Where a read begins: what was cached, or the generation to store the read under.
pub(crate) enum Lookup<V> {
    Hit(V),
    Miss(u64),
}

impl<V: Clone> TtlCache<V> {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                generation: 0,
                rows: HashMap::new(),
            }),
            ttl,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<V>> {
        // The map holds plain values: a panic elsewhere cannot leave it half-updated.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn lookup(&self, key: &str) -> Lookup<V> {
        let inner = self.lock();
        match inner.rows.get(key) {
            Some((v, at)) if at.elapsed() < self.ttl => Lookup::Hit(v.clone()),
            _ => Lookup::Miss(inner.generation),
        }
    }

    /// Keeps what a read found, unless a write happened since [`Self::lookup`] said `Miss`.
    pub(crate) fn store(&self, key: String, value: V, generation: u64) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.rows.len() >= MAX_ENTRIES {
            inner.rows.clear();
        }
        inner.rows.insert(key, (value, Instant::now()));
    }

    /// Forgets everything after a write (and keeps racing reads from storing theirs).
    pub(crate) fn forget_all(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.rows.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_raced_a_write_is_not_kept() {
        let c: TtlCache<u32> = TtlCache::new(Duration::from_secs(60));
        let Lookup::Miss(g) = c.lookup("a") else {
            panic!("empty cache hit")
        };
        c.forget_all(); // a revocation lands while the read is in flight
        c.store("a".into(), 1, g);
        assert!(matches!(c.lookup("a"), Lookup::Miss(_)));
        let Lookup::Miss(g) = c.lookup("a") else {
            panic!()
        };
        c.store("a".into(), 2, g);
        assert!(matches!(c.lookup("a"), Lookup::Hit(2)));
        c.forget_all();
        assert!(matches!(c.lookup("a"), Lookup::Miss(_)));
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let c: TtlCache<u32> = TtlCache::new(Duration::ZERO);
        let Lookup::Miss(g) = c.lookup("k") else {
            panic!()
        };
        c.store("k".into(), 1, g);
        assert!(matches!(c.lookup("k"), Lookup::Miss(_)));
    }
}
