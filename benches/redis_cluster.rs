//! The price of verification on Redis Cluster, and what the owner-affine key layout buys and
//! costs. Against a private six-node cluster (three primaries, three replicas) that the bench
//! starts on loopback (`tests/support/cluster.rs`), in one process, in **interleaved rounds**:
//! every round runs each contender of a row once, the order rotated each round, and each
//! contender's median over the rounds is compared (as `benches/l1_rounds.rs` does), so a change
//! in the machine's load hits the contenders of a round alike.
//!
//! Rows, each at the given numbers of concurrent tasks:
//!
//! - `get` (1, 64, 256 tasks): `Cache::get` (local tier off) through `RedisClusterStore` — `GET`
//!   routed by slot, then the envelope opened for the requested key — against a raw redis-rs
//!   cluster `GET` of the same sealed bytes, unverified; and `RedisClusterStore::get` alone
//!   (no envelope opened), to tell the store's cost from the cache's.
//! - `get_many` of 16 random keys (1, 64, 256 tasks): `Cache::get_many` (one `MGET`, split by
//!   slot by redis-rs, every element opened) against a raw redis-rs cluster `MGET` of the same
//!   keys.
//! - `device get_many` (1, 64 tasks): the 16 values of one device, read with `Cache::get_many`
//!   in the flat layout (16 slots) and in the owner-affine layout (one slot, one node), and raw
//!   `MGET`s of the same keys in each layout.
//! - `hot device get` (64, 256 tasks): every task reads the 16 values of the *same* device, one
//!   `GET` at a time: in the flat layout the load spreads over the three primaries, in the
//!   owner-affine layout it all falls on one. The hot-slot trade-off.
//!
//! 4,096 keys (256 devices × 16 items) of 256-byte values, written in both layouts.
//!
//! ```text
//! cargo bench --features redis-cluster --bench redis_cluster
//! ```
//!
//! Prints `SKIPPED: …` and exits 0 when `redis-server` or `redis-cli` is missing (fails with
//! `SCOPED_CACHE_REQUIRE_SERVERS=1`). Under `cargo test --benches` (no `--bench` flag) it runs
//! one short round of each row as a smoke test.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use bytes::Bytes;
use common::measuring;
use rand::RngExt;
use scoped_cache::store::{KeyLayout, RedisClusterStore, RemoteStore as _};
use scoped_cache::{Cache, Client, DeviceId, Key, KeyId, KeyRing, TenantId};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};
use support::cluster::RedisCluster;
use support::fixture::Thumbs;

/// Devices, and values per device: 4,096 keys.
const DEVICES: u64 = 256;
const ITEMS: u64 = 16;
const KEYS: u64 = DEVICES * ITEMS;
const PAYLOAD: usize = 256;
/// Keys per `get_many`.
const BATCH: u64 = 16;
/// Measured rounds per row.
const ROUNDS: usize = 11;

/// The `i`-th key: four devices per tenant, `ITEMS` items per device.
fn key(i: u64) -> Key<Thumbs> {
    let device = i / ITEMS;
    Key::new(
        TenantId::from_u64(device / 4),
        DeviceId::from_u64(device),
        i % ITEMS,
    )
}

/// Key indices in a seeded random order, the same for every contender; drawn before any timing.
static ORDER: LazyLock<Vec<u64>> = LazyLock::new(|| {
    let mut rng = common::rng();
    (0..1 << 16).map(|_| rng.random_range(0..KEYS)).collect()
});

/// The key the `i`-th operation reads, whichever task runs it.
fn index(i: u64) -> u64 {
    ORDER[(i % ORDER.len() as u64) as usize]
}

/// The device the `i`-th device read is for.
fn device(i: u64) -> u64 {
    index(i) / ITEMS
}

/// The hot device of the hot-device rows.
const HOT_DEVICE: u64 = 7;

/// One way of reading.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Contender {
    /// A raw redis-rs cluster `GET` of a random key's sealed bytes (flat layout), unverified.
    RawGet,
    /// `RedisClusterStore::get` of a random key, flat layout, unverified: the store alone.
    StoreGet,
    /// `Cache::get` of a random key, flat layout.
    Verified,
    /// A raw cluster `MGET` of `BATCH` random keys (flat layout).
    RawMget,
    /// `Cache::get_many` of `BATCH` random keys, flat layout.
    VerifiedMget,
    /// A raw `MGET` of one device's values, in the flat layout.
    RawDeviceFlat,
    /// The same in the owner-affine layout (one slot).
    RawDeviceAffine,
    /// `Cache::get_many` of one device's values, flat layout.
    DeviceFlat,
    /// The same in the owner-affine layout.
    DeviceAffine,
    /// `Cache::get` of one of the hot device's values, flat layout.
    HotFlat,
    /// The same in the owner-affine layout.
    HotAffine,
}

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Contender::RawGet => "raw GET",
            Contender::StoreGet => "store (unverified)",
            Contender::Verified => "verified",
            Contender::RawMget => "raw MGET",
            Contender::VerifiedMget => "verified",
            Contender::RawDeviceFlat => "raw flat",
            Contender::RawDeviceAffine => "raw affine",
            Contender::DeviceFlat => "verified flat",
            Contender::DeviceAffine => "verified affine",
            Contender::HotFlat => "verified flat",
            Contender::HotAffine => "verified affine",
        }
    }

    /// Keys read per operation.
    fn keys(self) -> u64 {
        match self {
            Contender::RawGet
            | Contender::StoreGet
            | Contender::Verified
            | Contender::HotFlat
            | Contender::HotAffine => 1,
            _ => BATCH,
        }
    }
}

struct Bench {
    runtime: tokio::runtime::Runtime,
    flat: Cache<Thumbs>,
    flat_store: Arc<RedisClusterStore>,
    affine: Cache<Thumbs>,
    raw: redis::cluster_async::ClusterConnection,
    /// Each key's Redis key in the flat and in the owner-affine layout (no prefix).
    flat_keys: Arc<Vec<Vec<u8>>>,
    affine_keys: Arc<Vec<Vec<u8>>>,
}

/// Runs `tasks` concurrent tasks that together do about `ops` operations; the time per
/// operation.
fn concurrent<F, Fut>(runtime: &tokio::runtime::Runtime, ops: u64, tasks: u64, op: F) -> Duration
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let per_task = ops.div_ceil(tasks);
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
        started.elapsed() / (per_task * tasks) as u32
    })
}

/// The time per key of `ops` operations by `contender` over `tasks` tasks; `start` offsets the
/// operation numbers, so that every round reads other keys.
fn run(bench: &Bench, contender: Contender, start: u64, ops: u64, tasks: u64) -> Duration {
    let (raw, flat_keys, affine_keys) = (
        bench.raw.clone(),
        Arc::clone(&bench.flat_keys),
        Arc::clone(&bench.affine_keys),
    );
    let (flat, affine) = (bench.flat.clone(), bench.affine.clone());
    let flat_store = Arc::clone(&bench.flat_store);
    let per_op = concurrent(&bench.runtime, ops, tasks, move |i| {
        let i = start + i;
        let mut raw = raw.clone();
        let (flat_keys, affine_keys) = (Arc::clone(&flat_keys), Arc::clone(&affine_keys));
        let (flat, affine) = (flat.clone(), affine.clone());
        let flat_store = Arc::clone(&flat_store);
        async move {
            let device_keys = |device: u64| device * ITEMS..(device + 1) * ITEMS;
            let raw_mget = |indices: Vec<u64>, keys: &[Vec<u8>]| {
                let mut cmd = redis::cmd("MGET");
                for &k in &indices {
                    cmd.arg(&keys[k as usize]);
                }
                cmd
            };
            match contender {
                Contender::RawGet => {
                    let found: Option<Vec<u8>> = redis::cmd("GET")
                        .arg(&flat_keys[index(i) as usize])
                        .query_async(&mut raw)
                        .await
                        .expect("raw GET");
                    assert!(found.is_some());
                }
                Contender::StoreGet => {
                    let found = flat_store.get(&flat_keys[index(i) as usize]).await;
                    assert!(found.expect("store GET").is_some());
                }
                Contender::Verified => assert!(flat.get(&key(index(i))).await.is_some()),
                Contender::HotFlat | Contender::HotAffine => {
                    let cache = if contender == Contender::HotFlat {
                        &flat
                    } else {
                        &affine
                    };
                    let k = key(HOT_DEVICE * ITEMS + i % ITEMS);
                    assert!(cache.get(&k).await.is_some());
                }
                Contender::RawMget | Contender::RawDeviceFlat | Contender::RawDeviceAffine => {
                    let (indices, keys): (Vec<u64>, &[Vec<u8>]) = match contender {
                        Contender::RawMget => (
                            (0..BATCH).map(|j| index(i * BATCH + j)).collect(),
                            &flat_keys,
                        ),
                        Contender::RawDeviceFlat => (device_keys(device(i)).collect(), &flat_keys),
                        _ => (device_keys(device(i)).collect(), &affine_keys),
                    };
                    let found: Vec<Option<Vec<u8>>> = raw_mget(indices, keys)
                        .query_async(&mut raw)
                        .await
                        .expect("raw MGET");
                    assert!(found.iter().all(Option::is_some));
                }
                Contender::VerifiedMget | Contender::DeviceFlat | Contender::DeviceAffine => {
                    let (indices, cache): (Vec<u64>, _) = match contender {
                        Contender::VerifiedMget => {
                            ((0..BATCH).map(|j| index(i * BATCH + j)).collect(), &flat)
                        }
                        Contender::DeviceFlat => (device_keys(device(i)).collect(), &flat),
                        _ => (device_keys(device(i)).collect(), &affine),
                    };
                    let keys: Vec<Key<Thumbs>> = indices.into_iter().map(key).collect();
                    let found = cache.get_many(&keys).await;
                    assert!(found.iter().all(Option::is_some));
                }
            }
        }
    });
    per_op / contender.keys() as u32
}

/// A row of the table: contenders measured against each other, the first one the peer.
struct Row {
    name: String,
    tasks: u64,
    ops: u64,
    contenders: Vec<Contender>,
}

fn rows(measuring: bool) -> Vec<Row> {
    let scale = |ops: u64| if measuring { ops } else { ops / 50 };
    let mut rows = Vec::new();
    for tasks in [1, 64, 256] {
        rows.push(Row {
            name: "get".into(),
            tasks,
            ops: scale(if tasks == 1 { 1_000 } else { 6_000 }),
            contenders: vec![Contender::RawGet, Contender::StoreGet, Contender::Verified],
        });
    }
    for tasks in [1, 64, 256] {
        rows.push(Row {
            name: format!("get_many of {BATCH}"),
            tasks,
            ops: scale(if tasks == 1 { 200 } else { 1_000 }),
            contenders: vec![Contender::RawMget, Contender::VerifiedMget],
        });
    }
    for tasks in [1, 64] {
        rows.push(Row {
            name: "device get_many".into(),
            tasks,
            ops: scale(if tasks == 1 { 200 } else { 1_000 }),
            contenders: vec![
                Contender::RawDeviceFlat,
                Contender::DeviceFlat,
                Contender::RawDeviceAffine,
                Contender::DeviceAffine,
            ],
        });
    }
    for tasks in [64, 256] {
        rows.push(Row {
            name: "hot device get".into(),
            tasks,
            ops: scale(6_000),
            contenders: vec![Contender::HotFlat, Contender::HotAffine],
        });
    }
    rows
}

/// Median, first and third quartile of one contender's times per key, in µs.
struct Summary {
    median: f64,
    q1: f64,
    q3: f64,
}

impl Summary {
    fn of(mut us: Vec<f64>) -> Self {
        us.sort_by(f64::total_cmp);
        let at = |q: f64| us[((us.len() - 1) as f64 * q).round() as usize];
        Self {
            median: at(0.5),
            q1: at(0.25),
            q3: at(0.75),
        }
    }
}

/// The system's 1-minute load average, when `/proc/loadavg` is there.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "n/a".to_owned())
}

fn setup(cluster: &RedisCluster) -> Bench {
    LazyLock::force(&ORDER);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ring = KeyRing::new(KeyId(1), b"bench secret: thirty-two bytes or more").expect("ring");
    let ((flat, flat_store), (affine, _), raw) = runtime.block_on(async {
        let cache = |layout: KeyLayout| {
            let (seeds, ring) = (cluster.seeds(), ring.clone());
            async move {
                let store = RedisClusterStore::builder(seeds)
                    .key_layout(layout)
                    .connect()
                    .await
                    .expect("connect");
                let store = Arc::new(store);
                let client = Client::builder()
                    .key_ring(ring)
                    .remote_shared(store.clone())
                    .build()
                    .expect("client");
                let cache: Cache<Thumbs> = client.cache().local_capacity(0).build().expect("cache");
                for i in 0..KEYS {
                    cache
                        .insert(&key(i), Bytes::from(vec![i as u8; PAYLOAD]))
                        .await
                        .expect("insert");
                }
                (cache, store)
            }
        };
        let raw = redis::cluster::ClusterClient::new(cluster.seeds())
            .expect("seeds")
            .get_async_connection()
            .await
            .expect("raw connection");
        (
            cache(KeyLayout::Flat).await,
            cache(KeyLayout::OwnerAffine).await,
            raw,
        )
    });
    let layout_keys = |layout: KeyLayout| {
        Arc::new(
            (0..KEYS)
                .map(|i| layout.store_key(&key(i).encode()))
                .collect(),
        )
    };
    Bench {
        runtime,
        flat,
        flat_store,
        affine,
        raw,
        flat_keys: layout_keys(KeyLayout::Flat),
        affine_keys: layout_keys(KeyLayout::OwnerAffine),
    }
}

fn main() {
    let cluster = match RedisCluster::start() {
        Ok(cluster) => cluster,
        Err(missing) if support::harness::servers_required() => panic!("{missing}"),
        Err(missing) => {
            eprintln!("SKIPPED: {missing}");
            return;
        }
    };
    let measuring = measuring();
    let rounds = if measuring { ROUNDS } else { 1 };
    let bench = setup(&cluster);
    let load_before = load_average();
    println!(
        "redis_cluster: {rounds} interleaved round(s) per row, order rotated each round; \
         load average (1 min) {load_before} at start\n"
    );
    println!(
        "{:<18} {:>5}  {:<16} {:>22}  {:>7}",
        "row", "tasks", "contender", "µs/key median [IQR]", "÷ first"
    );
    let mut start = 0;
    for row in rows(measuring) {
        let n = row.contenders.len();
        if measuring {
            // One untimed round: connections warm, every contender's keys touched once.
            for &contender in &row.contenders {
                run(&bench, contender, start, row.ops / 4, row.tasks);
            }
        }
        let mut times = vec![Vec::new(); n];
        for r in 0..rounds {
            for j in 0..n {
                let c = (r + j) % n;
                let elapsed = run(&bench, row.contenders[c], start, row.ops, row.tasks);
                times[c].push(elapsed.as_nanos() as f64 / 1_000.0);
            }
            start += row.ops * BATCH;
        }
        let summaries: Vec<Summary> = times.into_iter().map(Summary::of).collect();
        for (contender, summary) in row.contenders.iter().zip(&summaries) {
            // Throughput ratio against the row's first contender: its time ÷ this one's.
            println!(
                "{:<18} {:>5}  {:<16} {:>7.2} [{:>5.2} – {:>5.2}]  {:>6.2}×",
                row.name,
                row.tasks,
                contender.name(),
                summary.median,
                summary.q1,
                summary.q3,
                summaries[0].median / summary.median,
            );
        }
    }
    println!(
        "\n÷ first: the first contender's median time ÷ this one's (its throughput relative to \
         the first); load average (1 min) {} at end",
        load_average()
    );
    drop(bench);
    drop(cluster);
}
