//! Checkpoints: folding the pending ids into the graph, writing the snapshot, the
//! reachability re-check at every snapshot write, and `'rebuild'`.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use usearch::Index;

use super::build::{add_parallel, relink, unreachable};
use super::{Ann, unit_vector};
use crate::error::{Error, Result};
use crate::store::{GraphVectors, Store};
use crate::vector;

/// When a checkpoint is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checkpoint {
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
/// that scan; a fold of this many costs the same graph insertions as one large fold later,
/// and the snapshot write (with the reachability check of every node) stays deferred to
/// COMMIT.
pub(crate) const WRITE_SEARCHED_PENDING: usize = 128;

fn random_generation() -> u64 {
    // RandomState is seeded from the OS; a zero generation means "no snapshot".
    RandomState::new().hash_one(std::time::SystemTime::now()) | 1
}

impl Ann {
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
    pub(crate) fn maybe_checkpoint(&mut self, store: &Store, when: Checkpoint) -> Result<bool> {
        // The graph's size without waiting for a background fold (it will hold what it
        // is adding); a checkpoint that runs joins the fold first (`ensure_loaded`).
        let size = match self.folding {
            Some(_) => self.folded_size,
            None => self.graph_size(),
        };
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
            let lost = self.relink_unreachable(store)?;
            self.save(store, g)?;
            store.mark_pending_all(&lost)?;
        }
        Ok(())
    }

    /// Runs the reachability check ([`unreachable`]) over every node of the graph that is
    /// not pending, re-inserts the nodes it flags ([`relink`]: removed and added again,
    /// so they get fresh links) and returns the ones their own vector still does not find,
    /// for the caller to keep pending. Called before every snapshot write: insertions
    /// after a node was added can prune the links that led to it, so checking only the
    /// nodes a checkpoint adds is not enough. Costs one short search per node (ef 11 for
    /// most), once per snapshot write.
    ///
    /// # Errors
    /// SQLite or usearch errors.
    fn relink_unreachable(&mut self, store: &Store) -> Result<Vec<i64>> {
        self.thaw(store)?;
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
        let Some(index) = self.index.as_ref() else {
            return Ok(Vec::new());
        };
        let unit = self.vectors.unit();
        let lost = unreachable(index, &items, unit, &store.opts)?;
        relink(index, &items, &lost, unit, &store.opts)
    }

    /// Serializes the graph into `<table>_hnsw` as the snapshot of `generation`.
    fn save(&self, store: &Store, generation: u64) -> Result<()> {
        let Some(index) = self.index.as_ref() else {
            return Err(Error::Index("graph not loaded".into()));
        };
        let mut buf = vec![0u8; index.serialized_length()];
        index.save_to_buffer(&mut buf)?;
        store.save_hnsw(&buf, generation, self.vectors)
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
        if self.vectors.unit() {
            items.iter_mut().for_each(|(_, v)| *v = unit_vector(v));
        }
        let generation = random_generation();
        if save {
            add_parallel(index, &items)?;
            store.clear_pending()?;
            let lost = self.relink_unreachable(store)?;
            self.save(store, generation)?;
            store.mark_pending_all(&lost)?;
        } else {
            // A deferred snapshot: the reachability check runs over every node when the
            // snapshot is written (COMMIT), as after any checkpoint, so not here too. The
            // vectors go into the graph on a background thread while the statement goes
            // on; the generation recorded now has no stored snapshot, so should that
            // fold fail, the graph is rebuilt from the stored vectors.
            store.set_generation_unsaved(generation)?;
            self.fold(items)?;
        }
        self.generation = generation;
        Ok(())
    }

    /// Rebuilds the graph from the stored vectors and saves a new snapshot.
    ///
    /// # Errors
    /// SQLite or usearch errors.
    pub(crate) fn rebuild(&mut self, store: &Store) -> Result<()> {
        self.invalidate();
        let vectors = GraphVectors::for_new_graph(store.opts.metric);
        let unit = vectors.unit();
        let index = Self::new_index(store, vectors)?;
        let mut items: Vec<(u64, Vec<f32>)> = Vec::new();
        store.scan_vectors(None, |id, blob| {
            if let Some(v) = vector::decode_stored(blob, store.opts.dim) {
                items.push((id as u64, if unit { unit_vector(&v) } else { v }));
            }
        })?;
        index.reserve(items.len().max(1024))?;
        add_parallel(&index, &items)?;
        let lost = unreachable(&index, &items, unit, &store.opts)?;
        let unreachable = relink(&index, &items, &lost, unit, &store.opts)?;
        self.index = Some(std::sync::Arc::new(index));
        self.vectors = vectors;
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
    pub(crate) fn snapshot_check(
        &mut self,
        store: &Store,
        pending: &HashSet<i64>,
    ) -> Result<(usize, usize, usize, usize)> {
        self.ensure_loaded(store)?;
        let vectors = self.vectors;
        let checked = self.with_graph(store, store.opts.ef_search, |index| {
            Self::check_graph(index, store, pending, vectors)
        })?;
        checked.unwrap_or_else(|| Err(Error::Index("graph not loaded".into())))
    }

    /// [`Ann::snapshot_check`] of the graph `index`, holding `vectors`.
    fn check_graph(
        index: &Index,
        store: &Store,
        pending: &HashSet<i64>,
        vectors: GraphVectors,
    ) -> Result<(usize, usize, usize, usize)> {
        let dim = store.opts.dim;
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
                    match vectors {
                        // binary16 keeps 11 significant bits (relative error <= 2^-11);
                        // below 2^-14 usearch's conversion may flush to zero.
                        GraphVectors::UnitF16 => unit_vector(&v)
                            .iter()
                            .zip(&buf)
                            .all(|(x, y)| (x - y).abs() <= x.abs() / 1024.0 + 1.0 / 16384.0),
                        // usearch codes `trunc(127 u_i)` and reads back `code / 127`: off by
                        // less than 1/127 each.
                        GraphVectors::UnitI8 => unit_vector(&v)
                            .iter()
                            .zip(&buf)
                            .all(|(x, y)| (x - y).abs() <= 1.0 / 127.0 + 1e-6),
                        GraphVectors::Float => v == buf,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_are_nonzero_and_differ() {
        let a = random_generation();
        let b = random_generation();
        assert!(a != 0 && b != 0 && a != b);
    }
}
