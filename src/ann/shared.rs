//! One copy of each HNSW snapshot per process, and one graph view per concurrent search.
//!
//! A connection searches a zero-copy usearch view of the snapshot bytes read from
//! `<table>_hnsw` ([`super::Ann`]). The bytes are most of a graph's memory (the vectors
//! and the links: about 1.7 KB per 384-d vector), and a view's own tables are not small
//! either: usearch keeps a node pointer, a vector pointer and a key-to-slot hash entry per
//! node, about 60 bytes per node (6 MiB at 100,000 nodes). So both are shared: every
//! connection of the process that reads the same snapshot (the same database file, table
//! and generation) reads one [`Snapshot`], and borrows one of its views for the length of
//! one search ([`Snapshot::with_view`]). A view is never used by two searches at once (it
//! holds one `ef` and a fixed pool of search contexts), so a process holds as many views of
//! a snapshot as it ever ran concurrent searches on it: one, in a single-threaded host,
//! whatever the number of connections.
//!
//! A generation names one snapshot for good: it is a random 64-bit number drawn by each
//! checkpoint and stored with the bytes in the same transaction, and the bytes of a
//! generation are never rewritten (a checkpoint writes a new generation; a rolled back
//! one never becomes visible). In-memory and temporary databases (no file name) are not
//! shared.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use usearch::Index;

use crate::error::Result;

/// The bytes of one stored snapshot and the idle usearch views of them.
pub(crate) struct Snapshot {
    /// Views of `bytes` no search is using. Declared before `bytes`: dropped first, as
    /// they point into it.
    idle: Mutex<Vec<Index>>,
    /// The graph's node count, from the first view made.
    nodes: OnceLock<usize>,
    /// The serialized graph (usearch's format), as read from `<table>_hnsw`. Never
    /// written after construction.
    bytes: Vec<u8>,
}

impl Snapshot {
    /// A snapshot of `bytes` with no views yet.
    pub(crate) fn new(bytes: Vec<u8>) -> Self {
        Snapshot {
            idle: Mutex::new(Vec::new()),
            nodes: OnceLock::new(),
            bytes,
        }
    }

    /// The serialized graph.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The graph's node count, once a view was made ([`Snapshot::with_view`]); `None`
    /// before.
    pub(crate) fn nodes(&self) -> Option<usize> {
        self.nodes.get().copied()
    }

    /// Runs `f` on a view of the snapshot that nothing else uses meanwhile: an idle one,
    /// or `make(bytes)`'s (a new view, which must point into the slice it is given and
    /// nothing else). The view goes back to the idle ones afterwards, also when `f`
    /// panics. Views of one snapshot are interchangeable: `make` must give each the
    /// same metric; `f` sets the `ef` it needs.
    ///
    /// # Errors
    /// `make`'s.
    pub(crate) fn with_view<R>(
        &self,
        make: impl FnOnce(&[u8]) -> Result<Index>,
        f: impl FnOnce(&Index) -> R,
    ) -> Result<R> {
        let idle = self.idle().pop();
        let view = match idle {
            Some(view) => view,
            None => {
                let view = make(&self.bytes)?;
                // Every view of these bytes has this size; the first one sets it.
                let _ = self.nodes.set(view.size());
                view
            }
        };
        /// Puts the view back when the search is done (or unwinds).
        struct Lent<'a> {
            snapshot: &'a Snapshot,
            view: Option<Index>,
        }
        impl Drop for Lent<'_> {
            fn drop(&mut self) {
                if let Some(view) = self.view.take() {
                    self.snapshot.idle().push(view);
                }
            }
        }
        let mut lent = Lent {
            snapshot: self,
            view: None,
        };
        Ok(f(lent.view.insert(view)))
    }

    /// The idle views (a poisoned lock only means a panic elsewhere while the list was
    /// held: the list itself is always whole, single pushes and pops).
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Index>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Views made so far and not in use (for tests).
    #[cfg(test)]
    fn idle_views(&self) -> usize {
        self.idle().len()
    }
}

/// Identifies one snapshot: the database file (canonical path), the table, the
/// generation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SnapshotKey {
    file: PathBuf,
    table: String,
    generation: u64,
}

impl SnapshotKey {
    /// The key of `table`'s snapshot `generation` in the database file `file` (as SQLite
    /// reports it: `PRAGMA database_list`); `None` for in-memory and temporary databases
    /// (empty file name) and files that cannot be resolved.
    pub(crate) fn new(file: &str, table: &str, generation: u64) -> Option<Self> {
        if file.is_empty() || generation == 0 {
            return None;
        }
        let file = std::fs::canonicalize(file).ok()?;
        Some(SnapshotKey {
            file,
            // SQLite compares table names case-insensitively (ASCII).
            table: table.to_ascii_lowercase(),
            generation,
        })
    }
}

/// The process's live snapshots. Entries are weak: a snapshot lives while a connection
/// reads it, and the map forgets it after.
static LIVE: Mutex<Option<HashMap<SnapshotKey, Weak<Snapshot>>>> = Mutex::new(None);

/// Snapshot `key`: the one another connection of this process already holds, or one of
/// `load()`'s bytes, which is then offered to the others. Without a key (an unshareable
/// database) `load()` is called and nothing is kept.
///
/// Two connections loading the same snapshot at the same moment may both read it; the
/// second one then keeps the first one's buffer and drops its own.
///
/// # Errors
/// `load()`'s.
pub(crate) fn snapshot(
    key: Option<SnapshotKey>,
    load: impl FnOnce() -> Result<Vec<u8>>,
) -> Result<Arc<Snapshot>> {
    let Some(key) = key else {
        return Ok(Arc::new(Snapshot::new(load()?)));
    };
    if let Some(bytes) = lookup(&key) {
        return Ok(bytes);
    }
    // Read outside the lock: a 100 MB snapshot takes a while, and other tables need not
    // wait for it.
    let loaded = Arc::new(Snapshot::new(load()?));
    // A poisoned lock only means a panic elsewhere while the map was held; the map itself
    // is always consistent (single inserts and removals).
    let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
    let map = live.get_or_insert_with(HashMap::new);
    if let Some(existing) = map.get(&key).and_then(Weak::upgrade) {
        return Ok(existing);
    }
    map.retain(|_, w| w.strong_count() > 0);
    map.insert(key, Arc::downgrade(&loaded));
    Ok(loaded)
}

/// The live snapshot `key`, if a connection of this process holds it.
fn lookup(key: &SnapshotKey) -> Option<Arc<Snapshot>> {
    let live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
    live.as_ref()?.get(key)?.upgrade()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_while_held_then_forgotten() {
        let dir = std::env::temp_dir();
        let file = dir.join(format!("subcog-shared-{}.db", std::process::id()));
        std::fs::write(&file, b"x").unwrap();
        let f = file.to_string_lossy().to_string();
        let key = || SnapshotKey::new(&f, "mem", 42);
        let a = snapshot(key(), || Ok(vec![1, 2, 3])).unwrap();
        // The second reader gets the same buffer and never loads.
        let b = snapshot(key(), || panic!("loaded twice")).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        // Another generation or table is another snapshot.
        let c = snapshot(SnapshotKey::new(&f, "mem", 43), || Ok(vec![9])).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        drop((a, b));
        // Nobody holds generation 42 any more: the next reader loads it again.
        let d = snapshot(key(), || Ok(vec![4])).unwrap();
        assert_eq!(d.bytes(), &[4]);
        // No file: never shared.
        assert!(SnapshotKey::new("", "mem", 42).is_none());
        assert!(SnapshotKey::new(&f, "mem", 0).is_none());
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn views_are_lent_one_search_at_a_time_and_come_back() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use usearch::{IndexOptions, MetricKind, ScalarKind};
        let opts = IndexOptions {
            dimensions: 4,
            metric: MetricKind::L2sq,
            quantization: ScalarKind::F32,
            ..Default::default()
        };
        let index = Index::new(&opts).unwrap();
        index.reserve(8).unwrap();
        for key in 0..8u64 {
            index.add(key, &[key as f32, 0.0, 1.0, 2.0]).unwrap();
        }
        let mut bytes = vec![0u8; index.serialized_length()];
        index.save_to_buffer(&mut bytes).unwrap();
        let snapshot = Snapshot::new(bytes);
        let made = AtomicUsize::new(0);
        let make = |b: &[u8]| -> Result<Index> {
            made.fetch_add(1, Ordering::SeqCst);
            let view = Index::new(&opts)?;
            // SAFETY: `b` is the snapshot's bytes, which outlive its views.
            unsafe { view.view_from_buffer(b) }?;
            Ok(view)
        };
        let nearest = |view: &Index| view.search(&[3.2, 0.0, 1.0, 2.0], 1).unwrap().keys;
        assert_eq!(snapshot.nodes(), None);
        // One search after another: one view.
        for _ in 0..3 {
            assert_eq!(snapshot.with_view(make, nearest).unwrap(), vec![3]);
        }
        assert_eq!((made.load(Ordering::SeqCst), snapshot.idle_views()), (1, 1));
        assert_eq!(snapshot.nodes(), Some(8));
        // A search while another holds the view gets a second one.
        let both = snapshot
            .with_view(make, |a| {
                snapshot.with_view(make, |b| (std::ptr::eq(a, b), nearest(b)))
            })
            .unwrap()
            .unwrap();
        assert_eq!(both, (false, vec![3]));
        assert_eq!((made.load(Ordering::SeqCst), snapshot.idle_views()), (2, 2));
        // A search that panics gives its view back.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            snapshot.with_view(make, |_| panic!("search failed"))
        }));
        assert!(r.is_err());
        assert_eq!(snapshot.idle_views(), 2);
        // Four threads searching at once: four views, all idle after.
        let barrier = std::sync::Barrier::new(4);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    let keys = snapshot
                        .with_view(make, |v| {
                            barrier.wait();
                            nearest(v)
                        })
                        .unwrap();
                    assert_eq!(keys, vec![3]);
                });
            }
        });
        assert_eq!((made.load(Ordering::SeqCst), snapshot.idle_views()), (4, 4));
    }
}
