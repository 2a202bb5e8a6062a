//! Memory operations as SQL against the `memories` virtual table.
//!
//! The MCP tools, `import` and `export` all go through these functions; none of them
//! touches the shadow tables or the extension's Rust API directly. [`records`] holds the
//! types the operations take and return (with their JSON schemas), [`write`] the stores,
//! updates and deletes, [`read`] the reads and searches, [`context`] context assembly
//! and links, [`history`] versions, snapshots, diffs, restores, branches and merges.

mod context;
pub(crate) mod history;
mod read;
mod records;
mod write;

use serde::Serialize;

pub(crate) use context::{Context, ContextOptions, Linked, context, link, text as context_text};
pub(crate) use read::{for_each, get, list, namespace_of, search, stats};
pub(crate) use records::{
    Changes, ImportRecord, Memory, Mode, NewMemory, Outcome, Ranking, Scored, Stats, Stored,
};
pub(crate) use write::{delete, store, store_batch, update};

/// Largest `k` a search accepts.
const MAX_K: u32 = 100;
/// Largest page `memory_list` returns.
const MAX_LIMIT: u32 = 1000;

/// The columns every read returns ([`Memory::from_row`] reads them by name).
const COLUMNS: &str = "id, content, namespace, tags, metadata, source, importance, created_at, \
     updated_at, expires_at, superseded_by";

/// Encodes a value as JSON text for a TEXT column.
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

/// The message for an id that names no memory (also given, word for word, for a memory
/// outside the caller's namespaces: see [`crate::access`]).
pub(crate) fn no_such(id: i64) -> String {
    format!("no memory with id {id}; memory_search or memory_list show the existing ids")
}
