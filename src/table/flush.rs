//! The flush: every memory of the open transaction that awaits its embedding is embedded
//! in batches of [`FLUSH_BATCH`], and the near-duplicate checks that await run a batch at
//! a time in id order (a row is compared with the graph's candidates, the pending vectors
//! and the rows before it in its batch). Runs before every query on the table, at COMMIT,
//! and from an INSERT every [`FLUSH_BATCH`] checks.

use std::collections::{HashMap, HashSet};

use super::MemoryTable;
use crate::ann::Checkpoint;
use crate::error::{Error, Result};
use crate::row;
use crate::store::{SUPERSEDES, Unembedded};
use crate::vector;

/// Memories embedded per ONNX batch by [`MemoryTable::flush`] (the embedder runs them
/// 16 per model call).
pub(crate) const FLUSH_BATCH: usize = 256;

/// Neighbours examined per new memory by the near-duplicate check (expired ones are
/// skipped).
const NEAR_DUP_CANDIDATES: usize = 8;

/// HNSW candidate list of the near-duplicate check's graph walk (see
/// [`crate::ann::Ann::search_ef`]); a graph of unit codes (int8, or binary16) raises it to k + 10 = 18 candidates.
const NEAR_DUP_EF: usize = 24;

/// `(id, [f32; dim])` pairs.
type Vectors = Vec<(i64, Vec<f32>)>;

impl MemoryTable {
    /// Embeds, in batches, every memory of the open transaction that awaits its
    /// embedding, and runs the near-duplicate checks that await (a batch at a time, in id
    /// order, [`MemoryTable::check_batch`]). Called before every query on this table, at
    /// commit (xSync), and by an INSERT every [`FLUSH_BATCH`] checks.
    ///
    /// # Errors
    /// Model or inference errors; SQLite errors.
    pub(crate) fn flush(&self) -> Result<()> {
        if let Some(b) = &self.branch {
            return self.keeping_last_rowid(|| self.branch_flush(b));
        }
        self.keeping_last_rowid(|| self.flush_now())
    }

    fn flush_now(&self) -> Result<()> {
        let store = &self.store;
        self.awaiting.set(0);
        if !store.has_unembedded_kept()? {
            return Ok(());
        }
        let near = self.near_dedup();
        let now = row::now_ms();
        loop {
            let batch = store.unembedded(FLUSH_BATCH)?;
            if batch.is_empty() {
                break;
            }
            let texts: Vec<&str> = batch
                .iter()
                .filter(|u| u.vector.is_none())
                .map(|u| u.content.as_str())
                .collect();
            let mut embedded = if texts.is_empty() {
                Vec::new()
            } else {
                self.require_model()?.embed_batch(&texts)?
            }
            .into_iter();
            let mut vecs: Vec<Vec<f32>> = Vec::with_capacity(batch.len());
            for u in &batch {
                match &u.vector {
                    Some(v) => vecs.push(v.clone()),
                    None => vecs.push(embedded.next().map(|e| e.to_vec()).ok_or_else(|| {
                        Error::Model("the model returned fewer vectors than texts".into())
                    })?),
                }
            }
            let checks: Vec<usize> = (0..batch.len())
                .filter(|&i| near && batch[i].near_check)
                .collect();
            if !checks.is_empty() {
                self.check_batch(&batch, &vecs, &checks, now)?;
            }
            for (u, v) in batch.iter().zip(&vecs) {
                if u.vector.is_some() {
                    store.clear_unembedded(u.id)?;
                } else {
                    store.set_embedded(u.id, v)?;
                }
            }
            if !checks.is_empty() {
                self.ann
                    .borrow_mut()
                    .maybe_checkpoint(store, Checkpoint::WriteSearched)?;
            }
        }
        self.ann
            .borrow_mut()
            .maybe_checkpoint(store, Checkpoint::Write)?;
        Ok(())
    }

    /// The near-duplicate checks of one flushed batch (`batch[i]` with vector `vecs[i]`,
    /// in id order; `checks`: the indexes to check). For each, the nearest live
    /// (unexpired, not superseded) memory of its namespace at cosine >= `dedup_threshold`
    /// gets a `supersedes` link from it. Candidates: the graph's (one short walk per row,
    /// on the index threads), the pending vectors outside the batch (read once), and the
    /// rows before it in the batch; so a row never finds itself or a later row.
    fn check_batch(
        &self,
        batch: &[Unembedded],
        vecs: &[Vec<f32>],
        checks: &[usize],
        now: i64,
    ) -> Result<()> {
        let store = &self.store;
        let metric = store.opts.metric;
        let threshold = store.opts.dedup_threshold;
        let max_distance = (1.0 - threshold) as f32;
        let queries: Vec<(&str, &[f32])> = checks
            .iter()
            .map(|&i| (batch[i].namespace.as_str(), vecs[i].as_slice()))
            .collect();
        let graph = self.ann.borrow_mut().graph_candidates(
            store,
            &queries,
            NEAR_DUP_CANDIDATES,
            NEAR_DUP_EF,
            max_distance,
        )?;
        let in_batch: HashSet<i64> = batch.iter().map(|u| u.id).collect();
        // The graph candidates' stored vectors, read in one statement for the batch.
        let mut wanted: Vec<i64> = graph.iter().flatten().copied().collect();
        wanted.sort_unstable();
        wanted.dedup();
        wanted.retain(|id| !in_batch.contains(id));
        let mut stored: HashMap<i64, Vec<f32>> = HashMap::with_capacity(wanted.len());
        let dim = store.opts.dim;
        store.vectors_of(&wanted, |id, blob| {
            if let Some(v) = vector::decode_stored(blob, dim) {
                stored.insert(id, v);
            }
        })?;
        let mut others: Vec<(i64, String, Vec<f32>)> = Vec::new();
        store.pending_vectors_ns(|id, ns, blob| {
            if !in_batch.contains(&id)
                && let Some(v) = vector::decode_stored(blob, dim)
            {
                others.push((id, ns.to_string(), v));
            }
        })?;
        let small = self.small_namespaces(batch, checks, &in_batch)?;
        // The SIMD kernel screens every pair; the few within reach get the exact distance
        // ([`vector::Metric::distance`]), so the threshold and the link's weight are exact.
        let fast = metric.graph_distance();
        let screen = max_distance + 1e-3;
        let near = |v: &[f32], w: &[f32]| -> Option<f32> {
            (fast(v, w) <= screen).then(|| metric.distance(v, w))
        };
        for (&i, candidates) in checks.iter().zip(graph) {
            let (u, v) = (&batch[i], &vecs[i]);
            let mut hits: Vec<(i64, f32)> = Vec::new();
            let exact = small.get(u.namespace.as_str());
            for (id, w) in exact.into_iter().flatten() {
                hits.extend(near(v, w).map(|d| (*id, d)));
            }
            let candidates = if exact.is_some() {
                Vec::new()
            } else {
                candidates
            };
            let others_here = if exact.is_some() {
                &[][..]
            } else {
                &others[..]
            };
            for id in candidates {
                if let Some(w) = stored.get(&id) {
                    hits.extend(near(v, w).map(|d| (id, d)));
                }
            }
            for (id, ns, w) in others_here {
                if *ns == u.namespace {
                    hits.extend(near(v, w).map(|d| (*id, d)));
                }
            }
            for j in 0..i {
                if batch[j].namespace == u.namespace {
                    hits.extend(near(v, &vecs[j]).map(|d| (batch[j].id, d)));
                }
            }
            self.supersede_nearest(u.id, hits, max_distance, now)?;
        }
        Ok(())
    }

    /// The vectors (outside the batch) of each namespace of `checks` that holds at most
    /// `exact_max` vectors: those namespaces are compared exactly, as searches do, their
    /// vectors read once for the batch.
    fn small_namespaces<'b>(
        &self,
        batch: &'b [Unembedded],
        checks: &[usize],
        in_batch: &HashSet<i64>,
    ) -> Result<HashMap<&'b str, Vectors>> {
        let store = &self.store;
        let dim = store.opts.dim;
        let mut small: HashMap<&str, Vec<(i64, Vec<f32>)>> = HashMap::new();
        // Namespaces already counted and found larger than exact_max: counted once a batch.
        let mut large: HashSet<&str> = HashSet::new();
        let cap = store.opts.exact_max.saturating_add(1);
        for &i in checks {
            let ns = batch[i].namespace.as_str();
            if small.contains_key(ns) || large.contains(ns) {
                continue;
            }
            if store.count_capped(ns, cap)? > store.opts.exact_max {
                large.insert(ns);
                continue;
            }
            let mut all = Vec::new();
            store.scan_vectors(Some(ns), |id, blob| {
                if !in_batch.contains(&id)
                    && let Some(v) = vector::decode_stored(blob, dim)
                {
                    all.push((id, v));
                }
            })?;
            small.insert(ns, all);
        }
        Ok(small)
    }

    /// Links memory `id` as superseding the nearest live (unexpired, not superseded)
    /// memory among `hits` (`(id, distance)`) within `max_distance`.
    fn supersede_nearest(
        &self,
        id: i64,
        mut hits: Vec<(i64, f32)>,
        max_distance: f32,
        now: i64,
    ) -> Result<()> {
        let store = &self.store;
        let threshold = store.opts.dedup_threshold;
        hits.retain(|h| h.1 <= max_distance);
        hits.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        for (older, d) in hits {
            let similarity = 1.0 - f64::from(d);
            if similarity < threshold {
                break;
            }
            let live = store.get(older)?.is_some_and(|r| !r.expired(now));
            if live && store.superseded_by(older)?.is_none() {
                store.add_link(id, older, SUPERSEDES, similarity, now)?;
                break;
            }
        }
        Ok(())
    }
}
