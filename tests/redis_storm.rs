//! `RedisStore` under storms against a real `redis-server`: thousands of concurrent calls for
//! many owners, a random share cancelled mid-flight; the server killed and restarted during a
//! storm. Every completed read returns its own owner's value or a miss.

mod support;

use bytes::Bytes;
use scoped_cache::store::RemoteStore;
use scoped_cache::{Cache, RedisStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::RedisServer;
use support::fixture::{
    Ids, Thumbs, belongs, key_of, remote_only_cache, remote_only_cache_probing_after, versioned,
};
use support::harness::{self, trials};

/// libtest-mimic (`harness = false`): without `redis-server` the server tests are reported as
/// ignored, not passed (see `support::harness`).
fn main() -> std::process::ExitCode {
    harness::run(trials![
        redis_test(cancellation_storm_through_cache_returns_only_own_values),
        redis_test(cancellation_storm_on_the_raw_store_never_mixes_replies),
        redis_test(server_killed_and_restarted_during_a_storm),
    ])
}

/// Every test body runs under this limit.
const TEST_LIMIT: Duration = Duration::from_secs(30);

const TENANTS: u64 = 64;
const DEVICES: u64 = 4;
const ITEMS: u64 = 4;

/// (tenant, device, item) of a random key.
fn pick(rng: &mut support::Rng) -> Ids {
    (rng.below(TENANTS), rng.below(DEVICES), rng.below(ITEMS))
}

async fn within<F: std::future::Future>(body: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("test exceeded its time limit")
}

/// What a storm saw.
#[derive(Default)]
struct Tally {
    hits: AtomicU64,
    misses: AtomicU64,
    cancelled: AtomicU64,
    errors: AtomicU64,
    wrong: AtomicU64,
}

impl Tally {
    fn read(&self, owner: (u64, u64, u64), found: Option<&[u8]>) {
        match found {
            Some(found) if belongs(owner, found) => self.hits.fetch_add(1, Ordering::Relaxed),
            Some(_) => self.wrong.fetch_add(1, Ordering::Relaxed),
            None => self.misses.fetch_add(1, Ordering::Relaxed),
        };
    }

    fn get(&self, counter: fn(&Self) -> &AtomicU64) -> u64 {
        counter(self).load(Ordering::Relaxed)
    }
}

/// One storm operation through `Cache`, cancelled (by a short timeout, or by aborting its task)
/// at random.
async fn cache_op(cache: Cache<Thumbs>, tally: Arc<Tally>, seed: u64) {
    let mut rng = support::Rng::new(seed);
    let owner = pick(&mut rng);
    let k = key_of(owner);
    match rng.below(100) {
        0..15 => {
            let _ = cache.insert(&k, versioned(owner, seed)).await;
        }
        15..45 => {
            let limit = Duration::from_micros(rng.below(3_000));
            match tokio::time::timeout(limit, cache.get(&k)).await {
                Ok(found) => tally.read(owner, found.as_deref()),
                Err(_) => {
                    tally.cancelled.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        45..60 => {
            let task = {
                let tally = Arc::clone(&tally);
                tokio::spawn(async move {
                    let found = cache.get(&k).await;
                    tally.read(owner, found.as_deref());
                })
            };
            for _ in 0..rng.below(8) {
                tokio::task::yield_now().await;
            }
            task.abort();
            if task.await.is_err() {
                tally.cancelled.fetch_add(1, Ordering::Relaxed);
            }
        }
        _ => tally.read(owner, cache.get(&k).await.as_deref()),
    }
}

async fn cancellation_storm_through_cache_returns_only_own_values(server: RedisServer) {
    within(async {
        for connections in [1, 3] {
            let store = RedisStore::builder(server.url())
                .connections(connections)
                .response_timeout(Duration::from_secs(2))
                .key_prefix(format!("storm{connections}:"))
                .connect()
                .await
                .unwrap();
            let cache = remote_only_cache::<Thumbs>(Arc::new(store));
            let mut rng = support::Rng::new(0x5eed + connections as u64);
            for _ in 0..300 {
                let owner = pick(&mut rng);
                cache
                    .insert(&key_of(owner), versioned(owner, 0))
                    .await
                    .unwrap();
            }
            let tally = Arc::new(Tally::default());
            let mut tasks = tokio::task::JoinSet::new();
            for seed in 0..6_000u64 {
                tasks.spawn(cache_op(cache.clone(), Arc::clone(&tally), seed * 7919 + 1));
            }
            while let Some(done) = tasks.join_next().await {
                done.unwrap();
            }
            let stats = cache.stats();
            eprintln!(
                "connections {connections}: hits {} misses {} cancelled {} wrong {}; {stats:?}",
                tally.get(|t| &t.hits),
                tally.get(|t| &t.misses),
                tally.get(|t| &t.cancelled),
                tally.get(|t| &t.wrong),
            );
            assert_eq!(
                tally.get(|t| &t.wrong),
                0,
                "a read returned another owner's value"
            );
            assert_eq!(
                stats.violations.total(),
                0,
                "a reply reached the wrong request: {stats:?}"
            );
            assert!(tally.get(|t| &t.hits) > 500, "the storm must read values");
            assert!(
                tally.get(|t| &t.cancelled) > 100,
                "the storm must cancel reads"
            );
        }
    })
    .await;
}

/// The same storm one layer down, where nothing verifies the bytes: a reply delivered to the
/// wrong request would be returned as is. This is the test that catches a client that lets a
/// cancelled request's reply reach another request.
async fn cancellation_storm_on_the_raw_store_never_mixes_replies(server: RedisServer) {
    within(async {
        let store = RedisStore::builder(server.url())
            .response_timeout(Duration::from_secs(2))
            .connect()
            .await
            .unwrap();
        let store = Arc::new(store);
        let keys: Vec<Vec<u8>> = (0..512u32)
            .map(|i| format!("raw:{i}").into_bytes())
            .collect();
        for k in &keys {
            let value = Bytes::from([&k[..], b"=", &k[..]].concat());
            store.set(k, value, None).await.unwrap();
        }
        let keys = Arc::new(keys);
        let tally = Arc::new(Tally::default());
        let mut tasks = tokio::task::JoinSet::new();
        for seed in 0..8_000u64 {
            let (store, keys, tally) = (Arc::clone(&store), Arc::clone(&keys), Arc::clone(&tally));
            tasks.spawn(async move {
                let mut rng = support::Rng::new(seed);
                let check = |k: &[u8], found: &[u8]| found == [k, b"=", k].concat();
                // 40% of calls get a limit short enough to cancel them mid-flight.
                let limit = |rng: &mut support::Rng| match rng.below(100) {
                    0..40 => Duration::from_micros(rng.below(3_000)),
                    _ => Duration::from_secs(10),
                };
                if rng.below(4) == 0 {
                    // A batch: every element matched by position.
                    let batch: Vec<Vec<u8>> = (0..16)
                        .map(|_| keys[rng.below(512) as usize].clone())
                        .collect();
                    match tokio::time::timeout(limit(&mut rng), store.get_many(&batch)).await {
                        Ok(Ok(values)) => {
                            for (k, v) in batch.iter().zip(values) {
                                let good = v.is_some_and(|v| check(k, &v));
                                let counter = if good { &tally.hits } else { &tally.wrong };
                                counter.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        // Overload on two shared cores can exceed the response timeout.
                        Ok(Err(_)) => {
                            tally.errors.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => {
                            tally.cancelled.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    return;
                }
                let k = &keys[rng.below(512) as usize];
                match tokio::time::timeout(limit(&mut rng), store.get(k)).await {
                    Ok(Ok(Some(found))) if check(k, &found) => {
                        tally.hits.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Ok(_)) => {
                        tally.wrong.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Err(_)) => {
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        tally.cancelled.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        eprintln!(
            "hits {} cancelled {} store errors {} wrong {}",
            tally.get(|t| &t.hits),
            tally.get(|t| &t.cancelled),
            tally.get(|t| &t.errors),
            tally.get(|t| &t.wrong)
        );
        assert_eq!(
            tally.get(|t| &t.wrong),
            0,
            "a reply reached the wrong request"
        );
        assert!(tally.get(|t| &t.hits) > 1_000);
        assert!(tally.get(|t| &t.cancelled) > 100);
        assert_eq!(store.connections_replaced(), 0);
    })
    .await;
}

async fn server_killed_and_restarted_during_a_storm(mut server: RedisServer) {
    within(async {
        let timeout = Duration::from_millis(300);
        let store = RedisStore::builder(server.url())
            .response_timeout(timeout)
            .connect_timeout(timeout)
            .connect()
            .await
            .unwrap();
        // The store breaker probes after 200 ms, on the scale of this storm.
        let cache =
            remote_only_cache_probing_after::<Thumbs>(Arc::new(store), Duration::from_millis(200));
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let restarted = Arc::new(AtomicBool::new(false));
        let hits_after_restart = Arc::new(AtomicU64::new(0));
        let slowest_us = Arc::new(AtomicU64::new(0));
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..48u64 {
            let (cache, tally, stop) = (cache.clone(), Arc::clone(&tally), Arc::clone(&stop));
            let (restarted, hits_after_restart, slowest_us) = (
                Arc::clone(&restarted),
                Arc::clone(&hits_after_restart),
                Arc::clone(&slowest_us),
            );
            workers.spawn(async move {
                let mut rng = support::Rng::new(worker);
                let mut version = 0;
                while !stop.load(Ordering::Relaxed) {
                    let owner = pick(&mut rng);
                    let k = key_of(owner);
                    let started = Instant::now();
                    if rng.below(3) == 0 {
                        version += 1;
                        let _ = cache.insert(&k, versioned(owner, version)).await;
                    } else if rng.below(4) == 0 {
                        let limit = Duration::from_micros(rng.below(2_000));
                        if tokio::time::timeout(limit, cache.get(&k)).await.is_err() {
                            tally.cancelled.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        let found = cache.get(&k).await;
                        tally.read(owner, found.as_deref());
                        if found.is_some() && restarted.load(Ordering::Relaxed) {
                            hits_after_restart.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let took = started.elapsed().as_micros() as u64;
                    slowest_us.fetch_max(took, Ordering::Relaxed);
                    // Keep the outage from being a busy loop on two cores.
                    if took > 1_000 {
                        tokio::task::yield_now().await;
                    }
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        let hits_before = tally.get(|t| &t.hits);
        let before = cache.stats();
        server.kill();
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let during = cache.stats();
        let errors_during = during.remote_errors - before.remote_errors;
        let skipped_during = during.remote_skipped - before.remote_skipped;
        server.restart();
        restarted.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        stop.store(true, Ordering::Relaxed);
        tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(done) = workers.join_next().await {
                done.unwrap();
            }
        })
        .await
        .expect("a worker hung after the storm was stopped");

        let stats = cache.stats();
        let slowest = Duration::from_micros(slowest_us.load(Ordering::Relaxed));
        eprintln!(
            "hits before kill {hits_before}, remote errors during outage {errors_during} \
             ({skipped_during} calls skipped by the store breaker), hits after restart {}, \
             slowest call {slowest:?}, wrong {}; {stats:?}",
            hits_after_restart.load(Ordering::Relaxed),
            tally.get(|t| &t.wrong),
        );
        assert_eq!(
            tally.get(|t| &t.wrong),
            0,
            "a read returned another owner's value"
        );
        assert_eq!(stats.violations.total(), 0);
        assert!(hits_before > 100, "the storm ran before the kill");
        assert!(errors_during >= 5, "the outage was seen as remote errors");
        assert!(
            during.store_breaker_trips > before.store_breaker_trips,
            "failing calls opened the store breaker"
        );
        assert!(
            skipped_during > errors_during,
            "while it was open, calls skipped the store instead of waiting for it"
        );
        assert!(
            hits_after_restart.load(Ordering::Relaxed) > 100,
            "the client reconnected by itself"
        );
        // A read is one remote call, plus a delete after a violation: two timeouts at most, plus
        // scheduling slack for 48 tasks on a loaded 2-core machine. This proves no call hangs.
        assert!(
            slowest < 2 * timeout + Duration::from_secs(1),
            "a call took {slowest:?}"
        );
    })
    .await;
}
