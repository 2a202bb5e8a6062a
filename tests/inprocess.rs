//! In-process tests with a bundled SQLite (`cargo test --no-default-features --features bundled`).
//!
//! They use supplied vectors (no model), so they exercise the table, the planner and the
//! HNSW consistency machinery quickly and deterministically.

mod common;

use common::rng::XorShift;
use common::search::{brute_ids, knn_ids};
use common::{blob, int, mem, open};
use rusqlite::{Connection, params};

#[test]
fn crud_and_three_searches_with_supplied_vectors() {
    let c = mem();
    c.execute_batch("CREATE VIRTUAL TABLE m USING memories(dim=3, auto_embed=off)")
        .unwrap_or_else(|e| panic!("{e}"));
    for (content, v) in [
        ("apples are red", [1.0f32, 0.0, 0.0]),
        ("bananas are yellow", [0.0, 1.0, 0.0]),
        ("the sky is blue", [0.0, 0.0, 1.0]),
    ] {
        c.execute(
            "INSERT INTO m(content, embedding) VALUES (?1, ?2)",
            params![content, blob(&v)],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(knn_ids(&c, "m", &[0.9, 0.1, 0.0], 2, None), vec![1, 2]);
    let kw: Vec<i64> = c
        .prepare("SELECT id FROM m WHERE content MATCH 'yellow'")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kw, vec![2]);
    c.execute(
        "UPDATE m SET embedding = ?1 WHERE id = 3",
        params![blob(&[1.0, 0.05, 0.0])],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(knn_ids(&c, "m", &[1.0, 0.0, 0.0], 2, None), vec![1, 3]);
    c.execute("DELETE FROM m WHERE id = 1", [])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(knn_ids(&c, "m", &[1.0, 0.0, 0.0], 1, None), vec![3]);
    assert_eq!(int(&c, "SELECT count(*) FROM m"), 2);
}

#[test]
fn bare_limit_means_k_on_a_host_that_passes_limit() {
    let c = mem();
    c.execute_batch("CREATE VIRTUAL TABLE m USING memories(dim=2, auto_embed=off, dedup=off)")
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..20 {
        let a = i as f32 / 20.0;
        c.execute(
            "INSERT INTO m(content, embedding) VALUES (?1, ?2)",
            params![format!("row {i}"), blob(&[a.cos(), a.sin()])],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let plan: String = c
        .query_row(
            "EXPLAIN QUERY PLAN SELECT id FROM m WHERE embedding MATCH x'0000803f00000000' LIMIT 3",
            [],
            |r| r.get(3),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(plan.contains("knn limit"), "{plan}");
    let ids: Vec<i64> = c
        .prepare("SELECT id FROM m WHERE embedding MATCH ?1 LIMIT 3")
        .and_then(|mut s| s.query_map([blob(&[1.0, 0.0])], |r| r.get(0))?.collect())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids, vec![1, 2, 3]);
}

/// Builds a table large enough to use HNSW (exact_max=0), checkpoints it, and compares
/// KNN with brute force while writes come and go in transactions and savepoints.
#[test]
fn hnsw_stays_consistent_through_rollback_savepoint_and_checkpoint() {
    let dim = 16;
    let c = mem();
    c.execute_batch(&format!(
        "CREATE VIRTUAL TABLE m USING memories(dim={dim}, auto_embed=off, exact_max=0, scan_max=0)"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let mut rng = XorShift(0x9e3779b97f4a7c15);
    let mut items: Vec<(i64, Vec<f32>)> = Vec::new();
    c.execute_batch("BEGIN").unwrap_or_else(|e| panic!("{e}"));
    for i in 1..=1500i64 {
        let v = rng.unit_vector(dim);
        let ns = if i % 10 == 0 { "rare" } else { "common" };
        c.execute(
            "INSERT INTO m(id, content, namespace, embedding) VALUES (?1, ?2, ?3, ?4)",
            params![i, format!("memory {i}"), ns, blob(&v)],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        items.push((i, v));
    }
    c.execute_batch("COMMIT").unwrap_or_else(|e| panic!("{e}"));
    // 1500 > 1024 pending: a checkpoint happened, the rest is pending.
    let snapshot_chunks = int(&c, "SELECT count(*) FROM m_hnsw");
    assert!(snapshot_chunks > 0, "no HNSW snapshot was written");
    assert!(int(&c, "SELECT count(*) FROM m_pending") < 1024);

    let recall = |c: &Connection, items: &[(i64, Vec<f32>)], rng: &mut XorShift| -> f64 {
        let mut hit = 0usize;
        for _ in 0..30 {
            let q = rng.unit_vector(dim);
            let got = knn_ids(c, "m", &q, 10, None);
            let want = brute_ids(items, &q, 10);
            assert_eq!(got.len(), 10);
            hit += got.iter().filter(|id| want.contains(id)).count();
        }
        hit as f64 / 300.0
    };
    let r = recall(&c, &items, &mut rng);
    assert!(r >= 0.95, "recall@10 {r}");

    // A rolled-back delete and insert leave the results as they were.
    let q = items[42].1.clone();
    let before = knn_ids(&c, "m", &q, 5, None);
    assert_eq!(before[0], 43);
    c.execute_batch("BEGIN; DELETE FROM m WHERE id = 43;")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !knn_ids(&c, "m", &q, 5, None).contains(&43),
        "delete not visible inside its transaction"
    );
    c.execute(
        "INSERT INTO m(id, content, embedding) VALUES (9999, 'twin', ?1)",
        [blob(&q)],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(knn_ids(&c, "m", &q, 1, None), vec![9999]);
    c.execute_batch("ROLLBACK")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(knn_ids(&c, "m", &q, 5, None), before);

    // ROLLBACK TO a savepoint undoes a forced checkpoint ('optimize') too.
    c.execute_batch("BEGIN; SAVEPOINT a;")
        .unwrap_or_else(|e| panic!("{e}"));
    c.execute(
        "UPDATE m SET embedding = ?1 WHERE id = 43",
        [blob(&items[7].1)],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    c.execute_batch("INSERT INTO m(m) VALUES ('optimize');")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(int(&c, "SELECT count(*) FROM m_pending"), 0);
    assert!(knn_ids(&c, "m", &items[7].1, 2, None).contains(&43));
    c.execute_batch("ROLLBACK TO a; RELEASE a; COMMIT;")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(knn_ids(&c, "m", &q, 5, None), before);
    assert!(!knn_ids(&c, "m", &items[7].1, 2, None).contains(&43));

    // Namespace filter during the search: the rare namespace still yields k results.
    let q = rng.unit_vector(dim);
    let rare: Vec<(i64, Vec<f32>)> = items
        .iter()
        .filter(|(id, _)| id % 10 == 0)
        .cloned()
        .collect();
    let got = knn_ids(&c, "m", &q, 10, Some("rare"));
    assert_eq!(got.len(), 10);
    assert!(got.iter().all(|id| id % 10 == 0));
    let want = brute_ids(&rare, &q, 10);
    let overlap = got.iter().filter(|id| want.contains(id)).count();
    assert!(overlap >= 9, "filtered recall {overlap}/10");

    // A full rebuild keeps the answers.
    c.execute_batch("INSERT INTO m(m) VALUES ('rebuild')")
        .unwrap_or_else(|e| panic!("{e}"));
    let r = recall(&c, &items, &mut rng);
    assert!(r >= 0.95, "recall@10 after rebuild {r}");
}

#[test]
fn second_connection_sees_commits_and_checkpoints_of_the_first() {
    let dir = std::env::temp_dir().join(format!("subcog-two-conn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join("m.db");
    let path = path.to_string_lossy().to_string();
    let a = open(&path);
    let b = open(&path);
    a.execute_batch("PRAGMA journal_mode=WAL; CREATE VIRTUAL TABLE m USING memories(dim=8, auto_embed=off, exact_max=0, scan_max=0)")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut rng = XorShift(7);
    let mut items = Vec::new();
    a.execute_batch("BEGIN").unwrap_or_else(|e| panic!("{e}"));
    for i in 1..=1200i64 {
        let v = rng.unit_vector(8);
        a.execute(
            "INSERT INTO m(id, content, embedding) VALUES (?1, 'x', ?2)",
            params![i, blob(&v)],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        items.push((i, v));
    }
    // b must not see the uncommitted rows.
    assert_eq!(int(&b, "SELECT count(*) FROM m"), 0);
    assert!(knn_ids(&b, "m", &items[0].1, 3, None).is_empty());
    a.execute_batch("COMMIT").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(knn_ids(&b, "m", &items[0].1, 1, None), vec![1]);
    // a checkpoints (new generation); b reloads and agrees.
    a.execute_batch("INSERT INTO m(m) VALUES ('optimize')")
        .unwrap_or_else(|e| panic!("{e}"));
    a.execute("DELETE FROM m WHERE id = 1", [])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(knn_ids(&b, "m", &items[1].1, 1, None), vec![2]);
    assert!(!knn_ids(&b, "m", &items[0].1, 5, None).contains(&1));
    drop(a);
    drop(b);
    // Reopen: no re-embedding needed, snapshot loads.
    let c = open(&path);
    assert_eq!(knn_ids(&c, "m", &items[5].1, 1, None), vec![6]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn failed_multi_row_insert_leaves_the_table_unchanged() {
    let c = mem();
    c.execute_batch(
        "CREATE VIRTUAL TABLE m USING memories(dim=2, auto_embed=off);
         CREATE TABLE src(content, tags);
         INSERT INTO src VALUES ('one', '[]'), ('two', '[]'), ('three', 'not json'), ('four', '[]');",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let err = c.execute_batch("INSERT INTO m(content, tags) SELECT content, tags FROM src");
    assert!(err.is_err());
    let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("column tags"), "{msg}");
    assert_eq!(int(&c, "SELECT count(*) FROM m"), 0);
    assert_eq!(int(&c, "SELECT count(*) FROM m_content"), 0);
    assert_eq!(
        int(&c, "SELECT count(*) FROM m WHERE content MATCH 'one'"),
        0
    );
}

#[test]
fn explicit_ids_conflict_replace_and_ignore() {
    let c = mem();
    c.execute_batch("CREATE VIRTUAL TABLE m USING memories(dim=2, auto_embed=off, dedup=off)")
        .unwrap_or_else(|e| panic!("{e}"));
    c.execute_batch("INSERT INTO m(id, content) VALUES (5, 'first')")
        .unwrap_or_else(|e| panic!("{e}"));
    let e = c.execute_batch("INSERT INTO m(id, content) VALUES (5, 'second')");
    assert!(
        e.err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("UNIQUE constraint failed")
    );
    c.execute_batch("INSERT OR REPLACE INTO m(id, content) VALUES (5, 'third')")
        .unwrap_or_else(|e| panic!("{e}"));
    c.execute_batch("INSERT OR IGNORE INTO m(id, content) VALUES (5, 'fourth')")
        .unwrap_or_else(|e| panic!("{e}"));
    let content: String = c
        .query_row("SELECT content FROM m WHERE id = 5", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(content, "third");
    assert_eq!(
        int(
            &c,
            "SELECT count(*) FROM m WHERE content MATCH 'first OR second OR fourth'"
        ),
        0
    );
}

#[test]
fn without_model_keyword_search_still_works() {
    // auto_embed=off: no model needed to store and search by keyword.
    let c = mem();
    c.execute_batch(
        "CREATE VIRTUAL TABLE notes USING memories(auto_embed=off);
         INSERT INTO notes(content) VALUES ('postgres connection pool is pgbouncer');",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        int(
            &c,
            "SELECT count(*) FROM notes WHERE content MATCH 'pgbouncer'"
        ),
        1
    );
    assert_eq!(
        int(&c, "SELECT count(*) FROM notes WHERE embedding IS NULL"),
        1
    );
}
