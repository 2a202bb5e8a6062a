//! Seeded, reproducible pseudo-random numbers: [`Rng`] (splitmix64, the differential
//! tests' source of operations, integer vectors and tags) and [`XorShift`] (unit vectors,
//! the in-process tests').

/// splitmix64: small, seeded, reproducible.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() > 1.0 - p
    }

    /// One of `items` (non-empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A non-zero vector of `dim` integers in -8..=8: exact ties happen, and ties must
    /// break by id.
    pub fn vector(&mut self, dim: usize) -> Vec<f32> {
        loop {
            let v: Vec<f32> = (0..dim).map(|_| self.below(17) as f32 - 8.0).collect();
            if v.iter().any(|x| *x != 0.0) {
                return v;
            }
        }
    }

    /// `v` plus uniform noise in `-a..a` on every coordinate (never all zeros): with
    /// the vectors of [`Rng::vector`] (norm about 13 at dim 8), `a` = 1 stays above
    /// cosine 0.99, 2 near 0.97, 3 near 0.94: on both sides of a 0.95 threshold.
    pub fn near(&mut self, v: &[f32], a: f32) -> Vec<f32> {
        loop {
            let w: Vec<f32> = v
                .iter()
                .map(|x| x + (self.unit() as f32 * 2.0 - 1.0) * a)
                .collect();
            if w.iter().any(|x| *x != 0.0) {
                return w;
            }
        }
    }

    /// A random subset of `t0`..`t4`, as tags.
    pub fn tags(&mut self) -> Vec<String> {
        (0..5)
            .filter(|_| self.chance(0.3))
            .map(|i| format!("t{i}"))
            .collect()
    }
}

/// xorshift64 (Marsaglia 2003), seeded (non-zero): the unit vectors of tests/inprocess.rs.
pub struct XorShift(pub u64);

impl XorShift {
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
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }
}
