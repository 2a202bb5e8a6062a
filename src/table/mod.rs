//! The memory table's logic, apart from SQLite's callbacks: one [`MemoryTable`] per
//! `memories` table per connection, holding its [`Store`] (the shadow tables) and its
//! in-memory HNSW graph ([`Ann`]). The SQL adapter ([`crate::sql::vtab`]) decodes SQL
//! values into [`write::NewRow`] / [`query::Query`] and calls in here; everything below
//! is callable, and unit-testable, without a virtual table.
//!
//! * [`write`]: INSERT, UPDATE, DELETE: validation, redaction, exact dedup, conflicts,
//!   the in-statement checkpoint;
//! * [`flush`]: the batched embedding and near-duplicate checks (before a query, at
//!   COMMIT, every [`flush::FLUSH_BATCH`] INSERTs);
//! * [`commands`]: `'rebuild'`, `'optimize'`, `'purge'`;
//! * [`query`]: a decoded search or scan: dispatch, hidden rows, ranking;
//! * [`dedup`]: content hash, merge, the record of where an INSERT landed;
//! * [`context`]: context assembly (selection and packing into a token budget);
//! * [`history`]: the table as of a version (as-of queries), diff and restore;
//! * [`branch`]: branches (a table that starts as another as of a version) and merge.

pub(crate) mod branch;
pub(crate) mod commands;
pub(crate) mod context;
pub(crate) mod dedup;
pub(crate) mod flush;
pub(crate) mod history;
pub(crate) mod query;
pub(crate) mod write;

use std::cell::{Cell, RefCell};

use rusqlite::{Connection, ffi};

use crate::ann::{Ann, Checkpoint};
use crate::error::Result;
use crate::options::{DedupPolicy, TableOptions};
use crate::store::Store;
use crate::vector;

/// One `memories` table on one connection.
pub(crate) struct MemoryTable {
    pub(crate) store: Store,
    ann: RefCell<Ann>,
    /// INSERTs since the last flush that await their near-duplicate check: at
    /// [`flush::FLUSH_BATCH`] the INSERT runs the flush itself, so the checks run in
    /// batches and the pending list stays short during a bulk load.
    awaiting: Cell<usize>,
    /// Schema name (`main`, `temp`, an attached name): part of the dedup outcome key.
    schema: String,
    /// The time searches judge expiry and recency at, when not now: set on the private
    /// copy of an as-of query ([`history`]), ms since the Unix epoch.
    clock: Cell<Option<i64>>,
    /// The last as-of copy built ([`history`]).
    as_of: history::AsOfCell,
    /// Set when this table is a branch ([`branch`]).
    branch: Option<branch::Branch>,
}

impl Drop for MemoryTable {
    fn drop(&mut self) {
        dedup::forget(self.db(), &self.schema, &self.store.table);
    }
}

impl MemoryTable {
    /// Creates the shadow tables of a new table with the options `args` (`key=value`
    /// each, [`TableOptions::parse`]).
    ///
    /// # Errors
    /// [`crate::error::Error::Invalid`] for a bad option; SQLite errors.
    pub(crate) fn create(
        conn: Connection,
        schema: &str,
        table: &str,
        args: &[String],
    ) -> Result<Self> {
        let split = branch::split_args(args);
        if let Some(base) = &split.base {
            return Self::create_branch(
                conn,
                schema,
                table,
                base,
                split.at.as_deref(),
                &split.rest,
            );
        }
        if split.at.is_some() {
            return Err(crate::error::Error::invalid(
                "memories option at: only with branch_of (the version a branch starts from)",
            ));
        }
        let opts = TableOptions::parse(args)?;
        Ok(Self::new(Store::create(conn, schema, table, opts)?, schema))
    }

    /// Opens an existing table (upgrading an older on-disk format in place).
    ///
    /// # Errors
    /// [`crate::error::Error::Corrupt`] when the shadow tables are missing or newer.
    pub(crate) fn connect(conn: Connection, schema: &str, table: &str) -> Result<Self> {
        let store = Store::connect(conn, schema, table)?;
        let info = store.branch_info()?;
        let mut t = Self::new(store, schema);
        t.branch = info.map(|(base, fork)| branch::Branch::new(base, fork));
        Ok(t)
    }

    fn new(store: Store, schema: &str) -> Self {
        MemoryTable {
            store,
            ann: RefCell::new(Ann::new()),
            awaiting: Cell::new(0),
            schema: schema.to_string(),
            clock: Cell::new(None),
            as_of: RefCell::new(None),
            branch: None,
        }
    }

    /// DROP TABLE: drops every shadow table.
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn destroy(&self) -> Result<()> {
        self.before_destroy()?;
        self.store.destroy()
    }

    /// ALTER TABLE RENAME: renames the shadow tables.
    ///
    /// # Errors
    /// SQLite errors (a shadow table of the new name exists).
    pub(crate) fn rename(&mut self, new: &str) -> Result<()> {
        let old = self.store.table.clone();
        self.store.rename(new)?;
        self.renamed(&old)
    }

    /// COMMIT (xSync): no memory is committed without its embedding and its
    /// near-duplicate check, and the HNSW snapshot is brought up to date when enough is
    /// pending. An error makes SQLite roll the transaction back.
    ///
    /// # Errors
    /// Model, SQLite or usearch errors.
    pub(crate) fn sync(&self) -> Result<()> {
        if let Some(b) = &self.branch {
            return self.keeping_last_rowid(|| self.branch_flush(b));
        }
        self.keeping_last_rowid(|| {
            self.flush()?;
            self.ann
                .borrow_mut()
                .maybe_checkpoint(&self.store, Checkpoint::Commit)
                .map(|_| ())
        })
    }

    /// ROLLBACK: the outcome of an INSERT that was rolled back is forgotten (rows, hashes
    /// and pending checks are undone by the journal).
    pub(crate) fn rollback(&self) {
        dedup::forget(self.db(), &self.schema, &self.store.table);
        self.as_of.replace(None);
        if let Some(b) = &self.branch {
            self.branch_rollback(b);
        }
    }

    /// The `sqlite3*` address of this table's connection (key of dedup outcomes).
    fn db(&self) -> usize {
        // SAFETY: only the address is used, never dereferenced here.
        unsafe { self.store.conn().handle() as usize }
    }

    fn record(&self, outcome: dedup::Outcome) {
        dedup::record(self.db(), &self.schema, &self.store.table, outcome);
    }

    /// Whether inserts are checked for near duplicates (dedup on, threshold below 1,
    /// cosine metric).
    fn near_dedup(&self) -> bool {
        let o = &self.store.opts;
        o.dedup != DedupPolicy::Off && o.dedup_threshold < 1.0 && o.metric == vector::Metric::Cosine
    }

    /// Runs `f`, then restores the connection's `last_insert_rowid()`: the writes to the
    /// shadow tables done by a flush or a checkpoint (in a SELECT, or at COMMIT) must not
    /// change what the user's last INSERT reports.
    fn keeping_last_rowid<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let conn = self.store.conn();
        let saved = conn.last_insert_rowid();
        let r = f();
        if conn.last_insert_rowid() != saved {
            // SAFETY: the handle is this table's open connection, used on its own thread.
            unsafe { ffi::sqlite3_set_last_insert_rowid(conn.handle(), saved) };
        }
        r
    }

    /// The in-statement checkpoint of a write that needs no near-duplicate check. Rows
    /// that await their check must not be folded into the graph before it ran (the check
    /// would find them), so they are flushed first when a checkpoint could be due.
    fn checkpoint_write(&self) -> Result<()> {
        if self.awaiting.get() > 0 {
            self.flush()?;
        }
        self.ann
            .borrow_mut()
            .maybe_checkpoint(&self.store, Checkpoint::Write)
            .map(|_| ())
    }
}

#[cfg(all(test, feature = "bundled"))]
mod tests {
    //! The table's logic driven directly, without a virtual table or SQL decoding.

    use super::MemoryTable;
    use super::query::{Query, Search};
    use super::write::{NewRow, OnConflict};
    use crate::options::TableOptions;
    use crate::search::rank::Ranking;

    fn table() -> MemoryTable {
        let conn = rusqlite::Connection::open_in_memory().unwrap_or_else(|e| panic!("{e}"));
        let args = ["dim=4".to_string(), "auto_embed=off".to_string()];
        MemoryTable::create(conn, "main", "m", &args).unwrap_or_else(|e| panic!("{e}"))
    }

    fn row(content: &str, v: [f32; 4]) -> NewRow {
        NewRow {
            content: content.into(),
            namespace: "default".into(),
            tags: "[]".into(),
            metadata: "{}".into(),
            importance: 0.5,
            embedding: Some(v.to_vec()),
            ..NewRow::default()
        }
    }

    fn knn(t: &MemoryTable, q: [f32; 4], k: usize) -> Vec<i64> {
        t.flush().unwrap_or_else(|e| panic!("{e}"));
        let query = Query::Search {
            search: Search::Knn(q.to_vec()),
            k,
            k_column: Some(k as i64),
            namespace: None,
            ranking: Ranking::from_options(&TableOptions::default()),
            include_superseded: false,
            ids_only: false,
        };
        let answer = t.query(query).unwrap_or_else(|e| panic!("{e}"));
        answer.results.iter().map(|f| f.id).collect()
    }

    #[test]
    fn insert_dedup_search_and_delete_without_sqlite_callbacks() {
        let t = table();
        let ins = |r: NewRow| {
            t.insert(r, OnConflict::Abort)
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let a = ins(row("The API limit is 100 per minute", [1.0, 0.0, 0.0, 0.0]));
        let b = ins(row("Alice is on call", [0.0, 1.0, 0.0, 0.0]));
        assert_eq!((a, b), (1, 2));
        // An exact duplicate (same normalised text) lands on the existing memory.
        assert_eq!(
            ins(row(
                "the api LIMIT is 100   per minute",
                [0.0, 0.0, 1.0, 0.0]
            )),
            a
        );
        // A near duplicate is stored and supersedes the older memory.
        let c = ins(row(
            "The API limit is 500 per minute",
            [0.99, 0.1, 0.0, 0.0],
        ));
        assert_eq!(knn(&t, [1.0, 0.0, 0.0, 0.0], 2), vec![c, b]);
        assert_eq!(
            t.store.superseded_by(a).ok().flatten().map(|s| s.0),
            Some(c)
        );
        // An explicit id that exists conflicts unless told otherwise.
        let again = NewRow {
            id: Some(b),
            ..row("x", [0.0, 0.0, 0.0, 1.0])
        };
        assert!(t.insert(again.clone(), OnConflict::Abort).is_err());
        assert_eq!(t.insert(again, OnConflict::Ignore).ok(), Some(b));
        t.delete(c).unwrap_or_else(|e| panic!("{e}"));
        // With its successor deleted, the older memory is visible again.
        assert_eq!(knn(&t, [1.0, 0.0, 0.0, 0.0], 1), vec![a]);
    }
}
