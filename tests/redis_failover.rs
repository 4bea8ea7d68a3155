//! Chaos under load, on a real six-node Redis Cluster that each test starts itself: a primary
//! killed mid-storm (its replica promoted), a manual `CLUSTER FAILOVER`, slots migrated with
//! `redis-cli --cluster reshard` (so `MOVED` and `ASK` arrive while requests are in flight),
//! and a primary restarted empty; and behind Sentinel (a primary, a replica, three
//! sentinels), the primary killed mid-storm.
//!
//! Each test runs one storm through `Cache` (no local tier: every read goes to the cluster):
//! 24 workers doing `get_or_load`, `get_many`, `insert`, and reads cancelled after 0–2 ms, for
//! 1,024 keys whose values name their owner. It measures a baseline, applies the change, and
//! then requires:
//!
//! - **0 wrong values** (every value returned names the owner that asked) and 0 violations;
//! - **no call past its bound**: a call makes at most two store calls of `TIMEOUT` each (a
//!   `get_or_load` reads, then stores what it loaded), plus `SCHEDULING_SLACK`;
//! - **errors counted** (`remote_errors`), and none in the last second of the run;
//! - **the hit ratio back** to 90% of the baseline's, with no errors, for three windows of
//!   100 ms in a row, within `RECOVERY_LIMIT` of the change starting.
//!
//! Each prints a line with throughput and hit ratio before, during and after, errors, and the
//! time to recover (`cargo test --features redis-cluster,redis-sentinel --test redis_failover`;
//! the harness does not capture output).

mod support;

use bytes::Bytes;
use scoped_cache::store::{RedisClusterStore, RedisSentinelStore, RemoteStore, StoreFuture};
use scoped_cache::{
    Cache, Client, DeviceId, Key, KeyId, KeyRing, Namespace, RawBytes, Stats, TenantId,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::cluster::{HEALTHY_DEADLINE, RedisCluster, RedisSentinel};
use support::harness::{self, trials};

/// libtest-mimic (`harness = false`): without `redis-server` or `redis-cli` these tests are
/// reported as ignored, not passed (see `support::harness`).
fn main() -> std::process::ExitCode {
    harness::run(trials![
        cluster_test(primary_killed_mid_storm_replica_promoted),
        cluster_test(manual_failover_mid_storm),
        cluster_test(slots_migrated_mid_storm),
        cluster_test(primary_restarted_empty_mid_storm),
        sentinel_test(sentinel_primary_killed_mid_storm),
    ])
}

/// The store's response timeout in these storms.
const TIMEOUT: Duration = Duration::from_millis(250);
/// How far past its bound a call may return with 24 busy workers and six (or nine) servers on
/// a 2-core machine in debug mode. Bounded, not fast, is what is checked.
const SCHEDULING_SLACK: Duration = Duration::from_secs(1);
/// From the change starting to the hit ratio being back. Failure detection alone takes
/// `NODE_TIMEOUT_MS` (1 s) plus an election (0.5–1 s).
const RECOVERY_LIMIT: Duration = Duration::from_secs(10);
/// Every test body runs under this limit (the cluster's start is outside it).
const TEST_LIMIT: Duration = Duration::from_secs(60);
const WINDOW: Duration = Duration::from_millis(100);

struct Thumbs;
impl Namespace for Thumbs {
    const NAME: &'static str = "thumb";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = Bytes;
    type Codec = RawBytes;
}

const TENANTS: u64 = 64;
const DEVICES: u64 = 4;
const ITEMS: u64 = 4;

type Owner = (u64, u64, u64);

fn pick(rng: &mut support::Rng) -> Owner {
    (rng.below(TENANTS), rng.below(DEVICES), rng.below(ITEMS))
}

fn key((tenant, device, item): Owner) -> Key<Thumbs> {
    // Tenants and devices share numbers on purpose: (t, d) and (d, t) are different owners.
    Key::new(TenantId::from_u64(tenant), DeviceId::from_u64(device), item)
}

fn value((tenant, device, item): Owner, version: u64) -> Bytes {
    Bytes::from(format!("{tenant}|{device}|{item}|{version}"))
}

fn belongs((tenant, device, item): Owner, found: &[u8]) -> bool {
    found.starts_with(format!("{tenant}|{device}|{item}|").as_bytes())
}

fn cache_on(store: Arc<dyn RemoteStore>) -> Cache<Thumbs> {
    Client::builder()
        .key_ring(KeyRing::new(KeyId(1), b"failover tests: thirty-two bytes or more").unwrap())
        .remote(ErrorLog { store })
        .build()
        .unwrap()
        .cache::<Thumbs>()
        .local_capacity(0)
        .ttl(Duration::from_secs(600))
        .build()
        .unwrap()
}

/// Every store error message (digits blanked, so that addresses and timings group), with how
/// often it was seen, printed in each storm's summary: what "errors" were, not only how many.
static ERRORS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

/// A store that records its errors in `ERRORS`.
struct ErrorLog {
    store: Arc<dyn RemoteStore>,
}

impl ErrorLog {
    fn log<'a, T: Send + 'a>(&'a self, call: StoreFuture<'a, T>) -> StoreFuture<'a, T> {
        Box::pin(async move {
            let outcome = call.await;
            if let Err(error) = &outcome {
                let text: String = error
                    .to_string()
                    .chars()
                    .map(|c| if c.is_ascii_digit() { '#' } else { c })
                    .take(120)
                    .collect();
                *ERRORS.lock().unwrap().entry(text).or_default() += 1;
            }
            outcome
        })
    }
}

impl RemoteStore for ErrorLog {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Bytes>> {
        self.log(self.store.get(key))
    }
    fn get_many<'a>(&'a self, keys: &'a [Vec<u8>]) -> StoreFuture<'a, Vec<Option<Bytes>>> {
        self.log(self.store.get_many(keys))
    }
    fn set<'a>(
        &'a self,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()> {
        self.log(self.store.set(key, value, ttl))
    }
    fn delete<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, ()> {
        self.log(self.store.delete(key))
    }
    fn delete_if<'a>(&'a self, key: &'a [u8], value: &'a Bytes) -> StoreFuture<'a, ()> {
        self.log(self.store.delete_if(key, value))
    }
}

async fn cluster_cache(cluster: &RedisCluster) -> Cache<Thumbs> {
    let store = RedisClusterStore::builder_from_url(&cluster.url())
        .response_timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .connect()
        .await
        .unwrap();
    cache_on(Arc::new(store))
}

/// What the workers saw that `Stats` does not count.
#[derive(Default)]
struct Tally {
    wrong: AtomicU64,
    slowest_us: AtomicU64,
    cancelled: AtomicU64,
    ops: AtomicU64,
}

/// A storm through `cache`, sampled every `WINDOW`.
struct Storm {
    cache: Cache<Thumbs>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    workers: tokio::task::JoinSet<()>,
    started: Instant,
    samples: Vec<Sample>,
}

#[derive(Clone, Copy)]
struct Sample {
    at: Duration,
    stats: Stats,
    ops: u64,
}

impl Storm {
    /// Fills every key, then starts the workers.
    async fn start(cache: Cache<Thumbs>) -> Self {
        for tenant in 0..TENANTS {
            for device in 0..DEVICES {
                for item in 0..ITEMS {
                    let owner = (tenant, device, item);
                    cache.insert(&key(owner), value(owner, 0)).await.unwrap();
                }
            }
        }
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..24u64 {
            let (cache, tally, stop) = (cache.clone(), Arc::clone(&tally), Arc::clone(&stop));
            workers.spawn(work(cache, tally, stop, worker));
        }
        let mut storm = Self {
            cache,
            tally,
            stop,
            workers,
            started: Instant::now(),
            samples: Vec::new(),
        };
        storm.sample();
        storm
    }

    fn sample(&mut self) {
        self.samples.push(Sample {
            at: self.started.elapsed(),
            stats: self.cache.stats(),
            ops: self.tally.ops.load(Ordering::Relaxed),
        });
    }

    /// Samples for `duration`.
    async fn run_for(&mut self, duration: Duration) {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            tokio::time::sleep(WINDOW).await;
            self.sample();
        }
    }

    /// Samples until `done` is finished (a blocking wait on the cluster, run on its own
    /// thread), returning its result.
    async fn run_while<T: Send + 'static>(&mut self, done: tokio::task::JoinHandle<T>) -> T {
        while !done.is_finished() {
            tokio::time::sleep(WINDOW).await;
            self.sample();
        }
        done.await.unwrap()
    }

    /// Samples until the hit ratio is back (see the module docs) or `RECOVERY_LIMIT` after
    /// `change`; returns when it was back, measured from `change`.
    async fn run_until_recovered(&mut self, change: Duration, baseline: f64) -> Option<Duration> {
        loop {
            if let Some(back) = self.recovered_at(change, baseline) {
                return Some(back - change);
            }
            if self.started.elapsed() > change + RECOVERY_LIMIT {
                return None;
            }
            tokio::time::sleep(WINDOW).await;
            self.sample();
        }
    }

    /// The start of the first of three windows in a row after `change` that are healthy.
    fn recovered_at(&self, change: Duration, baseline: f64) -> Option<Duration> {
        let windows: Vec<(Duration, bool)> = self
            .samples
            .windows(2)
            .filter(|pair| pair[0].at >= change)
            .map(|pair| {
                let (before, after) = (pair[0].stats, pair[1].stats);
                let reads =
                    (after.hits_remote + after.misses) - (before.hits_remote + before.misses);
                let hits = after.hits_remote - before.hits_remote;
                let errors = after.remote_errors - before.remote_errors;
                let healthy =
                    reads > 0 && errors == 0 && hits as f64 / reads as f64 >= 0.9 * baseline;
                (pair[0].at, healthy)
            })
            .collect();
        windows
            .windows(3)
            .find(|three| three.iter().all(|(_, healthy)| *healthy))
            .map(|three| three[0].0)
    }

    /// (reads per second, hit ratio, remote errors) between two instants of the run.
    fn between(&self, from: Duration, to: Duration) -> (f64, f64, u64) {
        let first = self
            .samples
            .iter()
            .rev()
            .find(|s| s.at <= from)
            .unwrap_or(&self.samples[0]);
        let last = self
            .samples
            .iter()
            .rev()
            .find(|s| s.at <= to)
            .unwrap_or(first);
        let (a, b) = (first.stats, last.stats);
        let reads = (b.hits_remote + b.misses) - (a.hits_remote + a.misses);
        let hits = b.hits_remote - a.hits_remote;
        let seconds = (last.at - first.at).as_secs_f64().max(1e-9);
        (
            (last.ops - first.ops) as f64 / seconds,
            if reads == 0 {
                0.0
            } else {
                hits as f64 / reads as f64
            },
            b.remote_errors - a.remote_errors,
        )
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the workers (bounded) and checks what every storm must show; prints the summary.
    ///
    /// `change` is when the change started, `done` when the cluster was healthy again, and
    /// `recovered` how long after `change` the hit ratio was back. "During" is from `change`
    /// to whichever of `done` and the recovery came last; "after" is the last second.
    async fn finish(
        mut self,
        name: &str,
        change: Duration,
        done: Duration,
        recovered: Option<Duration>,
    ) {
        self.run_for(Duration::from_secs(1)).await;
        let end = self.now();
        self.stop.store(true, Ordering::Relaxed);
        tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(done) = self.workers.join_next().await {
                done.unwrap();
            }
        })
        .await
        .expect("a worker hung after the storm was stopped");

        let (before_ops, before_ratio, before_errors) = self.between(Duration::ZERO, change);
        let back = (change + recovered.unwrap_or(RECOVERY_LIMIT)).max(done);
        let (during_ops, during_ratio, during_errors) = self.between(change, back);
        let last_second = end.saturating_sub(Duration::from_secs(1));
        let (after_ops, after_ratio, after_errors) = self.between(back.max(last_second), end);
        let stats = self.cache.stats();
        let slowest = Duration::from_micros(self.tally.slowest_us.load(Ordering::Relaxed));
        let wrong = self.tally.wrong.load(Ordering::Relaxed);
        eprintln!(
            "{name}: before {before_ops:.0} ops/s hit {:.1}% errors {before_errors} | during \
             {during_ops:.0} ops/s hit {:.1}% errors {during_errors} (change done after \
             {:?}) | after {after_ops:.0} \
             ops/s hit {:.1}% errors {after_errors} | recovered in {recovered:?} | slowest \
             call {slowest:?} | cancelled {} | wrong {wrong} | {stats:?}",
            100.0 * before_ratio,
            100.0 * during_ratio,
            done - change,
            100.0 * after_ratio,
            self.tally.cancelled.load(Ordering::Relaxed),
        );
        eprintln!(
            "{name}: store errors so far in this binary: {:#?}",
            ERRORS.lock().unwrap()
        );
        assert_eq!(wrong, 0, "{name}: a read returned another owner's value");
        assert_eq!(stats.violations.total(), 0, "{name}: {stats:?}");
        assert!(
            slowest < 2 * TIMEOUT + SCHEDULING_SLACK,
            "{name}: a call took {slowest:?}"
        );
        assert!(
            recovered.is_some(),
            "{name}: the hit ratio was not back within {RECOVERY_LIMIT:?}"
        );
        assert_eq!(after_errors, 0, "{name}: errors after recovery");
        assert!(
            before_ratio > 0.9,
            "{name}: baseline hit ratio {before_ratio}"
        );
    }
}

/// One worker: a random mix until `stop`.
async fn work(cache: Cache<Thumbs>, tally: Arc<Tally>, stop: Arc<AtomicBool>, worker: u64) {
    let mut rng = support::Rng::new(0xc1u64 << 32 | worker);
    let mut version = 0;
    while !stop.load(Ordering::Relaxed) {
        let owner = pick(&mut rng);
        let k = key(owner);
        let started = Instant::now();
        match rng.below(100) {
            0..60 => {
                let load = || async move {
                    tokio::task::yield_now().await;
                    Ok::<_, std::io::Error>(value(owner, 0))
                };
                if let Ok(found) = cache.get_or_load(&k, load).await
                    && !belongs(owner, &found)
                {
                    tally.wrong.fetch_add(1, Ordering::Relaxed);
                }
            }
            60..75 => {
                let owners: Vec<Owner> = (0..8).map(|_| pick(&mut rng)).collect();
                let keys: Vec<Key<Thumbs>> = owners.iter().copied().map(key).collect();
                for (owner, found) in owners.into_iter().zip(cache.get_many(&keys).await) {
                    if found.is_some_and(|found| !belongs(owner, &found)) {
                        tally.wrong.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            75..90 => {
                version += 1;
                let _ = cache.insert(&k, value(owner, version)).await;
            }
            _ => {
                let limit = Duration::from_micros(rng.below(2_000));
                match tokio::time::timeout(limit, cache.get(&k)).await {
                    Ok(Some(found)) if !belongs(owner, &found) => {
                        tally.wrong.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        tally.cancelled.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        let took = started.elapsed();
        tally
            .slowest_us
            .fetch_max(took.as_micros() as u64, Ordering::Relaxed);
        tally.ops.fetch_add(1, Ordering::Relaxed);
        // Keep an outage (calls failing at once) from being a busy loop on two cores.
        if took > Duration::from_millis(1) {
            tokio::task::yield_now().await;
        }
    }
}

async fn within<F: std::future::Future>(body: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("test exceeded its time limit")
}

/// Waits (on a blocking thread) until the cluster is healthy again.
fn healthy(cluster: &Arc<RedisCluster>) -> tokio::task::JoinHandle<Result<Duration, String>> {
    let cluster = Arc::clone(cluster);
    tokio::task::spawn_blocking(move || cluster.wait_healthy(HEALTHY_DEADLINE))
}

async fn primary_killed_mid_storm_replica_promoted(mut cluster: RedisCluster) {
    let victim = cluster.primaries()[0];
    let replica = cluster.replica_of(victim);
    let mut storm = Storm::start(cluster_cache(&cluster).await).await;
    within(async {
        storm.run_for(Duration::from_secs(1)).await;
        let (_, baseline, _) = storm.between(Duration::ZERO, storm.now());
        let change = storm.now();
        cluster.kill(victim);
        let cluster = Arc::new(cluster);
        storm.run_while(healthy(&cluster)).await.unwrap();
        assert!(
            cluster.primaries().contains(&replica),
            "the replica was promoted"
        );
        let done = storm.now();
        let recovered = storm.run_until_recovered(change, baseline).await;
        assert!(
            storm.cache.stats().remote_errors > 0,
            "the outage was seen as errors"
        );
        storm
            .finish("primary killed", change, done, recovered)
            .await;
    })
    .await;
}

async fn manual_failover_mid_storm(cluster: RedisCluster) {
    let primary = cluster.primaries()[1];
    let replica = cluster.replica_of(primary);
    let mut storm = Storm::start(cluster_cache(&cluster).await).await;
    within(async {
        storm.run_for(Duration::from_secs(1)).await;
        let (_, baseline, _) = storm.between(Duration::ZERO, storm.now());
        let change = storm.now();
        cluster.cli(replica, &["CLUSTER", "FAILOVER"]).unwrap();
        let cluster = Arc::new(cluster);
        let promoted = {
            let cluster = Arc::clone(&cluster);
            tokio::task::spawn_blocking(move || {
                let deadline = Instant::now() + HEALTHY_DEADLINE;
                while !cluster.primaries().contains(&replica) {
                    if Instant::now() > deadline {
                        return Err("the replica was not promoted".to_owned());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                cluster.wait_healthy(HEALTHY_DEADLINE)
            })
        };
        storm.run_while(promoted).await.unwrap();
        assert!(
            !cluster.primaries().contains(&primary),
            "the old primary was demoted"
        );
        let done = storm.now();
        let recovered = storm.run_until_recovered(change, baseline).await;
        storm
            .finish("manual failover", change, done, recovered)
            .await;
    })
    .await;
}

async fn slots_migrated_mid_storm(cluster: RedisCluster) {
    let primaries = cluster.primaries();
    let slots_of = |cluster: &RedisCluster, port: u16| {
        let topology = cluster.topology();
        topology
            .iter()
            .find(|node| node.port == port)
            .map(|node| node.slots)
    };
    let target_slots = slots_of(&cluster, primaries[1]).unwrap();
    let mut storm = Storm::start(cluster_cache(&cluster).await).await;
    within(async {
        storm.run_for(Duration::from_secs(1)).await;
        let (_, baseline, _) = storm.between(Duration::ZERO, storm.now());
        let change = storm.now();
        // A third of the first primary's slots, with their keys, while the storm reads them.
        let mut reshard = cluster.start_reshard(primaries[0], primaries[1], 2000);
        let cluster = Arc::new(cluster);
        let finished = tokio::task::spawn_blocking(move || reshard.wait());
        let status = storm.run_while(finished).await.unwrap();
        assert!(
            status.success(),
            "reshard failed: {status}\n{}",
            cluster.logs()
        );
        let moved_in = storm.now() - change;
        storm.run_while(healthy(&cluster)).await.unwrap();
        assert_eq!(
            slots_of(&cluster, primaries[1]),
            Some(target_slots + 2000),
            "the slots moved"
        );
        eprintln!("2000 slots migrated in {moved_in:?}");
        let done = storm.now();
        // Recovered once it is healthy after the migration ended (healthy windows while slots
        // still move do not count), measured from the change.
        let recovered = storm
            .run_until_recovered(done, baseline)
            .await
            .map(|after_done| after_done + (done - change));
        storm
            .finish("slots migrated", change, done, recovered)
            .await;
    })
    .await;
}

async fn primary_restarted_empty_mid_storm(mut cluster: RedisCluster) {
    let victim = cluster.primaries()[2];
    let mut storm = Storm::start(cluster_cache(&cluster).await).await;
    within(async {
        storm.run_for(Duration::from_secs(1)).await;
        let (_, baseline, _) = storm.between(Duration::ZERO, storm.now());
        let change = storm.now();
        // Back before anyone notices it was gone (well within the node timeout): still the
        // primary of its slots, with none of their keys; its replica then resyncs, empty too.
        cluster.kill(victim);
        cluster.restart(victim);
        let cluster = Arc::new(cluster);
        storm.run_while(healthy(&cluster)).await.unwrap();
        assert!(cluster.primaries().contains(&victim), "still a primary");
        let done = storm.now();
        let recovered = storm.run_until_recovered(change, baseline).await;
        assert!(
            storm.cache.stats().misses > 0,
            "the lost keys were seen as misses"
        );
        storm
            .finish("primary restarted empty", change, done, recovered)
            .await;
    })
    .await;
}

async fn sentinel_primary_killed_mid_storm(mut group: RedisSentinel) {
    let store = Arc::new(
        RedisSentinelStore::builder_from_url(&group.url())
            .response_timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .connect()
            .await
            .unwrap(),
    );
    let old = group.primary().unwrap();
    let replica = group.replica().unwrap();
    let mut storm = Storm::start(cache_on(store.clone())).await;
    within(async {
        storm.run_for(Duration::from_secs(1)).await;
        let (_, baseline, _) = storm.between(Duration::ZERO, storm.now());
        let change = storm.now();
        group.kill(old);
        let group = Arc::new(group);
        let promoted = {
            let group = Arc::clone(&group);
            tokio::task::spawn_blocking(move || group.wait_failover(old, HEALTHY_DEADLINE))
        };
        storm.run_while(promoted).await.unwrap();
        assert_eq!(group.primary(), Ok(replica), "the replica was promoted");
        let done = storm.now();
        let recovered = storm.run_until_recovered(change, baseline).await;
        assert!(
            storm.cache.stats().remote_errors > 0,
            "the outage was seen as errors"
        );
        storm
            .finish("sentinel primary killed", change, done, recovered)
            .await;
        assert_eq!(store.failovers(), 1, "the store followed the new primary");
    })
    .await;
}
