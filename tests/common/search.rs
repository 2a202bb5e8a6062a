//! Searches through SQL: KNN (`embedding MATCH ? AND k = ?`), keyword (`content MATCH`),
//! `subcog_last_insert`, and an exact top-k over supplied unit vectors.

use rusqlite::{Connection, OptionalExtension, params};

use super::blob;

/// A KNN query on `table`: `(id, distance)` rows.
pub fn knn(
    c: &Connection,
    table: &str,
    q: &[f32],
    k: usize,
    ns: Option<&str>,
    include_superseded: bool,
) -> rusqlite::Result<Vec<(i64, f32)>> {
    let mut sql = format!(
        "SELECT id, distance FROM {table} WHERE embedding MATCH ?1 AND k = ?2 AND (?3 IS NULL OR 1)"
    );
    if ns.is_some() {
        sql.push_str(" AND namespace = ?3");
    }
    if include_superseded {
        sql.push_str(" AND include_superseded = 1");
    }
    let mut st = c.prepare_cached(&sql)?;
    st.query_map(params![blob(q), k as i64, ns], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)? as f32))
    })?
    .collect()
}

/// A keyword query on `table`: the ids, sorted.
pub fn keyword(
    c: &Connection,
    table: &str,
    word: &str,
    ns: Option<&str>,
    include_superseded: bool,
) -> rusqlite::Result<Vec<i64>> {
    let mut sql = format!("SELECT id FROM {table} WHERE content MATCH ?1 AND (?2 IS NULL OR 1)");
    if ns.is_some() {
        sql.push_str(" AND namespace = ?2");
    }
    if include_superseded {
        sql.push_str(" AND include_superseded = 1");
    }
    let mut ids: Vec<i64> = c
        .prepare_cached(&sql)?
        .query_map(params![word, ns], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    ids.sort_unstable();
    Ok(ids)
}

/// `subcog_last_insert(table)` parsed (`None` for NULL).
pub fn last_insert(c: &Connection, table: &str) -> Option<serde_json::Value> {
    let s: Option<String> = c
        .query_row("SELECT subcog_last_insert(?1)", [table], |r| r.get(0))
        .optional()
        .unwrap_or_else(|e| panic!("subcog_last_insert('{table}'): {e}"))
        .flatten();
    s.map(|s| serde_json::from_str(&s).unwrap_or_else(|e| panic!("{e}: {s}")))
}

/// KNN ids on `table` (no `include_superseded`), panicking on an SQL error.
pub fn knn_ids(c: &Connection, table: &str, q: &[f32], k: usize, ns: Option<&str>) -> Vec<i64> {
    knn(c, table, q, k, ns, false)
        .unwrap_or_else(|e| panic!("KNN on {table}: {e}"))
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// Exact top-k ids by cosine distance over `(id, unit vector)` pairs (`1 - dot`), ties
/// by id.
pub fn brute_ids(items: &[(i64, Vec<f32>)], q: &[f32], k: usize) -> Vec<i64> {
    let mut d: Vec<(f32, i64)> = items
        .iter()
        .map(|(id, v)| (1.0 - v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), *id))
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    d.into_iter().take(k).map(|x| x.1).collect()
}
