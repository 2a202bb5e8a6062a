//! KNN through the graph (past `exact_max`) with superseded memories: the walk skips them
//! (outside transactions, where the connection keeps their ids) so the k visible nearest
//! come back in one run, `include_superseded = 1` still returns them, and the same holds
//! inside a transaction (where the rows are checked after the walk instead) and after the
//! link goes away (the newer memory deleted).

mod common;

use common::rng::XorShift;
use common::search::knn;
use common::{blob, mem, ok_ids};
use rusqlite::params;

const DIM: usize = 16;

#[test]
fn graph_walk_skips_superseded_memories_and_opt_in_keeps_them() {
    let c = mem();
    c.execute_batch(&format!(
        "CREATE VIRTUAL TABLE m USING memories(dim={DIM}, exact_max=0, scan_max=0, dedup_threshold=0.95)"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let ins = |content: &str, v: &[f32]| -> i64 {
        c.execute(
            "INSERT INTO m(content, embedding) VALUES (?1, ?2)",
            params![content, blob(v)],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        c.last_insert_rowid()
    };
    let mut rng = XorShift(42);
    for i in 0..300 {
        ins(&format!("filler {i}"), &rng.unit_vector(DIM));
    }
    // Ten old facts, each then restated (a near duplicate: it supersedes the old one).
    let q = rng.unit_vector(DIM);
    let mut old = Vec::new();
    let mut new = Vec::new();
    let mix = |a: &[f32], b: &[f32], w: f32| -> Vec<f32> {
        let v: Vec<f32> = a.iter().zip(b).map(|(x, y)| x + w * y).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    };
    // cosine ~0.89 to q, ~0.8 to each other: near q, not duplicates of each other
    let olds: Vec<Vec<f32>> = (0..10)
        .map(|_| mix(&q, &rng.unit_vector(DIM), 0.5))
        .collect();
    for (i, v) in olds.iter().enumerate() {
        old.push(ins(&format!("old fact {i}"), v));
    }
    for (i, v) in olds.iter().enumerate() {
        // cosine ~0.999 to its old fact: a restatement that supersedes it
        new.push(ins(
            &format!("new fact {i}"),
            &mix(v, &rng.unit_vector(DIM), 0.05),
        ));
    }
    let superseded: i64 = c
        .query_row(
            "SELECT count(*) FROM m WHERE superseded_by IS NOT NULL AND include_superseded = 1",
            [],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(superseded, 10, "each new fact supersedes an old one");
    c.execute("INSERT INTO m(m) VALUES ('optimize')", [])
        .unwrap_or_else(|e| panic!("{e}"));

    let ids = |hits: Vec<(i64, f32)>| -> Vec<i64> {
        let mut v: Vec<i64> = hits.into_iter().map(|h| h.0).collect();
        v.sort_unstable();
        v
    };
    for round in 0..2 {
        // round 1: inside a transaction (no kept ids: the rows are checked after the walk)
        if round == 1 {
            c.execute_batch("BEGIN").unwrap_or_else(|e| panic!("{e}"));
        }
        let visible = knn(&c, "m", &q, 10, None, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            ids(visible),
            new,
            "round {round}: the ten visible nearest are the new facts"
        );
        let all = knn(&c, "m", &q, 20, None, true).unwrap_or_else(|e| panic!("{e}"));
        let mut want = [old.clone(), new.clone()].concat();
        want.sort_unstable();
        assert_eq!(
            ids(all),
            want,
            "round {round}: include_superseded returns the old facts too"
        );
    }
    c.execute_batch("COMMIT").unwrap_or_else(|e| panic!("{e}"));
    // Deleting a newer fact brings its old one back (the link goes with it).
    c.execute("DELETE FROM m WHERE id = ?1", [new[0]])
        .unwrap_or_else(|e| panic!("{e}"));
    let visible = ids(knn(&c, "m", &q, 10, None, false).unwrap_or_else(|e| panic!("{e}")));
    assert!(
        visible.contains(&old[0]) && !visible.contains(&new[0]),
        "{visible:?}"
    );
}

/// Hybrid search's keyword side keeps its best `hybrid_depth` *visible* rows (and a keyword
/// search its best `k`) even when more hidden rows than its margin (16) outrank them by
/// BM25: outside transactions it skips the hidden ones as it ranks. With the keyword weight
/// 1 and no context, the hybrid's results are exactly the keyword side's rows.
#[test]
fn hybrid_keyword_side_keeps_its_best_visible_rows_past_many_hidden_ones() {
    let c = mem();
    c.execute_batch(
        "CREATE VIRTUAL TABLE m USING memories(hybrid_keyword_weight=1, hybrid_context_weight=0)",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut rng = XorShift(7);
    let ins = |rng: &mut XorShift, content: &str| -> i64 {
        c.execute(
            "INSERT INTO m(content, embedding) VALUES (?1, ?2)",
            params![content, blob(&rng.unit_vector(384))],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        c.last_insert_rowid()
    };
    let mut visible = Vec::new();
    for i in 0..200 {
        ins(&mut rng, &format!("filler note {i} about the weather"));
    }
    // 30 hidden rows rank first ("zebra" three times in a short text): 20 superseded by
    // a filler row, 10 expired.
    for i in 0..30 {
        let id = ins(&mut rng, &format!("zebra zebra zebra {i}"));
        if i < 20 {
            c.query_row(
                "SELECT subcog_link('m', ?1, ?2, 'supersedes')",
                params![1 + i, id],
                |_| Ok(()),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        } else {
            c.execute("UPDATE m SET expires_at = 1 WHERE id = ?1", [id])
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    // 12 visible rows mention it once in a longer text, the first 10 more briefly.
    for i in 0..12 {
        let pad = if i < 10 {
            ""
        } else {
            " and a much longer tail of other words"
        };
        visible.push(ins(
            &mut rng,
            &format!("a zebra seen near the river {i}{pad}"),
        ));
    }
    let want: Vec<i64> = visible[..10].to_vec();
    let hybrid = |c: &rusqlite::Connection| -> Vec<i64> {
        let mut got = ok_ids(c, "SELECT id FROM m WHERE m MATCH 'zebra' AND k = 10", []);
        got.sort_unstable();
        got
    };
    // A keyword search of the same word (its first run fetches 16 rows beyond k, then runs
    // deeper until 10 are visible).
    let keyword = |c: &rusqlite::Connection| -> Vec<i64> {
        ok_ids(
            c,
            "SELECT id FROM m WHERE content MATCH subcog_fts_query('zebra') AND k = 10",
            [],
        )
    };
    assert_eq!(hybrid(&c), want, "outside a transaction");
    assert_eq!(keyword(&c), want, "keyword, outside a transaction");
    // Inside a transaction (nothing kept: each row scored in full is checked).
    c.execute_batch("BEGIN").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(hybrid(&c), want, "inside a transaction");
    assert_eq!(keyword(&c), want, "keyword, inside a transaction");
    c.execute_batch("COMMIT").unwrap_or_else(|e| panic!("{e}"));
}
