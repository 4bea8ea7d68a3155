//! Three instances sharing a store and an in-process bus: what one forgets, all forget; an
//! instance that may have missed a message serves nothing from its in-process tier.

use bytes::Bytes;
use scoped_cache::bus::{BusReceiver, BusTransport};
use scoped_cache::store::StoreFuture;
use scoped_cache::{
    Cache, Client, DeviceId, Key, KeyId, KeyRing, MemoryBus, MemoryStore, Namespace, Policy,
    RawBytes, TenantId,
};
use std::sync::Arc;
use std::time::Duration;

struct Relations;
impl Namespace for Relations {
    const NAME: &'static str = "may-view";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = Bytes;
    type Codec = RawBytes;
}

fn ring() -> KeyRing {
    KeyRing::new(KeyId(1), &[42; 32]).unwrap_or_else(|e| unreachable!("{e}"))
}

struct Fleet {
    store: Arc<MemoryStore>,
    bus: MemoryBus,
    clients: Vec<Client>,
    caches: Vec<Cache<Relations>>,
}

fn fleet(instances: usize) -> Fleet {
    let (store, bus) = (Arc::new(MemoryStore::default()), MemoryBus::new());
    let mut clients = Vec::new();
    let mut caches = Vec::new();
    for _ in 0..instances {
        let client = Client::builder()
            .key_ring(ring())
            .remote_shared(store.clone())
            .bus(bus.clone())
            .build()
            .unwrap_or_else(|e| unreachable!("{e}"));
        let coherent = Policy::Coherent {
            l1_ttl: Duration::from_secs(60),
        };
        caches.push(
            client
                .cache()
                .policy(coherent)
                .build()
                .unwrap_or_else(|e| unreachable!("{e}")),
        );
        clients.push(client);
    }
    Fleet {
        store,
        bus,
        clients,
        caches,
    }
}

fn key(tenant: u64, device: u64, item: u64) -> Key<Relations> {
    Key::new(TenantId::from_u64(tenant), DeviceId::from_u64(device), item)
}

/// Every instance holds `key` in its in-process tier (a read of each promotes it).
async fn warm(fleet: &Fleet, key: &Key<Relations>) {
    fleet.caches[0]
        .insert(key, Bytes::from_static(b"yes"))
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    for cache in &fleet.caches {
        assert!(cache.get(key).await.is_some());
        assert!(
            cache.local().is_some_and(|local| local.get(key).is_some()),
            "not promoted"
        );
    }
}

/// What each instance's in-process tier holds for `key`, bypassing the bus's serving rule.
fn in_process(fleet: &Fleet, key: &Key<Relations>) -> Vec<bool> {
    fleet
        .caches
        .iter()
        .map(|cache| cache.local().is_some_and(|local| local.get(key).is_some()))
        .collect()
}

#[tokio::test]
async fn an_invalidation_on_one_instance_is_a_miss_on_the_others_when_it_returns() {
    let fleet = fleet(3);
    let key = key(1, 7, 0);
    warm(&fleet, &key).await;
    fleet.caches[1]
        .invalidate(&key)
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(in_process(&fleet, &key), [false, false, false]);
    for cache in &fleet.caches {
        assert_eq!(cache.get(&key).await, None);
    }
    let stats = fleet.clients[2]
        .bus_stats()
        .unwrap_or_else(|| unreachable!());
    assert_eq!((stats.applied, stats.refused_forged, stats.gaps), (1, 0, 0));
}

#[tokio::test]
async fn invalidate_device_drops_thousands_of_entries_on_every_instance_and_refuses_them_remotely()
{
    let fleet = fleet(3);
    let (tenant, camera) = (TenantId::from_u64(1), DeviceId::from_u64(7));
    for item in 0..2_000 {
        fleet.caches[0]
            .insert(&key(1, 7, item), Bytes::from_static(b"yes"))
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
    }
    let other = key(1, 8, 0);
    warm(&fleet, &other).await;
    warm(&fleet, &key(1, 7, 5)).await;
    let writes_before = fleet.store.len();
    fleet.caches[2]
        .invalidate_device(&tenant, &camera)
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    // One marker written, nothing deleted: the cost does not grow with the device's entries.
    assert_eq!(fleet.store.len(), writes_before + 1);
    for cache in &fleet.caches {
        for item in [0, 5, 1_999] {
            assert_eq!(
                cache.get(&key(1, 7, item)).await,
                None,
                "item {item} served after revocation"
            );
        }
        assert!(
            cache.get(&other).await.is_some(),
            "another device of the tenant was dropped"
        );
    }
    // Written again after the clock-skew allowance, a value is served again.
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    fleet.caches[0]
        .insert(&key(1, 7, 0), Bytes::from_static(b"new"))
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(
        fleet.caches[1].get(&key(1, 7, 0)).await.as_deref(),
        Some(&b"new"[..])
    );
}

#[tokio::test]
async fn invalidate_owner_covers_every_device_of_the_tenant_only() {
    let fleet = fleet(3);
    let (a, b) = (key(1, 7, 0), key(1, 8, 0));
    let someone_else = key(2, 7, 0);
    for k in [&a, &b, &someone_else] {
        warm(&fleet, k).await;
    }
    fleet.caches[0]
        .invalidate_owner(&TenantId::from_u64(1))
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    for cache in &fleet.caches {
        assert_eq!(cache.get(&a).await, None);
        assert_eq!(cache.get(&b).await, None);
        assert!(cache.get(&someone_else).await.is_some());
    }
}

#[tokio::test]
async fn a_disconnected_instance_serves_no_in_process_entry_until_it_is_back_and_flushed() {
    let fleet = fleet(3);
    let key = key(1, 7, 0);
    warm(&fleet, &key).await;
    fleet.bus.disconnect(2);
    assert!(
        !fleet.clients[2]
            .bus_stats()
            .unwrap_or_else(|| unreachable!())
            .serving
    );
    // Revoked while instance 2 was not listening: it must not answer from memory.
    fleet.caches[0]
        .invalidate_device(&TenantId::from_u64(1), &DeviceId::from_u64(7))
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(fleet.caches[2].get(&key).await, None);
    let hits_before = fleet.caches[2].stats().hits_local;
    fleet.bus.reconnect(2);
    assert_eq!(fleet.caches[2].get(&key).await, None);
    assert_eq!(fleet.caches[2].stats().hits_local, hits_before);
    assert_eq!(in_process(&fleet, &key), [false, false, false]);
}

#[tokio::test]
async fn a_lost_message_is_noticed_by_the_next_one_and_flushes() {
    let fleet = fleet(3);
    let (lost, next) = (key(1, 7, 0), key(3, 3, 0));
    warm(&fleet, &lost).await;
    fleet.bus.lose_next(2, 1);
    fleet.caches[0]
        .invalidate(&lost)
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(in_process(&fleet, &lost), [false, false, true]); // the broker lost it for 2
    fleet.caches[0]
        .invalidate(&next)
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(in_process(&fleet, &lost), [false, false, false]);
    assert_eq!(
        fleet.clients[2]
            .bus_stats()
            .unwrap_or_else(|| unreachable!())
            .gaps,
        1
    );
}

/// A transport whose subscriber the test holds, to inject forged and replayed messages.
#[derive(Clone, Default)]
struct Tap {
    bus: MemoryBus,
    sent: Arc<std::sync::Mutex<Vec<Bytes>>>,
}

impl BusTransport for Tap {
    fn publish(&self, message: Bytes) -> StoreFuture<'_, ()> {
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message.clone());
        self.bus.publish(message)
    }
    fn subscribe(&self, receiver: Arc<dyn BusReceiver>) {
        self.bus.subscribe(receiver)
    }
}

#[tokio::test]
async fn forged_and_replayed_messages_are_refused_and_counted_and_drop_nothing() {
    let store = Arc::new(MemoryStore::default());
    let tap = Tap::default();
    let build = |secret: [u8; 32]| {
        let client = Client::builder()
            .key_ring(KeyRing::new(KeyId(1), &secret).unwrap_or_else(|e| unreachable!("{e}")))
            .remote_shared(store.clone())
            .bus(tap.clone())
            .build()
            .unwrap_or_else(|e| unreachable!("{e}"));
        let cache: Cache<Relations> = client
            .cache()
            .policy(Policy::Coherent {
                l1_ttl: Duration::from_secs(60),
            })
            .build()
            .unwrap_or_else(|e| unreachable!("{e}"));
        (client, cache)
    };
    let (victim, cache) = build([42; 32]);
    let (_, forger) = build([9; 32]); // same channel, another secret
    let key = key(1, 7, 0);
    cache
        .insert(&key, Bytes::from_static(b"yes"))
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    forger
        .invalidate_owner(&TenantId::from_u64(1))
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert!(
        cache.local().is_some_and(|local| local.get(&key).is_some()),
        "a forged message dropped an entry"
    );
    let (_, honest) = build([42; 32]);
    honest
        .invalidate(&key3())
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    let replay = tap
        .sent
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .last()
        .cloned()
        .unwrap_or_default();
    let flushes = victim.bus_stats().unwrap_or_else(|| unreachable!()).flushes;
    tap.bus
        .publish(replay)
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    let stats = victim.bus_stats().unwrap_or_else(|| unreachable!());
    assert_eq!(stats.refused_forged, 1);
    assert_eq!(stats.refused_replayed, 1);
    assert_eq!(stats.flushes, flushes, "a replay flushed");
    assert!(cache.get(&key).await.is_some());
}

fn key3() -> Key<Relations> {
    key(3, 3, 3)
}

#[test]
fn a_coherent_cache_needs_a_bus() {
    let client = Client::builder()
        .build()
        .unwrap_or_else(|e| unreachable!("{e}"));
    let built = client
        .cache::<Relations>()
        .policy(Policy::Coherent {
            l1_ttl: Duration::from_secs(1),
        })
        .build();
    assert_eq!(
        built.err(),
        Some(scoped_cache::BuildError::CoherentWithoutBus)
    );
}

/// A client of `store` and `bus` with a coherent cache and a 10 ms clock-skew allowance.
fn quick_instance(store: &Arc<MemoryStore>, bus: &MemoryBus) -> (Client, Cache<Relations>) {
    let client = Client::builder()
        .key_ring(ring())
        .remote_shared(store.clone())
        .bus(bus.clone())
        .clock_skew_allowance(Duration::from_millis(10))
        .build()
        .unwrap_or_else(|e| unreachable!("{e}"));
    let coherent = Policy::Coherent {
        l1_ttl: Duration::from_secs(60),
    };
    let cache = client
        .cache()
        .policy(coherent)
        .build()
        .unwrap_or_else(|e| unreachable!("{e}"));
    (client, cache)
}

/// Starts `cache.get_or_load(key)` with a loader that reads `value` from the source at once
/// and returns it when the sender is used or dropped.
fn held_load(
    cache: &Cache<Relations>,
    key: &Key<Relations>,
    value: &'static [u8],
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<Bytes, scoped_cache::LoadError>>,
) {
    let (read, release) = tokio::sync::oneshot::channel::<()>();
    let (cache, key) = (cache.clone(), key.clone());
    let load = tokio::spawn(async move {
        cache
            .get_or_load(&key, || async move {
                let _ = release.await;
                Ok::<_, std::io::Error>(Bytes::from_static(value))
            })
            .await
    });
    (read, load)
}

/// Lets a held load start, revokes device 7 of tenant 1 on `revoking`, and waits well past
/// the 10 ms clock-skew allowance.
async fn revoke_device_1_7_while_loading(revoking: &Cache<Relations>) {
    tokio::time::sleep(Duration::from_millis(20)).await;
    revoking
        .invalidate_device(&TenantId::from_u64(1), &DeviceId::from_u64(7))
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// A load that read the source of truth before a device was revoked, and ends well after the
/// revocation (past the clock-skew allowance): what it stores is as old as its read, so no
/// instance serves it.
#[tokio::test]
async fn a_load_that_read_before_a_revocation_stores_nothing_servable_however_long_it_runs() {
    let (store, bus) = (Arc::new(MemoryStore::default()), MemoryBus::new());
    let (_a, loading) = quick_instance(&store, &bus);
    let (_b, revoking) = quick_instance(&store, &bus);
    let (_c, reading) = quick_instance(&store, &bus);
    let key = key(1, 7, 0);
    let (read, load) = held_load(&loading, &key, b"yes, before the move");
    revoke_device_1_7_while_loading(&revoking).await;
    let _ = read.send(());
    let loaded = load.await.unwrap_or_else(|e| unreachable!("{e}"));
    assert!(
        loaded.is_ok(),
        "the loader's own caller gets what it loaded"
    );
    assert_eq!(
        reading.get(&key).await,
        None,
        "served a value read before the revocation"
    );
    assert_eq!(loading.get(&key).await, None);
}

/// A caller that comes after a revocation, while a load that began before it is still in
/// flight, does not wait for that load: it loads from the source itself.
#[tokio::test]
async fn a_caller_after_a_revocation_does_not_join_a_load_that_began_before_it() {
    let (store, bus) = (Arc::new(MemoryStore::default()), MemoryBus::new());
    let (_a, loading) = quick_instance(&store, &bus);
    let (_b, revoking) = quick_instance(&store, &bus);
    let key = key(1, 7, 0);
    let (read, load) = held_load(&loading, &key, b"yes, before the move");
    revoke_device_1_7_while_loading(&revoking).await;
    let (read_later, later) = held_load(&loading, &key, b"no, after the move");
    drop(read_later);
    let later = tokio::time::timeout(Duration::from_secs(5), later)
        .await
        .unwrap_or_else(|_| panic!("the later caller waited for the earlier load"))
        .unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(later.ok().as_deref(), Some(&b"no, after the move"[..]));
    let _ = read.send(());
    let _ = load.await;
}

/// A load in flight while its instance's subscription dropped and came back (a revocation was
/// missed meanwhile) keeps nothing in-process: what it read may predate the revocation.
#[tokio::test]
async fn a_load_across_a_reconnect_keeps_nothing_in_process() {
    let (store, bus) = (Arc::new(MemoryStore::default()), MemoryBus::new());
    let (_a, loading) = quick_instance(&store, &bus);
    let (_b, revoking) = quick_instance(&store, &bus);
    let key = key(1, 7, 0);
    let (read, load) = held_load(&loading, &key, b"yes, before the move");
    tokio::time::sleep(Duration::from_millis(20)).await;
    bus.disconnect(0);
    revoking
        .invalidate_device(&TenantId::from_u64(1), &DeviceId::from_u64(7))
        .await
        .unwrap_or_else(|e| unreachable!("{e}"));
    bus.reconnect(0);
    tokio::time::sleep(Duration::from_millis(100)).await; // past the allowance
    let _ = read.send(());
    let loaded = load.await.unwrap_or_else(|e| unreachable!("{e}"));
    assert!(loaded.is_ok());
    assert!(
        loading
            .local()
            .is_some_and(|local| local.get(&key).is_none()),
        "kept in-process across the reconnect"
    );
    assert_eq!(
        loading.get(&key).await,
        None,
        "served a value read before the revocation"
    );
}
