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
//!
//! All of it is ordinary SQLite data, so transactions, savepoints, the rollback journal
//! or WAL cover it. The HNSW snapshot is derived data; see [`crate::ann`] for how it
//! stays exact.

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};
use crate::options::TableOptions;
use crate::row::Row;
use crate::vector;

/// On-disk format of the shadow tables written by this build. Format 3 added
/// `<table>_links` and `<table>_unembedded.dedup`; format 2 added `expires_at` and `hash`
/// to `<table>_content`. Older tables are upgraded in place when first opened read-write
/// ([`Store::connect`]).
pub const FORMAT_VERSION: i64 = 3;

/// `kind` of the link from a memory to the older memory it supersedes (a near duplicate
/// stored after it, [`crate::table::dedup`]).
pub const SUPERSEDES: &str = "supersedes";
/// Keys of `<table>_config` that describe the HNSW snapshot rather than table options.
const SNAPSHOT_KEYS: &[&str] = &["format", "generation", "hnsw_saved", "hnsw_vectors"];
/// Size of one `<table>_hnsw` chunk, in bytes.
const CHUNK: usize = 1 << 20;

/// The shadow tables of one `memories` table, reached through the connection that owns it.
pub struct Store {
    conn: Connection,
    /// Table name as the user wrote it.
    pub table: String,
    /// Options the table was created with.
    pub opts: TableOptions,
    q: Names,
}

/// Quoted, schema-qualified names of the shadow tables.
struct Names {
    raw_schema: String,
    schema: String,
    config: String,
    content: String,
    fts: String,
    fts_bare: String,
    vectors: String,
    pending: String,
    hnsw: String,
    unembedded: String,
    links: String,
}

/// `s` as an SQL identifier in double quotes (embedded quotes doubled).
pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `(schema, table)` of a table name as SQL functions take it: `name` or `schema.name`
/// (schema `main` when none is given).
pub fn split_name(name: &str) -> (String, String) {
    match name.split_once('.') {
        Some((s, t)) => (s.to_string(), t.to_string()),
        None => ("main".to_string(), name.to_string()),
    }
}

/// The suffixes of the shadow tables (without FTS5's own `_fts_*` tables).
pub const SHADOW_SUFFIXES: &[&str] = &[
    "config",
    "content",
    "fts",
    "vectors",
    "pending",
    "hnsw",
    "unembedded",
    "links",
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
            vectors: n("vectors"),
            pending: n("pending"),
            hnsw: n("hnsw"),
            unembedded: n("unembedded"),
            links: n("links"),
            raw_schema: schema.to_string(),
            schema: s,
        }
    }
}

impl Store {
    /// Creates the shadow tables for a new table and records its options.
    ///
    /// # Errors
    /// SQLite errors (e.g. a shadow table name already taken).
    pub fn create(
        conn: Connection,
        schema: &str,
        table: &str,
        opts: TableOptions,
    ) -> Result<Store> {
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
             {links_sql};",
            content_sql = content_table_sql(&q.content),
            links_sql = links_table_sql(&q.links),
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
        };
        store.config_set("format", &FORMAT_VERSION.to_string())?;
        for (k, v) in store.opts.to_pairs() {
            store.config_set(k, &v)?;
        }
        store.config_set("generation", "0")?;
        Ok(store)
    }

    /// Opens the shadow tables of an existing table, reading its options back.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the shadow tables are missing or were written by an
    /// incompatible (newer) format.
    pub fn connect(conn: Connection, schema: &str, table: &str) -> Result<Store> {
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
            migrate_v1(&conn, &q, table)?;
        }
        if format == 1 || format == 2 {
            migrate_v2(&conn, &q, table)?;
        } else if format != FORMAT_VERSION {
            return Err(Error::Corrupt(format!(
                "memories table {table}: on-disk format {format}, this build of subcog reads format \
                 {FORMAT_VERSION}; open it with the build that wrote it, or export and re-import"
            )));
        }
        let opt_args: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| !SNAPSHOT_KEYS.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let opts = TableOptions::parse(&opt_args)?;
        Ok(Store {
            conn,
            table: table.to_string(),
            opts,
            q,
        })
    }

    /// Drops every shadow table (FTS5 drops its own).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn destroy(&self) -> Result<()> {
        let q = &self.q;
        self.conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {};
             DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {};
             DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {};",
            q.fts, q.content, q.vectors, q.pending, q.hnsw, q.unembedded, q.links, q.config
        ))?;
        Ok(())
    }

    /// Renames every shadow table to follow the table's new name (xRename).
    ///
    /// # Errors
    /// SQLite errors, e.g. when a shadow table of the new name exists already.
    pub fn rename(&mut self, new: &str) -> Result<()> {
        let old = self.table.clone();
        let s = &self.q.schema;
        let mut sql = String::new();
        for suffix in SHADOW_SUFFIXES {
            sql.push_str(&format!(
                "ALTER TABLE {s}.{} RENAME TO {};",
                quote(&format!("{old}_{suffix}")),
                quote(&format!("{new}_{suffix}"))
            ));
        }
        self.conn.flush_prepared_statement_cache();
        self.conn.execute_batch(&sql)?;
        self.q = Names::new(&self.q.raw_schema.clone(), new);
        self.table = new.to_string();
        Ok(())
    }

    /// Deletes links that name a memory that does not exist (for `'rebuild'`).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn delete_orphan_links(&self) -> Result<usize> {
        Ok(self.conn.execute(
            &format!(
                "DELETE FROM {l} WHERE NOT EXISTS (SELECT 1 FROM {c} WHERE {c}.id = {l}.src) \
                 OR NOT EXISTS (SELECT 1 FROM {c} WHERE {c}.id = {l}.dst)",
                l = self.q.links,
                c = self.q.content
            ),
            [],
        )?)
    }

    /// Deletes stored vectors that belong to no memory.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn delete_orphan_vectors(&self) -> Result<usize> {
        Ok(self.conn.execute(
            &format!(
                "DELETE FROM {v} WHERE NOT EXISTS (SELECT 1 FROM {c} WHERE {c}.id = {v}.id)",
                v = self.q.vectors,
                c = self.q.content
            ),
            [],
        )?)
    }

    /// Rebuilds the FTS5 index from `<table>_content`.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn rebuild_fts(&self) -> Result<()> {
        self.conn.execute_batch(&format!(
            "INSERT INTO {fts}({bare}) VALUES ('delete-all');
             INSERT INTO {fts}(rowid, content) SELECT id, content FROM {content};",
            fts = self.q.fts,
            bare = self.q.fts_bare,
            content = self.q.content
        ))?;
        Ok(())
    }

    /// The connection (for statements owned by other modules).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Reads a config value.
    pub fn config_get(&self, key: &str) -> Result<Option<String>> {
        let sql = format!(
            "SELECT CAST(value AS TEXT) FROM {} WHERE key = ?1",
            self.q.config
        );
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([key], |r| r.get::<_, Option<String>>(0))
            .optional()?
            .flatten())
    }

    /// Writes a config value.
    pub fn config_set(&self, key: &str, value: &str) -> Result<()> {
        let sql = format!(
            "INSERT OR REPLACE INTO {}(key, value) VALUES (?1, ?2)",
            self.q.config
        );
        self.conn
            .prepare_cached(&sql)?
            .execute(params![key, value])?;
        Ok(())
    }

    /// Whether a memory with this id exists.
    pub fn exists(&self, id: i64) -> Result<bool> {
        let sql = format!("SELECT 1 FROM {} WHERE id = ?1", self.q.content);
        Ok(self.conn.prepare_cached(&sql)?.exists([id])?)
    }

    /// Reads one memory (without its embedding).
    pub fn get(&self, id: i64) -> Result<Option<Row>> {
        let sql = format!(
            "SELECT id, content, namespace, tags, metadata, source, importance, created_at, \
             updated_at, expires_at FROM {} WHERE id = ?1",
            self.q.content
        );
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([id], |r| {
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
            })
            .optional()?)
    }

    /// Reads the stored embedding BLOB of one memory.
    pub fn embedding_blob(&self, id: i64) -> Result<Option<Vec<u8>>> {
        let sql = format!("SELECT embedding FROM {} WHERE id = ?1", self.q.vectors);
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([id], |r| r.get(0))
            .optional()?)
    }

    /// Reads the stored embedding of one memory as float32.
    pub fn embedding(&self, id: i64) -> Result<Option<Vec<f32>>> {
        Ok(self
            .embedding_blob(id)?
            .and_then(|b| vector::decode_stored(&b, self.opts.dim)))
    }

    /// The memories stored next to `id` in its namespace: up to `window` ids just below it
    /// and up to `window` just above it (id order, through the `(namespace, id)` index).
    /// Used as context by hybrid search; empty when `id` does not exist or `window` is 0.
    pub fn neighbours(&self, id: i64, window: usize) -> Result<Vec<i64>> {
        if window == 0 {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT id FROM (SELECT id FROM {c} WHERE namespace = \
                 (SELECT namespace FROM {c} WHERE id = ?1) AND id < ?1 ORDER BY id DESC LIMIT ?2)
             UNION ALL
             SELECT id FROM (SELECT id FROM {c} WHERE namespace = \
                 (SELECT namespace FROM {c} WHERE id = ?1) AND id > ?1 ORDER BY id LIMIT ?2)",
            c = self.q.content
        );
        let window = window.min(i64::MAX as usize) as i64;
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut out = Vec::new();
        for r in st.query_map(params![id, window], |r| r.get(0))? {
            out.push(r?);
        }
        Ok(out)
    }

    /// The id an INSERT without one gets (as SQLite's rowid allocation: max + 1).
    pub fn next_id(&self) -> Result<i64> {
        let sql = format!("SELECT coalesce(max(id), 0) + 1 FROM {}", self.q.content);
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([], |r| r.get(0))?)
    }

    /// Inserts a memory, its FTS5 entry and, per `vec`, its vector (`Set`), a note that
    /// it awaits embedding (`Defer`; `near_check`: the near-duplicate check runs once it
    /// is embedded, [`Store::unembedded`]) or nothing; marks it pending.
    pub fn insert(&self, row: &Row, vec: VectorChange<'_>, near_check: bool) -> Result<()> {
        let sql = format!(
            "INSERT INTO {}(id, content, namespace, tags, metadata, source, importance, \
             created_at, updated_at, expires_at, hash) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            self.q.content
        );
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
            crate::table::dedup::content_hash(&row.content).as_slice()
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
        self.mark_pending(row.id)
    }

    /// Replaces the columns of memory `old.id` with `new` (same id) and, per `vec`, its vector.
    pub fn update(&self, old: &Row, new: &Row, vec: VectorChange<'_>) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET content = ?2, namespace = ?3, tags = ?4, metadata = ?5, source = ?6, \
             importance = ?7, created_at = ?8, updated_at = ?9, expires_at = ?10, hash = ?11 \
             WHERE id = ?1",
            self.q.content
        );
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
            crate::table::dedup::content_hash(&new.content).as_slice()
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
        Ok(())
    }

    /// Deletes a memory, its FTS5 entry and its vector; marks it pending.
    pub fn delete(&self, old: &Row) -> Result<()> {
        self.fts_delete(old.id, &old.content)?;
        let sql = format!("DELETE FROM {} WHERE id = ?1", self.q.content);
        self.conn.prepare_cached(&sql)?.execute([old.id])?;
        self.remove_vector(old.id)?;
        self.clear_unembedded(old.id)?;
        self.delete_links(old.id)?;
        self.mark_pending(old.id)
    }

    /// Records the link `src -kind-> dst` with `weight` (for [`SUPERSEDES`]: the cosine
    /// similarity), replacing an existing one of the same three.
    pub fn add_link(&self, src: i64, dst: i64, kind: &str, weight: f64, now: i64) -> Result<()> {
        let sql = format!(
            "INSERT OR REPLACE INTO {}(src, dst, kind, weight, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            self.q.links
        );
        self.conn
            .prepare_cached(&sql)?
            .execute(params![src, dst, kind, weight, now])?;
        Ok(())
    }

    /// Deletes every link from or to `id` (the memory is deleted).
    fn delete_links(&self, id: i64) -> Result<()> {
        let sql = format!("DELETE FROM {} WHERE src = ?1 OR dst = ?1", self.q.links);
        self.conn.prepare_cached(&sql)?.execute([id])?;
        Ok(())
    }

    /// Points every link of memory `old` at `new` (an UPDATE that changes the id).
    pub fn move_links(&self, old: i64, new: i64) -> Result<()> {
        for end in ["src", "dst"] {
            let sql = format!(
                "UPDATE OR REPLACE {} SET {end} = ?2 WHERE {end} = ?1",
                self.q.links
            );
            self.conn.prepare_cached(&sql)?.execute([old, new])?;
        }
        Ok(())
    }

    /// The newest memory that supersedes `id`, with the link's weight (similarity).
    pub fn superseded_by(&self, id: i64) -> Result<Option<(i64, f64)>> {
        self.supersedes_link(id, "dst", "src")
    }

    /// The memory `id` supersedes, with the link's weight (similarity).
    pub fn supersedes(&self, id: i64) -> Result<Option<(i64, f64)>> {
        self.supersedes_link(id, "src", "dst")
    }

    /// The [`SUPERSEDES`] link whose `known` end is `id`: its `other` end (the largest
    /// when several) and weight.
    fn supersedes_link(&self, id: i64, known: &str, other: &str) -> Result<Option<(i64, f64)>> {
        let sql = format!(
            "SELECT {other}, weight FROM {} WHERE {known} = ?1 AND kind = ?2 \
             ORDER BY {other} DESC LIMIT 1",
            self.q.links
        );
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![id, SUPERSEDES], |r| {
                Ok((r.get(0)?, r.get::<_, Option<f64>>(1)?.unwrap_or(0.0)))
            })
            .optional()?)
    }

    /// The oldest live (unexpired at `now`) memory of `namespace` whose normalised content
    /// has this hash ([`crate::table::dedup::content_hash`]), other than `except`.
    pub fn find_by_hash(
        &self,
        namespace: &str,
        hash: &[u8; 32],
        now: i64,
        except: i64,
    ) -> Result<Option<i64>> {
        let sql = format!(
            "SELECT id FROM {c} WHERE namespace = ?1 AND hash = ?2 AND id <> ?4 \
             AND (expires_at IS NULL OR expires_at > ?3) \
             AND NOT EXISTS (SELECT 1 FROM {l} WHERE dst = {c}.id AND kind = ?5) \
             ORDER BY id LIMIT 1",
            c = self.q.content,
            l = self.q.links
        );
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
    pub fn stale_hashes(&self) -> Result<Vec<i64>> {
        let sql = format!("SELECT id, content, hash FROM {}", self.q.content);
        let mut st = self.conn.prepare(&sql)?;
        let mut rows = st.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let content: String = r.get(1)?;
            let hash: Option<Vec<u8>> = r.get(2)?;
            if hash.as_deref() != Some(crate::table::dedup::content_hash(&content).as_slice()) {
                out.push(r.get(0)?);
            }
        }
        Ok(out)
    }

    /// Recomputes the dedup hash of the given memories from their content.
    pub fn rehash(&self, ids: &[i64]) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET hash = ?2 WHERE id = ?1 AND content = ?3",
            self.q.content
        );
        for &id in ids {
            if let Some(row) = self.get(id)? {
                self.conn.prepare_cached(&sql)?.execute(params![
                    id,
                    crate::table::dedup::content_hash(&row.content).as_slice(),
                    row.content
                ])?;
            }
        }
        Ok(())
    }

    /// Ids of memories expired at `now` (milliseconds since the Unix epoch), optionally of
    /// one namespace. Uses the `(expires_at, id)` index.
    pub fn expired_ids(&self, now: i64, namespace: Option<&str>) -> Result<Vec<i64>> {
        let sql = format!(
            "SELECT id FROM {} WHERE expires_at <= ?1 AND (?2 IS NULL OR namespace = ?2)",
            self.q.content
        );
        let ids = self
            .conn
            .prepare_cached(&sql)?
            .query_map(params![now, namespace], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }

    fn mark_unembedded(&self, id: i64, near_check: bool) -> Result<()> {
        let sql = format!(
            "INSERT OR REPLACE INTO {}(id, dedup) VALUES (?1, ?2)",
            self.q.unembedded
        );
        self.conn
            .prepare_cached(&sql)?
            .execute(params![id, i64::from(near_check)])?;
        Ok(())
    }

    /// Removes the "awaits embedding or check" note of `id`.
    pub fn clear_unembedded(&self, id: i64) -> Result<()> {
        let sql = format!("DELETE FROM {} WHERE id = ?1", self.q.unembedded);
        self.conn.prepare_cached(&sql)?.execute([id])?;
        Ok(())
    }

    /// Whether some memories written in this transaction still await their embedding.
    pub fn has_unembedded(&self) -> Result<bool> {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", self.q.unembedded);
        Ok(self
            .conn
            .prepare_cached(&sql)?
            .query_row([], |r| r.get(0))?)
    }

    /// Up to `limit` memories awaiting their embedding or their near-duplicate check, in
    /// id order.
    pub fn unembedded(&self, limit: usize) -> Result<Vec<Unembedded>> {
        let sql = format!(
            "SELECT u.id, c.content, c.namespace, u.dedup, v.embedding FROM {} u \
             JOIN {} c ON c.id = u.id LEFT JOIN {} v ON v.id = u.id ORDER BY u.id LIMIT ?1",
            self.q.unembedded, self.q.content, self.q.vectors
        );
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
    pub fn set_embedded(&self, id: i64, v: &[f32]) -> Result<()> {
        self.set_vector(id, v)?;
        self.clear_unembedded(id)?;
        self.mark_pending(id)
    }

    /// Forgets every "awaits embedding" note (used by 'rebuild' after re-embedding).
    pub fn clear_all_unembedded(&self) -> Result<()> {
        self.conn
            .execute(&format!("DELETE FROM {}", self.q.unembedded), [])?;
        Ok(())
    }

    fn fts_insert(&self, id: i64, content: &str) -> Result<()> {
        let sql = format!("INSERT INTO {}(rowid, content) VALUES (?1, ?2)", self.q.fts);
        self.conn
            .prepare_cached(&sql)?
            .execute(params![id, content])?;
        Ok(())
    }

    fn fts_delete(&self, id: i64, content: &str) -> Result<()> {
        let sql = format!(
            "INSERT INTO {}({}, rowid, content) VALUES ('delete', ?1, ?2)",
            self.q.fts, self.q.fts_bare
        );
        self.conn
            .prepare_cached(&sql)?
            .execute(params![id, content])?;
        Ok(())
    }

    fn set_vector(&self, id: i64, v: &[f32]) -> Result<()> {
        let sql = format!(
            "INSERT OR REPLACE INTO {}(id, embedding) VALUES (?1, ?2)",
            self.q.vectors
        );
        self.conn
            .prepare_cached(&sql)?
            .execute(params![id, vector::encode(v)])?;
        Ok(())
    }

    fn remove_vector(&self, id: i64) -> Result<()> {
        let sql = format!("DELETE FROM {} WHERE id = ?1", self.q.vectors);
        self.conn.prepare_cached(&sql)?.execute([id])?;
        Ok(())
    }

    /// Adds `ids` to the pending list (searched exactly beside the graph): the nodes a
    /// checkpoint found unreachable by their own vector ([`crate::ann`]).
    pub fn mark_pending_all(&self, ids: &[i64]) -> Result<()> {
        for &id in ids {
            self.mark_pending(id)?;
        }
        Ok(())
    }

    fn mark_pending(&self, id: i64) -> Result<()> {
        let sql = format!("INSERT OR IGNORE INTO {}(id) VALUES (?1)", self.q.pending);
        self.conn.prepare_cached(&sql)?.execute([id])?;
        Ok(())
    }

    /// Ids whose vector or namespace changed since the HNSW snapshot.
    pub fn pending_ids(&self) -> Result<Vec<i64>> {
        let sql = format!("SELECT id FROM {}", self.q.pending);
        let mut st = self.conn.prepare_cached(&sql)?;
        let ids = st
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ids)
    }

    /// Number of pending ids.
    pub fn pending_count(&self) -> Result<usize> {
        let sql = format!("SELECT count(*) FROM {}", self.q.pending);
        let n: i64 = self
            .conn
            .prepare_cached(&sql)?
            .query_row([], |r| r.get(0))?;
        Ok(n as usize)
    }

    /// Empties the pending list (after a checkpoint folded it into the snapshot).
    pub fn clear_pending(&self) -> Result<()> {
        self.conn
            .execute(&format!("DELETE FROM {}", self.q.pending), [])?;
        Ok(())
    }

    /// `min(count(namespace), cap)`: reads at most `cap` index entries, where
    /// [`Store::count`] reads the whole namespace (SQLite keeps no counts).
    pub fn count_capped(&self, namespace: &str, cap: usize) -> Result<usize> {
        let sql = format!(
            "SELECT count(*) FROM (SELECT 1 FROM {} WHERE namespace = ?1 LIMIT ?2)",
            self.q.content
        );
        let n: i64 = self
            .conn
            .prepare_cached(&sql)?
            .query_row(params![namespace, cap.min(i64::MAX as usize) as i64], |r| {
                r.get(0)
            })?;
        Ok(n as usize)
    }

    /// Ids of all memories, optionally of one namespace, in id order.
    pub fn ids(&self, namespace: Option<&str>) -> Result<Vec<i64>> {
        let mut out = Vec::new();
        match namespace {
            Some(ns) => {
                let sql = format!(
                    "SELECT id FROM {} WHERE namespace = ?1 ORDER BY id",
                    self.q.content
                );
                let mut st = self.conn.prepare_cached(&sql)?;
                for r in st.query_map([ns], |r| r.get(0))? {
                    out.push(r?);
                }
            }
            None => {
                let sql = format!("SELECT id FROM {} ORDER BY id", self.q.content);
                let mut st = self.conn.prepare_cached(&sql)?;
                for r in st.query_map([], |r| r.get(0))? {
                    out.push(r?);
                }
            }
        }
        Ok(out)
    }

    /// `(id, namespace)` of every memory (used to filter HNSW searches by namespace).
    pub fn namespaces(&self) -> Result<Vec<(i64, String)>> {
        let sql = format!("SELECT id, namespace FROM {}", self.q.content);
        let mut st = self.conn.prepare_cached(&sql)?;
        let v = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    /// Calls `f(id, embedding_blob)` for every stored vector, optionally of one namespace.
    pub fn scan_vectors(
        &self,
        namespace: Option<&str>,
        mut f: impl FnMut(i64, &[u8]),
    ) -> Result<()> {
        match namespace {
            Some(ns) => {
                let sql = format!(
                    "SELECT v.id, v.embedding FROM {} c JOIN {} v ON v.id = c.id WHERE c.namespace = ?1",
                    self.q.content, self.q.vectors
                );
                let mut st = self.conn.prepare_cached(&sql)?;
                let mut rows = st.query([ns])?;
                while let Some(r) = rows.next()? {
                    if let rusqlite::types::ValueRef::Blob(b) = r.get_ref(1)? {
                        f(r.get(0)?, b);
                    }
                }
            }
            None => {
                let sql = format!("SELECT id, embedding FROM {}", self.q.vectors);
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

    /// Keyword search: FTS5 `query`, best BM25 first, at most `limit` rows, optionally in
    /// one namespace. Returns `(id, bm25)`; FTS5's bm25 is negative, lower is better.
    ///
    /// # Errors
    /// FTS5 syntax errors, prefixed with what was searched.
    pub fn keyword(
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
                let sql = format!(
                    "SELECT {bare}.rowid, bm25({bare}) FROM {fts} JOIN {content} c ON c.id = {bare}.rowid \
                     WHERE {bare} MATCH ?1 AND c.namespace = ?2 ORDER BY bm25({bare}) LIMIT ?3",
                    fts = self.q.fts,
                    bare = self.q.fts_bare,
                    content = self.q.content
                );
                let mut st = self.conn.prepare_cached(&sql)?;
                let rows = st
                    .query_map(params![query, ns, limit], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(wrap)?;
                for r in rows {
                    out.push(r.map_err(wrap)?);
                }
            }
            None => {
                let sql = format!(
                    "SELECT rowid, bm25({bare}) FROM {fts} WHERE {bare} MATCH ?1 ORDER BY bm25({bare}) LIMIT ?2",
                    fts = self.q.fts,
                    bare = self.q.fts_bare
                );
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

    /// The HNSW snapshot's generation: 0 when there is no snapshot.
    pub fn generation(&self) -> Result<u64> {
        Ok(self
            .config_get("generation")?
            .and_then(|g| g.parse::<i64>().ok())
            .map(|g| g as u64)
            .unwrap_or(0))
    }

    /// `(generation, hnsw_saved)`: the HNSW generation and the generation the stored
    /// snapshot has; they differ only inside the transaction of a deferred checkpoint
    /// (`hnsw_saved` is absent in databases of format 1 without it: then equal).
    pub fn snapshot_state(&self) -> Result<(u64, u64)> {
        let g = self.generation()?;
        let saved = self
            .config_get("hnsw_saved")?
            .and_then(|g| g.parse::<i64>().ok())
            .map_or(g, |g| g as u64);
        Ok((g, saved))
    }

    /// Whether the stored snapshot holds unit-length binary16 vectors (config
    /// `hnsw_vectors` = `unit_f16`; absent in older databases, whose snapshots hold the
    /// float32 vectors as stored).
    pub fn hnsw_unit(&self) -> Result<bool> {
        Ok(self.config_get("hnsw_vectors")?.as_deref() == Some("unit_f16"))
    }

    /// Advances the HNSW generation without writing the snapshot, and empties the
    /// pending list (a deferred checkpoint: `hnsw_saved` keeps the stored snapshot's).
    pub fn set_generation_unsaved(&self, generation: u64) -> Result<()> {
        let (g, saved) = self.snapshot_state()?;
        if g == saved {
            self.config_set("hnsw_saved", &(saved as i64).to_string())?;
        }
        self.config_set("generation", &(generation as i64).to_string())?;
        self.clear_pending()
    }

    /// Calls `f(id, embedding_blob)` for every pending id (`None`: no stored vector).
    pub fn pending_vectors(&self, mut f: impl FnMut(i64, Option<&[u8]>)) -> Result<()> {
        let sql = format!(
            "SELECT p.id, v.embedding FROM {} p LEFT JOIN {} v ON v.id = p.id",
            self.q.pending, self.q.vectors
        );
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
    pub fn pending_vectors_in(
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
                let sql = format!(
                    "SELECT p.id, v.embedding FROM {} p CROSS JOIN {} c ON c.id = p.id \
                     CROSS JOIN {} v ON v.id = p.id WHERE c.namespace = ?1",
                    self.q.pending, self.q.content, self.q.vectors
                );
                let mut st = self.conn.prepare_cached(&sql)?;
                let mut rows = st.query([ns])?;
                while let Some(r) = rows.next()? {
                    each(r)?;
                }
            }
            None => {
                let sql = format!(
                    "SELECT p.id, v.embedding FROM {} p JOIN {} v ON v.id = p.id",
                    self.q.pending, self.q.vectors
                );
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
    pub fn pending_vectors_ns(&self, mut f: impl FnMut(i64, &str, &[u8])) -> Result<()> {
        let sql = format!(
            "SELECT p.id, c.namespace, v.embedding FROM {} p CROSS JOIN {} c ON c.id = p.id \
             CROSS JOIN {} v ON v.id = p.id",
            self.q.pending, self.q.content, self.q.vectors
        );
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

    /// Reads the serialized HNSW snapshot (empty if none) into one buffer of its exact
    /// size (sized first with `length()`, which SQLite answers from the record header),
    /// so a snapshot of hundreds of MB is copied once, without reallocations.
    pub fn hnsw_blob(&self) -> Result<Vec<u8>> {
        let len_sql = format!("SELECT coalesce(sum(length(data)), 0) FROM {}", self.q.hnsw);
        let total: i64 = self
            .conn
            .prepare_cached(&len_sql)?
            .query_row([], |r| r.get(0))?;
        let sql = format!("SELECT data FROM {} ORDER BY chunk", self.q.hnsw);
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut rows = st.query([])?;
        let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        advise_huge_pages(&mut out);
        while let Some(r) = rows.next()? {
            if let rusqlite::types::ValueRef::Blob(b) = r.get_ref(0)? {
                out.extend_from_slice(b);
            }
        }
        Ok(out)
    }

    /// Replaces the HNSW snapshot with `data`, tagged `generation` (`unit`: it holds
    /// unit-length binary16 vectors, else float32 as stored), inside the caller's
    /// transaction. The pending list is left alone: a checkpoint empties it itself
    /// ([`Store::clear_pending`]), while writing a deferred snapshot at COMMIT must keep
    /// the ids that became pending after the deferred checkpoint.
    pub fn save_hnsw(&self, data: &[u8], generation: u64, unit: bool) -> Result<()> {
        self.conn
            .execute(&format!("DELETE FROM {}", self.q.hnsw), [])?;
        let sql = format!("INSERT INTO {}(chunk, data) VALUES (?1, ?2)", self.q.hnsw);
        let mut st = self.conn.prepare_cached(&sql)?;
        for (i, c) in data.chunks(CHUNK).enumerate() {
            st.execute(params![i as i64, c])?;
        }
        self.config_set("generation", &(generation as i64).to_string())?;
        self.config_set("hnsw_saved", &(generation as i64).to_string())?;
        self.config_set("hnsw_vectors", if unit { "unit_f16" } else { "f32" })?;
        Ok(())
    }
}

/// Asks Linux to back `buf`'s spare capacity with transparent huge pages (when THP is in
/// `madvise` mode): a snapshot of ~100 MB then costs ~50 page faults instead of ~25,000,
/// which was a third of the time to load it. Advisory only; failures are ignored.
fn advise_huge_pages(buf: &mut Vec<u8>) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = buf.as_mut_ptr() as usize;
        let end = start + buf.capacity();
        let first = start.next_multiple_of(HUGE);
        if end > first + HUGE {
            let len = (end - first) / HUGE * HUGE;
            // SAFETY: [first, first + len) lies inside `buf`'s allocation, which is not
            // yet written; MADV_HUGEPAGE changes no contents.
            unsafe {
                libc::madvise(first as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}

/// A memory awaiting its embedding ([`Store::unembedded`]).
#[derive(Debug, Clone)]
pub struct Unembedded {
    /// Rowid.
    pub id: i64,
    /// The text to embed.
    pub content: String,
    /// Its namespace (the scope of the near-duplicate check).
    pub namespace: String,
    /// Whether the near-duplicate check runs once it is embedded (an INSERT without id
    /// into a table with dedup on).
    pub near_check: bool,
    /// Its stored vector (`[f32; dim]`) when it was supplied: only the check awaits.
    pub vector: Option<Vec<f32>>,
}

/// What an UPDATE does to the stored vector.
#[derive(Debug, Clone, Copy)]
pub enum VectorChange<'a> {
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

/// `CREATE TABLE` of `<table>_content` (format 2). The inline UNIQUE constraints give the
/// `(namespace, id)`, `(namespace, hash, id)` (dedup lookups) and `(expires_at, id)` (TTL)
/// indexes; being automatic indexes they follow the table through ALTER TABLE RENAME.
fn content_table_sql(name: &str) -> String {
    format!(
        "CREATE TABLE {name}(id INTEGER PRIMARY KEY, content TEXT NOT NULL,
            namespace TEXT NOT NULL, tags TEXT NOT NULL, metadata TEXT NOT NULL,
            source TEXT, importance REAL NOT NULL, created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL, expires_at INTEGER, hash BLOB,
            UNIQUE (namespace, id), UNIQUE (namespace, hash, id), UNIQUE (expires_at, id))"
    )
}

/// `CREATE TABLE` of `<table>_links` (`name`: its quoted, schema-qualified name): one row
/// per relation `src -kind-> dst`; the UNIQUE constraint is the index by target.
fn links_table_sql(name: &str) -> String {
    format!(
        "CREATE TABLE {name}(src INTEGER NOT NULL, dst INTEGER NOT NULL, kind TEXT NOT NULL,
            weight REAL, created_at INTEGER NOT NULL, PRIMARY KEY (src, kind, dst),
            UNIQUE (dst, kind, src)) WITHOUT ROWID"
    )
}

/// Upgrades the shadow tables of a format 2 table to format 3: `<table>_links` is created
/// and `<table>_unembedded` gains `dedup`. Runs in a savepoint.
///
/// # Errors
/// [`Error::Corrupt`] naming the table when the upgrade cannot be written (e.g. a
/// read-only database: open it read-write once with this build).
fn migrate_v2(conn: &Connection, q: &Names, table: &str) -> Result<()> {
    let run = || -> rusqlite::Result<()> {
        conn.execute_batch(&format!(
            "SAVEPOINT subcog_migrate;
             {links};
             ALTER TABLE {unembedded} ADD COLUMN dedup INTEGER NOT NULL DEFAULT 0;
             INSERT OR REPLACE INTO {config}(key, value) VALUES ('format', '{FORMAT_VERSION}');
             RELEASE subcog_migrate;",
            links = links_table_sql(&q.links),
            unembedded = q.unembedded,
            config = q.config,
        ))
    };
    run().map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK TO subcog_migrate; RELEASE subcog_migrate;");
        Error::Corrupt(format!(
            "memories table {table}: on-disk format 2 must be upgraded to format \
             {FORMAT_VERSION} once, and the upgrade failed ({e}); open the database read-write \
             with this build"
        ))
    })
}

/// Upgrades the shadow tables of a format 1 table to format 2: `<table>_content` is
/// rebuilt with `expires_at` (NULL) and `hash` (computed here). Runs in a savepoint, so it happens whole or not at all.
///
/// # Errors
/// [`Error::Corrupt`] naming the table when the upgrade cannot be written (e.g. a
/// read-only database: open it read-write once with this build).
fn migrate_v1(conn: &Connection, q: &Names, table: &str) -> Result<()> {
    let run = || -> rusqlite::Result<()> {
        let tmp = format!("{}.{}", q.schema, quote(&format!("{table}_content_v2")));
        conn.execute_batch(&format!(
            "SAVEPOINT subcog_migrate;
             {create};
             INSERT INTO {tmp}(id, content, namespace, tags, metadata, source, importance,
                created_at, updated_at)
               SELECT id, content, namespace, tags, metadata, source, importance, created_at,
                      updated_at FROM {content};
             DROP TABLE {content};
             ALTER TABLE {tmp} RENAME TO {bare};",
            create = content_table_sql(&tmp),
            content = q.content,
            bare = quote(&format!("{table}_content")),
        ))?;
        let rows: Vec<(i64, String)> = conn
            .prepare(&format!("SELECT id, content FROM {}", q.content))?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut st = conn.prepare(&format!("UPDATE {} SET hash = ?2 WHERE id = ?1", q.content))?;
        for (id, content) in rows {
            st.execute(params![
                id,
                crate::table::dedup::content_hash(&content).as_slice()
            ])?;
        }
        conn.execute(
            &format!(
                "INSERT OR REPLACE INTO {}(key, value) VALUES ('format', '2')",
                q.config
            ),
            [],
        )?;
        conn.execute_batch("RELEASE subcog_migrate;")
    };
    run().map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK TO subcog_migrate; RELEASE subcog_migrate;");
        Error::Corrupt(format!(
            "memories table {table}: on-disk format 1 must be upgraded to format \
             {FORMAT_VERSION} once, and the upgrade failed ({e}); open the database read-write \
             with this build"
        ))
    })
}
