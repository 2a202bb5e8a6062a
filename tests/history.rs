//! Memory history (issue 11): recording in the shadow table `<table>_history`, versions
//! and snapshots, `subcog_history`, `subcog_diff`, `subcog_restore`, `AND as_of = ?` on
//! scans and every search kind, retention, the format 3 -> 4 upgrade, RENAME/DROP and bad
//! input. Searches as of a version are compared with the same searches run at that
//! version (ids, order, distances and scores), before the table changed.

mod common;

use common::{assert_integrity, blob, err_of, int, mem, ok_ids};
use rusqlite::{Connection, params};

/// `(id, distance, score)` rows of a search.
type Hits = Vec<(i64, Option<f64>, Option<f64>)>;

fn hits(c: &Connection, sql: &str, p: impl rusqlite::Params) -> Hits {
    let mut st = c.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    st.query_map(p, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .and_then(|rows| rows.collect())
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Every column of every row of `sql` as text (the embedding as hex), for exact
/// comparisons of whole tables.
fn dump(c: &Connection, sql: &str, p: impl rusqlite::Params) -> Vec<String> {
    let mut st = c.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let n = st.column_count();
    st.query_map(p, |r| {
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

const ALL: &str = "SELECT id, content, namespace, tags, metadata, source, importance, \
                   created_at, updated_at, embedding, expires_at, superseded_by FROM mem";

fn table(c: &Connection, extra: &str) {
    c.execute_batch(&format!(
        "CREATE VIRTUAL TABLE mem USING memories(dim=4, auto_embed=off{extra})"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
}

fn put(c: &Connection, content: &str, v: [f32; 4]) -> i64 {
    c.execute(
        "INSERT INTO mem(content, embedding) VALUES (?1, ?2)",
        params![content, blob(&v)],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    c.last_insert_rowid()
}

fn version(c: &Connection) -> i64 {
    int(c, "SELECT subcog_version('mem')")
}

#[test]
fn every_change_is_recorded_in_its_transaction() {
    let c = mem();
    table(&c, ", dedup=off");
    assert_eq!(version(&c), 0);
    let a = put(&c, "alpha fact", [1.0, 0.0, 0.0, 0.0]);
    let b = put(&c, "beta fact", [0.0, 1.0, 0.0, 0.0]);
    assert_eq!(version(&c), 2);
    c.execute("UPDATE mem SET content = 'alpha fixed' WHERE id = ?1", [a])
        .unwrap_or_else(|e| panic!("{e}"));
    c.execute("DELETE FROM mem WHERE id = ?1", [b])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(version(&c), 4);
    // A rolled back change leaves no history, and versions keep growing afterwards.
    c.execute_batch("BEGIN; INSERT INTO mem(content, embedding) VALUES ('gone', X'0000803F000000000000000000000000'); ROLLBACK;")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(version(&c), 4);
    let h: Vec<(i64, String, Option<String>, Option<String>)> = {
        let mut st = c
            .prepare("SELECT version, change, before, after FROM subcog_history('mem', ?1)")
            .unwrap_or_else(|e| panic!("{e}"));
        st.query_map([a], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .and_then(|r| r.collect())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(
        (h[0].0, h[0].1.as_str(), h[0].2.is_none()),
        (1, "insert", true)
    );
    assert_eq!((h[1].0, h[1].1.as_str()), (3, "update"));
    let after: serde_json::Value =
        serde_json::from_str(h[1].3.as_deref().unwrap_or("null")).unwrap_or_default();
    assert_eq!(after["content"], "alpha fixed");
    assert_eq!(
        h[1].2, h[0].3,
        "a change's before is the previous change's after"
    );
    let del: Vec<String> = dump(
        &c,
        "SELECT change, after FROM subcog_history('mem', ?1)",
        [b],
    );
    assert_eq!(del.len(), 2);
    assert!(del[1].starts_with("Text(\"delete\")|Null|"), "{del:?}");
    // The time is ms since the Unix epoch.
    let t = int(&c, "SELECT max(time) FROM subcog_history('mem', 1)");
    assert!(t > 1_700_000_000_000, "{t}");
    assert_integrity(&c, "mem", "after recording");
}

/// The `after` of an insert or update is not stored (it is the next change's `before`,
/// or the current row), yet `subcog_history` shows it; rows written with their `after`
/// (earlier builds) read as stored; the integrity check still finds a history that does
/// not lead to the table.
#[test]
fn insert_and_update_after_images_are_derived_not_stored() {
    let c = mem();
    table(&c, "");
    let a = put(&c, "alpha fact", [1.0, 0.0, 0.0, 0.0]);
    c.execute("UPDATE mem SET content = 'alpha fixed' WHERE id = ?1", [a])
        .unwrap_or_else(|e| panic!("{e}"));
    c.execute("UPDATE mem SET tags = '[\"x\"]' WHERE id = ?1", [a])
        .unwrap_or_else(|e| panic!("{e}"));
    let b = put(&c, "beta fact", [0.0, 1.0, 0.0, 0.0]);
    c.execute("DELETE FROM mem WHERE id = ?1", [b])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        int(
            &c,
            "SELECT count(*) FROM mem_history WHERE op IN ('insert', 'update') AND after IS NULL"
        ),
        4,
        "no insert or update stores its after-image"
    );
    let history = |id: i64| -> Vec<(String, Option<String>, Option<String>)> {
        let mut st = c
            .prepare("SELECT change, before, after FROM subcog_history('mem', ?1)")
            .unwrap_or_else(|e| panic!("{e}"));
        st.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|r| r.collect())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let h = history(a);
    assert_eq!(h.len(), 3, "{h:?}");
    assert_eq!(h[0].2, h[1].1, "insert's after = the first update's before");
    assert_eq!(h[1].2, h[2].1, "update's after = the next update's before");
    let now: String = c
        .query_row(
            "SELECT json_object('content', content, 'tags', tags) FROM mem WHERE id = ?1",
            [a],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let last: serde_json::Value =
        serde_json::from_str(h[2].2.as_deref().unwrap_or("null")).unwrap_or_default();
    let now: serde_json::Value = serde_json::from_str(&now).unwrap_or_default();
    assert_eq!(
        (&last["content"], &last["tags"]),
        (&now["content"], &now["tags"]),
        "the last change's after is the current row"
    );
    let first: serde_json::Value =
        serde_json::from_str(h[0].2.as_deref().unwrap_or("null")).unwrap_or_default();
    assert_eq!(first["content"], "alpha fact");
    let hb = history(b);
    assert_eq!(hb.len(), 2);
    assert_eq!(hb[0].2, hb[1].1, "insert's after = the delete's before");
    assert_eq!(hb[1].2, None, "a delete leaves nothing");
    assert_integrity(&c, "mem", "with derived after-images");
    // A row with its after-image stored (as earlier builds wrote them) reads as stored.
    let stored = h[0].2.clone().unwrap_or_default();
    c.execute(
        "UPDATE mem_history SET after = ?1 WHERE id = ?2 AND op = 'insert'",
        params![stored, a],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(history(a), h);
    assert_integrity(&c, "mem", "with a stored after-image");
    // A history that does not lead to the table is still found: the current row removed
    // behind the table's back (the last change is an update, its after not stored).
    c.execute("DELETE FROM mem_content WHERE id = ?1", [a])
        .unwrap_or_else(|e| panic!("{e}"));
    let report = common::report(&c, "mem");
    assert_eq!(report["counts"]["history_mismatches"], 1, "{report}");
}

#[test]
fn history_off_records_nothing_and_says_so() {
    let c = mem();
    table(&c, ", history=off");
    put(&c, "x", [1.0, 0.0, 0.0, 0.0]);
    assert_eq!(int(&c, "SELECT count(*) FROM mem_history"), 0);
    let e = err_of(c.query_row("SELECT subcog_version('mem')", [], |r| r.get::<_, i64>(0)));
    assert!(e.contains("history=off"), "{e}");
    let e = err_of(ids(&c, "SELECT id FROM mem WHERE as_of = 0"));
    assert!(e.contains("as_of") && e.contains("history=off"), "{e}");
}

fn ids(c: &Connection, sql: &str) -> rusqlite::Result<Vec<i64>> {
    common::ids(c, sql, [])
}

#[test]
fn as_of_returns_what_the_table_returned_then() {
    let c = mem();
    table(&c, ", dedup=off");
    let mut rng = common::rng::Rng(7);
    let words = ["apple", "river", "stone", "cloud", "ember", "frost"];
    for i in 0..60 {
        let v: [f32; 4] = std::array::from_fn(|_| rng.unit() as f32 - 0.5);
        let text = format!("{} {} note {i}", words[i % 6], words[(i * 7 + 1) % 6]);
        put(&c, &text, v);
    }
    c.execute_batch("UPDATE mem SET namespace = 'other' WHERE id % 5 = 0")
        .unwrap_or_else(|e| panic!("{e}"));
    let q = blob(&[0.3, -0.2, 0.1, 0.4]);
    let knn = "SELECT id, distance, score FROM mem WHERE embedding MATCH ?1 AND k = 7";
    let knn_ns = "SELECT id, distance, score FROM mem WHERE embedding MATCH ?1 AND k = 5 AND namespace = 'other'";
    let kw = "SELECT id, distance, score FROM mem WHERE content MATCH 'apple OR river' AND k = 9";
    let scan = "SELECT id, NULL, NULL FROM mem";
    let ns_scan = "SELECT id, NULL, NULL FROM mem WHERE namespace = 'other'";
    let then = (
        hits(&c, knn, [&q]),
        hits(&c, knn_ns, [&q]),
        hits(&c, kw, []),
        hits(&c, scan, []),
        dump(&c, ALL, []),
        hits(&c, ns_scan, []),
    );
    assert_eq!(then.0.len(), 7);
    let v = int(&c, "SELECT subcog_snapshot('mem', 'before')");
    assert_eq!(v, version(&c));
    // Change a lot: new rows, edits, deletes, vector changes.
    for i in 0..25 {
        let v: [f32; 4] = std::array::from_fn(|_| rng.unit() as f32 - 0.5);
        put(&c, &format!("apple river later {i}"), v);
    }
    c.execute_batch(
        "UPDATE mem SET content = content || ' stone apple' WHERE id % 3 = 0;
         DELETE FROM mem WHERE id % 4 = 1;
         UPDATE mem SET embedding = X'0000803F000000000000000000000000' WHERE id % 7 = 2;",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(hits(&c, knn, [&q]), then.0, "the table must have changed");
    for target in [
        rusqlite::types::Value::Text("before".into()),
        rusqlite::types::Value::Integer(v),
    ] {
        let knn_a = "SELECT id, distance, score FROM mem WHERE embedding MATCH ?1 AND k = 7 \
                     AND as_of = ?2";
        assert_eq!(hits(&c, knn_a, params![&q, &target]), then.0);
        let knn_ns_a = "SELECT id, distance, score FROM mem WHERE embedding MATCH ?1 AND k = 5 \
                        AND namespace = 'other' AND as_of = ?2";
        assert_eq!(hits(&c, knn_ns_a, params![&q, &target]), then.1);
        let kw_a = "SELECT id, distance, score FROM mem WHERE content MATCH 'apple OR river' \
                    AND k = 9 AND as_of = ?1";
        assert_eq!(hits(&c, kw_a, [&target]), then.2);
        let scan_a = "SELECT id, NULL, NULL FROM mem WHERE as_of = ?1";
        assert_eq!(hits(&c, scan_a, [&target]), then.3);
        let ns_scan_a = format!("{ns_scan} AND as_of = ?1");
        assert_eq!(hits(&c, &ns_scan_a, [&target]), then.5);
        assert_eq!(
            dump(&c, &format!("{ALL} WHERE as_of = ?1"), [&target]),
            then.4
        );
        // A point lookup as of then: a deleted memory is there, a later one is not.
        assert_eq!(
            ok_ids(
                &c,
                "SELECT id FROM mem WHERE id = 1 AND as_of = ?1",
                [&target]
            ),
            vec![1]
        );
        assert!(
            ok_ids(
                &c,
                "SELECT id FROM mem WHERE id = 70 AND as_of = ?1",
                [&target]
            )
            .is_empty()
        );
        // The hidden column shows the version.
        assert_eq!(
            int(&c, &format!("SELECT max(as_of) FROM mem WHERE as_of = {v}")),
            v
        );
    }
    // A time: now is the current table.
    let now: i64 = int(&c, "SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER)");
    assert_eq!(
        dump(&c, &format!("{ALL} WHERE as_of = ?1"), [now]),
        dump(&c, ALL, [])
    );
    // Version 0: the empty table.
    assert!(ok_ids(&c, "SELECT id FROM mem WHERE as_of = 0", []).is_empty());
    // as_of in a join, from another table's column.
    c.execute_batch("CREATE TABLE pick(v INTEGER); INSERT INTO pick VALUES (0);")
        .unwrap_or_else(|e| panic!("{e}"));
    let n = int(
        &c,
        &format!("SELECT count(*) FROM pick JOIN mem ON mem.as_of = pick.v + {v}"),
    );
    assert_eq!(n as usize, then.3.len());
    assert_integrity(&c, "mem", "after as-of queries");
}

#[test]
fn diff_lists_added_removed_and_changed() {
    let c = mem();
    table(&c, ", dedup=off");
    let a = put(&c, "one", [1.0, 0.0, 0.0, 0.0]);
    let b = put(&c, "two", [0.0, 1.0, 0.0, 0.0]);
    let d = put(&c, "three", [0.0, 0.0, 1.0, 0.0]);
    c.query_row("SELECT subcog_snapshot('mem', 's1')", [], |_| Ok(()))
        .unwrap_or_else(|e| panic!("{e}"));
    c.execute("UPDATE mem SET content = 'one!' WHERE id = ?1", [a])
        .unwrap_or_else(|e| panic!("{e}"));
    c.execute("DELETE FROM mem WHERE id = ?1", [b])
        .unwrap_or_else(|e| panic!("{e}"));
    let e = put(&c, "four", [0.0, 0.0, 0.0, 1.0]);
    // Changed and changed back: no difference.
    c.execute("UPDATE mem SET importance = 0.9 WHERE id = ?1", [d])
        .unwrap_or_else(|e| panic!("{e}"));
    let rows = dump(&c, "SELECT id, change FROM subcog_diff('mem', 's1')", []);
    assert_eq!(
        rows,
        vec![
            format!("Integer({a})|Text(\"changed\")|"),
            format!("Integer({b})|Text(\"removed\")|"),
            format!("Integer({d})|Text(\"changed\")|"),
            format!("Integer({e})|Text(\"added\")|"),
        ]
    );
    let before: String = c
        .query_row(
            "SELECT before FROM subcog_diff('mem', 's1') WHERE id = ?1",
            [a],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(before.contains("\"content\":\"one\""), "{before}");
    // Reversed: added and removed swap; to given explicitly.
    let now = version(&c);
    let rev = dump(
        &c,
        "SELECT id, change FROM subcog_diff('mem', ?1, 's1')",
        [now],
    );
    assert_eq!(rev[1], format!("Integer({b})|Text(\"added\")|"));
    assert_eq!(rev[3], format!("Integer({e})|Text(\"removed\")|"));
    // from = to: nothing.
    assert!(dump(&c, "SELECT * FROM subcog_diff('mem', 's1', 's1')", []).is_empty());
}

#[test]
fn restore_brings_a_snapshot_back_and_can_be_undone() {
    let c = mem();
    table(&c, ", dedup=merge");
    let mut rng = common::rng::Rng(11);
    for i in 0..40 {
        let v: [f32; 4] = std::array::from_fn(|_| rng.unit() as f32 - 0.5);
        put(&c, &format!("memory number {i}"), v);
    }
    c.execute_batch("UPDATE mem SET tags = '[\"x\"]' WHERE id < 5")
        .unwrap_or_else(|e| panic!("{e}"));
    let links = "SELECT src, dst, kind, weight, created_at FROM mem_links ORDER BY 1, 2, 3";
    let snap = dump(&c, ALL, []);
    let snap_links = dump(&c, links, []);
    int(&c, "SELECT subcog_snapshot('mem', 'good')");
    let before_restore_version;
    {
        // A bad session: edits, deletes, inserts, vector changes, an id change, links.
        c.execute_batch(
            "UPDATE mem SET content = 'polluted ' || id WHERE id % 2 = 0;
             DELETE FROM mem WHERE id % 5 = 1;
             UPDATE mem SET embedding = X'0000803F000000000000000000000000' WHERE id % 3 = 0;
             UPDATE mem SET id = 1000 WHERE id = 4;
             SELECT subcog_link('mem', 1000, 3, 'relates');",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        for i in 0..10 {
            put(&c, &format!("junk {i}"), [0.1, 0.2, 0.3, i as f32]);
        }
        before_restore_version = version(&c);
    }
    let polluted = dump(&c, ALL, []);
    let polluted_links = dump(&c, links, []);
    assert_ne!(polluted, snap);
    assert_ne!(polluted_links, snap_links);
    let changed = int(&c, "SELECT subcog_restore('mem', 'good')");
    assert!(changed > 20, "{changed}");
    assert_eq!(dump(&c, ALL, []), snap);
    assert_eq!(dump(&c, links, []), snap_links);
    assert_integrity(&c, "mem", "after restore");
    // Searches see the restored rows (FTS5 and HNSW follow).
    assert_eq!(
        ok_ids(&c, "SELECT id FROM mem WHERE content MATCH 'polluted'", []),
        Vec::<i64>::new()
    );
    let v: Vec<u8> = c
        .query_row("SELECT embedding FROM mem WHERE id = 9", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ok_ids(
            &c,
            "SELECT id FROM mem WHERE embedding MATCH ?1 AND k = 1",
            [&v]
        ),
        vec![9]
    );
    // The restore is recorded: restoring the version before it undoes it.
    assert!(version(&c) > before_restore_version);
    let rows = dump(
        &c,
        "SELECT DISTINCT change FROM subcog_history('mem', 2) WHERE version > ?1",
        [before_restore_version],
    );
    assert_eq!(rows, vec!["Text(\"restore\")|".to_string()]);
    int(
        &c,
        &format!("SELECT subcog_restore('mem', {before_restore_version})"),
    );
    assert_eq!(dump(&c, ALL, []), polluted);
    assert_eq!(dump(&c, links, []), polluted_links);
    assert_integrity(&c, "mem", "after undoing the restore");
    // Restoring inside a transaction that rolls back changes nothing.
    c.execute_batch("BEGIN; SELECT subcog_restore('mem', 'good'); ROLLBACK;")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dump(&c, ALL, []), polluted);
    assert_integrity(&c, "mem", "after a rolled back restore");
}

#[test]
fn supersession_is_recorded_and_seen_as_of() {
    let c = mem();
    table(&c, ", dedup=merge");
    let a = put(&c, "The API limit is 100 per minute", [1.0, 0.0, 0.0, 0.0]);
    let v = version(&c);
    let b = put(&c, "The API limit is 500 per minute", [0.99, 0.1, 0.0, 0.0]);
    let q = blob(&[1.0, 0.0, 0.0, 0.0]);
    let knn = "SELECT id FROM mem WHERE embedding MATCH ?1 AND k = 1";
    assert_eq!(ok_ids(&c, knn, [&q]), vec![b]);
    let link: String = c
        .query_row("SELECT after FROM mem_history WHERE op = 'link'", [], |r| {
            r.get(0)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        link.contains("supersedes") && link.contains(&format!("\"dst\":{a}")),
        "{link}"
    );
    assert_eq!(ok_ids(&c, &format!("{knn} AND as_of = {v}"), [&q]), vec![a]);
    // An exact duplicate merges: recorded as a merge.
    c.execute(
        "INSERT INTO mem(content, tags, embedding) VALUES ('the api limit is 500 per minute', '[\"t\"]', ?1)",
        [blob(&[0.0, 0.0, 1.0, 0.0])],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let last = dump(&c, "SELECT change FROM subcog_history('mem', ?1)", [b]);
    assert_eq!(last.last().map(String::as_str), Some("Text(\"merge\")|"));
    // Restoring before the near duplicate removes it and its link.
    int(&c, &format!("SELECT subcog_restore('mem', {v})"));
    assert_eq!(ok_ids(&c, knn, [&q]), vec![a]);
    assert_eq!(int(&c, "SELECT count(*) FROM mem_links"), 0);
    assert_integrity(&c, "mem", "after restore");
}

#[test]
fn snapshots_are_listed_and_dropped() {
    let c = mem();
    table(&c, "");
    put(&c, "a", [1.0, 0.0, 0.0, 0.0]);
    assert_eq!(int(&c, "SELECT subcog_snapshot('mem', 'one')"), 1);
    put(&c, "b", [0.0, 1.0, 0.0, 0.0]);
    assert_eq!(int(&c, "SELECT subcog_snapshot('mem', 'two')"), 2);
    assert_eq!(
        dump(&c, "SELECT name, version FROM subcog_snapshots('mem')", []),
        vec!["Text(\"one\")|Integer(1)|", "Text(\"two\")|Integer(2)|"]
    );
    assert_eq!(int(&c, "SELECT subcog_snapshot_drop('mem', 'one')"), 1);
    assert_eq!(int(&c, "SELECT count(*) FROM subcog_snapshots('mem')"), 1);
    let e = err_of(
        c.query_row("SELECT subcog_snapshot_drop('mem', 'one')", [], |r| {
            r.get::<_, i64>(0)
        }),
    );
    assert!(e.contains("no snapshot named 'one'"), "{e}");
}

#[test]
fn bad_input_is_a_clear_error_that_changes_nothing() {
    let dir = common::temp_dir("history-bad");
    let path = dir.join("h.db");
    let path = path.to_string_lossy().to_string();
    let c = common::open(&path);
    table(&c, "");
    put(&c, "a", [1.0, 0.0, 0.0, 0.0]);
    int(&c, "SELECT subcog_snapshot('mem', 's')");
    put(&c, "b", [0.0, 1.0, 0.0, 0.0]);
    c.execute_batch("CREATE TABLE plain(x)")
        .unwrap_or_else(|e| panic!("{e}"));
    let before = (dump(&c, ALL, []), version(&c));
    let cases: &[(&str, &str)] = &[
        (
            "SELECT subcog_restore('mem', 'nope')",
            "no snapshot named 'nope'",
        ),
        (
            "SELECT subcog_restore('mem', 99)",
            "version 99 is in the future",
        ),
        ("SELECT subcog_restore('mem', -1)", "older than the history"),
        (
            "SELECT subcog_restore('mem', 99999999999999)",
            "in the future",
        ),
        (
            "SELECT subcog_restore('mem', NULL)",
            "expected a snapshot name",
        ),
        ("SELECT subcog_restore('mem', X'00')", "got BLOB"),
        (
            "SELECT subcog_restore('plain', 's')",
            "not a memories table",
        ),
        ("SELECT subcog_snapshot('mem', 's')", "already"),
        ("SELECT subcog_snapshot('mem', '42')", "not a number"),
        (
            "SELECT subcog_snapshot('mem', '')",
            "expected a non-empty name",
        ),
        ("SELECT subcog_snapshot('mem', 3)", "expected TEXT"),
        ("SELECT subcog_version('plain')", "not a memories table"),
        (
            "SELECT * FROM subcog_diff('mem', 'nope')",
            "no snapshot named 'nope'",
        ),
        (
            "SELECT * FROM subcog_diff('mem', 0, 77)",
            "version 77 is in the future",
        ),
        (
            "SELECT * FROM subcog_history('mem', 'x')",
            "expected an INTEGER",
        ),
        ("SELECT * FROM subcog_history('mem')", "required"),
        (
            "SELECT id FROM mem WHERE as_of = 'nope'",
            "no snapshot named 'nope'",
        ),
        (
            "SELECT id FROM mem WHERE as_of = 50",
            "version 50 is in the future",
        ),
        ("SELECT id FROM mem WHERE as_of = NULL", "got NULL"),
        ("SELECT id FROM mem WHERE as_of = 1.5", "got REAL 1.5"),
        (
            "INSERT INTO mem(mem) VALUES ('restore:nope')",
            "no snapshot named 'nope'",
        ),
    ];
    for (sql, want) in cases {
        let e = err_of(c.prepare(sql).and_then(|mut st| {
            let mut rows = st.query([])?;
            while rows.next()?.is_some() {}
            Ok(())
        }));
        assert!(e.contains(want), "{sql}: {e}");
    }
    assert_eq!((dump(&c, ALL, []), version(&c)), before);
    drop(c);
    // A read-only connection: restore refuses, nothing changes.
    let ro = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|e| panic!("{e}"));
    subcog::register(&ro).unwrap_or_else(|e| panic!("{e}"));
    let e = err_of(ro.query_row("SELECT subcog_restore('mem', 's')", [], |r| {
        r.get::<_, i64>(0)
    }));
    assert!(e.contains("read-only"), "{e}");
    // Reads work read-only, as-of included.
    assert_eq!(
        ok_ids(&ro, "SELECT id FROM mem WHERE as_of = 's'", []),
        vec![1]
    );
    assert_eq!((dump(&ro, ALL, []), version(&ro)), before);
}

#[test]
fn purge_applies_history_keep_and_snapshots_pin() {
    let c = mem();
    table(&c, ", history_keep=3, dedup=off");
    for i in 0..6 {
        put(&c, &format!("m{i}"), [1.0, i as f32, 0.0, 0.0]);
    }
    int(&c, "SELECT subcog_snapshot('mem', 'pin')");
    for i in 0..4 {
        c.execute(
            "UPDATE mem SET content = ?1 WHERE id = 1",
            [format!("edit {i}")],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(version(&c), 10);
    c.execute_batch("INSERT INTO mem(mem) VALUES ('purge')")
        .unwrap_or_else(|e| panic!("{e}"));
    // Keeps the newest 3 versions, but not before the snapshot (version 6).
    assert_eq!(int(&c, "SELECT min(version) FROM mem_history"), 7);
    assert_eq!(
        ok_ids(&c, "SELECT id FROM mem WHERE as_of = 'pin'", []).len(),
        6
    );
    let e = err_of(ids(&c, "SELECT id FROM mem WHERE as_of = 5"));
    assert!(e.contains("older than the history"), "{e}");
    int(&c, "SELECT subcog_snapshot_drop('mem', 'pin')");
    c.execute_batch("INSERT INTO mem(mem) VALUES ('purge')")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(int(&c, "SELECT min(version) FROM mem_history"), 8);
    assert_eq!(version(&c), 10);
    put(&c, "after purge", [0.0, 0.0, 1.0, 0.0]);
    assert_eq!(version(&c), 11);
    assert_integrity(&c, "mem", "after purge");
}

#[test]
fn format_3_is_upgraded_in_place_and_newer_formats_refused() {
    let dir = common::temp_dir("history-upgrade");
    let path = dir.join("u.db").to_string_lossy().to_string();
    {
        let c = common::open(&path);
        table(&c, "");
        put(&c, "old one", [1.0, 0.0, 0.0, 0.0]);
        put(&c, "old two", [0.0, 1.0, 0.0, 0.0]);
        // Make it a format 3 table, as the previous build wrote it.
        c.execute_batch(
            "DROP TABLE mem_history; DROP TABLE mem_snapshots;
             DELETE FROM mem_config WHERE key IN ('history', 'history_keep', 'history_since',
                'history_floor');
             UPDATE mem_config SET value = '3' WHERE key = 'format';",
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let c = common::open(&path);
    assert_eq!(version(&c), 0);
    assert_eq!(
        int(
            &c,
            "SELECT CAST(value AS INTEGER) FROM mem_config WHERE key = 'format'"
        ),
        4
    );
    let at_upgrade = dump(&c, ALL, []);
    c.execute("UPDATE mem SET content = 'new one' WHERE id = 1", [])
        .unwrap_or_else(|e| panic!("{e}"));
    put(&c, "three", [0.0, 0.0, 1.0, 0.0]);
    assert_eq!(dump(&c, &format!("{ALL} WHERE as_of = 0"), []), at_upgrade);
    int(&c, "SELECT subcog_restore('mem', 0)");
    assert_eq!(dump(&c, ALL, []), at_upgrade);
    assert_integrity(&c, "mem", "after upgrade and restore");
    // A format this build does not know is refused with the existing message.
    c.execute_batch("UPDATE mem_config SET value = '5' WHERE key = 'format'")
        .unwrap_or_else(|e| panic!("{e}"));
    drop(c);
    let c = common::open(&path);
    let e = err_of(c.query_row("SELECT count(*) FROM mem", [], |r| r.get::<_, i64>(0)));
    assert!(
        e.contains("on-disk format 5, this build of subcog reads format 4"),
        "{e}"
    );
}

#[test]
fn rename_drop_and_defensive_mode_cover_the_history_tables() {
    let c = mem();
    table(&c, "");
    put(&c, "a", [1.0, 0.0, 0.0, 0.0]);
    int(&c, "SELECT subcog_snapshot('mem', 's')");
    c.execute_batch("ALTER TABLE mem RENAME TO mem2")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(int(&c, "SELECT count(*) FROM mem2_history"), 1);
    assert_eq!(int(&c, "SELECT count(*) FROM mem2_snapshots"), 1);
    assert_eq!(int(&c, "SELECT subcog_version('mem2')"), 1);
    assert_eq!(
        ok_ids(&c, "SELECT id FROM mem2 WHERE as_of = 's'", []),
        vec![1]
    );
    c.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
        .unwrap_or_else(|e| panic!("{e}"));
    for sql in [
        "DELETE FROM mem2_history",
        "INSERT INTO mem2_snapshots VALUES ('x', 0, 0)",
    ] {
        let e = err_of(c.execute(sql, []));
        assert!(e.contains("may not be modified"), "{sql}: {e}");
    }
    put_into(&c, "mem2", "b");
    assert_eq!(int(&c, "SELECT subcog_version('mem2')"), 2);
    c.execute_batch("DROP TABLE mem2")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        int(
            &c,
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'mem2%'"
        ),
        0
    );
}

fn put_into(c: &Connection, t: &str, content: &str) {
    c.execute(
        &format!("INSERT INTO {t}(content, embedding) VALUES (?1, ?2)"),
        params![content, blob(&[0.0, 0.0, 1.0, 0.0])],
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn hybrid_and_ranked_searches_as_of_match_the_searches_then() {
    let c = mem();
    c.execute_batch("CREATE VIRTUAL TABLE mem USING memories(dedup=off)")
        .unwrap_or_else(|e| panic!("{e}"));
    let facts = [
        "Deploy the shop with make deploy-prod after CI is green",
        "The staging database is reset every Monday",
        "Alice owns the payment service and its deploys",
        "Black Friday freeze: no shop deploys in late November",
        "The user prefers tabs, width 4, in Go projects",
        "Rollbacks use the previous container image tag",
        "CI runs the integration tests on every pull request",
        "The shop's CDN cache is purged after each deploy",
    ];
    c.execute_batch("BEGIN").unwrap_or_else(|e| panic!("{e}"));
    for (i, f) in facts.iter().enumerate() {
        c.execute(
            "INSERT INTO mem(content, namespace, importance) VALUES (?1, ?2, ?3)",
            params![
                f,
                if i % 3 == 0 { "ops" } else { "default" },
                0.1 * i as f64
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    c.execute_batch("COMMIT").unwrap_or_else(|e| panic!("{e}"));
    let queries = [
        "SELECT id, distance, score FROM mem WHERE mem MATCH 'how do I deploy the shop?' AND k = 5",
        "SELECT id, distance, score FROM mem WHERE mem MATCH 'deploy' AND k = 3 AND namespace = 'ops'",
        "SELECT id, distance, score FROM mem WHERE mem MATCH 'tests and CI' AND k = 4 \
         AND ranking = '{\"importance_weight\":0.5}'",
        "SELECT id, distance, score FROM mem WHERE embedding MATCH embed('database reset') AND k = 3",
    ];
    let then: Vec<Hits> = queries.iter().map(|q| hits(&c, q, [])).collect();
    assert!(then.iter().all(|h| !h.is_empty()));
    let v = int(&c, "SELECT subcog_snapshot('mem', 'then')");
    c.execute_batch(
        "UPDATE mem SET content = 'Deploy the shop only on Tuesdays' WHERE id = 1;
         DELETE FROM mem WHERE id = 3;
         INSERT INTO mem(content) VALUES ('Deploys of the shop need two approvals');
         INSERT INTO mem(content, namespace) VALUES ('Ops deploy runbook lives in the wiki', 'ops');",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(
        hits(&c, queries[0], []),
        then[0],
        "the table must have changed"
    );
    for (q, want) in queries.iter().zip(&then) {
        assert_eq!(
            &hits(&c, &format!("{q} AND as_of = 'then'"), []),
            want,
            "{q}"
        );
        assert_eq!(&hits(&c, &format!("{q} AND as_of = {v}"), []), want, "{q}");
    }
}

#[test]
fn as_of_knn_above_exact_max_uses_a_graph_with_exact_distances() {
    // Without an HNSW snapshot in the table (the copy builds its graph), and with one
    // (the copy shares it, every id changed since pending).
    for optimize in [false, true] {
        as_of_knn_above_exact_max(optimize);
    }
}

fn as_of_knn_above_exact_max(optimize: bool) {
    let c = mem();
    table(&c, ", dedup=off, exact_max=8, scan_max=0");
    let mut rng = common::rng::Rng(5);
    let mut then: Vec<(i64, Vec<f32>)> = Vec::new();
    for i in 0..300 {
        let v = rng.vector(4);
        let a: [f32; 4] = [v[0], v[1], v[2], v[3]];
        then.push((put(&c, &format!("row {i}"), a), v));
    }
    int(&c, "SELECT subcog_snapshot('mem', 's')");
    c.execute_batch("DELETE FROM mem WHERE id % 2 = 0; UPDATE mem SET embedding = X'0000803F000000000000000000000000' WHERE id % 3 = 0;")
        .unwrap_or_else(|e| panic!("{e}"));
    // New rows near every query's neighbours: absent then, so never returned as of then.
    for i in 0..100 {
        let v = rng.vector(4);
        put(&c, &format!("later {i}"), [v[0], v[1], v[2], v[3]]);
    }
    if optimize {
        c.execute_batch("INSERT INTO mem(mem) VALUES ('optimize')")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            int(
                &c,
                "SELECT CAST(value AS INTEGER) FROM mem_config WHERE key = 'generation'"
            ) != 0
        );
    }
    let mut recall = 0;
    for _ in 0..20 {
        let q = rng.vector(4);
        let got = hits(
            &c,
            "SELECT id, distance, score FROM mem WHERE embedding MATCH ?1 AND k = 5 AND as_of = 's'",
            [blob(&q)],
        );
        let dist = |v: &[f32]| 1.0 - common::oracle::similarity(&q, v);
        let mut exact: Vec<(f64, i64)> = then.iter().map(|(id, v)| (dist(v), *id)).collect();
        exact.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let top: Vec<i64> = exact.iter().take(5).map(|e| e.1).collect();
        assert_eq!(got.len(), 5);
        for (id, d, _) in &got {
            let v = &then
                .iter()
                .find(|t| t.0 == *id)
                .unwrap_or_else(|| panic!("{id}"))
                .1;
            let want = dist(v);
            assert!(
                (d.unwrap_or(-1.0) - want).abs() < 1e-5,
                "{id}: {d:?} vs {want}"
            );
            recall += usize::from(top.contains(id));
        }
    }
    assert!(recall >= 95, "recall {recall}/100");
}

/// The views of `t` compared by [`as_of_now_and_a_branch_at_now_equal_the_table`]: every
/// column of every row, KNN (ids and distances), keyword (ids and BM25 scores).
fn whole_views(c: &Connection, t: &str, suffix: &str, queries: &[Vec<f32>]) -> Vec<Vec<String>> {
    let mut out = vec![dump(
        c,
        &format!(
            "SELECT id, content, namespace, tags, metadata, source, importance, created_at, \
             updated_at, embedding, expires_at, superseded_by FROM {t} WHERE 1 {suffix} \
             ORDER BY id"
        ),
        [],
    )];
    for q in queries {
        out.push(dump(
            c,
            &format!("SELECT id, distance FROM {t} WHERE embedding MATCH ?1 AND k = 7 {suffix}"),
            [blob(q)],
        ));
    }
    for words in [
        "apple",
        "river OR stone",
        "apple river",
        "word3 OR word7 OR word11",
    ] {
        out.push(dump(
            c,
            &format!("SELECT id, score FROM {t} WHERE content MATCH ?1 AND k = 25 {suffix}"),
            [words],
        ));
    }
    out
}

#[test]
fn as_of_now_and_a_branch_at_now_equal_the_table() {
    // The default dedup (near duplicates supersede: links to copy) first, then dedup=off.
    for options in [", exact_max=8", ", dedup=off, exact_max=8"] {
        as_of_now_and_a_branch_at_now_equal_the_table_with(options);
    }
}

fn as_of_now_and_a_branch_at_now_equal_the_table_with(options: &str) {
    // The as-of copy and a branch's working copy are built in bulk; at the table's own
    // version they must show exactly the table: rows (and their superseded_by links),
    // vectors, KNN answers through the shared HNSW snapshot, BM25 scores. Also inside a
    // transaction (its uncommitted changes are part of the copy).
    let c = mem();
    table(&c, options);
    let mut rng = common::rng::Rng(11);
    let words = ["apple", "river", "stone", "cloud"];
    c.execute_batch("BEGIN").unwrap_or_else(|e| panic!("{e}"));
    for i in 0..400usize {
        let v = rng.vector(4);
        let text = format!(
            "{} {} word{} note {i}",
            words[i % 4],
            words[(i / 4) % 4],
            i % 13
        );
        if i % 17 == 0 {
            // No vector: keyword search only.
            c.execute(
                "INSERT INTO mem(content, namespace) VALUES (?1, 'plain')",
                [&text],
            )
            .unwrap_or_else(|e| panic!("{e}"));
        } else {
            c.execute(
                "INSERT INTO mem(content, embedding, namespace, importance, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    text,
                    blob(&v),
                    if i % 3 == 0 { "ops" } else { "default" },
                    (i % 10) as f64 / 10.0,
                    if i % 29 == 0 {
                        Some(4_000_000_000_000i64)
                    } else {
                        None
                    }
                ],
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    c.execute_batch(
        "COMMIT;
         INSERT INTO mem(mem) VALUES ('optimize');
         SELECT subcog_link('mem', 2, 1, 'supersedes');
         SELECT subcog_link('mem', 5, 9, 'relates');
         SELECT subcog_link('mem', 31, 40, 'supersedes');
         UPDATE mem SET content = 'apple apple apple rewritten' WHERE id = 10;
         UPDATE mem SET embedding = X'0000803F000000000000000000000000' WHERE id = 11;
         DELETE FROM mem WHERE id IN (12, 13, 9);",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(int(&c, "SELECT count(*) FROM mem_pending") > 0);
    let queries: Vec<Vec<f32>> = (0..6).map(|_| rng.vector(4)).collect();
    let check = |ctx: &str| {
        let now = whole_views(&c, "mem", "", &queries);
        assert!(
            now[0].len() > 350 && now.iter().all(|v| !v.is_empty()),
            "{ctx}"
        );
        let v = version(&c);
        assert_eq!(
            whole_views(&c, "mem", &format!("AND as_of = {v}"), &queries),
            now,
            "{ctx}: as of the current version {v}"
        );
        now
    };
    let now = check("committed");
    c.execute_batch(
        "SELECT subcog_snapshot('mem', 'now');
         SELECT subcog_branch('mem', 'b', 'now');",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(whole_views(&c, "b", "", &queries), now, "a branch at now");
    // Inside a transaction: the copy sees its uncommitted writes.
    c.execute_batch(
        "BEGIN;
         UPDATE mem SET content = 'river stone rewritten inside' WHERE id = 20;
         DELETE FROM mem WHERE id = 21;
         INSERT INTO mem(content, embedding) VALUES ('cloud apple late', X'000000000000803F0000000000000000');",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    check("inside a transaction");
    c.execute_batch("COMMIT").unwrap_or_else(|e| panic!("{e}"));
    // The branch after writes of its own, read on a fresh build of its working copy
    // equals the copy its writes ran on.
    c.execute_batch(
        "UPDATE b SET content = 'stone stone branch' WHERE id = 30;
         DELETE FROM b WHERE id = 31;
         INSERT INTO b(content, embedding) VALUES ('apple branch new', X'00000000000000000000803F00000000');",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let written = whole_views(&c, "b", "", &queries);
    // 31's link went with it: 40 is no longer superseded in the branch.
    assert!(
        written[0]
            .iter()
            .any(|r| r.starts_with("Integer(40)|") && r.ends_with("|Null|Null|"))
    );
    // A failed statement drops the working copy: the next read builds it again.
    let e = err_of(c.execute("INSERT INTO b(id, content) VALUES (1, 'taken')", []));
    assert!(e.contains("UNIQUE"), "{e}");
    c.execute_batch("BEGIN; DELETE FROM b WHERE id = 1; ROLLBACK;")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(whole_views(&c, "b", "", &queries), written, "rebuilt");
    assert_integrity(&c, "mem", "after");
    assert_integrity(&c, "b", "after");
}
