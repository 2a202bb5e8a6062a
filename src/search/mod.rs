//! The three searches of a `memories` table: KNN, keyword (BM25) and hybrid (both fused,
//! with neighbouring memories as context).

pub(crate) mod rank;
pub mod text;

use std::collections::{HashMap, HashSet};

use crate::ann::Ann;
use crate::error::{Error, Result};
use crate::store::{Hidden, Store};
use crate::{embedder, vector};

/// Largest `k` accepted (sqlite-vec's cap as well).
pub const MAX_K: i64 = 4096;

/// Rows a search fetches beyond what it must return, so that hidden rows (expired,
/// superseded) rarely leave it short of visible ones and force a second, deeper run: each
/// retriever of a hybrid search beyond its depth, a KNN or keyword search's first run
/// beyond `k` ([`crate::table`]'s read path).
pub(crate) const HIDDEN_MARGIN: usize = 16;

/// Which rows a search may return.
#[derive(Debug, Clone, Copy)]
pub struct Visibility {
    /// The time expiry is judged at, ms since the Unix epoch (`expires_at <= now` is
    /// expired and hidden).
    pub now: i64,
    /// Whether superseded memories are returned (`AND include_superseded = 1`).
    pub include_superseded: bool,
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// Rowid of the memory.
    pub id: i64,
    /// Distance to the query vector under the table's metric (KNN; hybrid: every row with a
    /// stored vector).
    pub distance: Option<f64>,
    /// Relevance, higher is better: `1 - distance` (KNN), `-bm25` (keyword), the fused
    /// score with context (hybrid, see [`hybrid`]); `None` for plain scans.
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

/// KNN: the `k` nearest memories to `query`; unless `include_superseded`, the graph walk
/// skips superseded memories where it can ([`Ann::search_visible`]).
pub fn knn(
    store: &Store,
    ann: &mut Ann,
    query: &[f32],
    k: usize,
    ns: Option<&str>,
    include_superseded: bool,
) -> Result<Vec<Found>> {
    let hits = if include_superseded {
        ann.search(store, query, k, ns)?
    } else {
        ann.search_visible(store, query, k, ns)?
    };
    Ok(hits
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

/// Hybrid search: BM25 over the words of `text` and KNN over `embed(text)`, fused by a
/// weighted sum of normalised scores, with neighbouring memories as context; best first,
/// ties by id. The table options `hybrid_*` ([`crate::options::TableOptions`]) set
/// `depth`, `w` (keyword weight), `g` (context weight) and the context window.
///
/// 1. Candidates: each retriever's top `depth` rows among those `vis` lets a search
///    return (hidden rows, expired or superseded, take no place: the keyword side skips
///    them as it ranks, the graph walk skips superseded ones outside transactions and
///    otherwise fetches `depth + 16` rows; the walk's other hidden rows are dropped after,
///    from the kept sets or in one statement, `Store::visible_of`).
/// 2. Own score of a row: `w * bm25 / best_bm25 + (1 - w) * cos`, where `bm25` is FTS5's
///    (sign flipped, 0 for rows the keyword side did not return) and `cos` the cosine
///    similarity of the row's stored vector to the query vector (0 without a vector).
/// 3. Context: the memories stored next to a candidate in its namespace (up to
///    `hybrid_context_window` on each side, [`Store::neighbours`]) join the rows to rank;
///    each row's score is its own score plus `g` times the best own score among its
///    neighbours (pairs with at least one candidate; negative scores count as 0).
///    Conversation turns are often answered or explained by the turn before or after
///    ("What was it about?"). With `g <= 1` the row with the best own score stays first.
///    A hidden neighbour lends its score as context but is not returned.
///
/// Measured on LoCoMo (BENCHMARKS.md, benches/py/locomo_lab.py): the weighted sum alone is
/// on par with RRF (k = 60), the context adds most of the gain (turn recall@10 0.682 ->
/// 0.760) and works better on the weighted sum's scores than on RRF's (0.727); the
/// defaults were chosen leave-one-conversation-out and hold on each conversation.
///
/// # Errors
/// [`Error::Model`] if the model is missing, [`Error::Invalid`] if the table's dimension
/// is not the model's.
///
/// `depth` is each retriever's candidate count (a plain `k`-search passes
/// `max(k, hybrid_depth)`). A re-ranker that wants more than `k` rows in the order a plain
/// `k`-search would give asks for `k = 50` at `depth = hybrid_depth`: the rows come from
/// the candidates and their neighbours, so fewer than `k` may come back.
pub fn hybrid(
    store: &Store,
    ann: &mut Ann,
    text: &str,
    k: usize,
    depth: usize,
    ns: Option<&str>,
    vis: Visibility,
) -> Result<Hybrid> {
    if store.opts.dim != embedder::MODEL_DIM {
        return Err(Error::invalid(format!(
            "{} MATCH: hybrid search embeds the text with the model ({} dimensions), but this \
             table has dim={}; use embedding MATCH with your own vectors",
            store.table,
            embedder::MODEL_DIM,
            store.opts.dim
        )));
    }
    let opts = &store.opts;
    let depth = depth.max(1);
    let words = text::query_words(text);
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    // Each retriever keeps its best `depth` visible rows: hidden rows (expired,
    // superseded) take no candidate's place. The keyword side skips them as it ranks
    // (from the kept sets outside transactions, else one statement per row it scores in
    // full); the graph walk skips superseded ones where they are kept. The walk fetches a
    // few rows beyond `depth` for what it cannot skip.
    let hidden = store.hidden_kept()?;
    let hides = |id: i64| -> Result<bool> {
        Ok(match &hidden {
            Some(h) => h.hides(id, vis.now, vis.include_superseded),
            None => !store
                .visible_of(&[id], vis.now, vis.include_superseded)?
                .contains(&id),
        })
    };
    let fetch_words = depth;
    let fetch_vectors = match &hidden {
        Some(h) if h.expiring.is_empty() => depth,
        _ => depth.saturating_add(HIDDEN_MARGIN),
    };
    let mut keyword_hits = if words.is_empty() {
        Vec::new()
    } else {
        store.keyword_words(&words, ns, fetch_words, Some(&hides))?
    };
    let qv = embedder::get()?.embed(text)?;
    let mut vector_hits = if vis.include_superseded {
        ann.search(store, &qv, fetch_vectors, ns)?
    } else {
        ann.search_visible(store, &qv, fetch_vectors, ns)?
    };
    // A full list means the retriever may hold more rows than it gave.
    let deeper = keyword_hits.len() >= fetch_words || vector_hits.len() >= fetch_vectors;
    // The keyword side returned visible rows only; the walk's hidden ones go now.
    let fetched: Vec<i64> = vector_hits.iter().map(|h| h.0).collect();
    let shown = visible(store, hidden.as_ref(), &fetched, vis)?;
    keyword_hits.truncate(depth);
    vector_hits.retain(|(id, _)| shown.contains(id));
    vector_hits.truncate(depth);

    // Keyword side, normalised by the best row's BM25 (FTS5's bm25 is negative).
    let best = keyword_hits.iter().map(|(_, b)| -b).fold(0.0f64, f64::max);
    let mut keyword_part: HashMap<i64, f64> = HashMap::new();
    if best > 0.0 {
        for (id, b) in &keyword_hits {
            keyword_part.insert(*id, (-b / best).max(0.0));
        }
    }
    let mut candidates: Vec<i64> = keyword_hits.iter().map(|(id, _)| *id).collect();
    for (id, _) in &vector_hits {
        if !keyword_part.contains_key(id) {
            candidates.push(*id);
        }
    }
    let pairs: Vec<(i64, i64)> = if opts.hybrid_context_weight > 0.0 {
        store.neighbours_of(&candidates, opts.hybrid_context_window)?
    } else {
        Vec::new()
    };
    let (own, distance) = own_scores(store, &qv, &candidates, &pairs, &vector_hits, &keyword_part)?;
    let mut ranked = with_context(&own, &pairs, opts.hybrid_context_weight);
    // A hidden neighbour still lends its score as context, but is not a result.
    let others: HashSet<i64> = pairs
        .iter()
        .map(|&(_, n)| n)
        .filter(|n| !keyword_part.contains_key(n) && !vector_hits.iter().any(|h| h.0 == *n))
        .collect();
    let others_list: Vec<i64> = others.iter().copied().collect();
    let shown = visible(store, hidden.as_ref(), &others_list, vis)?;
    ranked.retain(|(id, _)| !others.contains(id) || shown.contains(id));
    let found = ranked
        .into_iter()
        .take(k)
        .map(|(id, score)| Found {
            id,
            distance: distance.get(&id).copied(),
            score: Some(score),
        })
        .collect();
    Ok(Hybrid { found, deeper })
}

/// The ids among `ids` (rows that exist: the retrievers' hits and the neighbours read
/// from the content table) that `vis` lets a search return: from the kept sets when
/// `hidden` holds them, else one statement ([`Store::visible_of`]).
///
/// # Errors
/// SQLite errors.
fn visible(
    store: &Store,
    hidden: Option<&Hidden>,
    ids: &[i64],
    vis: Visibility,
) -> Result<HashSet<i64>> {
    match hidden {
        Some(h) => Ok(ids
            .iter()
            .copied()
            .filter(|&id| !h.hides(id, vis.now, vis.include_superseded))
            .collect()),
        None => store.visible_of(ids, vis.now, vis.include_superseded),
    }
}

/// What [`hybrid`] found.
#[derive(Debug)]
pub struct Hybrid {
    /// Up to `k` visible rows, best first.
    pub found: Vec<Found>,
    /// Whether a deeper search could find more rows: a retriever returned as many as it
    /// was asked for (fewer than `k` found and `deeper`: hidden rows crowded the
    /// candidates; a search with a larger `depth` finds more).
    pub deeper: bool,
}

/// The own score of every row hybrid search ranks (the candidates and their
/// neighbours): `w * keyword part + (1 - w) * cosine similarity`, and the row's distance
/// under the table's metric (rows without a vector: none). On a cosine table the vector
/// side's distances are known; the other rows' vectors are read in one statement.
fn own_scores(
    store: &Store,
    qv: &[f32],
    candidates: &[i64],
    pairs: &[(i64, i64)],
    vector_hits: &[(i64, f32)],
    keyword_part: &HashMap<i64, f64>,
) -> Result<(HashMap<i64, f64>, HashMap<i64, f64>)> {
    let opts = &store.opts;
    // Distance (table metric) and cosine similarity of every row to rank (candidates and
    // their neighbours): on a cosine table the vector side's are known, the rest are read
    // in one statement.
    let mut rows: Vec<i64> = candidates.to_vec();
    rows.extend(pairs.iter().map(|&(_, n)| n));
    rows.sort_unstable();
    rows.dedup();
    let cosine = opts.metric == vector::Metric::Cosine;
    let mut distance: HashMap<i64, f64> = HashMap::new();
    let mut similarity: HashMap<i64, f64> = HashMap::new();
    if cosine {
        for &(id, d) in vector_hits {
            distance.insert(id, f64::from(d));
            similarity.insert(id, 1.0 - f64::from(d));
        }
    }
    let unknown: Vec<i64> = rows
        .iter()
        .copied()
        .filter(|id| !distance.contains_key(id))
        .collect();
    let dim = opts.dim;
    store.vectors_of(&unknown, |id, blob| {
        if let Some(v) = vector::decode_stored(blob, dim) {
            distance.insert(id, f64::from(opts.metric.distance(qv, &v)));
            similarity.insert(id, 1.0 - f64::from(vector::Metric::Cosine.distance(qv, &v)));
        }
    })?;
    // Own score of every row to rank.
    let w = opts.hybrid_keyword_weight;
    let own: HashMap<i64, f64> = rows
        .iter()
        .map(|id| {
            let cos = similarity.get(id).copied().unwrap_or(0.0);
            let kw = keyword_part.get(id).copied().unwrap_or(0.0);
            (*id, w * kw + (1.0 - w) * cos)
        })
        .collect();
    Ok((own, distance))
}

/// Adds context to own scores: each row of `own` scores `own + g * max own score of its
/// neighbours`, over the `(a, b)` neighbour pairs (symmetric; a missing row counts 0).
/// Returns `(id, score)` best first, ties by id.
fn with_context(own: &HashMap<i64, f64>, pairs: &[(i64, i64)], g: f64) -> Vec<(i64, f64)> {
    let mut context: HashMap<i64, f64> = HashMap::new();
    for &(a, b) in pairs {
        let (oa, ob) = (
            own.get(&a).copied().unwrap_or(0.0),
            own.get(&b).copied().unwrap_or(0.0),
        );
        let ca = context.entry(a).or_insert(0.0);
        *ca = ca.max(ob);
        let cb = context.entry(b).or_insert(0.0);
        *cb = cb.max(oa);
    }
    let mut out: Vec<(i64, f64)> = own
        .iter()
        .map(|(&id, &s)| (id, s + g * context.get(&id).copied().unwrap_or(0.0)))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
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

    fn own(v: &[(i64, f64)]) -> HashMap<i64, f64> {
        v.iter().copied().collect()
    }

    #[test]
    fn context_lifts_the_neighbour_of_a_strong_row() {
        // 2 matches nothing itself but sits next to 1, the best row; 3 is a weak match.
        let o = own(&[(1, 0.9), (2, 0.1), (3, 0.4), (4, 0.0)]);
        let ranked = with_context(&o, &[(1, 2), (3, 4)], 0.5);
        let ids: Vec<i64> = ranked.iter().map(|r| r.0).collect();
        assert_eq!(ids, vec![1, 2, 3, 4]);
        assert!((ranked[1].1 - (0.1 + 0.5 * 0.9)).abs() < 1e-12);
        // 1's own context is its neighbour 2: 0.9 + 0.5 * 0.1.
        assert!((ranked[0].1 - 0.95).abs() < 1e-12);
    }

    #[test]
    fn no_context_keeps_own_order_and_breaks_ties_by_id() {
        let o = own(&[(5, 0.2), (3, 0.2), (1, 0.1), (9, 0.7)]);
        let ranked = with_context(&o, &[(9, 1)], 0.0);
        let ids: Vec<i64> = ranked.iter().map(|r| r.0).collect();
        assert_eq!(ids, vec![9, 3, 5, 1]);
    }

    #[test]
    fn context_takes_the_best_neighbour_not_the_sum() {
        let o = own(&[(1, 0.3), (2, 0.0), (3, 0.6)]);
        let ranked = with_context(&o, &[(2, 1), (2, 3)], 1.0);
        let two = ranked.iter().find(|r| r.0 == 2).map(|r| r.1);
        assert_eq!(two, Some(0.6));
    }
}
