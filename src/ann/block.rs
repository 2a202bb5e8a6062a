//! Contiguous copies of small vector sets (a table or a namespace of at most `exact_max`
//! vectors) for exact scans: one `[f32; n * dim]` block scanned with the SIMD screen
//! (from its second scan on, through its int8 codes: [`Block::codes`]) instead of one
//! B-tree row read and decode per vector on every query. Likewise the
//! pending ids' vectors, which every graph search scans exactly ([`PendingBlock`]).
//!
//! A block is kept only while [`Store::change_key`] is unchanged: outside any transaction
//! (in autocommit mode), with no row written by this connection and no commit by another
//! since it was read. Inside a transaction every scan reads the rows (a ROLLBACK TO would
//! otherwise leave a block holding rolled-back vectors).

use std::cell::{Cell, OnceCell};
use std::collections::HashMap;

use super::quant::Codes;
use crate::error::Result;
use crate::store::Store;
use crate::vector::{self, Metric};

/// Bytes of blocks kept per table and connection (float32 vectors and their int8 codes;
/// 2,048 vectors of 384 dimensions are 3.8 MiB). A block that does not fit is read for
/// the scan and dropped.
const MAX_BYTES: usize = 16 << 20;

/// Bytes a block of `n` vectors of `dim` float32 takes: per vector `4 dim` (float32) + 8
/// (id), and on a cosine table (`coded`) its codes too: `dim` (int8) + 20 (the codes'
/// scale, bounds and sum) + 1 (the hidden flag).
fn block_bytes(n: usize, dim: usize, coded: bool) -> usize {
    let per = dim.saturating_mul(4).saturating_add(8);
    let codes = if coded { dim.saturating_add(21) } else { 0 };
    n.saturating_mul(per.saturating_add(codes))
}

/// Whether a block of `n` vectors of `dim` float32 under `metric` can be kept
/// ([`MAX_BYTES`]); larger sets (an `exact_max` raised far above its default) are
/// streamed from their rows, so a scan never allocates more than this bound.
pub(super) fn fits(n: usize, dim: usize, metric: Metric) -> bool {
    block_bytes(n, dim, metric == Metric::Cosine) <= MAX_BYTES
}

/// The stored vectors of one set, in rowid order of the scan.
pub(super) struct Block {
    pub(super) ids: Vec<i64>,
    /// `ids.len() * dim` float32.
    pub(super) vecs: Vec<f32>,
    /// int8 codes of `vecs` ([`Codes`], cosine tables), made at the block's second scan.
    codes: OnceCell<Codes>,
    /// Whether the block was scanned once (the codes are made at the second scan).
    scanned: Cell<bool>,
    /// Whether each position's id is in the set of hidden (superseded) ids the scans skip:
    /// both are kept under the same change key, so the set cannot change while the block
    /// lives.
    hidden: OnceCell<Vec<bool>>,
}

impl Block {
    /// Reads the vectors of `namespace` (all when `None`).
    fn read(store: &Store, namespace: Option<&str>) -> Result<Block> {
        let dim = store.opts.dim;
        let mut block = Block {
            ids: Vec::new(),
            vecs: Vec::new(),
            codes: OnceCell::new(),
            scanned: Cell::new(false),
            hidden: OnceCell::new(),
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

    /// Bytes kept, counting the codes a second scan makes on a cosine table
    /// ([`block_bytes`]).
    fn bytes(&self, dim: usize, metric: Metric) -> usize {
        block_bytes(self.ids.len(), dim, metric == Metric::Cosine)
    }

    /// The int8 codes of the block's vectors (`[f32; dim]` each), from its second scan
    /// on; `None` at the first. A cosine scan screens the codes ([`Codes::candidates`])
    /// and computes the exact distance of the few candidates from `vecs`: a quarter of the
    /// memory read per query. The first scan of a block read after a change screens the
    /// float32 vectors instead: coding costs about as much as reading the block, which a
    /// connection writing between its searches would pay at every search, and a block
    /// used inside a transaction (read for one scan, not kept) is never coded.
    pub(super) fn codes(&self, dim: usize) -> Option<&Codes> {
        if let Some(c) = self.codes.get() {
            return Some(c);
        }
        if !self.scanned.replace(true) || dim == 0 {
            return None;
        }
        Some(self.codes.get_or_init(|| {
            let mut c = Codes::new(dim);
            for v in self.vecs.chunks_exact(dim) {
                c.push(v);
            }
            c
        }))
    }

    /// Whether the id at each position is in `skip` (the hidden ids of the kept read
    /// state), computed once per block (see `hidden`).
    pub(super) fn hidden(&self, skip: &std::collections::HashSet<u64>) -> &[bool] {
        self.hidden.get_or_init(|| {
            self.ids
                .iter()
                .map(|id| skip.contains(&(*id as u64)))
                .collect()
        })
    }
}

/// Bytes of the pending ids' block kept per table and connection (about 170,000 pending
/// 384-d vectors of a cosine table as int8 codes, 43,000 as float32 otherwise). A larger
/// pending list is streamed from its rows on every search, as inside transactions.
const MAX_PENDING_BYTES: usize = 64 << 20;

/// The stored vectors of the pending ids (those a search scans exactly beside the graph),
/// each with its namespace: int8 codes on a cosine table ([`Codes`]: the search screens
/// them and reads the few candidates' exact vectors from their rows), float32 copies
/// otherwise.
pub(super) struct PendingBlock {
    pub(super) ids: Vec<i64>,
    /// Index into `names` of each id's namespace.
    pub(super) ns: Vec<u32>,
    pub(super) names: Vec<String>,
    /// Cosine tables: the codes, one per id.
    pub(super) codes: Option<Codes>,
    /// Other metrics: `ids.len() * dim` float32.
    pub(super) vecs: Vec<f32>,
}

impl PendingBlock {
    /// Reads the pending ids' vectors and namespaces (one join); `None` once the block
    /// passes [`MAX_PENDING_BYTES`] (the read stops there).
    fn read(store: &Store) -> Result<Option<PendingBlock>> {
        let dim = store.opts.dim;
        let cosine = store.opts.metric == Metric::Cosine;
        let per = if cosine {
            dim.saturating_add(32)
        } else {
            dim.saturating_mul(4).saturating_add(12)
        };
        let mut block = PendingBlock {
            ids: Vec::new(),
            ns: Vec::new(),
            names: Vec::new(),
            codes: cosine.then(|| Codes::new(dim)),
            vecs: Vec::new(),
        };
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut v = vec![0f32; dim];
        let mut fits = true;
        store.pending_vectors_ns(|id, ns, blob| {
            if !fits || !vector::decode_into(blob, &mut v) {
                return;
            }
            if (block.ids.len() + 1).saturating_mul(per) > MAX_PENDING_BYTES {
                fits = false;
                return;
            }
            let slot = match index.get(ns) {
                Some(i) => *i,
                None => {
                    let i = block.names.len() as u32;
                    block.names.push(ns.to_string());
                    index.insert(ns.to_string(), i);
                    i
                }
            };
            block.ids.push(id);
            block.ns.push(slot);
            match block.codes.as_mut() {
                Some(c) => c.push(&v),
                None => block.vecs.extend_from_slice(&v),
            }
        })?;
        Ok(fits.then_some(block))
    }

    /// The index of `namespace` in `names` (`Some(None)`: no pending id is in it), or
    /// `None` for the whole table.
    pub(super) fn namespace(&self, namespace: Option<&str>) -> Option<Option<u32>> {
        namespace.map(|want| self.names.iter().position(|n| n == want).map(|i| i as u32))
    }
}

/// The blocks of one table on one connection, by namespace (`None`: the whole table),
/// and the pending ids' block.
#[derive(Default)]
pub(super) struct Blocks {
    key: Option<(u64, i64)>,
    sets: HashMap<Option<String>, Block>,
    bytes: usize,
    /// The pending ids' block: `Some(None)` when it was too large to keep.
    pending: Option<Option<PendingBlock>>,
    /// Whether a search under `key` streamed the pending ids (the block is read at the
    /// second).
    pending_seen: bool,
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
        let key = self.rekey(store)?;
        let name = namespace.map(str::to_string);
        if let Some(block) = self.sets.get(&name) {
            return Ok(f(block));
        }
        let block = Block::read(store, namespace)?;
        let out = f(&block);
        let bytes = block.bytes(store.opts.dim, store.opts.metric);
        if key.is_some() && self.bytes + bytes <= MAX_BYTES {
            self.bytes += bytes;
            self.sets.insert(name, block);
        }
        Ok(out)
    }

    /// Runs `f` over the pending ids' block, kept while nothing changed; `None` (and `f`
    /// not run) inside a transaction, at the first search after a change, or when the
    /// block passes [`MAX_PENDING_BYTES`]: then the caller streams the pending vectors
    /// from their rows. The block is read at the second search after a change (reading and
    /// coding it costs about two streams), so searches between writes (store, recall,
    /// store, ...) keep the plain stream.
    ///
    /// # Errors
    /// SQLite errors.
    pub(super) fn with_pending<T>(
        &mut self,
        store: &Store,
        f: impl FnOnce(&PendingBlock) -> T,
    ) -> Result<Option<T>> {
        if self.rekey(store)?.is_none() {
            return Ok(None);
        }
        if self.pending.is_none() {
            if !self.pending_seen {
                self.pending_seen = true;
                return Ok(None);
            }
            self.pending = Some(PendingBlock::read(store)?);
        }
        Ok(self.pending.as_ref().and_then(Option::as_ref).map(f))
    }

    /// The change key now, every block dropped when it differs from the blocks' (or is
    /// `None`: inside a transaction nothing is kept).
    fn rekey(&mut self, store: &Store) -> Result<Option<(u64, i64)>> {
        let key = store.change_key()?;
        if key.is_none() || key != self.key {
            self.sets.clear();
            self.bytes = 0;
            self.pending = None;
            self.pending_seen = false;
            self.key = key;
        }
        Ok(key)
    }

    /// Drops every block (the graph was dropped or rebuilt: cheap insurance, the key
    /// would catch any change anyway).
    pub(super) fn clear(&mut self) {
        self.sets.clear();
        self.bytes = 0;
        self.pending = None;
        self.pending_seen = false;
        self.key = None;
    }
}
