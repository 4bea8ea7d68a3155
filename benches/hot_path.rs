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
//! The contenders and workloads live in `benches/common/contenders.rs`, shared with
//! `benches/l1_rounds.rs`. Adding a contender: implement [`Contender`] there (and add it to
//! [`bench_contenders`]). Adding a workload: build a [`Workload`] (keys, values and an operation
//! sequence) and drive it with [`bench_ops`].

mod common;

use bytes::Bytes;
use common::contenders::{
    Contender, OPS, SMOKE_ENTRIES, Workload, entries, local_cache, moka, quick_cache, raw_dashmap,
    run_threads, thread_counts,
};
use common::{BenchKey, SECRET, Thumbs, config, measuring, random_bytes, random_key};
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use rand::RngExt;
use scoped_cache::{Cache, Client, KeyId, KeyRing, MemoryStore};
use std::future::Future;
use std::hint::black_box;
use std::ops::Range;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Zipf exponents of the mix.
const ZIPF_EXPONENTS: [f64; 2] = [0.9, 1.1];
/// Payload size of the remote-hit group, and how many keys it cycles through.
const REMOTE_VALUE_LEN: usize = 1024;
const REMOTE_ENTRIES: usize = 10_000;

/// One benchmark per thread count: `cache` performing `workload`'s operations.
///
/// One criterion iteration is one operation *per thread*: the reported time is the latency of
/// one operation as each thread sees it, and `Throughput::Elements(threads)` makes criterion's
/// elements/s the aggregate operation rate, comparable across thread counts.
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
