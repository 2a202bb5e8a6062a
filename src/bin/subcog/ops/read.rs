//! Reads: one memory by id, searches, listing, the export scan and the statistics.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params_from_iter};
use serde_json::Value;

use super::records::NamespaceCount;
use super::{COLUMNS, MAX_K, MAX_LIMIT, Memory, Mode, Ranking, Scored, Stats, no_such, sql_err};
use crate::db::{self, TABLE};

/// Reads one memory.
///
/// # Errors
/// `no memory with id N`, or the table's error.
pub(crate) fn get(conn: &Connection, id: i64) -> Result<Memory, String> {
    db::with_retry(|| {
        conn.query_row(
            &format!("SELECT {COLUMNS} FROM {TABLE} WHERE id = ?1"),
            [id],
            Memory::from_row,
        )
        .optional()
    })
    .map_err(sql_err("reading the memory"))?
    .ok_or_else(|| no_such(id))
}

/// The namespace of memory `id`, or `None` when there is no such memory.
///
/// # Errors
/// The table's error.
pub(crate) fn namespace_of(conn: &Connection, id: i64) -> Result<Option<String>, String> {
    db::with_retry(|| {
        conn.query_row(
            &format!("SELECT namespace FROM {TABLE} WHERE id = ?1"),
            [id],
            |r| r.get(0),
        )
        .optional()
    })
    .map_err(sql_err("reading the memory"))
}

/// The SELECT of a search and its parameters: `?1` the query, `?2` k, then `?3` the
/// namespace and `?4` the ranking JSON when given (as many values as the highest
/// parameter number the statement uses).
fn search_sql(
    query: &str,
    k: u32,
    namespace: Option<&str>,
    mode: Mode,
    rank_json: Option<&str>,
) -> (String, Vec<SqlValue>) {
    let (term, order) = match mode {
        Mode::Hybrid => (format!("{TABLE} MATCH ?1"), "score DESC"),
        Mode::Vector => ("embedding MATCH embed(?1)".to_string(), "distance"),
        Mode::Keyword => (
            "content MATCH subcog_fts_query(?1)".to_string(),
            "score DESC",
        ),
    };
    let ns = if namespace.is_some() {
        " AND namespace = ?3"
    } else {
        ""
    };
    let (rank, order) = match rank_json {
        Some(_) => (" AND ranking = ?4", "score DESC"),
        None => ("", order),
    };
    let sql = format!(
        "SELECT {COLUMNS}, score, explain FROM {TABLE} WHERE {term} AND k = ?2{ns}{rank} \
         ORDER BY {order}"
    );
    let mut vals = vec![
        SqlValue::Text(query.to_string()),
        SqlValue::Integer(i64::from(k)),
    ];
    if namespace.is_some() || rank_json.is_some() {
        vals.push(namespace.map_or(SqlValue::Null, |ns| SqlValue::Text(ns.to_string())));
    }
    if let Some(j) = rank_json {
        vals.push(SqlValue::Text(j.to_string()));
    }
    (sql, vals)
}

/// Searches: the `k` best memories for `query`, best first.
///
/// # Errors
/// Empty query, a keyword-mode query without words, `k` out of 1..=[`MAX_K`], or the
/// table's error (e.g. the model missing).
pub(crate) fn search(
    conn: &Connection,
    query: &str,
    k: u32,
    namespace: Option<&str>,
    mode: Mode,
    ranking: &Ranking,
) -> Result<Vec<Scored>, String> {
    if query.trim().is_empty() {
        return Err("query must be a non-empty text".into());
    }
    if !(1..=MAX_K).contains(&k) {
        return Err(format!("k must be from 1 to {MAX_K} (got {k})"));
    }
    if mode == Mode::Keyword
        && conn
            .query_row("SELECT subcog_fts_query(?1)", [query], |r| {
                r.get::<_, Option<String>>(0)
            })
            .map_err(sql_err("searching"))?
            .is_none()
    {
        return Err(format!(
            "query has no words to search for in keyword mode (got {query:?}): keyword mode \
             matches the query's words; punctuation and FTS5 operators such as *, NEAR( and \
             quotes are not interpreted"
        ));
    }
    let rank_json = ranking.json();
    let (sql, vals) = search_sql(query, k, namespace, mode, rank_json.as_deref());
    db::with_retry(|| {
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(vals.clone()), |r| {
            let explain = match &rank_json {
                Some(_) => r
                    .get::<_, Option<String>>("explain")?
                    .and_then(|e| serde_json::from_str(&e).ok()),
                None => None,
            };
            Ok(Scored {
                memory: Memory::from_row(r)?,
                score: r.get::<_, Option<f64>>("score")?.unwrap_or(0.0),
                explain,
            })
        })?;
        rows.collect()
    })
    .map_err(sql_err("searching"))
}

/// Lists memories newest first (by `created_at`, then id), leaving out expired and
/// superseded ones (as every search does); `namespaces`: only these (`None`: all).
///
/// # Errors
/// `limit` out of 1..=[`MAX_LIMIT`], or the table's error.
pub(crate) fn list(
    conn: &Connection,
    namespaces: Option<&[&str]>,
    limit: u32,
    offset: u64,
) -> Result<Vec<Memory>, String> {
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(format!("limit must be from 1 to {MAX_LIMIT} (got {limit})"));
    }
    let offset = i64::try_from(offset).map_err(|_| format!("offset too large: {offset}"))?;
    let now = subcog::row::now_ms();
    let mut vals = vec![
        SqlValue::Integer(i64::from(limit)),
        SqlValue::Integer(offset),
        SqlValue::Integer(now),
    ];
    let filter = match namespaces {
        None => String::new(),
        Some([]) => return Ok(Vec::new()),
        Some(list) => {
            let marks: Vec<String> = (0..list.len()).map(|i| format!("?{}", i + 4)).collect();
            vals.extend(list.iter().map(|ns| SqlValue::Text((*ns).to_string())));
            format!("AND namespace IN ({}) ", marks.join(", "))
        }
    };
    // Expired and superseded memories are left out (they are gone for every search too).
    let sql = format!(
        "SELECT {COLUMNS} FROM {TABLE} WHERE (expires_at IS NULL OR expires_at > ?3) \
         AND superseded_by IS NULL {filter}\
         ORDER BY created_at DESC, id DESC LIMIT ?1 OFFSET ?2"
    );
    db::with_retry(|| {
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params_from_iter(vals.clone()), Memory::from_row)?;
        rows.collect()
    })
    .map_err(sql_err("listing"))
}

/// Calls `f` on every memory in id order (for `export`), without holding them all.
///
/// # Errors
/// The table's error, or the first error of `f`.
pub(crate) fn for_each(
    conn: &Connection,
    mut f: impl FnMut(Memory) -> Result<(), String>,
) -> Result<(), String> {
    let mut stmt = conn
        .prepare(&format!("SELECT {COLUMNS} FROM {TABLE} ORDER BY id"))
        .map_err(sql_err("exporting"))?;
    let rows = stmt
        .query_map([], Memory::from_row)
        .map_err(sql_err("exporting"))?;
    for row in rows {
        f(row.map_err(sql_err("exporting"))?)?;
    }
    Ok(())
}

/// Counts per namespace, the model, and the database's path and size.
///
/// # Errors
/// The table's error.
pub(crate) fn stats(conn: &Connection, path: &str) -> Result<Stats, String> {
    let (namespaces, info, size) = db::with_retry(|| {
        let mut stmt = conn.prepare(&format!(
            "SELECT namespace, count(*) AS n FROM {TABLE} GROUP BY namespace ORDER BY n DESC, namespace"
        ))?;
        let namespaces = stmt
            .query_map([], |r| {
                Ok(NamespaceCount {
                    namespace: r.get(0)?,
                    count: r.get(1)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let info: String = conn.query_row("SELECT subcog_info()", [], |r| r.get(0))?;
        let size: i64 = conn.query_row(
            "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
            [],
            |r| r.get(0),
        )?;
        Ok((namespaces, info, size))
    })
    .map_err(sql_err("reading the statistics"))?;
    let info: Value = serde_json::from_str(&info).unwrap_or(Value::Null);
    let text = |k: &str| {
        info.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let flag = |k: &str| info.get(k).and_then(Value::as_bool).unwrap_or(false);
    Ok(Stats {
        total: namespaces.iter().map(|n| n.count).sum(),
        namespaces,
        model: text("model"),
        dim: info.get("dim").and_then(Value::as_i64).unwrap_or(0),
        model_present: flag("model_present"),
        model_loaded: flag("model_loaded"),
        database_path: path.to_string(),
        database_size_bytes: size,
        version: text("version"),
        sqlite_version: text("sqlite_version"),
    })
}
