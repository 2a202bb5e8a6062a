//! Type affinity on a `memories` table, as an ordinary table applies it
//! (<https://www.sqlite.org/datatype3.html>, "Type Affinity"): integers and reals given as
//! TEXT (drivers that bind strings, Datasette's URLs) are numbers for `id`/`rowid`, `k`,
//! LIMIT/OFFSET and every INTEGER/REAL column; malformed numbers stay errors that name the
//! column, the expected and the actual value.
//!
//! The default table (`memories()`) comes first; the differential tests compare the table
//! with an ordinary SQLite table column by column on the same list of strings.
//! (`cargo test --no-default-features --features bundled --test affinity`)

mod common;

use common::{blob, err_of, ids, int, mem, ok_ids};
use rusqlite::types::Value;
use rusqlite::{Connection, params};

/// A unit vector of the default dimension (384) pointing mostly along axis `i`.
fn axis(i: usize) -> Vec<f32> {
    let mut v = vec![0.01f32; 384];
    v[i] = 1.0;
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

/// The default table, with auto-embedded content: every place a user's SQL gives an
/// integer or a real may give it as TEXT.
#[test]
fn default_table_takes_numbers_given_as_text() {
    let c = mem();
    c.execute_batch("CREATE VIRTUAL TABLE mem USING memories()")
        .unwrap_or_else(|e| panic!("{e}"));
    for (id, content, importance, created) in [
        (
            "1",
            "The deploy pipeline runs on GitHub Actions.",
            "0.2",
            "1600000000000",
        ),
        (
            " 2 ",
            "Our cat Mochi sleeps on the windowsill.",
            "0.7",
            "1700000000000",
        ),
        (
            "3.0",
            "Quarterly revenue grew twelve percent.",
            " 1 ",
            "1.7e12",
        ),
        (
            "4",
            "PgBouncer needs prepared statements disabled.",
            ".5",
            "1800000000000",
        ),
    ] {
        c.execute(
            "INSERT INTO mem(id, content, importance, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, '4102444800000')",
            params![id, content, importance, created],
        )
        .unwrap_or_else(|e| panic!("insert id {id:?}: {e}"));
    }
    let row: (i64, f64, i64, i64, String, String, String) = c
        .query_row(
            "SELECT id, importance, created_at, expires_at, typeof(importance), \
             typeof(created_at), typeof(expires_at) FROM mem WHERE id = '2'",
            [],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        row,
        (
            2,
            0.7,
            1_700_000_000_000,
            4_102_444_800_000,
            "real".into(),
            "integer".into(),
            "integer".into()
        )
    );
    assert_eq!(
        int(&c, "SELECT created_at FROM mem WHERE id = 3"),
        1_700_000_000_000
    );
    // Point lookups by id and rowid, given as TEXT.
    for lookup in [
        "id = '2'",
        "rowid = '2'",
        "id = ' 2 '",
        "id = '2.0'",
        "id = '2e0'",
    ] {
        assert_eq!(
            ok_ids(&c, &format!("SELECT id FROM mem WHERE {lookup}"), []),
            vec![2],
            "{lookup}"
        );
    }
    assert_eq!(
        ok_ids(&c, "SELECT id FROM mem WHERE id = ?1", ["4"]),
        vec![4]
    );
    // k as TEXT, in a hybrid and a KNN search.
    let hybrid = ok_ids(
        &c,
        "SELECT id FROM mem WHERE mem MATCH 'cat windowsill' AND k = '3'",
        [],
    );
    assert_eq!(hybrid.len(), 3);
    assert_eq!(hybrid[0], 2);
    let knn = ok_ids(
        &c,
        "SELECT id FROM mem WHERE embedding MATCH embed('revenue growth') AND k = ?1",
        [" 2 "],
    );
    assert_eq!(knn.len(), 2);
    assert_eq!(knn[0], 3);
    // UPDATE through a text id, setting numbers given as text.
    c.execute(
        "UPDATE mem SET importance = '0.25', created_at = '1650000000000' WHERE id = '1'",
        [],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.query_row(
            "SELECT importance, created_at FROM mem WHERE id = 1",
            [],
            |r| Ok((r.get::<_, f64>(0)?, r.get::<_, i64>(1)?))
        )
        .unwrap_or_else(|e| panic!("{e}")),
        (0.25, 1_650_000_000_000)
    );
    // DELETE through a rowid given as text.
    c.execute("DELETE FROM mem WHERE rowid = '4'", [])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ok_ids(&c, "SELECT id FROM mem ORDER BY id", []),
        vec![1, 2, 3]
    );
    // An explicit rowid given as text on INSERT.
    c.execute(
        "INSERT INTO mem(rowid, content) VALUES ('9', 'Stripe webhooks failed behind the proxy.')",
        [],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok_ids(&c, "SELECT id FROM mem WHERE id = 9", []), vec![9]);
    let report: String = c
        .query_row("SELECT subcog_integrity('mem')", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.contains("\"ok\":true"), "{report}");

    // Malformed numbers stay TEXT and are errors naming the column, the expected and the
    // actual value; nothing is written.
    for (sql, want) in [
        (
            "SELECT id FROM mem WHERE id = '2x'",
            "column id: expected an INTEGER, got TEXT '2x'",
        ),
        (
            "SELECT id FROM mem WHERE rowid = ''",
            "column id: expected an INTEGER, got TEXT ''",
        ),
        (
            "SELECT id FROM mem WHERE id = '0x10'",
            "column id: expected an INTEGER, got TEXT '0x10'",
        ),
        (
            "SELECT id FROM mem WHERE mem MATCH 'cat' AND k = '3x'",
            "column k: expected an INTEGER, got TEXT '3x'",
        ),
        (
            "SELECT id FROM mem WHERE mem MATCH 'cat' AND k = '2.5'",
            "column k: expected an INTEGER, got TEXT '2.5'",
        ),
        (
            "INSERT INTO mem(id, content) VALUES ('2x', 'never stored')",
            "column id: expected an INTEGER, got TEXT '2x'",
        ),
        (
            "INSERT INTO mem(content, importance) VALUES ('never stored', 'high')",
            "column importance: expected a number in 0..1, got TEXT 'high'",
        ),
        (
            "INSERT INTO mem(content, created_at) VALUES ('never stored', '17e')",
            "column created_at: expected an INTEGER (milliseconds since the Unix epoch), got \
             TEXT '17e'",
        ),
        (
            "UPDATE mem SET expires_at = '0x10' WHERE id = 1",
            "column expires_at: expected an INTEGER (milliseconds since the Unix epoch), got \
             TEXT '0x10'",
        ),
        (
            "UPDATE mem SET importance = '1.5' WHERE id = 1",
            "column importance: expected a number in 0..1, got 1.5",
        ),
    ] {
        let e = if sql.starts_with("SELECT") {
            err_of(ids(&c, sql, []))
        } else {
            err_of(c.execute(sql, []))
        };
        assert!(e.contains(want), "{sql}\n  got:  {e}\n  want: {want}");
    }
    assert_eq!(int(&c, "SELECT count(*) FROM mem"), 4);
    assert_eq!(
        int(
            &c,
            "SELECT count(*) FROM mem WHERE content = 'never stored'"
        ),
        0
    );
}

/// The strings every differential test below feeds to both tables.
const STRINGS: &[&str] = &[
    "2",
    " 2",
    "2 ",
    "\t2\n",
    "+2",
    "-2",
    "02",
    "2.0",
    "2.",
    "2e0",
    "0.2e1",
    "20E-1",
    "2.5",
    "0.7",
    ".7",
    "7.",
    "1",
    "0",
    "-0",
    "-0.0",
    "1e-1",
    "1e",
    "1e+",
    ".",
    "+",
    "- 2",
    "2..0",
    "2x",
    "x2",
    "",
    " ",
    "0x2",
    "0x10",
    "NaN",
    "inf",
    "Infinity",
    "1_0",
    "\u{a0}2",
    "\u{663}",
    "1e400",
    "1700000000000",
    "1.7e12",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "12345678901234567890",
];

/// What an ordinary table stores for `s` in a column of declared type `ty`.
fn ordinary(c: &Connection, ty: &str, s: &str) -> Value {
    c.execute_batch(&format!(
        "DROP TABLE IF EXISTS aff; CREATE TABLE aff(v {ty})"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    c.execute("INSERT INTO aff VALUES (?1)", [s])
        .unwrap_or_else(|e| panic!("{e}"));
    c.query_row("SELECT v FROM aff", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// INTEGER columns (`created_at`, `updated_at`, `expires_at`) and REAL (`importance`) of
/// the default table store what an ordinary column of the same type stores, and refuse
/// exactly what it would keep as TEXT (or REAL, for an INTEGER column).
#[test]
fn columns_store_what_an_ordinary_table_stores() {
    let c = mem();
    c.execute_batch("CREATE VIRTUAL TABLE mem USING memories()")
        .unwrap_or_else(|e| panic!("{e}"));
    let v = blob(&axis(0));
    let mut next = 1i64;
    let mut checked = [0usize; 2];
    for &s in STRINGS {
        for column in ["created_at", "updated_at", "expires_at"] {
            let want = ordinary(&c, "INTEGER", s);
            // Explicit ids: no dedup between these rows, no model needed (vector given).
            let r = c.execute(
                &format!(
                    "INSERT INTO mem(id, content, embedding, {column}) VALUES (?1, ?2, ?3, ?4)"
                ),
                params![next, format!("value {s:?} for {column}"), v, s],
            );
            match want {
                Value::Integer(i) => {
                    r.unwrap_or_else(|e| panic!("{column} = {s:?}: {e}"));
                    let got: Value = c
                        .query_row(
                            &format!("SELECT {column} FROM mem WHERE id = ?1"),
                            [next],
                            |r| r.get(0),
                        )
                        .unwrap_or_else(|e| panic!("{e}"));
                    assert_eq!(got, Value::Integer(i), "{column} = {s:?}");
                    next += 1;
                    checked[0] += 1;
                }
                other => {
                    let e = err_of(r);
                    let want = format!("column {column}: expected an INTEGER");
                    assert!(
                        e.contains(&want) && e.contains("got TEXT"),
                        "{column} = {s:?} (ordinary table: {other:?}): {e}"
                    );
                }
            }
        }
        let want = ordinary(&c, "REAL", s);
        let r = c.execute(
            "INSERT INTO mem(id, content, embedding, importance) VALUES (?1, ?2, ?3, ?4)",
            params![next, format!("importance {s:?}"), v, s],
        );
        match want {
            Value::Real(x) if (0.0..=1.0).contains(&x) => {
                r.unwrap_or_else(|e| panic!("importance = {s:?}: {e}"));
                let got: Value = c
                    .query_row("SELECT importance FROM mem WHERE id = ?1", [next], |r| {
                        r.get(0)
                    })
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(got, Value::Real(x), "importance = {s:?}");
                next += 1;
                checked[1] += 1;
            }
            Value::Real(x) => {
                let e = err_of(r);
                assert!(e.contains(&format!("got {x}")), "importance = {s:?}: {e}");
            }
            other => {
                let e = err_of(r);
                assert!(
                    e.contains("column importance: expected a number in 0..1, got TEXT"),
                    "importance = {s:?} (ordinary table: {other:?}): {e}"
                );
            }
        }
    }
    // The list has both kinds: not a test that accepts or refuses everything.
    assert!(checked[0] >= 3 * 20 && checked[1] >= 5, "{checked:?}");
    assert!(checked[0] < 3 * STRINGS.len(), "{checked:?}");
}

/// `WHERE id = ?` and `WHERE rowid = ?` find what an `INTEGER PRIMARY KEY` table finds;
/// where it finds nothing because the value stays TEXT (or a non-integral REAL), the
/// memories table says why instead.
#[test]
fn id_lookups_find_what_an_integer_primary_key_finds() {
    let c = mem();
    c.execute_batch(
        "CREATE VIRTUAL TABLE mem USING memories();
         CREATE TABLE o(id INTEGER PRIMARY KEY, content TEXT);",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // Not i64::MIN: an ordinary table finds it by '-9223372036854775809' (that text is
    // the REAL -2^63, which compares equal to it), where integer affinity keeps -2^63 a REAL.
    for (n, id) in [0i64, 1, 2, 7, 1_700_000_000_000, i64::MAX, -5]
        .into_iter()
        .enumerate()
    {
        c.execute(
            "INSERT INTO mem(id, content, embedding) VALUES (?1, ?2, ?3)",
            params![id, format!("memory {id}"), blob(&axis(n))],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        c.execute("INSERT INTO o VALUES (?1, 'x')", [id])
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut found = 0;
    for &s in STRINGS {
        for column in ["id", "rowid"] {
            let want = ok_ids(&c, &format!("SELECT id FROM o WHERE {column} = ?1"), [s]);
            let got = ids(&c, &format!("SELECT id FROM mem WHERE {column} = ?1"), [s]);
            // What the ordinary table compares with: the value after integer affinity.
            let stored = ordinary(&c, "INTEGER", s);
            match (got, stored) {
                (Ok(got), Value::Integer(_)) => {
                    assert_eq!(got, want, "{column} = {s:?}");
                    found += got.len();
                }
                (Err(e), other) => {
                    assert!(want.is_empty(), "{column} = {s:?}: {e}");
                    assert!(
                        e.to_string()
                            .contains("column id: expected an INTEGER, got TEXT"),
                        "{column} = {s:?} ({other:?}): {e}"
                    );
                }
                (Ok(got), other) => {
                    panic!("{column} = {s:?} ({other:?}): expected an error, got {got:?}")
                }
            }
        }
    }
    assert!(found >= 20, "{found}");
}

/// `k`, LIMIT and OFFSET given as TEXT. The bundled SQLite passes LIMIT to the table with
/// a MATCH term; when it passes none, the message says so.
#[test]
fn k_limit_and_offset_given_as_text() {
    let c = mem();
    c.execute_batch("CREATE VIRTUAL TABLE mem USING memories()")
        .unwrap_or_else(|e| panic!("{e}"));
    for i in 0..6 {
        c.execute(
            "INSERT INTO mem(id, content, embedding, importance) VALUES (?1, ?2, ?3, 0.1)",
            params![i + 1, format!("memory number {i}"), blob(&axis(i as usize))],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let q = blob(&axis(0));
    let by_k = ok_ids(
        &c,
        "SELECT id FROM mem WHERE embedding MATCH ?1 AND k = 4",
        [&q],
    );
    assert_eq!(by_k.len(), 4);
    for k in ["4", " 4 ", "4.0", "4e0"] {
        assert_eq!(
            ok_ids(
                &c,
                "SELECT id FROM mem WHERE embedding MATCH ?1 AND k = ?2",
                params![q, k]
            ),
            by_k,
            "k = {k:?}"
        );
    }
    assert!(
        rusqlite::version_number() >= 3_041_000,
        "bundled SQLite {} passes no LIMIT with MATCH",
        subcog::host_sqlite_version()
    );
    for (limit, want) in [("'4'", &by_k[..]), ("'2' OFFSET '2'", &by_k[2..4])] {
        let sql = format!("SELECT id FROM mem WHERE embedding MATCH ?1 LIMIT {limit}");
        let plan: String = c
            .query_row(&format!("EXPLAIN QUERY PLAN {sql}"), [&q], |r| r.get(3))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(plan.contains("knn limit"), "{plan}");
        assert_eq!(ok_ids(&c, &sql, [&q]), want, "LIMIT {limit}");
    }
    // A WHERE term the table does not consume: SQLite filters the search's rows after it,
    // so a LIMIT must not stand in for k (it would return fewer rows); no LIMIT reaches
    // the table and the message says so.
    for sql in [
        "SELECT id FROM mem WHERE embedding MATCH ?1 AND importance > 0.5 LIMIT 2",
        "SELECT id FROM mem WHERE embedding MATCH ?1 ORDER BY id + 0 LIMIT 2",
        "SELECT DISTINCT id FROM mem WHERE embedding MATCH ?1 LIMIT 2",
        "SELECT id FROM mem WHERE embedding MATCH ?1",
    ] {
        let e = err_of(ids(&c, sql, [&q]));
        assert!(
            e.contains("needs k, as in `AND k = 10`, or a LIMIT; this query passed no LIMIT to the table (SQLite passes it only when"),
            "{sql}: {e}"
        );
        assert!(!e.contains("never"), "{sql}: {e}");
    }
    let e = err_of(ids(
        &c,
        "SELECT id FROM mem WHERE embedding MATCH ?1 LIMIT -1",
        [&q],
    ));
    assert!(e.contains("LIMIT -1 sets no limit"), "{e}");
    // With k given, any of these work.
    assert!(
        ok_ids(
            &c,
            "SELECT id FROM mem WHERE embedding MATCH ?1 AND importance > 0.5 AND k = 3 LIMIT 2",
            [&q]
        )
        .is_empty()
    );
    assert_eq!(
        ok_ids(
            &c,
            "SELECT id FROM mem WHERE embedding MATCH ?1 AND importance < 0.5 AND k = 3 LIMIT 2",
            [&q]
        ),
        by_k[..2]
    );
}

/// `namespace = ?` compares as a TEXT column does: a number as SQLite renders it, a BLOB
/// never equal.
#[test]
fn namespace_compares_with_text_affinity() {
    let c = mem();
    c.execute_batch(
        "CREATE VIRTUAL TABLE mem USING memories();
         CREATE TABLE o(namespace TEXT);",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for (i, ns) in ["1", "1.0", "2.5", "ab"].into_iter().enumerate() {
        c.execute(
            "INSERT INTO mem(id, content, namespace, embedding) VALUES (?1, ?2, ?3, ?4)",
            params![i as i64 + 1, format!("memory in {ns}"), ns, blob(&axis(i))],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        c.execute("INSERT INTO o VALUES (?1)", [ns])
            .unwrap_or_else(|e| panic!("{e}"));
    }
    for rhs in ["1", "1.0", "2.5", "'1.0'", "x'6162'", "'ab'"] {
        let want: Vec<String> = c
            .prepare(&format!("SELECT namespace FROM o WHERE namespace = {rhs}"))
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .unwrap_or_else(|e| panic!("{e}"));
        let got: Vec<String> = c
            .prepare(&format!(
                "SELECT namespace FROM mem WHERE namespace = {rhs} ORDER BY id"
            ))
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, want, "namespace = {rhs}");
    }
}
