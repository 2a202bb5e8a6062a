//! `<table>_vectors` (`id -> [f32; dim]` BLOB, rows with a vector only) and
//! `<table>_unembedded` (ids written in the open transaction that await their embedding or
//! their near-duplicate check).

use rusqlite::{OptionalExtension, params};

use super::Store;
use crate::error::Result;
use crate::vector;

/// A memory awaiting its embedding ([`Store::unembedded`]).
#[derive(Debug, Clone)]
pub(crate) struct Unembedded {
    /// Rowid.
    pub(crate) id: i64,
    /// The text to embed.
    pub(crate) content: String,
    /// Its namespace (the scope of the near-duplicate check).
    pub(crate) namespace: String,
    /// Whether the near-duplicate check runs once it is embedded (an INSERT without id
    /// into a table with dedup on).
    pub(crate) near_check: bool,
    /// Its stored vector (`[f32; dim]`) when it was supplied: only the check awaits.
    pub(crate) vector: Option<Vec<f32>>,
}

impl Store {
    /// Calls `f(id, embedding_blob)` for each of `ids` that has a stored vector, in one
    /// statement.
    pub(crate) fn vectors_of(&self, ids: &[i64], mut f: impl FnMut(i64, &[u8])) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let sql = self.sql(|| {
            format!(
                "SELECT v.id, v.embedding FROM json_each(?1) j JOIN {} v ON v.id = j.value",
                self.q.vectors
            )
        });
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut rows = st.query([super::id_list(ids)])?;
        while let Some(r) = rows.next()? {
            if let rusqlite::types::ValueRef::Blob(b) = r.get_ref(1)? {
                f(r.get(0)?, b);
            }
        }
        Ok(())
    }

    /// Reads the stored embedding BLOB of one memory.
    pub(crate) fn embedding_blob(&self, id: i64) -> Result<Option<Vec<u8>>> {
        let sql = self.sql(|| format!("SELECT embedding FROM {} WHERE id = ?1", self.q.vectors));
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([id], |r| r.get(0))
            .optional()?)
    }

    /// Reads the stored embedding of one memory as float32.
    pub(crate) fn embedding(&self, id: i64) -> Result<Option<Vec<f32>>> {
        Ok(self
            .embedding_blob(id)?
            .and_then(|b| vector::decode_stored(&b, self.opts.dim)))
    }

    pub(super) fn set_vector(&self, id: i64, v: &[f32]) -> Result<()> {
        let sql = self.sql(|| {
            format!(
                "INSERT OR REPLACE INTO {}(id, embedding) VALUES (?1, ?2)",
                self.q.vectors
            )
        });
        self.conn
            .prepare_cached(&sql)?
            .execute(params![id, vector::encode(v)])?;
        Ok(())
    }

    pub(super) fn remove_vector(&self, id: i64) -> Result<()> {
        let sql = self.sql(|| format!("DELETE FROM {} WHERE id = ?1", self.q.vectors));
        self.conn.prepare_cached(&sql)?.execute([id])?;
        Ok(())
    }

    /// Calls `f(id, embedding_blob)` for every stored vector, optionally of one namespace.
    pub(crate) fn scan_vectors(
        &self,
        namespace: Option<&str>,
        mut f: impl FnMut(i64, &[u8]),
    ) -> Result<()> {
        match namespace {
            Some(ns) => {
                let sql = self.sql(|| format!(
                    "SELECT v.id, v.embedding FROM {} c JOIN {} v ON v.id = c.id WHERE c.namespace = ?1",
                    self.q.content, self.q.vectors
                ));
                let mut st = self.conn.prepare_cached(&sql)?;
                let mut rows = st.query([ns])?;
                while let Some(r) = rows.next()? {
                    if let rusqlite::types::ValueRef::Blob(b) = r.get_ref(1)? {
                        f(r.get(0)?, b);
                    }
                }
            }
            None => {
                let sql = self.sql(|| format!("SELECT id, embedding FROM {}", self.q.vectors));
                let mut st = self.conn.prepare_cached(&sql)?;
                let mut rows = st.query([])?;
                while let Some(r) = rows.next()? {
                    if let rusqlite::types::ValueRef::Blob(b) = r.get_ref(1)? {
                        f(r.get(0)?, b);
                    }
                }
            }
        }
        Ok(())
    }

    /// Deletes stored vectors that belong to no memory.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn delete_orphan_vectors(&self) -> Result<usize> {
        Ok(self.conn.execute(
            &self.sql(|| {
                format!(
                    "DELETE FROM {v} WHERE NOT EXISTS (SELECT 1 FROM {c} WHERE {c}.id = {v}.id)",
                    v = self.q.vectors,
                    c = self.q.content
                )
            }),
            [],
        )?)
    }

    pub(super) fn mark_unembedded(&self, id: i64, near_check: bool) -> Result<()> {
        let sql = self.sql(|| {
            format!(
                "INSERT OR REPLACE INTO {}(id, dedup) VALUES (?1, ?2)",
                self.q.unembedded
            )
        });
        self.conn
            .prepare_cached(&sql)?
            .execute(params![id, i64::from(near_check)])?;
        Ok(())
    }

    /// Removes the "awaits embedding or check" note of `id`.
    pub(crate) fn clear_unembedded(&self, id: i64) -> Result<()> {
        let sql = self.sql(|| format!("DELETE FROM {} WHERE id = ?1", self.q.unembedded));
        self.conn.prepare_cached(&sql)?.execute([id])?;
        Ok(())
    }

    /// Whether some memories written in this transaction still await their embedding.
    pub(crate) fn has_unembedded(&self) -> Result<bool> {
        let sql = self.sql(|| format!("SELECT EXISTS (SELECT 1 FROM {})", self.q.unembedded));
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([], |r| r.get(0))?)
    }

    /// Up to `limit` memories awaiting their embedding or their near-duplicate check, in
    /// id order.
    pub(crate) fn unembedded(&self, limit: usize) -> Result<Vec<Unembedded>> {
        let sql = self.sql(|| {
            format!(
                "SELECT u.id, c.content, c.namespace, u.dedup, v.embedding FROM {} u \
             JOIN {} c ON c.id = u.id LEFT JOIN {} v ON v.id = u.id ORDER BY u.id LIMIT ?1",
                self.q.unembedded, self.q.content, self.q.vectors
            )
        });
        let dim = self.opts.dim;
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st
            .query_map([limit as i64], |r| {
                Ok(Unembedded {
                    id: r.get(0)?,
                    content: r.get(1)?,
                    namespace: r.get(2)?,
                    near_check: r.get::<_, i64>(3)? != 0,
                    vector: match r.get_ref(4)? {
                        rusqlite::types::ValueRef::Blob(b) => vector::decode_stored(b, dim),
                        _ => None,
                    },
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    /// Stores the embedding of a memory that awaited it.
    pub(crate) fn set_embedded(&self, id: i64, v: &[f32]) -> Result<()> {
        self.set_vector(id, v)?;
        self.clear_unembedded(id)?;
        self.mark_pending(id)
    }
}

impl Store {
    /// A key that changes whenever the table's vectors may have changed since it was
    /// taken, or `None` inside an explicit transaction or while this connection holds
    /// uncommitted writes (a ROLLBACK TO or a failed statement, which no callback
    /// reports, can undo them without a trace): this connection's
    /// `total_changes()` (every row it ever wrote, rolled back or not, in any table) and
    /// the schema's `PRAGMA data_version` (commits of every other connection and
    /// process). For caches of stored vectors ([`crate::ann`]'s exact-scan blocks) and the
    /// reads [`Store::pinned`] keeps; inside [`Store::pinned`] it is taken once per query.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn change_key(&self) -> Result<Option<(u64, i64)>> {
        self.kept_key()
    }
}

impl Store {
    /// The ids of the memories a `supersedes` link hides (the links' `dst`), or `None`
    /// when there are more than `cap` (too many to keep in memory for a search filter).
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn superseded_ids(&self, cap: usize) -> Result<Option<Vec<i64>>> {
        let sql = self.sql(|| {
            format!(
                "SELECT DISTINCT dst FROM {} WHERE kind = ?1 LIMIT ?2",
                self.q.links
            )
        });
        let limit = i64::try_from(cap.saturating_add(1)).unwrap_or(i64::MAX);
        let ids: Vec<i64> = self
            .conn
            .prepare_cached(&sql)?
            .query_map(rusqlite::params![super::SUPERSEDES, limit], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok((ids.len() <= cap).then_some(ids))
    }
}
