//! SQL names: identifier quoting, and the `memories` table a SQL function's `table`
//! argument names.

use rusqlite::Connection;

use crate::error::{Error, Result};

/// `s` as an SQL identifier in double quotes (embedded quotes doubled).
pub(crate) fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The `memories` table a SQL function's `table` argument names, as SQLite resolves a
/// table name: `name` (searched in `temp`, then `main`, then the attached databases in the
/// order they were attached), `schema.name`, or either part quoted as an SQL identifier
/// (`"a.b"`, `main."my table"`, `[x]`, `` `x` ``); a table whose own name contains a dot
/// is found first. Returns `(schema, table)` with the table's name as created (SQLite's
/// names are case-insensitive for ASCII letters, so `'MEM'` finds `mem`).
///
/// # Errors
/// [`Error::Invalid`]: `"{func}: not a memories table: '{name}' (no memories table named
/// so)"` when no table of that name was created `USING memories`.
pub(crate) fn resolve(conn: &Connection, func: &str, name: &str) -> Result<(String, String)> {
    let mut candidates: Vec<(Option<String>, String)> = vec![(None, name.to_string())];
    match parse_dotted(name).as_deref() {
        Some([t]) => candidates.push((None, t.clone())),
        Some([s, t]) => candidates.push((Some(s.clone()), t.clone())),
        _ => {}
    }
    let mut searched: Option<Vec<String>> = None;
    for (schema, table) in candidates {
        let schemas = match schema {
            Some(s) => vec![s],
            None => searched.get_or_insert_with(|| search_order(conn)).clone(),
        };
        for schema in schemas {
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
    }
    Err(Error::invalid(format!(
        "{func}: not a memories table: '{name}' (no memories table named so)"
    )))
}

/// The schemas an unqualified table name is looked up in, in SQLite's order: `temp`,
/// `main`, then the attached databases (`PRAGMA database_list` order). `temp` and `main`
/// only if the list cannot be read.
fn search_order(conn: &Connection) -> Vec<String> {
    let mut out = vec!["temp".to_string(), "main".to_string()];
    if let Ok(mut st) = conn.prepare("SELECT name FROM pragma_database_list ORDER BY seq")
        && let Ok(rows) = st.query_map([], |r| r.get::<_, String>(0))
    {
        for n in rows.flatten() {
            if !out.iter().any(|o| o.eq_ignore_ascii_case(&n)) {
                out.push(n);
            }
        }
    }
    out
}

/// `name` read as SQL identifiers separated by dots, each bare (no quote, dot or blank
/// around it) or quoted with `"..."` (`""` inside), `` `...` `` or `[...]`: the unquoted
/// parts, or `None` when it is not such a name.
fn parse_dotted(name: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = name.chars().peekable();
    loop {
        let part = match chars.peek().copied()? {
            q @ ('"' | '`') => {
                chars.next();
                let mut p = String::new();
                loop {
                    let c = chars.next()?;
                    if c == q {
                        if chars.peek() == Some(&q) {
                            chars.next();
                            p.push(q);
                        } else {
                            break;
                        }
                    } else {
                        p.push(c);
                    }
                }
                p
            }
            '[' => {
                chars.next();
                let mut p = String::new();
                loop {
                    match chars.next()? {
                        ']' => break,
                        c => p.push(c),
                    }
                }
                p
            }
            _ => {
                let mut p = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '.' {
                        break;
                    }
                    if matches!(c, '"' | '`' | '[' | ']') {
                        return None;
                    }
                    p.push(c);
                    chars.next();
                }
                if p.is_empty() || p.trim() != p {
                    return None;
                }
                p
            }
        };
        parts.push(part);
        match chars.next() {
            None => return Some(parts),
            Some('.') => {}
            Some(_) => return None,
        }
    }
}

/// Whether a `CREATE VIRTUAL TABLE` statement uses the `memories` module.
fn is_memories(decl: &str) -> bool {
    decl.to_ascii_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| w[0] == "using" && w[1].starts_with("memories"))
}
