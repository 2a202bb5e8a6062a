//! Contiguous copies of small vector sets (a table or a namespace of at most `exact_max`
//! vectors) for exact scans: one `[f32; n * dim]` block scanned with the SIMD screen
//! instead of one B-tree row read and decode per vector on every query.
//!
//! A block is kept only while [`Store::change_key`] is unchanged: outside any transaction
//! (in autocommit mode), with no row written by this connection and no commit by another
//! since it was read. Inside a transaction every scan reads the rows (a ROLLBACK TO would
//! otherwise leave a block holding rolled-back vectors).

use std::collections::HashMap;

use crate::error::Result;
use crate::store::Store;
use crate::vector;

/// Bytes of blocks kept per table and connection (float32 vectors; 2,048 vectors of 384
/// dimensions are 3 MiB). A block that does not fit is read for the scan and dropped.
const MAX_BYTES: usize = 16 << 20;

/// Whether a block of `n` vectors of `dim` float32 can be kept ([`MAX_BYTES`]); larger
/// sets (an `exact_max` raised far above its default) are streamed from their rows, so a
/// scan never allocates more than this bound.
pub(super) fn fits(n: usize, dim: usize) -> bool {
    n.saturating_mul(dim.saturating_mul(4).saturating_add(8)) <= MAX_BYTES
}

/// The stored vectors of one set, in rowid order of the scan.
pub(super) struct Block {
    pub(super) ids: Vec<i64>,
    /// `ids.len() * dim` float32.
    pub(super) vecs: Vec<f32>,
}

impl Block {
    /// Reads the vectors of `namespace` (all when `None`).
    fn read(store: &Store, namespace: Option<&str>) -> Result<Block> {
        let dim = store.opts.dim;
        let mut block = Block {
            ids: Vec::new(),
            vecs: Vec::new(),
        };
        let mut v = vec![0f32; dim];
        store.scan_vectors(namespace, |id, blob| {
            if vector::decode_into(blob, &mut v) {
                block.ids.push(id);
                block.vecs.extend_from_slice(&v);
            }
        })?;
        Ok(block)
    }

    fn bytes(&self) -> usize {
        self.vecs.len() * 4 + self.ids.len() * 8
    }
}

/// The blocks of one table on one connection, by namespace (`None`: the whole table).
#[derive(Default)]
pub(super) struct Blocks {
    key: Option<(u64, i64)>,
    sets: HashMap<Option<String>, Block>,
    bytes: usize,
}

impl Blocks {
    /// Runs `f` over the block of `namespace`: the kept one when nothing changed since it
    /// was read, else read now (and kept when outside a transaction and it fits).
    ///
    /// # Errors
    /// SQLite errors.
    pub(super) fn with<T>(
        &mut self,
        store: &Store,
        namespace: Option<&str>,
        f: impl FnOnce(&Block) -> T,
    ) -> Result<T> {
        let key = store.change_key()?;
        if key.is_none() || key != self.key {
            self.sets.clear();
            self.bytes = 0;
            self.key = key;
        }
        let name = namespace.map(str::to_string);
        if let Some(block) = self.sets.get(&name) {
            return Ok(f(block));
        }
        let block = Block::read(store, namespace)?;
        let out = f(&block);
        if key.is_some() && self.bytes + block.bytes() <= MAX_BYTES {
            self.bytes += block.bytes();
            self.sets.insert(name, block);
        }
        Ok(out)
    }

    /// Drops every block (the graph was dropped or rebuilt: cheap insurance, the key
    /// would catch any change anyway).
    pub(super) fn clear(&mut self) {
        self.sets.clear();
        self.bytes = 0;
        self.key = None;
    }
}
