//! SQL names: identifier quoting, and the `memories` table a SQL function's `table`
//! argument names.

use rusqlite::Connection;

use crate::error::{Error, Result};

/// `s` as an SQL identifier in double quotes (embedded quotes doubled).
pub(crate) fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `(schema, table)` of a table name as SQL functions take it: `name` or `schema.name`
/// (schema `main` when none is given).
pub(crate) fn split_name(name: &str) -> (String, String) {
    match name.split_once('.') {
        Some((s, t)) => (s.to_string(), t.to_string()),
        None => ("main".to_string(), name.to_string()),
    }
}

/// The `memories` table a SQL function's `table` argument names (`name` or
/// `schema.name`; a table whose own name contains a dot is found first), as
/// `(schema, table)` with the table's name as created (SQLite's names are
/// case-insensitive, so `'MEM'` finds `mem`).
///
/// # Errors
/// [`Error::Invalid`]: `"{func}: not a memories table: '{name}' (no memories table named
/// so)"` when no table of that name was created `USING memories`.
pub(crate) fn resolve(conn: &Connection, func: &str, name: &str) -> Result<(String, String)> {
    let whole = ("main".to_string(), name.to_string());
    for (schema, table) in [whole, split_name(name)] {
        let sql = format!(
            "SELECT name, sql FROM {}.sqlite_master WHERE type = 'table' AND name = ?1 \
             COLLATE NOCASE",
            quote(&schema)
        );
        let found: Option<(String, String)> = conn
            .query_row(&sql, [&table], |r| Ok((r.get(0)?, r.get(1)?)))
            .ok();
        if let Some((stored, decl)) = found
            && is_memories(&decl)
        {
            return Ok((schema, stored));
        }
    }
    Err(Error::invalid(format!(
        "{func}: not a memories table: '{name}' (no memories table named so)"
    )))
}

/// Whether a `CREATE VIRTUAL TABLE` statement uses the `memories` module.
fn is_memories(decl: &str) -> bool {
    decl.to_ascii_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| w[0] == "using" && w[1].starts_with("memories"))
}
