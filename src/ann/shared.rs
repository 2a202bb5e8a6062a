//! One copy of each HNSW snapshot per process.
//!
//! A connection searches a zero-copy usearch view of the snapshot bytes read from
//! `<table>_hnsw` ([`super::Ann`]). Those bytes are most of a graph's memory (the vectors
//! and the links: about 1.7 KB per 384-d vector); a view's own tables are small (usearch
//! keeps a node pointer, a vector pointer and a key slot per node: a few dozen bytes).
//! So the bytes are shared: every connection of the process that views the same snapshot
//! (the same database file, table and generation) views one buffer, each through its own
//! usearch view (own search contexts and `ef`, so no connection waits for another).
//!
//! A generation names one snapshot for good: it is a random 64-bit number drawn by each
//! checkpoint and stored with the bytes in the same transaction, and the bytes of a
//! generation are never rewritten (a checkpoint writes a new generation; a rolled back
//! one never becomes visible). In-memory and temporary databases (no file name) are not
//! shared.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use crate::error::Result;

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

/// The process's live snapshot buffers. Entries are weak: a buffer lives while a
/// connection views it, and the map forgets it after.
static LIVE: Mutex<Option<HashMap<SnapshotKey, Weak<Vec<u8>>>>> = Mutex::new(None);

/// The bytes of snapshot `key`: the buffer another connection of this process already
/// holds, or `load()`'s, which is then offered to the others. Without a key (an
/// unshareable database) `load()` is called and nothing is kept.
///
/// Two connections loading the same snapshot at the same moment may both read it; the
/// second one then keeps the first one's buffer and drops its own.
///
/// # Errors
/// `load()`'s.
pub(crate) fn snapshot_bytes(
    key: Option<SnapshotKey>,
    load: impl FnOnce() -> Result<Vec<u8>>,
) -> Result<Arc<Vec<u8>>> {
    let Some(key) = key else {
        return Ok(Arc::new(load()?));
    };
    if let Some(bytes) = lookup(&key) {
        return Ok(bytes);
    }
    // Read outside the lock: a 100 MB snapshot takes a while, and other tables need not
    // wait for it.
    let bytes = Arc::new(load()?);
    // A poisoned lock only means a panic elsewhere while the map was held; the map itself
    // is always consistent (single inserts and removals).
    let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
    let map = live.get_or_insert_with(HashMap::new);
    if let Some(existing) = map.get(&key).and_then(Weak::upgrade) {
        return Ok(existing);
    }
    map.retain(|_, w| w.strong_count() > 0);
    map.insert(key, Arc::downgrade(&bytes));
    Ok(bytes)
}

/// The live buffer of `key`, if a connection of this process holds one.
fn lookup(key: &SnapshotKey) -> Option<Arc<Vec<u8>>> {
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
        let a = snapshot_bytes(key(), || Ok(vec![1, 2, 3])).unwrap();
        // The second reader gets the same buffer and never loads.
        let b = snapshot_bytes(key(), || panic!("loaded twice")).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        // Another generation or table is another snapshot.
        let c = snapshot_bytes(SnapshotKey::new(&f, "mem", 43), || Ok(vec![9])).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        drop((a, b));
        // Nobody holds generation 42 any more: the next reader loads it again.
        let d = snapshot_bytes(key(), || Ok(vec![4])).unwrap();
        assert_eq!(*d, vec![4]);
        // No file: never shared.
        assert!(SnapshotKey::new("", "mem", 42).is_none());
        assert!(SnapshotKey::new(&f, "mem", 0).is_none());
        std::fs::remove_file(&file).unwrap();
    }
}
