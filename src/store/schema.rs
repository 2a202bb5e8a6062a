//! The shadow tables' `CREATE TABLE` statements and the in-place upgrades of older
//! on-disk formats.

use rusqlite::{Connection, params};

use super::Names;
use crate::error::{Error, Result};
use crate::names::quote;
use crate::table::dedup::content_hash;

/// On-disk format of the shadow tables written by this build. Format 4 added
/// `<table>_history` and `<table>_snapshots`; format 3 added
/// `<table>_links` and `<table>_unembedded.dedup`; format 2 added `expires_at` and `hash`
/// to `<table>_content`. Older tables are upgraded in place when first opened read-write
/// ([`Store::connect`]).
pub(crate) const FORMAT_VERSION: i64 = 4;

/// `CREATE TABLE` of `<table>_content` (format 2). The inline UNIQUE constraints give the
/// `(namespace, id)`, `(namespace, hash, id)` (dedup lookups) and `(expires_at, id)` (TTL)
/// indexes; being automatic indexes they follow the table through ALTER TABLE RENAME.
pub(super) fn content_table_sql(name: &str) -> String {
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
pub(super) fn links_table_sql(name: &str) -> String {
    format!(
        "CREATE TABLE {name}(src INTEGER NOT NULL, dst INTEGER NOT NULL, kind TEXT NOT NULL,
            weight REAL, created_at INTEGER NOT NULL, PRIMARY KEY (src, kind, dst),
            UNIQUE (dst, kind, src)) WITHOUT ROWID"
    )
}

/// `CREATE TABLE` of `<table>_history` (format 4): one row per change; the UNIQUE
/// constraint is the index of one memory's changes (and follows ALTER TABLE RENAME).
pub(super) fn history_table_sql(name: &str) -> String {
    format!(
        "CREATE TABLE {name}(version INTEGER PRIMARY KEY, time INTEGER NOT NULL,
            op TEXT NOT NULL, id INTEGER NOT NULL, before TEXT, after TEXT,
            vector_changed INTEGER NOT NULL DEFAULT 0, embedding BLOB, UNIQUE (id, version))"
    )
}

/// `CREATE TABLE` of `<table>_snapshots` (format 4): named versions.
pub(super) fn snapshots_table_sql(name: &str) -> String {
    format!(
        "CREATE TABLE {name}(name TEXT PRIMARY KEY, version INTEGER NOT NULL,
            created_at INTEGER NOT NULL) WITHOUT ROWID"
    )
}

/// Upgrades the shadow tables of a format 3 table to format 4: `<table>_history` and
/// `<table>_snapshots` are created; the history starts now, at version 0 (the table as it
/// is at the upgrade). Runs in a savepoint.
///
/// # Errors
/// [`Error::Corrupt`] naming the table when the upgrade cannot be written (e.g. a
/// read-only database: open it read-write once with this build).
pub(super) fn migrate_v3(conn: &Connection, q: &Names, table: &str) -> Result<()> {
    let run = || -> rusqlite::Result<()> {
        conn.execute_batch(&format!(
            "SAVEPOINT subcog_migrate;
             {history};
             {snapshots};
             INSERT OR REPLACE INTO {config}(key, value) VALUES ('history_since', {now});
             INSERT OR REPLACE INTO {config}(key, value) VALUES ('history_floor', 0);
             INSERT OR REPLACE INTO {config}(key, value) VALUES ('format', '{FORMAT_VERSION}');
             RELEASE subcog_migrate;",
            history = history_table_sql(&q.history),
            snapshots = snapshots_table_sql(&q.snapshots),
            config = q.config,
            now = crate::row::now_ms(),
        ))
    };
    run().map_err(|e| {
        let _ = conn.execute_batch("ROLLBACK TO subcog_migrate; RELEASE subcog_migrate;");
        Error::Corrupt(format!(
            "memories table {table}: on-disk format 3 must be upgraded to format \
             {FORMAT_VERSION} once, and the upgrade failed ({e}); open the database read-write \
             with this build"
        ))
    })
}

/// Upgrades the shadow tables of a format 2 table to format 3: `<table>_links` is created
/// and `<table>_unembedded` gains `dedup`. Runs in a savepoint.
///
/// # Errors
/// [`Error::Corrupt`] naming the table when the upgrade cannot be written (e.g. a
/// read-only database: open it read-write once with this build).
pub(super) fn migrate_v2(conn: &Connection, q: &Names, table: &str) -> Result<()> {
    let run = || -> rusqlite::Result<()> {
        conn.execute_batch(&format!(
            "SAVEPOINT subcog_migrate;
             {links};
             ALTER TABLE {unembedded} ADD COLUMN dedup INTEGER NOT NULL DEFAULT 0;
             INSERT OR REPLACE INTO {config}(key, value) VALUES ('format', '3');
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
pub(super) fn migrate_v1(conn: &Connection, q: &Names, table: &str) -> Result<()> {
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
            st.execute(params![id, content_hash(&content).as_slice()])?;
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
