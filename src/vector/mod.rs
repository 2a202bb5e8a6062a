//! Vectors: the BLOB encoding, validation, reading a vector from a SQL value
//! (`from_sql`), and the distance functions (the SIMD kernels of the HNSW graph are in
//! `kernels.rs`).
//!
//! A vector is stored as a BLOB of `dim` little-endian IEEE-754 float32 values
//! (`4 * dim` bytes), the same layout as sqlite-vec's `float[N]` columns.

use rusqlite::types::ValueRef;

use crate::error::{Error, Result};
use crate::row::type_name;

/// Distance metric of a `memories` table.
///
/// Distances follow usearch's definitions so that HNSW results and exact scans agree:
/// * `Cosine`: `1 - a.b / (|a| |b|)`, in `[0, 2]`.
/// * `L2`: Euclidean distance `sqrt(sum((a_i - b_i)^2))` (usearch works on the square,
///   which orders identically).
/// * `Ip`: `1 - a.b` (inner product; meaningful for unit-norm vectors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Cosine distance.
    Cosine,
    /// Euclidean distance.
    L2,
    /// Inner-product distance.
    Ip,
}

impl Metric {
    /// Parses `cosine`, `l2` or `ip` (case-insensitive).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the accepted values.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "cosine" | "cos" => Ok(Metric::Cosine),
            "l2" | "euclidean" => Ok(Metric::L2),
            "ip" | "dot" => Ok(Metric::Ip),
            _ => Err(Error::invalid(format!(
                "metric: expected one of cosine, l2, ip; got '{s}'"
            ))),
        }
    }

    /// The name used in options and in `subcog_info()`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::L2 => "l2",
            Metric::Ip => "ip",
        }
    }

    /// Exact distance between `a` and `b` (same length) under this metric, computed in f64
    /// (so no sum overflows or underflows for vectors [`check`] accepts) and returned as
    /// f32. Cosine distance is clamped to `[0, 2]`; a zero vector (refused on cosine tables
    /// and by `vec_distance`) gives 1, as usearch does.
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Cosine => {
                let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
                for (&x, &y) in a.iter().zip(b) {
                    let (x, y) = (f64::from(x), f64::from(y));
                    dot += x * y;
                    na += x * x;
                    nb += y * y;
                }
                // sqrt(na * nb), not sqrt(na) * sqrt(nb): for a == b it is exactly na, so a
                // vector is at distance exactly 0 from itself.
                let denom = (na * nb).sqrt();
                if denom == 0.0 {
                    1.0
                } else {
                    (1.0 - dot / denom).clamp(0.0, 2.0) as f32
                }
            }
            Metric::L2 => a
                .iter()
                .zip(b)
                .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
                .sum::<f64>()
                .sqrt() as f32,
            Metric::Ip => {
                (1.0 - a
                    .iter()
                    .zip(b)
                    .map(|(&x, &y)| f64::from(x) * f64::from(y))
                    .sum::<f64>()) as f32
            }
        }
    }
}

/// Largest accepted Euclidean norm of a vector: 2^62 (~4.6e18). Any two vectors within it
/// have float32 squared norms, dot products and squared differences below
/// 4 x 2^124 = 2^126 < `f32::MAX` (~2^128), so the float32 kernels of the HNSW graph never
/// overflow; `[3e19, 0, 0, 0]` (squared norm 9e38 > `f32::MAX`) is refused.
pub const MAX_NORM: f64 = 4_611_686_018_427_387_904.0;

/// Checks that `v`'s magnitude is usable: its norm (computed in f64) is at most
/// [`MAX_NORM`], and, for `metric = Some(Cosine)`, not 0 (a zero vector has no direction).
/// Elements are already finite ([`decode`], [`from_json`]).
///
/// # Errors
/// [`Error::Invalid`] starting with `what`: `{what}: vector norm {n:.3e} is too large (at most
/// 2^62 = 4.612e18, beyond which float32 arithmetic overflows)` or `{what}: expected a non-zero
/// vector for metric=cosine, got all zeros`.
pub(crate) fn check(v: &[f32], metric: Option<Metric>, what: &str) -> Result<()> {
    let n = norm64(v);
    if n > MAX_NORM {
        return Err(Error::invalid(format!(
            "{what}: vector norm {n:.3e} is too large (at most 2^62 = {MAX_NORM:.3e}, beyond which float32 arithmetic overflows)"
        )));
    }
    if metric == Some(Metric::Cosine) && n == 0.0 {
        return Err(Error::invalid(format!(
            "{what}: expected a non-zero vector for metric=cosine, got all zeros"
        )));
    }
    Ok(())
}

/// A distance function over two vectors of equal length.
pub(crate) type DistanceFn = fn(&[f32], &[f32]) -> f32;

/// A distance function over two vectors of IEEE-754 binary16 values (as bits).
pub(crate) type HalfDistanceFn = fn(&[u16], &[u16]) -> f32;

/// The inner-product distance `1 - a.b` over binary16 vectors (the HNSW graphs of cosine
/// tables that earlier versions saved hold unit vectors in binary16): AVX-512F, else F16C + AVX2 + FMA, when the CPU
/// has them (chosen at run time), else a portable conversion. AVX-512 took ~15% off the
/// CPU time of a 30k bulk load against AVX2 (AMD EPYC, benches/py/perf_targets.py).
pub(crate) fn half_ip_distance() -> HalfDistanceFn {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return kernels::half_ip_avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            return kernels::half_ip_avx2;
        }
    }
    kernels::half_ip_portable
}

/// A distance function over two int8 vectors.
pub(crate) type I8DistanceFn = fn(&[i8], &[i8]) -> f32;

/// The cosine distance `1 - a.b / (|a| |b|)` of two int8 vectors (the HNSW graph of cosine
/// tables holds usearch's int8 codes of unit vectors, `trunc(127 u_i)`, whose norms differ
/// from 127 by a few percent: hence the norms, not a plain `1 - a.b / 127^2`); the three
/// sums are exact integers. AVX-512 VNNI, else AVX2, when the CPU has them (chosen at run
/// time), else portable; all give the same value. Against AVX2, VNNI made a 100k
/// default-table load 1.24-1.29x faster and its KNN 23-24% cheaper (BENCHMARKS.md, "The
/// graph's int8 kernel on AVX-512 VNNI").
pub(crate) fn i8_cos_distance() -> I8DistanceFn {
    #[cfg(target_arch = "x86_64")]
    {
        if vnni() {
            return kernels::i8_cos_vnni;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return kernels::i8_cos_avx2;
        }
    }
    kernels::i8_cos_portable
}

/// binary16 bits to f32 (exact: every binary16 value is a float32 value).
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        // subnormal: man * 2^-24
        (0, m) => {
            let v = m as f32 / 16_777_216.0;
            return if sign != 0 { -v } else { v };
        }
        (31, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

impl Metric {
    /// The fastest distance function this CPU runs for the HNSW graph, under usearch's
    /// definitions (`Cos`: `1 - a.b / (|a| |b|)`, 0 norms give 1 as usearch does;
    /// `L2sq`: squared Euclidean; `IP`: `1 - a.b`).
    ///
    /// Summation runs in 8 or 16 independent lanes (AVX2 + FMA when the CPU has them,
    /// chosen at run time), so results differ from [`Metric::distance`] in the last bits; the
    /// graph only needs the order. Exact results always come from [`Metric::distance`].
    pub(crate) fn graph_distance(self) -> DistanceFn {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return match self {
                    Metric::Cosine => kernels::cos_avx2,
                    Metric::L2 => kernels::l2sq_avx2,
                    Metric::Ip => kernels::ip_avx2,
                };
            }
        }
        match self {
            Metric::Cosine => kernels::cos_portable,
            Metric::L2 => kernels::l2sq_portable,
            Metric::Ip => kernels::ip_portable,
        }
    }
}

/// A screening distance: `None` when it cannot bound the exact one.
pub(crate) type ScreenFn = fn(&[f32], &[f32]) -> Option<f32>;

/// A fast screen for exact cosine scans: the float32 SIMD cosine distance of `a` and `b`
/// (`[f32; dim]` each), within [`cosine_screen_margin`] of [`Metric::distance`] (which
/// sums in f64), or `None` when a vector's squared norm is below 2^-50 and the bound does
/// not hold (compute the exact distance then). Chosen at run time like
/// [`Metric::graph_distance`].
pub(crate) fn cosine_screen() -> ScreenFn {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return kernels::cos_screen_avx2;
        }
    }
    kernels::cos_screen_portable
}

/// An upper bound on `|cosine_screen(a, b) - Metric::Cosine.distance(a, b)|` for
/// `dim`-dimensional vectors. Float32 sums of `n` products err by at most
/// `gamma_n * sum |a_i b_i|` with `gamma_n ~ n u`, `u = 2^-24` (Higham, *Accuracy and
/// Stability of Numerical Algorithms*, 2nd ed., section 3.1); by Cauchy-Schwarz that is at
/// most `gamma_n |a| |b|` for the dot product, and the two squared norms add about
/// `gamma_n` of relative error to the denominator, so the distance errs by at most about
/// `2 gamma_n` plus a few `u`. Twice that, as margin: `(4 dim + 16) u`.
pub(crate) fn cosine_screen_margin(dim: usize) -> f32 {
    (4 * dim + 16) as f32 * (f32::EPSILON / 2.0)
}

mod kernels;

/// An exact int8 dot product `sum q_i x_i` ([`i8_dot`]): `(q, qb, x, xsum)` with `qb_i =
/// q_i + 128` (as u8) and `xsum = sum x_i`, which the VNNI kernel needs (it multiplies
/// unsigned by signed bytes); the others ignore them.
#[cfg(test)]
pub(crate) type I8DotFn = fn(&[i8], &[u8], &[i8], i32) -> i32;

/// The fastest exact int8 dot product this CPU runs (AVX-512 VNNI, else AVX2, else
/// portable), chosen at run time; all give the same integer.
#[cfg(test)]
pub(crate) fn i8_dot() -> I8DotFn {
    #[cfg(target_arch = "x86_64")]
    {
        if vnni() {
            return kernels::i8_dot_vnni;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return kernels::i8_dot_avx2;
        }
    }
    kernels::i8_dot_portable
}

/// [`i8_dot`] of one query with many vectors: `(q, qb, codes, sums, out)`, `out[i]` the
/// dot product of `q` with the `i`-th vector of `codes` (`q.len()` codes each, `sums[i]`
/// their sum).
pub(crate) type I8DotsFn = fn(&[i8], &[u8], &[i8], &[i32], &mut [i32]);

/// The batch form of [`i8_dot`] (one call per scan, the kernel inlined into its loop).
pub(crate) fn i8_dots() -> I8DotsFn {
    #[cfg(target_arch = "x86_64")]
    {
        if vnni() {
            return kernels::i8_dots_vnni;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return kernels::i8_dots_avx2;
        }
    }
    kernels::i8_dots_portable
}

/// Whether the CPU has AVX-512F, AVX-512BW and AVX-512 VNNI.
#[cfg(target_arch = "x86_64")]
fn vnni() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vnni")
}

/// Decodes a vector BLOB of `dim` little-endian float32 values.
///
/// `what` names the value in error messages (e.g. `"column embedding"`).
///
/// # Errors
/// [`Error::Invalid`] if the length is not `4 * dim` bytes, a value is NaN or infinite, or
/// the norm exceeds [`MAX_NORM`] ([`check`]).
pub fn decode(blob: &[u8], dim: usize, what: &str) -> Result<Vec<f32>> {
    if blob.len() != dim * 4 {
        return Err(Error::invalid(format!(
            "{what}: expected a BLOB of {dim} float32 ({} bytes), got {} bytes{}",
            dim * 4,
            blob.len(),
            if blob.len().is_multiple_of(4) {
                format!(" ({} float32)", blob.len() / 4)
            } else {
                String::new()
            }
        )));
    }
    let v: Vec<f32> = blob
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::invalid(format!(
            "{what}: element {i} is {}, expected a finite float32",
            v[i]
        )));
    }
    check(&v, None, what)?;
    Ok(v)
}

/// Decodes a stored vector BLOB without re-validating finiteness (it was validated on
/// insert). Returns `None` if the length is wrong.
pub(crate) fn decode_stored(blob: &[u8], dim: usize) -> Option<Vec<f32>> {
    if blob.len() != dim * 4 {
        return None;
    }
    Some(
        blob.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// Decodes a vector BLOB of `out.len()` little-endian float32 values into `out` (no
/// allocation, for scans). Returns false, leaving `out` unspecified, when the BLOB has
/// another length.
pub(crate) fn decode_into(blob: &[u8], out: &mut [f32]) -> bool {
    if blob.len() != out.len() * 4 {
        return false;
    }
    for (x, c) in out.iter_mut().zip(blob.chunks_exact(4)) {
        *x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    true
}

/// Encodes a vector as a BLOB of little-endian float32.
pub(crate) fn encode(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Parses a JSON array of numbers (`'[0.1, 0.2]'`) into a vector.
///
/// # Errors
/// [`Error::Invalid`] if the text is not a JSON array of finite float32 numbers (a number
/// beyond float32's range, like `1e39`, is refused), or its norm exceeds [`MAX_NORM`].
pub(crate) fn from_json(text: &str) -> Result<Vec<f32>> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::invalid(format!("vector JSON: {e}; got '{}'", clip(text))))?;
    let arr = value.as_array().ok_or_else(|| {
        Error::invalid(format!(
            "vector JSON: expected an array of numbers, got '{}'",
            clip(text)
        ))
    })?;
    let v = arr
        .iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_f64()
                .map(|f| f as f32)
                .filter(|f| f.is_finite())
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "vector JSON: element {i} is {x}, expected a finite float32 number"
                    ))
                })
        })
        .collect::<Result<Vec<f32>>>()?;
    check(&v, None, "vector JSON")?;
    Ok(v)
}

/// Reads a vector from a SQL value: a BLOB of little-endian float32 or, as TEXT, a JSON
/// array of numbers. With `dim` the vector must have `dim` elements; without, any
/// non-empty BLOB of whole float32 values, or any JSON array. Every element is finite.
///
/// `what` starts every error message (e.g. `"vec_f32(vector)"`, `"embedding MATCH"`).
/// NULL is an error like any other non-vector type: callers that map NULL to NULL (or to
/// no rows) check it first.
///
/// # Errors
/// [`Error::Invalid`]:
/// * without `dim`: a BLOB that is empty or not a multiple of 4 bytes: `{what}: expected a
///   BLOB of float32 (a multiple of 4 bytes), got {n} bytes`; any TEXT is parsed as JSON
///   ([`from_json`]'s `vector JSON: ...` messages); another type: `{what}: expected a BLOB
///   of float32 or a JSON array, got {TYPE}`;
/// * with `dim`: a BLOB of another length ([`decode`]'s message: `{what}: expected a BLOB
///   of {dim} float32 ({4 dim} bytes), got {n} bytes[ ({n/4} float32)]`); a TEXT that
///   starts with `[` is parsed as JSON ([`from_json`]'s messages), then `{what}: expected
///   {dim} numbers, got {n}` for another length; any other TEXT, an INTEGER, a REAL or NULL:
///   `{what}: expected a BLOB of {dim} float32 or a JSON array, got {TYPE}` (`TYPE` is
///   `TEXT`, `INTEGER`, `REAL` or `NULL`);
/// * a BLOB element that is NaN or infinite ([`decode`]'s `{what}: element {i} is {x},
///   expected a finite float32`), or a JSON element that is not a finite number.
pub(crate) fn from_sql(v: ValueRef<'_>, dim: Option<usize>, what: &str) -> Result<Vec<f32>> {
    match (v, dim) {
        (ValueRef::Blob(b), Some(dim)) => decode(b, dim, what),
        (ValueRef::Blob(b), None) => {
            if !b.len().is_multiple_of(4) || b.is_empty() {
                return Err(Error::invalid(format!(
                    "{what}: expected a BLOB of float32 (a multiple of 4 bytes), got {} bytes",
                    b.len()
                )));
            }
            decode(b, b.len() / 4, what)
        }
        (ValueRef::Text(t), None) => from_json(&String::from_utf8_lossy(t)),
        (ValueRef::Text(t), Some(dim)) if t.first() == Some(&b'[') => {
            let v = from_json(&String::from_utf8_lossy(t))?;
            if v.len() != dim {
                return Err(Error::invalid(format!(
                    "{what}: expected {dim} numbers, got {}",
                    v.len()
                )));
            }
            Ok(v)
        }
        (other, Some(dim)) => Err(Error::invalid(format!(
            "{what}: expected a BLOB of {dim} float32 or a JSON array, got {}",
            type_name(&other)
        ))),
        (other, None) => Err(Error::invalid(format!(
            "{what}: expected a BLOB of float32 or a JSON array, got {}",
            type_name(&other)
        ))),
    }
}

/// L2 norm of `v`, summed in f64 (no overflow or underflow of the squares), as f32.
pub(crate) fn norm(v: &[f32]) -> f32 {
    norm64(v) as f32
}

/// L2 norm of `v`, summed and returned in f64.
pub(crate) fn norm64(v: &[f32]) -> f64 {
    v.iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

/// Shortens long user text for error messages.
pub(crate) fn clip(s: &str) -> String {
    if s.chars().count() <= 60 {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(60).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The int8 cosine distance: every kernel this CPU runs gives the portable value, on
    /// extreme codes, odd lengths and zero vectors, and it is the f64 cosine of the codes.
    #[test]
    fn int8_cosine_kernels_agree() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) % 255) as i64 - 127
        };
        let fast = i8_cos_distance();
        for len in [1usize, 15, 16, 17, 63, 64, 65, 100, 128, 384, 1000] {
            for zero in [false, true] {
                // -128 too: the kernels are exact for every int8 value.
                let a: Vec<i8> = (0..len)
                    .map(|i| if i % 7 == 3 { -128 } else { next() as i8 })
                    .collect();
                let b: Vec<i8> = (0..len)
                    .map(|i| {
                        if zero {
                            0
                        } else if i % 3 == 0 {
                            -127
                        } else {
                            next() as i8
                        }
                    })
                    .collect();
                let want = kernels::i8_cos_portable(&a, &b);
                assert_eq!(fast(&a, &b).to_bits(), want.to_bits(), "len {len}");
                #[cfg(target_arch = "x86_64")]
                {
                    if std::arch::is_x86_feature_detected!("avx2") {
                        let got = kernels::i8_cos_avx2(&a, &b);
                        assert_eq!(got.to_bits(), want.to_bits(), "avx2, len {len}");
                    }
                    if vnni() {
                        let got = kernels::i8_cos_vnni(&a, &b);
                        assert_eq!(got.to_bits(), want.to_bits(), "vnni, len {len}");
                    }
                }
                let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
                for (x, y) in a.iter().zip(&b) {
                    let (x, y) = (f64::from(*x), f64::from(*y));
                    ab += x * y;
                    aa += x * x;
                    bb += y * y;
                }
                let exact = if aa * bb > 0.0 {
                    1.0 - ab / (aa * bb).sqrt()
                } else {
                    1.0
                };
                assert!(
                    (f64::from(want) - exact).abs() < 1e-6,
                    "len {len}: {want} vs {exact}"
                );
            }
        }
    }

    /// Every int8 kernel this CPU runs gives the exact integer, on extreme codes and on
    /// lengths that are not multiples of the vector width.
    #[test]
    fn int8_kernels_are_exact() {
        let mut kernels: Vec<I8DotFn> = vec![kernels::i8_dot_portable, i8_dot()];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                kernels.push(kernels::i8_dot_avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
            {
                kernels.push(kernels::i8_dot_vnni);
            }
        }
        for len in [1usize, 7, 16, 63, 64, 127, 128, 384, 385, 1000] {
            for pattern in 0..4 {
                let code = |i: usize, a: usize| -> i8 {
                    match pattern {
                        0 => 127,
                        1 => -127,
                        2 => ((i * a % 255) as i32 - 127) as i8,
                        _ => {
                            if (i + a).is_multiple_of(2) {
                                127
                            } else {
                                -127
                            }
                        }
                    }
                };
                let q: Vec<i8> = (0..len).map(|i| code(i, 37)).collect();
                let x: Vec<i8> = (0..len).map(|i| -code(i, 91)).collect();
                let qb: Vec<u8> = q.iter().map(|&c| (i16::from(c) + 128) as u8).collect();
                let xsum: i32 = x.iter().map(|&c| i32::from(c)).sum();
                let want: i32 = q
                    .iter()
                    .zip(&x)
                    .map(|(&a, &b)| i32::from(a) * i32::from(b))
                    .sum();
                for (n, f) in kernels.iter().enumerate() {
                    assert_eq!(
                        f(&q, &qb, &x, xsum),
                        want,
                        "kernel {n}, len {len}, pattern {pattern}"
                    );
                }
                // The batch kernel over three copies of x.
                let codes: Vec<i8> = x.iter().chain(&x).chain(&x).copied().collect();
                let mut out = [0i32; 3];
                i8_dots()(&q, &qb, &codes, &[xsum; 3], &mut out);
                assert_eq!(out, [want; 3], "batch, len {len}, pattern {pattern}");
            }
        }
    }

    /// The screen of exact cosine scans stays within its margin of the f64 distance, on
    /// vectors of every magnitude the table accepts (components 2^-20 to 2^60), near-parallel,
    /// opposite and orthogonal pairs, and gives up (None) on tiny norms.
    #[test]
    fn cosine_screen_is_within_its_margin() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        let screen = cosine_screen();
        for dim in [3usize, 8, 17, 384, 1536] {
            let margin = cosine_screen_margin(dim);
            let mut worst = 0f32;
            for round in 0..400 {
                let scale_a = 2f32.powi((round % 9) * 10 - 20);
                let scale_b = 2f32.powi(((round / 9) % 9) * 10 - 20);
                let a: Vec<f32> = (0..dim).map(|_| next() as f32 * scale_a).collect();
                let b: Vec<f32> = match round % 4 {
                    0 => a
                        .iter()
                        .map(|x| x / scale_a * scale_b + next() as f32 * 1e-4 * scale_b)
                        .collect(),
                    1 => a.iter().map(|x| -x / scale_a * scale_b).collect(),
                    _ => (0..dim).map(|_| next() as f32 * scale_b).collect(),
                };
                let exact = Metric::Cosine.distance(&a, &b);
                match screen(&a, &b) {
                    Some(fast) => worst = worst.max((fast - exact).abs()),
                    None => {
                        let out =
                            |v: &[f32]| !(2f64.powi(-25)..=2f64.powi(62)).contains(&norm64(v));
                        assert!(out(&a) || out(&b), "gave up on norms the table stores");
                    }
                }
            }
            assert!(
                worst <= margin,
                "dim {dim}: error {worst:e} above the margin {margin:e}"
            );
        }
        let tiny = vec![1e-20f32; 4];
        assert_eq!(screen(&tiny, &[1.0, 0.0, 0.0, 0.0]), None);
    }

    #[test]
    fn round_trip() {
        let v = vec![1.0, -2.5, 3.25];
        assert_eq!(decode(&encode(&v), 3, "x").ok(), Some(v));
    }

    #[test]
    fn wrong_size_names_sizes() {
        let e = decode(&[0u8; 8], 3, "column embedding")
            .err()
            .map(|e| e.to_string());
        let e = e.unwrap_or_default();
        assert!(e.contains("column embedding") && e.contains("12 bytes") && e.contains("got 8"));
    }

    #[test]
    fn nan_rejected() {
        let e = decode(&encode(&[1.0, f32::NAN]), 2, "v")
            .err()
            .map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("element 1"));
        assert!(decode(&encode(&[f32::INFINITY]), 1, "v").is_err());
    }

    #[test]
    fn distances() {
        let a = [1.0, 0.0];
        let b = [0.0, 1.0];
        assert!((Metric::Cosine.distance(&a, &b) - 1.0).abs() < 1e-6);
        assert!((Metric::Cosine.distance(&a, &[2.0, 0.0])).abs() < 1e-6);
        assert!((Metric::L2.distance(&a, &b) - 2f32.sqrt()).abs() < 1e-6);
        assert!((Metric::Ip.distance(&a, &a)).abs() < 1e-6);
    }

    #[test]
    fn graph_distances_agree_with_exact() {
        let a: Vec<f32> = (0..389)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
            .collect();
        let b: Vec<f32> = (0..389)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
            .collect();
        for m in [Metric::Cosine, Metric::L2, Metric::Ip] {
            let exact = match m {
                Metric::L2 => m.distance(&a, &b).powi(2),
                _ => m.distance(&a, &b),
            };
            let g = m.graph_distance()(&a, &b);
            assert!(
                (g - exact).abs() <= 1e-4 * exact.abs().max(1.0),
                "{m:?}: {g} vs {exact}"
            );
        }
        assert_eq!(Metric::Cosine.graph_distance()(&[0.0; 20], &[1.0; 20]), 1.0);
    }

    #[test]
    fn half_precision() {
        // 1.0, -2.0, 0.5, 65504 (max), smallest subnormal, +inf
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3800), 0.5);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 1.0 / 16_777_216.0);
        assert_eq!(f16_to_f32(0x8001), -1.0 / 16_777_216.0);
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        // 0.5 * 0.5 * 20 = 5 -> distance 1 - 5 = -4
        let a = vec![0x3800u16; 20];
        assert_eq!(half_ip_distance()(&a, &a), -4.0);
        assert_eq!(kernels::half_ip_portable(&a, &a), -4.0);
        // every kernel agrees with the portable one on a length with a tail
        let x: Vec<u16> = (0..389u16).map(|i| 0x3000 + (i * 37) % 1024).collect();
        let y: Vec<u16> = (0..389u16).map(|i| 0xb000 + (i * 91) % 1024).collect();
        let want = kernels::half_ip_portable(&x, &y);
        let got = half_ip_distance()(&x, &y);
        assert!(
            (got - want).abs() <= 1e-4 * want.abs().max(1.0),
            "{got} vs {want}"
        );
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            let got = kernels::half_ip_avx2(&x, &y);
            assert!(
                (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                "{got} vs {want}"
            );
        }
    }

    #[test]
    fn json_vectors() {
        assert_eq!(from_json("[1, 2.5]").ok(), Some(vec![1.0, 2.5]));
        assert!(from_json("{\"a\":1}").is_err());
        assert!(from_json("[1, \"x\"]").is_err());
        assert!(from_json("not json").is_err());
    }

    fn err(r: Result<Vec<f32>>) -> String {
        r.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn from_sql_without_dim() {
        let blob = encode(&[1.0, 2.0]);
        let w = "vec_f32(vector)";
        assert_eq!(
            from_sql(ValueRef::Blob(&blob), None, w).ok(),
            Some(vec![1.0, 2.0])
        );
        assert_eq!(
            from_sql(ValueRef::Text(b" [1, 2]"), None, w).ok(),
            Some(vec![1.0, 2.0])
        );
        assert_eq!(
            err(from_sql(ValueRef::Blob(&[0; 6]), None, w)),
            "vec_f32(vector): expected a BLOB of float32 (a multiple of 4 bytes), got 6 bytes"
        );
        assert_eq!(
            err(from_sql(ValueRef::Blob(&[]), None, w)),
            "vec_f32(vector): expected a BLOB of float32 (a multiple of 4 bytes), got 0 bytes"
        );
        assert_eq!(
            err(from_sql(ValueRef::Integer(3), None, w)),
            "vec_f32(vector): expected a BLOB of float32 or a JSON array, got INTEGER"
        );
        assert!(err(from_sql(ValueRef::Text(b"hello"), None, w)).starts_with("vector JSON: "));
        let nan = encode(&[1.0, f32::NAN]);
        assert_eq!(
            err(from_sql(ValueRef::Blob(&nan), None, w)),
            "vec_f32(vector): element 1 is NaN, expected a finite float32"
        );
    }

    #[test]
    fn from_sql_with_dim() {
        let w = "embedding MATCH";
        let blob = encode(&[1.0, 2.0]);
        assert_eq!(
            from_sql(ValueRef::Blob(&blob), Some(2), w).ok(),
            Some(vec![1.0, 2.0])
        );
        assert_eq!(
            from_sql(ValueRef::Text(b"[1,2]"), Some(2), w).ok(),
            Some(vec![1.0, 2.0])
        );
        assert_eq!(
            err(from_sql(ValueRef::Blob(&blob), Some(3), w)),
            "embedding MATCH: expected a BLOB of 3 float32 (12 bytes), got 8 bytes (2 float32)"
        );
        assert_eq!(
            err(from_sql(ValueRef::Text(b"[1,2]"), Some(3), w)),
            "embedding MATCH: expected 3 numbers, got 2"
        );
        assert!(err(from_sql(ValueRef::Text(b"[1,"), Some(3), w)).starts_with("vector JSON: "));
        for (v, t) in [
            (ValueRef::Text(b"cats"), "TEXT"),
            (ValueRef::Text(b" [1,2]"), "TEXT"),
            (ValueRef::Integer(1), "INTEGER"),
            (ValueRef::Real(1.5), "REAL"),
            (ValueRef::Null, "NULL"),
        ] {
            assert_eq!(
                err(from_sql(v, Some(2), w)),
                format!("embedding MATCH: expected a BLOB of 2 float32 or a JSON array, got {t}")
            );
        }
    }

    #[test]
    fn huge_and_tiny_magnitudes() {
        // [3e19, 0, 0, 0]: its float32 squared norm overflows; refused everywhere.
        let huge = encode(&[3e19, 0.0, 0.0, 0.0]);
        let e = err(decode(&huge, 4, "column embedding").map(|_| vec![]));
        assert!(
            e.starts_with(
                "column embedding: vector norm 3.000e19 is too large (at most 2^62 = 4.612e18"
            ),
            "{e}"
        );
        assert!(err(from_json("[3e19, 0, 0, 0]")).contains("too large"));
        assert!(err(from_json("[1e39]")).contains("finite float32"));
        // The largest accepted magnitude: distances stay exact and finite.
        let big = [4e18f32, 0.0, 0.0, 0.0];
        assert!(check(&big, Some(Metric::Cosine), "v").is_ok());
        let par = [1.0f32, 0.0, 0.0, 0.0];
        assert!(Metric::Cosine.distance(&big, &par).abs() < 1e-6);
        assert!(Metric::L2.distance(&big, &par).is_finite());
        assert!(Metric::Ip.distance(&big, &big).is_finite());
        let g = Metric::Cosine.graph_distance()(&big, &par);
        assert!(g.is_finite() && g.abs() < 1e-5, "{g}");
        let g = Metric::L2.graph_distance()(&big, &[-4e18, 0.0, 0.0, 0.0]);
        assert!(g.is_finite(), "{g}");
        // Tiny vectors: their float32 squares underflow, f64 does not.
        let tiny = [1e-30f32, 0.0, 0.0, 0.0];
        assert!(check(&tiny, Some(Metric::Cosine), "v").is_ok());
        assert!(Metric::Cosine.distance(&tiny, &par).abs() < 1e-6);
        assert!(norm(&tiny) > 0.0);
        // A vector is at distance exactly 0 from itself.
        for v in [
            [0.3f32, -0.7, 0.1, 0.9],
            [1e-30, 2e-30, 0.0, 0.0],
            [4e18, 1.0, 0.0, 0.0],
        ] {
            assert_eq!(Metric::Cosine.distance(&v, &v), 0.0, "{v:?}");
        }
        // The zero vector on cosine.
        let e = err(check(&[0.0; 4], Some(Metric::Cosine), "embedding MATCH").map(|_| vec![]));
        assert_eq!(
            e,
            "embedding MATCH: expected a non-zero vector for metric=cosine, got all zeros"
        );
        assert!(check(&[0.0; 4], Some(Metric::L2), "v").is_ok());
    }

    #[test]
    fn metric_parse() {
        assert_eq!(Metric::parse("L2").ok(), Some(Metric::L2));
        assert!(Metric::parse("manhattan").is_err());
    }
}
