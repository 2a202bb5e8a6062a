//! subcog_integrity, repair by 'rebuild', defensive mode, rename, VACUUM, DROP, and
//! databases from another format version. Bundled SQLite, supplied vectors.

mod common;

use common::search::knn_ids;
use common::{blob, open, report, temp_dir};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, params};

/// 1,300 rows with vectors: a snapshot of 1,100 (folded in by the checkpoint at the first
/// COMMIT) plus 200 pending rows from a second transaction.
fn filled(c: &Connection, table: &str) {
    c.execute_batch(&format!(
        "CREATE VIRTUAL TABLE {table} USING memories(dim=4, auto_embed=off, exact_max=0, scan_max=0)"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    c.execute_batch("BEGIN").unwrap_or_else(|e| panic!("{e}"));
    for i in 1..=1300i64 {
        if i == 1101 {
            c.execute_batch("COMMIT; BEGIN")
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let f = i as f32;
        c.execute(
            &format!("INSERT INTO {table}(id, content, embedding) VALUES (?1, ?2, ?3)"),
            params![
                i,
                format!("note number {i} about topic{}", i % 13),
                blob(&[f.sin(), f.cos(), 1.0, (f * 0.1).sin()])
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    c.execute_batch("COMMIT").unwrap_or_else(|e| panic!("{e}"));
}

fn knn1(c: &Connection, table: &str, v: &[f32]) -> Vec<i64> {
    knn_ids(c, table, v, 1, None)
}

#[test]
fn integrity_is_clean_then_detects_damage_and_rebuild_repairs_it() {
    let c = open(":memory:");
    filled(&c, "m");
    let r = report(&c, "m");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["counts"]["memories"], 1300);
    assert_eq!(r["counts"]["hnsw_nodes"], 1100, "{r}");
    // The 200 rows of the second transaction are pending, and so are the snapshot's
    // nodes that the graph leaves unreachable by their own vector (kept pending so that
    // searches scan them exactly; the parallel graph build makes their number vary).
    let pending = r["counts"]["pending"].as_i64().unwrap_or(0);
    let new_pending = common::int(&c, "SELECT count(*) FROM m_pending WHERE id > 1100");
    assert_eq!(new_pending, 200, "{r}");
    assert!((200..=222).contains(&pending), "{r}");

    // Damage every derived structure behind the table's back.
    c.execute_batch(
        "DELETE FROM m_pending WHERE id IN (SELECT id FROM m_pending WHERE id > 1100 LIMIT 5);
         INSERT INTO m_vectors VALUES (99999, x'0000803f0000803f0000803f0000803f');
         DELETE FROM m_fts_docsize WHERE id = 7;
         UPDATE m_vectors SET embedding = x'000000400000004000000040000000c0' WHERE id = 3;
         UPDATE m_content SET hash = NULL WHERE id = 9;
         UPDATE m_content SET hash = x'00' WHERE id = 10;",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let r = report(&c, "m");
    assert_eq!(r["ok"], false, "{r}");
    let problems = r["problems"].to_string();
    assert!(problems.contains("belong to no memory"), "{problems}");
    assert!(
        problems.contains("missing from the FTS5 index"),
        "{problems}"
    );
    assert!(
        problems.contains("neither pending nor in the HNSW snapshot"),
        "{problems}"
    );
    assert!(problems.contains("differ from their copy"), "{problems}");
    assert!(problems.contains("dedup hash"), "{problems}");
    assert_eq!(r["counts"]["stale_hashes"], 2, "{r}");

    c.execute_batch("INSERT INTO m(m) VALUES ('rebuild')")
        .unwrap_or_else(|e| panic!("{e}"));
    let r = report(&c, "m");
    assert_eq!(r["ok"], true, "{r}");
    // After the rebuild only unreachable nodes are pending, and every memory is found by
    // a KNN of its own vector.
    assert!(r["counts"]["pending"].as_i64().unwrap_or(99) <= 26, "{r}");
    assert_eq!(r["counts"]["hnsw_nodes"], 1300);
    for i in [1i64, 3, 7, 500, 1100, 1101, 1250, 1300] {
        let f = i as f32;
        let v = if i == 3 {
            // Row 3's vector was overwritten above.
            [2.0, 2.0, 2.0, -2.0]
        } else {
            [f.sin(), f.cos(), 1.0, (f * 0.1).sin()]
        };
        assert!(
            knn1(&c, "m", &v).contains(&i),
            "row {i} not found by its own vector"
        );
    }
    let n: i64 = c
        .query_row(
            "SELECT count(*) FROM m WHERE content MATCH 'topic7'",
            [],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, 100);
}

#[test]
fn integrity_of_a_missing_table_is_a_clear_error() {
    let c = open(":memory:");
    let e = c.query_row("SELECT subcog_integrity('nope')", [], |r| {
        r.get::<_, String>(0)
    });
    let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("not a memories table"), "{msg}");
}

#[test]
fn defensive_mode_protects_shadow_tables_but_not_the_table() {
    let c = open(":memory:");
    c.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
        .unwrap_or_else(|e| panic!("{e}"));
    c.execute_batch("CREATE VIRTUAL TABLE m USING memories(dim=2, auto_embed=off)")
        .unwrap_or_else(|e| panic!("{e}"));
    c.execute(
        "INSERT INTO m(content, embedding) VALUES ('kept', ?1)",
        [blob(&[1.0, 0.0])],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    c.execute("UPDATE m SET content = 'kept too' WHERE id = 1", [])
        .unwrap_or_else(|e| panic!("{e}"));
    for sql in [
        "INSERT INTO m_vectors VALUES (5, x'00')",
        "DELETE FROM m_content",
        "UPDATE m_config SET value = 'x' WHERE key = 'dim'",
        "DELETE FROM m_pending",
        "DELETE FROM m_hnsw",
    ] {
        let e = c.execute_batch(sql);
        let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("may not be modified"), "{sql}: {msg}");
    }
    assert_eq!(report(&c, "m")["ok"], true);
    // Reads stay allowed.
    let n: i64 = c
        .query_row("SELECT count(*) FROM m_content", [], |r| r.get(0))
        .unwrap_or(0);
    assert_eq!(n, 1);
    c.execute_batch("DROP TABLE m")
        .unwrap_or_else(|e| panic!("{e}"));
}

fn shadow_tables(c: &Connection, prefix: &str) -> Vec<String> {
    c.prepare("SELECT name FROM sqlite_master WHERE name LIKE ?1 ORDER BY name")
        .and_then(|mut s| s.query_map([format!("{prefix}%")], |r| r.get(0))?.collect())
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn rename_vacuum_reopen_and_drop() {
    let dir = temp_dir("integrity");
    let path = dir.join("r.db").to_string_lossy().to_string();
    let c = open(&path);
    filled(&c, "notes");
    let probe = [5f32.sin(), 5f32.cos(), 1.0, 0.5f32.sin()];
    assert_eq!(knn1(&c, "notes", &probe), vec![5]);
    c.execute_batch("ALTER TABLE notes RENAME TO memo")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        shadow_tables(&c, "notes").is_empty(),
        "{:?}",
        shadow_tables(&c, "notes")
    );
    assert_eq!(knn1(&c, "memo", &probe), vec![5]);
    c.execute_batch("DELETE FROM memo WHERE id % 2 = 0; VACUUM;")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(knn1(&c, "memo", &probe), vec![5]);
    assert_eq!(report(&c, "memo")["ok"], true);
    drop(c);
    let c = open(&path);
    assert_eq!(knn1(&c, "memo", &probe), vec![5]);
    assert_eq!(report(&c, "memo")["ok"], true);
    c.execute_batch("DROP TABLE memo")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        shadow_tables(&c, "memo").is_empty(),
        "{:?}",
        shadow_tables(&c, "memo")
    );
    assert!(shadow_tables(&c, "sqlite_autoindex_memo").is_empty());
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_table_of_another_format_version_fails_clearly() {
    let dir = temp_dir("format");
    let path = dir.join("f.db").to_string_lossy().to_string();
    let c = open(&path);
    c.execute_batch(
        "CREATE VIRTUAL TABLE m USING memories(dim=2, auto_embed=off);
         INSERT INTO m(content) VALUES ('x');
         UPDATE m_config SET value = '5' WHERE key = 'format';",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    drop(c);
    let c = open(&path);
    let e = c.query_row("SELECT count(*) FROM m", [], |r| r.get::<_, i64>(0));
    let msg = e.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("on-disk format 5") && msg.contains("reads format 4"),
        "{msg}"
    );
    // The data is still there for the build that wrote it.
    let n: i64 = c
        .query_row("SELECT count(*) FROM m_content", [], |r| r.get(0))
        .unwrap_or(0);
    assert_eq!(n, 1);
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}
