//! Memory operations as SQL against the `memories` virtual table.
//!
//! The MCP tools, `import` and `export` all go through these functions; none of them
//! touches the shadow tables or the extension's Rust API directly.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params_from_iter};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::db::{self, TABLE};

/// Largest `k` a search accepts.
pub const MAX_K: u32 = 100;
/// Largest page `memory_list` returns.
pub const MAX_LIMIT: u32 = 1000;

/// The columns every read returns ([`Memory::from_row`] reads them by name).
const COLUMNS: &str = "id, content, namespace, tags, metadata, source, importance, created_at, \
     updated_at, expires_at, superseded_by";

/// One stored memory.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(inline)]
pub struct Memory {
    /// Identifier, used by memory_get, memory_update and memory_delete.
    pub id: i64,
    /// The remembered text.
    pub content: String,
    /// Namespace (e.g. "user", "project:shop"); "default" when none was given.
    pub namespace: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Free-form JSON object.
    pub metadata: Map<String, Value>,
    /// Where the memory came from; absent when not recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub source: Option<String>,
    /// Importance from 0 to 1.
    pub importance: f64,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Last update time, milliseconds since the Unix epoch.
    pub updated_at: i64,
    /// Expiry time, milliseconds since the Unix epoch; absent when it never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "i64")]
    pub expires_at: Option<i64>,
    /// Id of the newer memory that supersedes this one (a near duplicate stored later,
    /// e.g. a corrected fact); absent when none does. A superseded memory no longer comes
    /// back from searches or memory_list; deleting the newer one brings it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "i64")]
    pub superseded_by: Option<i64>,
}

impl Memory {
    /// Reads the [`COLUMNS`] of one row, by name.
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        let json = |name: &str| -> rusqlite::Result<Value> {
            let text: String = row.get(name)?;
            serde_json::from_str(&text).map_err(|e| {
                let i = row.as_ref().column_index(name).unwrap_or(0);
                rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
            })
        };
        let tags = match json("tags")? {
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect(),
            _ => Vec::new(),
        };
        let metadata = match json("metadata")? {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        Ok(Memory {
            id: row.get("id")?,
            content: row.get("content")?,
            namespace: row.get("namespace")?,
            tags,
            metadata,
            source: row.get("source")?,
            importance: row.get("importance")?,
            created_at: row.get("created_at")?,
            updated_at: row.get("updated_at")?,
            expires_at: row.get("expires_at")?,
            superseded_by: row.get("superseded_by")?,
        })
    }
}

/// A memory to store (the fields a caller may set; see the `memories` columns).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct NewMemory {
    /// Text to remember.
    pub content: String,
    /// Namespace; the table's default ("default") when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Importance 0..1; the table's default (0.5) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub importance: Option<f64>,
    /// Provenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Time to live: seconds (a number) or a duration such as "12h" or "7d".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub ttl: Option<Value>,
}

/// What the table did with a stored memory (the `outcome` of `subcog_last_insert`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub enum Outcome {
    /// Stored as a new memory `id`.
    Inserted,
    /// Same text (ignoring case and spacing) as the existing memory `id` in the same
    /// namespace: no new memory; see `action`.
    Duplicate,
    /// Stored as a new memory `id` that supersedes the older memory `supersedes` (meaning
    /// nearly the same, e.g. a corrected fact): the older one no longer comes back from
    /// searches, and is still readable by id (its `superseded_by` is `id`).
    Superseded,
}

/// Where a store landed: the table's dedup outcome (`subcog_last_insert`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Stored {
    /// Id of the memory the content is now in: the new memory, or for a duplicate the
    /// existing one.
    pub id: i64,
    /// "inserted", "duplicate" or "superseded" (see the variants).
    pub outcome: Outcome,
    /// For duplicates: "merge" (tags/metadata merged into the existing memory, timestamp
    /// refreshed) or "skip" (existing memory unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// For "superseded": id of the older memory that the new memory `id` supersedes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<i64>,
    /// For "superseded": cosine similarity of the new memory to the older one (at least the
    /// table's `dedup_threshold`, 4 decimals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f64>,
}

/// Fields of an update; `None` leaves a field unchanged.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// New text (re-embedded by the table).
    pub content: Option<String>,
    /// New tags (replace the old ones).
    pub tags: Option<Vec<String>>,
    /// New metadata (replaces the old object).
    pub metadata: Option<Map<String, Value>>,
    /// New importance.
    pub importance: Option<f64>,
}

/// How memory_search ranks memories.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub enum Mode {
    /// Keyword (BM25) and semantic (vector) candidates ranked by a weighted sum of the
    /// normalised BM25 score and the cosine similarity, plus a share of the best score of
    /// the memories stored next to each one (conversation context).
    #[default]
    Hybrid,
    /// Semantic similarity of the query's embedding only.
    Vector,
    /// Keyword (BM25) matching of the query's words only.
    Keyword,
}

/// A search result: a memory and its score (higher is better).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(inline)]
pub struct Scored {
    /// The memory.
    #[serde(flatten)]
    pub memory: Memory,
    /// Relevance, higher is better. Hybrid: `w * bm25 / best_bm25 + (1 - w) * cosine`,
    /// plus `g` times the best such score among the memories stored next to it (`w` and
    /// `g` are the table's `hybrid_keyword_weight`, default 0.4, and
    /// `hybrid_context_weight`, default 0.5); vector: 1 - cosine distance; keyword:
    /// -BM25. With recency or importance weights, the weighted final score.
    pub score: f64,
    /// With recency or importance weights: the components of the score (relevance,
    /// recency, age_days, importance, weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Map<String, Value>")]
    pub explain: Option<Value>,
}

/// Recency and importance weights of a search (see the `ranking` column).
#[derive(Debug, Clone, Default)]
pub struct Ranking {
    /// Weight of recency, 0..1.
    pub recency_weight: Option<f64>,
    /// Half-life of recency, e.g. "7d".
    pub half_life: Option<String>,
    /// Weight of importance, 0..1.
    pub importance_weight: Option<f64>,
}

impl Ranking {
    /// The `ranking` JSON, or `None` when nothing is set.
    fn json(&self) -> Option<String> {
        let mut m = Map::new();
        if let Some(w) = self.recency_weight {
            m.insert("recency_weight".into(), w.into());
        }
        if let Some(h) = &self.half_life {
            m.insert("half_life".into(), h.clone().into());
        }
        if let Some(w) = self.importance_weight {
            m.insert("importance_weight".into(), w.into());
        }
        (!m.is_empty()).then(|| Value::Object(m).to_string())
    }
}

/// Memories per namespace.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(inline)]
pub struct NamespaceCount {
    /// Namespace.
    pub namespace: String,
    /// Number of memories in it.
    pub count: i64,
}

/// What [`stats`] reports.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Stats {
    /// Number of memories.
    pub total: i64,
    /// Counts per namespace, largest first.
    pub namespaces: Vec<NamespaceCount>,
    /// Embedding model name.
    pub model: String,
    /// Embedding dimension.
    pub dim: i64,
    /// Whether the model files are installed.
    pub model_present: bool,
    /// Whether the model is loaded in this process (`subcog mcp` loads it in the background
    /// as it starts; false while that load runs, or when the files are missing).
    pub model_loaded: bool,
    /// Database file path.
    pub database_path: String,
    /// Database size in bytes (pages in use times page size; the WAL file not included).
    pub database_size_bytes: i64,
    /// subcog version.
    pub version: String,
    /// SQLite version (bundled).
    pub sqlite_version: String,
}

fn json_text<T: Serialize>(v: &T) -> Result<String, String> {
    serde_json::to_string(v).map_err(|e| format!("cannot encode JSON: {e}"))
}

/// Turns a SQLite error into a message for the caller.
fn sql_err(what: &str) -> impl Fn(rusqlite::Error) -> String + '_ {
    move |e| {
        let msg = match &e {
            rusqlite::Error::SqliteFailure(_, Some(m)) => m.clone(),
            other => other.to_string(),
        };
        format!("{what} failed: {msg}")
    }
}

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

/// Inserts one memory inside an open transaction and returns where it landed.
/// `created_at` and `expires_at` (ms since the epoch) may be given, e.g. by `import`.
fn insert_in(
    conn: &Connection,
    m: &NewMemory,
    created_at: Option<i64>,
    expires_at: Option<i64>,
    id: Option<i64>,
) -> Result<Stored, String> {
    check_content(&m.content)?;
    check_importance(m.importance)?;
    if let Some(ns) = &m.namespace
        && ns.is_empty()
    {
        return Err("namespace must not be empty (leave it out for \"default\")".into());
    }
    let mut cols = vec!["content"];
    let mut vals: Vec<SqlValue> = vec![SqlValue::Text(m.content.clone())];
    if let Some(ns) = &m.namespace {
        cols.push("namespace");
        vals.push(SqlValue::Text(ns.clone()));
    }
    if let Some(tags) = &m.tags {
        cols.push("tags");
        vals.push(SqlValue::Text(json_text(tags)?));
    }
    if let Some(md) = &m.metadata {
        cols.push("metadata");
        vals.push(SqlValue::Text(json_text(md)?));
    }
    if let Some(x) = m.importance {
        cols.push("importance");
        vals.push(SqlValue::Real(x));
    }
    if let Some(s) = &m.source {
        cols.push("source");
        vals.push(SqlValue::Text(s.clone()));
    }
    if let Some(t) = created_at {
        cols.push("created_at");
        vals.push(SqlValue::Integer(t));
    }
    if let Some(t) = expires_at {
        cols.push("expires_at");
        vals.push(SqlValue::Integer(t));
    }
    match &m.ttl {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) => {
            cols.push("ttl");
            vals.push(SqlValue::Text(t.clone()));
        }
        Some(Value::Number(n)) => {
            cols.push("ttl");
            vals.push(SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)));
        }
        Some(other) => {
            return Err(format!(
                "ttl must be seconds or a duration such as \"7d\" (got {other})"
            ));
        }
    }
    if let Some(id) = id {
        cols.push("id");
        vals.push(SqlValue::Integer(id));
    }
    let marks = (1..=cols.len())
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("INSERT INTO {TABLE}({}) VALUES ({marks})", cols.join(", "));
    conn.execute(&sql, params_from_iter(vals))
        .map_err(sql_err("storing the memory"))?;
    // The table's own report, computed after any deferred near-duplicate check.
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

/// Stores one memory and returns its id.
///
/// # Errors
/// Invalid fields, or the table's error.
pub fn store(conn: &Connection, m: &NewMemory) -> Result<Stored, String> {
    let mut out = Err(String::new());
    db::write(conn, |tx| {
        out = insert_in(tx, m, None, None, None);
        Ok(())
    })
    .map_err(sql_err("storing the memory"))?;
    out
}

/// One line of an import: a memory plus the optional fields an export carries.
#[derive(Debug, Clone, Deserialize)]
pub struct ImportRecord {
    /// The memory's fields.
    #[serde(flatten)]
    pub memory: NewMemory,
    /// Creation time (ms); the table sets it when absent.
    #[serde(default)]
    pub created_at: Option<i64>,
    /// Expiry time (ms); never when absent.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Id; kept only when asked to (`--keep-ids`).
    #[serde(default)]
    pub id: Option<i64>,
}

/// Stores a batch of records in one transaction; returns where each landed, in order. A
/// bad record fails the whole batch, with its position in the message.
///
/// # Errors
/// The first invalid record, or the table's error.
pub fn store_batch(
    conn: &Connection,
    batch: &[(usize, ImportRecord)],
    keep_ids: bool,
) -> Result<Vec<Stored>, String> {
    let mut out = Err(String::new());
    db::write(conn, |tx| {
        let mut ids = Vec::with_capacity(batch.len());
        for (line, r) in batch {
            let id = if keep_ids { r.id } else { None };
            match insert_in(tx, &r.memory, r.created_at, r.expires_at, id) {
                Ok(s) => ids.push(s),
                Err(e) => {
                    out = Err(format!("line {line}: {e}"));
                    // Roll the batch back: nothing of a failing batch is kept.
                    return Err(rusqlite::Error::InvalidQuery);
                }
            }
        }
        out = Ok(ids);
        Ok(())
    })
    .or_else(|e| match e {
        rusqlite::Error::InvalidQuery => Ok(()),
        e => Err(sql_err("importing")(e)),
    })?;
    out
}

/// Reads one memory.
///
/// # Errors
/// `no memory with id N`, or the table's error.
pub fn get(conn: &Connection, id: i64) -> Result<Memory, String> {
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

fn no_such(id: i64) -> String {
    format!("no memory with id {id}; memory_search or memory_list show the existing ids")
}

/// Changes the given fields of one memory and returns it as it is now.
///
/// # Errors
/// Nothing to change, invalid fields, unknown id, or the table's error.
pub fn update(conn: &Connection, id: i64, c: &Changes) -> Result<Memory, String> {
    if let Some(content) = &c.content {
        check_content(content)?;
    }
    check_importance(c.importance)?;
    let mut sets = Vec::new();
    let mut vals: Vec<SqlValue> = Vec::new();
    if let Some(content) = &c.content {
        sets.push("content");
        vals.push(SqlValue::Text(content.clone()));
    }
    if let Some(tags) = &c.tags {
        sets.push("tags");
        vals.push(SqlValue::Text(json_text(tags)?));
    }
    if let Some(md) = &c.metadata {
        sets.push("metadata");
        vals.push(SqlValue::Text(json_text(md)?));
    }
    if let Some(x) = c.importance {
        sets.push("importance");
        vals.push(SqlValue::Real(x));
    }
    if sets.is_empty() {
        return Err(
            "nothing to update: give at least one of content, tags, metadata, importance".into(),
        );
    }
    let assignments = sets
        .iter()
        .enumerate()
        .map(|(i, col)| format!("{col} = ?{}", i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    vals.push(SqlValue::Integer(id));
    let sql = format!(
        "UPDATE {TABLE} SET {assignments} WHERE id = ?{}",
        vals.len()
    );
    let changed = db::write(conn, |tx| tx.execute(&sql, params_from_iter(vals.clone())))
        .map_err(sql_err("updating the memory"))?;
    if changed == 0 {
        return Err(no_such(id));
    }
    get(conn, id)
}

/// Deletes one memory.
///
/// # Errors
/// Unknown id, or the table's error.
pub fn delete(conn: &Connection, id: i64) -> Result<(), String> {
    let changed = db::write(conn, |tx| {
        tx.execute(&format!("DELETE FROM {TABLE} WHERE id = ?1"), [id])
    })
    .map_err(sql_err("deleting the memory"))?;
    if changed == 0 {
        return Err(no_such(id));
    }
    Ok(())
}

/// Searches: the `k` best memories for `query`, best first.
///
/// # Errors
/// Empty query, `k` out of 1..=[`MAX_K`], or the table's error (e.g. the model missing).
pub fn search(
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
    let rank_json = ranking.json();
    let (rank, order) = if rank_json.is_some() {
        (" AND ranking = ?4", "score DESC")
    } else {
        ("", order)
    };
    let sql = format!(
        "SELECT {COLUMNS}, score, explain FROM {TABLE} WHERE {term} AND k = ?2{ns}{rank} \
         ORDER BY {order}"
    );
    let vals = [
        SqlValue::Text(query.to_string()),
        SqlValue::Integer(i64::from(k)),
        namespace.map_or(SqlValue::Null, |ns| SqlValue::Text(ns.to_string())),
        rank_json
            .as_ref()
            .map_or(SqlValue::Null, |j| SqlValue::Text(j.clone())),
    ];
    // As many values as the highest parameter number the statement uses.
    let used = if rank_json.is_some() {
        4
    } else if namespace.is_some() {
        3
    } else {
        2
    };
    let vals = vals[..used].to_vec();
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
/// superseded ones (as every search does).
///
/// # Errors
/// `limit` out of 1..=[`MAX_LIMIT`], or the table's error.
pub fn list(
    conn: &Connection,
    namespace: Option<&str>,
    limit: u32,
    offset: u64,
) -> Result<Vec<Memory>, String> {
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(format!("limit must be from 1 to {MAX_LIMIT} (got {limit})"));
    }
    let offset = i64::try_from(offset).map_err(|_| format!("offset too large: {offset}"))?;
    let filter = if namespace.is_some() {
        "AND namespace = ?3 "
    } else {
        ""
    };
    // Expired and superseded memories are left out (they are gone for every search too).
    let sql = format!(
        "SELECT {COLUMNS} FROM {TABLE} WHERE (expires_at IS NULL OR expires_at > ?4) \
         AND superseded_by IS NULL {filter}\
         ORDER BY created_at DESC, id DESC LIMIT ?1 OFFSET ?2"
    );
    let now = subcog::row::now_ms();
    let vals = vec![
        SqlValue::Integer(i64::from(limit)),
        SqlValue::Integer(offset),
        namespace.map_or(SqlValue::Null, |ns| SqlValue::Text(ns.to_string())),
        SqlValue::Integer(now),
    ];
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
pub fn for_each(
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
pub fn stats(conn: &Connection, path: &str) -> Result<Stats, String> {
    db::with_retry(|| {
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
    .map_err(sql_err("reading the statistics"))
    .map(|(namespaces, info, size)| {
        let info: Value = serde_json::from_str(&info).unwrap_or(Value::Null);
        let text = |k: &str| info.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let flag = |k: &str| info.get(k).and_then(Value::as_bool).unwrap_or(false);
        Stats {
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
        }
    })
}
