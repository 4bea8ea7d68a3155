//! `Policy::AutoBypass`: violations open the breaker, the cache is bypassed, probes close it.

mod support;

use bytes::Bytes;
use scoped_cache::store::RemoteStore;
use scoped_cache::{
    BreakerState, Client, DeviceId, Key, ManualClock, MemoryStore, Policy, TenantId,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::fixture::{Relations, ring};

fn key(tenant: u64, device: u64) -> Key<Relations> {
    Key::new(TenantId::from_u64(tenant), DeviceId::from_u64(device), ())
}

#[tokio::test]
async fn violations_trip_the_breaker_and_clean_probes_close_it() {
    let clock = ManualClock::new(1_000_000);
    let store = Arc::new(MemoryStore::with_clock(1 << 20, clock.clock()));
    let events = Arc::new(Mutex::new(Vec::new()));
    let client = Client::builder()
        .key_ring(ring())
        .remote_shared(store.clone())
        .clock(clock.clock())
        .on_breaker({
            let events = Arc::clone(&events);
            move |event| events.lock().unwrap().push((event.from, event.to))
        })
        .build()
        .unwrap();
    let policy = Policy::AutoBypass {
        threshold: 3,
        window: Duration::from_secs(10),
        cool_down: Duration::from_secs(30),
    };
    let cache = client
        .cache::<Relations>()
        .local_capacity(0)
        .policy(policy)
        .build()
        .unwrap();

    // Three poisoned entries read within the window: the third read opens the breaker.
    for device in 0..3 {
        store
            .set(
                &key(1, device).encode(),
                Bytes::from_static(b"not an envelope"),
                None,
            )
            .await
            .unwrap();
        assert_eq!(cache.get(&key(1, device)).await, None);
    }
    assert_eq!(cache.stats().breaker_state, BreakerState::Open);
    assert_eq!(cache.stats().breaker_trips, 1);

    // Open: reads and writes bypass both tiers; loads go to the loader.
    let reads_before = store.stats().hits_local + store.stats().misses;
    let misses_before = cache.stats().misses;
    cache
        .insert(&key(2, 2), Bytes::from_static(b"v"))
        .await
        .unwrap();
    assert_eq!(cache.get(&key(2, 2)).await, None);
    let loaded = cache
        .get_or_load(&key(2, 2), || async {
            Ok::<_, std::io::Error>(Bytes::from_static(b"origin"))
        })
        .await;
    assert_eq!(loaded.unwrap(), "origin");
    assert_eq!(
        cache.stats().misses - misses_before,
        2,
        "the bypassed get and get_or_load are misses to their callers"
    );
    assert_eq!(
        store.stats().hits_local + store.stats().misses,
        reads_before,
        "no store reads while open"
    );
    assert!(
        store.is_empty(),
        "no store writes while open (the poisoned entries were deleted)"
    );

    // After the cool-down, clean probes close it again.
    clock.advance(Duration::from_secs(31));
    for _ in 0..3 {
        assert_eq!(cache.get(&key(3, 3)).await, None);
    }
    let stats = cache.stats();
    assert_eq!(stats.breaker_state, BreakerState::Closed);
    assert_eq!(stats.breaker_open_ms, 31_000);
    cache
        .insert(&key(2, 2), Bytes::from_static(b"v"))
        .await
        .unwrap();
    assert_eq!(cache.get(&key(2, 2)).await, Some(Bytes::from_static(b"v")));
    assert_eq!(
        *events.lock().unwrap(),
        [
            (BreakerState::Closed, BreakerState::Open),
            (BreakerState::Open, BreakerState::HalfOpen),
            (BreakerState::HalfOpen, BreakerState::Closed)
        ]
    );
}
