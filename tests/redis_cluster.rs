//! `RedisClusterStore` against a real six-node Redis Cluster that each test starts itself:
//! round trips through `Cache`, a value copied under another key's slot refused, `get_many`
//! across slots in the caller's order, compare-and-delete on the key's primary, calls bounded
//! by their timeout while a primary is frozen, a cancellation storm across slots, and the
//! owner-affine key layout (one device, one slot, one `MGET`; still verified).

mod support;

use bytes::Bytes;
use redis::AsyncCommands as _;
use scoped_cache::envelope::RawKey;
use scoped_cache::store::{KeyLayout, RedisClusterStore, RemoteStore, StoreError};
use scoped_cache::{
    Client, DeviceId, Key, KeyId, KeyRing, Namespace, RawBytes, TenantId, ViolationKind,
};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::cluster::RedisCluster;
use support::harness::{self, trials};

/// libtest-mimic (`harness = false`): without `redis-server` or `redis-cli` these tests are
/// reported as ignored, not passed (see `support::harness`).
fn main() -> std::process::ExitCode {
    harness::run(trials![
        cluster_test(round_trip_and_a_value_copied_under_another_slot_is_refused),
        cluster_test(get_many_across_slots_returns_values_in_the_callers_order),
        cluster_test(
            delete_if_compares_on_the_keys_primary_and_falls_back_only_when_scripts_are_refused
        ),
        cluster_test(calls_to_a_frozen_primary_fail_within_the_timeout),
        cluster_test(cancellation_storm_on_the_raw_store_never_mixes_replies),
        cluster_test(owner_affine_keys_share_a_slot_per_device_and_are_still_verified),
    ])
}

/// Every test body runs under this limit (the cluster's start is outside it).
const TEST_LIMIT: Duration = Duration::from_secs(30);
/// How far past its timeout a call may return on a loaded 2-core CI machine: these checks prove
/// that calls are bounded, not how fast they are.
const SCHEDULING_SLACK: Duration = Duration::from_secs(1);
const PREFIX: &str = "t:";

struct Thumbs;
impl Namespace for Thumbs {
    const NAME: &'static str = "thumb";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = Bytes;
    type Codec = RawBytes;
}

fn ring() -> KeyRing {
    KeyRing::new(KeyId(1), b"redis cluster tests: 32 bytes or more").unwrap()
}

fn key(tenant: u64, device: u64, item: u64) -> Key<Thumbs> {
    Key::new(TenantId::from_u64(tenant), DeviceId::from_u64(device), item)
}

fn redis_key(key: &Key<Thumbs>) -> Vec<u8> {
    [PREFIX.as_bytes(), &key.encode()].concat()
}

async fn store(cluster: &RedisCluster) -> RedisClusterStore {
    RedisClusterStore::builder(cluster.seeds())
        .key_prefix(PREFIX)
        .connect()
        .await
        .unwrap()
}

/// A raw cluster connection that bypasses everything scoped-cache does.
async fn raw(cluster: &RedisCluster) -> redis::cluster_async::ClusterConnection {
    redis::cluster::ClusterClient::new(cluster.seeds())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap()
}

async fn slot(raw: &mut redis::cluster_async::ClusterConnection, key: &[u8]) -> u16 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(raw)
        .await
        .unwrap()
}

async fn within<F: std::future::Future>(body: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("test exceeded its time limit")
}

async fn round_trip_and_a_value_copied_under_another_slot_is_refused(cluster: RedisCluster) {
    within(async {
        let client = Client::builder()
            .key_ring(ring())
            .remote(store(&cluster).await)
            .build()
            .unwrap();
        let thumbs = client.cache::<Thumbs>().local_capacity(0).build().unwrap();
        let mut raw = raw(&cluster).await;

        // Enough keys to land on every primary.
        let mut slots = HashSet::new();
        for tenant in 0..40 {
            for device in 0..3 {
                let k = key(tenant, device, 1);
                thumbs
                    .insert(&k, Bytes::from(format!("{tenant}/{device}")))
                    .await
                    .unwrap();
                slots.insert(slot(&mut raw, &redis_key(&k)).await);
            }
        }
        let primaries = cluster.primaries();
        assert_eq!(primaries.len(), 3);
        assert!(slots.len() > 100, "keys spread over slots: {}", slots.len());
        for tenant in 0..40 {
            for device in 0..3 {
                let found = thumbs.get(&key(tenant, device, 1)).await;
                assert_eq!(
                    found.as_deref(),
                    Some(format!("{tenant}/{device}").as_bytes())
                );
            }
        }
        assert_eq!(thumbs.stats().hits_remote, 120);

        // Alice's sealed value copied under Bob's key, which lives in another slot (and most
        // likely on another node): refused, counted, reported, deleted; never returned.
        let (alice, bob) = (key(1, 1, 1), key(2, 2, 1));
        assert_ne!(
            slot(&mut raw, &redis_key(&alice)).await,
            slot(&mut raw, &redis_key(&bob)).await
        );
        let sealed: Vec<u8> = raw.get(redis_key(&alice)).await.unwrap();
        let _: () = raw.set(redis_key(&bob), &sealed).await.unwrap();
        assert_eq!(
            thumbs.get(&bob).await,
            None,
            "another owner's value must miss"
        );
        let stats = thumbs.stats();
        assert_eq!(stats.violations.get(ViolationKind::OwnerMismatch), 1);
        let exists: bool = raw.exists(redis_key(&bob)).await.unwrap();
        assert!(!exists, "the refused value is deleted from the cluster");
        assert_eq!(
            thumbs.get(&alice).await.as_deref(),
            Some(&b"1/1"[..]),
            "the owner's own value is untouched"
        );
        assert_eq!(stats.remote_errors, 0);

        // Reads from replicas: the same values, still verified.
        let replicas = RedisClusterStore::builder(cluster.seeds())
            .key_prefix(PREFIX)
            .read_from_replicas(true)
            .connect()
            .await
            .unwrap();
        let replica_client = Client::builder()
            .key_ring(ring())
            .remote(replicas)
            .build()
            .unwrap();
        let from_replicas = replica_client
            .cache::<Thumbs>()
            .local_capacity(0)
            .build()
            .unwrap();
        // Replication is asynchronous: wait (bounded) for one value to reach its replica.
        let deadline = Instant::now() + Duration::from_secs(5);
        while from_replicas.get(&key(39, 2, 1)).await.is_none() {
            assert!(Instant::now() < deadline, "the replica never caught up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for tenant in 0..40 {
            let found = from_replicas.get(&key(tenant, 0, 1)).await;
            assert_eq!(found.as_deref(), Some(format!("{tenant}/0").as_bytes()));
        }
        assert_eq!(from_replicas.stats().violations.total(), 0);
    })
    .await;
}

async fn get_many_across_slots_returns_values_in_the_callers_order(cluster: RedisCluster) {
    within(async {
        let store = store(&cluster).await;
        let keys: Vec<Vec<u8>> = (0..300u32)
            .map(|i| [&b"k\0{\r\n "[..], &i.to_be_bytes()].concat())
            .collect();
        for (i, k) in keys.iter().enumerate() {
            if i % 3 != 0 {
                let value = Bytes::from([&k[..], b"=", &k[..]].concat());
                store
                    .set(k, value, Some(Duration::from_secs(60)))
                    .await
                    .unwrap();
            }
        }
        let check = |batch: &[Vec<u8>], values: Vec<Option<Bytes>>| {
            assert_eq!(values.len(), batch.len());
            for (k, v) in batch.iter().zip(values) {
                let i = u32::from_be_bytes(k[k.len() - 4..].try_into().unwrap());
                if i % 3 == 0 {
                    assert_eq!(v, None, "key {i} was never set");
                } else {
                    assert_eq!(v.as_deref(), Some(&[&k[..], b"=", &k[..]].concat()[..]));
                }
            }
        };
        // The batch covers all three primaries and many slots.
        let mut raw = raw(&cluster).await;
        let mut slots = HashSet::new();
        for k in &keys {
            slots.insert(slot(&mut raw, &[PREFIX.as_bytes(), k].concat()).await);
        }
        assert!(slots.len() > 200, "{} slots", slots.len());
        check(&keys, store.get_many(&keys).await.unwrap());
        // Reversed, shuffled by a stride, with duplicates.
        let reversed: Vec<Vec<u8>> = keys.iter().rev().cloned().collect();
        check(&reversed, store.get_many(&reversed).await.unwrap());
        let strided: Vec<Vec<u8>> = (0..600).map(|i| keys[(i * 7) % 300].clone()).collect();
        check(&strided, store.get_many(&strided).await.unwrap());
        assert_eq!(
            store.get_many(&[]).await.unwrap(),
            Vec::<Option<Bytes>>::new()
        );

        // Through Cache: each value opened for the key at its position.
        let client = Client::builder()
            .key_ring(ring())
            .remote(
                RedisClusterStore::builder(cluster.seeds())
                    .connect()
                    .await
                    .unwrap(),
            )
            .build()
            .unwrap();
        let thumbs = client.cache::<Thumbs>().local_capacity(0).build().unwrap();
        let batch: Vec<Key<Thumbs>> = (0..64).map(|i| key(i % 16, i / 16, i)).collect();
        for k in batch.iter().step_by(2) {
            thumbs.insert(k, Bytes::from(k.encode())).await.unwrap();
        }
        let found = thumbs.get_many(&batch).await;
        for (i, (k, v)) in batch.iter().zip(found).enumerate() {
            let expected = (i % 2 == 0).then(|| Bytes::from(k.encode()));
            assert_eq!(v, expected, "position {i}");
        }
        assert_eq!(thumbs.stats().violations.total(), 0);
        assert_eq!(store.connections_replaced(), 0);
    })
    .await;
}

/// `delete_if` deletes a key only while it holds the given bytes, in one step on the key's
/// primary; it falls back to `DEL` only when scripts are refused, never on another error.
async fn delete_if_compares_on_the_keys_primary_and_falls_back_only_when_scripts_are_refused(
    cluster: RedisCluster,
) {
    within(async {
        let store = store(&cluster).await;
        let (old, new) = (
            Bytes::from_static(b"old\0value"),
            Bytes::from_static(b"new\0value"),
        );
        // Keys in several slots, so the script runs on every primary.
        for i in 0..30u32 {
            let k = format!("cad:{i}").into_bytes();
            store.set(&k, new.clone(), None).await.unwrap();
            store.delete_if(&k, &old).await.unwrap();
            assert_eq!(store.get(&k).await.unwrap(), Some(new.clone()), "kept");
            store.delete_if(&k, &new).await.unwrap();
            assert_eq!(store.get(&k).await.unwrap(), None, "deleted");
        }
        store.delete_if(b"absent", &old).await.unwrap();

        // Another server error (the script's GET on a list: WRONGTYPE) is returned as an
        // error, and nothing is deleted.
        let mut raw = raw(&cluster).await;
        let _: usize = raw.lpush(format!("{PREFIX}list"), "x").await.unwrap();
        let refused = store.delete_if(b"list", &old).await;
        assert!(matches!(refused, Err(StoreError::Server(_))), "{refused:?}");
        let exists: bool = raw.exists(format!("{PREFIX}list")).await.unwrap();
        assert!(exists, "no DEL after an error other than a script refusal");

        // A user whose ACL refuses scripts (ACLs are per node: set on every node).
        for port in cluster.topology().iter().map(|node| node.port) {
            cluster
                .cli(
                    port,
                    &[
                        "ACL",
                        "SETUSER",
                        "noscript",
                        "on",
                        "nopass",
                        "~*",
                        "+@all",
                        "-@scripting",
                    ],
                )
                .unwrap();
        }
        let seeds: Vec<String> = cluster
            .seeds()
            .iter()
            .map(|seed| seed.replace("redis://", "redis://noscript:any@"))
            .collect();
        let restricted = RedisClusterStore::builder(seeds)
            .key_prefix(PREFIX)
            .connect()
            .await
            .unwrap();
        for i in 0..10u32 {
            let k = format!("acl:{i}").into_bytes();
            restricted.set(&k, new.clone(), None).await.unwrap();
            restricted.delete_if(&k, &old).await.unwrap();
            assert_eq!(restricted.get(&k).await.unwrap(), None, "fell back to DEL");
        }
        assert_eq!(store.connections_replaced(), 0);
    })
    .await;
}

/// A frozen primary (SIGSTOP: its sockets stay open, nothing answers) makes every call on its
/// slots fail with a timeout within the response timeout, while the other primaries answer.
async fn calls_to_a_frozen_primary_fail_within_the_timeout(cluster: RedisCluster) {
    within(async {
        let timeout = Duration::from_millis(200);
        let store = Arc::new(
            RedisClusterStore::builder(cluster.seeds())
                .response_timeout(timeout)
                .connect()
                .await
                .unwrap(),
        );
        let mut raw = raw(&cluster).await;
        let frozen = cluster.primaries()[0];
        let ranges = slot_ranges(&cluster, frozen);
        let served = |slot: u16| {
            ranges
                .iter()
                .any(|(first, last)| (*first..=*last).contains(&slot))
        };
        let mut on_frozen = Vec::new();
        let mut elsewhere = Vec::new();
        for i in 0..60u32 {
            let k = format!("frozen:{i}").into_bytes();
            store.set(&k, Bytes::from_static(b"v"), None).await.unwrap();
            if served(slot(&mut raw, &k).await) {
                on_frozen.push(k);
            } else {
                elsewhere.push(k);
            }
        }
        assert!(!on_frozen.is_empty() && !elsewhere.is_empty());

        cluster.pause(frozen);
        let started = Instant::now();
        let mut calls = tokio::task::JoinSet::new();
        for k in on_frozen.clone() {
            let store = Arc::clone(&store);
            calls.spawn(async move {
                let started = Instant::now();
                let result = store.get(&k).await;
                (result.map(|_| ()), started.elapsed())
            });
        }
        let batch: Vec<Vec<u8>> = on_frozen.iter().chain(&elsewhere).cloned().collect();
        let batch_started = Instant::now();
        let batch_result = store.get_many(&batch).await;
        let batch_took = batch_started.elapsed();
        let mut results = Vec::new();
        while let Some(done) = calls.join_next().await {
            results.push(done.unwrap());
        }
        // The other primaries still answer while one is frozen.
        let other = store.get(&elsewhere[0]).await;
        cluster.resume(frozen);
        assert!(
            started.elapsed() < Duration::from_millis(support::cluster::NODE_TIMEOUT_MS),
            "the freeze outlasted the node timeout: a failover may have started"
        );

        for (result, took) in results {
            assert!(
                matches!(result, Err(StoreError::Timeout(t)) if t == timeout),
                "{result:?}"
            );
            assert!(took < timeout + SCHEDULING_SLACK, "a call took {took:?}");
        }
        assert!(
            matches!(batch_result, Err(StoreError::Timeout(_))),
            "{batch_result:?}"
        );
        assert!(
            batch_took < timeout + SCHEDULING_SLACK,
            "the batch took {batch_took:?}"
        );
        assert_eq!(other.unwrap().as_deref(), Some(&b"v"[..]));

        // Resumed: the same connection serves the frozen primary's slots again; the late
        // replies to the timed-out calls were dropped, not handed to these.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match store.get_many(&batch).await {
                Ok(values) if values.iter().all(|v| v.as_deref() == Some(&b"v"[..])) => break,
                other => assert!(Instant::now() < deadline, "not back: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(store.connections_replaced(), 0);
    })
    .await;
}

/// The slot ranges the node on `port` serves, from its own `CLUSTER NODES` line.
fn slot_ranges(cluster: &RedisCluster, port: u16) -> Vec<(u16, u16)> {
    let text = cluster.cli(port, &["CLUSTER", "NODES"]).unwrap();
    let line = text.lines().find(|line| line.contains("myself")).unwrap();
    line.split_whitespace()
        .skip(8)
        .filter(|range| !range.starts_with('['))
        .map(|range| match range.split_once('-') {
            Some((first, last)) => (first.parse().unwrap(), last.parse().unwrap()),
            None => (range.parse().unwrap(), range.parse().unwrap()),
        })
        .collect()
}

/// Thousands of concurrent calls across all slots, 40% cancelled mid-flight, one layer below
/// `Cache` where nothing verifies the bytes: a reply delivered to the wrong request would be
/// returned as is.
async fn cancellation_storm_on_the_raw_store_never_mixes_replies(cluster: RedisCluster) {
    within(async {
        let store = Arc::new(
            RedisClusterStore::builder(cluster.seeds())
                .response_timeout(Duration::from_secs(2))
                .connect()
                .await
                .unwrap(),
        );
        let keys: Vec<Vec<u8>> = (0..512u32)
            .map(|i| format!("raw:{i}").into_bytes())
            .collect();
        for k in &keys {
            let value = Bytes::from([&k[..], b"=", &k[..]].concat());
            store.set(k, value, None).await.unwrap();
        }
        let keys = Arc::new(keys);
        let counts: Arc<HashMap<&'static str, AtomicU64>> = Arc::new(
            ["hits", "wrong", "errors", "cancelled"]
                .into_iter()
                .map(|name| (name, AtomicU64::new(0)))
                .collect(),
        );
        let count = |counts: &HashMap<&'static str, AtomicU64>, name: &str| {
            counts[name].fetch_add(1, Ordering::Relaxed);
        };
        let mut tasks = tokio::task::JoinSet::new();
        for seed in 0..6_000u64 {
            let (store, keys, counts) =
                (Arc::clone(&store), Arc::clone(&keys), Arc::clone(&counts));
            tasks.spawn(async move {
                let mut rng = support::Rng::new(seed);
                let check = |k: &[u8], found: &[u8]| found == [k, b"=", k].concat();
                let limit = match rng.below(100) {
                    0..40 => Duration::from_micros(rng.below(3_000)),
                    _ => Duration::from_secs(10),
                };
                if rng.below(4) == 0 {
                    let batch: Vec<Vec<u8>> = (0..16)
                        .map(|_| keys[rng.below(512) as usize].clone())
                        .collect();
                    match tokio::time::timeout(limit, store.get_many(&batch)).await {
                        Ok(Ok(values)) => {
                            for (k, v) in batch.iter().zip(values) {
                                let good = v.is_some_and(|v| check(k, &v));
                                count(&counts, if good { "hits" } else { "wrong" });
                            }
                        }
                        Ok(Err(_)) => count(&counts, "errors"),
                        Err(_) => count(&counts, "cancelled"),
                    }
                    return;
                }
                let k = &keys[rng.below(512) as usize];
                match tokio::time::timeout(limit, store.get(k)).await {
                    Ok(Ok(Some(found))) if check(k, &found) => count(&counts, "hits"),
                    Ok(Ok(_)) => count(&counts, "wrong"),
                    Ok(Err(_)) => count(&counts, "errors"),
                    Err(_) => count(&counts, "cancelled"),
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        let get = |name: &str| counts[name].load(Ordering::Relaxed);
        eprintln!(
            "hits {} cancelled {} store errors {} wrong {}",
            get("hits"),
            get("cancelled"),
            get("errors"),
            get("wrong")
        );
        assert_eq!(get("wrong"), 0, "a reply reached the wrong request");
        assert!(get("hits") > 1_000);
        assert!(get("cancelled") > 100);
        assert_eq!(store.connections_replaced(), 0);
    })
    .await;
}

/// How many `MGET`s the primaries have run since their statistics were last reset.
fn mget_calls(cluster: &RedisCluster) -> u64 {
    cluster
        .primaries()
        .into_iter()
        .map(|port| {
            let stats = cluster.cli(port, &["INFO", "commandstats"]).unwrap();
            stats
                .lines()
                .find_map(|line| line.strip_prefix("cmdstat_mget:calls="))
                .and_then(|rest| rest.split(',').next())
                .map_or(0, |calls| calls.parse::<u64>().unwrap())
        })
        .sum()
}

fn reset_stats(cluster: &RedisCluster) {
    for port in cluster.primaries() {
        cluster.cli(port, &["CONFIG", "RESETSTAT"]).unwrap();
    }
}

/// `KeyLayout::OwnerAffine`: every value of a device lands in one slot (and devices spread over
/// slots); `get_many` of one device's values is one `MGET` where the flat layout sends one per
/// slot; values are still opened for the full key, so a value swapped between two devices, or
/// between two items of one device (same slot), is refused and deleted by compare-and-delete;
/// and a `SCAN` of the prefix finds every key, which `KeyLayout::key_stored_under` maps back to
/// the key it was written for (as the audit does).
async fn owner_affine_keys_share_a_slot_per_device_and_are_still_verified(cluster: RedisCluster) {
    within(async {
        let affine_store = RedisClusterStore::builder(cluster.seeds())
            .key_prefix(PREFIX)
            .key_layout(KeyLayout::OwnerAffine)
            .connect()
            .await
            .unwrap();
        let client = Client::builder()
            .key_ring(ring())
            .remote(affine_store)
            .build()
            .unwrap();
        let thumbs = client.cache::<Thumbs>().local_capacity(0).build().unwrap();
        let flat_client = Client::builder()
            .key_ring(ring())
            .remote(store(&cluster).await)
            .build()
            .unwrap();
        let flat = flat_client
            .cache::<Thumbs>()
            .local_capacity(0)
            .build()
            .unwrap();
        let affine_key = |k: &Key<Thumbs>| {
            [
                PREFIX.as_bytes(),
                &KeyLayout::OwnerAffine.store_key(&k.encode()),
            ]
            .concat()
        };
        let mut raw = raw(&cluster).await;

        // 30 devices of 16 items each, in both layouts.
        let device_keys = |device: u64| -> Vec<Key<Thumbs>> {
            (0..16).map(|item| key(device / 3, device, item)).collect()
        };
        let mut device_slots = HashSet::new();
        let mut written = HashSet::new();
        for device in 0..30 {
            let mut slots = HashSet::new();
            for k in device_keys(device) {
                let value = Bytes::from(format!("{}/{}", device, k.item()));
                thumbs.insert(&k, value.clone()).await.unwrap();
                flat.insert(&k, value).await.unwrap();
                let exists: bool = raw.exists(affine_key(&k)).await.unwrap();
                assert!(exists, "stored under its owner-affine key");
                slots.insert(slot(&mut raw, &affine_key(&k)).await);
                written.insert(k.encode());
            }
            assert_eq!(
                slots.len(),
                1,
                "device {device}: one slot for all its values"
            );
            device_slots.extend(slots);
        }
        assert!(device_slots.len() > 20, "devices spread: {device_slots:?}");

        // Verified reads, one by one and per device; one MGET per device, against 16 (one per
        // slot) in the flat layout.
        for device in [0, 7, 29] {
            let keys = device_keys(device);
            reset_stats(&cluster);
            let found = thumbs.get_many(&keys).await;
            assert_eq!(mget_calls(&cluster), 1, "device {device}: one MGET");
            for (k, v) in keys.iter().zip(found) {
                assert_eq!(
                    v.as_deref(),
                    Some(format!("{device}/{}", k.item()).as_bytes())
                );
                assert_eq!(thumbs.get(k).await, flat.get(k).await);
            }
            reset_stats(&cluster);
            assert!(flat.get_many(&keys).await.iter().all(Option::is_some));
            assert!(mget_calls(&cluster) > 8, "flat: one MGET per slot");
        }

        // Swapped between devices (another slot), and between items of one device (same slot):
        // refused for the key asked for, deleted only while the swapped bytes are there.
        let (own, other_device, other_item) = (key(0, 1, 3), key(0, 2, 3), key(0, 1, 4));
        let sealed: Vec<u8> = raw.get(affine_key(&own)).await.unwrap();
        for (victim, kind) in [
            (&other_device, ViolationKind::OwnerMismatch),
            (&other_item, ViolationKind::ItemMismatch),
        ] {
            let _: () = raw.set(affine_key(victim), &sealed).await.unwrap();
            let before = thumbs.stats().violations.get(kind);
            assert_eq!(thumbs.get(victim).await, None, "{kind:?} must miss");
            assert_eq!(thumbs.stats().violations.get(kind), before + 1);
            let exists: bool = raw.exists(affine_key(victim)).await.unwrap();
            assert!(!exists, "{kind:?}: the refused value is deleted");
            written.remove(&victim.encode());
        }
        assert_eq!(thumbs.get(&own).await.as_deref(), Some(&b"1/3"[..]));

        // A SCAN of the prefix on every primary finds every owner-affine key, and each maps
        // back to the key it was written for.
        let mut found = HashSet::new();
        for port in cluster.primaries() {
            let seed = cluster
                .seeds()
                .into_iter()
                .find(|seed| seed.ends_with(&format!(":{port}")))
                .unwrap();
            let mut node = redis::Client::open(seed)
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg("t:sc1:thumb:*")
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut node)
                    .await
                    .unwrap();
                found.extend(keys);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        // The audit's pattern: both layouts' keys match it.
        let stored_under = |store_keys: Vec<&Vec<u8>>| -> HashSet<Vec<u8>> {
            store_keys
                .into_iter()
                .map(|store_key| {
                    let stored = store_key.strip_prefix(PREFIX.as_bytes()).unwrap();
                    let key = KeyLayout::key_stored_under(stored).into_owned();
                    assert!(RawKey::decode(&key).is_ok(), "{stored:?}");
                    key
                })
                .collect()
        };
        let (affine, flat): (Vec<&Vec<u8>>, Vec<&Vec<u8>>) = found
            .iter()
            .partition(|store_key| store_key.get("t:sc1:thumb:".len()) == Some(&b'{'));
        assert_eq!(stored_under(affine), written);
        assert_eq!(stored_under(flat).len(), 30 * 16);
    })
    .await;
}
