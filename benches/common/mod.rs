//! Helpers shared by the criterion benchmarks (a module of each, not a bench target).
// Each benchmark uses a subset of these helpers.
#![allow(dead_code)]

use std::time::Duration;

use criterion::Criterion;
use rusqlite::Connection;

/// Vector dimension of every benchmark table: the model's, 384.
pub const DIM: usize = 384;

/// Criterion settings that keep one benchmark group to a few seconds on a shared 2-core
/// machine (1 s warm-up, 3 s of measurement, 30 samples). Command-line flags such as
/// `--measurement-time` still override them.
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .configure_from_args()
}

/// Deterministic pseudo-random numbers (xorshift64, Marsaglia 2003), seeded.
pub struct Rng(pub u64);

impl Rng {
    /// The next value, uniform in [-1, 1).
    pub fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// A unit-norm vector of `dim` float32 (coordinates uniform before normalisation).
    pub fn unit_vector(&mut self, dim: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dim).map(|_| self.next_f32()).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        v.into_iter().map(|x| x / n).collect()
    }
}

/// `v` as a little-endian float32 BLOB (the `embedding` column's encoding).
pub fn blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// An in-memory database with subcog registered.
///
/// # Panics
/// If SQLite cannot open an in-memory database or registration fails (bench set-up only).
pub fn open_memory() -> Connection {
    let conn = Connection::open_in_memory().unwrap_or_else(|e| panic!("open :memory:: {e}"));
    subcog::register(&conn).unwrap_or_else(|e| panic!("register subcog: {e}"));
    conn
}
