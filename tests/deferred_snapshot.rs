//! Checkpoints inside a statement defer writing the HNSW snapshot to COMMIT (src/ann/,
//! `maybe_checkpoint`): searches inside the transaction, ROLLBACK TO, ROLLBACK, COMMIT and
//! a second connection must all see exactly the table's rows. Bundled SQLite.

mod common;

use common::search::knn;
use common::{assert_integrity, blob, count, open, temp_dir};
use rusqlite::{Connection, params};

const DIM: usize = 8;
/// Past the in-statement checkpoint threshold (max(16384, size / 2) pending ids).
const BULK: i64 = 17_000;

fn vector(i: i64) -> Vec<f32> {
    (0..DIM)
        .map(|j| ((i as f32) * 0.37 + j as f32 * 1.3).sin() + if j == 0 { 0.1 } else { 0.0 })
        .collect()
}

fn insert_range(c: &Connection, from: i64, to: i64) {
    let mut st = c
        .prepare("INSERT INTO m(id, content, embedding) VALUES (?1, 'x', ?2)")
        .unwrap_or_else(|e| panic!("{e}"));
    for i in from..=to {
        st.execute(params![i, blob(&vector(i))])
            .unwrap_or_else(|e| panic!("insert {i}: {e}"));
    }
}

/// The nearest row to row `i`'s own vector, with its distance.
fn nearest(c: &Connection, i: i64) -> (i64, f32) {
    let hits = knn(c, "m", &vector(i), 1, None, false).unwrap_or_else(|e| panic!("{e}"));
    *hits
        .first()
        .unwrap_or_else(|| panic!("no nearest row to row {i}"))
}

fn config(c: &Connection, key: &str) -> Option<String> {
    c.query_row(
        "SELECT CAST(value AS TEXT) FROM m_config WHERE key = ?1",
        [key],
        |r| r.get(0),
    )
    .ok()
}

/// Every probed row finds itself at distance ~0 (so it is indexed or scanned), and no
/// row outside `1..=max` is ever returned.
fn probe(c: &Connection, max: i64, ctx: &str) {
    for i in (1..=max).step_by(997).chain([max]) {
        let (id, d) = nearest(c, i);
        assert!(id <= max, "{ctx}: returned id {id} beyond {max}");
        assert!(d.abs() < 1e-5, "{ctx}: row {i} not found (got {id} at {d})");
    }
}

#[test]
fn deferred_snapshot_is_consistent_through_savepoints_rollback_and_commit() {
    let dir = temp_dir("deferred");
    let path = dir.join("d.db");
    let path = path.to_string_lossy().into_owned();
    let c = open(&path);
    c.execute_batch(&format!(
        "CREATE VIRTUAL TABLE m USING memories(dim={DIM}, auto_embed=off, exact_max=0, scan_max=0)"
    ))
    .unwrap_or_else(|e| panic!("{e}"));

    // One bulk transaction: the in-statement checkpoint runs, the snapshot lags.
    c.execute_batch("BEGIN").unwrap_or_else(|e| panic!("{e}"));
    insert_range(&c, 1, BULK);
    assert_ne!(
        config(&c, "generation"),
        config(&c, "hnsw_saved"),
        "an in-statement checkpoint should have deferred the snapshot"
    );
    probe(&c, BULK, "inside the transaction");

    // A savepoint with a second checkpoint, rolled back.
    c.execute_batch("SAVEPOINT s")
        .unwrap_or_else(|e| panic!("{e}"));
    insert_range(&c, BULK + 1, 2 * BULK);
    probe(&c, 2 * BULK, "inside the savepoint");
    c.execute_batch("ROLLBACK TO s; RELEASE s")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count(&c, "m"), BULK);
    probe(&c, BULK, "after ROLLBACK TO");
    c.execute_batch("COMMIT").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config(&c, "generation"), config(&c, "hnsw_saved"));
    assert_integrity(&c, "m", "writer");

    // A second connection loads the committed snapshot.
    let r = open(&path);
    probe(&r, BULK, "second connection");
    assert_integrity(&r, "m", "second connection");

    // A rolled-back bulk transaction leaves the committed snapshot as it was.
    c.execute_batch("BEGIN").unwrap_or_else(|e| panic!("{e}"));
    insert_range(&c, BULK + 1, 2 * BULK + 500);
    probe(&c, 2 * BULK + 500, "second bulk transaction");
    c.execute_batch("ROLLBACK")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(count(&c, "m"), BULK);
    probe(&c, BULK, "after ROLLBACK");
    probe(&r, BULK, "second connection after ROLLBACK");
    assert_integrity(&c, "m", "writer");
    let _ = std::fs::remove_dir_all(&dir);
}
