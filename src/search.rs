//! The three searches of a `memories` table: KNN, keyword (BM25) and hybrid (RRF).

use std::collections::HashMap;

use crate::ann::Ann;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::{embedder, text};

/// Largest `k` accepted (sqlite-vec's cap as well).
pub const MAX_K: i64 = 4096;
/// Reciprocal-rank-fusion constant: `score = sum over lists of 1 / (RRF_K + rank)`, rank
/// from 1 (Cormack, Clarke & Buettcher, "Reciprocal Rank Fusion outperforms Condorcet and
/// individual Rank Learning Methods", SIGIR 2009, k = 60).
pub const RRF_K: f64 = 60.0;

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// Rowid of the memory.
    pub id: i64,
    /// Distance to the query vector (KNN, and hybrid rows found by the vector side).
    pub distance: Option<f64>,
    /// Relevance, higher is better: `1 - distance` (KNN), `-bm25` (keyword), the RRF sum
    /// (hybrid); `None` for plain scans.
    pub score: Option<f64>,
}

/// Validates a `k` value from SQL.
///
/// # Errors
/// [`Error::Invalid`] unless `1 <= k <= MAX_K`.
pub fn check_k(k: i64, what: &str) -> Result<usize> {
    if !(1..=MAX_K).contains(&k) {
        return Err(Error::invalid(format!(
            "{what}: expected an integer in 1..={MAX_K}, got {k}"
        )));
    }
    Ok(k as usize)
}

/// KNN: the `k` nearest memories to `query`.
pub fn knn(
    store: &Store,
    ann: &mut Ann,
    query: &[f32],
    k: usize,
    ns: Option<&str>,
) -> Result<Vec<Found>> {
    Ok(ann
        .search(store, query, k, ns)?
        .into_iter()
        .map(|(id, d)| Found {
            id,
            distance: Some(d as f64),
            score: Some(1.0 - d as f64),
        })
        .collect())
}

/// Keyword search: FTS5 `query` (FTS5 syntax), best BM25 first.
pub fn keyword(store: &Store, query: &str, k: usize, ns: Option<&str>) -> Result<Vec<Found>> {
    Ok(store
        .keyword(query, ns, k)?
        .into_iter()
        .map(|(id, bm25)| Found {
            id,
            distance: None,
            score: Some(-bm25),
        })
        .collect())
}

/// Hybrid search: BM25 over the words of `text` and KNN over `embed(text)`, fused by
/// reciprocal rank fusion; best first, ties by id.
///
/// Each list contributes its own top `k`. With deeper lists, rows ranked low in both
/// (e.g. 30th and 30th: 2/90) outrank a row first in one list (1/61); on LoCoMo, depth 50
/// lost 4.5 points of turn recall@10 against depth k (see BENCHMARKS.md).
///
/// # Errors
/// [`Error::Model`] if the model is missing, [`Error::Invalid`] if the table's dimension
/// is not the model's.
pub fn hybrid(
    store: &Store,
    ann: &mut Ann,
    text: &str,
    k: usize,
    ns: Option<&str>,
) -> Result<Vec<Found>> {
    if store.opts.dim != embedder::MODEL_DIM {
        return Err(Error::invalid(format!(
            "{} MATCH: hybrid search embeds the text with the model ({} dimensions), but this \
             table has dim={}; use embedding MATCH with your own vectors",
            store.table,
            embedder::MODEL_DIM,
            store.opts.dim
        )));
    }
    let depth = k;
    let keyword_hits = match text::fts_query(text) {
        Some(q) => store.keyword(&q, ns, depth)?,
        None => Vec::new(),
    };
    let qv = embedder::get()?.embed(text)?;
    let vector_hits = ann.search(store, &qv, depth, ns)?;
    let mut fused: HashMap<i64, (f64, Option<f64>)> = HashMap::new();
    for (rank, (id, _)) in keyword_hits.iter().enumerate() {
        fused.entry(*id).or_insert((0.0, None)).0 += 1.0 / (RRF_K + rank as f64 + 1.0);
    }
    for (rank, (id, d)) in vector_hits.iter().enumerate() {
        let e = fused.entry(*id).or_insert((0.0, None));
        e.0 += 1.0 / (RRF_K + rank as f64 + 1.0);
        e.1 = Some(*d as f64);
    }
    let mut out: Vec<Found> = fused
        .into_iter()
        .map(|(id, (score, distance))| Found {
            id,
            distance,
            score: Some(score),
        })
        .collect();
    out.sort_by(|a, b| {
        b.score
            .unwrap_or(0.0)
            .total_cmp(&a.score.unwrap_or(0.0))
            .then(a.id.cmp(&b.id))
    });
    out.truncate(k);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k_range() {
        assert!(check_k(0, "k").is_err());
        assert!(check_k(-1, "k").is_err());
        assert!(check_k(MAX_K + 1, "k").is_err());
        assert_eq!(check_k(10, "k").ok(), Some(10));
    }
}
