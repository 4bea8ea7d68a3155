//! A seeded generator for the storms' request plans.

/// A seeded generator for the storms' request plans (rand's `StdRng`), so a failing storm can be
/// replayed from its seed.
pub struct Rng(rand::rngs::StdRng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(rand::SeedableRng::seed_from_u64(seed))
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        rand::RngExt::random_range(&mut self.0, 0..n)
    }
}
