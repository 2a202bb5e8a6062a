//! `<table>_fts`: the contentless FTS5 index over `content` (the text itself is in
//! `<table>_content`), and the BM25 keyword query.

use std::collections::HashMap;

use rusqlite::params;

use super::{Store, bm25};
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
    /// Ranked by [`bm25::NAME`] (FTS5's own BM25, computed in full only for rows that can
    /// be among the best `limit`: the same rows and scores as `bm25()`), registered on
    /// this connection at its first use; FTS5's `bm25()` where it cannot be.
    ///
    /// # Errors
    /// FTS5 syntax errors, prefixed with what was searched.
    pub(crate) fn keyword(
        &self,
        query: &str,
        namespace: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(i64, f64)>> {
        match self.keyword_ranked(query, namespace, limit, true) {
            Err(Error::Sqlite(e)) if e.to_string().contains("no such function") => {
                if bm25::register(&self.conn) {
                    self.keyword_ranked(query, namespace, limit, true)
                } else {
                    self.keyword_ranked(query, namespace, limit, false)
                }
            }
            r => r,
        }
    }

    /// Keyword search for free text already reduced to its `words` (alphanumeric runs,
    /// [`crate::search::text`]): the rows of `"w1" OR "w2" ..`, best BM25 first, at most
    /// `limit`: exactly [`Store::keyword`]'s rows and scores for that OR query.
    ///
    /// Outside transactions the words' document frequencies come from a per-connection
    /// cache (valid while nothing changed, [`Store::change_key`]) and are handed to
    /// [`bm25`], which then skips its own pass over each word's rows.
    ///
    /// # Errors
    /// As [`Store::keyword`].
    pub(crate) fn keyword_words(
        &self,
        words: &[&str],
        namespace: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(i64, f64)>> {
        let all = or_query(words);
        let Some(key) = self.change_key()? else {
            return self.keyword(&all, namespace, limit);
        };
        let dfs = self.document_frequencies(key, words)?;
        match self.keyword_scored(&all, namespace, limit, &dfs) {
            Err(Error::Sqlite(e)) if e.to_string().contains("no such function") => {
                if bm25::register(&self.conn) {
                    self.keyword_scored(&all, namespace, limit, &dfs)
                } else {
                    self.keyword(&all, namespace, limit)
                }
            }
            r => r,
        }
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

    /// splitmix64.
    fn next(x: &mut u64) -> u64 {
        *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[test]
    fn cached_frequencies_give_the_plain_or_query_result() {
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
                    // Twice: the second run reads the cached document frequencies.
                    for _ in 0..2 {
                        let got = s
                            .keyword_words(&ws, ns, k)
                            .unwrap_or_else(|e| panic!("{e}"));
                        assert_eq!(got, want, "{ws:?} {ns:?} k {k}");
                    }
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
        assert_eq!(
            s.keyword_words(&ws, None, 5)
                .unwrap_or_else(|e| panic!("{e}")),
            want
        );
        assert_eq!(want.first().map(|h| h.0), Some(9999));
    }
}
