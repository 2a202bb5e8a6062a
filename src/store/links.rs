//! `<table>_links`: relations between memories, `(src, dst, kind, weight, created_at)`;
//! today the `supersedes` links of the near-duplicate check.

use rusqlite::{OptionalExtension, params};

use super::{SUPERSEDES, Store};
use crate::error::Result;

impl Store {
    /// Records the link `src -kind-> dst` with `weight` (for [`SUPERSEDES`]: the cosine
    /// similarity), replacing an existing one of the same three.
    pub(crate) fn add_link(
        &self,
        src: i64,
        dst: i64,
        kind: &str,
        weight: f64,
        now: i64,
    ) -> Result<()> {
        let sql = self.sql(|| {
            format!(
                "INSERT OR REPLACE INTO {}(src, dst, kind, weight, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
                self.q.links
            )
        });
        self.conn
            .prepare_cached(&sql)?
            .execute(params![src, dst, kind, weight, now])?;
        Ok(())
    }

    /// Deletes every link from or to `id` (the memory is deleted).
    pub(super) fn delete_links(&self, id: i64) -> Result<()> {
        let sql = self.sql(|| format!("DELETE FROM {} WHERE src = ?1 OR dst = ?1", self.q.links));
        self.conn.prepare_cached(&sql)?.execute([id])?;
        Ok(())
    }

    /// Points every link of memory `old` at `new` (an UPDATE that changes the id).
    pub(crate) fn move_links(&self, old: i64, new: i64) -> Result<()> {
        let src = self.sql(|| {
            format!(
                "UPDATE OR REPLACE {} SET src = ?2 WHERE src = ?1",
                self.q.links
            )
        });
        self.conn.prepare_cached(&src)?.execute([old, new])?;
        let dst = self.sql(|| {
            format!(
                "UPDATE OR REPLACE {} SET dst = ?2 WHERE dst = ?1",
                self.q.links
            )
        });
        self.conn.prepare_cached(&dst)?.execute([old, new])?;
        Ok(())
    }

    /// The newest memory that supersedes `id`, with the link's weight (similarity).
    pub(crate) fn superseded_by(&self, id: i64) -> Result<Option<(i64, f64)>> {
        let sql = self.sql(|| {
            format!(
                "SELECT src, weight FROM {} WHERE dst = ?1 AND kind = ?2 \
                 ORDER BY src DESC LIMIT 1",
                self.q.links
            )
        });
        self.link_query(&sql, id)
    }

    /// The memory `id` supersedes, with the link's weight (similarity).
    pub(crate) fn supersedes(&self, id: i64) -> Result<Option<(i64, f64)>> {
        let sql = self.sql(|| {
            format!(
                "SELECT dst, weight FROM {} WHERE src = ?1 AND kind = ?2 \
                 ORDER BY dst DESC LIMIT 1",
                self.q.links
            )
        });
        self.link_query(&sql, id)
    }

    /// Runs one of the two [`SUPERSEDES`] lookups: `(other end, weight)` of the link
    /// whose known end is `id`.
    fn link_query(&self, sql: &str, id: i64) -> Result<Option<(i64, f64)>> {
        Ok(self
            .conn
            .prepare_cached(sql)?
            .query_row(params![id, SUPERSEDES], |r| {
                Ok((r.get(0)?, r.get::<_, Option<f64>>(1)?.unwrap_or(0.0)))
            })
            .optional()?)
    }

    /// Deletes links that name a memory that does not exist (for `'rebuild'`).
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn delete_orphan_links(&self) -> Result<usize> {
        Ok(self.conn.execute(
            &self.sql(|| {
                format!(
                    "DELETE FROM {l} WHERE NOT EXISTS (SELECT 1 FROM {c} WHERE {c}.id = {l}.src) \
                 OR NOT EXISTS (SELECT 1 FROM {c} WHERE {c}.id = {l}.dst)",
                    l = self.q.links,
                    c = self.q.content
                )
            }),
            [],
        )?)
    }
}
