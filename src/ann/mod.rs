//! Nearest-neighbour search that is exactly as consistent as the table.
//!
//! The HNSW graph (usearch) lives in memory, one copy per process of the snapshot in
//! `<table>_hnsw`, searched through views shared by the process's connections
//! ([`shared`]); a connection that writes the graph holds its own copy. It is never
//! trusted on its own:
//!
//! * **Invariant.** For every id *not* in `<table>_pending`, the snapshot of the current
//!   `generation` holds exactly the row's current vector and namespace (or nothing, if the
//!   row has no vector). Every write that changes a vector or a namespace adds the id to
//!   `<table>_pending` in the same transaction, so ROLLBACK, ROLLBACK TO and a crash undo
//!   both together.
//! * **Search** = HNSW over the snapshot, skipping pending ids (and other namespaces)
//!   *during* the graph traversal, plus an exact scan of the pending ids' stored vectors;
//!   the two lists are merged. A transaction therefore sees its own writes, and nothing
//!   rolled back is ever returned.
//! * **Checkpoint** (at COMMIT when the pending list outgrows `max(1024, size / 8)`, inside
//!   a statement only past `max(16384, size / 2)`): fold the pending ids into the graph, write the snapshot under a new random generation and empty the
//!   pending list, all inside the writer's transaction. A connection whose in-memory graph
//!   has another generation than the one it reads from `<table>_config` (another
//!   connection checkpointed, or a checkpoint was rolled back) reloads the snapshot first.
//! * Searches over at most `exact_max` vectors (a small table or a small namespace) are
//!   exact scans, so a filter never leaves a KNN query short of `k` results.

mod block;
mod build;
mod checkpoint;
mod namespaces;
mod quant;
mod shared;

use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

pub(crate) use checkpoint::Checkpoint;
use namespaces::Namespaces;

use crate::error::{Error, Result};
use crate::store::{GraphVectors, Store};
use crate::vector::{self, Metric};
use build::par_map;

/// One neighbour: `(id, distance)`.
pub type Hit = (i64, f32);

/// The in-memory HNSW graph of one table on one connection.
pub(crate) struct Ann {
    /// This connection's own graph: built here, or the snapshot copied to take
    /// additions ([`Ann::thaw`]). Shared (`Arc`) only with the background fold
    /// ([`Ann::fold`]), which is joined ([`Ann::settle`]) before anything else touches
    /// it. At most one of `index` and `snapshot` is set; neither: not loaded.
    index: Option<Arc<Index>>,
    /// The stored snapshot, searched through views borrowed for one search at a time
    /// ([`shared::Snapshot::with_view`]) and shared with the other connections of the
    /// process that read the same generation, until the first checkpoint copies it into
    /// `index`.
    snapshot: Option<Arc<shared::Snapshot>>,
    generation: u64,
    /// What the graph holds for each vector ([`GraphVectors`], config `hnsw_vectors`):
    /// for cosine tables the int8 codes of the unit vectors (a quarter of the float32
    /// bytes; older snapshots: binary16, half), for L2 and IP tables the float32 vectors
    /// as stored. Exact distances are recomputed from the stored float32 vectors, so
    /// only the graph walk sees the rounding.
    vectors: GraphVectors,
    ns: Namespaces,
    /// Writes since the pending list was last counted: an upper bound on its growth, so
    /// that `Checkpoint::Write` counts it (an O(pending) query) only when it could be due.
    writes_uncounted: usize,
    /// The pending count when last counted.
    pending_counted: usize,
    /// The in-statement fold still adding its vectors to `index` on a background thread
    /// ([`Ann::fold`]); joined by [`Ann::settle`] before the graph is read, changed,
    /// dropped or saved. At most one at a time.
    folding: Option<std::thread::JoinHandle<Result<()>>>,
    /// The graph's size once `folding` is done.
    folded_size: usize,
    /// Contiguous copies of small vector sets for exact scans.
    blocks: block::Blocks,
    /// The int8 codes of the snapshot's vectors, for exact scans of mid-size tables
    /// ([`quant`]).
    quant: Option<quant::QuantBlock>,
    /// The generation whose first whole-table KNN in this connection walked the graph
    /// instead of reading the int8 block: the block is read from the second on, so a
    /// connection that answers one query and closes never pays for it.
    quant_seen: Option<u64>,
}

impl Drop for Ann {
    fn drop(&mut self) {
        // The graph goes with the table: wait for the fold rather than leave it running.
        // Its error no longer matters (nothing will read this graph).
        let _ = self.settle();
    }
}

impl Default for Ann {
    fn default() -> Self {
        Self::new()
    }
}

fn metric_kind(m: Metric) -> MetricKind {
    match m {
        Metric::Cosine => MetricKind::Cos,
        Metric::L2 => MetricKind::L2sq,
        Metric::Ip => MetricKind::IP,
    }
}

impl Ann {
    /// An empty, unloaded graph.
    pub(crate) fn new() -> Self {
        Ann {
            index: None,
            snapshot: None,
            generation: 0,
            vectors: GraphVectors::Float,
            ns: Namespaces::default(),
            writes_uncounted: 0,
            pending_counted: 0,
            folding: None,
            folded_size: 0,
            blocks: block::Blocks::default(),
            quant: None,
            quant_seen: None,
        }
    }

    /// Waits for the background fold ([`Ann::fold`]), if one runs.
    ///
    /// # Errors
    /// The fold's [`Error::Index`] (usearch refused a vector, or a thread panicked); the
    /// graph is then dropped, and the next use rebuilds it from the stored vectors (the
    /// recorded generation has no stored snapshot yet, see [`Ann::ensure_loaded`]).
    pub(crate) fn settle(&mut self) -> Result<()> {
        let Some(fold) = self.folding.take() else {
            return Ok(());
        };
        let r = fold
            .join()
            .unwrap_or_else(|_| Err(Error::Index("the HNSW fold thread panicked".into())));
        if r.is_err() {
            self.drop_graph();
        }
        r
    }

    /// Adds `items` to the owned graph on a background thread, so the caller's statement
    /// goes on writing rows while the graph takes the vectors (an in-statement fold of a
    /// bulk load: its SQLite work and the graph's insertions overlap on two cores). The
    /// caller has reserved the capacity. Anything that reads the graph joins it first
    /// ([`Ann::settle`]).
    ///
    /// # Errors
    /// [`Error::Index`] when the graph is not loaded or the thread cannot start (then
    /// the items are added here instead).
    pub(super) fn fold(&mut self, items: Vec<(u64, Vec<f32>)>) -> Result<()> {
        self.settle()?;
        let Some(index) = self.index.as_ref().map(Arc::clone) else {
            return Err(Error::Index("graph not loaded".into()));
        };
        self.folded_size = index.size() + items.len();
        let items = Arc::new(items);
        let (index2, items2) = (Arc::clone(&index), Arc::clone(&items));
        match std::thread::Builder::new()
            .name("subcog-fold".into())
            .spawn(move || build::add_parallel(&index2, &items2))
        {
            Ok(handle) => {
                self.folding = Some(handle);
                Ok(())
            }
            Err(_) => build::add_parallel(&index, &items),
        }
    }

    /// A new empty graph holding `vectors` (unit codes for cosine tables only).
    fn new_index(store: &Store, vectors: GraphVectors) -> Result<Index> {
        let o = &store.opts;
        let mut index = Index::new(&IndexOptions {
            dimensions: o.dim,
            metric: metric_kind(o.metric),
            quantization: match vectors {
                GraphVectors::Float => ScalarKind::F32,
                GraphVectors::UnitF16 => ScalarKind::F16,
                GraphVectors::UnitI8 => ScalarKind::I8,
            },
            connectivity: o.m,
            expansion_add: o.ef_construction,
            expansion_search: o.ef_search,
            multi: false,
        })?;
        install_metric(&mut index, o.metric, vectors, o.dim);
        Ok(index)
    }

    /// The vector as the graph takes it: scaled to unit length for a unit graph (usearch
    /// converts it to the graph's scalar type).
    fn graph_vector<'a>(&self, v: &'a [f32]) -> std::borrow::Cow<'a, [f32]> {
        if self.vectors.unit() {
            std::borrow::Cow::Owned(unit_vector(v))
        } else {
            std::borrow::Cow::Borrowed(v)
        }
    }

    /// Drops the in-memory graph; the next search reloads it.
    pub(crate) fn invalidate(&mut self) {
        // The graph is dropped anyway: a failed fold changes nothing.
        let _ = self.settle();
        self.drop_graph();
    }

    /// Drops the graph and its state (the fold, if any, is joined already).
    fn drop_graph(&mut self) {
        self.blocks.clear();
        self.quant = None;
        self.index = None;
        self.snapshot = None;
        self.generation = 0;
        self.ns = Namespaces::default();
    }

    /// Makes the in-memory graph the snapshot of the generation stored in the table.
    ///
    /// When the stored snapshot lags the generation (a checkpoint inside this connection's
    /// open transaction deferred writing it, see [`Ann::maybe_checkpoint`], and the graph
    /// was dropped since), the graph is rebuilt from the stored vectors instead.
    fn ensure_loaded(&mut self, store: &Store) -> Result<()> {
        self.settle()?;
        let (g, saved) = store.snapshot_state_kept()?;
        if self.loaded() && self.generation == g {
            return Ok(());
        }
        self.invalidate();
        if saved != g {
            return self.rebuild(store);
        }
        let vectors = if g == 0 {
            GraphVectors::for_new_graph(store.opts.metric)
        } else if store.opts.metric == Metric::Cosine {
            store.hnsw_vectors()?
        } else {
            GraphVectors::Float
        };
        if g != 0 {
            let key = shared::SnapshotKey::new(&store.database_file()?, &store.table, g);
            let snapshot = shared::snapshot(key, || store.hnsw_blob())?;
            if !snapshot.bytes().is_empty() {
                // A first view now: bytes that do not load fail here, and it gives the
                // snapshot its node count.
                snapshot.with_view(|b| Self::view_of(store, vectors, b), |_| ())?;
                self.snapshot = Some(snapshot);
                self.vectors = vectors;
                self.generation = g;
                return Ok(());
            }
        }
        self.index = Some(Arc::new(Self::new_index(store, vectors)?));
        self.vectors = vectors;
        self.generation = g;
        Ok(())
    }

    /// A zero-copy usearch view of the snapshot `bytes` (usearch `view_from_buffer`)
    /// searching with the table's metric over a graph holding `vectors`.
    /// Only [`shared::Snapshot::with_view`] calls it, with the bytes it keeps.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the bytes do not load; usearch errors.
    fn view_of(store: &Store, vectors: GraphVectors, bytes: &[u8]) -> Result<Index> {
        let mut index = Self::new_index(store, vectors)?;
        // SAFETY: `bytes` are a `shared::Snapshot`'s, which keeps this view in its idle
        // list or lends it for one search borrowing the snapshot, and drops every view
        // before the bytes (field order); the bytes are never written after the
        // snapshot is made.
        unsafe { index.view_from_buffer(bytes) }.map_err(|e| {
            Error::Corrupt(format!(
                "memories table {}: the HNSW snapshot in {}_hnsw does not load ({}); \
                 rebuild it with INSERT INTO {}({}) VALUES ('rebuild')",
                store.table,
                store.table,
                e.what(),
                store.table,
                store.table
            ))
        })?;
        // Loading restores the built-in metric; use ours. (The search expansion is set by
        // each borrower: `Ann::with_graph`.)
        install_metric(&mut index, store.opts.metric, vectors, store.opts.dim);
        Ok(index)
    }

    /// Whether a graph is loaded (the snapshot's, or an own one).
    fn loaded(&self) -> bool {
        self.index.is_some() || self.snapshot.is_some()
    }

    /// The number of nodes of the loaded graph (0 when none is).
    fn graph_size(&self) -> usize {
        match (&self.index, &self.snapshot) {
            (Some(index), _) => index.size(),
            (None, Some(snapshot)) => snapshot.nodes().unwrap_or(0),
            (None, None) => 0,
        }
    }

    /// `f` on the loaded graph, its search expansion set to `ef` first: the own graph,
    /// or a view of the snapshot no other search uses meanwhile (a view keeps the `ef` of
    /// whoever borrowed it last, so every borrower sets its own). `None` when no graph
    /// is loaded.
    ///
    /// # Errors
    /// Making a new view of the snapshot ([`Ann::view_of`]).
    fn with_graph<R>(
        &self,
        store: &Store,
        ef: usize,
        f: impl FnOnce(&Index) -> R,
    ) -> Result<Option<R>> {
        let run = |index: &Index| {
            if index.expansion_search() != ef {
                index.change_expansion_search(ef);
            }
            f(index)
        };
        if let Some(index) = &self.index {
            return Ok(Some(run(index)));
        }
        let Some(snapshot) = &self.snapshot else {
            return Ok(None);
        };
        let vectors = self.vectors;
        snapshot
            .with_view(|b| Self::view_of(store, vectors, b), run)
            .map(Some)
    }

    /// Copies the snapshot into an own graph that takes additions.
    fn thaw(&mut self, store: &Store) -> Result<()> {
        let Some(snapshot) = self.snapshot.take() else {
            return Ok(());
        };
        let mut index = Self::new_index(store, self.vectors)?;
        let r = index.load_from_buffer(snapshot.bytes());
        if let Err(e) = r {
            self.invalidate();
            return Err(Error::Index(format!(
                "reloading the HNSW snapshot: {}",
                e.what()
            )));
        }
        index.change_expansion_search(store.opts.ef_search);
        install_metric(&mut index, store.opts.metric, self.vectors, store.opts.dim);
        self.index = Some(Arc::new(index));
        Ok(())
    }

    /// Exact KNN over a set of at most `exact_max` stored vectors (the table, or one
    /// namespace; about `n` of them), scanned from its contiguous block
    /// ([`block::Blocks`]: kept between queries while nothing changed), or streamed from
    /// the rows when a block of `n` vectors would pass the blocks' memory bound. Ids in
    /// `skip` (superseded memories, when known) are left out.
    fn exact_small(
        &mut self,
        store: &Store,
        query: &[f32],
        k: usize,
        namespace: Option<&str>,
        n: usize,
        skip: Option<&HashSet<u64>>,
    ) -> Result<Vec<Hit>> {
        let dim = store.opts.dim;
        let metric = store.opts.metric;
        if !block::fits(n, dim, metric) {
            let mut hits = Self::exact(
                store,
                query,
                k.saturating_add(skip.map_or(0, HashSet::len)),
                namespace,
            )?;
            if let Some(skip) = skip {
                hits.retain(|(id, _)| !skip.contains(&(*id as u64)));
            }
            hits.truncate(k);
            return Ok(hits);
        }
        self.blocks.with(store, namespace, |b| {
            let keep = |id: i64| skip.is_none_or(|s| !s.contains(&(id as u64)));
            if metric == Metric::Cosine {
                if let Some(codes) = b.codes(dim) {
                    let hidden = skip.map(|s| b.hidden(s));
                    let hits = codes
                        .candidates(query, k, |i| {
                            hidden.is_some_and(|h| h.get(i).copied().unwrap_or(true))
                        })
                        .into_iter()
                        .filter_map(|i| {
                            let v = b.vecs.get(i * dim..(i + 1) * dim)?;
                            Some((*b.ids.get(i)?, metric.distance(query, v)))
                        })
                        .collect();
                    return top_k(hits, k);
                }
                return screened_block_scan(query, k, &b.ids, &b.vecs, dim, |_, id| keep(id));
            }
            let mut scan = ExactScan::new(metric, query, k);
            for (id, v) in b.ids.iter().zip(b.vecs.chunks_exact(dim.max(1))) {
                if keep(*id) {
                    scan.offer(*id, v);
                }
            }
            scan.finish()
        })
    }

    /// Exact KNN of the whole table (cosine, a snapshot of at most `scan_max` vectors) from the int8 block of the snapshot's vectors ([`quant`]): the ids whose
    /// proven bound can reach the top `k`, their exact distances from their rows, and the
    /// pending ids' vectors scanned exactly, as beside the graph. `None` when the block of
    /// this generation is not read yet and cannot be now (inside a transaction), or on the
    /// first such query of the generation in this connection: then the graph answers.
    ///
    /// # Errors
    /// SQLite errors.
    fn quant_scan(
        &mut self,
        store: &Store,
        query: &[f32],
        k: usize,
        pending: &Rc<HashSet<i64>>,
        superseded: Option<&Arc<HashSet<u64>>>,
    ) -> Result<Option<Vec<Hit>>> {
        let g = self.generation;
        if self.quant.as_ref().is_none_or(|b| b.generation != g) {
            self.quant = None;
            if store.change_key()?.is_none() {
                return Ok(None);
            }
            if self.quant_seen != Some(g) {
                self.quant_seen = Some(g);
                return Ok(None);
            }
            self.quant = Some(quant::QuantBlock::read(store, g, pending)?);
        }
        let Some(block) = self.quant.as_mut() else {
            return Ok(None);
        };
        let ids = block.candidates(query, k, pending, superseded);
        let (metric, dim) = (store.opts.metric, store.opts.dim);
        let mut hits: Vec<Hit> = Vec::with_capacity(ids.len() + k);
        store.vectors_of(&ids, |id, blob| {
            if let Some(v) = vector::decode_stored(blob, dim) {
                hits.push((id, metric.distance(query, &v)));
            }
        })?;
        hits.extend(self.pending_hits(store, query, k, None, superseded, pending)?);
        Ok(Some(top_k(hits, k)))
    }

    /// The `k` pending ids nearest to `query` (of `namespace` when given), exactly:
    /// scanned from the pending block ([`block::Blocks::with_pending`], kept between
    /// queries while nothing changed, as the small tables' blocks: on a cosine table its
    /// int8 codes give the few ids that can be among the `k` ([`quant::Codes`]) and their
    /// rows the exact distances), or streamed from their rows inside a transaction or
    /// past the block's memory bound. Ids in
    /// `superseded` are left out when scanning the block (as the graph walk leaves them
    /// out); the rows' stream keeps them for the caller to drop. Distances are
    /// [`Metric::distance`]'s, as for every other hit.
    ///
    /// # Errors
    /// SQLite errors.
    fn pending_hits(
        &mut self,
        store: &Store,
        query: &[f32],
        k: usize,
        namespace: Option<&str>,
        superseded: Option<&Arc<HashSet<u64>>>,
        pending: &HashSet<i64>,
    ) -> Result<Vec<Hit>> {
        if pending.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let (metric, dim) = (store.opts.metric, store.opts.dim);
        // Exact hits (float32 block), or the candidates whose exact distance comes from
        // their rows (int8 codes).
        let scanned = self
            .blocks
            .with_pending(store, |b| -> Result<Vec<Hit>, Vec<i64>> {
                let want = b.namespace(namespace);
                if want == Some(None) {
                    return Ok(Vec::new());
                }
                let keep = |i: usize| {
                    want.is_none_or(|w| Some(b.ns[i]) == w)
                        && superseded.is_none_or(|s| !s.contains(&(b.ids[i] as u64)))
                };
                if let Some(codes) = &b.codes {
                    return Err(codes
                        .candidates(query, k, |i| !keep(i))
                        .into_iter()
                        .map(|i| b.ids[i])
                        .collect());
                }
                let mut scan = ExactScan::new(metric, query, k);
                for (i, v) in b.vecs.chunks_exact(dim.max(1)).enumerate() {
                    if keep(i) {
                        scan.offer(b.ids[i], v);
                    }
                }
                Ok(scan.finish())
            })?;
        match scanned {
            Some(Ok(hits)) => return Ok(hits),
            Some(Err(ids)) => {
                let mut hits: Vec<Hit> = Vec::with_capacity(ids.len());
                store.vectors_of(&ids, |id, blob| {
                    if let Some(v) = vector::decode_stored(blob, dim) {
                        hits.push((id, metric.distance(query, &v)));
                    }
                })?;
                return Ok(top_k(hits, k));
            }
            None => {}
        }
        let mut hits: Vec<Hit> = Vec::new();
        store.pending_vectors_in(namespace, |id, blob| {
            if let Some(v) = vector::decode_stored(blob, dim) {
                hits.push((id, metric.distance(query, &v)));
            }
        })?;
        Ok(hits)
    }

    /// Exact KNN by scanning stored vectors, optionally of one namespace.
    pub(crate) fn exact(
        store: &Store,
        query: &[f32],
        k: usize,
        namespace: Option<&str>,
    ) -> Result<Vec<Hit>> {
        let mut scan = ExactScan::new(store.opts.metric, query, k);
        let mut v = vec![0f32; store.opts.dim];
        store.scan_vectors(namespace, |id, blob| {
            if vector::decode_into(blob, &mut v) {
                scan.offer(id, &v);
            }
        })?;
        Ok(scan.finish())
    }

    /// KNN of `query` (`dim` float32) among the table's vectors: up to `k` `(id, distance)`
    /// pairs, nearest first, ties by id. Exact when the searched set has at most
    /// `exact_max` vectors, otherwise HNSW plus the pending ids (see the module docs).
    ///
    /// # Errors
    /// SQLite errors, or [`Error::Index`] from usearch.
    pub(crate) fn search(
        &mut self,
        store: &Store,
        query: &[f32],
        k: usize,
        namespace: Option<&str>,
    ) -> Result<Vec<Hit>> {
        self.search_ef(store, query, k, namespace, store.opts.ef_search, false)
    }

    /// [`Ann::search`] for a KNN that returns visible memories only: its graph walk also
    /// skips superseded memories when this connection keeps their ids (outside
    /// transactions, [`block::Superseded`]), so they do not take the places of visible
    /// ones; the caller still drops hidden rows (expired ones, and superseded ones the
    /// walk could not skip).
    ///
    /// # Errors
    /// As [`Ann::search`].
    pub(crate) fn search_visible(
        &mut self,
        store: &Store,
        query: &[f32],
        k: usize,
        namespace: Option<&str>,
    ) -> Result<Vec<Hit>> {
        self.search_ef(store, query, k, namespace, store.opts.ef_search, true)
    }

    /// [`Ann::search`] with the graph walk's candidate list `ef` instead of the table's
    /// `ef_search` (raised to the candidates wanted). The near-duplicate check of an
    /// INSERT uses a short list: a vector at cosine >= 0.9 of the query is found by the
    /// first steps of the walk, and the check runs on every INSERT.
    ///
    /// # Errors
    /// As [`Ann::search`].
    pub(crate) fn search_ef(
        &mut self,
        store: &Store,
        query: &[f32],
        k: usize,
        namespace: Option<&str>,
        ef: usize,
        skip_superseded: bool,
    ) -> Result<Vec<Hit>> {
        if k == 0 {
            return Ok(Vec::new());
        }
        // A small namespace is scanned exactly without touching the graph. Counting is
        // capped (an exact count reads the whole namespace on every search): past the cap
        // only "more than exact_max and more than k" matters.
        let cap = store.opts.exact_max.max(k).saturating_add(1);
        let ns_count = match namespace {
            Some(ns) => Some(store.count_capped(ns, cap)?),
            None => None,
        };
        let superseded = if skip_superseded {
            store.superseded_kept()?
        } else {
            None
        };
        if let Some(n) = ns_count.filter(|n| *n <= store.opts.exact_max) {
            return self.exact_small(store, query, k, namespace, n, superseded.as_deref());
        }
        self.ensure_loaded(store)?;
        let pending = store.pending_kept()?;
        if self.ns.loaded {
            self.ns.resolve(store, &pending)?;
        }
        let searched = ns_count.unwrap_or_else(|| self.graph_size() + pending.len());
        if searched <= store.opts.exact_max {
            return self.exact_small(store, query, k, namespace, searched, superseded.as_deref());
        }
        if !self.loaded() {
            return Self::exact(store, query, k, namespace);
        }
        if namespace.is_none()
            && store.opts.metric == Metric::Cosine
            && searched <= store.opts.scan_max
            && self.generation != 0
            && let Some(hits) = self.quant_scan(store, query, k, &pending, superseded.as_ref())?
        {
            return Ok(hits);
        }
        if namespace.is_some() && !self.ns.loaded {
            self.ns.load(store, &pending)?;
        }
        let ns_filter: Option<Option<u32>> = namespace.map(|ns| self.ns.ids.get(ns).copied());
        let gq = self.graph_vector(query);
        let mut hits: Vec<Hit> = Vec::new();
        if self.graph_size() > 0 && ns_filter != Some(None) {
            // A graph of int8 or binary16 codes cannot order vectors closer than its
            // rounding: take twice k (at least k + 10) candidates and let the exact
            // distances decide.
            let candidates = if self.vectors.unit() {
                (2 * k).max(k + 10)
            } else {
                k
            };
            let ef = ef.max(candidates);
            let ns_of = &self.ns.of;
            let walk = self.with_graph(store, ef, |index| {
                index.filtered_search(&gq, candidates, |key: u64| {
                    !pending.contains(&(key as i64))
                        && superseded.as_ref().is_none_or(|s| !s.contains(&key))
                        && match ns_filter {
                            None => true,
                            Some(want) => ns_of.get(&key).copied() == want,
                        }
                })
            })?;
            let Some(matches) = walk else {
                return Self::exact(store, query, k, namespace);
            };
            let matches = matches?;
            // Exact distances from the stored vectors, so both paths rank alike.
            let ids: Vec<i64> = matches.keys.iter().map(|&key| key as i64).collect();
            let (metric, dim) = (store.opts.metric, store.opts.dim);
            store.vectors_of(&ids, |id, blob| {
                if let Some(v) = vector::decode_stored(blob, dim) {
                    hits.push((id, metric.distance(query, &v)));
                }
            })?;
        }
        hits.extend(self.pending_hits(
            store,
            query,
            k,
            namespace,
            superseded.as_ref(),
            &pending,
        )?);
        let hits = top_k(hits, k);
        if hits.len() < k.min(searched) {
            // The filter starved the graph walk: fall back to an exact scan.
            return Self::exact(store, query, k, namespace);
        }
        Ok(hits)
    }

    /// Graph candidates for a batch of near-duplicate checks ([`crate::table::dedup`]): for each
    /// `(namespace, query)`, the ids of that namespace the graph walk (candidate list `ef`,
    /// at most `k` results) puts within `max_distance` of the query by graph distance
    /// (plus the codes' rounding), nearest first. Pending ids are skipped: the caller
    /// compares the pending vectors itself, exactly. The walks run on [`crate::settings::index_threads`]
    /// threads. Unlike [`Ann::search`] this never scans a namespace exactly, so a check
    /// costs a short walk whatever the table's size, and it is approximate only there.
    ///
    /// # Errors
    /// SQLite errors, or [`Error::Index`] from usearch.
    pub(crate) fn graph_candidates(
        &mut self,
        store: &Store,
        queries: &[(&str, &[f32])],
        k: usize,
        ef: usize,
        max_distance: f32,
    ) -> Result<Vec<Vec<i64>>> {
        let none = || vec![Vec::new(); queries.len()];
        self.ensure_loaded(store)?;
        let size = self.graph_size();
        if size == 0 {
            return Ok(none());
        }
        let pending: HashSet<i64> = store.pending_ids()?.into_iter().collect();
        if self.ns.loaded {
            self.ns.resolve(store, &pending)?;
        } else {
            self.ns.load(store, &pending)?;
        }
        let ef = ef.max(k);
        // The codes' rounding: binary16 moves 1 - a.b by far less than 0.01 at 384-d;
        // int8 codes (`trunc(127 u_i)`) moved it by at most 0.0103 (mean +0.0028) over
        // 34,160 pairs of MiniLM vectors with cosine >= 0.9 (BENCHMARKS.md): twice that.
        let limit = max_distance
            + match self.vectors {
                GraphVectors::Float => 0.0,
                GraphVectors::UnitF16 => 0.01,
                GraphVectors::UnitI8 => 0.02,
            };
        let jobs: Vec<(Option<u32>, std::borrow::Cow<'_, [f32]>)> = queries
            .iter()
            .map(|(ns, q)| (self.ns.ids.get(*ns).copied(), self.graph_vector(q)))
            .collect();
        let of = &self.ns.of;
        // Every node in one namespace (a table without namespaces, a bulk load): the plain
        // walk visits the same nodes without calling the filter per node; its few pending
        // hits are dropped after it (the caller compares pending vectors exactly anyway).
        let one_namespace = self.ns.ids.len() == 1 && of.len() == size;
        let walks = self.with_graph(store, ef, |index| {
            par_map(&jobs, |(want, gq)| -> Result<Vec<i64>> {
                let Some(want) = *want else {
                    return Ok(Vec::new());
                };
                let keep = |key: u64| -> bool {
                    !pending.contains(&(key as i64)) && of.get(&key).copied() == Some(want)
                };
                let m = if one_namespace {
                    let mut m = index.search(gq, k)?;
                    let (keys, distances): (Vec<u64>, Vec<f32>) = m
                        .keys
                        .iter()
                        .zip(&m.distances)
                        .filter(|(key, _)| keep(**key))
                        .map(|(key, d)| (*key, *d))
                        .unzip();
                    (m.keys, m.distances) = (keys, distances);
                    m
                } else {
                    index.filtered_search(gq, k, keep)?
                };
                Ok(m.keys
                    .iter()
                    .zip(&m.distances)
                    .filter(|(_, d)| **d <= limit)
                    .map(|(key, _)| *key as i64)
                    .collect())
            })
        })?;
        walks.unwrap_or_else(|| Ok(none()))
    }
}

/// Exact cosine KNN over a block of vectors (`ids.len()` ids, `vecs`: `ids.len() * dim`
/// float32), vectors for which `keep(position, id)` is false left out: up to `k` `(id, distance)` pairs,
/// nearest first, ties by id, the distances [`Metric::distance`]'s.
///
/// Two passes: the float32 SIMD screen ([`vector::cosine_screen`], within `m` =
/// [`vector::cosine_screen_margin`] of the exact distance) of every vector, then the
/// exact distance only of the vectors whose screen is at most `s_k + 2m`, `s_k` the k-th
/// smallest screen (and of those the screen cannot bound). Exact: the k vectors of the
/// smallest screens have exact distances at most `s_k + m`, so the k-th exact distance
/// `d_k <= s_k + m`; a vector with screen above `s_k + 2m` has an exact distance above
/// `s_k + m >= d_k`, so it is not among the k nearest, nor tied with the k-th. About k
/// exact distances per query instead of one per new best of a streaming scan.
fn screened_block_scan(
    query: &[f32],
    k: usize,
    ids: &[i64],
    vecs: &[f32],
    dim: usize,
    keep: impl Fn(usize, i64) -> bool,
) -> Vec<Hit> {
    if k == 0 || dim == 0 {
        return Vec::new();
    }
    let screen = vector::cosine_screen();
    let margin = vector::cosine_screen_margin(query.len());
    // Screens, NaN where the screen cannot bound (or the id is left out: never kept below).
    let mut screens: Vec<f32> = Vec::with_capacity(ids.len());
    for (i, (id, v)) in ids.iter().zip(vecs.chunks_exact(dim)).enumerate() {
        let s = if keep(i, *id) {
            screen(query, v).unwrap_or(f32::NEG_INFINITY)
        } else {
            f32::NAN
        };
        screens.push(s);
    }
    let mut finite: Vec<f32> = screens.iter().copied().filter(|s| s.is_finite()).collect();
    let limit = if finite.len() > k {
        let (_, kth, _) = finite.select_nth_unstable_by(k - 1, f32::total_cmp);
        // (f32 rounding of this sum is far below the margin's factor-2 slack)
        *kth + 2.0 * margin
    } else {
        f32::INFINITY
    };
    let metric = Metric::Cosine;
    let mut hits: Vec<Hit> = Vec::with_capacity(k.saturating_mul(2));
    for ((id, v), s) in ids.iter().zip(vecs.chunks_exact(dim)).zip(&screens) {
        // NaN (left out) fails both tests; -inf (unbounded) passes.
        if *s <= limit {
            hits.push((*id, metric.distance(query, v)));
        }
    }
    top_k(hits, k)
}

/// An exact KNN scan, one vector at a time. On a cosine table each vector is screened
/// by the float32 SIMD distance ([`vector::cosine_screen`]), and the exact one (f64,
/// [`Metric::distance`]) is computed only when the screen puts it within its error margin
/// of the k-th best exact distance so far. A vector skipped is farther than that k-th
/// distance, which only falls, so it is not among the final k: exact results at a
/// fraction of the f64 arithmetic. Other metrics compute every exact distance.
struct ExactScan<'q> {
    metric: Metric,
    query: &'q [f32],
    k: usize,
    /// The screen and its error margin (cosine tables).
    screen: Option<(vector::ScreenFn, f32)>,
    kth: std::collections::BinaryHeap<(Far, i64)>,
    hits: Vec<Hit>,
}

impl<'q> ExactScan<'q> {
    fn new(metric: Metric, query: &'q [f32], k: usize) -> Self {
        let screen = (metric == Metric::Cosine).then(|| {
            (
                vector::cosine_screen(),
                vector::cosine_screen_margin(query.len()),
            )
        });
        ExactScan {
            metric,
            query,
            k,
            screen,
            kth: std::collections::BinaryHeap::with_capacity(k.saturating_add(1).min(4096)),
            hits: Vec::new(),
        }
    }

    fn offer(&mut self, id: i64, v: &[f32]) {
        if self.k == 0 {
            return;
        }
        if let (Some((screen, margin)), Some((Far(worst), _))) = (self.screen, self.kth.peek())
            && self.kth.len() >= self.k
            && screen(self.query, v).is_some_and(|d| d > worst + margin)
        {
            return;
        }
        let d = self.metric.distance(self.query, v);
        self.hits.push((id, d));
        if self.screen.is_some() {
            self.kth.push((Far(d), id));
            if self.kth.len() > self.k {
                self.kth.pop();
            }
        }
    }

    fn finish(self) -> Vec<Hit> {
        top_k(self.hits, self.k)
    }
}

/// A distance ordered by `f32::total_cmp`, for the exact scan's heap of the k best.
#[derive(Clone, Copy, PartialEq)]
struct Far(f32);

impl Eq for Far {}

impl PartialOrd for Far {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Far {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// `v / |v|` (`v` unchanged when its norm is 0; cosine tables reject zero vectors).
fn unit_vector(v: &[f32]) -> Vec<f32> {
    let n = vector::norm(v);
    if n > 0.0 {
        v.iter().map(|x| x / n).collect()
    } else {
        v.to_vec()
    }
}

/// Makes the graph compute distances with our kernels (SIMD chosen at run time; usearch
/// built without its SIMD kernels computes them with scalar code): `1 - a.b` over
/// binary16 and the cosine of the int8 codes for unit graphs, else
/// [`Metric::graph_distance`] over float32.
fn install_metric(index: &mut Index, metric: Metric, vectors: GraphVectors, dim: usize) {
    if vectors == GraphVectors::UnitI8 {
        let f = vector::i8_cos_distance();
        index.change_metric::<i8>(Box::new(move |a: *const i8, b: *const i8| {
            // SAFETY: usearch passes two vectors of the index's `dim` int8 codes (the index
            // is I8: `new_index`).
            let (a, b) = unsafe {
                (
                    std::slice::from_raw_parts(a, dim),
                    std::slice::from_raw_parts(b, dim),
                )
            };
            f(a, b)
        }));
        return;
    }
    if vectors == GraphVectors::UnitF16 {
        let f = vector::half_ip_distance();
        index.change_metric::<usearch::f16>(Box::new(
            move |a: *const usearch::f16, b: *const usearch::f16| {
                // SAFETY: usearch passes two vectors of the index's `dim` binary16 values
                // (the index is F16: `new_index`); `usearch::f16` is a transparent i16.
                let (a, b) = unsafe {
                    (
                        std::slice::from_raw_parts(a as *const u16, dim),
                        std::slice::from_raw_parts(b as *const u16, dim),
                    )
                };
                f(a, b)
            },
        ));
        return;
    }
    let f = metric.graph_distance();
    index.change_metric::<f32>(Box::new(move |a: *const f32, b: *const f32| {
        // SAFETY: usearch passes two vectors of the index's `dim` float32 values (the
        // index is F32: `new_index`).
        let (a, b) = unsafe {
            (
                std::slice::from_raw_parts(a, dim),
                std::slice::from_raw_parts(b, dim),
            )
        };
        f(a, b)
    }));
}

/// The `k` nearest of `hits`, nearest first, ties broken by id.
pub fn top_k(mut hits: Vec<Hit>, k: usize) -> Vec<Hit> {
    hits.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    hits.truncate(k);
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_and_breaks_ties_by_id() {
        let h = top_k(vec![(3, 0.5), (1, 0.5), (2, 0.1), (4, 0.9)], 3);
        assert_eq!(h, vec![(2, 0.1), (1, 0.5), (3, 0.5)]);
    }
}
