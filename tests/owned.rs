//! `Owned` values: a namespace that opts in with `Namespace::value_owner` has every write refuse
//! a value of another owner than the key's (`Cache::insert`, `LocalCache::insert`/`try_insert`,
//! `get_or_load`'s fill, for every caller of the load), and every read check the value's owner
//! again after decoding (remote) or on the hit (in-process): a mismatch is an `OwnerMismatch`
//! violation with the value's owner as `found`, counted, reported, deleted, and a miss.

mod support;

use bytes::{BufMut, Bytes, BytesMut};
use scoped_cache::envelope::Envelope;
use scoped_cache::store::RemoteStore;
use scoped_cache::{
    Cache, Codec, CodecError, Error, LoadError, LocalCache, Namespace, Owned, Owner, Tier,
    Violation, ViolationKind, ViolationReport,
};
use std::sync::atomic::{AtomicBool, Ordering};
use support::fixture::{Fixture, Reports, Thumbs, key, key_in, owner, ring};

/// A thumbnail that names its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Photo {
    tenant: u64,
    device: u64,
    jpeg: Bytes,
}

impl Owned for Photo {
    fn owner(&self) -> Owner {
        owner(self.tenant, self.device)
    }
}

/// Tenant and device as two big-endian u64s, then the jpeg bytes.
struct PhotoCodec;

impl Codec<Photo> for PhotoCodec {
    fn encode(photo: &Photo) -> Result<Bytes, CodecError> {
        let mut out = BytesMut::with_capacity(16 + photo.jpeg.len());
        out.put_u64(photo.tenant);
        out.put_u64(photo.device);
        out.put_slice(&photo.jpeg);
        Ok(out.freeze())
    }

    fn decode(payload: Bytes) -> Result<Photo, CodecError> {
        let (Some(tenant), Some(device)) = (payload.get(..8), payload.get(8..16)) else {
            return Err(CodecError("photo payload shorter than 16 bytes".into()));
        };
        Ok(Photo {
            tenant: u64::from_be_bytes(tenant.try_into().expect("8 bytes")),
            device: u64::from_be_bytes(device.try_into().expect("8 bytes")),
            jpeg: payload.slice(16..),
        })
    }
}

/// Opts in to the owner check.
struct Photos;
impl Namespace for Photos {
    const NAME: &'static str = "photo";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = Photo;
    type Codec = PhotoCodec;
    fn value_owner(photo: &Photo) -> Option<Owner> {
        Some(photo.owner())
    }
}

/// Checks owners only while `CHECKING` is set: lets a test plant a mismatched in-process entry
/// (as a bug would) and then read it with the check on. Used by one test only.
static CHECKING: AtomicBool = AtomicBool::new(false);
struct ToggledPhotos;
impl Namespace for ToggledPhotos {
    const NAME: &'static str = "photo";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = Photo;
    type Codec = PhotoCodec;
    fn value_owner(photo: &Photo) -> Option<Owner> {
        CHECKING.load(Ordering::SeqCst).then(|| photo.owner())
    }
}

fn photo(tenant: u64, device: u64) -> Photo {
    Photo {
        tenant,
        device,
        jpeg: Bytes::from(format!("jpeg of {tenant}/{device}")),
    }
}

#[tokio::test]
async fn cache_insert_refuses_a_value_of_another_owner_and_stores_nothing() {
    let fixture = Fixture::new();
    let photos = fixture.cache::<Photos>();
    let mine = key_in::<Photos>(1, 2, 3);

    for (case, theirs) in [
        ("another tenant", photo(9, 2)),
        ("another device", photo(1, 9)),
        ("tenant and device swapped", photo(2, 1)),
    ] {
        let refused = photos.insert(&mine, theirs.clone()).await;
        match refused {
            Err(Error::OwnerMismatch { expected, found }) => {
                assert_eq!(expected, owner(1, 2), "{case}: expected owner");
                assert_eq!(found, theirs.owner(), "{case}: found owner");
            }
            other => panic!("{case}: insert returned {other:?}"),
        }
        assert_eq!(photos.get(&mine).await, None, "{case}: nothing served");
        assert!(fixture.store.is_empty(), "{case}: nothing stored remotely");
        assert_eq!(
            photos.local().map(LocalCache::len),
            Some(0),
            "{case}: nothing stored in-process"
        );
    }
    let error = photos
        .insert(&mine, photo(9, 2))
        .await
        .expect_err("refused");
    assert!(
        error.to_string().contains("nothing was stored"),
        "the message says what happened: {error}"
    );

    photos.insert(&mine, photo(1, 2)).await.expect("own value");
    assert_eq!(photos.get(&mine).await, Some(photo(1, 2)));
    let stats = photos.stats();
    assert_eq!(stats.inserts, 1, "only the owner's value was inserted");
    assert_eq!(
        stats.violations.total(),
        0,
        "a refused write is not a violation"
    );
    assert!(fixture.reports().is_empty());
}

#[tokio::test]
async fn a_refused_insert_is_an_error_even_when_the_policy_bypasses_the_cache() {
    let fixture = Fixture::new();
    let photos = fixture.bypass_cache::<Photos>();
    let mine = key_in::<Photos>(1, 2, 3);
    assert!(matches!(
        photos.insert(&mine, photo(2, 1)).await,
        Err(Error::OwnerMismatch { .. })
    ));
    photos.insert(&mine, photo(1, 2)).await.expect("own value");
}

#[test]
fn local_insert_refuses_a_value_of_another_owner() {
    let cache = LocalCache::<Photos>::new(100).expect("valid cache");
    let mine = key_in::<Photos>(1, 2, 3);

    assert!(
        !cache.insert(&mine, photo(2, 1)),
        "insert reports not stored"
    );
    assert!(
        !cache.insert_with_ttl(&mine, photo(9, 2), std::time::Duration::from_secs(60)),
        "insert_with_ttl reports not stored"
    );
    match cache.try_insert(&mine, photo(9, 9)) {
        Err(Error::OwnerMismatch { expected, found }) => {
            assert_eq!((expected, found), (owner(1, 2), owner(9, 9)));
        }
        other => panic!("try_insert returned {other:?}"),
    }
    assert!(cache.is_empty(), "nothing stored");
    assert_eq!(cache.get(&mine), None);

    assert!(cache.try_insert(&mine, photo(1, 2)).expect("own value"));
    assert_eq!(cache.get(&mine), Some(photo(1, 2)));
    assert_eq!(cache.stats().inserts, 1);
}

#[tokio::test]
async fn get_or_load_refuses_another_owners_loaded_value_for_every_caller() {
    let fixture = Fixture::new();
    let photos = fixture.cache::<Photos>();
    let mine = key_in::<Photos>(1, 2, 3);

    // A source of truth that answers with another owner's photo.
    let wrong = || async { Ok::<_, std::io::Error>(photo(2, 1)) };
    let (first, second) = tokio::join!(
        photos.get_or_load(&mine, wrong),
        photos.get_or_load(&mine, wrong)
    );
    for outcome in [first, second] {
        match outcome {
            Err(LoadError::OwnerMismatch { expected, found }) => {
                assert_eq!((expected, found), (owner(1, 2), owner(2, 1)));
            }
            other => panic!("get_or_load returned {other:?}"),
        }
    }
    assert_eq!(
        photos.get(&mine).await,
        None,
        "the wrong value was not cached"
    );
    assert!(fixture.store.is_empty());
    let stats = photos.stats();
    assert!(stats.loads >= 1);
    assert_eq!(stats.load_errors, stats.loads, "every such load failed");

    // Errors are not cached: a correct source is asked next time.
    let right = || async { Ok::<_, std::io::Error>(photo(1, 2)) };
    assert_eq!(
        photos.get_or_load(&mine, right).await.expect("loaded"),
        photo(1, 2)
    );
    assert_eq!(photos.get(&mine).await, Some(photo(1, 2)));
}

#[tokio::test]
async fn get_or_load_refuses_another_owners_value_under_bypass_too() {
    let fixture = Fixture::new();
    let photos = fixture.bypass_cache::<Photos>();
    let mine = key_in::<Photos>(1, 2, 3);
    let outcome = photos
        .get_or_load(&mine, || async { Ok::<_, std::io::Error>(photo(1, 9)) })
        .await;
    assert!(
        matches!(outcome, Err(LoadError::OwnerMismatch { .. })),
        "{outcome:?}"
    );
}

#[test]
fn local_get_or_load_refuses_another_owners_loaded_value() {
    let cache = LocalCache::<Photos>::new(100).expect("valid cache");
    let mine = key_in::<Photos>(1, 2, 3);
    let outcome = cache.get_or_load(&mine, || Ok::<_, std::io::Error>(photo(9, 2)));
    match outcome {
        Err(LoadError::OwnerMismatch { expected, found }) => {
            assert_eq!((expected, found), (owner(1, 2), owner(9, 2)));
        }
        other => panic!("get_or_load returned {other:?}"),
    }
    assert!(cache.is_empty());
    assert_eq!(cache.stats().load_errors, 1);
    let loaded = cache.get_or_load(&mine, || Ok::<_, std::io::Error>(photo(1, 2)));
    assert_eq!(loaded.expect("own value"), photo(1, 2));
}

#[tokio::test]
async fn a_remote_value_naming_another_owner_is_refused_after_decoding() {
    let fixture = Fixture::new();
    let photos = fixture.cache::<Photos>();
    let mine = key_in::<Photos>(1, 2, 3);
    // An authentic envelope for exactly this key (a writer that skipped the check, or one that
    // does not opt in) whose payload is another owner's photo.
    let payload = PhotoCodec::encode(&photo(2, 1)).expect("encodes");
    let sealed = Envelope::default()
        .seal(&mine, &payload, 0, u64::MAX, &ring())
        .expect("seals");
    fixture
        .store
        .set(&mine.encode(), sealed, None)
        .await
        .expect("store write");

    assert_eq!(photos.get(&mine).await, None, "refused: a miss");
    let stats = photos.stats();
    assert_eq!(stats.violations.get(ViolationKind::OwnerMismatch), 1);
    assert_eq!(stats.violations.total(), 1);
    assert_eq!(stats.misses, 1);
    assert_one_report(&fixture.reports(), Tier::Remote, owner(1, 2), owner(2, 1));
    assert!(fixture.store.is_empty(), "deleted from the remote tier");
    assert_eq!(
        photos.local().map(LocalCache::len),
        Some(0),
        "not promoted to the in-process tier"
    );

    // `get_or_load` treats it as a miss and loads the owner's value.
    let right = || async { Ok::<_, std::io::Error>(photo(1, 2)) };
    assert_eq!(
        photos.get_or_load(&mine, right).await.expect("loaded"),
        photo(1, 2)
    );
}

#[tokio::test]
async fn namespaces_that_do_not_opt_in_are_not_checked() {
    let fixture = Fixture::new();
    let thumbs: Cache<Thumbs> = fixture.client.cache().build().expect("valid cache");
    let mine = key(1, 2, 3);
    thumbs
        .insert(&mine, Bytes::from_static(b"anything"))
        .await
        .expect("no owner to check");
    assert_eq!(
        thumbs.get(&mine).await,
        Some(Bytes::from_static(b"anything"))
    );
}

#[test]
fn an_in_process_entry_naming_another_owner_is_refused_on_read() {
    let reports = Reports::default();
    let cache = LocalCache::<ToggledPhotos>::builder()
        .max_entries(100)
        .on_violation(reports.sink())
        .build()
        .expect("valid cache");
    let mine = key_in::<ToggledPhotos>(1, 2, 3);

    // Planted while the check is off, as a bug on the write path would.
    CHECKING.store(false, Ordering::SeqCst);
    assert!(cache.insert(&mine, photo(2, 1)));
    CHECKING.store(true, Ordering::SeqCst);

    assert_eq!(cache.get(&mine), None, "refused: a miss");
    let stats = cache.stats();
    assert_eq!(stats.violations.get(ViolationKind::OwnerMismatch), 1);
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.hits_local, 0);
    assert!(cache.is_empty(), "deleted from the in-process tier");
    assert_one_report(&reports.all(), Tier::Local, owner(1, 2), owner(2, 1));
}

/// Checks that `reports` holds exactly one owner-mismatch report of `tier`, with both owners.
fn assert_one_report(reports: &[ViolationReport], tier: Tier, expected: Owner, found: Owner) {
    let [report] = reports else {
        panic!("expected one report, got {reports:?}");
    };
    assert_eq!(report.namespace, Photos::NAME);
    assert_eq!(report.tier, tier);
    assert_eq!(report.expected, expected);
    assert_eq!(
        report.violation,
        Violation::OwnerMismatch { expected, found }
    );
}
