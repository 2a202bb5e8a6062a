//! `<table>_fts`: the contentless FTS5 index over `content` (the text itself is in
//! `<table>_content`), and the BM25 keyword query.

use std::collections::HashMap;

use rusqlite::params;

use rusqlite::OptionalExtension;

use super::{Store, bm25, postings};
use crate::error::{Error, Result};
use crate::vector;

/// Most words whose document frequency is kept ([`DfCache`]).
const DF_CACHE_MAX: usize = 4096;

/// Document frequencies of words, valid while `Store::change_key` is
/// `key` (nothing written by this connection or committed by another since).
#[derive(Default)]
pub(super) struct DfCache {
    key: Option<(u64, i64)>,
    df: HashMap<String, i64>,
}

/// `"w1" OR "w2" ..` (words are alphanumeric runs: quoting makes each an FTS5 string).
fn or_query(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| format!("\"{w}\""))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// What [`Store::postings_of`] found.
enum Walked {
    /// The OR matches no row.
    NoMatch,
    /// More postings than the cap: stream instead.
    OverCap,
    Postings(postings::Postings),
    /// Not this build's encoding (never expected).
    Malformed,
}

/// Whether `query` is exactly [`or_query`]'s form, `"w1" OR "w2" ..`, each word a run of
/// alphanumeric characters (what [`crate::search::text`] makes of free text, and
/// `subcog_fts_query` returns).
fn is_or_query(query: &str) -> bool {
    query.split(" OR ").all(|p| {
        p.strip_prefix('"')
            .and_then(|p| p.strip_suffix('"'))
            .is_some_and(|w| !w.is_empty() && w.chars().all(char::is_alphanumeric))
    })
}

impl Store {
    pub(super) fn fts_insert(&self, id: i64, content: &str) -> Result<()> {
        let sql =
            self.sql(|| format!("INSERT INTO {}(rowid, content) VALUES (?1, ?2)", self.q.fts));
        self.conn
            .prepare_cached(&sql)?
            .execute(params![id, content])?;
        Ok(())
    }

    pub(super) fn fts_delete(&self, id: i64, content: &str) -> Result<()> {
        let sql = self.sql(|| {
            format!(
                "INSERT INTO {}({}, rowid, content) VALUES ('delete', ?1, ?2)",
                self.q.fts, self.q.fts_bare
            )
        });
        self.conn
            .prepare_cached(&sql)?
            .execute(params![id, content])?;
        Ok(())
    }

    /// Rebuilds the FTS5 index from `<table>_content`.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn rebuild_fts(&self) -> Result<()> {
        self.conn.execute_batch(&self.sql(|| {
            format!(
                "INSERT INTO {fts}({bare}) VALUES ('delete-all');
             INSERT INTO {fts}(rowid, content) SELECT id, content FROM {content};",
                fts = self.q.fts,
                bare = self.q.fts_bare,
                content = self.q.content
            )
        }))?;
        Ok(())
    }

    /// Merges the FTS5 index's segments into one (FTS5's own `'optimize'` command), as
    /// the table's `'optimize'` and `'rebuild'` do after a bulk load: an OR query then
    /// walks one segment per word instead of one per segment (at 100,000 memories, six
    /// segments after the load; keyword search 3-5% less CPU, BENCHMARKS.md). The
    /// segments it replaces go to SQLite's free list, so the file does not shrink.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn optimize_fts(&self) -> Result<()> {
        let sql = self.sql(|| {
            format!(
                "INSERT INTO {fts}({bare}) VALUES ('optimize')",
                fts = self.q.fts,
                bare = self.q.fts_bare
            )
        });
        self.conn.prepare_cached(&sql)?.execute([])?;
        Ok(())
    }

    /// Keyword search: FTS5 `query`, best BM25 first, at most `limit` rows, optionally in
    /// one namespace. Returns `(id, bm25)`; FTS5's bm25 is negative, lower is better.
    ///
    /// An OR of quoted words (`subcog_fts_query`'s form) is ranked term at a time
    /// ([`postings`], as [`Store::keyword_words`]); any other query by [`bm25::NAME`]
    /// (FTS5's own BM25, computed in full only for rows that can be among the best
    /// `limit`). Both give the rows and scores of `ORDER BY bm25() LIMIT limit`. The
    /// functions are registered on this connection at their first use; FTS5's `bm25()`
    /// ranks where they cannot be.
    ///
    /// # Errors
    /// FTS5 syntax errors, prefixed with what was searched.
    pub(crate) fn keyword(
        &self,
        query: &str,
        namespace: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(i64, f64)>> {
        // `subcog_fts_query`'s form (an OR of quoted words) is ranked term at a time.
        if is_or_query(query)
            && let Some(hits) =
                self.keyword_postings(query, namespace, limit, None, postings::MAX_POSTINGS)?
        {
            return Ok(hits);
        }
        self.keyword_streamed(query, namespace, limit)
    }

    /// Runs `f`, a statement calling our FTS5 auxiliary functions ([`bm25::NAME`],
    /// [`postings::NAME`]). They are registered when the extension is loaded; should this
    /// connection lack them ("no such function"), they are registered and `f` runs once
    /// more. `None` when they cannot be (the connection's SQLite has no FTS5 API).
    ///
    /// # Errors
    /// `f`'s other errors.
    fn with_fts_functions<T>(&self, f: impl Fn() -> Result<T>) -> Result<Option<T>> {
        match f() {
            Err(Error::Sqlite(e)) if e.to_string().contains("no such function") => {
                if bm25::register(&self.conn) {
                    f().map(Some)
                } else {
                    Ok(None)
                }
            }
            r => r.map(Some),
        }
    }

    /// [`Store::keyword`] through [`bm25`], streamed: FTS5 calls it once per matching row.
    fn keyword_streamed(
        &self,
        query: &str,
        namespace: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(i64, f64)>> {
        match self.with_fts_functions(|| self.keyword_ranked(query, namespace, limit, true))? {
            Some(hits) => Ok(hits),
            None => self.keyword_ranked(query, namespace, limit, false),
        }
    }

    /// Keyword search for free text already reduced to its `words` (alphanumeric runs,
    /// [`crate::search::text`]): the rows of `"w1" OR "w2" ..`, best BM25 first (ties by
    /// rowid), at most `limit`: exactly [`Store::keyword`]'s rows and scores for that OR
    /// query.
    ///
    /// Term at a time ([`postings`]): each word's doclist is walked once and only the rows
    /// that can reach the best `limit` have their length read. Past
    /// [`postings::MAX_POSTINGS`] the rows are streamed through [`bm25`] instead, the
    /// words' document frequencies then coming, outside transactions, from a
    /// per-connection cache (valid while nothing changed, [`Store::change_key`]).
    ///
    /// `skip(rowid)` names rows the caller will not use (hidden ones: expired,
    /// superseded): term at a time they take no place, so the result is the best `limit`
    /// rows not skipped, and their lengths are never read. The streamed path fetches
    /// [`crate::search::HIDDEN_MARGIN`] rows beyond `limit` and drops the skipped ones
    /// (fewer than `limit` come back when more than that many of the best are skipped).
    ///
    /// # Errors
    /// As [`Store::keyword`].
    pub(crate) fn keyword_words(
        &self,
        words: &[&str],
        namespace: Option<&str>,
        limit: usize,
        skip: Option<&dyn Fn(i64) -> Result<bool>>,
    ) -> Result<Vec<(i64, f64)>> {
        self.keyword_words_capped(words, namespace, limit, skip, postings::MAX_POSTINGS)
    }

    /// [`Store::keyword_words`], streaming when the postings pass `max_postings`.
    fn keyword_words_capped(
        &self,
        words: &[&str],
        namespace: Option<&str>,
        limit: usize,
        skip: Option<&dyn Fn(i64) -> Result<bool>>,
        max_postings: usize,
    ) -> Result<Vec<(i64, f64)>> {
        let all = or_query(words);
        if let Some(hits) = self.keyword_postings(&all, namespace, limit, skip, max_postings)? {
            return Ok(hits);
        }
        let Some(skip) = skip else {
            return self.keyword_words_streamed(&all, words, namespace, limit);
        };
        let fetch = limit.saturating_add(crate::search::HIDDEN_MARGIN);
        let hits = self.keyword_words_streamed(&all, words, namespace, fetch)?;
        let mut kept = Vec::with_capacity(limit);
        for h in hits {
            if kept.len() < limit && !skip(h.0)? {
                kept.push(h);
            }
        }
        Ok(kept)
    }

    /// The OR query `all` of `words` streamed through [`bm25`], the words' document
    /// frequencies cached outside transactions.
    fn keyword_words_streamed(
        &self,
        all: &str,
        words: &[&str],
        namespace: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(i64, f64)>> {
        let Some(key) = self.change_key()? else {
            return self.keyword_streamed(all, namespace, limit);
        };
        let dfs = self.document_frequencies(key, words)?;
        match self.with_fts_functions(|| self.keyword_scored(all, namespace, limit, &dfs))? {
            Some(hits) => Ok(hits),
            None => self.keyword_streamed(all, namespace, limit),
        }
    }

    /// `query` (an OR of words) ranked term at a time ([`postings::top_k`]), leaving out
    /// the rows `skip` names; `None` when its postings pass [`postings::MAX_POSTINGS`] or
    /// the function cannot be registered.
    fn keyword_postings(
        &self,
        query: &str,
        namespace: Option<&str>,
        limit: usize,
        skip: Option<&dyn Fn(i64) -> Result<bool>>,
        max_postings: usize,
    ) -> Result<Option<Vec<(i64, f64)>>> {
        if limit == 0 {
            return Ok(Some(Vec::new()));
        }
        let Some(found) = self.with_fts_functions(|| self.postings_of(query, max_postings))? else {
            return Ok(None);
        };
        let p = match found {
            Walked::NoMatch => return Ok(Some(Vec::new())),
            Walked::OverCap => return Ok(None),
            Walked::Postings(p) => p,
            Walked::Malformed => {
                return Err(Error::Index(format!(
                    "{}: keyword search: a malformed {} result",
                    self.table,
                    postings::NAME
                )));
            }
        };
        let size_sql = self.sql(|| format!("SELECT sz FROM {} WHERE id = ?1", self.q.fts_docsize));
        let mut size = self.conn.prepare_cached(&size_sql)?;
        let in_ns_sql = self.sql(|| {
            format!(
                "SELECT 1 FROM {} WHERE id = ?1 AND namespace = ?2",
                self.q.content
            )
        });
        let mut in_ns = match namespace {
            Some(_) => Some(self.conn.prepare_cached(&in_ns_sql)?),
            None => None,
        };
        let hits = postings::top_k(p, limit, |id| {
            if let Some(skip) = skip
                && skip(id)?
            {
                return Ok(None);
            }
            if let (Some(st), Some(ns)) = (in_ns.as_mut(), namespace)
                && !st.exists(params![id, ns])?
            {
                return Ok(None);
            }
            // A row gone since the walk (another connection's commit between two
            // statements outside a transaction) is left out, as a later walk would.
            let sz: Option<Vec<u8>> = size.query_row([id], |r| r.get(0)).optional()?;
            sz.map(|sz| postings::docsize_total(&sz)).transpose()
        })?;
        Ok(Some(hits))
    }

    /// `subcog_postings` of `query`'s OR, decoded from SQLite's copy of the result.
    fn postings_of(&self, query: &str, max: usize) -> Result<Walked> {
        let sql = self.sql(|| {
            format!(
                "SELECT {name}({bare}, ?2) FROM {fts} WHERE {bare} MATCH ?1 LIMIT 1",
                name = postings::NAME,
                bare = self.q.fts_bare,
                fts = self.q.fts
            )
        });
        let wrap = |e: rusqlite::Error| match e {
            rusqlite::Error::SqliteFailure(_, Some(ref m)) if m.contains("no such function") => {
                Error::Sqlite(e)
            }
            e => Error::invalid(format!("content MATCH '{}': {e}", vector::clip(query))),
        };
        let mut st = self.conn.prepare_cached(&sql).map_err(Error::Sqlite)?;
        st.query_row(params![query, max.min(i64::MAX as usize) as i64], |r| {
            Ok(match r.get_ref(0)? {
                rusqlite::types::ValueRef::Null => Walked::OverCap,
                v => match postings::Postings::decode(v.as_blob()?) {
                    Some(p) => Walked::Postings(p),
                    None => Walked::Malformed,
                },
            })
        })
        .optional()
        .map(|w| w.unwrap_or(Walked::NoMatch))
        .map_err(wrap)
    }

    /// The document frequency of each of `words`, from the cache when it is valid for
    /// `key`, else counted (one FTS5 query per word: the pass `bm25()` would make) and kept.
    fn document_frequencies(&self, key: (u64, i64), words: &[&str]) -> Result<Vec<i64>> {
        let mut cache = self.df.borrow_mut();
        if cache.key != Some(key) || cache.df.len() + words.len() > DF_CACHE_MAX {
            cache.key = Some(key);
            cache.df.clear();
        }
        let count = self.sql(|| {
            format!(
                "SELECT count(*) FROM {} WHERE {} MATCH ?1",
                self.q.fts, self.q.fts_bare
            )
        });
        let mut out = Vec::with_capacity(words.len());
        for w in words {
            let df = match cache.df.get(*w) {
                Some(df) => *df,
                None => {
                    let df: i64 = self
                        .conn
                        .prepare_cached(&count)?
                        .query_row([format!("\"{w}\"")], |r| r.get(0))?;
                    cache.df.insert((*w).to_string(), df);
                    df
                }
            };
            out.push(df);
        }
        Ok(out)
    }

    /// `query` (an OR of `dfs.len()` words) ranked by `subcog_bm25(fts, limit, dfs..)`
    /// (see [`bm25`]).
    fn keyword_scored(
        &self,
        query: &str,
        namespace: Option<&str>,
        limit: usize,
        dfs: &[i64],
    ) -> Result<Vec<(i64, f64)>> {
        let limit = limit.min(i64::MAX as usize) as i64;
        let wrap = |e: rusqlite::Error| {
            Error::invalid(format!("content MATCH '{}': {e}", vector::clip(query)))
        };
        let bare = &self.q.fts_bare;
        let mut args = String::new();
        for i in 0..dfs.len() {
            args.push_str(&format!(", ?{}", 4 + i));
        }
        let rank = format!("{}({bare}, ?3{args})", bm25::NAME);
        // Built per call (the number of words varies); prepare_cached keeps the texts.
        let sql = self.keyword_sql(namespace.is_some(), &rank);
        let mut st = self.conn.prepare_cached(&sql)?;
        st.raw_bind_parameter(1, query)?;
        st.raw_bind_parameter(2, namespace.unwrap_or(""))?;
        st.raw_bind_parameter(3, limit)?;
        for (i, df) in dfs.iter().enumerate() {
            st.raw_bind_parameter(4 + i, *df)?;
        }
        let mut out = Vec::new();
        let mut rows = st.raw_query();
        while let Some(r) = rows.next().map_err(wrap)? {
            let (id, score): (i64, f64) = (r.get(0)?, r.get(1)?);
            if score < bm25::SKIPPED {
                out.push((id, score));
            }
        }
        Ok(out)
    }

    /// [`Store::keyword`] ranked by `subcog_bm25` (`topk`) or FTS5's `bm25()`.
    fn keyword_ranked(
        &self,
        query: &str,
        namespace: Option<&str>,
        limit: usize,
        topk: bool,
    ) -> Result<Vec<(i64, f64)>> {
        let limit = limit.min(i64::MAX as usize) as i64;
        let wrap = |e: rusqlite::Error| {
            Error::invalid(format!("content MATCH '{}': {e}", vector::clip(query)))
        };
        let rank = |bare: &str| {
            if topk {
                format!("{}({bare}, ?3)", bm25::NAME)
            } else {
                format!("bm25({bare})")
            }
        };
        let sql = match (namespace, topk) {
            (Some(_), true) => self.sql(|| self.keyword_sql(true, &rank(&self.q.fts_bare))),
            (Some(_), false) => self.sql(|| self.keyword_sql(true, &rank(&self.q.fts_bare))),
            (None, true) => self.sql(|| self.keyword_sql(false, &rank(&self.q.fts_bare))),
            (None, false) => self.sql(|| self.keyword_sql(false, &rank(&self.q.fts_bare))),
        };
        let mut st = self.conn.prepare_cached(&sql)?;
        let ns = namespace.unwrap_or("");
        let mut out = Vec::new();
        let rows = st
            .query_map(params![query, ns, limit], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(wrap)?;
        for r in rows {
            let (id, score): (i64, f64) = r.map_err(wrap)?;
            // Rows that could not be among the best `limit` (none when the LIMIT holds).
            if score < bm25::SKIPPED {
                out.push((id, score));
            }
        }
        Ok(out)
    }

    /// The keyword query: `?1` the FTS5 query, `?2` the namespace (`in_namespace`; else
    /// unused, compared to itself), `?3` the limit; `rank` the score expression, computed
    /// once per row (ORDER BY the column, not the expression again: `subcog_bm25` must see
    /// each row once).
    fn keyword_sql(&self, in_namespace: bool, rank: &str) -> String {
        let (fts, bare, content) = (&self.q.fts, &self.q.fts_bare, &self.q.content);
        if in_namespace {
            format!(
                "SELECT {bare}.rowid, {rank} FROM {fts} JOIN {content} c ON c.id = {bare}.rowid \
                 WHERE {bare} MATCH ?1 AND c.namespace = ?2 ORDER BY 2 LIMIT ?3"
            )
        } else {
            format!(
                "SELECT rowid, {rank} FROM {fts} WHERE {bare} MATCH ?1 AND ?2 = ?2 \
                 ORDER BY 2 LIMIT ?3"
            )
        }
    }
}

#[cfg(all(test, feature = "bundled"))]
mod tests {
    use super::*;
    use crate::options::TableOptions;

    /// A store whose rows are `texts` (content and FTS5 only: all the keyword side reads),
    /// namespace `a` for every third row, else `b`.
    fn store(texts: &[String]) -> Store {
        let conn = Connection::open_in_memory().unwrap_or_else(|e| panic!("{e}"));
        crate::register(&conn).unwrap_or_else(|e| panic!("{e}"));
        let s = Store::create(conn, "main", "m", TableOptions::default())
            .unwrap_or_else(|e| panic!("{e}"));
        for (i, t) in texts.iter().enumerate() {
            let id = i as i64 + 1;
            let ns = if i % 3 == 0 { "a" } else { "b" };
            s.conn
                .execute(
                    "INSERT INTO m_content(id, content, namespace, tags, metadata, importance, \
                     created_at, updated_at) VALUES (?1, ?2, ?3, '[]', '{}', 0.5, 0, 0)",
                    params![id, t, ns],
                )
                .unwrap_or_else(|e| panic!("{e}"));
            s.fts_insert(id, t).unwrap_or_else(|e| panic!("{e}"));
        }
        s
    }

    use rusqlite::Connection;

    use crate::store::test_rng::next;

    #[test]
    fn is_or_query_takes_only_the_plain_or_form() {
        assert!(is_or_query("\"a\" OR \"b2\""));
        assert!(is_or_query("\"ü\""));
        for q in [
            "a OR b",
            "\"a b\"",
            "\"a\" AND \"b\"",
            "\"\"",
            "\"a\" OR",
            "content:\"a\"",
        ] {
            assert!(!is_or_query(q), "{q}");
        }
    }

    /// Words FTS5's tokenizer splits, folds or drops: the term-at-a-time ranking still
    /// gives `bm25()`'s rows and scores, through `keyword` and `keyword_words` alike.
    #[test]
    fn unusual_words_rank_as_bm25_does() {
        let texts: Vec<String> = [
            "café crème",
            "cafe creme",
            "x½y z",
            "½ alone",
            "ǅemal ǆ",
            "naïve naive naive",
            "straße strasse",
            "ﬁne ﬁle",
            "résumé",
            "plain words here",
            "x y",
            "²³ numbers",
        ]
        .iter()
        .cycle()
        .take(60)
        .enumerate()
        .map(|(i, t)| format!("{t} r{i}"))
        .collect();
        let s = store(&texts);
        for q in [
            vec!["café", "naive"],
            vec!["½"],
            vec!["x½y", "z"],
            vec!["ǆemal", "ǅ"],
            vec!["strasse", "straße"],
            vec!["ﬁne"],
            vec!["²³"],
            vec!["résumé", "resume"],
            vec!["nothing", "matches"],
            vec!["r1", "r1"],
        ] {
            for ns in [None, Some("a")] {
                for k in [1usize, 5, 100] {
                    let want = s
                        .keyword_ranked(&or_query(&q), ns, k, false)
                        .unwrap_or_else(|e| panic!("{e}"));
                    let got = s
                        .keyword_words(&q, ns, k, None)
                        .unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(got, want, "{q:?} {ns:?} k {k}");
                    let got = s
                        .keyword(&or_query(&q), ns, k)
                        .unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(got, want, "{q:?} {ns:?} k {k}, keyword");
                }
            }
        }
    }

    #[test]
    fn term_at_a_time_and_streamed_give_the_plain_or_query_result() {
        // Zipf-like words: "w0" is in most rows, "w40" in few.
        let mut r = 7u64;
        let texts: Vec<String> = (0..4000)
            .map(|_| {
                let n = 1 + next(&mut r) % 25;
                (0..n)
                    .map(|_| {
                        let a = next(&mut r) % 60;
                        format!("w{}", next(&mut r) % (a + 1))
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let s = store(&texts);
        for _ in 0..150 {
            let n = 1 + next(&mut r) % 5;
            let mut words: Vec<String> = Vec::new();
            for _ in 0..n {
                let w = format!("w{}", next(&mut r) % 60);
                if !words.contains(&w) {
                    words.push(w);
                }
            }
            let ws: Vec<&str> = words.iter().map(String::as_str).collect();
            for ns in [None, Some("a")] {
                for k in [1usize, 10, 50] {
                    let want = s
                        .keyword_ranked(&or_query(&ws), ns, k, false)
                        .unwrap_or_else(|e| panic!("{e}"));
                    // Term at a time over the postings.
                    let got = s
                        .keyword_words(&ws, ns, k, None)
                        .unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(got, want, "{ws:?} {ns:?} k {k}");
                    // Past the cap: streamed, twice (the second run reads the cached
                    // document frequencies).
                    for _ in 0..2 {
                        let got = s
                            .keyword_words_capped(&ws, ns, k, None, 10)
                            .unwrap_or_else(|e| panic!("{e}"));
                        assert_eq!(got, want, "{ws:?} {ns:?} k {k}, streamed");
                    }
                    // Skipped rows take no place: term at a time the best k of the
                    // others; streamed, the others among the best k + HIDDEN_MARGIN.
                    let skip = |id: i64| -> Result<bool> { Ok(id % 3 == 0) };
                    let skipped = |n: usize| -> Vec<(i64, f64)> {
                        let mut all = s
                            .keyword_ranked(&or_query(&ws), ns, n, false)
                            .unwrap_or_else(|e| panic!("{e}"));
                        all.retain(|h| h.0 % 3 != 0);
                        all.truncate(k);
                        all
                    };
                    let got = s
                        .keyword_words(&ws, ns, k, Some(&skip))
                        .unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(got, skipped(texts.len()), "{ws:?} {ns:?} k {k}, skip");
                    let got = s
                        .keyword_words_capped(&ws, ns, k, Some(&skip), 10)
                        .unwrap_or_else(|e| panic!("{e}"));
                    let margin = k + crate::search::HIDDEN_MARGIN;
                    assert_eq!(got, skipped(margin), "{ws:?} {ns:?} k {k}, skip, streamed");
                }
            }
        }
        assert!(s.df.borrow().df.len() > 30);
        // A write changes the frequencies: the cache is dropped, results stay exact.
        s.conn
            .execute(
                "INSERT INTO m_content(id, content, namespace, tags, metadata, importance, \
                 created_at, updated_at) VALUES (9999, 'w59 w59 w59', 'a', '[]', '{}', 0.5, 0, 0)",
                [],
            )
            .unwrap_or_else(|e| panic!("{e}"));
        s.fts_insert(9999, "w59 w59 w59")
            .unwrap_or_else(|e| panic!("{e}"));
        let ws = ["w59", "w0"];
        let want = s
            .keyword_ranked(&or_query(&ws), None, 5, false)
            .unwrap_or_else(|e| panic!("{e}"));
        for cap in [10, postings::MAX_POSTINGS] {
            assert_eq!(
                s.keyword_words_capped(&ws, None, 5, None, cap)
                    .unwrap_or_else(|e| panic!("{e}")),
                want
            );
        }
        assert_eq!(want.first().map(|h| h.0), Some(9999));
    }
}
