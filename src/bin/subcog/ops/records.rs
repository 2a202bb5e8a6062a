//! The records the memory operations take and return: what the MCP tools' JSON schemas
//! are made of (field doc comments are the schema descriptions), and how a row of the
//! `memories` table reads into a [`Memory`].

use rusqlite::Row;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One stored memory.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(inline)]
pub(crate) struct Memory {
    /// Identifier, used by memory_get, memory_update and memory_delete.
    pub(crate) id: i64,
    /// The remembered text.
    pub(crate) content: String,
    /// Namespace (e.g. "user", "project:shop"); "default" when none was given.
    pub(crate) namespace: String,
    /// Tags.
    pub(crate) tags: Vec<String>,
    /// Free-form JSON object.
    pub(crate) metadata: Map<String, Value>,
    /// Where the memory came from; absent when not recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub(crate) source: Option<String>,
    /// Importance from 0 to 1.
    pub(crate) importance: f64,
    /// Creation time, milliseconds since the Unix epoch.
    pub(crate) created_at: i64,
    /// Last update time, milliseconds since the Unix epoch.
    pub(crate) updated_at: i64,
    /// Expiry time, milliseconds since the Unix epoch; absent when it never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "i64")]
    pub(crate) expires_at: Option<i64>,
    /// Id of the newer memory that supersedes this one (a near duplicate stored later,
    /// e.g. a corrected fact); absent when none does. A superseded memory no longer comes
    /// back from searches or memory_list; deleting the newer one brings it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "i64")]
    pub(crate) superseded_by: Option<i64>,
}

impl Memory {
    /// Reads the [`super::COLUMNS`] of one row, by name.
    pub(crate) fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        let json = |name: &str| -> rusqlite::Result<Value> {
            let text: String = row.get(name)?;
            serde_json::from_str(&text).map_err(|e| {
                let i = row.as_ref().column_index(name).unwrap_or(0);
                rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
            })
        };
        let tags = tags_of(json("tags")?);
        let metadata = metadata_of(json("metadata")?);
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

/// The tags of a `tags` column's JSON: the array's strings (other items as their JSON
/// text); none when it is not an array.
pub(crate) fn tags_of(v: Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => s,
                other => other.to_string(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The object of a `metadata` column's JSON; empty when it is not an object.
pub(crate) fn metadata_of(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A memory to store (the fields a caller may set; see the `memories` columns).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub(crate) struct NewMemory {
    /// Text to remember.
    pub(crate) content: String,
    /// Namespace; the table's default ("default") when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) namespace: Option<String>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tags: Option<Vec<String>>,
    /// JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) metadata: Option<Map<String, Value>>,
    /// Importance 0..1; the table's default (0.5) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) importance: Option<f64>,
    /// Provenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) source: Option<String>,
    /// Time to live: seconds (a number) or a duration such as "12h" or "7d".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "String")]
    pub(crate) ttl: Option<Value>,
}

/// One line of an import: a memory plus the optional fields an export carries.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ImportRecord {
    /// The memory's fields.
    #[serde(flatten)]
    pub(crate) memory: NewMemory,
    /// Creation time (ms); the table sets it when absent.
    #[serde(default)]
    pub(crate) created_at: Option<i64>,
    /// Expiry time (ms); never when absent.
    #[serde(default)]
    pub(crate) expires_at: Option<i64>,
    /// Id; kept only when asked to (`--keep-ids`).
    #[serde(default)]
    pub(crate) id: Option<i64>,
}

/// What the table did with a stored memory (the `outcome` of `subcog_last_insert`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub(crate) enum Outcome {
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
pub(crate) struct Stored {
    /// Id of the memory the content is now in: the new memory, or for a duplicate the
    /// existing one.
    pub(crate) id: i64,
    /// "inserted", "duplicate" or "superseded" (see the variants).
    pub(crate) outcome: Outcome,
    /// For duplicates: "merge" (tags/metadata merged into the existing memory, timestamp
    /// refreshed) or "skip" (existing memory unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) action: Option<String>,
    /// For "superseded": id of the older memory that the new memory `id` supersedes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) supersedes: Option<i64>,
    /// For "superseded": cosine similarity of the new memory to the older one (at least the
    /// table's `dedup_threshold`, 4 decimals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) similarity: Option<f64>,
}

/// Fields of an update; `None` leaves a field unchanged.
#[derive(Debug, Clone, Default)]
pub(crate) struct Changes {
    /// New text (re-embedded by the table).
    pub(crate) content: Option<String>,
    /// New tags (replace the old ones).
    pub(crate) tags: Option<Vec<String>>,
    /// New metadata (replaces the old object).
    pub(crate) metadata: Option<Map<String, Value>>,
    /// New importance.
    pub(crate) importance: Option<f64>,
}

/// How memory_search ranks memories.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub(crate) enum Mode {
    /// The keyword (BM25) and semantic (vector) candidates, and the memories stored next
    /// to them, ranked by a weighted sum of the BM25 score (divided by the best one) and
    /// the cosine similarity, plus a share of the best such score among the memories
    /// stored next to each one (conversation context).
    #[default]
    Hybrid,
    /// Semantic similarity of the query's embedding only.
    Vector,
    /// Keyword (BM25) matching of the query's words only: punctuation and FTS5 operators
    /// are not interpreted, and a query without words is an error.
    Keyword,
}

/// A search result: a memory and its score (higher is better).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(inline)]
pub(crate) struct Scored {
    /// The memory.
    #[serde(flatten)]
    pub(crate) memory: Memory,
    /// Relevance, higher is better. Hybrid: `w * bm25 / best_bm25 + (1 - w) * cosine`
    /// (`bm25` 0 without a keyword match), plus `g` times the best such score among the
    /// memories stored next to it in its namespace (`w` and `g` are the table's
    /// `hybrid_keyword_weight`, default 0.4, and `hybrid_context_weight`, default 0.5);
    /// vector: 1 - cosine distance; keyword: BM25 (FTS5's bm25 with its sign flipped).
    /// With recency or importance weights, the weighted final score.
    pub(crate) score: f64,
    /// With recency or importance weights: the components of the score (search_score,
    /// distance when the search has one, relevance, recency, age_days, importance,
    /// weights, and the final score).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Map<String, Value>")]
    pub(crate) explain: Option<Value>,
}

/// Recency and importance weights of a search (see the `ranking` column).
#[derive(Debug, Clone, Default)]
pub(crate) struct Ranking {
    /// Weight of recency, 0..1.
    pub(crate) recency_weight: Option<f64>,
    /// Half-life of recency, e.g. "7d".
    pub(crate) half_life: Option<String>,
    /// Weight of importance, 0..1.
    pub(crate) importance_weight: Option<f64>,
}

impl Ranking {
    /// The `ranking` JSON, or `None` when nothing is set.
    pub(crate) fn json(&self) -> Option<String> {
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
pub(crate) struct NamespaceCount {
    /// Namespace.
    pub(crate) namespace: String,
    /// Number of stored memories in it.
    pub(crate) count: i64,
}

/// What [`super::stats`] reports.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Stats {
    /// Number of stored memories, superseded ones and expired ones not yet purged
    /// included (memory_list and the searches leave those out).
    pub(crate) total: i64,
    /// Counts per namespace (counted as `total` is), largest first.
    pub(crate) namespaces: Vec<NamespaceCount>,
    /// Embedding model name.
    pub(crate) model: String,
    /// Embedding dimension.
    pub(crate) dim: i64,
    /// Whether the model file (model.onnx) is installed.
    pub(crate) model_present: bool,
    /// Whether the model is loaded in this process (`subcog mcp` loads it in the background
    /// as it starts; false while that load runs, or when the files are missing).
    pub(crate) model_loaded: bool,
    /// Database file path.
    pub(crate) database_path: String,
    /// Database size in bytes (pages in use times page size; the WAL file not included).
    pub(crate) database_size_bytes: i64,
    /// subcog version.
    pub(crate) version: String,
    /// SQLite version (bundled).
    pub(crate) sqlite_version: String,
}
