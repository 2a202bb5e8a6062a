//! Writes: storing one memory or a batch of them (with the table's dedup outcome),
//! updating and deleting, each in its own `BEGIN IMMEDIATE` transaction ([`db::write`]).

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params_from_iter};
use serde_json::Value;

use super::{Changes, ImportRecord, NewMemory, Outcome, Stored, json_text, no_such, sql_err};
use crate::db::{self, TABLE};

/// Checks an importance value.
fn check_importance(importance: Option<f64>) -> Result<(), String> {
    match importance {
        Some(x) if !(0.0..=1.0).contains(&x) => {
            Err(format!("importance must be a number from 0 to 1 (got {x})"))
        }
        _ => Ok(()),
    }
}

/// Checks a content value.
fn check_content(content: &str) -> Result<(), String> {
    if content.trim().is_empty() {
        Err("content must be a non-empty text".into())
    } else {
        Ok(())
    }
}

/// The columns and values of an INSERT.
#[derive(Default)]
struct Assignments {
    cols: Vec<&'static str>,
    vals: Vec<SqlValue>,
}

impl Assignments {
    fn push(&mut self, col: &'static str, val: SqlValue) {
        self.cols.push(col);
        self.vals.push(val);
    }
}

/// Checks `m` and turns its fields (and the optional `created_at`, `expires_at` and `id`
/// of an import) into the columns and values to INSERT.
fn insert_values(
    m: &NewMemory,
    created_at: Option<i64>,
    expires_at: Option<i64>,
    id: Option<i64>,
) -> Result<Assignments, String> {
    check_content(&m.content)?;
    check_importance(m.importance)?;
    if m.namespace.as_deref() == Some("") {
        return Err("namespace must not be empty (leave it out for \"default\")".into());
    }
    let mut a = Assignments::default();
    a.push("content", SqlValue::Text(m.content.clone()));
    if let Some(ns) = &m.namespace {
        a.push("namespace", SqlValue::Text(ns.clone()));
    }
    if let Some(tags) = &m.tags {
        a.push("tags", SqlValue::Text(json_text(tags)?));
    }
    if let Some(md) = &m.metadata {
        a.push("metadata", SqlValue::Text(json_text(md)?));
    }
    if let Some(x) = m.importance {
        a.push("importance", SqlValue::Real(x));
    }
    if let Some(s) = &m.source {
        a.push("source", SqlValue::Text(s.clone()));
    }
    if let Some(t) = created_at {
        a.push("created_at", SqlValue::Integer(t));
    }
    if let Some(t) = expires_at {
        a.push("expires_at", SqlValue::Integer(t));
    }
    match &m.ttl {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) => a.push("ttl", SqlValue::Text(t.clone())),
        Some(Value::Number(n)) => a.push("ttl", SqlValue::Real(n.as_f64().unwrap_or(f64::NAN))),
        Some(other) => {
            return Err(format!(
                "ttl must be seconds or a duration such as \"7d\" (got {other})"
            ));
        }
    }
    if let Some(id) = id {
        a.push("id", SqlValue::Integer(id));
    }
    Ok(a)
}

/// INSERTs one memory; returns `last_insert_rowid()` (for a duplicate: the memory it
/// landed on).
fn insert_row(
    conn: &Connection,
    m: &NewMemory,
    created_at: Option<i64>,
    expires_at: Option<i64>,
    id: Option<i64>,
) -> Result<i64, String> {
    let a = insert_values(m, created_at, expires_at, id)?;
    let marks = (1..=a.cols.len())
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO {TABLE}({}) VALUES ({marks})",
        a.cols.join(", ")
    );
    conn.execute(&sql, params_from_iter(a.vals))
        .map_err(sql_err("storing the memory"))?;
    Ok(conn.last_insert_rowid())
}

/// The table's report on the last INSERT, computed after any deferred near-duplicate
/// check (`subcog_last_insert`, which embeds what awaits embedding first).
fn last_outcome(conn: &Connection) -> Result<Stored, String> {
    let outcome: Option<String> = conn
        .query_row(&format!("SELECT subcog_last_insert('{TABLE}')"), [], |r| {
            r.get(0)
        })
        .map_err(sql_err("reading the store outcome"))?;
    let outcome = outcome.ok_or_else(|| {
        format!("reading the store outcome failed: subcog_last_insert('{TABLE}') is NULL")
    })?;
    serde_json::from_str::<Stored>(&outcome)
        .map_err(|e| format!("reading the store outcome failed: unexpected {outcome} ({e})"))
}

/// Stores one memory and returns where it landed.
///
/// # Errors
/// Invalid fields, or the table's error.
pub(crate) fn store(conn: &Connection, m: &NewMemory) -> Result<Stored, String> {
    let mut out = Err(String::new());
    db::write(conn, |tx| {
        out = insert_row(tx, m, None, None, None).and_then(|_| last_outcome(tx));
        Ok(())
    })
    .map_err(sql_err("storing the memory"))?;
    out
}

/// Stores a batch of records in one transaction; returns where each landed, in order. A
/// bad record fails the whole batch, with its position in the message.
///
/// # Errors
/// The first invalid record, or the table's error.
pub(crate) fn store_batch(
    conn: &Connection,
    batch: &[(usize, ImportRecord)],
    keep_ids: bool,
) -> Result<Vec<Stored>, String> {
    let mut out = Err(String::new());
    db::write(conn, |tx| {
        out = store_batch_in(tx, batch, keep_ids);
        match out {
            Ok(_) => Ok(()),
            // Roll the batch back: nothing of a failing batch is kept.
            Err(_) => Err(rusqlite::Error::InvalidQuery),
        }
    })
    .or_else(|e| match e {
        rusqlite::Error::InvalidQuery => Ok(()),
        e => Err(sql_err("importing")(e)),
    })?;
    out
}

/// [`store_batch`] inside its transaction. Outcomes are derived without asking the
/// table after each line (`subcog_last_insert` would embed every line alone): a line
/// whose INSERT landed on an id above every id before it is a new memory, else an exact
/// duplicate (merged or skipped per the table's `dedup` option); after the batch,
/// [`mark_superseded`] finds the new memories that supersede older ones.
fn store_batch_in(
    tx: &Connection,
    batch: &[(usize, ImportRecord)],
    keep_ids: bool,
) -> Result<Vec<Stored>, String> {
    let read = sql_err("importing");
    let mut max_id: i64 = tx
        .query_row(
            &format!("SELECT coalesce(max(id), 0) FROM {TABLE}"),
            [],
            |r| r.get(0),
        )
        .map_err(&read)?;
    let policy: String = tx
        .query_row(
            &format!(
                "SELECT coalesce((SELECT value FROM {TABLE}_config WHERE key = 'dedup'), 'merge')"
            ),
            [],
            |r| r.get(0),
        )
        .map_err(&read)?;
    let mut out = Vec::with_capacity(batch.len());
    for (line, r) in batch {
        let explicit = if keep_ids { r.id } else { None };
        let id = insert_row(tx, &r.memory, r.created_at, r.expires_at, explicit)
            .map_err(|e| format!("line {line}: {e}"))?;
        let new = explicit.is_some() || id > max_id;
        max_id = max_id.max(id);
        out.push(Stored {
            id,
            outcome: if new {
                Outcome::Inserted
            } else {
                Outcome::Duplicate
            },
            action: (!new).then(|| policy.clone()),
            supersedes: None,
            similarity: None,
        });
    }
    mark_superseded(tx, &mut out)?;
    Ok(out)
}

/// Runs the table's deferred embedding and near-duplicate checks (any query on the table
/// does), then turns each inserted memory that has a `supersedes` link into `superseded`.
fn mark_superseded(tx: &Connection, out: &mut [Stored]) -> Result<(), String> {
    let read = sql_err("importing");
    tx.query_row(
        &format!("SELECT count(*) FROM {TABLE} WHERE rowid = 0"),
        [],
        |r| r.get::<_, i64>(0),
    )
    .map_err(&read)?;
    let mut st = tx
        .prepare(&format!(
            "SELECT dst, weight FROM {TABLE}_links WHERE src = ?1 AND kind = 'supersedes' \
             ORDER BY dst DESC LIMIT 1"
        ))
        .map_err(&read)?;
    for s in out.iter_mut().filter(|s| s.outcome == Outcome::Inserted) {
        let link: Option<(i64, Option<f64>)> = st
            .query_row([s.id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(&read)?;
        if let Some((older, similarity)) = link {
            s.outcome = Outcome::Superseded;
            s.supersedes = Some(older);
            s.similarity = similarity.map(|x| (x * 1e4).round() / 1e4);
        }
    }
    Ok(())
}

/// Changes the given fields of one memory and returns it as it is now.
///
/// # Errors
/// Nothing to change, invalid fields, unknown id, or the table's error.
pub(crate) fn update(conn: &Connection, id: i64, c: &Changes) -> Result<super::Memory, String> {
    if let Some(content) = &c.content {
        check_content(content)?;
    }
    check_importance(c.importance)?;
    let mut a = Assignments::default();
    if let Some(content) = &c.content {
        a.push("content", SqlValue::Text(content.clone()));
    }
    if let Some(tags) = &c.tags {
        a.push("tags", SqlValue::Text(json_text(tags)?));
    }
    if let Some(md) = &c.metadata {
        a.push("metadata", SqlValue::Text(json_text(md)?));
    }
    if let Some(x) = c.importance {
        a.push("importance", SqlValue::Real(x));
    }
    if a.cols.is_empty() {
        return Err(
            "nothing to update: give at least one of content, tags, metadata, importance".into(),
        );
    }
    let sets = a
        .cols
        .iter()
        .enumerate()
        .map(|(i, col)| format!("{col} = ?{}", i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    let mut vals = a.vals;
    vals.push(SqlValue::Integer(id));
    let sql = format!("UPDATE {TABLE} SET {sets} WHERE id = ?{}", vals.len());
    let changed = db::write(conn, |tx| tx.execute(&sql, params_from_iter(vals.clone())))
        .map_err(sql_err("updating the memory"))?;
    if changed == 0 {
        return Err(no_such(id));
    }
    super::get(conn, id)
}

/// Deletes one memory.
///
/// # Errors
/// Unknown id, or the table's error.
pub(crate) fn delete(conn: &Connection, id: i64) -> Result<(), String> {
    let changed = db::write(conn, |tx| {
        tx.execute(&format!("DELETE FROM {TABLE} WHERE id = ?1"), [id])
    })
    .map_err(sql_err("deleting the memory"))?;
    if changed == 0 {
        return Err(no_such(id));
    }
    Ok(())
}
