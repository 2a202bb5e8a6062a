//! Context assembly and links: `subcog_context` / `subcog_context_items` and
//! `subcog_link` against the `memories` table.

use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;
use schemars::JsonSchema;
use serde::Serialize;

use super::history::VersionRef;
use super::sql_err;
use crate::db::{self, TABLE};

/// Largest budget the tools accept, in tokens (the SQL function's limit).
pub(crate) const MAX_BUDGET: u32 = 1_000_000;

/// One memory of a context: why it was chosen and what it costs.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct ContextItem {
    /// Id of the memory.
    pub(crate) id: i64,
    /// Tokens its text takes in the context.
    pub(crate) tokens: i64,
    /// Its priority when chosen (search hits: the hybrid search score).
    pub(crate) score: f64,
    /// Why it is there: "search #rank", "link <kind> #id", "neighbour of #id" (and
    /// ", contradicts #id" when a chosen memory contradicts it).
    pub(crate) reason: String,
}

/// A context block and the memories it holds.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Context {
    /// The context: the chosen memories verbatim, grouped by namespace and day, in the
    /// order they were stored (empty when nothing fits the budget).
    pub(crate) context: String,
    /// The memories in it, best first.
    pub(crate) items: Vec<ContextItem>,
}

/// What `memory_context` and `subcog context` pass on: the namespace, the format and the
/// version the context is assembled as of (`None`: now).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ContextOptions<'a> {
    /// Only memories of this namespace.
    pub(crate) namespace: Option<&'a str>,
    /// `text`, `markdown` or `json`.
    pub(crate) format: Option<&'a str>,
    /// As of a snapshot, a version or a time in ms.
    pub(crate) as_of: Option<&'a VersionRef>,
}

/// The options JSON of `subcog_context`.
fn options(o: ContextOptions<'_>) -> Result<String, String> {
    let mut m = serde_json::Map::new();
    if let Some(ns) = o.namespace {
        m.insert("namespace".into(), ns.into());
    }
    if let Some(f) = o.format {
        m.insert("format".into(), f.into());
    }
    match o.as_of {
        Some(VersionRef::Number(n)) => {
            m.insert("as_of".into(), (*n).into());
        }
        Some(VersionRef::Name(n)) => {
            m.insert("as_of".into(), n.as_str().into());
        }
        None => {}
    }
    super::json_text(&m)
}

/// The context text for `query` within `budget` tokens.
///
/// # Errors
/// Empty query, budget out of range, unknown format, an unknown snapshot or a future
/// version (`as_of`), or the table's error.
pub(crate) fn text(
    conn: &Connection,
    query: &str,
    budget: u32,
    o: ContextOptions<'_>,
) -> Result<String, String> {
    check(query, budget)?;
    let opts = options(o)?;
    db::with_retry(|| {
        conn.query_row(
            &format!("SELECT subcog_context('{TABLE}', ?1, ?2, ?3)"),
            rusqlite::params![query, budget, opts],
            |r| r.get(0),
        )
    })
    .map_err(sql_err("assembling the context"))
}

fn check(query: &str, budget: u32) -> Result<(), String> {
    if query.trim().is_empty() {
        return Err("query must be a non-empty text".into());
    }
    if budget > MAX_BUDGET {
        return Err(format!(
            "budget must be from 0 to {MAX_BUDGET} tokens (got {budget})"
        ));
    }
    Ok(())
}

/// The context and its items (the same selection: the assembly is deterministic).
///
/// # Errors
/// As [`text`].
pub(crate) fn context(
    conn: &Connection,
    query: &str,
    budget: u32,
    o: ContextOptions<'_>,
) -> Result<Context, String> {
    let context = text(conn, query, budget, o)?;
    let opts = options(o)?;
    let items = db::with_retry(|| {
        let mut st = conn.prepare(&format!(
            "SELECT id, tokens, score, reason FROM subcog_context_items('{TABLE}', ?1, ?2, ?3)"
        ))?;
        let rows = st.query_map(
            rusqlite::params_from_iter([
                SqlValue::Text(query.to_string()),
                SqlValue::Integer(i64::from(budget)),
                SqlValue::Text(opts.clone()),
            ]),
            |r| {
                Ok(ContextItem {
                    id: r.get(0)?,
                    tokens: r.get(1)?,
                    score: r.get(2)?,
                    reason: r.get(3)?,
                })
            },
        )?;
        rows.collect()
    })
    .map_err(sql_err("assembling the context"))?;
    Ok(Context { context, items })
}

/// What `memory_link` did.
#[derive(Debug, Serialize, JsonSchema)]
pub(crate) struct Linked {
    /// The memory the link goes from.
    pub(crate) src: i64,
    /// The memory the link goes to.
    pub(crate) dst: i64,
    /// The link's kind.
    pub(crate) kind: String,
    /// True when the link is new, false when it existed (its weight was replaced).
    pub(crate) created: bool,
}

/// Links memory `src` to `dst` with `kind` (and `weight`, default 1).
///
/// # Errors
/// An id that names no memory, the same id twice, a bad kind, or the table's error.
pub(crate) fn link(
    conn: &Connection,
    src: i64,
    dst: i64,
    kind: &str,
    weight: Option<f64>,
) -> Result<Linked, String> {
    let created: i64 = db::write(conn, |tx| {
        tx.query_row(
            &format!("SELECT subcog_link('{TABLE}', ?1, ?2, ?3, ?4)"),
            rusqlite::params![src, dst, kind, weight.unwrap_or(1.0)],
            |r| r.get(0),
        )
    })
    .map_err(sql_err("linking"))?;
    Ok(Linked {
        src,
        dst,
        kind: kind.to_string(),
        created: created == 1,
    })
}
