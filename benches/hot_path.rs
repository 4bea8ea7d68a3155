//! In-process (L1) benchmarks: `LocalCache` against a raw `DashMap`, moka and quick_cache on
//! verified hits (with and without a TTL), misses, inserts into a full cache and a 90/10
//! read/write mix over Zipf-distributed keys, at 1, 2, … threads; and a remote-tier hit through
//! `Cache` (L1 miss, L2 hit).
//!
//! Run with `cargo bench --bench hot_path`; workloads, machine and results are in
//! `BENCHMARKS.md`. Every contender is measured in this one binary, over the same keys, values,
//! hasher (aHash) and operation sequence, so the ratios between them are what to quote. Under
//! `cargo test` each benchmark runs once on a small data set, as a smoke test.
//!
//! Adding a contender: implement [`Contender`]. Adding a workload: build a [`Workload`] (keys,
//! values and an operation sequence) and drive it with [`bench_ops`].

mod common;

use bytes::Bytes;
use common::{BenchKey, SECRET, Thumbs, config, measuring, random_bytes, random_key};
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use dashmap::DashMap;
use rand::RngExt;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Zipf};
use scoped_cache::{Cache, Client, KeyId, KeyRing, LocalCache, MemoryStore};
use std::future::Future;
use std::hint::black_box;
use std::ops::Range;
use std::pin::pin;
use std::sync::Barrier;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Keys in the L1 workloads (measurement runs; `cargo test` uses [`SMOKE_ENTRIES`]).
const ENTRIES: usize = 100_000;
const SMOKE_ENTRIES: usize = 1_000;
/// Size of each in-process value.
const VALUE_LEN: usize = 64;
/// Length of the pre-generated operation sequence (a power of two, so wrapping is a mask).
const OPS: usize = 1 << 20;
/// Marks a write in an operation sequence; the other bits are the key's index.
const WRITE: u32 = 1 << 31;
/// The mix's writes: one operation in `WRITE_ONE_IN`.
const WRITE_ONE_IN: u32 = 10;
/// Zipf exponents of the mix.
const ZIPF_EXPONENTS: [f64; 2] = [0.9, 1.1];
/// Payload size of the remote-hit group, and how many keys it cycles through.
const REMOTE_VALUE_LEN: usize = 1024;
const REMOTE_ENTRIES: usize = 10_000;

fn entries() -> usize {
    if measuring() { ENTRIES } else { SMOKE_ENTRIES }
}

/// Thread counts to sweep: 1, 2, 4, … up to the machine's parallelism, and always 1 and 2.
fn thread_counts() -> Vec<usize> {
    let max = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    std::iter::successors(Some(1), |n| Some(n * 2))
        .take_while(|n| *n <= max)
        .collect()
}

/// Keys, their values, and the operations the threads perform on them.
struct Workload {
    keys: Vec<BenchKey>,
    /// One random `VALUE_LEN`-byte value per key; a write stores a clone (no allocation).
    values: Vec<Bytes>,
    /// `OPS` operations: a key index, `| WRITE` for an insert of that key's value.
    ops: Vec<u32>,
}

impl Workload {
    /// `key_count` random keys (u64 tenant, device and item) with random values, then `OPS`
    /// operations drawn by `op`, all from one seeded generator.
    fn new(key_count: usize, mut op: impl FnMut(&mut StdRng) -> u32) -> Self {
        let mut rng = common::rng();
        let keys = (0..key_count).map(|_| random_key(&mut rng)).collect();
        let values = (0..key_count)
            .map(|_| Bytes::from(random_bytes(&mut rng, VALUE_LEN)))
            .collect();
        let ops = (0..OPS).map(|_| op(&mut rng)).collect();
        Self { keys, values, ops }
    }

    /// Reads of keys drawn uniformly from `range`.
    fn uniform_reads(key_count: usize, range: Range<usize>) -> Self {
        let range = range.start as u32..range.end as u32;
        Self::new(key_count, |rng| rng.random_range(range.clone()))
    }

    /// Inserts of keys drawn uniformly from all `key_count` keys.
    fn uniform_inserts(key_count: usize) -> Self {
        Self::new(key_count, |rng| {
            WRITE | rng.random_range(0..key_count as u32)
        })
    }

    /// Key of rank r (0 the most popular) drawn with probability ∝ 1/(r+1)^exponent; one
    /// operation in `WRITE_ONE_IN` (drawn independently) is an insert, the rest are reads.
    /// Ranks map to keys in generation order, which is random, so popular keys are spread over
    /// every shard of every map.
    fn zipf_mix(key_count: usize, exponent: f64) -> Self {
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
    fn fill<C: Contender>(&self, cache: C, resident: Range<usize>) -> C {
        for index in resident {
            cache.insert(&self.keys[index], self.values[index].clone());
        }
        cache.settle();
        cache
    }

    /// Panics unless exactly the keys in `resident` read back from `cache`.
    fn check_resident<C: Contender>(&self, cache: &C, resident: Range<usize>) {
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
    fn perform<C: Contender>(&self, cache: &C, n: usize) {
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
trait Contender: Sync {
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
type RawDashMap = DashMap<BenchKey, Bytes, ahash::RandomState>;

impl Contender for RawDashMap {
    const NAME: &'static str = "dashmap_raw";
    fn insert(&self, key: &BenchKey, value: Bytes) {
        DashMap::insert(self, key.clone(), value);
    }
    fn get(&self, key: &BenchKey) -> Option<Bytes> {
        DashMap::get(self, key).map(|entry| entry.value().clone())
    }
}

type Moka = moka::sync::Cache<BenchKey, Bytes, ahash::RandomState>;

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

type QuickCache = quick_cache::sync::Cache<
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

fn local_cache(capacity: usize, ttl: Option<Duration>) -> LocalCache<Thumbs> {
    let builder = LocalCache::builder().max_entries(capacity as u64);
    let builder = match ttl {
        Some(ttl) => builder.ttl(ttl),
        None => builder,
    };
    builder.build().expect("valid LocalCache configuration")
}

fn raw_dashmap() -> RawDashMap {
    DashMap::with_hasher(ahash::RandomState::new())
}

fn moka(capacity: usize, ttl: Option<Duration>) -> Moka {
    let builder = moka::sync::Cache::builder()
        .max_capacity(capacity as u64)
        .initial_capacity(capacity);
    let builder = match ttl {
        Some(ttl) => builder.time_to_live(ttl),
        None => builder,
    };
    builder.build_with_hasher(ahash::RandomState::new())
}

fn quick_cache(capacity: usize) -> QuickCache {
    quick_cache::sync::Cache::with(
        capacity,
        capacity as u64,
        quick_cache::UnitWeighter,
        ahash::RandomState::new(),
        quick_cache::sync::DefaultLifecycle::default(),
    )
}

/// `threads` threads each perform `ops_per_thread` operations of `workload`'s sequence (each
/// from its own offset), started together; returns the slowest thread's elapsed time.
///
/// One criterion iteration is one operation *per thread*: the reported time is the latency of
/// one operation as each thread sees it, and `Throughput::Elements(threads)` makes criterion's
/// elements/s the aggregate operation rate, comparable across thread counts.
fn run_threads<C: Contender>(
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

/// One benchmark per thread count: `cache` performing `workload`'s operations.
fn bench_ops<C: Contender>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    cache: &C,
    workload: &Workload,
) {
    for threads in thread_counts() {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_with_input(BenchmarkId::new(C::NAME, threads), &threads, |b, &t| {
            b.iter_custom(|iters| run_threads(cache, workload, t, iters));
        });
    }
}

/// A group of L1 benchmarks with the common timing.
fn l1_group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(40)
        .warm_up_time(Duration::from_millis(800))
        .measurement_time(Duration::from_secs(3));
    group
}

/// Benchmarks every contender, each built by its constructor, filled with `keys[resident]`
/// and (when `check` is set) checked to hold exactly those keys, on `workload`.
fn bench_contenders(
    c: &mut Criterion,
    name: &str,
    workload: &Workload,
    capacity: usize,
    resident: Range<usize>,
    check: bool,
) {
    fn one<C: Contender>(
        group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
        workload: &Workload,
        cache: C,
        resident: &Range<usize>,
        check: bool,
    ) {
        let cache = workload.fill(cache, resident.clone());
        if check {
            workload.check_resident(&cache, resident.clone());
        }
        bench_ops(group, &cache, workload);
    }
    let mut group = l1_group(c, name);
    one(
        &mut group,
        workload,
        local_cache(capacity, None),
        &resident,
        check,
    );
    one(&mut group, workload, raw_dashmap(), &resident, check);
    one(&mut group, workload, moka(capacity, None), &resident, check);
    one(
        &mut group,
        workload,
        quick_cache(capacity),
        &resident,
        check,
    );
    group.finish();
}

/// Verified in-process hits vs a raw map and the peers, no TTL anywhere: every key resident,
/// reads uniform over them.
fn l1_get_hit(c: &mut Criterion) {
    let entries = entries();
    let workload = Workload::uniform_reads(entries, 0..entries);
    bench_contenders(c, "l1_get_hit", &workload, 2 * entries, 0..entries, true);
}

/// The same hits with a TTL set: every hit reads the clock.
fn l1_get_hit_ttl(c: &mut Criterion) {
    let entries = entries();
    let capacity = 2 * entries;
    let ttl = Some(Duration::from_secs(3600));
    let workload = Workload::uniform_reads(entries, 0..entries);
    let mut group = l1_group(c, "l1_get_hit_ttl");
    let cache = workload.fill(local_cache(capacity, ttl), 0..entries);
    workload.check_resident(&cache, 0..entries);
    bench_ops(&mut group, &cache, &workload);
    let cache = workload.fill(moka(capacity, ttl), 0..entries);
    workload.check_resident(&cache, 0..entries);
    bench_ops(&mut group, &cache, &workload);
    group.finish();
}

/// Misses: the first half of the keys resident, reads uniform over the other half.
fn l1_get_miss(c: &mut Criterion) {
    let entries = entries();
    let workload = Workload::uniform_reads(2 * entries, entries..2 * entries);
    bench_contenders(c, "l1_get_miss", &workload, 2 * entries, 0..entries, true);
}

/// Inserts into a full cache: capacity half the key space, every key inserted once before
/// measuring, then inserts of uniformly random keys (about half of them not resident in a
/// bounded cache, so admission and eviction run).
fn l1_insert(c: &mut Criterion) {
    let entries = entries();
    let workload = Workload::uniform_inserts(entries);
    bench_contenders(c, "l1_insert", &workload, entries / 2, 0..entries, false);
}

/// 90 % reads, 10 % inserts over Zipf-distributed keys, every key resident (capacity twice the
/// key space), so every read hits and every insert replaces a resident value.
fn l1_mix_zipf(c: &mut Criterion) {
    let entries = entries();
    for exponent in ZIPF_EXPONENTS {
        let workload = Workload::zipf_mix(entries, exponent);
        let name = format!("l1_mix_zipf_{exponent}");
        bench_contenders(c, &name, &workload, 2 * entries, 0..entries, true);
    }
}

/// Drives a future that never waits (`MemoryStore` answers at once) without an async runtime, so
/// the measurement is the cache, not a scheduler.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("MemoryStore futures complete on first poll"),
    }
}

/// A remote-tier hit through `Cache` with no in-process tier: encode the key, `MemoryStore` get,
/// open the envelope for the key, decode.
fn cache_remote_hit(c: &mut Criterion) {
    let entries = if measuring() {
        REMOTE_ENTRIES
    } else {
        SMOKE_ENTRIES
    };
    let mut rng = common::rng();
    let client = Client::builder()
        .key_ring(KeyRing::new(KeyId(1), &SECRET).expect("valid key ring"))
        .remote(MemoryStore::new(
            (entries * (REMOTE_VALUE_LEN + 512)) as u64 * 2,
        ))
        .build()
        .expect("valid client");
    let cache: Cache<Thumbs> = client
        .cache()
        .local_capacity(0)
        .build()
        .expect("valid cache");
    let keys: Vec<BenchKey> = (0..entries).map(|_| random_key(&mut rng)).collect();
    for key in &keys {
        let value = Bytes::from(random_bytes(&mut rng, REMOTE_VALUE_LEN));
        ready(cache.insert(key, value)).expect("insert into MemoryStore");
    }
    assert!(
        keys.iter().all(|key| ready(cache.get(key)).is_some()),
        "every remote key hits"
    );
    let accesses: Vec<usize> = (0..OPS).map(|_| rng.random_range(0..entries)).collect();
    let mut group = c.benchmark_group("cache_remote_hit");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("memory_store", REMOTE_VALUE_LEN), |b| {
        let mut n = 0usize;
        b.iter(|| {
            n = n.wrapping_add(1);
            ready(cache.get(black_box(&keys[accesses[n & (OPS - 1)]])))
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = l1_get_hit, l1_get_hit_ttl, l1_get_miss, l1_insert, l1_mix_zipf, cache_remote_hit
}
criterion_main!(benches);
