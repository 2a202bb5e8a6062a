//! Distance kernels for the HNSW graph: AVX2 + FMA intrinsics (8 floats per register, two
//! independent accumulators), AVX-512F / F16C kernels over binary16 vectors, and portable
//! versions in 8 independent lanes. [`super::Metric::graph_distance`] and
//! [`super::half_ip_distance`] choose among them at run time.

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
    let denom = norms(na, nb);
    if denom == 0.0 { 1.0 } else { 1.0 - d / denom }
}

/// `|a| |b|` from the squared norms: `sqrt(na * nb)`, or `sqrt(na) sqrt(nb)` when the
/// product overflows float32 (norms up to 2^62 are stored; their product is not finite
/// in float32 past 2^64).
fn norms(na: f32, nb: f32) -> f32 {
    let p = na * nb;
    if p.is_finite() {
        p.sqrt()
    } else {
        na.sqrt() * nb.sqrt()
    }
}

/// The float32 cosine distance for a screen ([`super::cosine_screen`]): `None` when a
/// squared norm is below 2^-50 (then products of small components lose precision and the
/// screen's error bound no longer holds; the caller computes the exact distance).
fn cos_screen_from(d: f32, na: f32, nb: f32) -> Option<f32> {
    const MIN: f32 = 1.0 / (1u64 << 50) as f32;
    (na >= MIN && nb >= MIN && na.is_finite() && nb.is_finite()).then(|| 1.0 - d / norms(na, nb))
}

pub fn cos_screen_portable(a: &[f32], b: &[f32]) -> Option<f32> {
    let (d, na, nb) = dot3(a, b);
    cos_screen_from(d, na, nb)
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
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
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
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
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

/// The cosine distance `1 - a.b / (|a| |b|)` from the exact integer sums `(a.b, a.a, b.b)`
/// of two int8 vectors; 1 when either is zero.
fn cos_from_i32(ab: i32, aa: i32, bb: i32) -> f32 {
    let n = f64::from(aa) * f64::from(bb);
    if n > 0.0 {
        (1.0 - f64::from(ab) / n.sqrt()) as f32
    } else {
        1.0
    }
}

/// The cosine distance of two int8 vectors (the codes usearch makes of unit vectors,
/// `trunc(127 u_i)`), portable.
pub fn i8_cos_portable(a: &[i8], b: &[i8]) -> f32 {
    let (ab, aa, bb) = i8_dot3_portable(a, b);
    cos_from_i32(ab, aa, bb)
}

/// `(a.b, a.a, b.b)` of two int8 vectors (exact int32 up to 2^16 elements), portable: the
/// fallback kernel and the SIMD kernels' tails.
#[inline]
pub fn i8_dot3_portable(a: &[i8], b: &[i8]) -> (i32, i32, i32) {
    let (mut ab, mut aa, mut bb) = (0i32, 0i32, 0i32);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (i32::from(*x), i32::from(*y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    (ab, aa, bb)
}

/// SAFETY: handed out by `i8_cos_distance` only after AVX2 was detected.
#[cfg(target_arch = "x86_64")]
pub fn i8_cos_avx2(a: &[i8], b: &[i8]) -> f32 {
    // SAFETY: AVX2 was detected before this was handed out (see above).
    let (ab, aa, bb) = unsafe { i8x::dot3_avx2(a, b) };
    cos_from_i32(ab, aa, bb)
}

/// SAFETY: handed out by `i8_cos_distance` only after AVX-512F, AVX-512BW and AVX-512
/// VNNI were detected.
#[cfg(target_arch = "x86_64")]
pub fn i8_cos_vnni(a: &[i8], b: &[i8]) -> f32 {
    // SAFETY: AVX-512F/BW/VNNI were detected before this was handed out (see above).
    let (ab, aa, bb) = unsafe { i8x::dot3_vnni(a, b) };
    cos_from_i32(ab, aa, bb)
}

/// SAFETY: handed out by `half_ip_distance` only after AVX-512F was detected.
#[cfg(target_arch = "x86_64")]
pub fn half_ip_avx512(a: &[u16], b: &[u16]) -> f32 {
    // SAFETY: AVX-512F was detected before this function was handed out (see above).
    1.0 - unsafe { avx512::dot(a, b) }
}

/// SAFETY: handed out by `half_ip_distance` only after AVX2, FMA and F16C were detected.
#[cfg(target_arch = "x86_64")]
pub fn half_ip_avx2(a: &[u16], b: &[u16]) -> f32 {
    // SAFETY: AVX2, FMA and F16C were detected before this was handed out (see above).
    1.0 - unsafe { f16c::dot(a, b) }
}

// SAFETY (the four below): `Metric::graph_distance` and `cosine_screen` hand these out only after
// `is_x86_feature_detected!` confirmed AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
pub fn cos_avx2(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: AVX2 and FMA were detected before this was handed out (see above).
    let (d, na, nb) = unsafe { avx2::dot3(a, b) };
    cos_from(d, na, nb)
}
#[cfg(target_arch = "x86_64")]
pub fn cos_screen_avx2(a: &[f32], b: &[f32]) -> Option<f32> {
    // SAFETY: AVX2 and FMA were detected before this was handed out (see above).
    let (d, na, nb) = unsafe { avx2::dot3(a, b) };
    cos_screen_from(d, na, nb)
}
#[cfg(target_arch = "x86_64")]
pub fn l2sq_avx2(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: AVX2 and FMA were detected before this was handed out (see above).
    unsafe { avx2::l2sq(a, b) }
}
#[cfg(target_arch = "x86_64")]
pub fn ip_avx2(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: AVX2 and FMA were detected before this was handed out (see above).
    1.0 - unsafe { avx2::dot(a, b) }
}

/// `sum q_i x_i` of two int8 vectors of the same length, exactly (i32; `|q_i|, |x_i| <=
/// 127` and at most 2^16 elements cannot overflow). `qb` (the query biased by 128 as u8)
/// and `xsum` (`sum x_i`) are unused here (see `i8_dot_vnni`).
pub fn i8_dot_portable(q: &[i8], _qb: &[u8], x: &[i8], _xsum: i32) -> i32 {
    q.iter()
        .zip(x)
        .map(|(&a, &b)| i32::from(a) * i32::from(b))
        .sum()
}

#[cfg(target_arch = "x86_64")]
mod i8x {
    use std::arch::x86_64::*;

    /// `sum q_i x_i`: 16 int8 widened to int16 per step, pairs multiplied and added into
    /// int32 lanes (`vpmaddwd`: exact, |q_i x_i| <= 127^2).
    #[target_feature(enable = "avx2")]
    pub fn dot_avx2(q: &[i8], x: &[i8]) -> i32 {
        let n = q.len().min(x.len());
        let (pq, px) = (q.as_ptr(), x.as_ptr());
        let (mut s0, mut s1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let mut i = 0;
        // SAFETY: each load reads 16 bytes at i or i + 16 with i + 32 <= n (or i + 16 <= n
        // below), inside both slices.
        unsafe {
            while i + 32 <= n {
                let a0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pq.add(i) as *const __m128i));
                let b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(px.add(i) as *const __m128i));
                let a1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pq.add(i + 16) as *const __m128i));
                let b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(px.add(i + 16) as *const __m128i));
                s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(a0, b0));
                s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(a1, b1));
                i += 32;
            }
            while i + 16 <= n {
                let a0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(pq.add(i) as *const __m128i));
                let b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(px.add(i) as *const __m128i));
                s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(a0, b0));
                i += 16;
            }
        }
        let s = _mm256_add_epi32(s0, s1);
        let lo = _mm256_castsi256_si128(s);
        let hi = _mm256_extracti128_si256(s, 1);
        let t = _mm_add_epi32(lo, hi);
        let t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0b01_00_11_10));
        let t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0b10_11_00_01));
        let mut r = _mm_cvtsi128_si32(t);
        for (a, b) in q[i..n].iter().zip(&x[i..n]) {
            r += i32::from(*a) * i32::from(*b);
        }
        r
    }

    /// `sum qb_i x_i` (`qb` unsigned, `x` signed; `vpdpbusd`, 64 per step, exact: each
    /// int32 lane adds at most `n / 16` products of magnitude <= 255 * 127).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub fn dot_vnni(qb: &[u8], x: &[i8]) -> i32 {
        let n = qb.len().min(x.len());
        let (pq, px) = (qb.as_ptr(), x.as_ptr());
        let (mut s0, mut s1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        let mut i = 0;
        // SAFETY: each load reads 64 bytes at i or i + 64 with i + 128 <= n (or i + 64 <=
        // n below), inside both slices.
        unsafe {
            while i + 128 <= n {
                let a0 = _mm512_loadu_si512(pq.add(i) as *const _);
                let b0 = _mm512_loadu_si512(px.add(i) as *const _);
                let a1 = _mm512_loadu_si512(pq.add(i + 64) as *const _);
                let b1 = _mm512_loadu_si512(px.add(i + 64) as *const _);
                s0 = _mm512_dpbusd_epi32(s0, a0, b0);
                s1 = _mm512_dpbusd_epi32(s1, a1, b1);
                i += 128;
            }
            while i + 64 <= n {
                let a0 = _mm512_loadu_si512(pq.add(i) as *const _);
                let b0 = _mm512_loadu_si512(px.add(i) as *const _);
                s0 = _mm512_dpbusd_epi32(s0, a0, b0);
                i += 64;
            }
        }
        let mut r = _mm512_reduce_add_epi32(_mm512_add_epi32(s0, s1));
        for (a, b) in qb[i..n].iter().zip(&x[i..n]) {
            r += i32::from(*a) * i32::from(*b);
        }
        r
    }

    /// `(a.b, a.a, b.b)` of two int8 vectors in one pass (`vpmaddwd`, exact int32: at most
    /// 2^16 products of magnitude <= 127^2 per sum).
    #[target_feature(enable = "avx2")]
    pub fn dot3_avx2(a: &[i8], b: &[i8]) -> (i32, i32, i32) {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut ab, mut aa, mut bb) = (
            _mm256_setzero_si256(),
            _mm256_setzero_si256(),
            _mm256_setzero_si256(),
        );
        let mut i = 0;
        // SAFETY: each load reads 16 bytes at i with i + 16 <= n, inside both slices.
        unsafe {
            while i + 16 <= n {
                let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(pa.add(i) as *const __m128i));
                let y = _mm256_cvtepi8_epi16(_mm_loadu_si128(pb.add(i) as *const __m128i));
                ab = _mm256_add_epi32(ab, _mm256_madd_epi16(x, y));
                aa = _mm256_add_epi32(aa, _mm256_madd_epi16(x, x));
                bb = _mm256_add_epi32(bb, _mm256_madd_epi16(y, y));
                i += 16;
            }
        }
        let sum = |s: __m256i| -> i32 {
            let t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            let t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0b01_00_11_10));
            let t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0b10_11_00_01));
            _mm_cvtsi128_si32(t)
        };
        let (tab, taa, tbb) = super::i8_dot3_portable(&a[i..n], &b[i..n]);
        (sum(ab) + tab, sum(aa) + taa, sum(bb) + tbb)
    }

    /// `(a.b, a.a, b.b)` of two int8 vectors in one pass with `vpdpbusd` (unsigned x
    /// signed bytes, four products summed into each int32 lane, 64 bytes per step):
    /// `ua = a + 128` as u8 (`a XOR 0x80`), then `a.b = ua.b - 128 sum b`, `a.a = ua.a -
    /// 128 sum a`, `b.b = ub.b - 128 sum b`, the sums as `1.a` and `1.b`. Exact int32: a
    /// lane adds at most `n / 16` products of magnitude <= 255 * 128 (n <= 2^16).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub fn dot3_vnni(a: &[i8], b: &[i8]) -> (i32, i32, i32) {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let bias = _mm512_set1_epi8(-128);
        let ones = _mm512_set1_epi8(1);
        let z = _mm512_setzero_si512;
        let (mut uab, mut uaa, mut ubb, mut sa, mut sb) = (z(), z(), z(), z(), z());
        let mut i = 0;
        // SAFETY: each load reads 64 bytes at i with i + 64 <= n, inside both slices.
        unsafe {
            while i + 64 <= n {
                let x = _mm512_loadu_si512(pa.add(i) as *const _);
                let y = _mm512_loadu_si512(pb.add(i) as *const _);
                let ux = _mm512_xor_si512(x, bias);
                let uy = _mm512_xor_si512(y, bias);
                uab = _mm512_dpbusd_epi32(uab, ux, y);
                uaa = _mm512_dpbusd_epi32(uaa, ux, x);
                ubb = _mm512_dpbusd_epi32(ubb, uy, y);
                sa = _mm512_dpbusd_epi32(sa, ones, x);
                sb = _mm512_dpbusd_epi32(sb, ones, y);
                i += 64;
            }
        }
        let (sa, sb) = (_mm512_reduce_add_epi32(sa), _mm512_reduce_add_epi32(sb));
        let (tab, taa, tbb) = super::i8_dot3_portable(&a[i..n], &b[i..n]);
        (
            _mm512_reduce_add_epi32(uab) - 128 * sb + tab,
            _mm512_reduce_add_epi32(uaa) - 128 * sa + taa,
            _mm512_reduce_add_epi32(ubb) - 128 * sb + tbb,
        )
    }

    /// [`dot_avx2`] of `q` with each vector of `codes` (`q.len()` codes each) into `out`.
    #[target_feature(enable = "avx2")]
    pub fn dots_avx2(q: &[i8], codes: &[i8], out: &mut [i32]) {
        let dim = q.len().max(1);
        for (o, x) in out.iter_mut().zip(codes.chunks_exact(dim)) {
            *o = dot_avx2(q, x);
        }
    }

    /// `sum (qb_j - 128) x_ij` of each vector of `codes` (`qb.len()` codes each; `sums[i] =
    /// sum x_ij`) into `out`: [`dot_vnni`] inlined into one loop.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub fn dots_vnni(qb: &[u8], codes: &[i8], sums: &[i32], out: &mut [i32]) {
        let dim = qb.len().max(1);
        for ((o, x), s) in out.iter_mut().zip(codes.chunks_exact(dim)).zip(sums) {
            *o = dot_vnni(qb, x) - 128 * *s;
        }
    }
}

/// SAFETY: handed out by `i8_dot` only after AVX2 was detected.
#[cfg(all(test, target_arch = "x86_64"))]
pub fn i8_dot_avx2(q: &[i8], _qb: &[u8], x: &[i8], _xsum: i32) -> i32 {
    // SAFETY: AVX2 was detected before this was handed out (see above).
    unsafe { i8x::dot_avx2(q, x) }
}

/// SAFETY: handed out by `i8_dot` only after AVX-512F, AVX-512BW and AVX-512 VNNI were
/// detected. `sum (q_i + 128) x_i - 128 sum x_i = sum q_i x_i`, `qb_i = q_i + 128`.
#[cfg(all(test, target_arch = "x86_64"))]
pub fn i8_dot_vnni(_q: &[i8], qb: &[u8], x: &[i8], xsum: i32) -> i32 {
    // SAFETY: AVX-512F/BW/VNNI were detected before this was handed out (see above).
    let biased = unsafe { i8x::dot_vnni(qb, x) };
    biased - 128 * xsum
}

/// `out[i] = sum q_j x_ij` for each vector `x_i` of `codes` (`out.len()` vectors of
/// `q.len()` codes each), exactly; `qb` and `sums` as in `i8_dot_vnni`.
pub fn i8_dots_portable(q: &[i8], qb: &[u8], codes: &[i8], sums: &[i32], out: &mut [i32]) {
    let dim = q.len().max(1);
    for ((o, x), s) in out.iter_mut().zip(codes.chunks_exact(dim)).zip(sums) {
        *o = i8_dot_portable(q, qb, x, *s);
    }
}

/// SAFETY: handed out by `i8_dots` only after AVX2 was detected.
#[cfg(target_arch = "x86_64")]
pub fn i8_dots_avx2(q: &[i8], _qb: &[u8], codes: &[i8], _sums: &[i32], out: &mut [i32]) {
    // SAFETY: AVX2 was detected before this was handed out (see above).
    unsafe { i8x::dots_avx2(q, codes, out) }
}

/// SAFETY: handed out by `i8_dots` only after AVX-512F, AVX-512BW and AVX-512 VNNI were
/// detected.
#[cfg(target_arch = "x86_64")]
pub fn i8_dots_vnni(_q: &[i8], qb: &[u8], codes: &[i8], sums: &[i32], out: &mut [i32]) {
    // SAFETY: AVX-512F/BW/VNNI were detected before this was handed out (see above).
    unsafe { i8x::dots_vnni(qb, codes, sums, out) }
}
