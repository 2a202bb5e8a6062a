//! `<table>_fts`: the contentless FTS5 index over `content` (the text itself is in
//! `<table>_content`), and the BM25 keyword query.

use rusqlite::params;

use super::{Store, bm25};
use crate::error::{Error, Result};
use crate::vector;

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
