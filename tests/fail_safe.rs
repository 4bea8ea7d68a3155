//! Fail-safe answers and refresh-ahead (`Cache::get_or_refresh`): a stale value is only ever the
//! key's own authentic value within its stale time, only `get_or_refresh` serves one and says
//! so, and the loads behind it run once per key whoever gives up.

mod support;

use bytes::Bytes;
use scoped_cache::store::RemoteStore;
use scoped_cache::{
    BuildError, Cache, Codec, CodecError, DeviceId, Key, LoadError, Namespace, Owned, Owner,
    Policy, RawBytes, StaleReason, TenantId,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::fixture::{Fixture, TTL, Thumbs, key, owner, truth};

/// How long past [`TTL`] the caches here keep a value for fail-safe answers.
const STALE_FOR: Duration = Duration::from_secs(10);

fn fail_safe_cache(fixture: &Fixture, local_capacity: u64) -> Cache<Thumbs> {
    fixture
        .client
        .cache()
        .local_capacity(local_capacity)
        .ttl(TTL)
        .stale_for(STALE_FOR)
        .build()
        .expect("valid cache")
}

/// A cache whose values live 60 s and are reloaded in the background from 30 s on.
fn refreshing_cache<N: Namespace>(fixture: &Fixture) -> Cache<N> {
    fixture
        .client
        .cache()
        .ttl(Duration::from_secs(60))
        .refresh_after(Duration::from_secs(30))
        .build()
        .expect("valid cache")
}

/// Waits until `done` says so, looking every 5 ms, at most 1,000 times; the caller then asserts
/// what it waited for.
async fn eventually(mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..1_000 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn origin_down() -> Result<Bytes, std::io::Error> {
    Err(std::io::Error::other("origin down"))
}

/// A loader that returns `value` and counts its calls.
fn counted(
    calls: &Arc<AtomicUsize>,
    value: Bytes,
) -> impl FnOnce() -> std::future::Ready<Result<Bytes, std::io::Error>> + Send + 'static {
    let calls = Arc::clone(calls);
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(value))
    }
}

/// Both tiers, and each alone (the in-process tier over no store, the store without one).
fn every_tier_layout() -> [(&'static str, Fixture, u64); 3] {
    [
        ("both tiers", Fixture::new(), 10_000),
        ("store only", Fixture::new(), 0),
        ("in-process only", Fixture::without_store(), 10_000),
    ]
}

#[tokio::test]
async fn a_failed_load_is_answered_with_the_keys_own_stale_value_and_says_so() {
    for (layout, fixture, local_capacity) in every_tier_layout() {
        let cache = fail_safe_cache(&fixture, local_capacity);
        // Same device and item numbers, another tenant: its value must never answer for ours.
        let (mine, theirs) = (key(1, 2, 3), key(2, 1, 3));
        cache.insert(&mine, truth(&mine)).await.unwrap();
        cache.insert(&theirs, truth(&theirs)).await.unwrap();
        fixture.clock.advance(TTL + Duration::from_secs(2));

        let fetched = cache.get_or_refresh(&mine, origin_down).await;
        let fetched = fetched.unwrap_or_else(|error| panic!("{layout}: {error}"));
        assert_eq!(fetched.value, truth(&mine), "{layout}");
        assert_eq!(fetched.age, TTL + Duration::from_secs(2), "{layout}");
        assert!(
            matches!(
                fetched.stale,
                Some(StaleReason::LoadFailed(LoadError::Loader(_)))
            ),
            "{layout}: {:?}",
            fetched.stale
        );
        assert_eq!(cache.stats().served_stale, 1, "{layout}");
        // Only get_or_refresh answers stale.
        assert_eq!(cache.get(&mine).await, None, "{layout}: get");
        assert_eq!(
            cache.get_many(std::slice::from_ref(&mine)).await,
            [None],
            "{layout}"
        );
        assert!(
            cache.get_or_load(&mine, origin_down).await.is_err(),
            "{layout}: get_or_load"
        );
        let never_stored = key(1, 2, 4);
        assert!(
            cache
                .get_or_refresh(&never_stored, origin_down)
                .await
                .is_err(),
            "{layout}: nothing stale to answer with"
        );
    }
}

#[tokio::test]
async fn a_failing_origin_is_asked_about_a_key_once_per_throttle_not_once_per_call() {
    let fixture = Fixture::new();
    let cache = fail_safe_cache(&fixture, 10_000);
    let mine = key(1, 2, 3);
    cache.insert(&mine, truth(&mine)).await.unwrap();
    fixture.clock.advance(TTL * 2);
    let attempts = Arc::new(AtomicUsize::new(0));
    let failing = || {
        let attempts = Arc::clone(&attempts);
        move || {
            attempts.fetch_add(1, Ordering::SeqCst);
            origin_down()
        }
    };
    for _ in 0..10 {
        let fetched = cache.get_or_refresh(&mine, failing()).await.unwrap();
        assert!(matches!(fetched.stale, Some(StaleReason::LoadFailed(_))));
    }
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "one attempt within the throttle"
    );
    fixture.clock.advance(Duration::from_secs(1)); // the default throttle
    cache.get_or_refresh(&mine, failing()).await.unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 2, "tried again after it");
    assert_eq!(cache.stats().served_stale, 11);

    let unthrottled = fixture
        .client
        .cache::<Thumbs>()
        .ttl(TTL)
        .stale_for(STALE_FOR)
        .fail_safe_throttle(None)
        .build()
        .unwrap();
    let before = attempts.load(Ordering::SeqCst);
    for _ in 0..3 {
        unthrottled.get_or_refresh(&mine, failing()).await.unwrap();
    }
    assert_eq!(
        attempts.load(Ordering::SeqCst) - before,
        3,
        "every call tries"
    );
}

#[tokio::test]
async fn a_stale_value_is_never_served_past_its_stale_time() {
    for (layout, fixture, local_capacity) in every_tier_layout() {
        let cache = fail_safe_cache(&fixture, local_capacity);
        let mine = key(1, 2, 3);
        cache.insert(&mine, truth(&mine)).await.unwrap();
        // The tiers drop it at its lifetime less the expiry margin (1 s here).
        fixture
            .clock
            .advance(TTL + STALE_FOR - Duration::from_millis(1_001));
        let fetched = cache.get_or_refresh(&mine, origin_down).await;
        assert!(fetched.is_ok_and(|f| f.is_stale()), "{layout}: within");
        fixture.clock.advance(Duration::from_millis(1_001));
        let fetched = cache.get_or_refresh(&mine, origin_down).await;
        assert!(fetched.is_err(), "{layout}: served at TTL + stale_for");
    }
}

#[tokio::test]
async fn a_store_that_keeps_a_value_too_long_still_cannot_make_it_served() {
    // The sealed expiry decides, not the store's own: a store (or a replay) that keeps a value
    // past TTL + stale_for does not extend its fail-safe life.
    let fixture = Fixture::new();
    let cache = fail_safe_cache(&fixture, 0);
    let mine = key(1, 2, 3);
    cache.insert(&mine, truth(&mine)).await.unwrap();
    let sealed = fixture.store.get(&mine.encode()).await.unwrap().unwrap();
    fixture
        .store
        .set(&mine.encode(), sealed, None)
        .await
        .unwrap();
    fixture
        .clock
        .advance(TTL + STALE_FOR - Duration::from_millis(1));
    assert!(
        cache
            .get_or_refresh(&mine, origin_down)
            .await
            .unwrap()
            .is_stale()
    );
    fixture.clock.advance(Duration::from_millis(1));
    assert!(cache.get_or_refresh(&mine, origin_down).await.is_err());
    assert_eq!(cache.stats().violations.total(), 0, "expiry is weather");
}

#[tokio::test]
async fn an_invalidated_key_has_nothing_stale_to_serve() {
    for (layout, fixture, local_capacity) in every_tier_layout() {
        let cache = fail_safe_cache(&fixture, local_capacity);
        let mine = key(1, 2, 3);
        cache.insert(&mine, truth(&mine)).await.unwrap();
        fixture.clock.advance(TTL * 2);
        cache.invalidate(&mine).await.unwrap();
        let fetched = cache.get_or_refresh(&mine, origin_down).await;
        assert!(fetched.is_err(), "{layout}: served after invalidate");
    }
}

#[tokio::test]
async fn a_value_of_another_schema_is_never_served_stale() {
    /// The same namespace after a deploy changed its value's encoding.
    struct ThumbsV2;
    impl Namespace for ThumbsV2 {
        const NAME: &'static str = Thumbs::NAME;
        const SCHEMA: u16 = 2;
        type Item = u64;
        type Value = Bytes;
        type Codec = RawBytes;
    }
    let old_deploy = Fixture::new();
    fail_safe_cache(&old_deploy, 0)
        .insert(&key(1, 2, 3), truth(&key(1, 2, 3)))
        .await
        .unwrap();
    let new_deploy = old_deploy.peer();
    let cache = new_deploy
        .client
        .cache::<ThumbsV2>()
        .ttl(TTL)
        .stale_for(STALE_FOR)
        .build()
        .unwrap();
    old_deploy.clock.advance(TTL * 2);
    let mine = Key::<ThumbsV2>::new(TenantId::from_u64(1), DeviceId::from_u64(2), 3);
    assert!(cache.get_or_refresh(&mine, origin_down).await.is_err());
    assert_eq!(cache.stats().served_stale, 0);
}

#[tokio::test]
async fn a_bypass_namespace_cannot_be_given_fail_safe_settings() {
    let fixture = Fixture::new();
    let stale = fixture
        .client
        .cache::<Thumbs>()
        .policy(Policy::Bypass)
        .stale_for(STALE_FOR)
        .build();
    assert!(matches!(stale, Err(BuildError::FailSafe(_))));
    let bypass = fixture.bypass_cache::<Thumbs>();
    let mine = key(1, 2, 3);
    bypass.insert(&mine, truth(&mine)).await.unwrap();
    assert!(bypass.get_or_refresh(&mine, origin_down).await.is_err());
    let loaded = bypass.get_or_refresh(&mine, || async {
        Ok::<_, std::io::Error>(truth(&key(1, 2, 3)))
    });
    assert_eq!(loaded.await.unwrap().value, truth(&mine));
}

#[test]
fn settings_that_cannot_work_together_are_refused() {
    let fixture = Fixture::new();
    let builder = || fixture.client.cache::<Thumbs>().ttl(TTL);
    let refused = [
        ("no ttl", builder().no_ttl().stale_for(STALE_FOR).build()),
        (
            "zero stale_for",
            builder().stale_for(Duration::ZERO).build(),
        ),
        ("refresh at the ttl", builder().refresh_after(TTL).build()),
        (
            "refresh at zero",
            builder().refresh_after(Duration::ZERO).build(),
        ),
        (
            "soft timeout without stale_for",
            builder()
                .soft_load_timeout(Duration::from_millis(10))
                .build(),
        ),
        (
            "soft timeout at the load timeout",
            builder()
                .stale_for(STALE_FOR)
                .load_timeout(Some(Duration::from_secs(1)))
                .soft_load_timeout(Duration::from_secs(1))
                .build(),
        ),
    ];
    for (setting, built) in refused {
        assert!(
            matches!(built, Err(BuildError::FailSafe(_))),
            "{setting}: {:?}",
            built.err()
        );
    }
    let too_long = builder().stale_for(scoped_cache::MAX_TTL).build();
    assert!(matches!(too_long, Err(BuildError::TtlTooLong { .. })));
    let fine = builder()
        .stale_for(STALE_FOR)
        .refresh_after(TTL / 2)
        .soft_load_timeout(Duration::from_millis(100))
        .build();
    assert!(fine.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_slow_load_is_answered_stale_at_the_soft_timeout_and_refreshes_the_key_in_the_background()
{
    let fixture = Fixture::new();
    let cache = fixture
        .client
        .cache::<Thumbs>()
        .ttl(TTL)
        .stale_for(STALE_FOR)
        .soft_load_timeout(Duration::from_millis(100))
        .load_timeout(Some(Duration::from_secs(30)))
        .build()
        .unwrap();
    let mine = key(1, 2, 3);
    cache
        .insert(&mine, Bytes::from_static(b"old"))
        .await
        .unwrap();
    fixture.clock.advance(TTL * 2);
    let slow = || async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, std::io::Error>(Bytes::from_static(b"new"))
    };
    let fetched = cache.get_or_refresh(&mine, slow).await.unwrap();
    assert_eq!(fetched.value, Bytes::from_static(b"old"));
    assert!(matches!(fetched.stale, Some(StaleReason::LoadSlow(_))));
    // The load goes on without its caller, once, and stores its value.
    let calls = Arc::new(AtomicUsize::new(0));
    let again = cache.get_or_refresh(&mine, counted(&calls, Bytes::from_static(b"other")));
    assert_eq!(again.await.unwrap().value, Bytes::from_static(b"old"));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "a second load beside the first"
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(cache.get(&mine).await, Some(Bytes::from_static(b"new")));
    assert_eq!(cache.stats().loads, 1);
}

#[tokio::test(start_paused = true)]
async fn without_a_stale_value_the_caller_waits_for_the_load() {
    let fixture = Fixture::new();
    let cache = fixture
        .client
        .cache::<Thumbs>()
        .ttl(TTL)
        .stale_for(STALE_FOR)
        .soft_load_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let slow = || async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, std::io::Error>(Bytes::from_static(b"new"))
    };
    let fetched = cache.get_or_refresh(&key(1, 2, 3), slow).await.unwrap();
    assert_eq!(
        (fetched.value, fetched.stale.is_none()),
        (Bytes::from_static(b"new"), true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hits_past_refresh_after_answer_at_once_and_start_one_background_load() {
    let fixture = Fixture::new();
    let cache = refreshing_cache::<Thumbs>(&fixture);
    let mine = key(1, 2, 3);
    cache
        .insert(&mine, Bytes::from_static(b"v1"))
        .await
        .unwrap();
    fixture.clock.advance(Duration::from_secs(29));
    let calls = Arc::new(AtomicUsize::new(0));
    let fetched = cache.get_or_refresh(&mine, counted(&calls, Bytes::from_static(b"v2")));
    assert_eq!(fetched.await.unwrap().value, Bytes::from_static(b"v1"));
    assert_eq!(calls.load(Ordering::SeqCst), 0, "not due yet");

    fixture.clock.advance(Duration::from_secs(2));
    // Many hits while the refresh is held: each is answered with v1, one refresh runs.
    let (release, released) = tokio::sync::watch::channel(false);
    let hits: Vec<_> = (0..100)
        .map(|_| {
            let (cache, mine, calls) = (cache.clone(), mine.clone(), Arc::clone(&calls));
            let mut released = released.clone();
            tokio::spawn(async move {
                let load = move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    released.wait_for(|go| *go).await.unwrap();
                    Ok::<_, std::io::Error>(Bytes::from_static(b"v2"))
                };
                cache.get_or_refresh(&mine, load).await.unwrap()
            })
        })
        .collect();
    for hit in hits {
        let fetched = hit.await.unwrap();
        assert_eq!(fetched.value, Bytes::from_static(b"v1"));
        assert!(!fetched.is_stale());
        assert_eq!(fetched.age, Duration::from_secs(31));
    }
    release.send(true).unwrap();
    eventually(async || cache.get(&mine).await == Some(Bytes::from_static(b"v2"))).await;
    assert_eq!(cache.get(&mine).await, Some(Bytes::from_static(b"v2")));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one refresh for 100 hits");
    assert_eq!(cache.stats().refreshes, 1);
}

/// A device's reading that names its owner ([`Owned`]): a refresh that loads another owner's
/// value must store nothing, under any key.
#[derive(Debug, Clone, PartialEq)]
struct Reading {
    tenant: u64,
    device: u64,
}
impl Owned for Reading {
    fn owner(&self) -> Owner {
        owner(self.tenant, self.device)
    }
}
/// Tenant and device as two big-endian u64s.
struct ReadingCodec;
impl Codec<Reading> for ReadingCodec {
    fn encode(reading: &Reading) -> Result<Bytes, CodecError> {
        let bytes = [reading.tenant.to_be_bytes(), reading.device.to_be_bytes()].concat();
        Ok(Bytes::from(bytes))
    }
    fn decode(payload: Bytes) -> Result<Reading, CodecError> {
        let ids: [u8; 16] = payload[..]
            .try_into()
            .map_err(|_| CodecError("a reading is 16 bytes".into()))?;
        let (tenant, device) = ids.split_at(8);
        Ok(Reading {
            tenant: u64::from_be_bytes(tenant.try_into().expect("8 bytes")),
            device: u64::from_be_bytes(device.try_into().expect("8 bytes")),
        })
    }
}
struct Readings;
impl Namespace for Readings {
    const NAME: &'static str = "reading";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = Reading;
    type Codec = ReadingCodec;
    fn value_owner(value: &Reading) -> Option<Owner> {
        Some(value.owner())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_that_loads_another_owners_value_stores_nothing() {
    let fixture = Fixture::new();
    let cache = refreshing_cache::<Readings>(&fixture);
    let mine = Key::<Readings>::new(TenantId::from_u64(1), DeviceId::from_u64(2), 3);
    let ours = Reading {
        tenant: 1,
        device: 2,
    };
    cache.insert(&mine, ours.clone()).await.unwrap();
    fixture.clock.advance(Duration::from_secs(31));
    let theirs = Reading {
        tenant: 2,
        device: 1,
    };
    let fetched = cache.get_or_refresh(
        &mine,
        move || async move { Ok::<_, std::io::Error>(theirs) },
    );
    assert_eq!(fetched.await.unwrap().value, ours);
    eventually(async || cache.stats().load_errors == 1).await;
    assert_eq!(cache.stats().load_errors, 1, "the refresh was refused");
    assert_eq!(cache.get(&mine).await, Some(ours));
    assert_eq!(fixture.store.len(), 1, "stored under no other key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_refresh_hands_over_and_the_next_caller_loads() {
    let fixture = Fixture::new();
    let cache = refreshing_cache::<Thumbs>(&fixture);
    let mine = key(1, 2, 3);
    cache
        .insert(&mine, Bytes::from_static(b"v1"))
        .await
        .unwrap();
    fixture.clock.advance(Duration::from_secs(31));
    let panics = || async { panic!("refresh bug") as Result<Bytes, std::io::Error> };
    let fetched = cache.get_or_refresh(&mine, panics).await.unwrap();
    assert_eq!(
        fetched.value,
        Bytes::from_static(b"v1"),
        "answered before the refresh ran"
    );
    let calls = Arc::new(AtomicUsize::new(0));
    eventually(async || {
        let load = counted(&calls, Bytes::from_static(b"v2"));
        cache.get_or_refresh(&mine, load).await.unwrap();
        calls.load(Ordering::SeqCst) > 0
    })
    .await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the key was left stuck behind the panic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_caller_does_not_stop_its_load() {
    let fixture = Fixture::new();
    let cache = fail_safe_cache(&fixture, 10_000);
    let mine = key(1, 2, 3);
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let load = || async move {
        released.await.unwrap();
        Ok::<_, std::io::Error>(truth(&key(1, 2, 3)))
    };
    let caller = tokio::time::timeout(Duration::from_millis(20), cache.get_or_refresh(&mine, load));
    assert!(caller.await.is_err(), "the load is held");
    release.send(()).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    eventually(async || cache.get(&mine).await.is_some()).await;
    let found = cache.get(&mine).await;
    assert_eq!(
        found,
        Some(truth(&mine)),
        "the load was dropped with its caller"
    );
    let fetched = cache.get_or_refresh(&mine, counted(&calls, Bytes::new()));
    assert_eq!(fetched.await.unwrap().value, truth(&mine));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}
