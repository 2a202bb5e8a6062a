//! `<table>_pending`: ids whose vector or namespace changed since the HNSW snapshot (or
//! that the snapshot's graph does not reach); searches scan them exactly beside the graph.

use super::Store;
use crate::error::Result;

impl Store {
    /// Adds `ids` to the pending list (searched exactly beside the graph): the nodes a
    /// checkpoint found unreachable by their own vector ([`crate::ann`]).
    pub(crate) fn mark_pending_all(&self, ids: &[i64]) -> Result<()> {
        for &id in ids {
            self.mark_pending(id)?;
        }
        Ok(())
    }

    pub(super) fn mark_pending(&self, id: i64) -> Result<()> {
        let sql = self.sql(|| format!("INSERT OR IGNORE INTO {}(id) VALUES (?1)", self.q.pending));
        self.conn.prepare_cached(&sql)?.execute([id])?;
        Ok(())
    }

    /// Ids whose vector or namespace changed since the HNSW snapshot.
    pub(crate) fn pending_ids(&self) -> Result<Vec<i64>> {
        let sql = self.sql(|| format!("SELECT id FROM {}", self.q.pending));
        let mut st = self.conn.prepare_cached(&sql)?;
        let ids = st
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }

    /// Number of pending ids.
    pub(crate) fn pending_count(&self) -> Result<usize> {
        let sql = self.sql(|| format!("SELECT count(*) FROM {}", self.q.pending));
        let n: i64 = self
            .conn
            .prepare_cached(&sql)?
            .query_row([], |r| r.get(0))?;
        Ok(n as usize)
    }

    /// Empties the pending list (after a checkpoint folded it into the snapshot).
    pub(crate) fn clear_pending(&self) -> Result<()> {
        self.conn
            .execute(&self.sql(|| format!("DELETE FROM {}", self.q.pending)), [])?;
        Ok(())
    }

    /// Calls `f(id, embedding_blob)` for every pending id (`None`: no stored vector).
    pub(crate) fn pending_vectors(&self, mut f: impl FnMut(i64, Option<&[u8]>)) -> Result<()> {
        let sql = self.sql(|| {
            format!(
                "SELECT p.id, v.embedding FROM {} p LEFT JOIN {} v ON v.id = p.id",
                self.q.pending, self.q.vectors
            )
        });
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let blob = match r.get_ref(1)? {
                rusqlite::types::ValueRef::Blob(b) => Some(b),
                _ => None,
            };
            f(r.get(0)?, blob);
        }
        Ok(())
    }

    /// Calls `f(id, embedding_blob)` for every pending id that has a stored vector and,
    /// when `namespace` is given, belongs to it (one join instead of a lookup per id).
    pub(crate) fn pending_vectors_in(
        &self,
        namespace: Option<&str>,
        mut f: impl FnMut(i64, &[u8]),
    ) -> Result<()> {
        let mut each = |r: &rusqlite::Row<'_>| -> Result<()> {
            if let rusqlite::types::ValueRef::Blob(b) = r.get_ref(1)? {
                f(r.get(0)?, b);
            }
            Ok(())
        };
        match namespace {
            Some(ns) => {
                // CROSS JOIN fixes the loop order: the short pending list outside, then
                // the namespace, then the vector (without statistics SQLite may pick the
                // namespace index and visit every memory of the namespace).
                let sql = self.sql(|| {
                    format!(
                        "SELECT p.id, v.embedding FROM {} p CROSS JOIN {} c ON c.id = p.id \
                     CROSS JOIN {} v ON v.id = p.id WHERE c.namespace = ?1",
                        self.q.pending, self.q.content, self.q.vectors
                    )
                });
                let mut st = self.conn.prepare_cached(&sql)?;
                let mut rows = st.query([ns])?;
                while let Some(r) = rows.next()? {
                    each(r)?;
                }
            }
            None => {
                let sql = self.sql(|| {
                    format!(
                        "SELECT p.id, v.embedding FROM {} p JOIN {} v ON v.id = p.id",
                        self.q.pending, self.q.vectors
                    )
                });
                let mut st = self.conn.prepare_cached(&sql)?;
                let mut rows = st.query([])?;
                while let Some(r) = rows.next()? {
                    each(r)?;
                }
            }
        }
        Ok(())
    }

    /// Calls `f(id, namespace, embedding_blob)` for every pending id that has a stored
    /// vector (one pass, for a batch of near-duplicate checks).
    pub(crate) fn pending_vectors_ns(&self, mut f: impl FnMut(i64, &str, &[u8])) -> Result<()> {
        let sql = self.sql(|| {
            format!(
                "SELECT p.id, c.namespace, v.embedding FROM {} p CROSS JOIN {} c ON c.id = p.id \
             CROSS JOIN {} v ON v.id = p.id",
                self.q.pending, self.q.content, self.q.vectors
            )
        });
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            if let (rusqlite::types::ValueRef::Text(ns), rusqlite::types::ValueRef::Blob(b)) =
                (r.get_ref(1)?, r.get_ref(2)?)
            {
                f(r.get(0)?, &String::from_utf8_lossy(ns), b);
            }
        }
        Ok(())
    }
}
