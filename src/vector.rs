//! Vectors: the BLOB encoding, validation, and the exact distance functions.
//!
//! A vector is stored as a BLOB of `dim` little-endian IEEE-754 float32 values
//! (`4 * dim` bytes), the same layout as sqlite-vec's `float[N]` columns.

use crate::error::{Error, Result};

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

    /// Exact distance between `a` and `b` (same length) under this metric.
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Cosine => {
                let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
                for (x, y) in a.iter().zip(b) {
                    dot += x * y;
                    na += x * x;
                    nb += y * y;
                }
                let denom = (na * nb).sqrt();
                if denom == 0.0 { 1.0 } else { 1.0 - dot / denom }
            }
            Metric::L2 => a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f32>()
                .sqrt(),
            Metric::Ip => 1.0 - a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>(),
        }
    }
}

/// A distance function over two vectors of equal length.
pub type DistanceFn = fn(&[f32], &[f32]) -> f32;

/// A distance function over two vectors of IEEE-754 binary16 values (as bits).
pub type HalfDistanceFn = fn(&[u16], &[u16]) -> f32;

/// The inner-product distance `1 - a.b` over binary16 vectors (the HNSW graph of cosine
/// tables holds unit vectors in binary16): AVX-512F, else F16C + AVX2 + FMA, when the CPU
/// has them (chosen at run time), else a portable conversion. AVX-512 took ~15% off the
/// CPU time of a 30k bulk load against AVX2 (AMD EPYC, scripts/perf_targets.py).
pub fn half_ip_distance() -> HalfDistanceFn {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return lanes::half_ip_avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            return lanes::half_ip_avx2;
        }
    }
    lanes::half_ip_portable
}

/// binary16 bits to f32 (exact: every binary16 value is a float32 value).
pub fn f16_to_f32(h: u16) -> f32 {
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
    pub fn graph_distance(self) -> DistanceFn {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return match self {
                    Metric::Cosine => lanes::cos_avx2,
                    Metric::L2 => lanes::l2sq_avx2,
                    Metric::Ip => lanes::ip_avx2,
                };
            }
        }
        match self {
            Metric::Cosine => lanes::cos_portable,
            Metric::L2 => lanes::l2sq_portable,
            Metric::Ip => lanes::ip_portable,
        }
    }
}

/// Distance kernels: AVX2 + FMA intrinsics (8 floats per register, two independent
/// accumulators), and a portable version in 8 independent lanes.
mod lanes {
    const L: usize = 8;

    /// `(a.b, a.a, b.b)` in 8 lanes.
    fn dot3(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
        let (mut d, mut na, mut nb) = ([0f32; L], [0f32; L], [0f32; L]);
        let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            if let (Ok(x), Ok(y)) = (<&[f32; L]>::try_from(x), <&[f32; L]>::try_from(y)) {
                for i in 0..L {
                    d[i] += x[i] * y[i];
                    na[i] += x[i] * x[i];
                    nb[i] += y[i] * y[i];
                }
            }
        }
        let (mut sd, mut sa, mut sb) = (
            d.iter().sum::<f32>(),
            na.iter().sum::<f32>(),
            nb.iter().sum::<f32>(),
        );
        for (x, y) in ra.iter().zip(rb) {
            sd += x * y;
            sa += x * x;
            sb += y * y;
        }
        (sd, sa, sb)
    }

    fn cos_from(d: f32, na: f32, nb: f32) -> f32 {
        let denom = (na * nb).sqrt();
        if denom == 0.0 { 1.0 } else { 1.0 - d / denom }
    }

    pub fn cos_portable(a: &[f32], b: &[f32]) -> f32 {
        let (d, na, nb) = dot3(a, b);
        cos_from(d, na, nb)
    }

    pub fn l2sq_portable(a: &[f32], b: &[f32]) -> f32 {
        let mut d = [0f32; L];
        let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            if let (Ok(x), Ok(y)) = (<&[f32; L]>::try_from(x), <&[f32; L]>::try_from(y)) {
                for i in 0..L {
                    let t = x[i] - y[i];
                    d[i] += t * t;
                }
            }
        }
        d.iter().sum::<f32>()
            + ra.iter()
                .zip(rb)
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f32>()
    }

    pub fn ip_portable(a: &[f32], b: &[f32]) -> f32 {
        1.0 - dot3(a, b).0
    }

    #[cfg(target_arch = "x86_64")]
    mod avx2 {
        use std::arch::x86_64::*;

        #[target_feature(enable = "avx2,fma")]
        fn hsum(v: __m256) -> f32 {
            let lo = _mm256_castps256_ps128(v);
            let hi = _mm256_extractf128_ps(v, 1);
            let s = _mm_add_ps(lo, hi);
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
            _mm_cvtss_f32(s)
        }

        /// `(a.b, a.a, b.b)`; `a` and `b` have the same length.
        #[target_feature(enable = "avx2,fma")]
        pub fn dot3(a: &[f32], b: &[f32]) -> (f32, f32, f32) {
            let n = a.len().min(b.len());
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let (mut d0, mut d1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let (mut b0, mut b1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut i = 0;
            // SAFETY: every load reads 8 floats at i or i + 8 with i + 16 <= n (or
            // i + 8 <= n below), inside both slices.
            unsafe {
                while i + 16 <= n {
                    let x0 = _mm256_loadu_ps(pa.add(i));
                    let y0 = _mm256_loadu_ps(pb.add(i));
                    let x1 = _mm256_loadu_ps(pa.add(i + 8));
                    let y1 = _mm256_loadu_ps(pb.add(i + 8));
                    d0 = _mm256_fmadd_ps(x0, y0, d0);
                    d1 = _mm256_fmadd_ps(x1, y1, d1);
                    a0 = _mm256_fmadd_ps(x0, x0, a0);
                    a1 = _mm256_fmadd_ps(x1, x1, a1);
                    b0 = _mm256_fmadd_ps(y0, y0, b0);
                    b1 = _mm256_fmadd_ps(y1, y1, b1);
                    i += 16;
                }
                if i + 8 <= n {
                    let x0 = _mm256_loadu_ps(pa.add(i));
                    let y0 = _mm256_loadu_ps(pb.add(i));
                    d0 = _mm256_fmadd_ps(x0, y0, d0);
                    a0 = _mm256_fmadd_ps(x0, x0, a0);
                    b0 = _mm256_fmadd_ps(y0, y0, b0);
                    i += 8;
                }
            }
            let (mut d, mut sa, mut sb) = (
                hsum(_mm256_add_ps(d0, d1)),
                hsum(_mm256_add_ps(a0, a1)),
                hsum(_mm256_add_ps(b0, b1)),
            );
            for (x, y) in a[i..n].iter().zip(&b[i..n]) {
                d += x * y;
                sa += x * x;
                sb += y * y;
            }
            (d, sa, sb)
        }

        /// `a.b`; `a` and `b` have the same length.
        #[target_feature(enable = "avx2,fma")]
        pub fn dot(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len().min(b.len());
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let (mut s2, mut s3) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut i = 0;
            // SAFETY: as in `dot3`.
            unsafe {
                while i + 32 <= n {
                    s0 =
                        _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
                    s1 = _mm256_fmadd_ps(
                        _mm256_loadu_ps(pa.add(i + 8)),
                        _mm256_loadu_ps(pb.add(i + 8)),
                        s1,
                    );
                    s2 = _mm256_fmadd_ps(
                        _mm256_loadu_ps(pa.add(i + 16)),
                        _mm256_loadu_ps(pb.add(i + 16)),
                        s2,
                    );
                    s3 = _mm256_fmadd_ps(
                        _mm256_loadu_ps(pa.add(i + 24)),
                        _mm256_loadu_ps(pb.add(i + 24)),
                        s3,
                    );
                    i += 32;
                }
                while i + 8 <= n {
                    s0 =
                        _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
                    i += 8;
                }
            }
            let mut s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
            for (x, y) in a[i..n].iter().zip(&b[i..n]) {
                s += x * y;
            }
            s
        }

        /// Squared Euclidean distance; `a` and `b` have the same length.
        #[target_feature(enable = "avx2,fma")]
        pub fn l2sq(a: &[f32], b: &[f32]) -> f32 {
            let n = a.len().min(b.len());
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut i = 0;
            // SAFETY: as in `dot3`.
            unsafe {
                while i + 16 <= n {
                    let t0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                    let t1 = _mm256_sub_ps(
                        _mm256_loadu_ps(pa.add(i + 8)),
                        _mm256_loadu_ps(pb.add(i + 8)),
                    );
                    s0 = _mm256_fmadd_ps(t0, t0, s0);
                    s1 = _mm256_fmadd_ps(t1, t1, s1);
                    i += 16;
                }
            }
            let mut s = hsum(_mm256_add_ps(s0, s1));
            for (x, y) in a[i..n].iter().zip(&b[i..n]) {
                s += (x - y) * (x - y);
            }
            s
        }
    }

    pub fn half_ip_portable(a: &[u16], b: &[u16]) -> f32 {
        let mut d = [0f32; L];
        let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
        let (ra, rb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for i in 0..L.min(x.len()).min(y.len()) {
                d[i] += super::f16_to_f32(x[i]) * super::f16_to_f32(y[i]);
            }
        }
        let tail: f32 = ra
            .iter()
            .zip(rb)
            .map(|(x, y)| super::f16_to_f32(*x) * super::f16_to_f32(*y))
            .sum();
        1.0 - (d.iter().sum::<f32>() + tail)
    }

    #[cfg(target_arch = "x86_64")]
    mod f16c {
        use std::arch::x86_64::*;

        /// `a.b` of binary16 vectors of the same length.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub fn dot(a: &[u16], b: &[u16]) -> f32 {
            let n = a.len().min(b.len());
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut i = 0;
            // SAFETY: each load reads 8 binary16 values at i or i + 8 with i + 16 <= n
            // (or i + 8 <= n below), inside both slices.
            unsafe {
                while i + 16 <= n {
                    let x0 = _mm256_cvtph_ps(_mm_loadu_si128(pa.add(i) as *const __m128i));
                    let y0 = _mm256_cvtph_ps(_mm_loadu_si128(pb.add(i) as *const __m128i));
                    let x1 = _mm256_cvtph_ps(_mm_loadu_si128(pa.add(i + 8) as *const __m128i));
                    let y1 = _mm256_cvtph_ps(_mm_loadu_si128(pb.add(i + 8) as *const __m128i));
                    s0 = _mm256_fmadd_ps(x0, y0, s0);
                    s1 = _mm256_fmadd_ps(x1, y1, s1);
                    i += 16;
                }
                while i + 8 <= n {
                    let x0 = _mm256_cvtph_ps(_mm_loadu_si128(pa.add(i) as *const __m128i));
                    let y0 = _mm256_cvtph_ps(_mm_loadu_si128(pb.add(i) as *const __m128i));
                    s0 = _mm256_fmadd_ps(x0, y0, s0);
                    i += 8;
                }
            }
            let v = _mm256_add_ps(s0, s1);
            let lo = _mm256_castps256_ps128(v);
            let hi = _mm256_extractf128_ps(v, 1);
            let q = _mm_add_ps(lo, hi);
            let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
            let q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
            let mut s = _mm_cvtss_f32(q);
            for (x, y) in a[i..n].iter().zip(&b[i..n]) {
                s += super::super::f16_to_f32(*x) * super::super::f16_to_f32(*y);
            }
            s
        }
    }

    #[cfg(target_arch = "x86_64")]
    mod avx512 {
        use std::arch::x86_64::*;

        /// `a.b` of binary16 vectors of the same length, 16 lanes per register.
        #[target_feature(enable = "avx512f")]
        pub fn dot(a: &[u16], b: &[u16]) -> f32 {
            let n = a.len().min(b.len());
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            let mut i = 0;
            // SAFETY: each load reads 16 binary16 values at i or i + 16 with i + 32 <= n
            // (or i + 16 <= n below), inside both slices.
            unsafe {
                while i + 32 <= n {
                    let x0 = _mm512_cvtph_ps(_mm256_loadu_si256(pa.add(i) as *const __m256i));
                    let y0 = _mm512_cvtph_ps(_mm256_loadu_si256(pb.add(i) as *const __m256i));
                    let x1 = _mm512_cvtph_ps(_mm256_loadu_si256(pa.add(i + 16) as *const __m256i));
                    let y1 = _mm512_cvtph_ps(_mm256_loadu_si256(pb.add(i + 16) as *const __m256i));
                    s0 = _mm512_fmadd_ps(x0, y0, s0);
                    s1 = _mm512_fmadd_ps(x1, y1, s1);
                    i += 32;
                }
                while i + 16 <= n {
                    let x0 = _mm512_cvtph_ps(_mm256_loadu_si256(pa.add(i) as *const __m256i));
                    let y0 = _mm512_cvtph_ps(_mm256_loadu_si256(pb.add(i) as *const __m256i));
                    s0 = _mm512_fmadd_ps(x0, y0, s0);
                    i += 16;
                }
            }
            let mut s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
            for (x, y) in a[i..n].iter().zip(&b[i..n]) {
                s += super::super::f16_to_f32(*x) * super::super::f16_to_f32(*y);
            }
            s
        }
    }

    /// SAFETY: handed out by `half_ip_distance` only after AVX-512F was detected.
    #[cfg(target_arch = "x86_64")]
    pub fn half_ip_avx512(a: &[u16], b: &[u16]) -> f32 {
        1.0 - unsafe { avx512::dot(a, b) }
    }

    /// SAFETY: handed out by `half_ip_distance` only after AVX2, FMA and F16C were detected.
    #[cfg(target_arch = "x86_64")]
    pub fn half_ip_avx2(a: &[u16], b: &[u16]) -> f32 {
        1.0 - unsafe { f16c::dot(a, b) }
    }

    // SAFETY (the three below): `Metric::graph_distance` hands these out only after
    // `is_x86_feature_detected!` confirmed AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    pub fn cos_avx2(a: &[f32], b: &[f32]) -> f32 {
        let (d, na, nb) = unsafe { avx2::dot3(a, b) };
        cos_from(d, na, nb)
    }
    #[cfg(target_arch = "x86_64")]
    pub fn l2sq_avx2(a: &[f32], b: &[f32]) -> f32 {
        unsafe { avx2::l2sq(a, b) }
    }
    #[cfg(target_arch = "x86_64")]
    pub fn ip_avx2(a: &[f32], b: &[f32]) -> f32 {
        1.0 - unsafe { avx2::dot(a, b) }
    }
}

/// Decodes a vector BLOB of `dim` little-endian float32 values.
///
/// `what` names the value in error messages (e.g. `"column embedding"`).
///
/// # Errors
/// [`Error::Invalid`] if the length is not `4 * dim` bytes or a value is NaN or infinite.
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
    Ok(v)
}

/// Decodes a stored vector BLOB without re-validating finiteness (it was validated on
/// insert). Returns `None` if the length is wrong.
pub fn decode_stored(blob: &[u8], dim: usize) -> Option<Vec<f32>> {
    if blob.len() != dim * 4 {
        return None;
    }
    Some(
        blob.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// Encodes a vector as a BLOB of little-endian float32.
pub fn encode(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Parses a JSON array of numbers (`'[0.1, 0.2]'`) into a vector.
///
/// # Errors
/// [`Error::Invalid`] if the text is not a JSON array of finite numbers.
pub fn from_json(text: &str) -> Result<Vec<f32>> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::invalid(format!("vector JSON: {e}; got '{}'", clip(text))))?;
    let arr = value.as_array().ok_or_else(|| {
        Error::invalid(format!(
            "vector JSON: expected an array of numbers, got '{}'",
            clip(text)
        ))
    })?;
    arr.iter()
        .enumerate()
        .map(|(i, x)| {
            x.as_f64()
                .map(|f| f as f32)
                .filter(|f| f.is_finite())
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "vector JSON: element {i} is {x}, expected a finite number"
                    ))
                })
        })
        .collect()
}

/// L2 norm of `v`.
pub fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// Shortens long user text for error messages.
pub fn clip(s: &str) -> String {
    if s.chars().count() <= 60 {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(60).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(lanes::half_ip_portable(&a, &a), -4.0);
        // every kernel agrees with the portable one on a length with a tail
        let x: Vec<u16> = (0..389u16).map(|i| 0x3000 + (i * 37) % 1024).collect();
        let y: Vec<u16> = (0..389u16).map(|i| 0xb000 + (i * 91) % 1024).collect();
        let want = lanes::half_ip_portable(&x, &y);
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
            let got = lanes::half_ip_avx2(&x, &y);
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

    #[test]
    fn metric_parse() {
        assert_eq!(Metric::parse("L2").ok(), Some(Metric::L2));
        assert!(Metric::parse("manhattan").is_err());
    }
}
