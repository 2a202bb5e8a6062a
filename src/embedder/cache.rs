//! The process-wide embedding cache: an LRU map from SHA-256(model tag, text) to the
//! embedding, with hit and miss counters (shown by `subcog_info()`). Its size is
//! [`crate::settings::embed_cache_size`] when it is created, then whatever
//! [`set_cache_size`] makes it.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lru::LruCache;
use sha2::{Digest, Sha256};

use crate::settings;

/// A cache key: SHA-256 of the model tag and the text.
pub(crate) type Key = [u8; 32];

struct EmbedCache {
    /// `None` when the configured size is 0 (cache off).
    lru: Option<LruCache<Key, Arc<[f32]>>>,
}

static CACHE: Mutex<Option<EmbedCache>> = Mutex::new(None);
static CACHE_HITS: AtomicU64 = AtomicU64::new(0);
static CACHE_MISSES: AtomicU64 = AtomicU64::new(0);

/// An LRU map holding at most `cap` entries that allocates as it fills (`LruCache::new`
/// reserves room for `cap` entries up front).
fn bounded(cap: NonZeroUsize) -> LruCache<Key, Arc<[f32]>> {
    let mut l = LruCache::unbounded();
    l.resize(cap);
    l
}

/// Runs `f` on the cache, creating it on first use with
/// [`settings::embed_cache_size`] entries. `None` if the lock is poisoned.
fn with_cache<T>(f: impl FnOnce(&mut EmbedCache) -> T) -> Option<T> {
    let mut g = CACHE.lock().ok()?;
    let c = g.get_or_insert_with(|| EmbedCache {
        lru: NonZeroUsize::new(settings::embed_cache_size()).map(bounded),
    });
    Some(f(c))
}

/// The cache key of `text` embedded by the model identified by `model_tag`.
pub(crate) fn key(model_tag: &[u8; 32], text: &str) -> Key {
    Sha256::new()
        .chain_update(model_tag)
        .chain_update(text.as_bytes())
        .finalize()
        .into()
}

/// The cached vector of each key (`None` for a miss; all `None` when the cache is off or
/// its lock is poisoned), counting the hits and misses.
pub(crate) fn lookup(keys: &[Key]) -> Vec<Option<Arc<[f32]>>> {
    let found = with_cache(|c| match c.lru.as_mut() {
        Some(lru) => keys.iter().map(|k| lru.get(k).cloned()).collect(),
        None => vec![None; keys.len()],
    })
    .unwrap_or_else(|| vec![None; keys.len()]);
    let hits = found.iter().filter(|v| v.is_some()).count();
    CACHE_HITS.fetch_add(hits as u64, Ordering::Relaxed);
    CACHE_MISSES.fetch_add((keys.len() - hits) as u64, Ordering::Relaxed);
    found
}

/// Stores the vectors just computed (nothing when the cache is off).
pub(crate) fn insert<'a>(entries: impl IntoIterator<Item = (&'a Key, &'a Arc<[f32]>)>) {
    with_cache(|c| {
        if let Some(lru) = c.lru.as_mut() {
            for (k, v) in entries {
                lru.put(*k, v.clone());
            }
        }
    });
}

/// Embedding-cache statistics, as reported by `subcog_info()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CacheStats {
    /// Maximum number of entries (0 = cache off).
    pub capacity: usize,
    /// Entries held now.
    pub entries: usize,
    /// Texts served from the cache since the process loaded the extension.
    pub hits: u64,
    /// Texts that had to be run through the model.
    pub misses: u64,
}

/// Current statistics of the process-wide embedding cache.
pub(crate) fn cache_stats() -> CacheStats {
    let (capacity, entries) =
        with_cache(|c| c.lru.as_ref().map_or((0, 0), |l| (l.cap().get(), l.len())))
            .unwrap_or((0, 0));
    CacheStats {
        capacity,
        entries,
        hits: CACHE_HITS.load(Ordering::Relaxed),
        misses: CACHE_MISSES.load(Ordering::Relaxed),
    }
}

/// Resizes the process-wide embedding cache to `entries` (0 turns it off and empties it;
/// shrinking drops the least recently used entries) and records the size in
/// [`settings`]. Clamped to [`settings::MAX_EMBED_CACHE`].
pub(crate) fn set_cache_size(entries: usize) {
    let entries = entries.min(settings::MAX_EMBED_CACHE);
    settings::set_embed_cache_size(entries);
    with_cache(|c| match (NonZeroUsize::new(entries), c.lru.as_mut()) {
        (None, _) => c.lru = None,
        (Some(n), Some(l)) => l.resize(n),
        (Some(n), None) => c.lru = Some(bounded(n)),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The only test in this binary that touches the process-wide cache.
    #[test]
    fn resizes_and_serves_without_reserving_its_capacity() {
        let before = cache_stats();
        // Off, then the largest size subcog_config accepts (nothing reserved up front), then
        // above it: clamped.
        set_cache_size(0);
        assert_eq!(cache_stats().capacity, 0);
        set_cache_size(settings::MAX_EMBED_CACHE);
        assert_eq!(cache_stats().capacity, settings::MAX_EMBED_CACHE);
        set_cache_size(1 << 30);
        assert_eq!(cache_stats().capacity, settings::MAX_EMBED_CACHE);
        set_cache_size(2);
        let tag = [7u8; 32];
        let (a, b, c) = (key(&tag, "a"), key(&tag, "b"), key(&tag, "c"));
        assert_ne!(a, key(&[8u8; 32], "a"));
        let v: Arc<[f32]> = Arc::from(vec![1.0f32, 2.0]);
        insert([(&a, &v), (&b, &v), (&c, &v)]);
        let got = lookup(&[a, b, c]);
        // Capacity 2: the least recently used, `a`, was dropped.
        assert_eq!(
            got.iter().map(Option::is_some).collect::<Vec<_>>(),
            [false, true, true]
        );
        let after = cache_stats();
        assert_eq!(after.entries, 2);
        assert_eq!(after.hits - before.hits, 2);
        assert_eq!(after.misses - before.misses, 1);
        set_cache_size(settings::DEFAULT_EMBED_CACHE);
    }
}
