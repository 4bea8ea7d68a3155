//! Three clients on one `redis-server`, each with its own in-process tier, sharing the store and
//! a `RedisBus`: what one forgets, the others forget within the bus's delivery time; a client
//! whose subscription is killed serves nothing from its in-process tier until it has
//! resubscribed, and then nothing that was revoked meanwhile.

mod support;

use bytes::Bytes;
use scoped_cache::bus::RedisBus;
use scoped_cache::{Cache, Client, DeviceId, Key, Policy, RedisStore, TenantId};
use std::future::Future;
use std::time::{Duration, Instant};
use support::RedisServer;
use support::fixture::{Relations, ring};
use support::harness::{self, trials};

/// libtest-mimic (`harness = false`): without `redis-server` these tests are reported as
/// ignored, not passed (see `support::harness`).
fn main() -> std::process::ExitCode {
    harness::run(trials![
        redis_test(an_invalidation_on_one_client_is_a_miss_on_the_other_two_within_the_bound),
        redis_test(invalidate_owner_of_a_tenant_with_thousands_of_entries_reaches_every_client),
        redis_test(a_killed_subscription_serves_no_in_process_entry_until_resubscribed),
    ])
}

/// Every test body runs under this limit.
const TEST_LIMIT: Duration = Duration::from_secs(30);
/// How long a message may take from one client to the others here: loopback, a unix socket,
/// an idle server. Far above what it takes (single milliseconds), far below the in-process
/// tier's 60 s, so a message that is not applied fails the test.
const DELIVERY_BOUND: Duration = Duration::from_secs(2);

struct Fleet {
    clients: Vec<Client>,
    caches: Vec<Cache<Relations>>,
}

async fn fleet(server: &RedisServer, instances: usize) -> Fleet {
    let mut fleet = Fleet {
        clients: Vec::new(),
        caches: Vec::new(),
    };
    for _ in 0..instances {
        let store = RedisStore::connect(&server.url()).await.expect("store");
        let bus = RedisBus::builder(&server.url()).build().expect("bus");
        let client = Client::builder()
            .key_ring(ring())
            .remote(store)
            .bus(bus)
            .build()
            .expect("client");
        let coherent = Policy::Coherent {
            l1_ttl: Duration::from_secs(60),
        };
        fleet
            .caches
            .push(client.cache().policy(coherent).build().expect("cache"));
        fleet.clients.push(client);
    }
    for client in &fleet.clients {
        eventually("every client listening", || serving(client)).await;
    }
    fleet
}

fn serving(client: &Client) -> bool {
    client.bus_stats().expect("a bus").serving
}

fn relation(tenant: u64, device: u64) -> Key<Relations> {
    Key::new(TenantId::from_u64(tenant), DeviceId::from_u64(device), ())
}

fn in_process(cache: &Cache<Relations>, key: &Key<Relations>) -> bool {
    cache.local().is_some_and(|local| local.get(key).is_some())
}

/// Polls `condition` every millisecond until it holds; fails the test after `DELIVERY_BOUND`.
/// Returns how long it took.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < DELIVERY_BOUND,
            "not within {DELIVERY_BOUND:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    start.elapsed()
}

/// Stores `key` through client 0 and reads it on every client, so each holds it in-process.
async fn warm(fleet: &Fleet, key: &Key<Relations>) {
    fleet.caches[0]
        .insert(key, Bytes::from_static(b"may view"))
        .await
        .expect("insert");
    for cache in &fleet.caches {
        assert!(cache.get(key).await.is_some());
        assert!(in_process(cache, key), "not promoted");
    }
}

async fn bounded(body: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("the test ran past its limit");
}

async fn an_invalidation_on_one_client_is_a_miss_on_the_other_two_within_the_bound(
    server: RedisServer,
) {
    bounded(async {
        let fleet = fleet(&server, 3).await;
        let key = relation(1, 7);
        warm(&fleet, &key).await;
        fleet.caches[0].invalidate(&key).await.expect("invalidate");
        assert!(!in_process(&fleet.caches[0], &key), "the caller kept it");
        for (i, cache) in fleet.caches.iter().enumerate().skip(1) {
            let took =
                eventually("dropped on the other clients", || !in_process(cache, &key)).await;
            println!("client {i} dropped the entry {took:?} after invalidate returned");
            assert_eq!(cache.get(&key).await, None);
        }
        let stats = fleet.clients[2].bus_stats().expect("a bus");
        assert_eq!((stats.refused_forged, stats.refused_replayed), (0, 0));
        assert!(stats.applied >= 1);
    })
    .await;
}

async fn invalidate_owner_of_a_tenant_with_thousands_of_entries_reaches_every_client(
    server: RedisServer,
) {
    bounded(async {
        const DEVICES: u64 = 3_000;
        let fleet = fleet(&server, 3).await;
        let owned: Vec<_> = (0..DEVICES).map(|device| relation(1, device)).collect();
        for key in &owned {
            fleet.caches[0]
                .insert(key, Bytes::from_static(b"may view"))
                .await
                .expect("insert");
        }
        let someone_else = relation(2, 7);
        warm(&fleet, &someone_else).await;
        for cache in &fleet.caches[1..] {
            let found = cache.get_many(&owned).await;
            assert!(found.iter().all(Option::is_some), "not all stored");
        }
        fleet.caches[2]
            .invalidate_owner(&TenantId::from_u64(1))
            .await
            .expect("invalidate_owner");
        for cache in &fleet.caches {
            eventually("every entry of the tenant dropped", || {
                owned.iter().all(|key| !in_process(cache, key))
            })
            .await;
            let found = cache.get_many(&owned).await;
            let served = found.iter().filter(|found| found.is_some()).count();
            assert_eq!(served, 0, "served after invalidate_owner returned");
            assert!(
                cache.get(&someone_else).await.is_some(),
                "another tenant's entry was dropped"
            );
        }
    })
    .await;
}

async fn a_killed_subscription_serves_no_in_process_entry_until_resubscribed(server: RedisServer) {
    bounded(async {
        let fleet = fleet(&server, 3).await;
        let (revoked, kept) = (relation(1, 7), relation(2, 8));
        warm(&fleet, &revoked).await;
        warm(&fleet, &kept).await;
        let admin = redis::Client::open(server.url()).expect("url");
        let mut admin = admin
            .get_multiplexed_async_connection()
            .await
            .expect("admin connection");
        let killed: i64 = redis::cmd("CLIENT")
            .arg(&["KILL", "TYPE", "pubsub"])
            .query_async(&mut admin)
            .await
            .expect("CLIENT KILL");
        assert_eq!(killed, 3, "one subscription per client");
        // Revoked while every subscription is down: nobody hears it.
        fleet.caches[0]
            .invalidate(&revoked)
            .await
            .expect("invalidate");
        let watched = &fleet.caches[1];
        let hits_before = watched.stats().hits_local;
        eventually("the kill noticed", || {
            fleet.clients[1].bus_stats().expect("a bus").disconnects >= 1
        })
        .await;
        assert_eq!(watched.get(&revoked).await, None, "a revoked entry served");
        eventually("resubscribed", || serving(&fleet.clients[1])).await;
        assert_eq!(
            watched.get(&revoked).await,
            None,
            "served after resubscribing"
        );
        assert!(!in_process(watched, &kept), "not flushed on resubscribing");
        assert_eq!(watched.stats().hits_local, hits_before);
        // Listening again: the in-process tier serves again.
        assert!(watched.get(&kept).await.is_some());
        assert!(watched.get(&kept).await.is_some());
        assert_eq!(watched.stats().hits_local, hits_before + 1);
        let stats = fleet.clients[1].bus_stats().expect("a bus");
        assert!(stats.disconnects >= 1 && stats.flushes >= 2);
    })
    .await;
}
