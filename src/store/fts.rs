//! `<table>_fts`: the contentless FTS5 index over `content` (the text itself is in
//! `<table>_content`), and the BM25 keyword query.

use rusqlite::params;

use super::Store;
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
    /// # Errors
    /// FTS5 syntax errors, prefixed with what was searched.
    pub(crate) fn keyword(
        &self,
        query: &str,
        namespace: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(i64, f64)>> {
        let limit = limit.min(i64::MAX as usize) as i64;
        let wrap = |e: rusqlite::Error| {
            Error::invalid(format!("content MATCH '{}': {e}", vector::clip(query)))
        };
        let mut out = Vec::new();
        match namespace {
            Some(ns) => {
                let sql = self.sql(|| format!(
                    "SELECT {bare}.rowid, bm25({bare}) FROM {fts} JOIN {content} c ON c.id = {bare}.rowid \
                     WHERE {bare} MATCH ?1 AND c.namespace = ?2 ORDER BY bm25({bare}) LIMIT ?3",
                    fts = self.q.fts,
                    bare = self.q.fts_bare,
                    content = self.q.content
                ));
                let mut st = self.conn.prepare_cached(&sql)?;
                let rows = st
                    .query_map(params![query, ns, limit], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(wrap)?;
                for r in rows {
                    out.push(r.map_err(wrap)?);
                }
            }
            None => {
                let sql = self.sql(|| format!(
                    "SELECT rowid, bm25({bare}) FROM {fts} WHERE {bare} MATCH ?1 ORDER BY bm25({bare}) LIMIT ?2",
                    fts = self.q.fts,
                    bare = self.q.fts_bare
                ));
                let mut st = self.conn.prepare_cached(&sql)?;
                let rows = st
                    .query_map(params![query, limit], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(wrap)?;
                for r in rows {
                    out.push(r.map_err(wrap)?);
                }
            }
        }
        Ok(out)
    }
}
