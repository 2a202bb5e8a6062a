//! subcog: persistent memory for AI agents, as a SQLite extension.
//!
//! Loaded into any SQLite host (`.load libsubcog`), it registers:
//! * the `memories` virtual table ([`vtab`]): rows with content, namespace, tags,
//!   metadata, importance and an embedding; KNN, keyword (FTS5 BM25) and hybrid (fused,
//!   with neighbouring memories as context) search; state in shadow tables ([`store`]) with an HNSW index ([`ann`]) that is
//!   exactly consistent with them;
//! * `embed(text)` ([`embedder`]): all-MiniLM-L6-v2 through ONNX Runtime, in-process;
//! * `vec_search(table, vector, k)` ([`vec_search`]) and helper functions ([`functions`]);
//! * capture hygiene and ranking: duplicate detection ([`dedup`]), secret redaction
//!   ([`redact`]), TTL, and recency/importance in the ranking ([`rank`]).
//!
//! See ARCHITECTURE.md for the seams between these modules.

#![warn(missing_docs)]

pub mod ann;
pub mod embedder;
pub(crate) mod error;
pub(crate) mod names;
pub(crate) mod options;
pub(crate) mod redact;
pub mod row;
pub(crate) mod search;
pub(crate) mod settings;
pub mod sql;
pub(crate) mod store;
pub(crate) mod table;
pub mod vector;

pub use search::text;

/// Registers the `memories` module, `vec_search` and every SQL function on `conn`.
///
/// Used by the extension entry point and by hosts that link subcog statically (the
/// `subcog` binary, the in-process tests).
///
/// # Errors
/// SQLite errors from registering a module or function.
pub fn register(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    sql::functions::register(conn)?;
    sql::lifecycle::register(conn)?;
    sql::vtab::register(conn)?;
    sql::vec_search::register(conn)?;
    sql::context::register(conn)?;
    sql::history::register(conn)?;
    // FTS5's top-k BM25 for keyword search (also registered on first use).
    store::bm25::register(conn);
    sql::branch::register(conn)?;
    Ok(())
}

/// The host's SQLite version string (e.g. `3.40.1`), as `sqlite_version()` reports it.
pub fn host_sqlite_version() -> String {
    rusqlite::version().to_string()
}
