//! Duplicate detection on insert: the content hash, the merge of a duplicate into the
//! memory it duplicates, and the per-connection record of where the last INSERT landed.
//!
//! Two kinds of duplicate, both within one namespace and among unexpired memories:
//! - exact: same normalised content ([`normalise`]), found by the SHA-256 [`content_hash`]
//!   stored in `<table>_content.hash` when the INSERT runs;
//! - near: cosine similarity of the embeddings >= the table's `dedup_threshold` to the
//!   nearest live, not superseded memory of the namespace, found by a KNN search (k = 8).
//!   A near duplicate is a newer statement of the same thing (often a correction: "the
//!   limit is 500", after "the limit is 100"), so it is stored as a new memory and the
//!   older one is marked superseded by it (a `supersedes` link in `<table>_links`):
//!   hidden from every search unless `include_superseded = 1`, still readable by id.
//!   Nothing an INSERT is given is discarded. With a supplied vector the check runs in
//!   the INSERT; an auto-embedded row is checked when its batch is embedded (before the
//!   next query on the table, or at COMMIT).
//!
//! The table's `dedup` option says what an exact duplicate does
//! ([`crate::options::DedupPolicy`]: merge into the existing memory, or skip); with
//! `dedup=off` neither check runs. Only INSERTs without an explicit id are
//! deduplicated: an explicit id is a request for that row. `last_insert_rowid()` is the
//! memory an INSERT landed on, and `subcog_last_insert(table)` says how.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::row::Row;

/// Content as compared for exact duplicates: Unicode lowercase, runs of whitespace
/// collapsed to one space, trimmed.
pub fn normalise(content: &str) -> String {
    content
        .split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// SHA-256 of [`normalise`]d content: `[u8; 32]`, stored in `<table>_content.hash`.
pub fn content_hash(content: &str) -> [u8; 32] {
    Sha256::digest(normalise(content).as_bytes()).into()
}

/// `existing` after absorbing the duplicate `new` (policy `merge`): tags are the union
/// (existing order first), metadata is `existing` merged with `new` recursively (new
/// values win; objects merge key by key, as RFC 7386 JSON Merge Patch without its
/// null-deletes), importance is the larger, `updated_at` is `now`, the expiry is the later
/// (no expiry wins), and the source is kept unless absent. Content, id, namespace and
/// `created_at` stay.
pub fn merge(existing: &Row, new: &Row, now: i64) -> Row {
    let mut out = existing.clone();
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).ok();
    if let (Some(serde_json::Value::Array(mut a)), Some(serde_json::Value::Array(b))) =
        (parse(&existing.tags), parse(&new.tags))
    {
        for t in b {
            if !a.contains(&t) {
                a.push(t);
            }
        }
        out.tags = serde_json::Value::Array(a).to_string();
    }
    if let (Some(mut a), Some(b)) = (parse(&existing.metadata), parse(&new.metadata)) {
        merge_json(&mut a, b);
        out.metadata = a.to_string();
    }
    out.importance = existing.importance.max(new.importance);
    out.updated_at = now.max(existing.updated_at);
    out.expires_at = match (existing.expires_at, new.expires_at) {
        (Some(a), Some(b)) => Some(a.max(b)),
        _ => None,
    };
    if out.source.is_none() {
        out.source = new.source.clone();
    }
    out
}

fn merge_json(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge_json(slot, v),
                    _ => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (a, b) => *a = b,
    }
}

/// What the last INSERT into a table did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The memory the INSERT landed on (new or existing).
    pub id: i64,
    /// `inserted`, `duplicate` (same normalised content: landed on an existing memory)
    /// or `superseded` (a new memory that supersedes the older near duplicate).
    pub kind: &'static str,
    /// For duplicates: `skip` or `merge`.
    pub action: Option<&'static str>,
    /// For `superseded`: the older memory's id.
    pub supersedes: Option<i64>,
    /// For `superseded`: cosine similarity to the older memory.
    pub similarity: Option<f64>,
}

impl Outcome {
    /// The outcome as a JSON object: `{"id", "outcome", "action", "supersedes",
    /// "similarity"}` (absent fields omitted; similarity rounded to 4 decimals).
    pub fn to_json(&self) -> String {
        let mut m = serde_json::Map::new();
        m.insert("id".into(), self.id.into());
        m.insert("outcome".into(), self.kind.into());
        if let Some(a) = self.action {
            m.insert("action".into(), a.into());
        }
        if let Some(s) = self.supersedes {
            m.insert("supersedes".into(), s.into());
        }
        if let Some(s) = self.similarity {
            m.insert("similarity".into(), ((s * 1e4).round() / 1e4).into());
        }
        serde_json::Value::Object(m).to_string()
    }
}

/// Key of a table's outcome: the connection's `sqlite3*` address and the lowercased
/// `schema.table`.
type Key = (usize, String);

static OUTCOMES: Mutex<Option<HashMap<Key, Outcome>>> = Mutex::new(None);

fn key(db: usize, schema: &str, table: &str) -> Key {
    (
        db,
        format!("{}.{}", schema.to_lowercase(), table.to_lowercase()),
    )
}

/// Records what the last INSERT into `schema.table` on connection `db` did.
pub fn record(db: usize, schema: &str, table: &str, outcome: Outcome) {
    if let Ok(mut g) = OUTCOMES.lock() {
        g.get_or_insert_with(HashMap::new)
            .insert(key(db, schema, table), outcome);
    }
}

/// The recorded outcome of the last INSERT into `schema.table` on connection `db`.
pub fn last(db: usize, schema: &str, table: &str) -> Option<Outcome> {
    OUTCOMES
        .lock()
        .ok()
        .and_then(|g| g.as_ref()?.get(&key(db, schema, table)).cloned())
}

/// Forgets the outcome of `schema.table` on `db` (rollback, disconnect).
pub fn forget(db: usize, schema: &str, table: &str) {
    if let Ok(mut g) = OUTCOMES.lock()
        && let Some(m) = g.as_mut()
    {
        m.remove(&key(db, schema, table));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(tags: &str, metadata: &str, importance: f64, expires_at: Option<i64>) -> Row {
        Row {
            id: 1,
            content: "x".into(),
            namespace: "default".into(),
            tags: tags.into(),
            metadata: metadata.into(),
            source: None,
            importance,
            created_at: 10,
            updated_at: 10,
            expires_at,
        }
    }

    #[test]
    fn normalisation_ignores_case_and_spacing() {
        assert_eq!(normalise("  The  Cat\tsat\n"), "the cat sat");
        assert_eq!(content_hash("The cat sat"), content_hash("the   CAT sat "));
        assert_ne!(content_hash("the cat sat"), content_hash("the cat sat."));
    }

    #[test]
    fn merge_unions_tags_and_patches_metadata() {
        let a = row(
            r#"["a","b"]"#,
            r#"{"x":1,"o":{"p":1,"q":2}}"#,
            0.3,
            Some(100),
        );
        let b = row(r#"["b","c"]"#, r#"{"y":2,"o":{"q":3}}"#, 0.9, Some(50));
        let m = merge(&a, &b, 500);
        assert_eq!(m.tags, r#"["a","b","c"]"#);
        let md: serde_json::Value = serde_json::from_str(&m.metadata).unwrap_or_default();
        assert_eq!(md["x"], 1);
        assert_eq!(md["y"], 2);
        assert_eq!(md["o"]["p"], 1);
        assert_eq!(md["o"]["q"], 3);
        assert_eq!(m.importance, 0.9);
        assert_eq!(m.updated_at, 500);
        assert_eq!(m.created_at, 10);
        assert_eq!(m.expires_at, Some(100));
        let forever = row("[]", "{}", 0.1, None);
        assert_eq!(merge(&a, &forever, 500).expires_at, None);
    }

    #[test]
    fn outcomes_are_per_connection_and_table() {
        let o = Outcome {
            id: 7,
            kind: "inserted",
            action: None,
            supersedes: None,
            similarity: None,
        };
        record(1, "main", "Mem", o.clone());
        assert_eq!(last(1, "MAIN", "mem"), Some(o.clone()));
        assert_eq!(last(2, "main", "mem"), None);
        forget(1, "main", "mem");
        assert_eq!(last(1, "main", "mem"), None);
        assert!(o.to_json().contains("\"outcome\":\"inserted\""));
    }
}
