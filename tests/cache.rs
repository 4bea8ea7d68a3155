//! `Cache` behaviour: promotion between tiers, poisoned remote values refused (counted, reported
//! with expected and found owner, deleted), `Policy::Bypass`, build and write errors, and TTL
//! expiry in both tiers.

mod support;

use bytes::Bytes;
use scoped_cache::envelope::{Envelope, MAGIC, Malformed, NEVER, SealError, Sealing};
use scoped_cache::store::{RemoteStore, StoreError, StoreFuture};
use scoped_cache::testing::DownStore;
use scoped_cache::{
    BuildError, Cache, Client, Error, Freshness, FreshnessKind, Key, KeyId, KeyRing, MemoryStore,
    Namespace, RawBytes, Tier, Violation, ViolationKind,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::fixture::{Fixture, SECRET, START_MS, Thumbs, key, key_in, owner, ring};

/// Thumbnails of another schema, and events: what a value of another namespace looks like.
macro_rules! namespace {
    ($name:ident, $text:literal, $schema:literal) => {
        #[derive(Debug)]
        struct $name;
        impl Namespace for $name {
            const NAME: &'static str = $text;
            const SCHEMA: u16 = $schema;
            type Item = u64;
            type Value = Bytes;
            type Codec = RawBytes;
        }
    };
}

namespace!(ThumbsV2, "thumb", 2);
namespace!(Events, "event", 1);

fn seal<N: Namespace>(key: &Key<N>, payload: &[u8], expires_ms: u64, ring: &KeyRing) -> Bytes {
    Envelope::default()
        .seal(key, payload, START_MS, expires_ms, ring)
        .expect("within limits")
}

fn seal_encrypted<N: Namespace>(
    key: &Key<N>,
    payload: &[u8],
    expires_ms: u64,
    ring: &KeyRing,
) -> Bytes {
    Envelope::default()
        .with_sealing(Sealing::Encrypted)
        .seal(key, payload, START_MS, expires_ms, ring)
        .expect("within limits")
}

#[tokio::test]
async fn remote_hits_are_promoted_to_the_local_tier() {
    let fixture = Fixture::new();
    let writer = fixture.cache();
    // A second client (another process) over the same store and secret.
    let reader_fixture = fixture.peer();
    let reader = reader_fixture.cache();
    let mine = key(1, 2, 3);
    writer
        .insert(&mine, Bytes::from_static(b"jpeg"))
        .await
        .expect("insert");

    assert_eq!(reader.get(&mine).await, Some(Bytes::from_static(b"jpeg")));
    let stats = reader.stats();
    assert_eq!((stats.hits_remote, stats.hits_local), (1, 0));
    assert_eq!(reader.local().map(|local| local.len()), Some(1));

    assert_eq!(reader.get(&mine).await, Some(Bytes::from_static(b"jpeg")));
    let stats = reader.stats();
    assert_eq!(
        (stats.hits_remote, stats.hits_local, stats.misses),
        (1, 1, 0)
    );
    assert_eq!(stats.violations.total(), 0);

    // Clearing the local tier sends the next read to the remote tier again.
    reader.local().expect("local tier").clear();
    assert_eq!(reader.get(&mine).await, Some(Bytes::from_static(b"jpeg")));
    assert_eq!(reader.stats().hits_remote, 2);
    assert!(reader_fixture.reports().is_empty());
}

#[tokio::test]
async fn poisoned_remote_values_are_refused_reported_and_deleted() {
    let mine = key(1, 2, 3);
    let other_secret = KeyRing::new(KeyId(1), &[0x99; 32]).expect("valid secret");
    let far = START_MS + 60_000;
    let mut truncated = seal(&mine, b"mine", far, &ring()).to_vec();
    truncated.pop();
    let mut tampered_ciphertext = seal_encrypted(&mine, b"mine", far, &ring()).to_vec();
    let last_ciphertext_byte = tampered_ciphertext.len() - 17;
    tampered_ciphertext[last_ciphertext_byte] ^= 1;
    let cases: Vec<(&str, Bytes, Violation)> = vec![
        (
            "another owner's envelope",
            seal(&key(9, 8, 3), b"theirs", far, &ring()),
            Violation::OwnerMismatch {
                expected: owner(1, 2),
                found: owner(9, 8),
            },
        ),
        (
            "tenant and device swapped",
            seal(&key(2, 1, 3), b"swapped", far, &ring()),
            Violation::OwnerMismatch {
                expected: owner(1, 2),
                found: owner(2, 1),
            },
        ),
        (
            "another item",
            seal(&key(1, 2, 4), b"other item", far, &ring()),
            Violation::ItemMismatch,
        ),
        (
            "another owner's encrypted envelope",
            seal_encrypted(&key(9, 8, 3), b"theirs", far, &ring()),
            Violation::OwnerMismatch {
                expected: owner(1, 2),
                found: owner(9, 8),
            },
        ),
        (
            "an encrypted envelope of another item",
            seal_encrypted(&key(1, 2, 4), b"other item", far, &ring()),
            Violation::ItemMismatch,
        ),
        (
            "my encrypted envelope with a flipped ciphertext byte",
            Bytes::from(tampered_ciphertext),
            Violation::BadTag,
        ),
        (
            "my encrypted envelope under another secret",
            seal_encrypted(&mine, b"forged", far, &other_secret),
            Violation::BadTag,
        ),
        (
            "another namespace",
            seal(&key_in::<Events>(1, 2, 3), b"event", far, &ring()),
            Violation::NamespaceMismatch {
                expected: "thumb",
                found: "event".to_owned(),
            },
        ),
        (
            "another secret under our key id",
            seal(&mine, b"forged", far, &other_secret),
            Violation::BadTag,
        ),
        (
            "a truncated envelope",
            Bytes::from(truncated),
            Violation::Malformed {
                reason: Malformed::Truncated,
            },
        ),
        (
            "a plain value",
            Bytes::from(format!("{{\"thumbnail\":\"{}\"}}", "A".repeat(100))),
            Violation::Malformed {
                reason: Malformed::BadMagic,
            },
        ),
        (
            "garbage",
            Bytes::from_static(b"\x89SCE garbage"),
            Violation::Malformed {
                reason: Malformed::Truncated,
            },
        ),
    ];
    for (what, poison, expected) in cases {
        let fixture = Fixture::new();
        let cache = fixture.cache();
        fixture.poison(&mine, poison).await;

        assert_eq!(cache.get(&mine).await, None, "{what}: served");
        let stats = cache.stats();
        let kind = expected.kind();
        assert_eq!(
            stats.violations.get(kind),
            1,
            "{what}: {kind:?} not counted"
        );
        assert_eq!(
            stats.violations.total(),
            1,
            "{what}: counted as another kind"
        );
        assert_eq!(
            (stats.misses, stats.hits_remote),
            (1, 0),
            "{what}: not a miss"
        );

        let reports = fixture.reports();
        assert_eq!(reports.len(), 1, "{what}: reports {reports:?}");
        let report = &reports[0];
        assert_eq!(report.namespace, "thumb", "{what}");
        assert_eq!(report.tier, Tier::Remote, "{what}");
        assert_eq!(report.expected, owner(1, 2), "{what}");
        assert_eq!(report.violation, expected, "{what}");

        assert_eq!(fixture.stored(&mine).await, None, "{what}: not deleted");
        // The refused value is gone: the next read is a plain miss, and the key works again.
        assert_eq!(cache.get(&mine).await, None);
        assert_eq!(cache.stats().violations.total(), 1, "{what}: counted twice");
        cache
            .insert(&mine, Bytes::from_static(b"mine"))
            .await
            .expect("insert");
        assert_eq!(cache.get(&mine).await, Some(Bytes::from_static(b"mine")));
    }
}

#[tokio::test]
async fn freshness_misses_are_counted_misses_never_reported_nor_deleted() {
    let mine = key(1, 2, 3);
    let unknown_id = KeyRing::new(KeyId(77), &SECRET).expect("valid secret");
    let far = START_MS + 60_000;
    let cases: Vec<(&str, Bytes, Freshness)> = vec![
        (
            "another schema (a rolling deploy)",
            seal(&key_in::<ThumbsV2>(1, 2, 3), b"v2", far, &ring()),
            Freshness::SchemaMismatch {
                expected: 1,
                found: 2,
            },
        ),
        (
            "an unknown key id (a rotation not yet known here)",
            seal(&mine, b"old", far, &unknown_id),
            Freshness::UnknownKey { key_id: KeyId(77) },
        ),
        (
            "an expired envelope the store kept",
            seal(&mine, b"stale", START_MS, &ring()),
            Freshness::Expired {
                expires_ms: START_MS,
                now_ms: START_MS,
            },
        ),
    ];
    for (what, stored, expected) in cases {
        let fixture = Fixture::new();
        let cache = fixture.cache();
        fixture.poison(&mine, stored.clone()).await;

        assert_eq!(cache.get(&mine).await, None, "{what}: served");
        let stats = cache.stats();
        let kind = expected.kind();
        assert_eq!(stats.freshness_misses.get(kind), 1, "{what}: not counted");
        assert_eq!(stats.freshness_misses.total(), 1, "{what}: another kind");
        assert_eq!(
            stats.violations.total(),
            0,
            "{what}: counted as a violation"
        );
        assert_eq!((stats.misses, stats.hits_remote), (1, 0), "{what}");
        assert!(fixture.reports().is_empty(), "{what}: reported");
        assert_eq!(
            fixture.stored(&mine).await,
            Some(stored),
            "{what}: another version's value was deleted"
        );
    }
}

#[tokio::test]
async fn a_remote_value_over_the_reader_limit_is_refused() {
    let fixture = Fixture::new();
    let reader = fixture.cache_with_max_payload(16);
    let mine = key(1, 2, 3);
    fixture
        .poison(&mine, seal(&mine, &[7; 17], NEVER, &ring()))
        .await;
    assert_eq!(reader.get(&mine).await, None);
    assert_eq!(reader.stats().violations.get(ViolationKind::Malformed), 1);
    assert_eq!(fixture.stored(&mine).await, None);
}

#[tokio::test]
async fn bypass_never_reads_or_writes() {
    let fixture = Fixture::new();
    let cache = fixture.bypass_cache::<Thumbs>();
    let mine = key(1, 2, 3);
    cache
        .insert(&mine, Bytes::from_static(b"jpeg"))
        .await
        .expect("insert");
    assert_eq!(fixture.store.len(), 0, "bypass wrote to the remote tier");
    assert_eq!(cache.local().map_or(0, |local| local.len()), 0);

    // Even a valid value in the store is not read.
    fixture
        .poison(&mine, seal(&mine, b"jpeg", NEVER, &ring()))
        .await;
    let reads_before = fixture.store.stats();
    assert_eq!(cache.get(&mine).await, None);
    let reads_after = fixture.store.stats();
    assert_eq!(
        (reads_after.hits_local, reads_after.misses),
        (reads_before.hits_local, reads_before.misses),
        "bypass read the remote tier"
    );
    assert_eq!(
        cache.get_many(&[mine.clone(), key(1, 2, 4)]).await,
        [None, None]
    );
    let stats = cache.stats();
    assert_eq!(
        (stats.hits_local, stats.hits_remote, stats.inserts),
        (0, 0, 0)
    );
    assert_eq!(stats.misses, 3, "a bypassed read is a miss to its caller");
    assert!(fixture.reports().is_empty());
}

#[tokio::test]
async fn a_cache_without_tiers_stores_and_counts_no_inserts() {
    let cache: Cache<Thumbs> = Client::builder()
        .build()
        .expect("valid client")
        .cache()
        .local_capacity(0)
        .build()
        .expect("valid cache: coalescing loads without caching");
    let mine = key(1, 2, 3);
    cache
        .insert(&mine, Bytes::from_static(b"jpeg"))
        .await
        .expect("nothing to store is not an error");
    assert_eq!(cache.get(&mine).await, None);
    let stats = cache.stats();
    assert_eq!((stats.inserts, stats.misses), (0, 1), "nothing was written");
}

#[test]
fn build_errors_are_specific() {
    let missing = Client::builder().remote(MemoryStore::default()).build();
    assert!(
        matches!(missing, Err(BuildError::MissingKeyRing)),
        "{missing:?}"
    );
    let client = Client::builder()
        .build()
        .expect("no remote tier needs no ring");
    let zero_ttl = client.cache::<Thumbs>().ttl(Duration::ZERO).build();
    assert!(matches!(zero_ttl, Err(BuildError::TtlTooShort { .. })));
    let sub_ms = client
        .cache::<Thumbs>()
        .ttl(Duration::from_micros(999))
        .build();
    assert!(matches!(sub_ms, Err(BuildError::TtlTooShort { .. })));
    assert!(
        client
            .cache::<Thumbs>()
            .ttl(Duration::from_millis(1))
            .build()
            .is_ok()
    );
    let forever = client.cache::<Thumbs>().ttl(Duration::MAX).build();
    assert!(
        matches!(forever, Err(BuildError::TtlTooLong { .. })),
        "{forever:?}"
    );
    let skew = Client::builder()
        .clock_skew_allowance(Duration::from_secs(2 * 24 * 3600))
        .build();
    assert!(
        matches!(skew, Err(BuildError::SkewAllowanceTooLong { .. })),
        "{skew:?}"
    );
}

#[tokio::test]
async fn an_oversize_value_is_a_seal_error_and_stores_nothing() {
    let fixture = Fixture::new();
    let cache = fixture.cache_with_max_payload(16);
    let mine = key(1, 2, 3);
    let result = cache.insert(&mine, Bytes::from(vec![1; 17])).await;
    assert!(
        matches!(
            result,
            Err(Error::Seal(SealError::PayloadTooLarge {
                len: 17,
                limit: 16
            }))
        ),
        "{result:?}"
    );
    assert_eq!(fixture.store.len(), 0);
    assert_eq!(cache.local().map(|local| local.len()), Some(0));
    assert_eq!(cache.get(&mine).await, None);

    cache
        .insert(&mine, Bytes::from(vec![1; 16]))
        .await
        .expect("a value at the limit");
    assert_eq!(cache.get(&mine).await, Some(Bytes::from(vec![1; 16])));
}

#[tokio::test]
async fn ttl_expires_in_both_tiers() {
    for local_capacity in [10_000, 0] {
        let fixture = Fixture::new();
        let cache: Cache<Thumbs> = fixture
            .client
            .cache()
            .local_capacity(local_capacity)
            .ttl(Duration::from_secs(1))
            .build()
            .expect("valid cache");
        let mine = key(1, 2, 3);
        cache
            .insert(&mine, Bytes::from_static(b"jpeg"))
            .await
            .expect("insert");
        // Both tiers keep it for the TTL less the expiry margin (the 1 s clock-skew allowance,
        // at most a quarter of the TTL: 250 ms), then drop it: a miss, not a refusal.
        fixture.clock.advance(Duration::from_millis(749));
        assert_eq!(cache.get(&mine).await, Some(Bytes::from_static(b"jpeg")));
        fixture.clock.advance(Duration::from_millis(1));
        assert_eq!(
            cache.get(&mine).await,
            None,
            "local capacity {local_capacity}"
        );
        assert_eq!(fixture.stored(&mine).await, None, "the store kept it");
        assert_eq!(cache.stats().freshness_misses.total(), 0, "a refusal");
        let stats = cache.stats();
        assert_eq!(stats.misses, 1);
        assert_eq!(
            stats.violations.total(),
            0,
            "expiry by TTL is not a violation"
        );
        if local_capacity > 0 {
            assert_eq!((stats.hits_local, stats.expirations), (1, 1));
        } else {
            assert_eq!((stats.hits_remote, stats.hits_local), (1, 0));
        }
    }
}

#[tokio::test]
async fn a_promoted_value_keeps_its_envelope_expiry() {
    let fixture = Fixture::new();
    let writer = fixture.cache(); // 1 s TTL
    let reader: Cache<Thumbs> = fixture
        .peer()
        .client
        .cache()
        .ttl(Duration::from_secs(3_600))
        .build()
        .expect("valid cache");
    let mine = key(1, 2, 3);
    writer
        .insert(&mine, Bytes::from_static(b"jpeg"))
        .await
        .expect("insert");
    fixture.clock.advance(Duration::from_millis(500));
    assert_eq!(reader.get(&mine).await, Some(Bytes::from_static(b"jpeg")));
    fixture.clock.advance(Duration::from_millis(500));
    assert_eq!(reader.get(&mine).await, None, "outlived the writer's TTL");
    assert_eq!(reader.stats().hits_local, 0);
}

/// A store that drops the TTL it is given, like a misconfigured or restored server.
struct IgnoresTtl(Arc<MemoryStore>);

impl RemoteStore for IgnoresTtl {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Bytes>> {
        self.0.get(key)
    }
    fn set<'a>(
        &'a self,
        key: &'a [u8],
        value: Bytes,
        _ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()> {
        self.0.set(key, value, None)
    }
    fn delete<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, ()> {
        self.0.delete(key)
    }
}

#[tokio::test]
async fn the_envelope_expires_values_a_store_keeps_too_long() {
    let fixture = Fixture::behind(|store| Arc::new(IgnoresTtl(store)));
    let cache = fixture.remote_only_cache();
    let mine = key(1, 2, 3);
    cache
        .insert(&mine, Bytes::from_static(b"jpeg"))
        .await
        .expect("insert");
    // Within the TTL (1 s) the value opens, even past the time the store was told to keep it
    // (the TTL less the expiry margin, a quarter of the TTL here).
    fixture.clock.advance(Duration::from_millis(900));
    assert_eq!(cache.get(&mine).await, Some(Bytes::from_static(b"jpeg")));
    // At the TTL the envelope itself refuses it, as a freshness miss.
    fixture.clock.advance(Duration::from_millis(100));
    assert!(fixture.stored(&mine).await.is_some(), "the store kept it");
    assert_eq!(cache.get(&mine).await, None);
    let stats = cache.stats();
    assert_eq!(stats.freshness_misses.get(FreshnessKind::Expired), 1);
    assert_eq!(stats.violations.total(), 0, "expiry is not a violation");
    assert!(fixture.reports().is_empty(), "expiry is not reported");
}

/// A transport that flips the last byte of every reply while `spoil` is set; deletes go through.
struct SpoilsReplies {
    inner: Arc<MemoryStore>,
    spoil: Arc<AtomicBool>,
}

impl RemoteStore for SpoilsReplies {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            let value = self.inner.get(key).await?;
            Ok(value.map(|value| match self.spoil.load(Ordering::Relaxed) {
                true => {
                    let mut spoiled = value.to_vec();
                    if let Some(last) = spoiled.last_mut() {
                        *last ^= 1;
                    }
                    Bytes::from(spoiled)
                }
                false => value,
            }))
        })
    }
    fn set<'a>(
        &'a self,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()> {
        self.inner.set(key, value, ttl)
    }
    fn delete<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, ()> {
        self.inner.delete(key)
    }
    fn delete_if<'a>(&'a self, key: &'a [u8], value: &'a Bytes) -> StoreFuture<'a, ()> {
        self.inner.delete_if(key, value)
    }
}

/// A value spoiled on its way is refused, but the good value the store holds is not deleted:
/// once the transport is sound again, it is served without a reload.
#[tokio::test]
async fn a_value_spoiled_in_transit_is_refused_and_the_stored_one_kept() {
    let spoil = Arc::new(AtomicBool::new(false));
    let fixture = Fixture::behind(|inner| {
        Arc::new(SpoilsReplies {
            inner,
            spoil: spoil.clone(),
        })
    });
    let cache = fixture.remote_only_cache();
    let mine = key(1, 2, 3);
    cache
        .insert(&mine, Bytes::from_static(b"jpeg"))
        .await
        .expect("insert");
    let stored = fixture.stored(&mine).await;
    spoil.store(true, Ordering::Relaxed);
    assert_eq!(cache.get(&mine).await, None);
    assert_eq!(cache.stats().violations.get(ViolationKind::BadTag), 1);
    assert_eq!(fixture.reports().len(), 1);
    assert_eq!(
        fixture.stored(&mine).await,
        stored,
        "the stored value was deleted"
    );
    spoil.store(false, Ordering::Relaxed);
    assert_eq!(cache.get(&mine).await, Some(Bytes::from_static(b"jpeg")));
}

#[tokio::test]
async fn invalidate_removes_from_both_tiers() {
    let fixture = Fixture::new();
    let cache = fixture.cache();
    let (mine, neighbour) = (key(1, 2, 3), key(1, 2, 4));
    for k in [&mine, &neighbour] {
        cache
            .insert(k, Bytes::from_static(b"jpeg"))
            .await
            .expect("insert");
    }
    cache.invalidate(&mine).await.expect("invalidate");
    assert_eq!(fixture.stored(&mine).await, None);
    assert_eq!(cache.get(&mine).await, None);
    assert_eq!(
        cache.get(&neighbour).await,
        Some(Bytes::from_static(b"jpeg"))
    );
}

#[tokio::test]
async fn a_failing_store_means_misses_and_write_errors_never_wrong_values() {
    let fixture = Fixture::behind(|_| Arc::new(DownStore));
    let cache = fixture.remote_only_cache();
    let mine = key(1, 2, 3);
    let result = cache.insert(&mine, Bytes::from_static(b"jpeg")).await;
    assert!(
        matches!(result, Err(Error::Remote(StoreError::Unavailable(_)))),
        "{result:?}"
    );
    assert_eq!(cache.get(&mine).await, None);
    let stats = cache.stats();
    assert_eq!((stats.remote_errors, stats.misses), (2, 1));
    assert_eq!(stats.violations.total(), 0);
}

#[tokio::test]
async fn garbage_that_starts_like_an_envelope_is_still_refused() {
    let fixture = Fixture::new();
    let cache = fixture.cache();
    let mine = key(1, 2, 3);
    let mut fake = MAGIC.to_vec();
    fake.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 1]);
    fake.resize(300, 0xaa);
    fixture.poison(&mine, Bytes::from(fake)).await;
    assert_eq!(cache.get(&mine).await, None);
    assert_eq!(cache.stats().violations.get(ViolationKind::Malformed), 1);
    assert_eq!(fixture.stored(&mine).await, None);
}

/// A namespace sealed encrypted stores ciphertext, reads its own values back in either form,
/// and a client of another namespace setting reads them too.
#[tokio::test]
async fn encrypted_namespaces_store_ciphertext_and_read_both_forms() {
    let fixture = Fixture::new();
    let encrypted: Cache<Thumbs> = fixture
        .client
        .cache()
        .ttl(Duration::from_secs(60))
        .local_capacity(0)
        .sealing(Sealing::Encrypted)
        .build()
        .expect("valid cache");
    let (mine, plain) = (key(1, 2, 3), key(1, 2, 4));
    let secret = Bytes::from_static(b"a jpeg of the living room");
    encrypted
        .insert(&mine, secret.clone())
        .await
        .expect("insert");
    let stored = fixture
        .store
        .get(&mine.encode())
        .await
        .expect("store")
        .expect("stored");
    assert_eq!((stored[4], stored[5]), (2, 1), "format 2, encrypted");
    assert!(!stored.windows(secret.len()).any(|w| w == &secret[..]));
    // A value written authenticated before the namespace switched still reads.
    fixture
        .poison(&plain, seal(&plain, b"older", START_MS + 60_000, &ring()))
        .await;
    assert_eq!(
        encrypted.get(&plain).await,
        Some(Bytes::from_static(b"older"))
    );
    // Another instance whose namespace is not (yet) encrypted reads the encrypted value.
    let peer = fixture.peer();
    let authenticated: Cache<Thumbs> = peer.remote_only_cache();
    assert_eq!(authenticated.get(&mine).await, Some(secret));
    assert!(fixture.reports().is_empty() && peer.reports().is_empty());
}
