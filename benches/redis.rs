//! The price of verification against a real server: `Cache::get` through `RedisStore` (GET,
//! then the envelope opened for the requested key) against a raw redis-rs `GET` of the same
//! bytes, at 1, 64 and 256 concurrent tasks; `Cache::get_many` (one MGET, every element opened
//! for its key) of 16 and 128 keys against a raw `MGET`. All in one process, against one
//! private `redis-server` on a unix socket, so the ratios are what to quote. At the end,
//! `redis-benchmark -P 16 -t get` on the same server, as the ceiling.
//!
//! ```text
//! cargo bench --features redis --bench redis
//! ```
//!
//! The client runs on a two-thread tokio runtime; `REDIS_BENCH_WORKERS=1` runs it on one.
//!
//! Prints `SKIPPED: redis-server not found` and exits 0 when there is no server binary.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use rand::RngExt;
use scoped_cache::{Cache, Client, DeviceId, Key, KeyId, KeyRing, RedisStore, TenantId};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use support::fixture::Thumbs;

const KEYS: u64 = 4096;
const PAYLOAD: usize = 256;

fn key(i: u64) -> Key<Thumbs> {
    Key::new(TenantId::from_u64(i % 512), DeviceId::from_u64(i / 512), i)
}

/// Key indices in a seeded random order, the same for every contender; drawn once, before any
/// timing (`setup` forces it).
static ORDER: LazyLock<Vec<u64>> = LazyLock::new(|| {
    let mut rng = common::rng();
    (0..1 << 16).map(|_| rng.random_range(0..KEYS)).collect()
});

/// The key the `i`-th operation reads, whichever task runs it.
fn index(i: u64) -> u64 {
    ORDER[(i % ORDER.len() as u64) as usize]
}

struct Bench {
    runtime: Option<tokio::runtime::Runtime>,
    cache: Cache<Thumbs>,
    cache_2: Cache<Thumbs>,
    raw: redis::aio::MultiplexedConnection,
    /// The Redis key of each bench key (no prefix).
    redis_keys: Arc<Vec<Vec<u8>>>,
}

impl Bench {
    fn rt(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("set up")
    }
}

/// Runs `tasks` concurrent tasks that together do about `iters` operations; returns the time
/// per `iters` operations.
fn concurrent<F, Fut>(runtime: &tokio::runtime::Runtime, iters: u64, tasks: u64, op: F) -> Duration
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per_task = iters.div_ceil(tasks);
    runtime.block_on(async {
        let started = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for task in 0..tasks {
            let op = op.clone();
            set.spawn(async move {
                for i in 0..per_task {
                    op(task * per_task + i).await;
                }
            });
        }
        while let Some(done) = set.join_next().await {
            done.expect("bench task");
        }
        started
            .elapsed()
            .mul_f64(iters as f64 / (per_task * tasks) as f64)
    })
}

/// One way of reading.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Contender {
    /// A raw redis-rs `GET` of the sealed bytes on a `MultiplexedConnection`, unverified.
    RawGet,
    /// `Cache::get` (local tier off) through a one-connection `RedisStore`: `GET`, then the
    /// envelope opened.
    Verified,
    /// The same over two multiplexed connections (the `RedisStore` default).
    Verified2,
    /// A raw `MGET` of this many keys.
    RawMget(u64),
    /// `Cache::get_many` of this many keys over one connection: one `MGET`, every element
    /// opened for its key.
    VerifiedMget(u64),
}

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Contender::RawGet => "raw_redis_rs",
            Contender::Verified => "verified",
            Contender::Verified2 => "verified_2conn",
            Contender::RawMget(_) => "raw_mget",
            Contender::VerifiedMget(_) => "verified_get_many",
        }
    }
}

/// The time `tasks` concurrent tasks take for `iters` reads (batches, for the `get_many`
/// contenders) by `contender`.
fn run(bench: &Bench, contender: Contender, iters: u64, tasks: u64) -> Duration {
    let (raw, keys) = (bench.raw.clone(), Arc::clone(&bench.redis_keys));
    let (cache, cache_2) = (bench.cache.clone(), bench.cache_2.clone());
    concurrent(bench.rt(), iters, tasks, move |i| {
        let (mut raw, keys) = (raw.clone(), Arc::clone(&keys));
        let (cache, cache_2) = (cache.clone(), cache_2.clone());
        async move {
            match contender {
                Contender::RawGet => {
                    let found: Option<Vec<u8>> = redis::cmd("GET")
                        .arg(&keys[index(i) as usize])
                        .query_async(&mut raw)
                        .await
                        .expect("raw GET");
                    assert!(found.is_some());
                }
                Contender::Verified => assert!(cache.get(&key(index(i))).await.is_some()),
                Contender::Verified2 => assert!(cache_2.get(&key(index(i))).await.is_some()),
                Contender::RawMget(batch) => {
                    let mut cmd = redis::cmd("MGET");
                    for j in 0..batch {
                        cmd.arg(&keys[index(i * batch + j) as usize]);
                    }
                    let found: Vec<Option<Vec<u8>>> =
                        cmd.query_async(&mut raw).await.expect("raw MGET");
                    assert_eq!(found.len(), batch as usize);
                }
                Contender::VerifiedMget(batch) => {
                    let wanted: Vec<Key<Thumbs>> =
                        (0..batch).map(|j| key(index(i * batch + j))).collect();
                    let found = cache.get_many(&wanted).await;
                    assert!(
                        found
                            .iter()
                            .all(|value| value.as_ref().is_some_and(|v| v.len() == PAYLOAD))
                    );
                }
            }
        }
    })
}

const GET_CONTENDERS: [Contender; 3] =
    [Contender::RawGet, Contender::Verified, Contender::Verified2];
const TASKS: [u64; 3] = [1, 64, 256];
const BATCHES: [u64; 2] = [16, 128];

fn criterion_benches(c: &mut Criterion, bench: &Bench) {
    let mut group = c.benchmark_group("redis_get");
    group.throughput(Throughput::Elements(1));
    for tasks in TASKS {
        for contender in GET_CONTENDERS {
            group.bench_with_input(
                BenchmarkId::new(contender.name(), tasks),
                &tasks,
                |b, &tasks| {
                    b.iter_custom(|iters| run(bench, contender, iters, tasks));
                },
            );
        }
    }
    group.finish();
    let mut group = c.benchmark_group("redis_get_many");
    for batch in BATCHES {
        group.throughput(Throughput::Elements(batch));
        for contender in [Contender::RawMget(batch), Contender::VerifiedMget(batch)] {
            group.bench_with_input(BenchmarkId::new(contender.name(), batch), &batch, |b, _| {
                b.iter_custom(|iters| run(bench, contender, iters, 1));
            });
        }
    }
    group.finish();
}

/// CPU time of this process (the client side only: the server is another process), in ns,
/// summed over its threads from `/proc/self/task/*/schedstat`; 0 where that is unavailable.
fn client_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Wall time and client CPU time per key of one measured round.
fn measure(bench: &Bench, contender: Contender, iters: u64, tasks: u64, keys: u64) -> (f64, f64) {
    let cpu = client_cpu_ns();
    let wall = run(bench, contender, iters, tasks);
    let cpu = client_cpu_ns().saturating_sub(cpu);
    let keys = (iters * keys) as f64;
    (wall.as_nanos() as f64 / keys, cpu as f64 / keys)
}

/// Ratios that survive a noisy machine: the contenders of a row take turns, round after round,
/// and each row reports the median wall time per key of every contender, and the median client
/// CPU time per key (what verification costs, whatever else the machine runs).
fn paired(bench: &Bench) {
    const ROUNDS: usize = 15;
    let median = |mut samples: Vec<f64>| {
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    };
    let rows: Vec<(String, u64, u64, Vec<Contender>)> = TASKS
        .iter()
        .map(|&tasks| {
            let iters = if tasks == 1 { 2_000 } else { 20_000 };
            (
                format!("get, {tasks} tasks"),
                iters,
                tasks,
                GET_CONTENDERS.to_vec(),
            )
        })
        .chain(BATCHES.iter().map(|&batch| {
            (
                format!("get_many of {batch}, 1 task"),
                4_000 / batch,
                1,
                vec![Contender::RawMget(batch), Contender::VerifiedMget(batch)],
            )
        }))
        .collect();
    println!(
        "\npaired medians of {ROUNDS} alternating rounds, per key (throughput ratio = raw time / verified time)"
    );
    println!(
        "{:<24} {:>9} {:>9} {:>6} {:>9} {:>6} | {:>8} {:>8} {:>6}",
        "row", "raw ns", "verif ns", "ratio", "2conn ns", "ratio", "raw cpu", "verif cpu", "ratio"
    );
    for (name, iters, tasks, contenders) in rows {
        let mut wall = vec![Vec::new(); contenders.len()];
        let mut cpu = vec![Vec::new(); contenders.len()];
        for _ in 0..ROUNDS {
            for (slot, &contender) in contenders.iter().enumerate() {
                let keys = match contender {
                    Contender::RawMget(batch) | Contender::VerifiedMget(batch) => batch,
                    _ => 1,
                };
                let (w, c) = measure(bench, contender, iters, tasks, keys);
                wall[slot].push(w);
                cpu[slot].push(c);
            }
        }
        let wall: Vec<f64> = wall.into_iter().map(median).collect();
        let cpu: Vec<f64> = cpu.into_iter().map(median).collect();
        let two_conn = match wall.get(2) {
            Some(w) => format!("{w:>9.0} {:>6.2}", wall[0] / w),
            None => format!("{:>9} {:>6}", "", ""),
        };
        println!(
            "{name:<24} {:>9.0} {:>9.0} {:>6.2} {two_conn} | {:>8.0} {:>8.0} {:>6.2}",
            wall[0],
            wall[1],
            wall[0] / wall[1],
            cpu[0],
            cpu[1],
            cpu[0] / cpu[1],
        );
    }
}

/// The runtime's worker threads: 2, or `REDIS_BENCH_WORKERS` (a positive number; anything else
/// stops the bench rather than measuring another runtime than the one asked for).
fn workers() -> usize {
    let Ok(workers) = std::env::var("REDIS_BENCH_WORKERS") else {
        return 2;
    };
    workers
        .parse()
        .ok()
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| panic!("REDIS_BENCH_WORKERS={workers:?}: expected a positive number"))
}

fn setup(server: &support::RedisServer) -> Bench {
    LazyLock::force(&ORDER);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers())
        .enable_all()
        .build()
        .expect("runtime");
    let ring = KeyRing::new(KeyId(1), b"bench secret: thirty-two bytes or more").expect("ring");
    let bench = runtime.block_on(async {
        let url = server.url();
        let store = RedisStore::builder(&url)
            .connections(1)
            .connect()
            .await
            .expect("connect");
        let store_2 = RedisStore::builder(&url)
            .connections(2)
            .connect()
            .await
            .expect("connect");
        let client = Client::builder()
            .key_ring(ring.clone())
            .remote(store)
            .build()
            .expect("client");
        let client_2 = Client::builder()
            .key_ring(ring.clone())
            .remote(store_2)
            .build()
            .expect("client");
        let cache = client
            .cache::<Thumbs>()
            .local_capacity(0)
            .build()
            .expect("cache");
        let cache_2 = client_2
            .cache::<Thumbs>()
            .local_capacity(0)
            .build()
            .expect("cache");
        for i in 0..KEYS {
            cache
                .insert(&key(i), Bytes::from(vec![i as u8; PAYLOAD]))
                .await
                .expect("insert");
        }
        let raw = redis::Client::open(url.as_str())
            .expect("url")
            .get_multiplexed_async_connection()
            .await
            .expect("raw connection");
        let redis_keys = Arc::new((0..KEYS).map(|i| key(i).encode()).collect());
        Bench {
            runtime: None,
            cache,
            cache_2,
            raw,
            redis_keys,
        }
    });
    Bench {
        runtime: Some(runtime),
        ..bench
    }
}

/// `redis-benchmark -P 16 -t get` on the bench's server: what the server itself can do.
fn ceiling(server: &support::RedisServer) {
    let output = std::process::Command::new("redis-benchmark")
        .arg("-s")
        .arg(server.socket())
        .args(["-P", "16", "-t", "get", "-n", "1000000", "-d", "340", "-q"])
        .output();
    match output {
        Ok(output) => {
            let stdout = String::from_utf8_lossy(&output.stdout);
            // Progress lines end in '\r'; the summary is the last segment.
            let summary = stdout.rsplit('\r').next().unwrap_or_default().trim();
            println!("ceiling: redis-benchmark -P 16 -t get -d 340 on the same server: {summary}");
        }
        Err(err) => println!("ceiling: redis-benchmark not run ({err})"),
    }
}

fn main() {
    let server = match support::RedisServer::start() {
        Ok(server) => server,
        Err(missing) if support::harness::servers_required() => panic!("{missing}"),
        Err(missing) => {
            eprintln!("SKIPPED: {missing}");
            return;
        }
    };
    let bench = setup(&server);
    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    criterion_benches(&mut c, &bench);
    c.final_summary();
    paired(&bench);
    ceiling(&server);
}
