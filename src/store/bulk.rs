//! Bulk loading of a fresh, private table (the as-of copy and a branch's working copy,
//! [`crate::table::history::copy_at`]): the rows of another store streamed as borrowed
//! SQLite values ([`Store::scan_raw`]: one statement, nothing decoded), written through
//! statements prepared once for the whole load ([`BulkLoad`]), the stored vectors copied
//! as the BLOBs they are, and the FTS5 index filled once at the end from `_content`
//! ([`BulkLoad::finish`]). Nothing is recorded in the history and nothing is checked for
//! duplicates: the caller writes exactly the state it wants.

use rusqlite::Statement;
use rusqlite::types::{ToSqlOutput, ValueRef};

use super::{Link, Store};
use crate::error::{Error, Result};
use crate::row::Row;

/// A memory's columns as borrowed SQLite values, in the order of
/// [`super::content::ROW_COLUMNS`]: id, content, namespace, tags, metadata, source,
/// importance, created_at, updated_at, expires_at.
pub(crate) type RawRow<'a> = [ValueRef<'a>; 10];

/// `row`'s columns as a [`RawRow`] borrowing it (the values a read of its stored row
/// gives: `NULL` for an absent source or expiry).
pub(crate) fn raw_row(row: &Row) -> RawRow<'_> {
    [
        ValueRef::Integer(row.id),
        ValueRef::Text(row.content.as_bytes()),
        ValueRef::Text(row.namespace.as_bytes()),
        ValueRef::Text(row.tags.as_bytes()),
        ValueRef::Text(row.metadata.as_bytes()),
        row.source
            .as_deref()
            .map_or(ValueRef::Null, |s| ValueRef::Text(s.as_bytes())),
        ValueRef::Real(row.importance),
        ValueRef::Integer(row.created_at),
        ValueRef::Integer(row.updated_at),
        row.expires_at.map_or(ValueRef::Null, ValueRef::Integer),
    ]
}

/// The id of a [`RawRow`].
///
/// # Errors
/// [`Error::Corrupt`] when the stored id is not an integer.
pub(crate) fn raw_id(row: &RawRow<'_>) -> Result<i64> {
    match row[0] {
        ValueRef::Integer(id) => Ok(id),
        _ => Err(Error::Corrupt("a memory's id is not an integer".into())),
    }
}

/// The content of a [`RawRow`].
///
/// # Errors
/// [`Error::Corrupt`] when the stored content is not UTF-8 text.
pub(crate) fn raw_content<'a>(row: &RawRow<'a>) -> Result<&'a str> {
    match row[1] {
        ValueRef::Text(t) => std::str::from_utf8(t)
            .map_err(|e| Error::Corrupt(format!("a memory's content is not UTF-8 ({e})"))),
        _ => Err(Error::Corrupt("a memory's content is not text".into())),
    }
}

impl Store {
    /// Calls `f(row, hash, vector)` for every memory in id order, with its stored dedup
    /// hash (32 bytes; `None`: not a 32-byte BLOB) and its stored vector BLOB (`None`:
    /// none), in one statement (`_content LEFT JOIN _vectors`); the values are borrowed
    /// from the statement's current row, nothing is decoded or copied.
    ///
    /// # Errors
    /// SQLite errors; `f`'s.
    pub(crate) fn scan_raw(
        &self,
        mut f: impl FnMut(&RawRow<'_>, Option<&[u8; 32]>, Option<&[u8]>) -> Result<()>,
    ) -> Result<()> {
        let sql = self.sql(|| {
            format!(
                "SELECT {cols}, c.hash, v.embedding FROM {c} c LEFT JOIN {v} v \
                 ON v.id = c.id ORDER BY c.id",
                cols = super::content::ROW_COLUMNS,
                c = self.q.content,
                v = self.q.vectors
            )
        });
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let row: RawRow<'_> = [
                r.get_ref(0)?,
                r.get_ref(1)?,
                r.get_ref(2)?,
                r.get_ref(3)?,
                r.get_ref(4)?,
                r.get_ref(5)?,
                r.get_ref(6)?,
                r.get_ref(7)?,
                r.get_ref(8)?,
                r.get_ref(9)?,
            ];
            let hash = match r.get_ref(10)? {
                ValueRef::Blob(b) => <&[u8; 32]>::try_from(b).ok(),
                _ => None,
            };
            let blob = match r.get_ref(11)? {
                ValueRef::Blob(b) => Some(b),
                _ => None,
            };
            f(&row, hash, blob)?;
        }
        Ok(())
    }

    /// The statements of a bulk load into this (fresh, empty) store, prepared once.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn bulk_load(&self) -> Result<BulkLoad<'_>> {
        let q = &self.q;
        Ok(BulkLoad {
            store: self,
            content: self.conn.prepare(&format!(
                "INSERT INTO {}(id, content, namespace, tags, metadata, source, importance, \
                 created_at, updated_at, expires_at, hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                q.content
            ))?,
            vector: self.conn.prepare(&format!(
                "INSERT INTO {}(id, embedding) VALUES (?1, ?2)",
                q.vectors
            ))?,
            pending: self.conn.prepare(&format!(
                "INSERT OR IGNORE INTO {}(id) VALUES (?1)",
                q.pending
            ))?,
            unembedded: self.conn.prepare(&format!(
                "INSERT OR REPLACE INTO {}(id, dedup) VALUES (?1, ?2)",
                q.unembedded
            ))?,
            link: self.conn.prepare(&format!(
                "INSERT OR REPLACE INTO {}(src, dst, kind, weight, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                q.links
            ))?,
        })
    }
}

/// A bulk load in progress ([`Store::bulk_load`]): rows, vectors, pending ids,
/// embedding notes and links written as given; the FTS5 index is filled by
/// [`BulkLoad::finish`] from the rows then in `_content`.
pub(crate) struct BulkLoad<'a> {
    store: &'a Store,
    content: Statement<'a>,
    vector: Statement<'a>,
    pending: Statement<'a>,
    unembedded: Statement<'a>,
    link: Statement<'a>,
}

impl BulkLoad<'_> {
    /// Writes one memory's `_content` row: its columns and its dedup `hash`
    /// ([`crate::table::dedup::content_hash`] of its content).
    ///
    /// # Errors
    /// SQLite errors (e.g. the id is taken).
    pub(crate) fn row(&mut self, row: &RawRow<'_>, hash: &[u8; 32]) -> Result<()> {
        let st = &mut self.content;
        for (i, v) in row.iter().enumerate() {
            st.raw_bind_parameter(i + 1, ToSqlOutput::Borrowed(*v))?;
        }
        st.raw_bind_parameter(11, hash.as_slice())?;
        st.raw_execute()?;
        Ok(())
    }

    /// Stores `blob` (`dim` little-endian float32, as stored) as memory `id`'s vector.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn vector(&mut self, id: i64, blob: &[u8]) -> Result<()> {
        self.vector.raw_bind_parameter(1, id)?;
        self.vector.raw_bind_parameter(2, blob)?;
        self.vector.raw_execute()?;
        Ok(())
    }

    /// Marks `id` pending (searched exactly beside the HNSW graph).
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn pending(&mut self, id: i64) -> Result<()> {
        self.pending.raw_bind_parameter(1, id)?;
        self.pending.raw_execute()?;
        Ok(())
    }

    /// Notes that `id` awaits its embedding or its near-duplicate check (`near_check`).
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn unembedded(&mut self, id: i64, near_check: bool) -> Result<()> {
        self.unembedded.raw_bind_parameter(1, id)?;
        self.unembedded
            .raw_bind_parameter(2, i64::from(near_check))?;
        self.unembedded.raw_execute()?;
        Ok(())
    }

    /// Writes `link` (replacing one of the same `(src, kind, dst)`).
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn link(&mut self, link: &Link) -> Result<()> {
        let st = &mut self.link;
        st.raw_bind_parameter(1, link.src)?;
        st.raw_bind_parameter(2, link.dst)?;
        st.raw_bind_parameter(3, link.kind.as_str())?;
        st.raw_bind_parameter(4, link.weight)?;
        st.raw_bind_parameter(5, link.created_at)?;
        st.raw_execute()?;
        Ok(())
    }

    /// Ends the load: the FTS5 index is filled from `_content` in one statement (the
    /// same documents, so the same BM25 statistics, as one FTS5 insert per row).
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn finish(self) -> Result<()> {
        let store = self.store;
        drop(self);
        store.rebuild_fts()
    }
}
