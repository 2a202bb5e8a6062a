//! Hostile input found by an adversarial run (issue 15), each case a test: vectors of huge
//! or zero magnitude, the auto id after the largest rowid, small contract gaps of MATCH,
//! `k` and `ranking`, changing `id`, `subcog_integrity` under another connection's lock,
//! and table names resolved as SQLite resolves them. Each bad input is a clear SQL error,
//! the table is unchanged and `subcog_integrity` clean afterwards. Needs no model. Bundled
//! SQLite.

mod common;

use common::search::{knn, last_insert};
use common::{assert_integrity, blob, count, err_of, int, mem};
use rusqlite::{Connection, params};

/// A 4-d cosine table `mem` (dedup on, the default) with rows 1 ([1,0,0,0]) and 2
/// ([0,1,0,0]).
fn table() -> Connection {
    let c = mem();
    c.execute_batch("CREATE VIRTUAL TABLE mem USING memories(dim=4, auto_embed=off)")
        .unwrap_or_else(|e| panic!("{e}"));
    for (id, text, v) in [
        (1, "apples are red", [1.0, 0.0, 0.0, 0.0]),
        (2, "sky is blue", [0.0, 1.0, 0.0, 0.0]),
    ] {
        c.execute(
            "INSERT INTO mem(id, content, embedding) VALUES (?1, ?2, ?3)",
            params![id, text, blob(&v)],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    c
}

/// Every row (id, content, embedding), for "the table is unchanged".
fn rows(c: &Connection) -> Vec<(i64, String, Option<Vec<u8>>)> {
    let mut st = c
        .prepare("SELECT id, content, embedding FROM mem ORDER BY id")
        .unwrap_or_else(|e| panic!("{e}"));
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .and_then(|m| m.collect())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `sql` with `p` fails with a message containing every one of `words`; the table is
/// unchanged and clean.
fn refused(c: &Connection, sql: &str, p: impl rusqlite::Params, words: &[&str]) -> String {
    let before = rows(c);
    let e = err_of(c.prepare(sql).and_then(|mut st| {
        let n = st.column_count();
        let mut q = st.query(p)?;
        let mut got = 0;
        while q.next()?.is_some() {
            got += 1;
        }
        Ok((n, got))
    }));
    for w in words {
        assert!(e.contains(w), "{sql}: {e:?} does not name {w:?}");
    }
    assert_eq!(rows(c), before, "{sql} changed the table");
    assert_integrity(c, "mem", sql);
    e
}

#[test]
fn huge_magnitudes_are_refused_at_write_and_query_time() {
    let c = table();
    let huge = blob(&[3e19, 0.0, 0.0, 0.0]);
    refused(
        &c,
        "INSERT INTO mem(content, embedding) VALUES ('huge', ?1)",
        [&huge],
        &["column embedding", "norm", "too large"],
    );
    refused(
        &c,
        "UPDATE mem SET embedding = ?1 WHERE id = 1",
        [&huge],
        &["column embedding", "too large"],
    );
    refused(
        &c,
        "SELECT id FROM mem WHERE embedding MATCH ?1 AND k = 2",
        [&huge],
        &["embedding MATCH", "too large"],
    );
    refused(
        &c,
        "SELECT id FROM mem WHERE embedding MATCH '[3e19, 0, 0, 0]' AND k = 2",
        [],
        &["too large"],
    );
    refused(
        &c,
        "SELECT * FROM vec_search('mem', ?1, 2)",
        [&huge],
        &["too large"],
    );
    refused(&c, "SELECT vec_f32('[3e19, 0, 0, 0]')", [], &["too large"]);
    refused(
        &c,
        "SELECT vec_distance(?1, ?1)",
        [&huge],
        &["vec_distance(a)", "too large"],
    );
    refused(&c, "SELECT vec_f32('[1e39]')", [], &["finite float32"]);
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let b = blob(&[bad, 0.0, 0.0, 0.0]);
        refused(
            &c,
            "INSERT INTO mem(content, embedding) VALUES ('bad', ?1)",
            [&b],
            &["column embedding", "element 0", "finite"],
        );
        refused(
            &c,
            "SELECT id FROM mem WHERE embedding MATCH ?1 AND k = 2",
            [&b],
            &["finite"],
        );
        refused(&c, "SELECT vec_distance(?1, ?1, 'l2')", [&b], &["finite"]);
    }
}

#[test]
fn large_finite_vectors_give_exact_distances_and_never_a_nan_similarity() {
    let c = table();
    // The largest magnitude accepted, parallel to row 1: distance ~0, not garbage.
    c.execute(
        "INSERT INTO mem(content, embedding) VALUES ('big apples', ?1)",
        [blob(&[4e18, 0.0, 0.0, 0.0])],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // Near duplicate of row 1 in direction: superseded with similarity 1, not NaN.
    let li = last_insert(&c, "mem").unwrap_or_default();
    assert_eq!(li["outcome"], "superseded", "{li}");
    assert_eq!(li["supersedes"], 1, "{li}");
    let s = li["similarity"].as_f64().unwrap_or(f64::NAN);
    assert!((s - 1.0).abs() < 1e-4, "{li}");
    // An unrelated memory after it is not merged into it (it used to be: similarity NaN).
    c.execute(
        "INSERT INTO mem(content, embedding) VALUES ('pears are green', ?1)",
        [blob(&[0.0, 0.0, 1.0, 0.0])],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let li = last_insert(&c, "mem").unwrap_or_default();
    assert_eq!(li["outcome"], "inserted", "{li}");
    let hits =
        knn(&c, "mem", &[1.0, 0.0, 0.0, 0.0], 4, None, true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hits.len(), 4, "{hits:?}");
    for (id, d) in &hits {
        assert!(d.is_finite(), "{hits:?}");
        if *id == 1 || *id == 3 {
            assert!(
                d.abs() < 1e-5,
                "parallel row {id} at distance {d}: {hits:?}"
            );
        }
    }
    // A tiny vector (float32 squares underflow): still a direction.
    c.execute(
        "INSERT INTO mem(id, content, embedding) VALUES (5, 'tiny clouds', ?1)",
        [blob(&[0.0, 1e-30, 0.0, 0.0])],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let d: f64 = c
        .query_row(
            "SELECT vec_distance(embedding, vec_f32('[0,1,0,0]')) FROM mem WHERE id = 5",
            [],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(d.abs() < 1e-6, "{d}");
    let d: f64 = c
        .query_row(
            "SELECT vec_distance(vec_f32('[4e18,0]'), vec_f32('[-4e18,0]'), 'l2')",
            [],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!((d - 8e18).abs() < 1e13, "{d}");
    let vs: Vec<i64> = common::ok_ids(
        &c,
        "SELECT id FROM vec_search('mem', vec_f32('[1,0,0,0]'), 2)",
        [],
    );
    assert_eq!(vs.len(), 2, "{vs:?}");
    assert_integrity(&c, "mem", "after large and tiny vectors");
}

#[test]
fn zero_vectors_are_refused_on_cosine_at_write_and_query_time() {
    let c = table();
    let zero = blob(&[0.0; 4]);
    refused(
        &c,
        "INSERT INTO mem(content, embedding) VALUES ('zero', ?1)",
        [&zero],
        &["column embedding", "non-zero", "cosine"],
    );
    refused(
        &c,
        "UPDATE mem SET embedding = ?1 WHERE id = 2",
        [&zero],
        &["non-zero"],
    );
    refused(
        &c,
        "SELECT id FROM mem WHERE embedding MATCH ?1 AND k = 2",
        [&zero],
        &["embedding MATCH", "non-zero", "cosine"],
    );
    refused(
        &c,
        "SELECT * FROM vec_search('mem', ?1, 2)",
        [&zero],
        &["non-zero"],
    );
    refused(
        &c,
        "SELECT vec_distance(?1, vec_f32('[1,0,0,0]'))",
        [&zero],
        &["vec_distance(a)", "non-zero"],
    );
    // Not an error where the zero vector has a meaning.
    let d: f64 = c
        .query_row(
            "SELECT vec_distance(?1, vec_f32('[3,4,0,0]'), 'l2')",
            [&zero],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!((d - 5.0).abs() < 1e-6);
    let l2 = mem();
    l2.execute_batch("CREATE VIRTUAL TABLE m2 USING memories(dim=2, metric=l2, auto_embed=off)")
        .unwrap_or_else(|e| panic!("{e}"));
    l2.execute(
        "INSERT INTO m2(content, embedding) VALUES ('origin', ?1)",
        [blob(&[0.0, 0.0])],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        knn(&l2, "m2", &[0.0, 0.0], 1, None, false)
            .map(|h| h.len())
            .ok(),
        Some(1)
    );
    assert_eq!(count(&l2, "m2"), 1);
    let _ = int(&c, "SELECT 1");
}

#[test]
fn contract_gaps_of_match_k_and_ranking() {
    let c = table();
    // A hybrid MATCH on a number searches its text ("any text is accepted").
    c.execute(
        "INSERT INTO mem(id, content, embedding) VALUES (3, 'port 8080 is open', ?1)",
        [blob(&[0.0, 0.0, 1.0, 0.0])],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let kw = common::ok_ids(&c, "SELECT id FROM mem WHERE content MATCH 8080", []);
    assert_eq!(kw, [3]);
    // (hybrid needs the model for embed(text); without it the error names the model, not
    // the type of the value)
    let r = common::ids(&c, "SELECT id FROM mem WHERE mem MATCH 8080 AND k = 2", []);
    if let Err(e) = &r {
        let e = e.to_string();
        assert!(!e.contains("expected the search text as TEXT"), "{e}");
    }
    refused(
        &c,
        "SELECT id FROM mem WHERE mem MATCH x'00' AND k = 2",
        [],
        &["mem MATCH", "TEXT", "BLOB"],
    );
    // k = NULL is an error, not "no k".
    let q = blob(&[1.0, 0.0, 0.0, 0.0]);
    refused(
        &c,
        "SELECT id FROM mem WHERE embedding MATCH ?1 AND k = NULL",
        [&q],
        &["column k", "NULL", "1..=4096"],
    );
    refused(
        &c,
        "SELECT id FROM mem WHERE content MATCH 'apples' AND k = ?1",
        [rusqlite::types::Null],
        &["column k", "NULL"],
    );
    // Unknown ranking keys are an error listing the known ones; the aliases work.
    let e = refused(
        &c,
        "SELECT id FROM mem WHERE embedding MATCH ?1 AND k = 2 AND ranking = '{\"recency_weigth\": 0.5}'",
        [&q],
        &[
            "column ranking",
            "recency_weigth",
            "recency_weight",
            "half_life",
            "importance_weight",
        ],
    );
    assert!(e.contains("unknown key"), "{e}");
    for ok in [
        r#"{"recency": 0.5}"#,
        r#"{"recency_weight": 0.2, "importance": 0.3, "recency_half_life": "7d"}"#,
    ] {
        let got = common::ids(
            &c,
            "SELECT id FROM mem WHERE embedding MATCH ?1 AND k = 2 AND ranking = ?2",
            params![q, ok],
        );
        assert_eq!(got.map(|v| v.len()).ok(), Some(2), "{ok}");
    }
}

#[test]
fn changing_id_keeps_every_index_exact() {
    let c = table();
    c.execute("UPDATE mem SET id = 99 WHERE id = 1", [])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        common::ok_ids(&c, "SELECT id FROM mem ORDER BY id", []),
        [2, 99]
    );
    let hits =
        knn(&c, "mem", &[1.0, 0.0, 0.0, 0.0], 1, None, false).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hits.first().map(|h| h.0), Some(99), "{hits:?}");
    assert!(hits[0].1.abs() < 1e-6);
    assert_eq!(
        common::ok_ids(&c, "SELECT id FROM mem WHERE content MATCH 'apples'", []),
        [99]
    );
    let vs = common::ok_ids(
        &c,
        "SELECT id FROM vec_search('mem', vec_f32('[1,0,0,0]'), 1)",
        [],
    );
    assert_eq!(vs, [99]);
    assert_eq!(
        common::ok_ids(&c, "SELECT id FROM mem WHERE id = 1", []),
        Vec::<i64>::new()
    );
    assert_integrity(&c, "mem", "after SET id = 99");
    // Committed and reopened: the same (the graph snapshot follows the id).
    let dir = common::temp_dir("hostile-setid");
    let path = dir.join("m.db");
    let path = path.to_string_lossy();
    {
        let f = common::open(&path);
        f.execute_batch("CREATE VIRTUAL TABLE mem USING memories(dim=4, auto_embed=off)")
            .unwrap_or_else(|e| panic!("{e}"));
        for i in 1..=40i64 {
            let v = [(i as f32).cos(), (i as f32).sin(), 0.5, i as f32 / 40.0];
            f.execute(
                "INSERT INTO mem(id, content, embedding) VALUES (?1, ?2, ?3)",
                params![i, format!("memory number {i}"), blob(&v)],
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
        f.execute_batch("INSERT INTO mem(mem) VALUES ('optimize')")
            .unwrap_or_else(|e| panic!("{e}"));
        f.execute("UPDATE mem SET id = 1000 WHERE id = 7", [])
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let f = common::open(&path);
    let v7 = [(7f32).cos(), (7f32).sin(), 0.5, 7.0 / 40.0];
    let hits = knn(&f, "mem", &v7, 1, None, false).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hits.first().map(|h| h.0), Some(1000), "{hits:?}");
    assert_integrity(&f, "mem", "reopened after SET id = 1000");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn auto_id_after_the_largest_rowid_picks_a_free_id() {
    let c = table();
    c.execute(
        "INSERT INTO mem(id, content, embedding) VALUES (9223372036854775807, 'the last id', ?1)",
        [blob(&[0.0, 0.0, 1.0, 0.0])],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut seen = std::collections::HashSet::new();
    for i in 0..20 {
        c.execute(
            "INSERT INTO mem(content, embedding) VALUES (?1, ?2)",
            params![
                format!("after the last id {i}"),
                blob(&[0.0, 0.0, (i + 1) as f32, 1.0])
            ],
        )
        .unwrap_or_else(|e| panic!("INSERT {i} after id i64::MAX: {e}"));
        let id = c.last_insert_rowid();
        assert!(id > 0 && id != i64::MAX, "{id}");
        assert!(seen.insert(id), "id {id} given twice");
        let got: String = c
            .query_row("SELECT content FROM mem WHERE id = ?1", [id], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, format!("after the last id {i}"));
    }
    assert_eq!(count(&c, "mem"), 23);
    assert_integrity(&c, "mem", "after random ids");
}

/// A file database with table `mem` (two rows) in journal mode `mode`, and its path.
fn file_table(tag: &str, mode: &str) -> (std::path::PathBuf, String) {
    let dir = common::temp_dir(tag);
    let path = dir.join("m.db").to_string_lossy().into_owned();
    let c = common::open(&path);
    c.execute_batch(&format!(
        "PRAGMA journal_mode = {mode}; CREATE VIRTUAL TABLE mem USING memories(dim=4, auto_embed=off)"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    for (id, v) in [(1, [1.0, 0.0, 0.0, 0.0]), (2, [0.0, 1.0, 0.0, 0.0])] {
        c.execute(
            "INSERT INTO mem(id, content, embedding) VALUES (?1, ?2, ?3)",
            params![id, format!("memory {id}"), blob(&v)],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    (dir, path)
}

#[test]
fn integrity_is_read_only_and_says_what_it_could_not_check() {
    for mode in ["delete", "wal"] {
        let (dir, path) = file_table(&format!("hostile-integrity-{mode}"), mode);
        let checker = common::open(&path);
        checker
            .busy_timeout(std::time::Duration::from_millis(200))
            .unwrap_or_else(|e| panic!("{e}"));
        // Another connection holds the write lock.
        let writer = common::open(&path);
        writer
            .execute_batch("BEGIN IMMEDIATE")
            .unwrap_or_else(|e| panic!("{e}"));
        let r = common::report(&checker, "mem");
        assert_ne!(r["ok"], false, "{mode}, other writer: {r}");
        let skipped = r["skipped"].to_string();
        assert!(
            skipped.contains("fts5") && skipped.contains("locked"),
            "{mode}: {r}"
        );
        writer
            .execute_batch("ROLLBACK")
            .unwrap_or_else(|e| panic!("{e}"));
        // A reader is active on another connection.
        let reader = common::open(&path);
        reader
            .execute_batch("BEGIN; SELECT count(*) FROM mem_content;")
            .unwrap_or_else(|e| panic!("{e}"));
        let r = common::report(&checker, "mem");
        assert_ne!(r["ok"], false, "{mode}, other reader: {r}");
        reader
            .execute_batch("COMMIT")
            .unwrap_or_else(|e| panic!("{e}"));
        // Inside a read transaction of the checking connection: stays a read transaction.
        checker
            .execute_batch("BEGIN; SELECT count(*) FROM mem_content;")
            .unwrap_or_else(|e| panic!("{e}"));
        let r = common::report(&checker, "mem");
        assert_ne!(r["ok"], false, "{mode}, in a read transaction: {r}");
        let state = checker
            .transaction_state(Some(rusqlite::MAIN_DB))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(state, rusqlite::TransactionState::Read, "{mode}: {r}");
        // Another connection can now take the write lock and commit ...
        let w2 = common::open(&path);
        w2.busy_timeout(std::time::Duration::from_millis(200))
            .unwrap_or_else(|e| panic!("{e}"));
        if mode == "wal" {
            w2.execute("DELETE FROM mem WHERE id = 2", [])
                .unwrap_or_else(|e| panic!("{mode}: a writer next to the check: {e}"));
        }
        // ... and the checker's COMMIT succeeds.
        checker
            .execute_batch("COMMIT")
            .unwrap_or_else(|e| panic!("{mode}: COMMIT after subcog_integrity: {e}"));
        // With nobody else: every check runs, ok.
        drop(w2);
        let r = common::report(&checker, "mem");
        assert_eq!(r["ok"], true, "{mode}: {r}");
        assert_eq!(r["fts_integrity_check"], "ok", "{mode}: {r}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn table_names_resolve_as_sqlite_resolves_them() {
    let dir = common::temp_dir("hostile-names");
    let c = mem();
    let other = dir.join("other.db").to_string_lossy().into_owned();
    c.execute("ATTACH DATABASE ?1 AS aux", [&other])
        .unwrap_or_else(|e| panic!("{e}"));
    // (SQL identifier as created, names a function is given that must find it)
    let tables: [(&str, &[&str]); 8] = [
        (
            "mem",
            &[
                "mem",
                "MEM",
                "Mem",
                "main.mem",
                "MAIN.MEM",
                "\"mem\"",
                "main.\"MEM\"",
            ],
        ),
        (
            "\"a.b\"",
            &["a.b", "A.B", "\"a.b\"", "main.\"a.b\"", "[a.b]"],
        ),
        (
            "\"with space\"",
            &[
                "with space",
                "WITH SPACE",
                "\"with space\"",
                "main.\"with space\"",
            ],
        ),
        (
            "\"Ünïcødé\"",
            &["Ünïcødé", "ÜNÏCØDÉ", "main.Ünïcødé", "`Ünïcødé`"],
        ),
        (
            "\"we\"\"ird\"",
            &["we\"ird", "\"we\"\"ird\"", "main.\"we\"\"ird\""],
        ),
        ("\"MiXeD\"", &["mixed", "MIXED", "MiXeD", "main.mixed"]),
        (
            "temp.tmem",
            &["tmem", "temp.tmem", "TEMP.TMEM", "\"temp\".\"tmem\""],
        ),
        (
            "aux.amem",
            &["amem", "aux.amem", "AUX.Amem", "aux.\"amem\""],
        ),
    ];
    for (i, (ident, _)) in tables.iter().enumerate() {
        c.execute_batch(&format!(
            "CREATE VIRTUAL TABLE {ident} USING memories(dim=2, auto_embed=off, dedup=off)"
        ))
        .unwrap_or_else(|e| panic!("{ident}: {e}"));
        c.execute(
            &format!("INSERT INTO {ident}(id, content, embedding) VALUES (?1, 'x', ?2)"),
            params![i as i64 + 1, blob(&[1.0, i as f32])],
        )
        .unwrap_or_else(|e| panic!("{ident}: {e}"));
        c.execute(
            &format!(
                "INSERT INTO {ident}(id, content, embedding, ttl) VALUES (?1, 'y', ?2, '1ms')"
            ),
            params![i as i64 + 100, blob(&[-1.0, 0.5])],
        )
        .unwrap_or_else(|e| panic!("{ident}: {e}"));
    }
    // ÜNÏCØDÉ: SQLite folds only ASCII letters, so the upper-case form is another name.
    std::thread::sleep(std::time::Duration::from_millis(5));
    for (i, (ident, names)) in tables.iter().enumerate() {
        for name in names.iter() {
            if *name == "ÜNÏCØDÉ" {
                let e = err_of(c.query_row("SELECT subcog_integrity(?1)", [name], |r| {
                    r.get::<_, String>(0)
                }));
                assert!(e.contains("not a memories table"), "{name}: {e}");
                continue;
            }
            let v = blob(&[1.0, i as f32]);
            let got = common::ids(&c, "SELECT id FROM vec_search(?1, ?2, 1)", params![name, v])
                .unwrap_or_else(|e| panic!("vec_search({name:?}) for {ident}: {e}"));
            assert_eq!(got, [i as i64 + 1], "vec_search({name:?}) for {ident}");
            let r = common::report(&c, name);
            assert_eq!(r["ok"], true, "subcog_integrity({name:?}) for {ident}: {r}");
            assert_eq!(
                r["counts"]["memories"], 2,
                "subcog_integrity({name:?}): {r}"
            );
            let _: Option<String> = c
                .query_row("SELECT subcog_last_insert(?1)", [name], |r| r.get(0))
                .unwrap_or_else(|e| panic!("subcog_last_insert({name:?}) for {ident}: {e}"));
        }
        // Purge through the last spelling: the expired row goes.
        let last = names[names.len() - 1];
        let purged: i64 = c
            .query_row("SELECT subcog_purge(?1)", [last], |r| r.get(0))
            .unwrap_or_else(|e| panic!("subcog_purge({last:?}) for {ident}: {e}"));
        assert_eq!(purged, 1, "subcog_purge({last:?}) for {ident}");
    }
    for bad in [
        "nope",
        "main.nope",
        "\"mem",
        "mem\"",
        "nope.mem",
        "temp.mem",
        "a.\"b",
    ] {
        let e = err_of(c.query_row("SELECT subcog_integrity(?1)", [bad], |r| {
            r.get::<_, String>(0)
        }));
        assert!(
            e.contains("not a memories table") || e.contains("no such"),
            "{bad}: {e}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
