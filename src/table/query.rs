//! The read path: one decoded query ([`Query`]) run against the table.
//!
//! A search runs the retriever (KNN, keyword or hybrid, [`crate::search`]) for a pool of
//! candidates, reads the candidates' rows in one statement, drops the hidden ones
//! (expired, or superseded unless asked for) and, when hidden rows crowd the top, runs
//! again deeper (doubling, up to [`MAX_EXTRA`] extra); then recency/importance re-rank
//! ([`crate::search::rank`]) and the first `k` are kept. A scan lists ids.

use std::collections::HashMap;
use std::rc::Rc;

use super::MemoryTable;
use crate::error::Result;
use crate::row::Row;
use crate::search::rank::{Components, Ranking};
use crate::search::{self, Found};

/// Most extra candidates a search fetches to make up for hidden (expired, superseded)
/// rows among its best ones: after that it returns what is visible.
pub(crate) const MAX_EXTRA: usize = 4 * search::MAX_K as usize;

/// The retriever of a search.
#[derive(Debug, Clone)]
pub(crate) enum Search {
    /// `embedding MATCH ?`: the query vector, `[f32; dim]`.
    Knn(Vec<f32>),
    /// `content MATCH ?`: an FTS5 query.
    Keyword(String),
    /// `<table> MATCH ?`: the text, embedded and matched by words.
    Hybrid(String),
}

/// A query as the adapter decoded it from xFilter's arguments.
#[derive(Debug, Clone)]
pub(crate) enum Query {
    /// A search for `k` results (keyword without `k`: every match).
    Search {
        search: Search,
        k: usize,
        /// The value of the hidden `k` column in the results.
        k_column: Option<i64>,
        namespace: Option<String>,
        ranking: Ranking,
        include_superseded: bool,
        /// The statement reads no stored column of the results (only `id`, `distance`,
        /// `score` and the like, `sql::planner::bit::IDS_ONLY`): their rows need not be read,
        /// only whether they are hidden.
        ids_only: bool,
    },
    /// A plain scan: one id, or every id (of one namespace), in id order.
    Scan {
        rowid: Option<i64>,
        namespace: Option<String>,
    },
    /// A query that matches nothing (`MATCH NULL`, `namespace = NULL`, ...).
    Empty,
}

/// A stored row read for a result, with its `superseded_by` value.
pub(crate) type Stored = (Row, Option<i64>);

/// The table an as-of answer was read from ([`MemoryTable::query_as_of`]).
pub(crate) struct AsOf {
    /// The version the answer is as of (`None`: a branch's answer, read from its working
    /// copy, [`super::branch`]).
    pub(crate) version: Option<i64>,
    /// The private copy of the table at that version, or a branch's working copy (the
    /// cursor reads embeddings from it).
    pub(crate) table: Rc<MemoryTable>,
}

impl std::fmt::Debug for AsOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AsOf({:?})", self.version)
    }
}

/// What a query returns: the results in order and, for searches, their rows (read in one
/// statement), the ranking used and its components per result.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub(crate) results: Vec<Found>,
    /// Rows of the results (searches only; a scan reads each row when reached).
    pub(crate) rows: HashMap<i64, Stored>,
    /// The ranking used, when a search ran.
    pub(crate) ranking: Option<Ranking>,
    /// Ranking components per result when recency/importance re-ranked.
    pub(crate) components: Vec<Components>,
    /// The hidden `k` column's value.
    pub(crate) k: Option<i64>,
    /// Set when the answer is as of a version (`AND as_of = ?`): every result's row is in
    /// `rows` (unless `lean`).
    pub(crate) as_of: Option<AsOf>,
    /// A search whose rows were not read (`ids_only`): every result is visible, `rows`
    /// is empty and the cursor serves ids, distances and scores alone.
    pub(crate) lean: bool,
}

impl MemoryTable {
    /// Runs `query`. Searches see this transaction's writes, embeddings included (the
    /// caller flushed).
    ///
    /// # Errors
    /// [`crate::error::Error::Invalid`] for an FTS5 syntax error or a hybrid search on a
    /// table whose dimension is not the model's; model, SQLite or usearch errors.
    pub(crate) fn query(&self, query: Query) -> Result<Answer> {
        if let Some(b) = &self.branch {
            return self.branch_query(b, query);
        }
        match query {
            Query::Empty => Ok(Answer::default()),
            Query::Scan { rowid, namespace } => {
                let ids = match rowid {
                    Some(id) => vec![id],
                    None => self.store.ids(namespace.as_deref())?,
                };
                let results = ids
                    .into_iter()
                    .map(|id| Found {
                        id,
                        distance: None,
                        score: None,
                    })
                    .collect();
                Ok(Answer {
                    results,
                    ..Answer::default()
                })
            }
            Query::Search {
                search,
                k,
                k_column,
                namespace,
                ranking,
                include_superseded,
                ids_only,
            } => {
                let mut answer = self.search(
                    &search,
                    k,
                    namespace.as_deref(),
                    ranking,
                    include_superseded,
                    ids_only,
                )?;
                answer.k = k_column;
                Ok(answer)
            }
        }
    }

    fn search(
        &self,
        search: &Search,
        k: usize,
        ns: Option<&str>,
        rank: Ranking,
        include_superseded: bool,
        ids_only: bool,
    ) -> Result<Answer> {
        let store = &self.store;
        let now = self.now();
        let need = rank.pool(k, search::MAX_K as usize);
        // Without re-ranking a statement that reads no stored column needs the results'
        // visibility only: kept sets outside transactions, else one lean statement.
        let lean = ids_only && !rank.active();
        let hidden = if lean { store.hidden_kept()? } else { None };
        // A KNN's first run takes a few candidates beyond the pool, so that hidden rows
        // among the nearest (superseded near duplicates sit next to their successors)
        // rarely force a second, deeper run: the graph walk costs the same, and the extra
        // rows' vectors and rows come in the same two statements. Not needed when the
        // search skips superseded memories itself (their ids kept, outside transactions).
        // A keyword search's first run fetches as many beyond `k` (the best `need` visible
        // rows by BM25 do not depend on how many are fetched); a hybrid search makes room
        // for hidden rows itself (see `search::hybrid`).
        let mut extra = match search {
            Search::Knn(_) if include_superseded || store.superseded_kept()?.is_none() => {
                need.min(search::HIDDEN_MARGIN)
            }
            Search::Keyword(_) => need.min(search::HIDDEN_MARGIN),
            _ => 0,
        };
        let (found, rows) = loop {
            let want = need.saturating_add(extra);
            let mut deeper = None;
            let found = match search {
                Search::Knn(q) => search::knn(
                    store,
                    &mut self.ann.borrow_mut(),
                    q,
                    want,
                    ns,
                    include_superseded,
                )?,
                Search::Keyword(q) => search::keyword(store, q, want, ns)?,
                Search::Hybrid(text) => {
                    // Without re-ranking the first run uses the depth a plain k-search
                    // uses; re-ranking wants a deeper pool. Hidden rows deepen it.
                    let depth = if rank.active() {
                        want
                    } else {
                        k.max(store.opts.hybrid_depth) + extra
                    };
                    let vis = search::Visibility {
                        now,
                        include_superseded,
                    };
                    let h = search::hybrid(
                        store,
                        &mut self.ann.borrow_mut(),
                        text,
                        want,
                        depth,
                        ns,
                        vis,
                    )?;
                    deeper = Some(h.deeper);
                    h.found
                }
            };
            // A hybrid search drops hidden rows itself: it says whether going deeper helps.
            let exhausted = deeper.map_or(found.len() < want, |d| !d);
            let (visible, rows): (Vec<Found>, HashMap<i64, Stored>) = if lean {
                let visible = match &hidden {
                    Some(h) => found
                        .into_iter()
                        .filter(|f| !h.hides(f.id, now, include_superseded))
                        .collect(),
                    None => {
                        let ids: Vec<i64> = found.iter().map(|f| f.id).collect();
                        let shown = store.visible_of(&ids, now, include_superseded)?;
                        found
                            .into_iter()
                            .filter(|f| shown.contains(&f.id))
                            .collect()
                    }
                };
                (visible, HashMap::new())
            } else {
                let ids: Vec<i64> = found.iter().map(|f| f.id).collect();
                let mut rows = store.rows_of(&ids)?;
                rows.retain(|_, (r, by)| !r.expired(now) && (include_superseded || by.is_none()));
                let visible = found
                    .into_iter()
                    .filter(|f| rows.contains_key(&f.id))
                    .collect();
                (visible, rows)
            };
            if visible.len() >= need || exhausted || extra >= MAX_EXTRA {
                break (visible, rows);
            }
            extra = (extra * 2)
                .max(k.min(MAX_EXTRA))
                .clamp(search::HIDDEN_MARGIN, MAX_EXTRA);
        };
        let (mut results, mut components) = if rank.active() {
            rank.apply(found, now, |id| {
                rows.get(&id).map(|(r, _)| (r.updated_at, r.importance))
            })
        } else {
            (found, Vec::new())
        };
        results.truncate(k);
        components.truncate(k);
        Ok(Answer {
            results,
            rows,
            ranking: Some(rank),
            components,
            k: None,
            as_of: None,
            lean,
        })
    }
}
