//! Weather is not an attack: skewed clocks, a schema bump mid-rollout, a key rotation rolled out
//! in the wrong order and a store that is down are misses (freshness or remote errors), never
//! violations; nothing is reported, no breaker trips, and nothing another instance still reads
//! is deleted. And an open breaker still coalesces loads.

mod support;

use bytes::Bytes;
use scoped_cache::store::{RemoteStore, StoreError};
use scoped_cache::testing::DownStore;
use scoped_cache::{
    BreakerEvent, BreakerScope, BreakerState, BuildError, Cache, Client, FreshnessKind, KeyId,
    KeyRing, ManualClock, MemoryStore, Namespace, Policy, RawBytes, StoreBreaker,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::fixture::{
    Reports, SECRET, START_MS, Thumbs, concurrent_loads, key, key_in, ring, truth,
};

/// A breaker that one violation opens: any refusal fed to it by mistake would trip it.
const HAIR_TRIGGER: Policy = Policy::AutoBypass {
    threshold: 1,
    window: Duration::from_secs(60),
    cool_down: Duration::from_secs(60),
};

const TTL: Duration = Duration::from_secs(10);

/// One instance of a service: its own clock and key ring over the shared store.
struct Instance {
    clock: ManualClock,
    reports: Reports,
    breaker_events: Arc<Mutex<Vec<BreakerEvent>>>,
    client: Client,
}

impl Instance {
    fn new(store: &Arc<MemoryStore>, clock_ms: u64, ring: KeyRing) -> Self {
        let clock = ManualClock::new(clock_ms);
        let reports = Reports::default();
        let breaker_events = Arc::new(Mutex::new(Vec::new()));
        let events = Arc::clone(&breaker_events);
        let client = Client::builder()
            .key_ring(ring)
            .remote_shared(store.clone())
            .clock(clock.clock())
            .on_violation(reports.sink())
            .on_breaker(move |event| events.lock().unwrap().push(event.clone()))
            .build()
            .unwrap();
        Self {
            clock,
            reports,
            breaker_events,
            client,
        }
    }

    fn cache<N: Namespace>(&self) -> Cache<N> {
        self.client
            .cache()
            .local_capacity(0)
            .ttl(TTL)
            .policy(HAIR_TRIGGER)
            .build()
            .unwrap()
    }

    /// Nothing was reported and no breaker moved.
    fn assert_calm(&self, what: &str) {
        assert!(self.reports.all().is_empty(), "{what}: reported");
        assert!(
            self.breaker_events.lock().unwrap().is_empty(),
            "{what}: a breaker moved"
        );
    }
}

fn advance_all(instances: &[&Instance], by: Duration) {
    for instance in instances {
        instance.clock.advance(by);
    }
}

#[tokio::test]
async fn a_reader_whose_clock_runs_ahead_within_the_allowance_never_refuses() {
    let store = Arc::new(MemoryStore::with_clock(
        1 << 20,
        ManualClock::new(START_MS).clock(),
    ));
    let writer = Instance::new(&store, START_MS, ring());
    // 300 ms ahead: within the default 1 s allowance.
    let reader = Instance::new(&store, START_MS + 300, ring());
    let (written, read) = (writer.cache::<Thumbs>(), reader.cache::<Thumbs>());
    let k = key(1, 2, 3);
    written.insert(&k, truth(&k)).await.unwrap();
    // Just before the store drops it (TTL less the 1 s margin, on the writer's clock).
    advance_all(&[&writer, &reader], Duration::from_millis(8_999));
    assert_eq!(read.get(&k).await, Some(truth(&k)));
    let stats = read.stats();
    assert_eq!(stats.violations.total() + stats.freshness_misses.total(), 0);
    assert_eq!(stats.breaker_trips, 0);
    reader.assert_calm("300 ms of skew");
}

#[tokio::test]
async fn a_reader_whose_clock_runs_ahead_beyond_the_allowance_misses_without_alarm() {
    let store_clock = ManualClock::new(START_MS);
    let store = Arc::new(MemoryStore::with_clock(1 << 20, store_clock.clock()));
    let writer = Instance::new(&store, START_MS, ring());
    let reader = Instance::new(&store, START_MS + 1_500, ring());
    let (written, read) = (writer.cache::<Thumbs>(), reader.cache::<Thumbs>());
    let k = key(1, 2, 3);
    written.insert(&k, truth(&k)).await.unwrap();
    for instance in [&writer, &reader] {
        instance.clock.advance(Duration::from_millis(8_600));
    }
    store_clock.advance(Duration::from_millis(8_600));
    // The reader's clock says the envelope expired; the store (on the writer's clock) has it.
    assert_eq!(read.get(&k).await, None);
    let stats = read.stats();
    assert_eq!(stats.freshness_misses.get(FreshnessKind::Expired), 1);
    assert_eq!((stats.violations.total(), stats.breaker_trips), (0, 0));
    reader.assert_calm("1.5 s of skew");
    assert_eq!(
        written.get(&k).await,
        Some(truth(&k)),
        "deleted for the writer"
    );
}

macro_rules! thumbs_of_schema {
    ($name:ident, $schema:literal) => {
        struct $name;
        impl Namespace for $name {
            const NAME: &'static str = "thumb";
            const SCHEMA: u16 = $schema;
            type Item = u64;
            type Value = Bytes;
            type Codec = RawBytes;
        }
    };
}
thumbs_of_schema!(ThumbsV1, 1);
thumbs_of_schema!(ThumbsV2, 2);

#[tokio::test]
async fn a_schema_bump_mid_rollout_trips_no_breaker_and_deletes_nothing() {
    let store = Arc::new(MemoryStore::default());
    let (old, new) = (
        Instance::new(&store, START_MS, ring()),
        Instance::new(&store, START_MS, ring()),
    );
    let (old_thumbs, new_thumbs) = (old.cache::<ThumbsV1>(), new.cache::<ThumbsV2>());
    let (k1, k2) = (key_in::<ThumbsV1>(1, 2, 3), key_in::<ThumbsV2>(1, 2, 3));
    old_thumbs
        .insert(&k1, Bytes::from_static(b"v1"))
        .await
        .unwrap();
    for _ in 0..5 {
        assert_eq!(new_thumbs.get(&k2).await, None);
    }
    let stats = new_thumbs.stats();
    assert_eq!(stats.freshness_misses.get(FreshnessKind::SchemaMismatch), 5);
    assert_eq!((stats.violations.total(), stats.breaker_trips), (0, 0));
    new.assert_calm("the new version reading the old one's value");
    assert_eq!(
        old_thumbs.get(&k1).await.as_deref(),
        Some(&b"v1"[..]),
        "deleted"
    );
}

#[tokio::test]
async fn a_key_rotation_rolled_out_in_the_wrong_order_is_a_miss_until_the_ring_arrives() {
    let store = Arc::new(MemoryStore::default());
    // The writer already signs with key 2; the reader's ring does not have it yet.
    let rotated = KeyRing::new(KeyId(2), b"the next secret, thirty-two bytes!")
        .unwrap()
        .with_verifier(KeyId(1), &SECRET)
        .unwrap();
    let writer = Instance::new(&store, START_MS, rotated.clone());
    let reader = Instance::new(&store, START_MS, ring());
    let k = key(1, 2, 3);
    writer
        .cache::<Thumbs>()
        .insert(&k, truth(&k))
        .await
        .unwrap();
    let read = reader.cache::<Thumbs>();
    assert_eq!(read.get(&k).await, None);
    let stats = read.stats();
    assert_eq!(stats.freshness_misses.get(FreshnessKind::UnknownKey), 1);
    assert_eq!((stats.violations.total(), stats.breaker_trips), (0, 0));
    reader.assert_calm("a key id the reader does not know yet");
    // Once the reader has the new ring, the very same stored value opens.
    let updated = Instance::new(&store, START_MS, rotated);
    assert_eq!(updated.cache::<Thumbs>().get(&k).await, Some(truth(&k)));
}

#[tokio::test]
async fn a_store_that_is_down_is_skipped_after_repeated_failures() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let clock = ManualClock::new(START_MS);
    let client = Client::builder()
        .key_ring(ring())
        .remote(DownStore)
        .clock(clock.clock())
        .store_breaker(Some(StoreBreaker::new(3, Duration::from_secs(1))))
        .on_breaker(move |event: &BreakerEvent| sink.lock().unwrap().push(event.clone()))
        .build()
        .unwrap();
    let cache: Cache<Thumbs> = client
        .cache()
        .local_capacity(0)
        .policy(HAIR_TRIGGER)
        .build()
        .unwrap();
    let k = key(1, 2, 3);
    for _ in 0..10 {
        assert_eq!(cache.get(&k).await, None);
    }
    let stats = cache.stats();
    assert_eq!((stats.remote_errors, stats.remote_skipped), (3, 7));
    assert_eq!(stats.store_breaker_state, BreakerState::Open);
    assert_eq!((stats.violations.total(), stats.breaker_trips), (0, 0));
    assert!(matches!(
        cache.insert(&k, truth(&k)).await,
        Err(scoped_cache::Error::Remote(StoreError::Skipped))
    ));
    // After the cool-down a probe goes through; it fails, and the breaker opens again.
    clock.advance(Duration::from_secs(1));
    assert_eq!(cache.get(&k).await, None);
    let stats = cache.stats();
    assert_eq!((stats.remote_errors, stats.store_breaker_trips), (4, 2));
    let events = events.lock().unwrap();
    assert!(
        events
            .iter()
            .all(|event| event.scope == BreakerScope::Store)
    );
    let states: Vec<_> = events.iter().map(|event| event.to).collect();
    assert_eq!(
        states,
        [
            BreakerState::Open,
            BreakerState::HalfOpen,
            BreakerState::Open
        ]
    );
}

/// A store whose reads hand back another key's sealed value: every read is a violation.
struct Swapping(Arc<MemoryStore>);

impl RemoteStore for Swapping {
    fn get<'a>(&'a self, _key: &'a [u8]) -> scoped_cache::store::StoreFuture<'a, Option<Bytes>> {
        Box::pin(async move { self.0.get(&key(9, 9, 9).encode()).await })
    }
    fn set<'a>(
        &'a self,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Duration>,
    ) -> scoped_cache::store::StoreFuture<'a, ()> {
        self.0.set(key, value, ttl)
    }
    fn delete<'a>(&'a self, key: &'a [u8]) -> scoped_cache::store::StoreFuture<'a, ()> {
        self.0.delete(key)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_still_coalesces_loads_and_keeps_the_in_process_tier() {
    let store = Arc::new(MemoryStore::default());
    let client = support::fixture::client(Arc::new(Swapping(store.clone())));
    let cache: Cache<Thumbs> = client.cache().policy(HAIR_TRIGGER).build().unwrap();
    let (poison, k) = (key(9, 9, 9), key(1, 2, 3));
    store
        .set(&poison.encode(), seal_for(&poison), None)
        .await
        .unwrap();
    assert_eq!(cache.get(&k).await, None, "the swapped value is refused");
    assert_eq!(cache.stats().breaker_state, BreakerState::Open);

    let calls = concurrent_loads(&cache, std::iter::repeat_n(k.clone(), 50)).await;
    assert_eq!(calls, 1, "one load while open");
    // The loaded value went to the in-process tier only, which serves it while open.
    let load_again = || async { Ok::<_, std::io::Error>(Bytes::from_static(b"reloaded")) };
    assert_eq!(cache.get_or_load(&k, load_again).await.unwrap(), truth(&k));
    assert_eq!(
        cache.get(&k).await,
        Some(truth(&k)),
        "read in-process while open"
    );
    assert_eq!(cache.stats().loads, 1);
    assert_eq!(cache.stats().breaker_state, BreakerState::Open);
    assert!(
        store.get(&k.encode()).await.unwrap().is_none(),
        "written remotely while open"
    );
}

/// `key`'s value sealed as the cache would seal it.
fn seal_for(key: &scoped_cache::Key<Thumbs>) -> Bytes {
    scoped_cache::envelope::Envelope::default()
        .seal(
            key,
            &truth(key),
            START_MS,
            START_MS + 3_600_000_000,
            &ring(),
        )
        .unwrap()
}

/// `key`'s value in envelope format 1, as a previous release sealed it: the layout of
/// `docs/ENVELOPE.md` under HMAC-SHA256 keyed with the secret itself.
fn seal_version_1(key: &scoped_cache::Key<Thumbs>, payload: &[u8], expires_ms: u64) -> Bytes {
    use hmac::{Hmac, KeyInit, Mac};
    let encoded = key.encode();
    let mut out = vec![0x89, b'S', b'C', b'E', 1, 0];
    out.extend_from_slice(&1u16.to_be_bytes()); // Thumbs::SCHEMA
    out.extend_from_slice(&1u32.to_be_bytes()); // ring()'s key id
    out.extend_from_slice(&START_MS.to_be_bytes());
    out.extend_from_slice(&expires_ms.to_be_bytes());
    out.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    out.extend_from_slice(&encoded);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&SECRET).unwrap();
    mac.update(&out);
    out.extend_from_slice(&mac.finalize().into_bytes());
    Bytes::from(out)
}

/// A format 1 value opens during the migration window; once a client ends it, the same value
/// is a retired-version miss: counted, not reported, no breaker, not deleted (an instance
/// still in the window reads it), and a load writes format 2 over it. A forged format 1 value
/// is still a violation.
#[tokio::test]
async fn format_1_after_the_window_is_a_counted_miss_not_an_alarm() {
    let store = Arc::new(MemoryStore::with_clock(
        1 << 20,
        ManualClock::new(START_MS).clock(),
    ));
    let k = key(1, 2, 3);
    let old = seal_version_1(&k, &truth(&k), START_MS + 600_000);
    store.set(&k.encode(), old.clone(), None).await.unwrap();

    let in_window = Instance::new(&store, START_MS, ring());
    assert_eq!(in_window.cache::<Thumbs>().get(&k).await, Some(truth(&k)));

    let clock = ManualClock::new(START_MS);
    let reports = Reports::default();
    let client = Client::builder()
        .key_ring(ring())
        .remote_shared(store.clone())
        .clock(clock.clock())
        .on_violation(reports.sink())
        .read_version_1(false)
        .build()
        .unwrap();
    let closed: Cache<Thumbs> = client
        .cache()
        .local_capacity(0)
        .ttl(TTL)
        .policy(HAIR_TRIGGER)
        .build()
        .unwrap();
    assert_eq!(
        closed.get(&k).await,
        None,
        "format 1 served after the window"
    );
    let stats = closed.stats();
    assert_eq!(stats.freshness_misses.get(FreshnessKind::RetiredVersion), 1);
    assert_eq!(stats.violations.total(), 0);
    assert_eq!(stats.breaker_state, BreakerState::Closed);
    assert!(reports.all().is_empty(), "reported");
    assert_eq!(
        store.get(&k.encode()).await.unwrap(),
        Some(old.clone()),
        "deleted"
    );

    // A load rewrites it in format 2, which both instances read.
    let load = || async { Ok::<_, std::io::Error>(truth(&k)) };
    assert_eq!(closed.get_or_load(&k, load).await.unwrap(), truth(&k));
    let rewritten = store.get(&k.encode()).await.unwrap().unwrap();
    assert_eq!(rewritten[4], 2, "rewritten in format 2");
    assert_eq!(closed.get(&k).await, Some(truth(&k)));

    // A forged format 1 value is a violation, window or not.
    let mut forged = old.to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    store
        .set(&k.encode(), Bytes::from(forged), None)
        .await
        .unwrap();
    assert_eq!(closed.get(&k).await, None);
    assert_eq!(
        closed
            .stats()
            .violations
            .get(scoped_cache::ViolationKind::BadTag),
        1
    );
}

#[test]
fn two_namespace_types_with_one_name_on_one_client_is_a_build_error() {
    struct Alias;
    impl Namespace for Alias {
        const NAME: &'static str = "thumb";
        const SCHEMA: u16 = 1;
        type Item = u64;
        type Value = Bytes;
        type Codec = RawBytes;
    }
    let client = Client::builder().build().unwrap();
    assert!(client.cache::<Thumbs>().build().is_ok());
    assert!(
        client.cache::<Thumbs>().build().is_ok(),
        "one type, two caches"
    );
    assert_eq!(
        client.cache::<Alias>().build().err(),
        Some(BuildError::NamespaceNameTaken { name: "thumb" })
    );
    // Another client is another registry (and should use another store or key prefix).
    assert!(
        Client::builder()
            .build()
            .unwrap()
            .cache::<Alias>()
            .build()
            .is_ok()
    );
}
