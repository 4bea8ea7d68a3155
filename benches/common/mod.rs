//! What every benchmark binary shares: the namespace, the seed, smoke-test detection and the
//! criterion configuration; and, in [`contenders`], the L1 contenders and their workloads
//! (`hot_path` and `l1_rounds`).
//!
//! `benches/common/mod.rs` rather than `benches/common.rs`: Cargo would take a top-level
//! `benches/common.rs` for a benchmark target of its own.

#![allow(
    dead_code,
    reason = "each benchmark binary uses a different part of this module"
)]

pub mod contenders;

use bytes::Bytes;
use criterion::Criterion;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use scoped_cache::{DeviceId, Key, Namespace, RawBytes, TenantId};

/// The namespace every benchmark keys into.
pub struct Thumbs;

impl Namespace for Thumbs {
    const NAME: &'static str = "thumb";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = Bytes;
    type Codec = RawBytes;
}

pub type BenchKey = Key<Thumbs>;

/// Seed of every random choice in the benchmarks.
pub const SEED: u64 = 0x5eed_cafe;
/// The MAC secret of every key ring in the benchmarks.
pub const SECRET: [u8; 32] = [0x42; 32];

/// True when run by `cargo bench` (criterion's `--bench` flag), false under `cargo test`, where
/// each benchmark runs once on a small data set as a smoke test.
pub fn measuring() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

/// The random generator every benchmark starts from.
pub fn rng() -> StdRng {
    StdRng::seed_from_u64(SEED)
}

/// A key with a random u64 tenant, device and item.
pub fn random_key(rng: &mut StdRng) -> BenchKey {
    Key::new(
        TenantId::from_u64(rng.random()),
        DeviceId::from_u64(rng.random()),
        rng.random(),
    )
}

/// `len` random bytes.
pub fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    rng.fill(&mut bytes[..]);
    bytes
}

/// Plots and the default 100,000 bootstrap resamples took ~18 s per benchmark on the 2-vCPU
/// development machine, three times the measurement itself; the console report and
/// `estimates.json` are what we quote (and what `examples/bench_chart.rs` reads).
pub fn config() -> Criterion {
    Criterion::default().without_plots().nresamples(20_000)
}
