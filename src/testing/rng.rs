//! A seeded, lock-free SplitMix64 stream shared by concurrent readers.
//!
//! Each draw advances one atomic counter, so the sequence of draws is fixed by the seed; which
//! caller receives which draw depends on scheduling. Statistical quality is SplitMix64's (it
//! passes BigCrush); nothing here is meant for secrets.

use crate::sync::{AtomicU64, Ordering};

/// The SplitMix64 increment (the golden ratio in 64-bit fixed point).
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// A shared SplitMix64 generator.
pub(crate) struct SharedRng {
    state: AtomicU64,
}

impl SharedRng {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&self) -> u64 {
        let state = self
            .state
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        mix(state)
    }

    /// A uniform float in `[0, 1)`.
    pub(crate) fn next_f64(&self) -> f64 {
        // The top 53 bits are exactly representable; scale by 2^-53.
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform index in `0..len`; 0 when `len` is 0.
    pub(crate) fn below(&self, len: usize) -> usize {
        if len == 0 {
            return 0;
        }
        // Lemire's multiply-shift: the high half of a 64x64 product. The bias (< len / 2^64) is
        // irrelevant for fault injection.
        let wide = u128::from(self.next_u64()) * len as u128;
        // `wide >> 64 < len`, which is a usize.
        (wide >> 64) as usize
    }
}

/// The SplitMix64 output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_splitmix64_stream() {
        // Reference outputs of SplitMix64 seeded with 1234567 (Vigna's splitmix64.c).
        let rng = SharedRng::new(1_234_567);
        let expected = [
            6_457_827_717_110_365_317,
            3_203_168_211_198_807_973,
            9_817_491_932_198_370_423,
        ];
        for want in expected {
            assert_eq!(rng.next_u64(), want, "splitmix64 stream diverged");
        }
    }

    #[test]
    fn draws_stay_in_range() {
        let rng = SharedRng::new(7);
        for len in [0usize, 1, 2, 3, 1000] {
            for _ in 0..1000 {
                let i = rng.below(len);
                assert!(i < len.max(1), "index {i} out of 0..{len}");
            }
        }
        for _ in 0..1000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x), "float {x} out of [0, 1)");
        }
    }
}
