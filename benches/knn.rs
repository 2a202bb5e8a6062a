//! KNN through SQL on an in-memory `memories` table (bundled SQLite, supplied vectors).
//!
//! `cargo bench --no-default-features --features bundled --target-dir target/bench --bench knn`
//!
//! * `knn/hnsw/10000`: `WHERE embedding MATCH ? AND k = 10` over 10,000 random unit vectors
//!   (384-d, cosine; default HNSW options M = 16, ef_construction = 128, ef_search = 64),
//!   after `'optimize'` so that nothing is pending; queries rotate over 256 vectors.
//! * `knn/exact/10000`: the same with `exact_max = 10000000`, i.e. the exact scan of
//!   `<table>_vectors` that small tables and namespaces use.
//! * `knn/namespace/10000`: HNSW walk filtered to one namespace of 5,000 rows.
//! * `insert/1000`: 1,000 rows with supplied vectors into a new table, one transaction.

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rusqlite::{Connection, params};

mod common;
use common::{DIM, Rng, blob, open_memory};

const N: usize = 10_000;
const K: i64 = 10;

fn fill(conn: &Connection, table: &str, vectors: &[Vec<u8>]) {
    let tx = conn
        .unchecked_transaction()
        .unwrap_or_else(|e| panic!("begin: {e}"));
    {
        let mut st = tx
            .prepare(&format!(
                "INSERT INTO {table}(id, content, namespace, embedding) VALUES (?1, ?2, ?3, ?4)"
            ))
            .unwrap_or_else(|e| panic!("prepare insert: {e}"));
        for (i, v) in vectors.iter().enumerate() {
            let ns = if i % 2 == 0 { "even" } else { "odd" };
            st.execute(params![i as i64 + 1, format!("memory {i}"), ns, v])
                .unwrap_or_else(|e| panic!("insert: {e}"));
        }
    }
    tx.execute(
        &format!("INSERT INTO {table}({table}) VALUES ('optimize')"),
        [],
    )
    .unwrap_or_else(|e| panic!("optimize: {e}"));
    tx.commit().unwrap_or_else(|e| panic!("commit: {e}"));
}

fn bench_knn(c: &mut Criterion) {
    let mut rng = Rng(0x5eed_0001);
    let vectors: Vec<Vec<u8>> = (0..N).map(|_| blob(&rng.unit_vector(DIM))).collect();
    let queries: Vec<Vec<u8>> = (0..256).map(|_| blob(&rng.unit_vector(DIM))).collect();
    let conn = open_memory();
    conn.execute_batch(
        "CREATE VIRTUAL TABLE h USING memories(auto_embed=off);
         CREATE VIRTUAL TABLE x USING memories(auto_embed=off, exact_max=10000000);",
    )
    .unwrap_or_else(|e| panic!("create: {e}"));
    fill(&conn, "h", &vectors);
    fill(&conn, "x", &vectors);

    let mut g = c.benchmark_group("knn");
    g.throughput(Throughput::Elements(1));
    for (name, sql) in [
        (
            "hnsw",
            "SELECT id FROM h WHERE embedding MATCH ?1 AND k = ?2",
        ),
        (
            "exact",
            "SELECT id FROM x WHERE embedding MATCH ?1 AND k = ?2",
        ),
        (
            "namespace",
            "SELECT id FROM h WHERE embedding MATCH ?1 AND k = ?2 AND namespace = 'even'",
        ),
    ] {
        let mut st = conn
            .prepare(sql)
            .unwrap_or_else(|e| panic!("prepare {name}: {e}"));
        let mut i = 0usize;
        g.bench_function(BenchmarkId::new(name, N), |b| {
            b.iter(|| {
                i = (i + 1) % queries.len();
                let ids: Vec<i64> = st
                    .query_map(params![queries[i], K], |r| r.get(0))
                    .and_then(|rows| rows.collect())
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(ids.len(), K as usize);
                ids
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("insert");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1000));
    g.bench_function(BenchmarkId::from_parameter(1000), |b| {
        b.iter_batched(
            || {
                let conn = open_memory();
                conn.execute("CREATE VIRTUAL TABLE t USING memories(auto_embed=off)", [])
                    .unwrap_or_else(|e| panic!("create: {e}"));
                conn
            },
            |conn| {
                fill(&conn, "t", &vectors[..1000]);
                conn
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench_knn
}
criterion_main!(benches);
