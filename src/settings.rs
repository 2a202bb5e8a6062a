//! Process-wide settings: the embedding cache's size, ONNX Runtime's threads and the HNSW
//! checkpoint threads. Each has an environment variable (read by [`env_count`], the one
//! parser), a value set at run time by `subcog_config(key, n)` that wins over it, and a
//! default. [`SETTINGS`] lists them for `subcog_config` and `subcog_info()`.
//!
//! The values here are what the next user of a setting reads; applying a change to what
//! already exists (resizing the cache, reloading the ONNX session) is the embedder's job,
//! which [`Setting::set`] calls.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::embedder;
use crate::error::Result;

/// Most threads a thread setting (`embed_threads`, `index_threads`, and their environment
/// variables) may ask for, per available core: more only adds contention, and a huge count
/// used to start thousands of threads and exhaust the host's memory.
pub(crate) const THREADS_PER_CORE: usize = 4;

/// Most bytes the embedding cache may hold when full (256 MiB).
pub(crate) const MAX_EMBED_CACHE_BYTES: usize = 256 << 20;

/// Estimated bytes of one embedding-cache entry: 384 float32 (1,536 B), the 32-byte key,
/// the `Arc` header and the LRU node (~80 B). ~1.6 KB, as the README says.
pub(crate) const EMBED_CACHE_ENTRY_BYTES: usize = 384 * 4 + 32 + 16 + 80;

/// Largest `embed_cache_size`: [`MAX_EMBED_CACHE_BYTES`] / [`EMBED_CACHE_ENTRY_BYTES`]
/// entries (161,319; ~256 MiB when full).
pub(crate) const MAX_EMBED_CACHE: usize = MAX_EMBED_CACHE_BYTES / EMBED_CACHE_ENTRY_BYTES;

/// Largest thread count of `embed_threads` and `index_threads`: [`THREADS_PER_CORE`] x the
/// available cores (at least 1 core).
pub(crate) fn max_threads() -> usize {
    cores().saturating_mul(THREADS_PER_CORE)
}

/// Default number of entries in the process-wide embedding cache (SHA-256 of model tag and
/// text -> vector), ~1.6 KB each, so ~6.5 MB when full.
pub(crate) const DEFAULT_EMBED_CACHE: usize = 4096;

/// A non-negative integer from the environment variable `var`: its value with surrounding
/// blanks removed, parsed as a `usize`; `None` when unset, empty or not such a number.
pub(crate) fn env_count(var: &str) -> Option<usize> {
    parse_count(&std::env::var(var).ok()?)
}

/// `s` with surrounding blanks removed, as a `usize`.
fn parse_count(s: &str) -> Option<usize> {
    s.trim().parse().ok()
}

/// The available cores (1 when unknown).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Not set at run time (the sentinel of [`EMBED_CACHE`], where 0 is a value: cache off).
const UNSET: usize = usize::MAX;

/// Embedding-cache entries set by `subcog_config`, or [`UNSET`].
static EMBED_CACHE: AtomicUsize = AtomicUsize::new(UNSET);
/// ONNX Runtime intra-op threads set by `subcog_config`, 0 = not set.
static EMBED_THREADS: AtomicUsize = AtomicUsize::new(0);
/// HNSW checkpoint threads set by `subcog_config`, 0 = not set.
static INDEX_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Entries of the embedding cache when it is created: the value set by
/// [`set_embed_cache_size`] if any, else `SUBCOG_EMBED_CACHE` (0 = off), else
/// [`DEFAULT_EMBED_CACHE`]. (The cache is created on first use; after that its capacity,
/// [`embedder::cache_stats`], is the value in force.)
/// An environment value above [`MAX_EMBED_CACHE`] is clamped to it.
pub(crate) fn embed_cache_size() -> usize {
    match EMBED_CACHE.load(Ordering::Relaxed) {
        UNSET => env_count("SUBCOG_EMBED_CACHE")
            .unwrap_or(DEFAULT_EMBED_CACHE)
            .min(MAX_EMBED_CACHE),
        n => n,
    }
}

/// Sets the embedding cache's size for the process (0 = off). Only records it:
/// [`embedder::set_cache_size`] also resizes the cache.
/// Values above [`MAX_EMBED_CACHE`] are clamped (`subcog_config` refuses them first).
pub(crate) fn set_embed_cache_size(entries: usize) {
    EMBED_CACHE.store(entries.min(MAX_EMBED_CACHE), Ordering::Relaxed);
}

/// Intra-op threads for ONNX Runtime sessions: the value set by [`set_embed_threads`] if
/// non-zero, else `SUBCOG_THREADS` if non-zero, else min(2, available cores). Two, not all
/// cores, because the library lives inside someone else's process; two were ~1.4x faster
/// than one on this model (field notes). Never more than [`max_threads`] (a larger
/// environment value is clamped).
pub(crate) fn embed_threads() -> usize {
    match EMBED_THREADS.load(Ordering::Relaxed) {
        0 => env_count("SUBCOG_THREADS")
            .filter(|&n| n > 0)
            .unwrap_or_else(|| cores().min(2)),
        n => n,
    }
    .min(max_threads())
}

/// Sets the ONNX Runtime thread count for sessions created from now on (0 = back to the
/// default, see [`embed_threads`]). Only records it: [`embedder::set_threads`] also
/// reloads a loaded session.
pub(crate) fn set_embed_threads(n: usize) {
    EMBED_THREADS.store(n, Ordering::Relaxed);
}

/// Threads that add vectors to the graph at a checkpoint or rebuild: the value set by
/// [`set_index_threads`] if non-zero, else `SUBCOG_INDEX_THREADS` if non-zero, else the
/// available cores up to 4. Searches always run on the caller's thread; these threads
/// exist only while a checkpoint runs (inside a COMMIT, a bulk INSERT or 'optimize').
/// Never more than [`max_threads`] (a larger environment value is clamped).
pub(crate) fn index_threads() -> usize {
    match INDEX_THREADS.load(Ordering::Relaxed) {
        0 => env_count("SUBCOG_INDEX_THREADS")
            .filter(|&n| n > 0)
            .unwrap_or_else(|| cores().clamp(1, 4)),
        n => n,
    }
    .min(max_threads())
}

/// Sets the checkpoint thread count (0 = back to the default, see [`index_threads`]).
pub(crate) fn set_index_threads(n: usize) {
    INDEX_THREADS.store(n, Ordering::Relaxed);
}

/// One setting of `subcog_config`.
pub(crate) struct Setting {
    /// The key `subcog_config` takes (lower case) and `subcog_info()` reports.
    pub key: &'static str,
    /// The value in force now.
    pub get: fn() -> usize,
    /// Largest value it accepts (the smallest is 0); `subcog_config` refuses a larger one.
    pub max: fn() -> usize,
    /// Sets it for the whole process (`0..=max()`, checked by the caller) and applies it.
    pub set: fn(usize) -> Result<()>,
}

/// Every process-wide setting, in the order error messages list them.
pub(crate) const SETTINGS: &[Setting] = &[
    Setting {
        key: "embed_cache_size",
        get: || embedder::cache_stats().capacity,
        max: || MAX_EMBED_CACHE,
        set: |n| {
            embedder::set_cache_size(n);
            Ok(())
        },
    },
    Setting {
        key: "embed_threads",
        get: || embedder::loaded().map_or_else(embed_threads, |e| e.session_threads()),
        max: max_threads,
        set: embedder::set_threads,
    },
    Setting {
        key: "index_threads",
        get: index_threads,
        max: max_threads,
        set: |n| {
            set_index_threads(n);
            Ok(())
        },
    },
];

/// The setting named `key` (exact, lower case).
pub(crate) fn find(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// The keys of [`SETTINGS`], for error messages: `embed_cache_size, embed_threads, ...`.
pub(crate) fn keys() -> String {
    SETTINGS
        .iter()
        .map(|s| s.key)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_count_parses_trimmed_non_negative_integers() {
        assert_eq!(parse_count(" 3\n"), Some(3));
        assert_eq!(parse_count("0"), Some(0));
        for bad in ["", "  ", "-1", "2.5", "many", "3 4"] {
            assert_eq!(parse_count(bad), None, "{bad:?}");
        }
        // A variable no test sets; the environment is read, never written.
        assert_eq!(env_count("SUBCOG_TEST_UNSET_VARIABLE_0d8f"), None);
    }

    #[test]
    fn maxima_are_bounded() {
        assert!(max_threads() >= THREADS_PER_CORE);
        assert!(max_threads() <= cores() * THREADS_PER_CORE);
        const {
            assert!(MAX_EMBED_CACHE * EMBED_CACHE_ENTRY_BYTES <= MAX_EMBED_CACHE_BYTES);
            assert!(MAX_EMBED_CACHE >= DEFAULT_EMBED_CACHE);
        }
        for s in SETTINGS {
            assert!((s.max)() >= 1, "{}", s.key);
        }
    }

    #[test]
    fn keys_and_lookup() {
        assert_eq!(keys(), "embed_cache_size, embed_threads, index_threads");
        assert!(find("index_threads").is_some_and(|s| s.key == "index_threads"));
        assert!(find("INDEX_THREADS").is_none());
        assert!(find("threads").is_none());
    }

    #[test]
    fn thread_counts_fall_back_to_their_defaults() {
        // Only this test changes the index threads in this binary.
        set_index_threads(3);
        assert_eq!(index_threads(), 3);
        set_index_threads(0);
        let d = index_threads();
        match env_count("SUBCOG_INDEX_THREADS").filter(|&n| n > 0) {
            Some(n) => assert_eq!(d, n),
            None => assert_eq!(d, cores().clamp(1, 4)),
        }
        match env_count("SUBCOG_THREADS").filter(|&n| n > 0) {
            Some(n) => assert_eq!(embed_threads(), n),
            None => assert_eq!(embed_threads(), cores().min(2)),
        }
    }
}
