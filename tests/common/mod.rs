//! Helpers shared by the Rust integration tests (`mod common;` in each tests/*.rs and in
//! tests/differential/main.rs): connections with subcog registered, vector BLOBs, scalar
//! queries, expected errors, `subcog_integrity` reports and fresh temporary directories;
//! [`rng`] (seeded generators), [`search`] (KNN, keyword and `subcog_last_insert` through
//! SQL, exact top-k) and [`oracle`] (the differential tests' oracle and brute force).
//!
//! Each test binary uses a subset of these helpers: dead-code warnings are off for this
//! module only.
#![allow(dead_code)]

pub mod oracle;
pub mod rng;
pub mod search;

use std::path::PathBuf;

use rusqlite::Connection;

/// A connection to `path` with subcog registered and a 5 s busy timeout.
pub fn open(path: &str) -> Connection {
    let c = Connection::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    subcog::register(&c).unwrap_or_else(|e| panic!("register: {e}"));
    c.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"));
    c
}

/// An in-memory database with subcog registered.
pub fn mem() -> Connection {
    open(":memory:")
}

/// `subcog_integrity(table)`, parsed.
pub fn report(c: &Connection, table: &str) -> serde_json::Value {
    let s: String = c
        .query_row("SELECT subcog_integrity(?1)", [table], |r| r.get(0))
        .unwrap_or_else(|e| panic!("subcog_integrity('{table}'): {e}"));
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// Asserts `subcog_integrity(table)` reports `"ok": true`.
pub fn assert_integrity(c: &Connection, table: &str, ctx: &str) {
    let s: String = c
        .query_row("SELECT subcog_integrity(?1)", [table], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{ctx}: subcog_integrity('{table}'): {e}"));
    let v: serde_json::Value =
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("{ctx}: {e}: {s}"));
    assert_eq!(
        v["ok"],
        serde_json::Value::Bool(true),
        "{ctx}: subcog_integrity('{table}'): {s}"
    );
}

/// Little-endian float32 bytes, as the `embedding` column takes them.
pub fn blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The inverse of [`blob`].
pub fn unblob(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The single INTEGER of `sql` (e.g. a `count(*)`), panicking on an SQL error.
pub fn int(c: &Connection, sql: &str) -> i64 {
    c.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// `SELECT count(*) FROM table`.
pub fn count(c: &Connection, table: &str) -> i64 {
    int(c, &format!("SELECT count(*) FROM {table}"))
}

/// The first column of every row of `sql`, as ids.
pub fn ids(c: &Connection, sql: &str, p: impl rusqlite::Params) -> rusqlite::Result<Vec<i64>> {
    let mut st = c.prepare(sql)?;
    st.query_map(p, |r| r.get(0))?.collect()
}

/// [`ids`], panicking on an SQL error.
pub fn ok_ids(c: &Connection, sql: &str, p: impl rusqlite::Params) -> Vec<i64> {
    ids(c, sql, p).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The message of the error `r` must be (panics on success, showing the value).
pub fn err_of(r: rusqlite::Result<impl std::fmt::Debug>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

/// A fresh, empty directory `subcog-{tag}-{pid}` under the system's temporary directory
/// (removed first if a previous run left it).
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("subcog-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}
