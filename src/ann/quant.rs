//! The exact scan of mid-size cosine tables: int8 codes of the vectors the HNSW snapshot
//! holds, screened with a proven error bound per vector, and the exact distance of the few
//! whose bound can still reach the top k. The same codes ([`Codes`]) screen the small
//! sets' kept blocks from their second scan on ([`super::block::Block::codes`]) and the
//! pending ids' vectors of larger tables ([`super::block::PendingBlock`]).
//!
//! **What it holds.** For the snapshot of one `generation`, every id that was not pending
//! when the block was read, with its stored vector `x` as int8 codes of `u = x / |x|`:
//! `s = max |u_i| / 127`, `c_i = round(u_i / s)`, and two bounds computed in f64, `|s c|`
//! and `|u - s c|`. By the invariant of [`super`] those ids' vectors stay the snapshot's
//! for as long as the generation does, whatever else changes: a search skips the ids
//! pending now (they are scanned exactly from their rows, as beside the graph) and the
//! block stays valid until a checkpoint draws a new generation. It is read only outside
//! transactions (a block read inside one could leave out an id that a ROLLBACK makes
//! unpending again); it is used inside them as well.
//!
//! **Why it is exact.** The query `v = q / |q|` is coded the same way (`t`, `p`,
//! `w = v - t p`). Then `u.v = s t (c.p) + s c.w + (u - s c).v`, so the cosine similarity
//! lies within `|s c| |w| + |u - s c| + EPS` of `s t (c.p)` (Cauchy-Schwarz; `c.p` is an
//! exact integer; [`EPS`] covers every float rounding, of these sums and of the exact
//! distance's own f32 result). With `lo`/`hi` these intervals and `L` the k-th largest
//! `lo`, the k best have similarity at least `L`, so a vector with `hi < L` is neither
//! among them nor tied with the k-th: only the others get their exact distance
//! ([`crate::vector::Metric::distance`], from their stored rows). On MiniLM vectors that is
//! about 20 of 10,000 per query (p90 30).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use crate::error::Result;
use crate::store::Store;
use crate::vector;

/// Covers every float rounding around the bound: f32 products and sums of a few terms
/// near 1 (about 1e-7), the f64 normalisation (1e-15) and the f32 rounding of the exact
/// distance (6e-8); the bound's own terms are at least 1e-3 on 384-d vectors.
const EPS: f32 = 1e-5;

/// One vector's code: `scale = s`, `qnorm = |s c|`, `resid = |u - s c|` (both rounded
/// up to f32), `sum = sum c_i` (the VNNI kernel's correction).
#[derive(Clone, Copy)]
struct Meta {
    scale: f32,
    qnorm: f32,
    resid: f32,
    sum: i32,
}

/// `(codes, meta)` of one vector (`[f32; dim]`), as the module docs define them.
fn code(x: &[f32], codes: &mut Vec<i8>) -> Meta {
    let n = vector::norm64(x);
    let inv = if n > 0.0 { 1.0 / n } else { 0.0 };
    let m = x
        .iter()
        .map(|&a| (f64::from(a) * inv).abs())
        .fold(0.0, f64::max);
    let s = m / 127.0;
    let (mut qn, mut rn, mut sum) = (0f64, 0f64, 0i32);
    for &a in x {
        let u = f64::from(a) * inv;
        let c = if s > 0.0 {
            (u / s).round().clamp(-127.0, 127.0)
        } else {
            0.0
        };
        let sc = s * c;
        qn += sc * sc;
        rn += (u - sc) * (u - sc);
        // `c` is an integer in -127..=127.
        let c = c as i8;
        sum += i32::from(c);
        codes.push(c);
    }
    let up = |v: f64| (v.sqrt() * (1.0 + 1e-9)) as f32;
    Meta {
        scale: s as f32,
        qnorm: up(qn),
        resid: up(rn),
        sum,
    }
}

/// int8 codes of a set of vectors (the module docs' `c`, `s`, `|s c|`, `|u - s c|`), in
/// the order they were added, and the exact-cosine candidate screen over them.
#[derive(Default)]
pub(super) struct Codes {
    dim: usize,
    /// `len * dim` codes.
    codes: Vec<i8>,
    meta: Vec<Meta>,
    /// `meta[i].sum`, contiguous for the batch kernel.
    sums: Vec<i32>,
}

impl Codes {
    /// No codes yet, for vectors of `dim` float32.
    pub(super) fn new(dim: usize) -> Self {
        Codes {
            dim,
            ..Codes::default()
        }
    }

    /// Codes `v` (`[f32; dim]`) as the next vector.
    pub(super) fn push(&mut self, v: &[f32]) {
        let m = code(v, &mut self.codes);
        self.sums.push(m.sum);
        self.meta.push(m);
    }

    /// Positions of the vectors that may be among the `k` nearest to `query` by cosine
    /// distance, every other position provably not (module docs); positions for which
    /// `out` is true are left out.
    pub(super) fn candidates(
        &self,
        query: &[f32],
        k: usize,
        out: impl Fn(usize) -> bool,
    ) -> Vec<usize> {
        let n = self.meta.len();
        if k == 0 || n == 0 || self.dim == 0 {
            return Vec::new();
        }
        let mut qcodes = Vec::with_capacity(self.dim);
        let qm = code(query, &mut qcodes);
        let qb: Vec<u8> = qcodes.iter().map(|&c| (i16::from(c) + 128) as u8).collect();
        let mut dots = vec![0i32; n];
        vector::i8_dots()(&qcodes, &qb, &self.codes, &self.sums, &mut dots);
        let (t, wn) = (qm.scale, qm.resid);
        // Each vector's similarity lies in [a - b, a + b]: keep the upper ends (NaN for the
        // vectors left out, which fails every comparison) and the k largest lower ends (a
        // min-heap of them).
        let mut highs: Vec<f32> = Vec::with_capacity(n);
        let mut lows: BinaryHeap<Reverse<super::Far>> = BinaryHeap::with_capacity(k + 1);
        for (i, (m, d)) in self.meta.iter().zip(&dots).enumerate() {
            if out(i) {
                highs.push(f32::NAN);
                continue;
            }
            let a = m.scale * t * *d as f32;
            let b = m.qnorm * wn + m.resid + EPS;
            highs.push(a + b);
            let lo = a - b;
            if lows.len() < k {
                lows.push(Reverse(super::Far(lo)));
            } else if lows
                .peek()
                .is_some_and(|Reverse(super::Far(min))| lo > *min)
            {
                lows.pop();
                lows.push(Reverse(super::Far(lo)));
            }
        }
        let limit = match lows.peek() {
            Some(Reverse(super::Far(kth))) if lows.len() >= k => *kth,
            _ => f32::NEG_INFINITY,
        };
        highs
            .iter()
            .enumerate()
            .filter(|(_, h)| **h >= limit)
            .map(|(i, _)| i)
            .collect()
    }
}

/// The int8 block of one snapshot generation ([`QuantBlock::read`]).
pub(super) struct QuantBlock {
    /// The generation whose snapshot vectors these are.
    pub(super) generation: u64,
    ids: Vec<i64>,
    codes: Codes,
    /// Per id: left out by the last search's pending and superseded sets (`excluded_for`).
    excluded: Vec<bool>,
    excluded_for: Option<ExcludedFor>,
}

/// The pending and superseded sets the marks of [`QuantBlock`] were made for.
type ExcludedFor = (Rc<HashSet<i64>>, Option<Arc<HashSet<u64>>>);

impl QuantBlock {
    /// Codes every stored vector whose id is not in `pending`, for `generation`.
    ///
    /// # Errors
    /// SQLite errors.
    pub(super) fn read(
        store: &Store,
        generation: u64,
        pending: &HashSet<i64>,
    ) -> Result<QuantBlock> {
        let dim = store.opts.dim;
        let mut b = QuantBlock {
            generation,
            ids: Vec::new(),
            codes: Codes::new(dim),
            excluded: Vec::new(),
            excluded_for: None,
        };
        let mut v = vec![0f32; dim];
        store.scan_vectors(None, |id, blob| {
            if !pending.contains(&id) && vector::decode_into(blob, &mut v) {
                b.ids.push(id);
                b.codes.push(&v);
            }
        })?;
        Ok(b)
    }

    /// The ids that may be among the `k` nearest to `query` (cosine), every other held id
    /// provably not: ids in `pending` or `superseded` are left out (the caller scans the
    /// pending ones exactly).
    pub(super) fn candidates(
        &mut self,
        query: &[f32],
        k: usize,
        pending: &Rc<HashSet<i64>>,
        superseded: Option<&Arc<HashSet<u64>>>,
    ) -> Vec<i64> {
        self.exclude(pending, superseded);
        let excluded = &self.excluded;
        self.codes
            .candidates(query, k, |i| excluded.get(i).copied().unwrap_or(true))
            .into_iter()
            .map(|i| self.ids[i])
            .collect()
    }

    /// Marks the ids in `pending` or `superseded`, unless the marks are for these very
    /// sets already (the kept sets are the same `Rc`/`Arc` while nothing changes).
    fn exclude(&mut self, pending: &Rc<HashSet<i64>>, superseded: Option<&Arc<HashSet<u64>>>) {
        if let Some((p, s)) = &self.excluded_for
            && Rc::ptr_eq(p, pending)
            && match (s, superseded) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
        {
            return;
        }
        self.excluded = self
            .ids
            .iter()
            .map(|id| pending.contains(id) || superseded.is_some_and(|s| s.contains(&(*id as u64))))
            .collect();
        self.excluded_for = Some((Rc::clone(pending), superseded.cloned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bound holds: on random vectors of several scales (and near-duplicates), every
    /// exact cosine similarity lies within the coded interval.
    #[test]
    fn coded_interval_holds_the_exact_similarity() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        };
        let dim = 384;
        let dot = vector::i8_dot();
        for round in 0..200 {
            let scale = 2f64.powi((round % 9) * 8 - 20);
            let x: Vec<f32> = (0..dim).map(|_| (next() * scale) as f32).collect();
            let q: Vec<f32> = if round % 3 == 0 {
                x.iter()
                    .map(|&a| a * (1.0 + next() as f32 * 1e-3))
                    .collect()
            } else {
                (0..dim).map(|_| next() as f32).collect()
            };
            let (mut cx, mut cq) = (Vec::new(), Vec::new());
            let (mx, mq) = (code(&x, &mut cx), code(&q, &mut cq));
            let qb: Vec<u8> = cq.iter().map(|&c| (i16::from(c) + 128) as u8).collect();
            let d = dot(&cq, &qb, &cx, mx.sum);
            let portable: i32 = cq
                .iter()
                .zip(&cx)
                .map(|(&a, &b)| i32::from(a) * i32::from(b))
                .sum();
            assert_eq!(d, portable);
            let a = mx.scale * mq.scale * d as f32;
            let b = mx.qnorm * mq.resid + mx.resid + EPS;
            let exact = 1.0 - vector::Metric::Cosine.distance(&x, &q);
            assert!(
                (exact - a).abs() <= b,
                "round {round}: exact {exact}, approx {a}, bound {b}"
            );
        }
    }
}
