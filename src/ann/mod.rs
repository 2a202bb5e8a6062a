//! Nearest-neighbour search that is exactly as consistent as the table.
//!
//! The HNSW graph (usearch) lives in memory, one copy per connection, loaded from the
//! snapshot in `<table>_hnsw`. It is never trusted on its own:
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

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use crate::error::{Error, Result};
use crate::store::Store;
use crate::vector::{self, Metric};

/// When a checkpoint is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// At COMMIT (xSync): when the pending list exceeds `max(1024, size / 8)`, so that
    /// searches scan at most that many vectors exactly.
    Commit,
    /// Inside a statement (xUpdate): only when the pending list exceeds
    /// `max(16384, size / 2)`, so a bulk load in one transaction rewrites the snapshot a
    /// few times instead of every thousand rows.
    Write,
    /// After a batch of near-duplicate checks ([`crate::table::dedup`], inside a statement or at
    /// COMMIT): when the pending list reaches [`WRITE_SEARCHED_PENDING`].
    WriteSearched,
    /// Now (`'optimize'`).
    Force,
}

/// Pending ids at which [`Checkpoint::WriteSearched`] folds them into the graph: every
/// batch of near-duplicate checks compares the pending vectors exactly, so this bounds
/// that scan; a fold of this many costs the same graph insertions as one large fold later
/// (plus one reachability check each), and the snapshot write stays deferred to COMMIT.
pub const WRITE_SEARCHED_PENDING: usize = 128;

/// One neighbour: `(id, distance)`.
pub type Hit = (i64, f32);

/// The in-memory HNSW graph of one table on one connection.
pub struct Ann {
    /// Declared before `view`: dropped first, as it may point into it.
    index: Option<Index>,
    /// The snapshot bytes `index` is a zero-copy view of (usearch `view_from_buffer`),
    /// until the first checkpoint turns the view into an owned, writable graph.
    view: Option<Vec<u8>>,
    generation: u64,
    /// The graph holds unit-length binary16 copies of the vectors and compares them by
    /// `1 - a.b` (cosine tables whose snapshot was built so: config `hnsw_vectors` =
    /// `unit_f16`): half the bytes to load and a third of the arithmetic of a float32
    /// cosine. Exact distances are recomputed from the stored float32 vectors, so only
    /// the graph walk sees the rounding (relative 2^-11). Otherwise (L2 and IP tables,
    /// snapshots of older versions) it holds the float32 vectors as stored.
    unit: bool,
    ns: Namespaces,
    /// Writes since the pending list was last counted: an upper bound on its growth, so
    /// that `Checkpoint::Write` counts it (an O(pending) query) only when it could be due.
    writes_uncounted: usize,
    /// The pending count when last counted.
    pending_counted: usize,
}

/// The namespace of each id in the snapshot, for filtering during the graph walk.
///
/// For an id that is not pending, the snapshot's namespace is the row's current one (the
/// invariant), so it is read from `<table>_content`. Ids pending when the map was built
/// may carry another namespace than the snapshot's; they are `unknown` and are read again
/// once they stop being pending without a checkpoint (their change was rolled back).
#[derive(Default)]
struct Namespaces {
    /// Whether the map was built; it is built by the first namespace-filtered search,
    /// so loading the graph does not read every row's namespace.
    loaded: bool,
    of: HashMap<u64, u32>,
    ids: HashMap<String, u32>,
    unknown: HashSet<i64>,
}

impl Namespaces {
    fn set(&mut self, id: i64, ns: String) {
        let next = self.ids.len() as u32;
        let n = *self.ids.entry(ns).or_insert(next);
        self.of.insert(id as u64, n);
        self.unknown.remove(&id);
    }

    /// Rebuilds the map from the table, given the pending ids at this moment.
    fn load(&mut self, store: &Store, pending: &HashSet<i64>) -> Result<()> {
        *self = Namespaces::default();
        self.loaded = true;
        for (id, ns) in store.namespaces()? {
            if !pending.contains(&id) {
                self.set(id, ns);
            }
        }
        self.unknown = pending.clone();
        Ok(())
    }

    /// Reads the namespace of ids that were pending at load and no longer are.
    fn resolve(&mut self, store: &Store, pending: &HashSet<i64>) -> Result<()> {
        let settled: Vec<i64> = self
            .unknown
            .iter()
            .filter(|id| !pending.contains(id))
            .copied()
            .collect();
        for id in settled {
            self.unknown.remove(&id);
            self.of.remove(&(id as u64));
            if let Some(row) = store.get(id)? {
                self.set(id, row.namespace);
            }
        }
        Ok(())
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

fn random_generation() -> u64 {
    // RandomState is seeded from the OS; a zero generation means "no snapshot".
    RandomState::new().hash_one(std::time::SystemTime::now()) | 1
}

impl Ann {
    /// An empty, unloaded graph.
    pub fn new() -> Self {
        Ann {
            index: None,
            view: None,
            generation: 0,
            unit: false,
            ns: Namespaces::default(),
            writes_uncounted: 0,
            pending_counted: 0,
        }
    }

    /// A new empty graph; `unit`: holds unit binary16 vectors compared by `1 - a.b`
    /// (cosine only), else float32 under the table's metric.
    fn new_index(store: &Store, unit: bool) -> Result<Index> {
        let o = &store.opts;
        let mut index = Index::new(&IndexOptions {
            dimensions: o.dim,
            metric: metric_kind(o.metric),
            quantization: if unit {
                ScalarKind::F16
            } else {
                ScalarKind::F32
            },
            connectivity: o.m,
            expansion_add: o.ef_construction,
            expansion_search: o.ef_search,
            multi: false,
        })?;
        install_metric(&mut index, o.metric, unit, o.dim);
        Ok(index)
    }

    /// The vector as the graph holds it: scaled to unit length when [`Ann::unit`].
    fn graph_vector<'a>(&self, v: &'a [f32]) -> std::borrow::Cow<'a, [f32]> {
        if self.unit {
            std::borrow::Cow::Owned(unit_vector(v))
        } else {
            std::borrow::Cow::Borrowed(v)
        }
    }

    /// Drops the in-memory graph; the next search reloads it.
    pub fn invalidate(&mut self) {
        self.index = None;
        self.view = None;
        self.generation = 0;
        self.ns = Namespaces::default();
    }

    /// Makes the in-memory graph the snapshot of the generation stored in the table.
    ///
    /// When the stored snapshot lags the generation (a checkpoint inside this connection's
    /// open transaction deferred writing it, see [`Ann::maybe_checkpoint`], and the graph
    /// was dropped since), the graph is rebuilt from the stored vectors instead.
    fn ensure_loaded(&mut self, store: &Store) -> Result<()> {
        let (g, saved) = store.snapshot_state()?;
        if self.index.is_some() && self.generation == g {
            return Ok(());
        }
        self.invalidate();
        if saved != g {
            return self.rebuild(store);
        }
        let unit = g != 0 && store.opts.metric == Metric::Cosine && store.hnsw_unit()?;
        let unit = unit || (g == 0 && store.opts.metric == Metric::Cosine);
        let mut index = Self::new_index(store, unit)?;
        let mut view = None;
        if g != 0 {
            let blob = store.hnsw_blob()?;
            if !blob.is_empty() {
                // SAFETY: `blob` is kept in `self.view` for as long as `index` lives
                // (`index` is dropped first: field order, `invalidate`, `thaw`), and a
                // Vec's heap buffer does not move when the Vec does.
                unsafe { index.view_from_buffer(&blob) }.map_err(|e| {
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
                // Loading restores the saved search expansion and the built-in metric;
                // use the table's and ours.
                index.change_expansion_search(store.opts.ef_search);
                install_metric(&mut index, store.opts.metric, unit, store.opts.dim);
                view = Some(blob);
            }
        }
        self.index = Some(index);
        self.view = view;
        self.unit = unit;
        self.generation = g;
        Ok(())
    }

    /// Turns a zero-copy view of the snapshot into an owned graph that takes additions.
    fn thaw(&mut self, store: &Store) -> Result<()> {
        let Some(buf) = self.view.take() else {
            return Ok(());
        };
        self.index = None;
        let mut index = Self::new_index(store, self.unit)?;
        let r = index.load_from_buffer(&buf);
        if let Err(e) = r {
            self.invalidate();
            return Err(Error::Index(format!(
                "reloading the HNSW snapshot: {}",
                e.what()
            )));
        }
        index.change_expansion_search(store.opts.ef_search);
        install_metric(&mut index, store.opts.metric, self.unit, store.opts.dim);
        self.index = Some(index);
        Ok(())
    }

    /// Exact KNN by scanning stored vectors, optionally of one namespace.
    pub fn exact(
        store: &Store,
        query: &[f32],
        k: usize,
        namespace: Option<&str>,
    ) -> Result<Vec<Hit>> {
        let metric = store.opts.metric;
        let dim = store.opts.dim;
        let mut hits: Vec<Hit> = Vec::new();
        store.scan_vectors(namespace, |id, blob| {
            if let Some(v) = vector::decode_stored(blob, dim) {
                hits.push((id, metric.distance(query, &v)));
            }
        })?;
        Ok(top_k(hits, k))
    }

    /// KNN of `query` (`dim` float32) among the table's vectors: up to `k` `(id, distance)`
    /// pairs, nearest first, ties by id. Exact when the searched set has at most
    /// `exact_max` vectors, otherwise HNSW plus the pending ids (see the module docs).
    ///
    /// # Errors
    /// SQLite errors, or [`Error::Index`] from usearch.
    pub fn search(
        &mut self,
        store: &Store,
        query: &[f32],
        k: usize,
        namespace: Option<&str>,
    ) -> Result<Vec<Hit>> {
        self.search_ef(store, query, k, namespace, store.opts.ef_search)
    }

    /// [`Ann::search`] with the graph walk's candidate list `ef` instead of the table's
    /// `ef_search` (raised to the candidates wanted). The near-duplicate check of an
    /// INSERT uses a short list: a vector at cosine >= 0.9 of the query is found by the
    /// first steps of the walk, and the check runs on every INSERT.
    ///
    /// # Errors
    /// As [`Ann::search`].
    pub fn search_ef(
        &mut self,
        store: &Store,
        query: &[f32],
        k: usize,
        namespace: Option<&str>,
        ef: usize,
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
        if ns_count.is_some_and(|n| n <= store.opts.exact_max) {
            return Self::exact(store, query, k, namespace);
        }
        self.ensure_loaded(store)?;
        let pending: HashSet<i64> = store.pending_ids()?.into_iter().collect();
        if self.ns.loaded {
            self.ns.resolve(store, &pending)?;
        }
        let searched =
            ns_count.unwrap_or_else(|| self.index.as_ref().map_or(0, |i| i.size()) + pending.len());
        if searched <= store.opts.exact_max {
            return Self::exact(store, query, k, namespace);
        }
        let Some(index) = self.index.as_ref() else {
            return Self::exact(store, query, k, namespace);
        };
        if namespace.is_some() && !self.ns.loaded {
            self.ns.load(store, &pending)?;
        }
        let ns_filter: Option<Option<u32>> = namespace.map(|ns| self.ns.ids.get(ns).copied());
        let gq = self.graph_vector(query);
        let mut hits: Vec<Hit> = Vec::new();
        if index.size() > 0 && ns_filter != Some(None) {
            // A binary16 graph cannot order vectors closer than its rounding: take
            // twice k (at least k + 10) candidates and let the exact distances decide.
            let candidates = if self.unit { (2 * k).max(k + 10) } else { k };
            let ef = ef.max(candidates);
            if index.expansion_search() != ef {
                index.change_expansion_search(ef);
            }
            let matches = index.filtered_search(&gq, candidates, |key: u64| {
                !pending.contains(&(key as i64))
                    && match ns_filter {
                        None => true,
                        Some(want) => self.ns.of.get(&key).copied() == want,
                    }
            })?;
            // Exact distances from the stored vectors, so both paths rank alike.
            for key in matches.keys {
                let id = key as i64;
                if let Some(v) = store.embedding(id)? {
                    hits.push((id, store.opts.metric.distance(query, &v)));
                }
            }
        }
        if !pending.is_empty() {
            // The pending ids' current vectors (of the namespace), in one join.
            let (metric, dim) = (store.opts.metric, store.opts.dim);
            store.pending_vectors_in(namespace, |id, blob| {
                if let Some(v) = vector::decode_stored(blob, dim) {
                    hits.push((id, metric.distance(query, &v)));
                }
            })?;
        }
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
    /// (plus the binary16 rounding), nearest first. Pending ids are skipped: the caller
    /// compares the pending vectors itself, exactly. The walks run on [`index_threads`]
    /// threads. Unlike [`Ann::search`] this never scans a namespace exactly, so a check
    /// costs a short walk whatever the table's size, and it is approximate only there.
    ///
    /// # Errors
    /// SQLite errors, or [`Error::Index`] from usearch.
    pub fn graph_candidates(
        &mut self,
        store: &Store,
        queries: &[(&str, &[f32])],
        k: usize,
        ef: usize,
        max_distance: f32,
    ) -> Result<Vec<Vec<i64>>> {
        let none = || vec![Vec::new(); queries.len()];
        self.ensure_loaded(store)?;
        if self.index.as_ref().is_none_or(|i| i.size() == 0) {
            return Ok(none());
        }
        let pending: HashSet<i64> = store.pending_ids()?.into_iter().collect();
        if self.ns.loaded {
            self.ns.resolve(store, &pending)?;
        } else {
            self.ns.load(store, &pending)?;
        }
        let Some(index) = self.index.as_ref() else {
            return Ok(none());
        };
        let ef = ef.max(k);
        if index.expansion_search() != ef {
            index.change_expansion_search(ef);
        }
        // binary16 rounding of unit vectors moves 1 - a.b by far less than 0.01 at 384-d.
        let limit = max_distance + if self.unit { 0.01 } else { 0.0 };
        let jobs: Vec<(Option<u32>, std::borrow::Cow<'_, [f32]>)> = queries
            .iter()
            .map(|(ns, q)| (self.ns.ids.get(*ns).copied(), self.graph_vector(q)))
            .collect();
        let of = &self.ns.of;
        par_map(&jobs, |(want, gq)| -> Result<Vec<i64>> {
            let Some(want) = *want else {
                return Ok(Vec::new());
            };
            let m = index.filtered_search(gq, k, |key: u64| {
                !pending.contains(&(key as i64)) && of.get(&key).copied() == Some(want)
            })?;
            Ok(m.keys
                .iter()
                .zip(&m.distances)
                .filter(|(_, d)| **d <= limit)
                .map(|(key, _)| *key as i64)
                .collect())
        })
    }

    /// Folds the pending ids into the graph when `when` says it is due (see
    /// [`Checkpoint`]). Returns whether it ran.
    ///
    /// A checkpoint inside a statement ([`Checkpoint::Write`]) advances the generation and
    /// empties the pending list but defers writing the snapshot: until COMMIT nobody else
    /// can read this transaction's state, and this connection searches its in-memory
    /// graph. `<table>_config.hnsw_saved` keeps the generation the stored snapshot really
    /// has. At COMMIT ([`Checkpoint::Commit`], from xSync) the snapshot is written if it
    /// lags; so a bulk load in one transaction serializes the graph once, not at every
    /// in-statement checkpoint. A ROLLBACK (TO) restores the previous generation, which
    /// the stored snapshot still has.
    ///
    /// # Errors
    /// SQLite or usearch errors; the in-memory graph is then dropped and reloaded later.
    pub fn maybe_checkpoint(&mut self, store: &Store, when: Checkpoint) -> Result<bool> {
        let size = self.index.as_ref().map_or(0, |i| i.size());
        let threshold = match when {
            Checkpoint::Commit => (size / 8).max(1024),
            Checkpoint::Write => (size / 2).max(16384),
            Checkpoint::WriteSearched => WRITE_SEARCHED_PENDING,
            Checkpoint::Force => 1,
        };
        let in_statement = matches!(when, Checkpoint::Write | Checkpoint::WriteSearched);
        if when == Checkpoint::Write {
            // Each write adds at most one pending id; rollbacks only remove some.
            self.writes_uncounted += 1;
            if self.pending_counted + self.writes_uncounted < threshold {
                return Ok(false);
            }
        }
        let pending = store.pending_count()?;
        self.pending_counted = pending;
        self.writes_uncounted = 0;
        let due = pending > 0 && pending >= threshold;
        let r = if due {
            self.checkpoint(store, !in_statement)
        } else if !in_statement {
            self.save_if_lagging(store)
        } else {
            Ok(())
        };
        if r.is_err() {
            self.invalidate();
        }
        if due {
            self.pending_counted = 0;
        }
        r.map(|_| due)
    }

    /// Writes the in-memory graph as the snapshot when the stored one lags the
    /// generation (a deferred checkpoint of this transaction).
    fn save_if_lagging(&mut self, store: &Store) -> Result<()> {
        let (g, saved) = store.snapshot_state()?;
        if g == saved {
            return Ok(());
        }
        // ensure_loaded rebuilds (and saves) when the graph of generation g is gone.
        self.ensure_loaded(store)?;
        let (g, saved) = store.snapshot_state()?;
        if g != saved {
            self.save(store, g)?;
            self.keep_unreachable_pending(store)?;
        }
        Ok(())
    }

    /// Runs the reachability check ([`unreachable`]) over every node of the graph that is
    /// not pending, and adds the ones their own vector does not find to the pending list.
    /// Called whenever a snapshot is written: insertions after a node was added can
    /// prune the links that led to it, so checking only the nodes a checkpoint adds is
    /// not enough. Costs one short search per node (about 1.5 s CPU at 100,000 nodes),
    /// once per snapshot write.
    ///
    /// # Errors
    /// SQLite or usearch errors.
    fn keep_unreachable_pending(&self, store: &Store) -> Result<()> {
        let Some(index) = self.index.as_ref() else {
            return Ok(());
        };
        let pending: HashSet<i64> = store.pending_ids()?.into_iter().collect();
        let dim = store.opts.dim;
        let mut items: Vec<(u64, Vec<f32>)> = Vec::new();
        store.scan_vectors(None, |id, blob| {
            if !pending.contains(&id)
                && let Some(v) = vector::decode_stored(blob, dim)
            {
                items.push((id as u64, self.graph_vector(&v).into_owned()));
            }
        })?;
        let lost = unreachable(index, &items, self.unit, &store.opts)?;
        store.mark_pending_all(&lost)
    }

    /// Serializes the graph into `<table>_hnsw` as the snapshot of `generation`.
    fn save(&self, store: &Store, generation: u64) -> Result<()> {
        let Some(index) = self.index.as_ref() else {
            return Err(Error::Index("graph not loaded".into()));
        };
        let mut buf = vec![0u8; index.serialized_length()];
        index.save_to_buffer(&mut buf)?;
        store.save_hnsw(&buf, generation, self.unit)
    }

    /// Folds the pending ids into the graph under a new generation; writes the snapshot
    /// now when `save`, else only records the generation (see [`Ann::maybe_checkpoint`]).
    fn checkpoint(&mut self, store: &Store, save: bool) -> Result<()> {
        self.ensure_loaded(store)?;
        self.thaw(store)?;
        let mut items: Vec<(u64, Vec<f32>)> = Vec::new();
        let mut ids: Vec<i64> = Vec::new();
        store.pending_vectors(|id, blob| {
            ids.push(id);
            if let Some(v) = blob.and_then(|b| vector::decode_stored(b, store.opts.dim)) {
                items.push((id as u64, v));
            }
        })?;
        let Some(index) = self.index.as_ref() else {
            return Err(Error::Index("graph not loaded".into()));
        };
        let needed = index.size() + items.len();
        if index.capacity() < needed {
            index.reserve(needed.max(index.capacity() * 3 / 2).max(1024))?;
        }
        if index.size() > 0 {
            for &id in &ids {
                if index.contains(id as u64) {
                    index.remove(id as u64)?;
                }
            }
        }
        if self.ns.loaded {
            for &id in &ids {
                self.ns.of.remove(&(id as u64));
                self.ns.unknown.remove(&id);
            }
            for (key, _) in &items {
                if let Some(row) = store.get(*key as i64)? {
                    self.ns.set(*key as i64, row.namespace);
                }
            }
        }
        if self.unit {
            items.iter_mut().for_each(|(_, v)| *v = unit_vector(v));
        }
        add_parallel(index, &items)?;
        let generation = random_generation();
        if save {
            self.save(store, generation)?;
            store.clear_pending()?;
            self.keep_unreachable_pending(store)?;
        } else {
            // A deferred snapshot: the new nodes now, every node when it is written.
            let unreachable = unreachable(index, &items, self.unit, &store.opts)?;
            store.set_generation_unsaved(generation)?;
            store.mark_pending_all(&unreachable)?;
        }
        self.generation = generation;
        Ok(())
    }

    /// Rebuilds the graph from the stored vectors and saves a new snapshot.
    ///
    /// # Errors
    /// SQLite or usearch errors.
    pub fn rebuild(&mut self, store: &Store) -> Result<()> {
        self.invalidate();
        let unit = store.opts.metric == Metric::Cosine;
        let index = Self::new_index(store, unit)?;
        let mut items: Vec<(u64, Vec<f32>)> = Vec::new();
        store.scan_vectors(None, |id, blob| {
            if let Some(v) = vector::decode_stored(blob, store.opts.dim) {
                items.push((id as u64, if unit { unit_vector(&v) } else { v }));
            }
        })?;
        index.reserve(items.len().max(1024))?;
        add_parallel(&index, &items)?;
        let unreachable = unreachable(&index, &items, unit, &store.opts)?;
        self.index = Some(index);
        self.unit = unit;
        let generation = random_generation();
        let r = self
            .save(store, generation)
            .and_then(|()| store.clear_pending())
            .and_then(|()| store.mark_pending_all(&unreachable));
        if r.is_err() {
            self.invalidate();
        }
        r?;
        self.generation = generation;
        Ok(())
    }

    /// Compares the snapshot with the stored vectors (for `subcog_integrity`). Returns
    /// `(nodes, missing, stale, extra)`: graph size; non-pending vectors absent from the
    /// snapshot; non-pending vectors whose snapshot copy differs; snapshot entries that
    /// are neither a stored vector nor pending.
    ///
    /// # Errors
    /// SQLite errors, or a snapshot that does not load.
    pub fn snapshot_check(
        &mut self,
        store: &Store,
        pending: &HashSet<i64>,
    ) -> Result<(usize, usize, usize, usize)> {
        self.ensure_loaded(store)?;
        let Some(index) = self.index.as_ref() else {
            return Err(Error::Index("graph not loaded".into()));
        };
        let dim = store.opts.dim;
        let unit = self.unit;
        let (mut missing, mut stale, mut present) = (0usize, 0usize, 0usize);
        let mut buf = vec![0f32; dim];
        store.scan_vectors(None, |id, blob| {
            if pending.contains(&id) {
                return;
            }
            let key = id as u64;
            if !index.contains(key) {
                missing += 1;
                return;
            }
            present += 1;
            let same = matches!(index.get(key, &mut buf), Ok(n) if n >= 1)
                && vector::decode_stored(blob, dim).is_some_and(|v| {
                    if unit {
                        // binary16 keeps 11 significant bits (relative error <= 2^-11);
                        // below 2^-14 usearch's conversion may flush to zero.
                        unit_vector(&v)
                            .iter()
                            .zip(&buf)
                            .all(|(x, y)| (x - y).abs() <= x.abs() / 1024.0 + 1.0 / 16384.0)
                    } else {
                        v == buf
                    }
                });
            if !same {
                stale += 1;
            }
        })?;
        let pending_present = pending
            .iter()
            .filter(|id| index.contains(**id as u64))
            .count();
        let nodes = index.size();
        let extra = nodes.saturating_sub(present + pending_present);
        Ok((nodes, missing, stale, extra))
    }

    /// Number of vectors in the in-memory graph (0 when not loaded).
    pub fn size(&self) -> usize {
        self.index.as_ref().map_or(0, |i| i.size())
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
/// binary16 for `unit` graphs, else [`Metric::graph_distance`] over float32.
fn install_metric(index: &mut Index, metric: Metric, unit: bool, dim: usize) {
    if unit {
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

/// Fewest items a checkpoint spreads over [`index_threads`] threads (fewer run on the
/// caller's thread: a thread costs ~20 us to start, an insertion ~50-100 us).
const PARALLEL_MIN: usize = 64;

/// Threads that build the graph at a checkpoint, 0 = the default (see [`index_threads`]).
static INDEX_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Threads that add vectors to the graph at a checkpoint or rebuild:
/// `subcog_config('index_threads', n)` if set, else `SUBCOG_INDEX_THREADS`, else the
/// available cores up to 4. Searches always run on the caller's thread; these threads
/// exist only while a checkpoint runs (inside a COMMIT, a bulk INSERT or 'optimize').
pub fn index_threads() -> usize {
    let o = INDEX_THREADS.load(Ordering::Relaxed);
    if o > 0 {
        return o;
    }
    std::env::var("SUBCOG_INDEX_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .clamp(1, 4)
        })
}

/// Sets the checkpoint thread count (0 = back to the default, see [`index_threads`]).
pub fn set_index_threads(n: usize) {
    INDEX_THREADS.store(n, Ordering::Relaxed);
}

/// Adds `items` to `index` from [`index_threads`] threads (usearch's dense index takes
/// concurrent adds after `reserve`, which sizes its per-thread contexts to the hardware
/// threads, so at most that many are used).
fn add_parallel(index: &Index, items: &[(u64, Vec<f32>)]) -> Result<()> {
    let hw = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = index_threads().clamp(1, hw.max(1));
    if threads == 1 || items.len() < PARALLEL_MIN {
        for (key, v) in items {
            index.add(*key, v)?;
        }
        return Ok(());
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || -> Result<()> {
                    for (key, v) in part {
                        index.add(*key, v)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| Error::Index("an HNSW insert thread panicked".into()))??;
        }
        Ok(())
    })
}

/// Candidates of the reachability check: a k = 1 search over a binary16 graph takes
/// k + 10 = 11 candidates ([`Ann::search_ef`]), so a node among the first 11 its own
/// vector finds is returned by that search.
const REACH_CANDIDATES: usize = 11;

/// Candidate list of the reachability check's first, cheap pass. Measured on 16,384
/// random 384-d unit vectors (M 16, ef_construction 64): ef 32 flags 242 nodes (1.5%),
/// ef 128 (the default ef_search) 17; the first pass costs a quarter of the second.
const REACH_EF_FIRST: usize = 32;

/// Ids of `items` (just added to `index`) that a search for their own vector does not
/// find among the first [`REACH_CANDIDATES`] (for a float32 graph: the first), at the
/// table's `ef_search`. HNSW can leave a node that no search path reaches (its
/// neighbours pruned their links to it), and then no search ever returns it; the
/// caller keeps such ids pending, so every search scans them exactly beside the graph
/// and the next checkpoint re-inserts (re-links) them. They are rare (about 1 node in
/// 1,000 on random 384-d data, fewer on clustered data), so the pending list stays
/// short. Two passes: every node at ef [`REACH_EF_FIRST`], then the nodes it missed at
/// `ef_search`. Runs on [`index_threads`] threads like [`add_parallel`]. Not run for
/// `metric=ip`, where a vector's nearest neighbour need not be itself. Leaves the
/// index's search expansion at `ef_search`.
///
/// # Errors
/// [`Error::Index`] from usearch.
fn unreachable(
    index: &Index,
    items: &[(u64, Vec<f32>)],
    unit: bool,
    opts: &crate::options::TableOptions,
) -> Result<Vec<i64>> {
    if opts.metric == Metric::Ip {
        return Ok(Vec::new());
    }
    let count = if unit { REACH_CANDIDATES } else { 1 };
    let found = |(key, v): &(u64, Vec<f32>)| -> Result<bool> {
        let m = index.search(v, count)?;
        // A float32 graph ranks an exact copy of the vector (distance 0) first; another
        // row with the very same vector is as good an answer.
        let tie = !unit && m.distances.first().is_some_and(|d| *d <= 0.0);
        Ok(m.keys.contains(key) || tie)
    };
    index.change_expansion_search(REACH_EF_FIRST.min(opts.ef_search));
    let first = par_map(items, found)?;
    index.change_expansion_search(opts.ef_search);
    let suspects: Vec<(u64, Vec<f32>)> = items
        .iter()
        .zip(first)
        .filter(|(_, ok)| !ok)
        .map(|(item, _)| item.clone())
        .collect();
    let second = par_map(&suspects, found)?;
    Ok(suspects
        .iter()
        .zip(second)
        .filter(|(_, ok)| !ok)
        .map(|((key, _), _)| *key as i64)
        .collect())
}

/// `f` over every item, on [`index_threads`] threads (each taking a contiguous chunk;
/// on the caller's thread when one suffices or there are fewer than [`PARALLEL_MIN`]
/// items), results in item order. The first error wins.
///
/// # Errors
/// The first error of `f`, or [`Error::Index`] if a thread panicked.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> Result<R> + Sync) -> Result<Vec<R>> {
    let hw = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = index_threads().clamp(1, hw.max(1));
    if threads == 1 || items.len() < PARALLEL_MIN {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Result<Vec<R>>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            out.extend(
                h.join()
                    .map_err(|_| Error::Index("an HNSW worker thread panicked".into()))??,
            );
        }
        Ok(out)
    })
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

    #[test]
    fn generations_are_nonzero_and_differ() {
        let a = random_generation();
        let b = random_generation();
        assert!(a != 0 && b != 0 && a != b);
    }
}
