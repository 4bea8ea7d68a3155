//! Hot-path benchmarks: the verified in-process hit against a raw `DashMap`, moka and
//! quick_cache (1 and more threads), envelope seal/open by payload size, the two MAC candidates,
//! and a remote-tier hit through `Cache`.
//!
//! Run with `cargo bench --bench hot_path`; results, machine and method are in `BENCHMARKS.md`.
//! Every contender is measured in this one binary, over the same keys, values, hasher (aHash)
//! and access sequence, so the ratios between them are what to quote. Under `cargo test` each
//! benchmark runs once on a small data set, as a smoke test.
//!
//! Adding a contender: implement [`Contender`]. Adding a workload (misses, inserts, a mix, Zipf
//! keys): build a [`Workload`] and drive it with [`run_threads`].

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dashmap::DashMap;
use hmac::{Hmac, KeyInit, Mac};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use scoped_cache::{
    Cache, Client, DeviceId, Envelope, Key, KeyId, KeyRing, LocalCache, MemoryStore, NEVER,
    Namespace, RawBytes, TenantId,
};
use sha2::Sha256;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Barrier;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The namespace every benchmark keys into.
struct Thumbs;

impl Namespace for Thumbs {
    const NAME: &'static str = "thumb";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = Bytes;
    type Codec = RawBytes;
}

type BenchKey = Key<Thumbs>;

/// Seed of every random choice in this file.
const SEED: u64 = 0x5eed_cafe;
/// Entries in each in-process cache (measurement runs; `cargo test` uses [`SMOKE_ENTRIES`]).
const ENTRIES: usize = 100_000;
const SMOKE_ENTRIES: usize = 1_000;
/// Capacity of each bounded cache: larger than the key set, so every read hits.
const CAPACITY_FACTOR: usize = 2;
/// Size of each in-process value.
const VALUE_LEN: usize = 64;
/// Length of the pre-generated access sequence (a power of two, so wrapping is a mask).
const ACCESSES: usize = 1 << 20;
/// Payload sizes of the envelope and MAC groups.
const PAYLOAD_SIZES: [usize; 3] = [64, 1024, 16 * 1024];
/// Payload size of the remote-hit group, and how many keys it cycles through.
const REMOTE_VALUE_LEN: usize = 1024;
const REMOTE_ENTRIES: usize = 10_000;
const SECRET: [u8; 32] = [0x42; 32];

/// True when run by `cargo bench` (criterion's `--bench` flag), false under `cargo test`.
fn measuring() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

/// Thread counts to sweep: 1, 2, 4, … up to the machine's parallelism, and always 1 and 2.
fn thread_counts() -> Vec<usize> {
    let max = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    std::iter::successors(Some(1), |n| Some(n * 2))
        .take_while(|n| *n <= max)
        .collect()
}

/// Keys, their values, and the order in which readers visit them.
struct Workload {
    keys: Vec<BenchKey>,
    values: Vec<Bytes>,
    /// Indices into `keys`, uniformly random; `ACCESSES` long.
    accesses: Vec<u32>,
}

impl Workload {
    /// `entries` random keys (u64 tenant, device and item) with random `VALUE_LEN`-byte values,
    /// read in a uniformly random order.
    fn uniform(entries: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(SEED);
        let keys = (0..entries)
            .map(|_| {
                Key::new(
                    TenantId::from_u64(rng.random()),
                    DeviceId::from_u64(rng.random()),
                    rng.random(),
                )
            })
            .collect();
        let values = (0..entries)
            .map(|_| {
                let mut value = vec![0; VALUE_LEN];
                rng.fill(&mut value[..]);
                Bytes::from(value)
            })
            .collect();
        let accesses = (0..ACCESSES)
            .map(|_| rng.random_range(0..entries as u32))
            .collect();
        Self {
            keys,
            values,
            accesses,
        }
    }

    /// The key of the `n`th access (wrapping).
    fn key_at(&self, n: usize) -> &BenchKey {
        &self.keys[self.accesses[n & (ACCESSES - 1)] as usize]
    }

    /// Fills `cache` with every key and checks that each one then reads back.
    fn fill<C: Contender>(&self, cache: C) -> C {
        for (key, value) in self.keys.iter().zip(&self.values) {
            cache.insert(key, value.clone());
        }
        cache.settle();
        let hits = self
            .keys
            .iter()
            .filter(|key| cache.get(key).is_some())
            .count();
        assert_eq!(hits, self.keys.len(), "{}: not every key hits", C::NAME);
        cache
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

/// `threads` threads each do `gets_per_thread` reads of `workload`'s access sequence (each from
/// its own offset), started together; returns the slowest thread's elapsed time.
///
/// One criterion iteration is one read *per thread*: the reported time is the latency of one
/// read as each thread sees it, and `Throughput::Elements(threads)` makes criterion's
/// elements/s the aggregate read rate, comparable across thread counts.
fn run_threads<C: Contender>(
    cache: &C,
    workload: &Workload,
    threads: usize,
    gets_per_thread: u64,
) -> Duration {
    let reader = |offset: usize| {
        let start = Instant::now();
        let mut n = offset;
        for _ in 0..gets_per_thread {
            black_box(cache.get(black_box(workload.key_at(n))));
            n = n.wrapping_add(1);
        }
        start.elapsed()
    };
    if threads == 1 {
        return reader(0);
    }
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (barrier, reader) = (&barrier, &reader);
                scope.spawn(move || {
                    barrier.wait();
                    reader(t * (ACCESSES / threads))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("reader thread panicked"))
            .max()
            .unwrap_or_default()
    })
}

fn bench_gets<C: Contender>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
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

/// Verified in-process hits vs a raw map and the peers, no TTL anywhere.
fn l1_get_hit(c: &mut Criterion) {
    let entries = if measuring() { ENTRIES } else { SMOKE_ENTRIES };
    let capacity = entries * CAPACITY_FACTOR;
    let workload = Workload::uniform(entries);
    let mut group = c.benchmark_group("l1_get_hit");
    group
        .sample_size(40)
        .warm_up_time(Duration::from_millis(800))
        .measurement_time(Duration::from_secs(3));
    bench_gets(
        &mut group,
        &workload.fill(local_cache(capacity, None)),
        &workload,
    );
    bench_gets(&mut group, &workload.fill(raw_dashmap()), &workload);
    bench_gets(&mut group, &workload.fill(moka(capacity, None)), &workload);
    bench_gets(&mut group, &workload.fill(quick_cache(capacity)), &workload);
    group.finish();
}

/// The same hits with a TTL set: every hit reads the clock.
fn l1_get_hit_ttl(c: &mut Criterion) {
    let entries = if measuring() { ENTRIES } else { SMOKE_ENTRIES };
    let capacity = entries * CAPACITY_FACTOR;
    let ttl = Some(Duration::from_secs(3600));
    let workload = Workload::uniform(entries);
    let mut group = c.benchmark_group("l1_get_hit_ttl");
    group
        .sample_size(40)
        .warm_up_time(Duration::from_millis(800))
        .measurement_time(Duration::from_secs(3));
    bench_gets(
        &mut group,
        &workload.fill(local_cache(capacity, ttl)),
        &workload,
    );
    bench_gets(&mut group, &workload.fill(moka(capacity, ttl)), &workload);
    group.finish();
}

fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    rng.fill(&mut bytes[..]);
    bytes
}

/// Sealing and opening an envelope, per payload size.
fn envelope(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(SEED);
    let ring = KeyRing::new(KeyId(1), &SECRET).expect("valid key ring");
    let key = BenchKey::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    let envelope = Envelope::default();
    let (created_ms, now_ms) = (1_700_000_000_000, 1_700_000_001_000);
    let mut group = c.benchmark_group("envelope");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for size in PAYLOAD_SIZES {
        let payload = random_bytes(&mut rng, size);
        let sealed = envelope
            .seal(&key, &payload, created_ms, NEVER, &ring)
            .expect("payload within limits");
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("seal", size), &payload, |b, payload| {
            b.iter(|| {
                envelope.seal(
                    black_box(&key),
                    black_box(payload),
                    created_ms,
                    NEVER,
                    &ring,
                )
            });
        });
        group.bench_with_input(BenchmarkId::new("open", size), &sealed, |b, sealed| {
            b.iter(|| {
                envelope
                    .open(black_box(sealed), black_box(&key), now_ms, &ring)
                    .expect("opens for its own key")
            });
        });
    }
    group.finish();
}

/// The MAC candidates on their own: HMAC-SHA256 (pre-keyed state, cloned per message, as
/// `src/mac.rs` does) vs keyed BLAKE3.
fn mac(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(SEED);
    let hmac_key = Hmac::<Sha256>::new_from_slice(&SECRET).expect("HMAC takes any key length");
    let mut group = c.benchmark_group("mac");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for size in PAYLOAD_SIZES {
        let message = random_bytes(&mut rng, size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("hmac_sha256", size),
            &message,
            |b, message| {
                b.iter(|| {
                    let mut mac = hmac_key.clone();
                    mac.update(black_box(message));
                    mac.finalize().into_bytes()
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("blake3_keyed", size),
            &message,
            |b, message| b.iter(|| blake3::keyed_hash(&SECRET, black_box(message))),
        );
    }
    group.finish();
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
    let mut rng = StdRng::seed_from_u64(SEED);
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
    let keys: Vec<BenchKey> = (0..entries)
        .map(|_| {
            Key::new(
                TenantId::from_u64(rng.random()),
                DeviceId::from_u64(rng.random()),
                rng.random(),
            )
        })
        .collect();
    for key in &keys {
        let value = Bytes::from(random_bytes(&mut rng, REMOTE_VALUE_LEN));
        ready(cache.insert(key, value)).expect("insert into MemoryStore");
    }
    assert!(
        keys.iter().all(|key| ready(cache.get(key)).is_some()),
        "every remote key hits"
    );
    let accesses: Vec<usize> = (0..ACCESSES)
        .map(|_| rng.random_range(0..entries))
        .collect();
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
            ready(cache.get(black_box(&keys[accesses[n & (ACCESSES - 1)]])))
        });
    });
    group.finish();
}

/// Plots and the default 100,000 bootstrap resamples took ~18 s per benchmark on the 2-vCPU
/// development machine, three times the measurement itself; the console report is what we quote.
fn config() -> Criterion {
    Criterion::default().without_plots().nresamples(20_000)
}

criterion_group! {
    name = benches;
    config = config();
    targets = l1_get_hit, l1_get_hit_ttl, envelope, mac, cache_remote_hit
}
criterion_main!(benches);
