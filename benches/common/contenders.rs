//! The in-process (L1) contenders and their uniform workloads, shared by `benches/hot_path.rs`
//! (criterion, one contender after another) and `benches/l1_rounds.rs` (interleaved rounds).
//!
//! Every contender is keyed and valued like ours (`Key<Thumbs>` → 64-byte `Bytes`) and hashes
//! with aHash, so a comparison measures the structures, not the hashers. Adding a contender:
//! implement [`Contender`]. Adding a workload: build a [`Workload`] (keys, values and an
//! operation sequence) and drive it with [`run_threads`].

use super::{BenchKey, Thumbs, measuring, random_bytes, random_key};
use bytes::Bytes;
use dashmap::DashMap;
use rand::RngExt;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Zipf};
use scoped_cache::LocalCache;
use std::hint::black_box;
use std::ops::Range;
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Keys in the L1 workloads (measurement runs; `cargo test` uses [`SMOKE_ENTRIES`]).
pub const ENTRIES: usize = 100_000;
pub const SMOKE_ENTRIES: usize = 1_000;
/// Size of each in-process value.
pub const VALUE_LEN: usize = 64;
/// Length of the pre-generated operation sequence (a power of two, so wrapping is a mask).
pub const OPS: usize = 1 << 20;
/// Marks a write in an operation sequence; the other bits are the key's index.
pub const WRITE: u32 = 1 << 31;
/// The mix's writes: one operation in `WRITE_ONE_IN`.
pub const WRITE_ONE_IN: u32 = 10;

/// [`ENTRIES`] when measuring, [`SMOKE_ENTRIES`] under `cargo test`.
pub fn entries() -> usize {
    if measuring() { ENTRIES } else { SMOKE_ENTRIES }
}

/// Thread counts to sweep: 1, 2, 4, … up to the machine's parallelism, and always 1 and 2.
pub fn thread_counts() -> Vec<usize> {
    let max = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    std::iter::successors(Some(1), |n| Some(n * 2))
        .take_while(|n| *n <= max)
        .collect()
}

/// Keys, their values, and the operations the threads perform on them.
pub struct Workload {
    pub keys: Vec<BenchKey>,
    /// One random `VALUE_LEN`-byte value per key; a write stores a clone (no allocation).
    pub values: Vec<Bytes>,
    /// `OPS` operations: a key index, `| WRITE` for an insert of that key's value.
    pub ops: Vec<u32>,
}

impl Workload {
    /// `key_count` random keys (u64 tenant, device and item) with random values, then `OPS`
    /// operations drawn by `op`, all from one seeded generator.
    pub fn new(key_count: usize, mut op: impl FnMut(&mut StdRng) -> u32) -> Self {
        let mut rng = super::rng();
        let keys = (0..key_count).map(|_| random_key(&mut rng)).collect();
        let values = (0..key_count)
            .map(|_| Bytes::from(random_bytes(&mut rng, VALUE_LEN)))
            .collect();
        let ops = (0..OPS).map(|_| op(&mut rng)).collect();
        Self { keys, values, ops }
    }

    /// Reads of keys drawn uniformly from `range`.
    pub fn uniform_reads(key_count: usize, range: Range<usize>) -> Self {
        let range = range.start as u32..range.end as u32;
        Self::new(key_count, |rng| rng.random_range(range.clone()))
    }

    /// Inserts of keys drawn uniformly from all `key_count` keys.
    pub fn uniform_inserts(key_count: usize) -> Self {
        Self::new(key_count, |rng| {
            WRITE | rng.random_range(0..key_count as u32)
        })
    }

    /// Key of rank r (0 the most popular) drawn with probability ∝ 1/(r+1)^exponent; one
    /// operation in `WRITE_ONE_IN` (drawn independently) is an insert, the rest are reads.
    /// Ranks map to keys in generation order, which is random, so popular keys are spread over
    /// every shard of every map.
    pub fn zipf_mix(key_count: usize, exponent: f64) -> Self {
        let zipf = Zipf::new(key_count as f64, exponent).expect("valid Zipf parameters");
        Self::new(key_count, |rng| {
            // `Zipf` samples ranks 1..=n as floats.
            let index = zipf.sample(rng) as u32 - 1;
            if rng.random_ratio(1, WRITE_ONE_IN) {
                WRITE | index
            } else {
                index
            }
        })
    }

    /// Inserts `keys[resident]` into `cache` and lets it settle.
    pub fn fill<C: Contender>(&self, cache: C, resident: Range<usize>) -> C {
        for index in resident {
            cache.insert(&self.keys[index], self.values[index].clone());
        }
        cache.settle();
        cache
    }

    /// Panics unless exactly the keys in `resident` read back from `cache`.
    pub fn check_resident<C: Contender>(&self, cache: &C, resident: Range<usize>) {
        for (index, key) in self.keys.iter().enumerate() {
            assert_eq!(
                cache.get(key).is_some(),
                resident.contains(&index),
                "{}: key {index} should {}be resident",
                C::NAME,
                if resident.contains(&index) {
                    ""
                } else {
                    "not "
                },
            );
        }
    }

    /// Performs operation `n` (wrapping) on `cache`.
    #[inline(always)]
    pub fn perform<C: Contender>(&self, cache: &C, n: usize) {
        let op = self.ops[n & (OPS - 1)];
        let index = (op & !WRITE) as usize;
        if op & WRITE == 0 {
            black_box(cache.get(black_box(&self.keys[index])));
        } else {
            cache.insert(black_box(&self.keys[index]), self.values[index].clone());
        }
    }
}

/// An in-process cache under test, keyed and valued like ours.
pub trait Contender: Sync {
    /// Its name in benchmark ids.
    const NAME: &'static str;
    fn insert(&self, key: &BenchKey, value: Bytes);
    /// A read that returns an owned value (a clone), as every contender's API does.
    fn get(&self, key: &BenchKey) -> Option<Bytes>;
    /// Finishes deferred bookkeeping after a fill (moka applies writes lazily).
    fn settle(&self) {}
}

impl Contender for LocalCache<Thumbs> {
    const NAME: &'static str = "scoped_cache";
    fn insert(&self, key: &BenchKey, value: Bytes) {
        LocalCache::insert(self, key, value);
    }
    fn get(&self, key: &BenchKey) -> Option<Bytes> {
        LocalCache::get(self, key)
    }
}

/// A plain concurrent map: the floor for any verified, bounded cache on the same map.
pub type RawDashMap = DashMap<BenchKey, Bytes, ahash::RandomState>;

impl Contender for RawDashMap {
    const NAME: &'static str = "dashmap_raw";
    fn insert(&self, key: &BenchKey, value: Bytes) {
        DashMap::insert(self, key.clone(), value);
    }
    fn get(&self, key: &BenchKey) -> Option<Bytes> {
        DashMap::get(self, key).map(|entry| entry.value().clone())
    }
}

pub type Moka = moka::sync::Cache<BenchKey, Bytes, ahash::RandomState>;

impl Contender for Moka {
    const NAME: &'static str = "moka";
    fn insert(&self, key: &BenchKey, value: Bytes) {
        moka::sync::Cache::insert(self, key.clone(), value);
    }
    fn get(&self, key: &BenchKey) -> Option<Bytes> {
        moka::sync::Cache::get(self, key)
    }
    fn settle(&self) {
        self.run_pending_tasks();
    }
}

pub type QuickCache = quick_cache::sync::Cache<
    BenchKey,
    Bytes,
    quick_cache::UnitWeighter,
    ahash::RandomState,
    quick_cache::sync::DefaultLifecycle<BenchKey, Bytes>,
>;

impl Contender for QuickCache {
    const NAME: &'static str = "quick_cache";
    fn insert(&self, key: &BenchKey, value: Bytes) {
        quick_cache::sync::Cache::insert(self, key.clone(), value);
    }
    fn get(&self, key: &BenchKey) -> Option<Bytes> {
        quick_cache::sync::Cache::get(self, key)
    }
}

/// `LocalCache` (its default hasher is aHash) holding up to `capacity` entries.
pub fn local_cache(capacity: usize, ttl: Option<Duration>) -> LocalCache<Thumbs> {
    let builder = LocalCache::builder().max_entries(capacity as u64);
    let builder = match ttl {
        Some(ttl) => builder.ttl(ttl),
        None => builder,
    };
    builder.build().expect("valid LocalCache configuration")
}

pub fn raw_dashmap() -> RawDashMap {
    DashMap::with_hasher(ahash::RandomState::new())
}

pub fn moka(capacity: usize, ttl: Option<Duration>) -> Moka {
    let builder = moka::sync::Cache::builder()
        .max_capacity(capacity as u64)
        .initial_capacity(capacity);
    let builder = match ttl {
        Some(ttl) => builder.time_to_live(ttl),
        None => builder,
    };
    builder.build_with_hasher(ahash::RandomState::new())
}

pub fn quick_cache(capacity: usize) -> QuickCache {
    quick_cache::sync::Cache::with(
        capacity,
        capacity as u64,
        quick_cache::UnitWeighter,
        ahash::RandomState::new(),
        quick_cache::sync::DefaultLifecycle::default(),
    )
}

/// `threads` threads each perform `ops_per_thread` operations of `workload`'s sequence (thread
/// `t` from operation `t · OPS / threads`), released together by a barrier; returns the slowest
/// thread's elapsed time. With one thread the caller's thread does the work.
pub fn run_threads<C: Contender>(
    cache: &C,
    workload: &Workload,
    threads: usize,
    ops_per_thread: u64,
) -> Duration {
    let worker = |offset: usize| {
        let start = Instant::now();
        let mut n = offset;
        for _ in 0..ops_per_thread {
            workload.perform(cache, n);
            n = n.wrapping_add(1);
        }
        start.elapsed()
    };
    if threads == 1 {
        return worker(0);
    }
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, worker) = (&barrier, &worker);
                scope.spawn(move || {
                    barrier.wait();
                    worker(t * (OPS / threads))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("worker thread panicked"))
            .max()
            .unwrap_or_default()
    })
}
