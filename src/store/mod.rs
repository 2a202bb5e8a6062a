//! The shadow tables of a `memories` table and every SQL statement run against them.
//!
//! For a table `mem` in schema `main`:
//!
//! | shadow table      | holds                                                           |
//! |-------------------|-----------------------------------------------------------------|
//! | `mem_config`      | options, on-disk format version, HNSW `generation`             |
//! | `mem_content`     | one row per memory: every column but the embedding             |
//! | `mem_fts`         | contentless FTS5 index over `content` (text is in `mem_content`) |
//! | `mem_vectors`     | `id -> embedding` BLOB (dim float32), rows with a vector only  |
//! | `mem_pending`     | ids whose vector changed since the HNSW snapshot was taken     |
//! | `mem_hnsw`        | the serialized usearch HNSW snapshot, in 1 MiB chunks          |
//! | `mem_unembedded`  | ids written in the open transaction that await their embedding |
//! | `mem_links`       | relations between memories: `(src, dst, kind, weight)`          |
//! | `mem_history`     | one row per change: version, time, op, id, row before/after     |
//! | `mem_snapshots`   | named versions: `(name, version, created_at)`                   |
//!
//! All of it is ordinary SQLite data, so transactions, savepoints, the rollback journal
//! or WAL cover it. The HNSW snapshot is derived data; see [`crate::ann`] for how it
//! stays exact.
//!
//! One file per shadow table: [`content`] (and the write-through of a row to the others),
//! [`fts`], [`vectors`] (with `_unembedded`), [`pending`], [`snapshot`] (`_config` and
//! `_hnsw`), [`links`], [`history`] (`_history`, `_snapshots`); [`schema`] creates and
//! upgrades them, [`integrity`] checks them; [`bulk`] fills a fresh private copy (the
//! as-of copy, a branch's working copy) in bulk.
//! Every SQL text is built once per table ([`Store::sql`]) and prepared once per
//! connection (the statement cache holds them all, [`STATEMENT_CACHE`]).

pub(crate) mod bm25;
pub(crate) mod branch;
pub(crate) mod bulk;
mod content;
mod fts;
pub(crate) mod history;
pub(crate) mod integrity;
mod kept;
mod links;
mod pending;
pub(crate) mod postings;
#[cfg(test)]
mod test_rng {
    /// splitmix64: the store's unit tests' random numbers.
    pub(super) fn next(x: &mut u64) -> u64 {
        *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
mod schema;
mod snapshot;
pub(crate) use kept::Hidden;
pub(crate) use snapshot::GraphVectors;
mod vectors;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::panic::Location;
use std::rc::Rc;

use rusqlite::Connection;

use crate::error::{Error, Result};
use crate::names::quote;
use crate::options::TableOptions;

pub(crate) use links::{CONTRADICTS, KINDS, Link};
pub(crate) use schema::FORMAT_VERSION;
pub(crate) use vectors::Unembedded;

/// Prepared statements kept per connection: every statement of [`Store`] (about 50)
/// stays prepared (rusqlite's default keeps 16, so a search and a write evicted each
/// other's statements).
pub(crate) const STATEMENT_CACHE: usize = 96;

/// `kind` of the link from a memory to the older memory it supersedes (a near duplicate
/// stored after it, [`crate::table::dedup`]).
pub(crate) const SUPERSEDES: &str = "supersedes";

/// The shadow tables of one `memories` table, reached through the connection that owns it.
pub(crate) struct Store {
    conn: Connection,
    /// Table name as the user wrote it.
    pub(crate) table: String,
    /// Options the table was created with.
    pub(crate) opts: TableOptions,
    q: Names,
    /// SQL texts by the call site that built them ([`Store::sql`]).
    sql: RefCell<HashMap<&'static Location<'static>, Rc<str>>>,
    /// The `op` recorded for memory changes instead of insert/update/delete
    /// ([`Store::with_op`]: `merge`, `restore`).
    history_op: Cell<Option<&'static str>>,
    /// Document frequencies of keyword-search words ([`Store::keyword_words`]).
    df: RefCell<fts::DfCache>,
    /// Set while a branch writes its working copy's changes through
    /// ([`Store::quietly`]): nothing is recorded.
    quiet: Cell<bool>,
    /// Reads kept between queries while nothing changes ([`kept`]).
    kept: kept::KeptCell,
}

/// Quoted, schema-qualified names of the shadow tables.
struct Names {
    raw_schema: String,
    schema: String,
    config: String,
    content: String,
    fts: String,
    fts_bare: String,
    /// FTS5's own `<table>_fts_docsize`: each row's length in tokens.
    fts_docsize: String,
    vectors: String,
    pending: String,
    hnsw: String,
    unembedded: String,
    links: String,
    history: String,
    snapshots: String,
    /// `_masked`: a branch's only ([`branch`]).
    masked: String,
}

/// The suffixes of the shadow tables (without FTS5's own `_fts_*` tables).
pub(crate) const SHADOW_SUFFIXES: &[&str] = &[
    "config",
    "content",
    "fts",
    "vectors",
    "pending",
    "hnsw",
    "unembedded",
    "links",
    "history",
    "snapshots",
    "masked",
];

impl Names {
    fn new(schema: &str, table: &str) -> Self {
        let s = quote(schema);
        let n = |suffix: &str| format!("{s}.{}", quote(&format!("{table}_{suffix}")));
        Names {
            config: n("config"),
            content: n("content"),
            fts: n("fts"),
            fts_bare: quote(&format!("{table}_fts")),
            fts_docsize: n("fts_docsize"),
            vectors: n("vectors"),
            pending: n("pending"),
            hnsw: n("hnsw"),
            unembedded: n("unembedded"),
            links: n("links"),
            history: n("history"),
            snapshots: n("snapshots"),
            masked: n("masked"),
            raw_schema: schema.to_string(),
            schema: s,
        }
    }
}

/// `ids` as a JSON array, the argument of the `json_each(?)` that batched statements
/// read their ids from (one statement for a whole candidate list).
fn id_list(ids: &[i64]) -> String {
    let mut s = String::with_capacity(ids.len() * 8 + 2);
    s.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&id.to_string());
    }
    s.push(']');
    s
}

impl Store {
    /// Creates the shadow tables for a new table and records its options.
    ///
    /// # Errors
    /// SQLite errors (e.g. a shadow table name already taken).
    pub(crate) fn create(
        conn: Connection,
        schema: &str,
        table: &str,
        opts: TableOptions,
    ) -> Result<Store> {
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let q = Names::new(schema, table);
        let sql = format!(
            "CREATE TABLE {config}(key TEXT PRIMARY KEY, value) WITHOUT ROWID;
             {content_sql};
             CREATE VIRTUAL TABLE {fts} USING fts5(content, content='',
                tokenize='porter unicode61 remove_diacritics 2');
             CREATE TABLE {vectors}(id INTEGER PRIMARY KEY, embedding BLOB NOT NULL);
             CREATE TABLE {pending}(id INTEGER PRIMARY KEY);
             CREATE TABLE {hnsw}(chunk INTEGER PRIMARY KEY, data BLOB NOT NULL);
             CREATE TABLE {unembedded}(id INTEGER PRIMARY KEY, dedup INTEGER NOT NULL DEFAULT 0);
             {links_sql};
             {history_sql};
             {snapshots_sql};",
            content_sql = schema::content_table_sql(&q.content),
            links_sql = schema::links_table_sql(&q.links),
            history_sql = schema::history_table_sql(&q.history),
            snapshots_sql = schema::snapshots_table_sql(&q.snapshots),
            config = q.config,
            fts = q.fts,
            vectors = q.vectors,
            pending = q.pending,
            hnsw = q.hnsw,
            unembedded = q.unembedded,
        );
        conn.execute_batch(&sql)?;
        let store = Store {
            conn,
            table: table.to_string(),
            opts,
            q,
            sql: RefCell::default(),
            history_op: Cell::new(None),
            df: RefCell::default(),
            quiet: Cell::new(false),
            kept: RefCell::default(),
        };
        store.config_set("format", &FORMAT_VERSION.to_string())?;
        for (k, v) in store.opts.to_pairs() {
            store.config_set(k, &v)?;
        }
        store.config_set("generation", "0")?;
        store.start_history()?;
        Ok(store)
    }

    /// Opens the shadow tables of an existing table, reading its options back.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the shadow tables are missing or were written by an
    /// incompatible (newer) format.
    pub(crate) fn connect(conn: Connection, schema: &str, table: &str) -> Result<Store> {
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let q = Names::new(schema, table);
        let sql = format!("SELECT key, value FROM {}", q.config);
        let pairs: Vec<(String, String)> = conn
            .prepare(&sql)
            .and_then(|mut st| {
                st.query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, rusqlite::types::Value>(1)?,
                    ))
                })?
                .map(|r| {
                    r.map(|(k, v)| {
                        let v = match v {
                            rusqlite::types::Value::Integer(i) => i.to_string(),
                            rusqlite::types::Value::Real(f) => f.to_string(),
                            rusqlite::types::Value::Text(t) => t,
                            _ => String::new(),
                        };
                        (k, v)
                    })
                })
                .collect()
            })
            .map_err(|e| {
                // Another connection changed the schema since this one parsed it (a new
                // table, Litestream's own tables): SQLITE_SCHEMA goes back to the statement
                // being prepared, which then re-reads the schema and prepares again, where
                // any other error would fail that statement, and every later one, for good.
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::SchemaChanged) {
                    return Error::Sqlite(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_SCHEMA),
                        Some(format!(
                            "memories table {table}: the database schema changed while it was \
                             opened; prepare the statement again"
                        )),
                    ));
                }
                Error::Corrupt(format!(
                    "memories table {table}: cannot read its shadow table {table}_config ({e}); \
                     was it created by subcog?"
                ))
            })?;
        let format: i64 = pairs
            .iter()
            .find(|(k, _)| k == "format")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        if format == 1 {
            schema::migrate_v1(&conn, &q, table)?;
        }
        if format == 1 || format == 2 {
            schema::migrate_v2(&conn, &q, table)?;
        }
        if (1..=3).contains(&format) {
            schema::migrate_v3(&conn, &q, table)?;
        } else if format != FORMAT_VERSION {
            return Err(Error::Corrupt(format!(
                "memories table {table}: on-disk format {format}, this build of subcog reads format \
                 {FORMAT_VERSION}; open it with the build that wrote it, or export and re-import"
            )));
        }
        let opt_args: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| crate::options::is_option(k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let opts = TableOptions::parse(&opt_args)?;
        Ok(Store {
            conn,
            table: table.to_string(),
            opts,
            q,
            sql: RefCell::default(),
            history_op: Cell::new(None),
            df: RefCell::default(),
            quiet: Cell::new(false),
            kept: RefCell::default(),
        })
    }

    /// Drops every shadow table (FTS5 drops its own).
    ///
    /// # Errors
    /// SQLite errors.
    pub(crate) fn destroy(&self) -> Result<()> {
        let q = &self.q;
        self.conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {};
             DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {};
             DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {};
             DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {};",
            q.masked,
            q.fts,
            q.content,
            q.vectors,
            q.pending,
            q.hnsw,
            q.unembedded,
            q.links,
            q.history,
            q.snapshots,
            q.config
        ))?;
        Ok(())
    }

    /// Renames every shadow table to follow the table's new name (xRename).
    ///
    /// # Errors
    /// SQLite errors, e.g. when a shadow table of the new name exists already.
    pub(crate) fn rename(&mut self, new: &str) -> Result<()> {
        let old = self.table.clone();
        let s = &self.q.schema;
        let mut sql = String::new();
        let branch = self.config_get(branch::BRANCH_OF)?.is_some();
        for suffix in SHADOW_SUFFIXES {
            if *suffix == "masked" && !branch {
                continue;
            }
            sql.push_str(&format!(
                "ALTER TABLE {s}.{} RENAME TO {};",
                quote(&format!("{old}_{suffix}")),
                quote(&format!("{new}_{suffix}"))
            ));
        }
        self.conn.flush_prepared_statement_cache();
        self.conn.execute_batch(&sql)?;
        self.q = Names::new(&self.q.raw_schema.clone(), new);
        self.sql.borrow_mut().clear();
        self.table = new.to_string();
        Ok(())
    }

    /// The connection (for statements owned by other modules).
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The SQL text built by `build` at the caller's site: built on the first call from
    /// that site and kept until a rename (the shadow tables' names are fixed until then), so
    /// a statement is formatted once and then found in the statement cache by its text.
    /// `build` must give the same text at every call from one site (no SQL that varies
    /// with an argument).
    #[track_caller]
    fn sql(&self, build: impl FnOnce() -> String) -> Rc<str> {
        let at = Location::caller();
        if let Some(s) = self.sql.borrow().get(at) {
            return Rc::clone(s);
        }
        let s: Rc<str> = build().into();
        self.sql.borrow_mut().insert(at, Rc::clone(&s));
        s
    }
}

/// What an UPDATE does to the stored vector.
#[derive(Debug, Clone, Copy)]
pub(crate) enum VectorChange<'a> {
    /// Leave it as it is.
    Keep,
    /// Store this vector.
    Set(&'a [f32]),
    /// Remove the vector (the memory is then found by keyword search only).
    Remove,
    /// Remove the vector and note that the model must embed `content` before the next
    /// search or the commit, whichever comes first (batched: see `vtab::flush`).
    Defer,
}
