//! `subcog_bm25(fts, k)` (the keyword side of every search) returns exactly what FTS5's
//! `bm25()` returns for `ORDER BY .. LIMIT k`: the same rows, in the same order, with
//! bit-identical scores, while skipping the length lookup of rows that cannot make the top
//! k. Checked on a plain FTS5 table over a small vocabulary (so OR queries match most rows
//! and scores tie), and on a default `memories` table's keyword search against FTS5's
//! `bm25()` over its own shadow index, with and without a namespace: its OR queries are
//! ranked term at a time (`subcog_postings`, `store/postings.rs`), so the same rows, order
//! and scores hold for that path too.

mod common;

use common::mem;
use common::rng::Rng;
use rusqlite::{Connection, params};

const WORDS: &[&str] = &[
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu",
];

/// A text of 1..=30 words, frequent words more likely (Zipf-like), so documents differ in
/// length and term frequency.
fn text(r: &mut Rng) -> String {
    let n = 1 + r.below(30);
    (0..n)
        .map(|_| {
            let i = r.below(WORDS.len());
            WORDS[r.below(i + 1)]
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// An OR query of 1..=5 distinct words.
fn query(r: &mut Rng) -> String {
    let mut ws: Vec<&str> = Vec::new();
    for _ in 0..1 + r.below(5) {
        let w = *r.pick(WORDS);
        if !ws.contains(&w) {
            ws.push(w);
        }
    }
    ws.iter()
        .map(|w| format!("\"{w}\""))
        .collect::<Vec<_>>()
        .join(" OR ")
}

fn rows(c: &Connection, sql: &str, q: &str, k: i64) -> Vec<(i64, f64)> {
    let mut st = c.prepare(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    st.query_map(params![q, k], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

#[test]
fn same_rows_order_and_scores_as_bm25() {
    let c = mem();
    c.execute_batch("CREATE VIRTUAL TABLE f USING fts5(content)")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut r = Rng(17);
    c.execute_batch("BEGIN").unwrap_or_else(|e| panic!("{e}"));
    for id in 1..=3000i64 {
        c.execute(
            "INSERT INTO f(rowid, content) VALUES (?1, ?2)",
            params![id, text(&mut r)],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    c.execute_batch("COMMIT").unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..200 {
        let q = query(&mut r);
        for k in [1i64, 3, 10, 50, 200, 5000] {
            let want = rows(
                &c,
                "SELECT rowid, bm25(f) FROM f WHERE f MATCH ?1 ORDER BY 2 LIMIT ?2",
                &q,
                k,
            );
            let got = rows(
                &c,
                "SELECT rowid, subcog_bm25(f, ?2) FROM f WHERE f MATCH ?1 ORDER BY 2 LIMIT ?2",
                &q,
                k,
            );
            assert_eq!(got, want, "query {q}, k {k}");
        }
    }
    // Rows that cannot be among the best k get the skip value, after every real score.
    let q = "\"alpha\" OR \"bravo\"";
    let all = rows(
        &c,
        "SELECT rowid, subcog_bm25(f, ?2) FROM f WHERE f MATCH ?1",
        q,
        5,
    );
    let skipped = all.iter().filter(|(_, s)| *s == 1.0).count();
    assert!(
        skipped > all.len() / 2,
        "{skipped} of {} rows skipped",
        all.len()
    );
    assert!(all.iter().all(|(_, s)| *s < 0.0 || *s == 1.0));
    // A bad k is an SQL error, not a crash.
    let e = c
        .query_row(
            "SELECT subcog_bm25(f, -1) FROM f WHERE f MATCH 'alpha'",
            [],
            |r| r.get::<_, f64>(0),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("k must be >= 0"), "{e}");
}

#[test]
fn memories_keyword_search_matches_fts5_bm25() {
    let c = mem();
    c.execute_batch("CREATE VIRTUAL TABLE m USING memories(dim=64)")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut r = Rng(5);
    c.execute_batch("BEGIN").unwrap_or_else(|e| panic!("{e}"));
    for i in 0..1500i64 {
        // Distinct contents (the id makes each unique): the default dedup merges nothing.
        let content = format!("{} n{i}", text(&mut r));
        let ns = if i % 3 == 0 { "a" } else { "b" };
        let v: Vec<f32> = (0..64).map(|_| r.unit() as f32 - 0.5).collect();
        c.execute(
            "INSERT INTO m(content, namespace, embedding) VALUES (?1, ?2, ?3)",
            params![content, ns, common::blob(&v)],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    c.execute_batch("COMMIT").unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..60 {
        let q = query(&mut r);
        for k in [1i64, 10, 40] {
            let want = rows(
                &c,
                "SELECT rowid, bm25(m_fts) FROM m_fts WHERE m_fts MATCH ?1 ORDER BY 2 LIMIT ?2",
                &q,
                k,
            );
            let got = rows(
                &c,
                "SELECT id, score FROM m WHERE content MATCH ?1 AND k = ?2",
                &q,
                k,
            );
            let want_scores: Vec<(i64, f64)> = want.iter().map(|(id, b)| (*id, -b)).collect();
            assert_eq!(got, want_scores, "query {q}, k {k}");
            let want_ns = rows(
                &c,
                "SELECT f.rowid, bm25(m_fts) FROM m_fts f JOIN m_content c ON c.id = f.rowid \
                 WHERE m_fts MATCH ?1 AND c.namespace = 'a' ORDER BY 2 LIMIT ?2",
                &q,
                k,
            );
            let got_ns = rows(
                &c,
                "SELECT id, score FROM m WHERE content MATCH ?1 AND k = ?2 AND namespace = 'a'",
                &q,
                k,
            );
            let want_ns: Vec<(i64, f64)> = want_ns.iter().map(|(id, b)| (*id, -b)).collect();
            assert_eq!(got_ns, want_ns, "namespace a, query {q}, k {k}");
        }
    }
}

/// The table's `'optimize'` merges the FTS5 index into one segment (as FTS5's own
/// `'optimize'`), and keyword search returns the same rows and scores before and after.
#[test]
fn optimize_merges_the_keyword_index_into_one_segment() {
    let c = mem();
    c.execute_batch("CREATE VIRTUAL TABLE m USING memories(dim=8)")
        .unwrap_or_else(|e| panic!("{e}"));
    let mut r = Rng(9);
    // One transaction per batch: each commit writes at least one new FTS5 segment.
    for batch in 0..12i64 {
        c.execute_batch("BEGIN").unwrap_or_else(|e| panic!("{e}"));
        for i in 0..100i64 {
            let content = format!("{} b{batch}n{i}", text(&mut r));
            let v: Vec<f32> = (0..8).map(|_| r.unit() as f32 - 0.5).collect();
            c.execute(
                "INSERT INTO m(content, embedding) VALUES (?1, ?2)",
                params![content, common::blob(&v)],
            )
            .unwrap_or_else(|e| panic!("{e}"));
        }
        c.execute_batch("COMMIT").unwrap_or_else(|e| panic!("{e}"));
    }
    let segments = |c: &Connection| common::int(c, "SELECT count(DISTINCT segid) FROM m_fts_idx");
    assert!(
        segments(&c) > 1,
        "the loads left {} segment(s)",
        segments(&c)
    );
    let queries: Vec<String> = (0..40).map(|_| query(&mut r)).collect();
    let search = |c: &Connection| -> Vec<Vec<(i64, f64)>> {
        queries
            .iter()
            .map(|q| {
                rows(
                    c,
                    "SELECT id, score FROM m WHERE content MATCH ?1 AND k = ?2",
                    q,
                    20,
                )
            })
            .collect()
    };
    let before = search(&c);
    c.execute_batch("INSERT INTO m(m) VALUES ('optimize')")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(segments(&c), 1);
    assert_eq!(search(&c), before);
    common::assert_integrity(&c, "m", "after 'optimize'");
    c.execute_batch("INSERT INTO m(m) VALUES ('rebuild')")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(segments(&c), 1);
    assert_eq!(search(&c), before);
}

/// `subcog_postings(fts, max)` on a plain FTS5 table: every phrase's postings as a BLOB
/// (row and token counts, then per phrase its count and `(rowid i64, instances u32, end
/// of the last instance u32)`),
/// NULL past `max`, and a clear error for a bad `max`.
#[test]
fn postings_function_returns_each_phrase_and_respects_its_cap() {
    let c = mem();
    c.execute_batch(
        "CREATE VIRTUAL TABLE f USING fts5(content);
         INSERT INTO f(rowid, content) VALUES (1, 'alpha bravo alpha'), (2, 'bravo'),
             (5, 'charlie alpha');",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let sql = "SELECT subcog_postings(f, ?2) FROM f WHERE f MATCH ?1 LIMIT 1";
    let blob: Vec<u8> = c
        .query_row(sql, params!["\"alpha\" OR \"delta\"", 100], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    let i64_at =
        |b: &[u8], at: usize| i64::from_ne_bytes(b[at..at + 8].try_into().unwrap_or_default());
    let u32_at =
        |b: &[u8], at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().unwrap_or_default());
    assert_eq!(
        (i64_at(&blob, 0), i64_at(&blob, 8), u32_at(&blob, 16)),
        (3, 6, 2)
    );
    // "alpha": rows 1 (twice, the last at token 2) and 5 (token 1); "delta": none.
    assert_eq!(u32_at(&blob, 20), 2);
    assert_eq!(
        (i64_at(&blob, 24), u32_at(&blob, 32), u32_at(&blob, 36)),
        (1, 2, 3)
    );
    assert_eq!(
        (i64_at(&blob, 40), u32_at(&blob, 48), u32_at(&blob, 52)),
        (5, 1, 2)
    );
    assert_eq!(u32_at(&blob, 56), 0);
    assert_eq!(blob.len(), 60);
    let capped: Option<Vec<u8>> = c
        .query_row(sql, params!["\"alpha\" OR \"bravo\"", 3], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(capped, None, "4 postings, cap 3");
    let e = c
        .query_row(sql, params!["alpha", -1], |r| r.get::<_, Vec<u8>>(0))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("max must be >= 0"), "{e}");
}
