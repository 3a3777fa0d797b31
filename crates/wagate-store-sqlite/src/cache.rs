//! Rows read on every request, kept in memory: the device a send names and the API key
//! that signed it. Each accept otherwise costs two reads on the pool before its write, and
//! on a 2-core machine those round trips to sqlx's connection threads cost more CPU than
//! the insert itself.
//!
//! This process owns the database (the store's other assumptions, such as releasing
//! leases at startup, rest on that too), so every write to these rows passes through this
//! store and forgets the cached copy after it commits. A read racing such a write must
//! not put the old row back: each entry may be stored only if no write touched the cache
//! since the read began (a generation counter). API keys are also managed by the CLI from
//! another process (`wagate account key revoke` on a running server's data directory), so
//! their entries also expire after a second ([`crate::API_KEY_CACHE_TTL`]).
//!
//! Hand-written rather than `moka` or `quick_cache`: the generation check around a read
//! is the whole point, and a map under a mutex is all it needs at these sizes.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Entries kept at most; past it the cache starts over (it only ever saves reads).
const MAX_ENTRIES: usize = 100_000;

/// A read-through cache of rows keyed by `K`.
pub(crate) struct RowCache<K, V> {
    inner: Mutex<Inner<K, V>>,
    ttl: Option<Duration>,
}

struct Inner<K, V> {
    generation: u64,
    rows: HashMap<K, (V, Instant)>,
}

/// Where a read begins: what was cached, or the generation to store the read under.
pub(crate) enum Lookup<V> {
    Hit(V),
    Miss(u64),
}

impl<K: Eq + Hash + Clone, V: Clone> RowCache<K, V> {
    /// Entries live until a write forgets them, or `ttl` when given.
    pub(crate) fn new(ttl: Option<Duration>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                generation: 0,
                rows: HashMap::new(),
            }),
            ttl,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<K, V>> {
        // The map holds plain values: a panic elsewhere cannot leave it half-updated.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn lookup(&self, key: &K) -> Lookup<V> {
        let inner = self.lock();
        match inner.rows.get(key) {
            Some((v, at)) if self.ttl.is_none_or(|ttl| at.elapsed() < ttl) => {
                Lookup::Hit(v.clone())
            }
            _ => Lookup::Miss(inner.generation),
        }
    }

    /// Keeps what a read found, unless a write happened since [`Self::lookup`] said `Miss`.
    pub(crate) fn store(&self, key: K, value: V, generation: u64) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.rows.len() >= MAX_ENTRIES {
            inner.rows.clear();
        }
        inner.rows.insert(key, (value, Instant::now()));
    }

    /// Forgets `key` after a write to its row (and keeps racing reads from storing theirs).
    pub(crate) fn forget(&self, key: &K) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.rows.remove(key);
    }

    /// Forgets everything, for writes that do not say which key they touched.
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
        let c: RowCache<&str, u32> = RowCache::new(None);
        let Lookup::Miss(g) = c.lookup(&"a") else {
            panic!("empty cache hit")
        };
        c.forget(&"a"); // a write lands while the read is in flight
        c.store("a", 1, g);
        assert!(matches!(c.lookup(&"a"), Lookup::Miss(_)));
        let Lookup::Miss(g) = c.lookup(&"a") else {
            panic!()
        };
        c.store("a", 2, g);
        assert!(matches!(c.lookup(&"a"), Lookup::Hit(2)));
        c.forget(&"a");
        assert!(matches!(c.lookup(&"a"), Lookup::Miss(_)));
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let c: RowCache<&str, u32> = RowCache::new(Some(Duration::ZERO));
        let Lookup::Miss(g) = c.lookup(&"k") else {
            panic!()
        };
        c.store("k", 1, g);
        assert!(matches!(c.lookup(&"k"), Lookup::Miss(_)));
    }
}
