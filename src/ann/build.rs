//! Graph construction on the index threads: parallel insertion, the reachability check
//! of new nodes, and the thread count.

use usearch::Index;

use crate::error::{Error, Result};
use crate::settings::index_threads;
use crate::vector::Metric;

/// Fewest items a checkpoint spreads over [`crate::settings::index_threads`] threads (fewer run on the
/// caller's thread: a thread costs ~20 us to start, an insertion ~50-100 us).
const PARALLEL_MIN: usize = 64;

/// Adds `items` to `index` from [`crate::settings::index_threads`] threads (usearch's dense index takes
/// concurrent adds after `reserve`, which sizes its per-thread contexts to the hardware
/// threads, so at most that many are used).
pub(super) fn add_parallel(index: &Index, items: &[(u64, Vec<f32>)]) -> Result<()> {
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

/// Candidates of the reachability check: a k = 1 search over a graph of unit codes (int8 or binary16) takes
/// k + 10 = 11 candidates ([`Ann::search_ef`]), so a node among the first 11 its own
/// vector finds is returned by that search.
const REACH_CANDIDATES: usize = 11;

/// Candidate lists of the reachability check's passes before the last one (at the
/// table's `ef_search`): each pass searches again, with a longer list, only the nodes the
/// pass before missed. Measured on 20,000 random 384-d unit vectors (M 16,
/// ef_construction 64, a loaded 2-core machine): ef 11 missed 3,398 nodes (9.2 s), ef 32
/// 535 of those (4.8 s), ef_search 128 7 (2.2 s): 16 s against about 30 s for one ef 32
/// pass over every node plus its ef_search re-check. On 20,000 MiniLM embeddings ef 11
/// misses 80 (0.4%), so the first pass is nearly all of the cost.
const REACH_EF_PASSES: [usize; 2] = [REACH_CANDIDATES, 32];

/// Ids of `items` (graph nodes) that a search for their own vector does not find among
/// the first [`REACH_CANDIDATES`] (for a float32 graph: the first), at the table's
/// `ef_search`. HNSW can leave a node that no search path reaches (its neighbours pruned
/// their links to it), and then no search ever returns it; the caller re-inserts such
/// nodes ([`relink`]) and keeps the ones still missed pending, so every search scans them
/// exactly beside the graph. They are rare (0.4% of 20,000 MiniLM embeddings at ef 11,
/// 0.03% at `ef_search`), so the pending list stays short. Passes at ef [`REACH_EF_PASSES`], then
/// `ef_search`, each over the nodes the one before missed. Runs on
/// [`crate::settings::index_threads`] threads like [`add_parallel`]. Not run for
/// `metric=ip`, where a vector's nearest neighbour need not be itself. Leaves the index's
/// search expansion at `ef_search`.
///
/// # Errors
/// [`Error::Index`] from usearch.
pub(super) fn unreachable(
    index: &Index,
    items: &[(u64, Vec<f32>)],
    unit: bool,
    opts: &crate::options::TableOptions,
) -> Result<Vec<i64>> {
    if opts.metric == Metric::Ip {
        return Ok(Vec::new());
    }
    let count = if unit { REACH_CANDIDATES } else { 1 };
    let found = |(key, v): &&(u64, Vec<f32>)| -> Result<bool> {
        let m = index.search(v, count)?;
        // A float32 graph ranks an exact copy of the vector (distance 0) first; another
        // row with the very same vector is as good an answer.
        let tie = !unit && m.distances.first().is_some_and(|d| *d <= 0.0);
        Ok(m.keys.contains(key) || tie)
    };
    let mut suspects: Vec<&(u64, Vec<f32>)> = items.iter().collect();
    let passes = REACH_EF_PASSES
        .iter()
        .map(|ef| (*ef).min(opts.ef_search))
        .chain([opts.ef_search]);
    for ef in passes {
        if suspects.is_empty() {
            break;
        }
        index.change_expansion_search(ef);
        let hit = par_map(&suspects, found)?;
        suspects = suspects
            .into_iter()
            .zip(hit)
            .filter(|(_, ok)| !ok)
            .map(|(item, _)| item)
            .collect();
    }
    index.change_expansion_search(opts.ef_search);
    Ok(suspects.iter().map(|(key, _)| *key as i64).collect())
}

/// Re-inserts the nodes `lost` (ids among `items`, just flagged by [`unreachable`]):
/// each is removed and added again, so it is linked to its current neighbours, then
/// checked again. Returns the ids a search for their own vector still does not find
/// (the caller keeps them pending: searched exactly beside the graph).
///
/// # Errors
/// [`Error::Index`] from usearch.
pub(super) fn relink(
    index: &Index,
    items: &[(u64, Vec<f32>)],
    lost: &[i64],
    unit: bool,
    opts: &crate::options::TableOptions,
) -> Result<Vec<i64>> {
    if lost.is_empty() {
        return Ok(Vec::new());
    }
    let set: std::collections::HashSet<u64> = lost.iter().map(|id| *id as u64).collect();
    let again: Vec<(u64, Vec<f32>)> = items
        .iter()
        .filter(|(key, _)| set.contains(key))
        .cloned()
        .collect();
    for (key, _) in &again {
        index.remove(*key)?;
    }
    let needed = index.size() + again.len();
    if index.capacity() < needed {
        index.reserve(needed)?;
    }
    // A longer candidate list than the first insertion's finds these nodes' true
    // neighbours, which then keep the links back to them more often.
    let expansion = index.expansion_add();
    index.change_expansion_add(
        expansion
            .saturating_mul(RELINK_EXPANSION)
            .max(opts.ef_search),
    );
    let added = add_parallel(index, &again);
    index.change_expansion_add(expansion);
    added?;
    unreachable(index, &again, unit, opts)
}

/// Factor on `ef_construction` for the candidate list of a re-insertion ([`relink`]).
/// Few nodes are re-inserted (0.03-2% of a graph), so a longer list costs little.
const RELINK_EXPANSION: usize = 4;

/// `f` over every item, on [`crate::settings::index_threads`] threads (each taking a contiguous chunk;
/// on the caller's thread when one suffices or there are fewer than [`PARALLEL_MIN`]
/// items), results in item order. The first error wins.
///
/// # Errors
/// The first error of `f`, or [`Error::Index`] if a thread panicked.
pub(super) fn par_map<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
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
