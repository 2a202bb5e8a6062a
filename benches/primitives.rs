//! Pure functions on the query path: vector distance, BLOB decoding, FTS5 query building,
//! top-k selection.
//!
//! `cargo bench --no-default-features --features bundled --target-dir target/bench --bench primitives`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use subcog::vector::{self, Metric};

mod common;
use common::{DIM, Rng, blob};

fn bench_primitives(c: &mut Criterion) {
    let mut rng = Rng(0x5eed_0002);
    let a = rng.unit_vector(DIM);
    let b = rng.unit_vector(DIM);

    let mut g = c.benchmark_group("distance");
    g.throughput(Throughput::Elements(1));
    for m in [Metric::Cosine, Metric::L2, Metric::Ip] {
        g.bench_function(format!("{}/{DIM}", m.name()), |bch| {
            bch.iter(|| m.distance(black_box(&a), black_box(&b)))
        });
    }
    g.finish();

    let bytes = blob(&a);
    c.bench_function("decode/384", |bch| {
        bch.iter(|| vector::decode(black_box(&bytes), DIM, "embedding"))
    });

    let question = "When did Caroline go to the LGBTQ support group, and what did she say \
                    about it afterwards to Melanie?";
    c.bench_function("fts_query/question", |bch| {
        bch.iter(|| subcog::text::fts_query(black_box(question)))
    });

    let hits: Vec<subcog::ann::Hit> = (0..1000)
        .map(|i| (i as i64, rng.next_f32().abs()))
        .collect();
    c.bench_function("top_k/1000/10", |bch| {
        bch.iter(|| subcog::ann::top_k(black_box(hits.clone()), 10))
    });
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench_primitives
}
criterion_main!(benches);
