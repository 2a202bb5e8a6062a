//! Branches and merge (issue 11): `CREATE VIRTUAL TABLE ... USING memories(branch_of=...,
//! at=...)` and `subcog_branch`, reads of a branch (scan, point, KNN, keyword, hybrid)
//! compared with a plain copy of the base made at the fork (ids, order, distances and
//! scores), writes on both sides, `subcog_merge` without and with conflicts under each
//! policy, renumbered ids and the links that follow them, `subcog_merge_conflicts`,
//! ROLLBACK and failed statements on a branch, reopen, retention, DROP, and bad input
//! (each an error that changes nothing). The default table options (`USING memories()`:
//! the model embeds, dedup on, history on) run first; other options are labelled.

mod common;

use common::{assert_integrity, blob, err_of, int, mem, ok_ids, open, temp_dir};
use rusqlite::{Connection, params};

/// Memories of the tests: distinct facts (no two are near duplicates).
const FACTS: &[(&str, &str)] = &[
    (
        "The deploy pipeline runs on GitHub Actions every night",
        "ops",
    ),
    ("Alice prefers tea over coffee in the morning", "people"),
    ("The staging database lives in eu-west-1", "ops"),
    ("Bob is allergic to peanuts", "people"),
    (
        "Quarterly planning happens in the first week of March",
        "work",
    ),
    ("The office wifi password rotates every month", "ops"),
    ("Carol maintains the billing service", "people"),
    ("Our API rate limit is 100 requests per minute", "work"),
    ("The cat is called Miso and sleeps on the printer", "home"),
    ("Backups are kept for thirty days in cold storage", "ops"),
];

/// Every column but `updated_at` (an UPDATE sets it to now), ordered by id.
const COLUMNS: &str = "id, content, namespace, tags, metadata, source, importance, \
                       created_at, embedding, expires_at, superseded_by";

fn run(c: &Connection, sql: &str) {
    c.execute_batch(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Every row of `sql`, each column as text.
fn dump(c: &Connection, sql: &str) -> Vec<String> {
    let mut st = c.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let n = st.column_count();
    st.query_map([], |r| {
        let mut s = String::new();
        for i in 0..n {
            let v: rusqlite::types::Value = r.get(i)?;
            s.push_str(&format!("{v:?}|"));
        }
        Ok(s)
    })
    .and_then(|rows| rows.collect())
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The table `t` as seen through every plan: scan, point, namespace, KNN, keyword,
/// hybrid (ids with distances and scores).
fn views(c: &Connection, t: &str) -> Vec<Vec<String>> {
    vec![
        dump(c, &format!("SELECT {COLUMNS} FROM {t} ORDER BY id")),
        dump(c, &format!("SELECT {COLUMNS} FROM {t} WHERE id = 2")),
        dump(
            c,
            &format!("SELECT id FROM {t} WHERE namespace = 'ops' ORDER BY id"),
        ),
        dump(
            c,
            &format!(
                "SELECT id, distance FROM {t} WHERE embedding MATCH embed('who looks after \
                 billing') AND k = 5"
            ),
        ),
        dump(
            c,
            &format!("SELECT id, score FROM {t} WHERE content MATCH 'the' ORDER BY score DESC"),
        ),
        dump(
            c,
            &format!("SELECT id, score FROM {t} WHERE {t} MATCH 'database storage' AND k = 5"),
        ),
    ]
}

/// The base `mem` (default options) with [`FACTS`] (ids 1..=10, fixed times).
fn base(c: &Connection, opts: &str) {
    run(
        c,
        &format!("CREATE VIRTUAL TABLE mem USING memories({opts})"),
    );
    for (i, (text, ns)) in FACTS.iter().enumerate() {
        c.execute(
            "INSERT INTO mem(content, namespace, created_at) VALUES (?1, ?2, ?3)",
            params![text, ns, 1_700_000_000_000i64 + i as i64],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// A plain `memories()` copy `name` of `mem` as of `at` (a snapshot name).
fn plain_copy(c: &Connection, name: &str, at: &str) {
    run(c, &format!("CREATE VIRTUAL TABLE {name} USING memories()"));
    c.execute(
        &format!(
            "INSERT INTO {name}(id, content, namespace, tags, metadata, source, importance, \
             created_at, updated_at, expires_at, embedding) SELECT id, content, namespace, \
             tags, metadata, source, importance, created_at, updated_at, expires_at, embedding \
             FROM mem WHERE as_of = ?1 ORDER BY id"
        ),
        [at],
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

/// The same writes on table `t`.
fn writes(c: &Connection, t: &str) {
    for sql in [
        format!(
            "INSERT INTO {t}(content, namespace, created_at) VALUES ('Dana runs the Tuesday \
             standup', 'people', 1700000001000)"
        ),
        format!("UPDATE {t} SET content = 'The staging database moved to us-east-2' WHERE id = 3"),
        format!("DELETE FROM {t} WHERE id = 4"),
        // An exact duplicate lands on the existing memory (dedup merge: tags union).
        format!(
            "INSERT INTO {t}(content, namespace, tags) VALUES ('alice prefers TEA over coffee \
             in the morning', 'people', '[\"drinks\"]')"
        ),
    ] {
        run(c, &sql);
    }
}

#[test]
fn branch_reads_and_writes_equal_a_plain_copy_made_at_the_fork() {
    let c = mem();
    base(&c, "");
    let v0: i64 = int(&c, "SELECT subcog_snapshot('mem', 'before')");
    // The base moves on after the snapshot.
    run(
        &c,
        "UPDATE mem SET content = 'Alice now drinks only water' WHERE id = 2;
         DELETE FROM mem WHERE id = 5;
         INSERT INTO mem(content, namespace) VALUES ('The printer on floor two is broken', 'ops');",
    );
    let base_rows = dump(
        &c,
        &format!("SELECT {COLUMNS}, updated_at FROM mem ORDER BY id"),
    );
    let fork: i64 = c
        .query_row("SELECT subcog_branch('mem', 'trial', 'before')", [], |r| {
            r.get(0)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fork, v0);
    // Nothing of the base was copied.
    assert_eq!(int(&c, "SELECT count(*) FROM trial_content"), 0);
    assert_eq!(int(&c, "SELECT count(*) FROM trial_vectors"), 0);
    assert_eq!(int(&c, "SELECT subcog_version('trial')"), v0);
    plain_copy(&c, "plain", "before");
    assert_eq!(views(&c, "trial"), views(&c, "plain"), "at the fork");
    assert_eq!(
        ok_ids(&c, "SELECT id FROM trial ORDER BY id", []),
        (1..=10).collect::<Vec<i64>>()
    );
    writes(&c, "trial");
    writes(&c, "plain");
    assert_eq!(
        views(&c, "trial"),
        views(&c, "plain"),
        "after the same writes"
    );
    // Only what the branch wrote is stored in it; the base is untouched.
    assert_eq!(int(&c, "SELECT count(*) FROM trial_content"), 3);
    assert_eq!(
        dump(
            &c,
            &format!("SELECT {COLUMNS}, updated_at FROM mem ORDER BY id")
        ),
        base_rows
    );
    // A rolled back write and a failed statement leave the branch as it was.
    let before = views(&c, "trial");
    run(
        &c,
        "BEGIN; INSERT INTO trial(content) VALUES ('Eve joins in June'); DELETE FROM trial WHERE id = 1; ROLLBACK;",
    );
    assert_eq!(views(&c, "trial"), before, "after ROLLBACK");
    let e = err_of(c.execute(
        "INSERT INTO trial(id, content) VALUES (11, 'Frank likes jazz'), (1, 'taken id')",
        [],
    ));
    assert!(e.contains("UNIQUE"), "{e}");
    assert_eq!(views(&c, "trial"), before, "after a failed statement");
    // The branch's history is what it shows, numbered on from the fork.
    let h = dump(
        &c,
        "SELECT change, before IS NULL, after IS NULL FROM subcog_history('trial', 3)",
    );
    assert_eq!(
        h,
        vec!["Text(\"update\")|Integer(0)|Integer(0)|".to_string()]
    );
    assert!(int(&c, "SELECT subcog_version('trial')") > v0);
    for t in ["mem", "trial", "plain"] {
        assert_integrity(&c, t, "after writes");
    }
}

#[test]
fn merge_applies_both_sides_renumbers_new_ids_and_can_be_restored() {
    let c = mem();
    base(&c, "");
    let fork: i64 = int(&c, "SELECT subcog_branch('mem', 'trial')");
    assert_eq!(fork, int(&c, "SELECT subcog_version('mem')"));
    // Base side: an update and a new memory (id 11).
    run(
        &c,
        "UPDATE mem SET importance = 0.9 WHERE id = 1;
         INSERT INTO mem(content, namespace) VALUES ('The printer on floor two is broken', 'ops');",
    );
    // Branch side: an update, a delete, a near duplicate of memory 8 (id 11, like the
    // base's new memory), which supersedes it (a link from a new memory to a base memory),
    // and another new memory (id 12).
    run(
        &c,
        "UPDATE trial SET content = 'Alice switched to green tea' WHERE id = 2;
         DELETE FROM trial WHERE id = 3;
         INSERT INTO trial(content, namespace) VALUES ('Our API rate limit is 100 requests per minute!', 'work');
         INSERT INTO trial(content, namespace) VALUES ('Dana runs the Tuesday standup', 'people');",
    );
    assert_eq!(
        ok_ids(&c, "SELECT id FROM trial WHERE id > 10 ORDER BY id", []),
        vec![11, 12]
    );
    let sup: Option<i64> = c
        .query_row("SELECT superseded_by FROM trial WHERE id = 8", [], |r| {
            r.get(0)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        sup,
        Some(11),
        "the near duplicate supersedes memory 8 in the branch"
    );
    assert!(
        ok_ids(
            &c,
            "SELECT id FROM subcog_merge_conflicts('trial', 'mem')",
            []
        )
        .is_empty()
    );
    let before_merge = int(&c, "SELECT subcog_version('mem')");
    let r: String = c
        .query_row("SELECT subcog_merge('trial', 'mem')", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    let j: serde_json::Value = serde_json::from_str(&r).unwrap_or_else(|e| panic!("{e}: {r}"));
    assert_eq!(j["applied"], 4, "{r}");
    assert_eq!(j["policy"], "fail", "{r}");
    assert_eq!(j["conflicts"], serde_json::json!([]), "{r}");
    // 11 is taken in the target: the next id free in both (12 stays the branch's).
    assert_eq!(j["renumbered"], serde_json::json!({"11": 13}), "{r}");
    assert_eq!(j["links"], 1, "{r}");
    // Both sides are in the target.
    let text = |id: i64| -> Option<String> {
        c.query_row("SELECT content FROM mem WHERE id = ?1", [id], |r| r.get(0))
            .ok()
    };
    assert_eq!(text(2).as_deref(), Some("Alice switched to green tea"));
    assert_eq!(text(3), None);
    assert_eq!(
        text(11).as_deref(),
        Some("The printer on floor two is broken")
    );
    assert_eq!(text(12).as_deref(), Some("Dana runs the Tuesday standup"));
    assert_eq!(
        text(13).as_deref(),
        Some("Our API rate limit is 100 requests per minute!")
    );
    assert_eq!(
        int(
            &c,
            "SELECT CAST(importance * 10 AS INTEGER) FROM mem WHERE id = 1"
        ),
        9,
        "the base's own change stays"
    );
    let sup: Option<i64> = c
        .query_row("SELECT superseded_by FROM mem WHERE id = 8", [], |r| {
            r.get(0)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sup, Some(13), "the link follows the renumbered memory");
    // The merged rows keep the branch's vectors.
    assert_eq!(
        int(
            &c,
            "SELECT (SELECT embedding FROM mem WHERE id = 13) = (SELECT embedding FROM trial WHERE id = 11)"
        ),
        1
    );
    let ops = dump(&c, "SELECT change FROM subcog_history('mem', 2)");
    assert_eq!(
        ops.last().map(String::as_str),
        Some("Text(\"merge_branch\")|")
    );
    assert_integrity(&c, "mem", "after merge");
    assert_integrity(&c, "trial", "after merge");
    // A second merge finds nothing left to do.
    let r: String = c
        .query_row("SELECT subcog_merge('trial', 'mem', 'fail')", [], |r| {
            r.get(0)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(r.contains("\"applied\":0"), "{r}");
    // The merge is undone by a restore.
    c.query_row("SELECT subcog_restore('mem', ?1)", [before_merge], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        text(2).as_deref(),
        Some("Alice prefers tea over coffee in the morning")
    );
    assert_eq!(text(12), None);
    assert_integrity(&c, "mem", "after restore");
    // The branch can be dropped; then the base too.
    run(&c, "DROP TABLE trial");
    assert_eq!(
        int(
            &c,
            "SELECT count(*) FROM mem_config WHERE key LIKE 'branch:%'"
        ),
        0
    );
    run(&c, "DROP TABLE mem");
    assert_eq!(int(&c, "SELECT count(*) FROM sqlite_master"), 0);
}

#[test]
fn conflicts_fail_ours_and_theirs() {
    let c = mem();
    base(&c, "");
    run(&c, "SELECT subcog_branch('mem', 'trial')");
    run(
        &c,
        "UPDATE mem SET content = 'Alice drinks mate now' WHERE id = 2;
         DELETE FROM mem WHERE id = 4;
         DELETE FROM mem WHERE id = 6;",
    );
    run(
        &c,
        "UPDATE trial SET content = 'Alice switched to green tea' WHERE id = 2;
         UPDATE trial SET content = 'Bob is allergic to peanuts and shellfish' WHERE id = 4;
         DELETE FROM trial WHERE id = 6;
         INSERT INTO trial(content, namespace) VALUES ('Dana runs the Tuesday standup', 'people');",
    );
    assert_eq!(
        ok_ids(
            &c,
            "SELECT id FROM subcog_merge_conflicts('trial', 'mem')",
            []
        ),
        vec![2, 4],
        "memory 6 deleted on both sides (the same result): no conflict"
    );
    let ours: Option<String> = c
        .query_row(
            "SELECT json_extract(ours, '$.content') FROM subcog_merge_conflicts('trial', 'mem') WHERE id = 2",
            [],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ours.as_deref(), Some("Alice drinks mate now"));
    let v = int(&c, "SELECT subcog_version('mem')");
    let snapshot = dump(&c, "SELECT * FROM mem_content ORDER BY id");
    let e = err_of(c.query_row("SELECT subcog_merge('trial', 'mem')", [], |r| {
        r.get::<_, String>(0)
    }));
    assert!(
        e.contains("memories 2, 4") && e.contains("nothing was merged"),
        "{e}"
    );
    assert_eq!(int(&c, "SELECT subcog_version('mem')"), v);
    assert_eq!(dump(&c, "SELECT * FROM mem_content ORDER BY id"), snapshot);
    // ours: conflicts keep the target's side, the rest is applied.
    let r: String = c
        .query_row("SELECT subcog_merge('trial', 'mem', 'ours')", [], |r| {
            r.get(0)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let j: serde_json::Value = serde_json::from_str(&r).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(j["applied"], 1, "{r}");
    assert_eq!(j["conflicts"][0]["id"], 2, "{r}");
    assert_eq!(j["conflicts"][1]["ours"], serde_json::Value::Null, "{r}");
    assert_eq!(
        j["conflicts"][1]["theirs"]["content"], "Bob is allergic to peanuts and shellfish",
        "{r}"
    );
    let content = |id: i64| -> Option<String> {
        c.query_row("SELECT content FROM mem WHERE id = ?1", [id], |r| r.get(0))
            .ok()
    };
    assert_eq!(content(2).as_deref(), Some("Alice drinks mate now"));
    assert_eq!(content(4), None);
    assert_eq!(
        content(11).as_deref(),
        Some("Dana runs the Tuesday standup")
    );
    // theirs: the branch's side wins (memory 4 comes back with the branch's row).
    let r: String = c
        .query_row("SELECT subcog_merge('trial', 'mem', 'theirs')", [], |r| {
            r.get(0)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(r.contains("\"policy\":\"theirs\""), "{r}");
    assert_eq!(content(2).as_deref(), Some("Alice switched to green tea"));
    assert_eq!(
        content(4).as_deref(),
        Some("Bob is allergic to peanuts and shellfish")
    );
    assert!(
        ok_ids(
            &c,
            "SELECT id FROM subcog_merge_conflicts('trial', 'mem')",
            []
        )
        .is_empty()
    );
    assert_integrity(&c, "mem", "after theirs");
    assert_integrity(&c, "trial", "after theirs");
}

#[test]
fn bad_input_is_an_error_that_changes_nothing() {
    let c = mem();
    base(&c, "");
    run(&c, "SELECT subcog_snapshot('mem', 's1')");
    run(&c, "CREATE TABLE plain_t(x)");
    run(&c, "CREATE VIRTUAL TABLE other USING memories()");
    run(&c, "SELECT subcog_branch('mem', 'trial')");
    let state = |c: &Connection| {
        (
            dump(c, "SELECT type, name FROM sqlite_master ORDER BY name"),
            int(c, "SELECT subcog_version('mem')"),
            dump(c, "SELECT * FROM mem_config ORDER BY key"),
        )
    };
    let s0 = state(&c);
    let cases: &[(&str, &str)] = &[
        (
            "CREATE VIRTUAL TABLE b USING memories(branch_of='mem', at='nope')",
            "no snapshot named 'nope'",
        ),
        (
            "CREATE VIRTUAL TABLE b USING memories(branch_of='mem', at=99999)",
            "version 99999 is in the future",
        ),
        (
            "CREATE VIRTUAL TABLE b USING memories(branch_of='plain_t')",
            "expected a memories table",
        ),
        (
            "CREATE VIRTUAL TABLE b USING memories(branch_of='missing')",
            "expected a memories table",
        ),
        (
            "CREATE VIRTUAL TABLE b USING memories(branch_of='trial')",
            "is itself a branch",
        ),
        (
            "CREATE VIRTUAL TABLE b USING memories(branch_of='mem', dim=8)",
            "contradicts the base 'mem' (dim=384)",
        ),
        (
            "CREATE VIRTUAL TABLE b USING memories(at=3)",
            "only with branch_of",
        ),
        (
            "SELECT subcog_branch('mem', 'b', 'nope')",
            "no snapshot named 'nope'",
        ),
        (
            "SELECT subcog_branch('plain_t', 'b')",
            "subcog_branch(base): not a memories table",
        ),
        ("SELECT subcog_branch('mem', 'trial')", "already exists"),
        (
            "SELECT subcog_merge('trial', 'other')",
            "is a branch of 'mem', not of 'other'",
        ),
        (
            "SELECT subcog_merge('other', 'mem')",
            "'other' is not a branch",
        ),
        ("SELECT subcog_merge('trial', 'trial')", "same table"),
        (
            "SELECT subcog_merge('trial', 'plain_t')",
            "subcog_merge(into): not a memories table",
        ),
        (
            "SELECT subcog_merge('trial', 'mem', 'maybe')",
            "subcog_merge(policy): expected 'fail', 'ours' or 'theirs', got 'maybe'",
        ),
        (
            "SELECT * FROM subcog_merge_conflicts('other', 'mem')",
            "'other' is not a branch",
        ),
        // xDestroy's message does not reach the caller (SQLite reports a logic error).
        ("DROP TABLE mem", "SQL logic error"),
        ("SELECT id FROM trial WHERE as_of = 's1'", "is a branch"),
        (
            "SELECT subcog_link('trial', 1, 2, 'relates')",
            "is a branch",
        ),
        ("SELECT subcog_restore('trial', 's1')", "is a branch"),
    ];
    for (sql, want) in cases {
        let e = err_of(c.execute_batch(sql).map(|_| ()));
        assert!(e.contains(want), "{sql}: expected '{want}' in: {e}");
        assert_eq!(state(&c), s0, "{sql} changed something");
    }
    // Nothing was written into the branch either.
    assert_eq!(int(&c, "SELECT count(*) FROM trial_content"), 0);
}

#[test]
fn a_branch_survives_reopen_in_both_journal_modes() {
    for mode in ["DELETE", "WAL"] {
        let dir = temp_dir(&format!("branch-{mode}"));
        let path = dir.join("b.db");
        let path = path.to_string_lossy().into_owned();
        {
            let c = open(&path);
            run(&c, &format!("PRAGMA journal_mode = {mode}"));
            base(&c, "");
            run(&c, "SELECT subcog_snapshot('mem', 'fork')");
            run(&c, "SELECT subcog_branch('mem', 'trial', 'fork')");
            writes(&c, "trial");
            run(&c, "DELETE FROM mem WHERE id = 9");
        }
        let c = open(&path);
        plain_copy(&c, "plain", "fork");
        writes(&c, "plain");
        assert_eq!(
            views(&c, "trial"),
            views(&c, "plain"),
            "{mode}: after reopen"
        );
        let r: String = c
            .query_row("SELECT subcog_merge('trial', 'mem')", [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(r.contains("\"applied\":4"), "{mode}: {r}");
        assert_integrity(&c, "mem", mode);
        assert_integrity(&c, "trial", mode);
        drop(c);
        let c = open(&path);
        assert_eq!(
            ok_ids(&c, "SELECT id FROM mem ORDER BY id", []),
            vec![1, 2, 3, 5, 6, 7, 8, 10, 11],
            "{mode}"
        );
        run(&c, "DROP TABLE trial; DROP TABLE plain; DROP TABLE mem;");
        drop(c);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Extra case (option `history_keep=1`): `'purge'` keeps the base's history back to a live
/// branch's fork.
#[test]
fn purge_keeps_the_history_a_branch_reads() {
    let c = mem();
    base(&c, "history_keep=1");
    let fork = int(&c, "SELECT subcog_branch('mem', 'trial')");
    run(
        &c,
        "UPDATE mem SET content = 'Alice drinks mate now' WHERE id = 2;
         DELETE FROM mem WHERE id = 3;
         INSERT INTO mem(mem) VALUES ('purge');",
    );
    assert!(
        int(
            &c,
            "SELECT CAST(value AS INTEGER) FROM mem_config WHERE key = 'history_floor'"
        ) <= fork
    );
    let t: String = c
        .query_row("SELECT content FROM trial WHERE id = 2", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t, "Alice prefers tea over coffee in the morning");
    assert_eq!(int(&c, "SELECT count(*) FROM trial"), 10);
    run(
        &c,
        "DROP TABLE trial; INSERT INTO mem(mem) VALUES ('purge');",
    );
    assert!(
        int(
            &c,
            "SELECT CAST(value AS INTEGER) FROM mem_config WHERE key = 'history_floor'"
        ) > fork
    );
}

/// Extra case (`dim=4, auto_embed=off`): vectors supplied by hand, KNN on a branch is the
/// plain copy's, and the merged vector is the branch's.
#[test]
fn supplied_vectors_dim4() {
    let c = mem();
    run(
        &c,
        "CREATE VIRTUAL TABLE mem USING memories(dim=4, auto_embed=off)",
    );
    for i in 0..8 {
        let v = [1.0 + i as f32, (i % 3) as f32, (i % 2) as f32, 0.5];
        c.execute(
            "INSERT INTO mem(content, embedding) VALUES (?1, ?2)",
            params![format!("fact number {i}"), blob(&v)],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    run(&c, "SELECT subcog_branch('mem', 'trial')");
    c.execute(
        "UPDATE trial SET embedding = ?1 WHERE id = 3",
        [blob(&[0.0, 0.0, 1.0, 0.0])],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let knn = |t: &str| {
        ok_ids(
            &c,
            &format!("SELECT id FROM {t} WHERE embedding MATCH ?1 AND k = 3"),
            [blob(&[0.0, 0.0, 1.0, 0.0])],
        )
    };
    assert_eq!(knn("trial")[0], 3);
    assert_ne!(knn("mem")[0], 3);
    run(&c, "SELECT subcog_merge('trial', 'mem')");
    assert_eq!(knn("mem")[0], 3);
    assert_integrity(&c, "mem", "dim4");
    assert_integrity(&c, "trial", "dim4");
}

/// `subcog_last_insert` on a branch after an INSERT that `dedup=skip` skips as a duplicate
/// of a base memory (a row the branch does not store): the duplicate, not NULL (found by
/// the differential test).
#[test]
fn last_insert_of_a_duplicate_skipped_on_a_branch_dim4() {
    let c = mem();
    run(
        &c,
        "CREATE VIRTUAL TABLE mem USING memories(dim=4, auto_embed=off, dedup=skip)",
    );
    let insert = |t: &str, v: [f32; 4]| {
        c.execute(
            &format!(
                "INSERT INTO {t}(content, embedding) VALUES ('Bob is allergic to peanuts', ?1)"
            ),
            [blob(&v)],
        )
        .unwrap_or_else(|e| panic!("{t}: {e}"));
    };
    insert("mem", [1.0, 0.0, 0.0, 0.0]);
    run(&c, "SELECT subcog_branch('mem', 'trial')");
    insert("trial", [0.0, 1.0, 0.0, 0.0]);
    let last: Option<String> = c
        .query_row("SELECT subcog_last_insert('trial')", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    let last: serde_json::Value = serde_json::from_str(&last.unwrap_or_default())
        .unwrap_or_else(|e| panic!("subcog_last_insert('trial'): {e}"));
    assert_eq!(last["id"], 1, "{last}");
    assert_eq!(last["outcome"], "duplicate", "{last}");
    assert_eq!(last["action"], "skip", "{last}");
    assert_eq!(int(&c, "SELECT count(*) FROM trial"), 1);
}

/// A branch that rewrites a memory keeps the base's `supersedes` links of it when its
/// working copy is built again (another connection, a reopen): found by the differential
/// test (the copy deleted and re-inserted the memory, which dropped its links).
#[test]
fn a_rewritten_memory_keeps_its_base_links_on_another_connection_dim4() {
    let dir = temp_dir("branch-links");
    let path = dir.join("b.db").to_string_lossy().to_string();
    let c = open(&path);
    run(
        &c,
        "CREATE VIRTUAL TABLE mem USING memories(dim=4, auto_embed=off)",
    );
    for (text, v) in [
        ("the deploy runs nightly", [1.0, 0.0, 0.0, 0.0]),
        ("deploys run every night", [1.0, 0.01, 0.0, 0.0]),
    ] {
        c.execute(
            "INSERT INTO mem(content, embedding) VALUES (?1, ?2)",
            params![text, blob(&v)],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let sup = |c: &Connection, t: &str| -> Option<i64> {
        c.query_row(
            &format!("SELECT superseded_by FROM {t} WHERE id = 1"),
            [],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("{t}: {e}"))
    };
    assert_eq!(sup(&c, "mem"), Some(2));
    run(&c, "SELECT subcog_branch('mem', 'trial')");
    run(&c, "UPDATE trial SET tags = '[\"ops\"]' WHERE id = 2");
    run(&c, "UPDATE trial SET tags = '[\"old\"]' WHERE id = 1");
    assert_eq!(sup(&c, "trial"), Some(2));
    let other = open(&path);
    assert_eq!(sup(&other, "trial"), Some(2), "on another connection");
    assert_integrity(&other, "trial", "links");
    drop(other);
    let _ = std::fs::remove_dir_all(&dir);
}
