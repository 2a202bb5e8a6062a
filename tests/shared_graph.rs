//! One graph per process: the connections of a process that read the same snapshot search
//! views of one shared copy of it, one view per concurrent search. Whatever the number of
//! connections and threads, and whatever another connection did with a view before (a
//! near-duplicate check walks with a short candidate list), every search answers what one
//! connection alone answers. Default table options (dimension 32, so that the data is
//! small); the searches filter on a namespace larger than `exact_max`, so each walks the
//! graph.

mod common;

use std::collections::HashMap;

use common::oracle::cosine;
use common::rng::XorShift;
use common::search::knn;
use common::{blob, open, temp_dir};
use rusqlite::params;

const DIM: usize = 32;
/// Rows of namespace `a`: past the default `exact_max` (2,048), so its searches walk the graph.
const IN_A: i64 = 2_400;
const K: usize = 10;
const THREADS: usize = 4;

type Hits = Vec<(i64, f32)>;

/// The KNN (namespace `a`) of every query on a fresh connection to `path`.
fn answers(path: &str, queries: &[Vec<f32>]) -> Vec<Hits> {
    let c = open(path);
    queries
        .iter()
        .map(|q| knn(&c, "m", q, K, Some("a"), false).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// `THREADS` threads, each on its own connection, run every query three times (each thread
/// starting at another query) and check each answer against `want`.
fn concurrent(path: &str, queries: &[Vec<f32>], want: &[Hits], what: &str) {
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                let c = open(path);
                for round in 0..3 {
                    for i in 0..queries.len() {
                        let j = (i + t * 7) % queries.len();
                        let got = knn(&c, "m", &queries[j], K, Some("a"), false)
                            .unwrap_or_else(|e| panic!("{what}: {e}"));
                        assert_eq!(got, want[j], "{what}: thread {t}, round {round}, query {j}");
                    }
                }
            });
        }
    });
}

#[test]
fn connections_share_views_and_answer_as_one() {
    let dir = temp_dir("shared-graph");
    let path = dir.join("m.db").to_string_lossy().to_string();
    let mut rng = XorShift(17);
    {
        let c = open(&path);
        c.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; CREATE VIRTUAL TABLE m USING memories(dim={DIM}); BEGIN;"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        for id in 1..=IN_A + IN_A / 4 {
            let ns = if id % 5 == 0 { "b" } else { "a" };
            c.execute(
                "INSERT INTO m(id, namespace, content, embedding) VALUES (?1, ?2, ?3, ?4)",
                params![id, ns, format!("memory {id}"), blob(&rng.unit_vector(DIM))],
            )
            .unwrap_or_else(|e| panic!("insert {id}: {e}"));
        }
        c.execute_batch("COMMIT; INSERT INTO m(m) VALUES ('optimize');")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let queries: Vec<Vec<f32>> = (0..24).map(|_| rng.unit_vector(DIM)).collect();
    let want = answers(&path, &queries);
    assert!(want.iter().all(|h| h.len() == K));
    concurrent(&path, &queries, &want, "the snapshot");

    // A writer's near-duplicate checks walk a borrowed view with a short candidate list;
    // the readers' walks set their own. Its rows are pending: exact, merged by distance.
    let w = open(&path);
    let mut added: HashMap<i64, Vec<f32>> = HashMap::new();
    for (i, q) in queries.iter().take(20).enumerate() {
        // Near a query (cosine about 0.85), so that it joins that query's nearest.
        let noise = rng.unit_vector(DIM);
        let v: Vec<f32> = q.iter().zip(&noise).map(|(x, e)| x + 0.6 * e).collect();
        w.execute(
            "INSERT INTO m(namespace, content, embedding) VALUES ('a', ?1, ?2)",
            params![format!("added {i}"), blob(&v)],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        added.insert(w.last_insert_rowid(), v);
    }
    let pending: i64 = w
        .query_row("SELECT count(*) FROM m_pending", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pending, 20, "the added rows stay pending (no checkpoint)");
    let want_added: Vec<Hits> = queries
        .iter()
        .zip(&want)
        .map(|(q, graph)| {
            let mut all = graph.clone();
            all.extend(added.iter().map(|(id, v)| (*id, cosine(q, v))));
            all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            all.truncate(K);
            all
        })
        .collect();
    let changed = want_added.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert!(
        changed >= 15,
        "added rows among the nearest of {changed} queries only"
    );
    concurrent(
        &path,
        &queries,
        &want_added,
        "the snapshot and pending rows",
    );

    // The writer checkpoints (its own copy of the graph takes the rows, a new snapshot is
    // written); the readers load the new generation and agree with a lone connection.
    w.execute_batch("INSERT INTO m(m) VALUES ('optimize')")
        .unwrap_or_else(|e| panic!("{e}"));
    let want_new = answers(&path, &queries);
    concurrent(&path, &queries, &want_new, "the new snapshot");
    drop(w);
    let _ = std::fs::remove_dir_all(&dir);
}
