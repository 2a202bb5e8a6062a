//! The embedding model in-process: cached against uncached, one text against a batch.
//!
//! `cargo bench --no-default-features --features bundled --target-dir target/bench --bench embed`
//!
//! Needs the model and ONNX Runtime of `make setup`; without them every benchmark here is
//! skipped with a message (and the run still succeeds).
//!
//! * `embed/uncached`: `Embedder::embed` of a text never seen before (a counter makes each
//!   one distinct, so the LRU cache always misses): tokenize + one ONNX run + pooling.
//! * `embed/cached`: `Embedder::embed` of the same text again (SHA-256 + LRU lookup).
//! * `embed/sql_cached`: `SELECT embed(?)` of the same text (adds SQLite's call overhead).
//! * `embed_batch/16`: 16 distinct unseen texts in one call (one ONNX run of 16).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rusqlite::params;

mod common;

const TEXT: &str = "Caroline went to the LGBTQ support group on Sunday and said it was powerful";

fn bench_embed(c: &mut Criterion) {
    let embedder = match subcog::embedder::get() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("embed benchmarks SKIPPED: the model is not available ({e})");
            return;
        }
    };
    let mut n = 0u64;
    let mut fresh = move || {
        n += 1;
        format!("{TEXT}, note number {n} of the benchmark")
    };

    let mut g = c.benchmark_group("embed");
    g.throughput(Throughput::Elements(1));
    g.bench_function("uncached", |b| {
        b.iter(|| {
            embedder
                .embed(&fresh())
                .unwrap_or_else(|e| panic!("embed: {e}"))
        })
    });
    embedder
        .embed(TEXT)
        .unwrap_or_else(|e| panic!("embed: {e}"));
    g.bench_function("cached", |b| {
        b.iter(|| {
            embedder
                .embed(TEXT)
                .unwrap_or_else(|e| panic!("embed: {e}"))
        })
    });
    let conn = common::open_memory();
    let mut st = conn
        .prepare("SELECT embed(?1)")
        .unwrap_or_else(|e| panic!("prepare: {e}"));
    g.bench_function("sql_cached", |b| {
        b.iter(|| {
            st.query_row(params![TEXT], |r| r.get::<_, Vec<u8>>(0))
                .unwrap_or_else(|e| panic!("embed(): {e}"))
        })
    });
    g.finish();

    let mut g = c.benchmark_group("embed_batch");
    g.throughput(Throughput::Elements(16));
    g.sample_size(10);
    g.bench_function("16", |b| {
        b.iter(|| {
            let texts: Vec<String> = (0..16).map(|_| fresh()).collect();
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            embedder
                .embed_batch(&refs)
                .unwrap_or_else(|e| panic!("embed_batch: {e}"))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench_embed
}
criterion_main!(benches);
