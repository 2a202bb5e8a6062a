//! `<table>_content`: one row per memory (every column but the embedding), and the
//! write-through of a row to the other shadow tables (FTS5, vectors, pending, links), as
//! FTS5's `fts5_storage.c` writes its content table through to its index.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::{SUPERSEDES, Store, VectorChange, id_list};
use crate::error::{Error, Result};
use crate::row::Row;
use crate::table::dedup::content_hash;

/// Random ids [`Store::next_id`] tries once the largest id is `i64::MAX` (SQLite tries
/// 100 before SQLITE_FULL).
const RANDOM_ID_TRIES: usize = 100;

impl Store {
    /// Whether a memory with this id exists.
    pub(crate) fn exists(&self, id: i64) -> Result<bool> {
        let sql = self.sql(|| format!("SELECT 1 FROM {} WHERE id = ?1", self.q.content));
        Ok(self.conn.prepare_cached(&sql)?.exists([id])?)
    }

    /// Reads one memory (without its embedding).
    pub(crate) fn get(&self, id: i64) -> Result<Option<Row>> {
        let sql = self.sql(|| {
            format!(
                "SELECT {ROW_COLUMNS} FROM {} c WHERE id = ?1",
                self.q.content
            )
        });
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([id], read_row)
            .optional()?)
    }

    /// The rows of `ids` that exist, each with the newest memory that supersedes it (the
    /// `superseded_by` column), in one statement (`json_each` over the ids).
    pub(crate) fn rows_of(&self, ids: &[i64]) -> Result<HashMap<i64, (Row, Option<i64>)>> {
        let mut out = HashMap::with_capacity(ids.len());
        if ids.is_empty() {
            return Ok(out);
        }
        let sql = self.sql(|| {
            format!(
                "SELECT {ROW_COLUMNS}, (SELECT max(src) FROM {l} WHERE dst = c.id AND kind = ?2) \
                 FROM json_each(?1) j JOIN {c} c ON c.id = j.value",
                c = self.q.content,
                l = self.q.links
            )
        });
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut rows = st.query(params![id_list(ids), SUPERSEDES])?;
        while let Some(r) = rows.next()? {
            let row = read_row(r)?;
            out.insert(row.id, (row, r.get(10)?));
        }
        Ok(out)
    }

    /// The id an INSERT without one gets, as SQLite allocates a rowid: the largest id + 1
    /// (1 for an empty table); once the largest id is `i64::MAX`, a random unused positive
    /// id (up to [`RANDOM_ID_TRIES`] tries).
    ///
    /// # Errors
    /// SQLite errors; `SQLITE_FULL` with "`{table}`: no free id ..." when every random try
    /// hit a used id (as SQLite says "database or disk is full" for a plain table).
    pub(crate) fn next_id(&self) -> Result<i64> {
        let sql = self.sql(|| format!("SELECT max(id) FROM {}", self.q.content));
        let max: Option<i64> = self
            .conn
            .prepare_cached(&sql)?
            .query_row([], |r| r.get(0))?;
        match max {
            None => return Ok(1),
            Some(m) if m < i64::MAX => return Ok(m + 1),
            Some(_) => {}
        }
        let sql = self.sql(|| {
            format!(
                "SELECT r FROM (SELECT random() & 9223372036854775807 AS r) \
                 WHERE r > 0 AND NOT EXISTS (SELECT 1 FROM {} WHERE id = r)",
                self.q.content
            )
        });
        let mut st = self.conn.prepare_cached(&sql)?;
        for _ in 0..RANDOM_ID_TRIES {
            if let Some(id) = st.query_row([], |r| r.get(0)).optional()? {
                return Ok(id);
            }
        }
        Err(Error::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some(format!(
                "{}: no free id for an INSERT without id ({RANDOM_ID_TRIES} random ids were \
                 in use after the largest id {}); give an explicit id",
                self.table,
                i64::MAX
            )),
        )))
    }

    /// Inserts a memory, its FTS5 entry and, per `vec`, its vector (`Set`), a note that
    /// it awaits embedding (`Defer`; `near_check`: the near-duplicate check runs once it
    /// is embedded, [`Store::unembedded`]) or nothing; marks it pending. `hash`: the
    /// content hash ([`crate::table::dedup::content_hash`]), computed once by the caller.
    pub(crate) fn insert(
        &self,
        row: &Row,
        hash: &[u8; 32],
        vec: VectorChange<'_>,
        near_check: bool,
    ) -> Result<()> {
        let sql = self.sql(|| {
            format!(
                "INSERT INTO {}(id, content, namespace, tags, metadata, source, importance, \
             created_at, updated_at, expires_at, hash) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                self.q.content
            )
        });
        self.conn.prepare_cached(&sql)?.execute(params![
            row.id,
            row.content,
            row.namespace,
            row.tags,
            row.metadata,
            row.source,
            row.importance,
            row.created_at,
            row.updated_at,
            row.expires_at,
            hash.as_slice()
        ])?;
        self.fts_insert(row.id, &row.content)?;
        match vec {
            VectorChange::Set(v) => {
                self.set_vector(row.id, v)?;
                if near_check {
                    self.mark_unembedded(row.id, true)?;
                }
            }
            VectorChange::Defer => self.mark_unembedded(row.id, near_check)?,
            VectorChange::Keep | VectorChange::Remove => {}
        }
        if self.history_on() {
            self.record_row("insert", row.id, None, Some(row), Some(None))?;
        }
        self.mark_pending(row.id)
    }

    /// Replaces the columns of memory `old.id` with `new` (same id) and, per `vec`, its vector.
    pub(crate) fn update(&self, old: &Row, new: &Row, vec: VectorChange<'_>) -> Result<()> {
        let sql = self.sql(|| format!(
            "UPDATE {} SET content = ?2, namespace = ?3, tags = ?4, metadata = ?5, source = ?6, \
             importance = ?7, created_at = ?8, updated_at = ?9, expires_at = ?10, hash = ?11 \
             WHERE id = ?1",
            self.q.content
        ));
        // The vector this change replaces, for the history (read before it is replaced).
        let old_vector = if self.history_on() && !matches!(vec, VectorChange::Keep) {
            Some(self.embedding_blob(old.id)?)
        } else {
            None
        };
        if old.content != new.content {
            self.fts_delete(old.id, &old.content)?;
        }
        self.conn.prepare_cached(&sql)?.execute(params![
            new.id,
            new.content,
            new.namespace,
            new.tags,
            new.metadata,
            new.source,
            new.importance,
            new.created_at,
            new.updated_at,
            new.expires_at,
            content_hash(&new.content).as_slice()
        ])?;
        if old.content != new.content {
            self.fts_insert(new.id, &new.content)?;
        }
        match vec {
            VectorChange::Keep => {}
            VectorChange::Set(v) => {
                self.set_vector(new.id, v)?;
                self.clear_unembedded(new.id)?;
            }
            VectorChange::Remove => {
                self.remove_vector(new.id)?;
                self.clear_unembedded(new.id)?;
            }
            VectorChange::Defer => {
                self.remove_vector(new.id)?;
                self.mark_unembedded(new.id, false)?;
            }
        }
        if old.namespace != new.namespace || !matches!(vec, VectorChange::Keep) {
            self.mark_pending(new.id)?;
        }
        if self.history_on() {
            self.record_row(
                "update",
                new.id,
                Some(old),
                Some(new),
                old_vector.as_ref().map(|v| v.as_deref()),
            )?;
        }
        Ok(())
    }

    /// Deletes a memory, its FTS5 entry and its vector; marks it pending.
    pub(crate) fn delete(&self, old: &Row) -> Result<()> {
        if self.history_on() {
            let old_vector = self.embedding_blob(old.id)?;
            self.record_row(
                "delete",
                old.id,
                Some(old),
                None,
                Some(old_vector.as_deref()),
            )?;
        }
        self.fts_delete(old.id, &old.content)?;
        let sql = self.sql(|| format!("DELETE FROM {} WHERE id = ?1", self.q.content));
        self.conn.prepare_cached(&sql)?.execute([old.id])?;
        self.remove_vector(old.id)?;
        self.clear_unembedded(old.id)?;
        self.delete_links(old.id)?;
        self.mark_pending(old.id)
    }

    /// The oldest live (unexpired at `now`) memory of `namespace` whose normalised content
    /// has this hash ([`crate::table::dedup::content_hash`]), other than `except`.
    pub(crate) fn find_by_hash(
        &self,
        namespace: &str,
        hash: &[u8; 32],
        now: i64,
        except: i64,
    ) -> Result<Option<i64>> {
        let sql = self.sql(|| {
            format!(
                "SELECT id FROM {c} WHERE namespace = ?1 AND hash = ?2 AND id <> ?4 \
             AND (expires_at IS NULL OR expires_at > ?3) \
             AND NOT EXISTS (SELECT 1 FROM {l} WHERE dst = {c}.id AND kind = ?5) \
             ORDER BY id LIMIT 1",
                c = self.q.content,
                l = self.q.links
            )
        });
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(
                params![namespace, hash.as_slice(), now, except, SUPERSEDES],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Ids of memories whose stored dedup hash is not the hash of their content.
    pub(crate) fn stale_hashes(&self) -> Result<Vec<i64>> {
        let sql = self.sql(|| format!("SELECT id, content, hash FROM {}", self.q.content));
        let mut st = self.conn.prepare(&sql)?;
        let mut rows = st.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let content: String = r.get(1)?;
            let hash: Option<Vec<u8>> = r.get(2)?;
            if hash.as_deref() != Some(content_hash(&content).as_slice()) {
                out.push(r.get(0)?);
            }
        }
        Ok(out)
    }

    /// Recomputes the dedup hash of the given memories from their content.
    pub(crate) fn rehash(&self, ids: &[i64]) -> Result<()> {
        let sql = self.sql(|| {
            format!(
                "UPDATE {} SET hash = ?2 WHERE id = ?1 AND content = ?3",
                self.q.content
            )
        });
        for &id in ids {
            if let Some(row) = self.get(id)? {
                self.conn.prepare_cached(&sql)?.execute(params![
                    id,
                    content_hash(&row.content).as_slice(),
                    row.content
                ])?;
            }
        }
        Ok(())
    }

    /// Ids of memories expired at `now` (milliseconds since the Unix epoch), optionally of
    /// one namespace. Uses the `(expires_at, id)` index.
    pub(crate) fn expired_ids(&self, now: i64, namespace: Option<&str>) -> Result<Vec<i64>> {
        let sql = self.sql(|| {
            format!(
                "SELECT id FROM {} WHERE expires_at <= ?1 AND (?2 IS NULL OR namespace = ?2)",
                self.q.content
            )
        });
        let ids = self
            .conn
            .prepare_cached(&sql)?
            .query_map(params![now, namespace], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }

    /// `min(count(namespace), cap)`: reads at most `cap` index entries, where
    /// [`Store::count`] reads the whole namespace (SQLite keeps no counts).
    pub(crate) fn count_capped(&self, namespace: &str, cap: usize) -> Result<usize> {
        let sql = self.sql(|| {
            format!(
                "SELECT count(*) FROM (SELECT 1 FROM {} WHERE namespace = ?1 LIMIT ?2)",
                self.q.content
            )
        });
        let n: i64 = self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![namespace, cap.min(i64::MAX as usize) as i64], |r| {
                r.get(0)
            })?;
        Ok(n as usize)
    }

    /// Ids of all memories, optionally of one namespace, in id order.
    pub(crate) fn ids(&self, namespace: Option<&str>) -> Result<Vec<i64>> {
        let mut out = Vec::new();
        match namespace {
            Some(ns) => {
                let sql = self.sql(|| {
                    format!(
                        "SELECT id FROM {} WHERE namespace = ?1 ORDER BY id",
                        self.q.content
                    )
                });
                let mut st = self.conn.prepare_cached(&sql)?;
                for r in st.query_map([ns], |r| r.get(0))? {
                    out.push(r?);
                }
            }
            None => {
                let sql = self.sql(|| format!("SELECT id FROM {} ORDER BY id", self.q.content));
                let mut st = self.conn.prepare_cached(&sql)?;
                for r in st.query_map([], |r| r.get(0))? {
                    out.push(r?);
                }
            }
        }
        Ok(out)
    }

    /// `(id, namespace)` of every memory (used to filter HNSW searches by namespace).
    pub(crate) fn namespaces(&self) -> Result<Vec<(i64, String)>> {
        let sql = self.sql(|| format!("SELECT id, namespace FROM {}", self.q.content));
        let mut st = self.conn.prepare_cached(&sql)?;
        let v = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    /// The memories stored next to each of `ids` in its namespace: up to `window` ids
    /// just below it and up to `window` just above it (id order, through the
    /// `(namespace, id)` index), as `(id, neighbour)` pairs, in one statement. Used as
    /// context by hybrid search; nothing for an id that does not exist or `window` 0.
    pub(crate) fn neighbours_of(&self, ids: &[i64], window: usize) -> Result<Vec<(i64, i64)>> {
        if window == 0 || ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = self.sql(|| {
            format!(
                "SELECT c.id, n.id FROM json_each(?1) j JOIN {c} c ON c.id = j.value \
                 JOIN {c} n ON n.id IN ( \
                   SELECT id FROM (SELECT id FROM {c} WHERE namespace = c.namespace AND id < c.id \
                     ORDER BY id DESC LIMIT ?2) \
                   UNION ALL \
                   SELECT id FROM (SELECT id FROM {c} WHERE namespace = c.namespace AND id > c.id \
                     ORDER BY id LIMIT ?2))",
                c = self.q.content
            )
        });
        let window = window.min(i64::MAX as usize) as i64;
        let mut st = self.conn.prepare_cached(&sql)?;
        let pairs = st
            .query_map(params![id_list(ids), window], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(pairs)
    }
}

/// The columns [`read_row`] reads, in order (`c`: the content table).
pub(super) const ROW_COLUMNS: &str = "c.id, c.content, c.namespace, c.tags, c.metadata, c.source, \
     c.importance, c.created_at, c.updated_at, c.expires_at";

/// A [`Row`] from the first ten columns of a result ([`ROW_COLUMNS`]).
pub(super) fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        id: r.get(0)?,
        content: r.get(1)?,
        namespace: r.get(2)?,
        tags: r.get(3)?,
        metadata: r.get(4)?,
        source: r.get(5)?,
        importance: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
        expires_at: r.get(9)?,
    })
}
