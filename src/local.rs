//! `LocalCache`: the verified, bounded, in-process tier with typed values.

use crate::bounded::{BoundedMap, Lookup, Weigher};
use crate::clock::{Clock, NEVER, deadline, validate_ttl};
use crate::error::{BuildError, Error, LoadError};
use crate::found::{Found, FreshFor};
use crate::id::{DeviceId, TenantId};
use crate::key::{Key, Owner};
use crate::load::{self, LoadFlights, Wait};
use crate::namespace::Namespace;
use crate::observe;
use crate::owned;
use crate::refusal::{Disposal, Refusals};
use crate::stats::{Event, Stats};
use crate::violation::{Tier, Violation, ViolationReport};
use nohash_hasher::BuildNoHashHasher;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

/// Where the map files an entry: a 64-bit hash of its key under the cache's (by default
/// randomly seeded) hasher. The map compares only fingerprints; the key the entry carries decides
/// whether a hit is the requested key's.
type Fingerprint = u64;

/// The map under a `LocalCache`: entries filed by fingerprint, which is already a hash, so the
/// map uses it as its own hash instead of hashing it again.
type EntryMap<N> = BoundedMap<Fingerprint, Entry<N>, BuildNoHashHasher<Fingerprint>>;

/// An entry remembers the key it was inserted for, apart from the fingerprint the map files it by.
/// In this order (`repr(C)`): the key and value a hit reads, then the time it reads only for a
/// cache that keeps stale values.
#[repr(C)]
struct Entry<N: Namespace> {
    key: Key<N>,
    value: N::Value,
    /// When the value was written: what its freshness is measured from.
    created_ms: u64,
}

/// A bounded, concurrent, in-process cache whose every hit is checked against the requested key.
///
/// Each entry carries the owner and item it was inserted for; a read compares them with the key
/// it asked for, separately from the map's own hashing and equality. A mismatch (a bug in a
/// hasher, in the map, or in code that should never run) is reported as a [`Violation`], the
/// entry is removed, and the read is a miss. No MAC is computed in-process.
///
/// The map files entries by a 64-bit fingerprint of the key (its hash under the cache's hasher,
/// aHash with a random seed by default) and compares only fingerprints; the entry's own key is
/// the one full comparison on a hit. Two keys whose fingerprints collide (about 2^-64 per pair)
/// displace each other's entries, and a read of one that finds the other's entry is a miss:
/// the entry's key has the requested fingerprint, so the map did its job and nothing is
/// reported. An entry filed under another fingerprint is the map's fault, and a violation.
/// With a [`hasher`](LocalCacheBuilder::hasher) whose output callers can predict, they could
/// make keys collide on purpose: more misses, never another key's value.
///
/// Capacity is in entries, or in weight units with a weigher. Eviction is S3-FIFO, which keeps
/// the frequently read working set when a scan of one-off keys passes through. Expired entries
/// are never returned; they are dropped when read or when eviction reaches them.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use scoped_cache::{DeviceId, Key, LocalCache, Namespace, RawBytes, TenantId};
///
/// struct Thumbnails;
/// impl Namespace for Thumbnails {
///     const NAME: &'static str = "thumb";
///     const SCHEMA: u16 = 1;
///     type Item = u64;
///     type Value = Bytes;
///     type Codec = RawBytes;
/// }
///
/// let cache = LocalCache::<Thumbnails>::new(10_000)?;
/// let key = Key::new(TenantId::new("user-42")?, DeviceId::new("cam-7")?, 9);
/// cache.insert(&key, Bytes::from_static(b"jpeg"));
/// assert_eq!(cache.get(&key), Some(Bytes::from_static(b"jpeg")));
///
/// let other_user = Key::new(TenantId::new("user-43")?, DeviceId::new("cam-7")?, 9);
/// assert_eq!(cache.get(&other_user), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LocalCache<N: Namespace, S = ahash::RandomState> {
    map: EntryMap<N>,
    /// Computes keys' fingerprints.
    hasher: S,
    ttl: Option<Duration>,
    /// How long an entry is fresh; past it and before its deadline it is only kept for a
    /// [`Cache`](crate::Cache) that serves stale values when its loader fails.
    fresh_for: FreshFor,
    refusals: Refusals,
    flights: crate::sync::Arc<LoadFlights<N>>,
    #[cfg(feature = "testing")]
    chaos: Option<LookupChaos<N>>,
}

/// A fault for tests: given the requested key, the key whose entry the map should hand back
/// instead (`None`: no fault). Simulates a map or hasher bug to prove in-process verification.
/// Set with [`LocalCacheBuilder::lookup_chaos`] (feature `testing`), which has an example.
#[cfg(feature = "testing")]
pub type LookupChaos<N> = Arc<dyn Fn(&Key<N>) -> Option<Key<N>> + Send + Sync>;

impl<N: Namespace> LocalCache<N> {
    /// A cache of at most `max_entries` entries, no TTL, default hasher.
    ///
    /// # Errors
    ///
    /// [`BuildError::ZeroCapacity`] when `max_entries` is 0.
    pub fn new(max_entries: u64) -> Result<Self, BuildError> {
        Self::builder().max_entries(max_entries).build()
    }

    /// A builder with the default hasher, 10,000 entries and no TTL.
    pub fn builder() -> LocalCacheBuilder<N> {
        LocalCacheBuilder {
            capacity: 10_000,
            weigher: None,
            ttl: None,
            fresh_for: FreshFor::ALWAYS,
            clock: Clock::system(),
            refusals: Refusals::new(N::NAME, None),
            hasher: ahash::RandomState::new(),
            #[cfg(feature = "testing")]
            chaos: None,
        }
    }
}

impl<N: Namespace, S: BuildHasher + Clone> LocalCache<N, S> {
    /// The value for `key`, if present, unexpired, and stored for exactly this key.
    ///
    /// An entry the map hands back for another owner or item (a hasher or map bug) is a
    /// [`Violation`]: counted, reported to the violation sink, the key removed, and read as a miss.
    ///
    /// # Examples
    ///
    /// ```
    /// # use scoped_cache::{DeviceId, Key, LocalCache, Namespace, RawBytes, TenantId};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let cache = LocalCache::<Thumbnails>::new(1_000)?;
    /// let key = Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    /// assert_eq!(cache.get(&key), None);
    /// cache.insert(&key, bytes::Bytes::from_static(b"jpeg"));
    /// assert_eq!(cache.get(&key).as_deref(), Some(&b"jpeg"[..]));
    /// let same_item_other_device = Key::new(TenantId::from_u64(42), DeviceId::from_u64(8), 9);
    /// assert_eq!(cache.get(&same_item_other_device), None);
    /// assert_eq!((cache.stats().hits_local, cache.stats().misses), (1, 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    // Inlined into the caller with `lookup` and `BoundedMap::get_with`, so that a hit costs what
    // a plain `DashMap::get` does plus the checks (`.ci/icount`).
    #[inline]
    pub fn get(&self, key: &Key<N>) -> Option<N::Value> {
        let lookup = self.lookup(key, |entry| match self.is_fresh(entry) {
            true => Ok(entry.value.clone()),
            false => Err(EntryMismatch::Stale),
        });
        let value = match lookup {
            Lookup::Hit(Ok(value)) => {
                self.map.counters().record(Event::HitLocal);
                Some(value)
            }
            Lookup::Hit(Err(mismatch)) => self.mismatched(key, mismatch),
            Lookup::Miss => {
                self.map.counters().record(Event::Miss);
                None
            }
        };
        observe::lookup(N::NAME, Tier::Local, value.is_some());
        value
    }

    /// The verified entry for `key`, fresh or stale (a stale one is counted as a miss).
    pub(crate) fn find(&self, key: &Key<N>) -> Option<Found<N::Value>> {
        let lookup = self.lookup(key, |entry| {
            Ok(Found {
                value: entry.value.clone(),
                created_ms: entry.created_ms,
                fresh: self.is_fresh(entry),
            })
        });
        let found = match lookup {
            Lookup::Hit(Ok(found)) => Some(found),
            Lookup::Hit(Err(mismatch)) => self.mismatched(key, mismatch),
            Lookup::Miss => None,
        };
        let fresh = found.as_ref().is_some_and(|found| found.fresh);
        let event = if fresh { Event::HitLocal } else { Event::Miss };
        self.map.counters().record(event);
        observe::lookup(N::NAME, Tier::Local, fresh);
        found
    }

    /// Whether an entry is within its fresh time (always, unless the cache keeps stale values).
    #[inline]
    fn is_fresh(&self, entry: &Entry<N>) -> bool {
        self.fresh_for
            .is_fresh(entry.created_ms, || self.map.clock().expiry_now_ms())
    }

    /// Under the test fault: the fingerprint of the key `chaos` names instead of `key`, if any.
    #[cfg(feature = "testing")]
    #[cold]
    #[inline(never)]
    fn redirected(&self, key: &Key<N>, chaos: &LookupChaos<N>) -> Option<Fingerprint> {
        chaos(key).map(|redirected| self.fingerprint(&redirected))
    }

    /// Reads the entry the map files under `key`'s fingerprint through `read`, once it is
    /// verified against `key`.
    #[inline]
    fn lookup<R>(
        &self,
        key: &Key<N>,
        read: impl FnOnce(&Entry<N>) -> Result<R, EntryMismatch>,
    ) -> Lookup<Result<R, EntryMismatch>> {
        let fingerprint = self.fingerprint(key);
        // The test fault, when set, only changes where the map looks, out of line, so that a
        // `testing` build (every bench and test of this crate) inlines the lookup as the
        // default build does and pays one branch per hit for the hook.
        #[cfg(feature = "testing")]
        let fingerprint = match &self.chaos {
            Some(chaos) => self.redirected(key, chaos).unwrap_or(fingerprint),
            None => fingerprint,
        };
        // Verified against `key`, whatever entry the map hands back. Refusals are built out of
        // line, so the hit path moves only the value.
        self.map.get_with(&fingerprint, |entry| {
            if entry.key.owner() != key.owner() || entry.key.item() != key.item() {
                return Err(self.refusal(key, entry));
            }
            if let Some(found) = owned::mismatch::<N>(key.owner(), &entry.value) {
                return Err(EntryMismatch::Violation(value_owner_mismatch(key, found)));
            }
            read(entry)
        })
    }

    /// Removes every entry of `tenant` (of its `device` only, when given); returns how many.
    /// Walks the whole tier.
    pub(crate) fn remove_owner(&self, tenant: &TenantId, device: Option<&DeviceId>) -> usize {
        self.map.remove_matching(|entry| {
            let owner = entry.key.owner();
            owner.tenant == *tenant && device.is_none_or(|device| owner.device == *device)
        })
    }

    /// A lookup that found an entry it cannot use: a violation is refused; all are misses.
    #[cold]
    #[inline(never)]
    fn mismatched<R>(&self, key: &Key<N>, mismatch: EntryMismatch) -> Option<R> {
        match mismatch {
            EntryMismatch::Violation(violation) => self.refuse(key, *violation),
            EntryMismatch::Collision | EntryMismatch::Stale => {}
        }
        self.map.counters().record(Event::Miss);
        None
    }

    /// The value for `key`, or else the value `load` returns, which is then inserted.
    ///
    /// Concurrent calls for the same full key run one `load`; the other callers block their
    /// thread on a condition variable until it finishes, and share its outcome. Do not call it
    /// from async code, where waiting would block an executor thread: use
    /// [`Cache::get_or_load`](crate::Cache::get_or_load), whose waiters yield. A loader error is
    /// shared with the callers waiting at that moment and is not cached. If the loading thread
    /// panics, a waiting caller runs its own loader. A blocking loader cannot be timed out: bound
    /// it yourself.
    ///
    /// # Examples
    ///
    /// ```
    /// # use scoped_cache::{DeviceId, Key, LocalCache, Namespace, RawBytes, TenantId};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let cache = LocalCache::<Thumbnails>::new(1_000)?;
    /// let key = Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    /// let value = cache.get_or_load(&key, || Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"jpeg")))?;
    /// assert_eq!(value, "jpeg");
    /// assert_eq!(cache.get(&key), Some(value));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`LoadError::Loader`] with the loader's error; [`LoadError::OwnerMismatch`] when the
    /// namespace checks value owners ([`Owned`](crate::Owned)) and the loader returned another
    /// owner's value (not cached, not returned).
    ///
    /// # Panics
    ///
    /// A panic in `load` propagates to the caller that ran it. Nothing is cached, and the load
    /// is abandoned: a caller waiting for it runs its own loader, and the next call loads again.
    ///
    /// ```
    /// # use scoped_cache::{DeviceId, Key, LocalCache, Namespace, RawBytes, TenantId};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let cache = LocalCache::<Thumbnails>::new(1_000)?;
    /// let key = Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    /// let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
    ///     cache.get_or_load(&key, || -> Result<bytes::Bytes, std::io::Error> { panic!("loader bug") })
    /// }));
    /// assert!(panicked.is_err());
    /// let value = cache.get_or_load(&key, || Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"jpeg")))?;
    /// assert_eq!(value, "jpeg"); // not stuck behind the abandoned load
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_or_load<E>(
        &self,
        key: &Key<N>,
        load: impl FnOnce() -> Result<N::Value, E>,
    ) -> Result<N::Value, LoadError>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let ticket = self.flights.ticket(key);
        if let Some(value) = self.get(key) {
            return Ok(value);
        }
        let load = || async { load().map_err(|error| LoadError::Loader(Arc::from(error.into()))) };
        let store = |value| {
            self.insert(key, value);
            std::future::ready(())
        };
        // Nothing in it awaits anything but the blocking wait, the loader and the insert, all
        // synchronous: `block_on` only drives it on this thread.
        let (outcome, _) = pollster::block_on(load::get_or_load(
            &self.flights,
            self.map.counters(),
            None,
            key,
            ticket,
            Wait::Block,
            || std::future::ready(self.get(key)),
            load,
            store,
        ));
        outcome
    }

    /// Stores `value` for `key`, replacing any previous value, with the cache's TTL.
    /// Evicts other entries if the cache is full. Returns `false` when nothing was stored: the
    /// entry alone exceeds the capacity, or the namespace checks value owners
    /// ([`Owned`](crate::Owned)) and `value` names another owner than `key`. Use
    /// [`try_insert`](Self::try_insert) to tell these apart.
    ///
    /// # Examples
    ///
    /// ```
    /// # use scoped_cache::{DeviceId, Key, LocalCache, Namespace, RawBytes, TenantId};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let cache = LocalCache::<Thumbnails>::new(1_000)?;
    /// let key = Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    /// assert!(cache.insert(&key, bytes::Bytes::from_static(b"v1")));
    /// assert!(cache.insert(&key, bytes::Bytes::from_static(b"v2"))); // replaces
    /// assert_eq!(cache.get(&key).as_deref(), Some(&b"v2"[..]));
    /// assert_eq!((cache.len(), cache.stats().inserts), (1, 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn insert(&self, key: &Key<N>, value: N::Value) -> bool {
        self.try_insert(key, value).unwrap_or(false)
    }

    /// Like [`LocalCache::insert`], with an error for a value of another owner.
    ///
    /// Returns `Ok(true)` when stored, `Ok(false)` when the entry alone exceeds the capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// # use scoped_cache::{DeviceId, Key, LocalCache, Namespace, RawBytes, TenantId};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let cache = LocalCache::<Thumbnails>::new(1_000)?;
    /// let key = Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    /// assert!(cache.try_insert(&key, bytes::Bytes::from_static(b"jpeg"))?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::OwnerMismatch`] when the namespace checks value owners and `value` names another
    /// owner than `key` (nothing is stored); no other error.
    pub fn try_insert(&self, key: &Key<N>, value: N::Value) -> Result<bool, Error> {
        owned::check_write(key, &value)?;
        // Without a TTL the entry never expires, and reading the clock was ~10% of an insert.
        let (created_ms, expires_ms) = match self.ttl {
            None => (0, NEVER),
            ttl => {
                let now_ms = self.map.clock().now_ms();
                (now_ms, deadline(now_ms, ttl))
            }
        };
        Ok(self.insert_until(key, value, created_ms, expires_ms))
    }

    /// Like [`LocalCache::insert`], with this entry's own TTL (instead of the cache's).
    ///
    /// # Examples
    ///
    /// ```
    /// # use scoped_cache::{DeviceId, Key, LocalCache, ManualClock, Namespace, RawBytes, TenantId};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// use std::time::Duration;
    /// let clock = ManualClock::new(1_700_000_000_000);
    /// let cache = LocalCache::<Thumbnails>::builder()
    ///     .ttl(Duration::from_secs(600))
    ///     .clock(clock.clock())
    ///     .build()?;
    /// let key = Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    /// assert!(cache.insert_with_ttl(&key, bytes::Bytes::from_static(b"jpeg"), Duration::from_secs(1)));
    /// assert!(cache.get(&key).is_some());
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(cache.get(&key), None); // expired after its own second, not the cache's 10 minutes
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn insert_with_ttl(&self, key: &Key<N>, value: N::Value, ttl: Duration) -> bool {
        if owned::check_write(key, &value).is_err() {
            return false;
        }
        let now_ms = self.map.clock().now_ms();
        self.insert_until(key, value, now_ms, deadline(now_ms, Some(ttl)))
    }

    /// Stores `value`, written at `created_ms`, until `expires_ms` (ms since the Unix epoch).
    pub(crate) fn insert_until(
        &self,
        key: &Key<N>,
        value: N::Value,
        created_ms: u64,
        expires_ms: u64,
    ) -> bool {
        let entry = Entry {
            key: key.clone(),
            value,
            created_ms,
        };
        self.map.insert(self.fingerprint(key), entry, expires_ms)
    }

    /// The map's key for `key`.
    #[inline]
    fn fingerprint(&self, key: &Key<N>) -> Fingerprint {
        self.hasher.hash_one(key)
    }

    /// Removes the entry for `key`; returns whether there was one.
    ///
    /// It does not stop a [`get_or_load`](Self::get_or_load) already running for `key` from
    /// inserting the value it loaded afterwards.
    ///
    /// # Examples
    ///
    /// ```
    /// # use scoped_cache::{DeviceId, Key, LocalCache, Namespace, RawBytes, TenantId};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let cache = LocalCache::<Thumbnails>::new(1_000)?;
    /// let key = Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    /// cache.insert(&key, bytes::Bytes::from_static(b"jpeg"));
    /// assert!(cache.remove(&key));
    /// assert_eq!(cache.get(&key), None);
    /// assert!(!cache.remove(&key)); // nothing left to remove
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn remove(&self, key: &Key<N>) -> bool {
        // Only `key`'s own entry, not one of a key whose fingerprint collides with it.
        self.map
            .remove_if(&self.fingerprint(key), |entry| entry.key == *key)
    }

    /// Removes every entry.
    ///
    /// # Examples
    ///
    /// ```
    /// # use scoped_cache::{DeviceId, Key, LocalCache, Namespace, RawBytes, TenantId};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let cache = LocalCache::<Thumbnails>::new(1_000)?;
    /// for item in 0..3 {
    ///     cache.insert(&Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), item), bytes::Bytes::new());
    /// }
    /// cache.clear();
    /// assert!(cache.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear(&self) {
        self.map.clear();
    }

    /// The number of entries (expired ones not yet dropped included).
    ///
    /// # Examples
    ///
    /// ```
    /// # use scoped_cache::{DeviceId, Key, LocalCache, ManualClock, Namespace, RawBytes, TenantId};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// use std::time::Duration;
    /// let clock = ManualClock::new(1_700_000_000_000);
    /// let cache = LocalCache::<Thumbnails>::builder().clock(clock.clock()).build()?;
    /// let key = Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    /// cache.insert_with_ttl(&key, bytes::Bytes::new(), Duration::from_secs(1));
    /// assert_eq!(cache.len(), 1);
    /// clock.advance(Duration::from_secs(2));
    /// assert_eq!(cache.len(), 1); // expired, not dropped yet
    /// assert_eq!(cache.get(&key), None); // dropped when read
    /// assert_eq!(cache.len(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the cache holds no entries (expired ones not yet dropped count as entries).
    ///
    /// # Examples
    ///
    /// ```
    /// # use scoped_cache::{DeviceId, Key, LocalCache, Namespace, RawBytes, TenantId};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let cache = LocalCache::<Thumbnails>::new(1_000)?;
    /// let key = Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    /// assert!(cache.is_empty());
    /// cache.insert(&key, bytes::Bytes::new());
    /// assert!(!cache.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacity, in entries or weight units.
    ///
    /// # Examples
    ///
    /// ```
    /// # use scoped_cache::{DeviceId, Key, LocalCache, Namespace, RawBytes, TenantId};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// assert_eq!(LocalCache::<Thumbnails>::new(1_000)?.capacity(), 1_000);
    /// let by_bytes = LocalCache::<Thumbnails>::builder()
    ///     .max_entries(1 << 20) // a total weight, with a weigher
    ///     .weigher(|_key, value| value.len() as u64)
    ///     .build()?;
    /// assert_eq!(by_bytes.capacity(), 1 << 20);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn capacity(&self) -> u64 {
        self.map.capacity()
    }

    /// The cache's counters: `hits_local`, `misses`, `inserts`, `evictions`, `expirations`,
    /// `violations` (and `loads`, `load_errors`, `coalesced` of
    /// [`get_or_load`](Self::get_or_load)). A snapshot: it does not change as the cache is used.
    ///
    /// # Examples
    ///
    /// ```
    /// # use scoped_cache::{DeviceId, Key, LocalCache, Namespace, RawBytes, TenantId};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let cache = LocalCache::<Thumbnails>::new(1)?;
    /// let (first, second) = (
    ///     Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), 1),
    ///     Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), 2),
    /// );
    /// assert_eq!(cache.get(&first), None);
    /// cache.insert(&first, bytes::Bytes::new());
    /// assert!(cache.get(&first).is_some());
    /// cache.insert(&second, bytes::Bytes::new()); // over capacity: one entry is evicted
    /// let stats = cache.stats();
    /// assert_eq!((stats.hits_local, stats.misses, stats.inserts, stats.evictions), (1, 1, 2, 1));
    /// assert_eq!(stats.violations.total(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> Stats {
        self.map.counters().snapshot()
    }

    /// Why the entry the map handed back for `key` is another key's. Its key has the same
    /// fingerprint: two keys collided, the map did its job, and the read is a plain miss.
    /// Another fingerprint: the map handed back an entry filed elsewhere, a [`Violation`].
    #[cold]
    #[inline(never)]
    fn refusal(&self, key: &Key<N>, entry: &Entry<N>) -> EntryMismatch {
        if self.fingerprint(&entry.key) == self.fingerprint(key) {
            return EntryMismatch::Collision;
        }
        EntryMismatch::Violation(Box::new(if entry.key.owner() != key.owner() {
            Violation::OwnerMismatch {
                expected: key.owner().clone(),
                found: entry.key.owner().clone(),
            }
        } else {
            Violation::ItemMismatch
        }))
    }

    /// Out of line and cold: a refusal must not grow the hit path of [`LocalCache::get`].
    #[cold]
    #[inline(never)]
    fn refuse(&self, key: &Key<N>, violation: Violation) {
        let disposal =
            self.refusals
                .refuse(self.map.counters(), Tier::Local, key, violation.into());
        if disposal == Disposal::Delete {
            // What the map files under `key`'s fingerprint, whichever key its entry carries.
            self.map.remove(&self.fingerprint(key));
        }
    }
}

/// Why a read did not use the entry the map handed back.
enum EntryMismatch {
    /// The entry is another key's whose fingerprint is the same: a miss.
    Collision,
    /// The entry is not what `key` may read: counted, reported, removed.
    Violation(Box<Violation>),
    /// The entry is past its fresh time, kept only for a fail-safe answer: a miss.
    Stale,
}

/// The violation of an entry whose value names another owner than `key`'s ([`Owned`] values).
///
/// [`Owned`]: crate::Owned
#[cold]
#[inline(never)]
fn value_owner_mismatch<N: Namespace>(key: &Key<N>, found: Owner) -> Box<Violation> {
    Box::new(Violation::OwnerMismatch {
        expected: key.owner().clone(),
        found,
    })
}

impl<N: Namespace, S> fmt::Debug for LocalCache<N, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCache")
            .field("namespace", &N::NAME)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Configures a [`LocalCache`]; from [`LocalCache::builder`].
///
/// Defaults: 10,000 entries, no weigher, no TTL, the system clock, no violation sink, aHash.
///
/// # Examples
///
/// ```
/// use scoped_cache::{BuildError, LocalCache, ManualClock, Namespace, RawBytes};
/// use std::time::Duration;
/// # struct Thumbnails;
/// # impl Namespace for Thumbnails {
/// #     const NAME: &'static str = "thumb";
/// #     const SCHEMA: u16 = 1;
/// #     type Item = u64;
/// #     type Value = bytes::Bytes;
/// #     type Codec = RawBytes;
/// # }
/// let clock = ManualClock::new(1_700_000_000_000);
/// let cache = LocalCache::<Thumbnails>::builder()
///     .max_entries(64 << 20) // bytes, with the weigher below
///     .weigher(|_key, value| value.len() as u64)
///     .ttl(Duration::from_secs(60))
///     .clock(clock.clock())
///     .on_violation(|report| eprintln!("cache violation: {report:?}"))
///     .build()?;
/// assert_eq!(cache.capacity(), 64 << 20);
///
/// let zero = LocalCache::<Thumbnails>::builder().max_entries(0).build();
/// assert_eq!(zero.err(), Some(BuildError::ZeroCapacity));
/// let expired_on_arrival = LocalCache::<Thumbnails>::builder().ttl(Duration::from_micros(500)).build();
/// assert!(matches!(expired_on_arrival, Err(BuildError::TtlTooShort { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct LocalCacheBuilder<N: Namespace, S = ahash::RandomState> {
    capacity: u64,
    weigher: Option<Weigher<Key<N>, N::Value>>,
    ttl: Option<Duration>,
    fresh_for: FreshFor,
    clock: Clock,
    refusals: Refusals,
    hasher: S,
    #[cfg(feature = "testing")]
    chaos: Option<LookupChaos<N>>,
}

impl<N: Namespace, S: BuildHasher + Clone> LocalCacheBuilder<N, S> {
    /// At most this many entries (or weight units, with [`weigher`](Self::weigher)); default
    /// 10,000. 0 is refused: [`build`](Self::build) fails with [`BuildError::ZeroCapacity`].
    pub fn max_entries(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// Weighs entries (e.g. by bytes); the capacity is then a total weight. Weights below 1
    /// count as 1; an entry weighing more than `u32::MAX` units is not stored.
    pub fn weigher(
        mut self,
        weigh: impl Fn(&Key<N>, &N::Value) -> u64 + Send + Sync + 'static,
    ) -> Self {
        self.weigher = Some(Arc::new(weigh));
        self
    }

    /// Entries expire this long after they are inserted (unless inserted with their own TTL).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Reads time from `clock` (e.g. a [`ManualClock`](crate::ManualClock) in tests).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Calls `sink` with every violation found.
    pub fn on_violation(mut self, sink: impl Fn(&ViolationReport) + Send + Sync + 'static) -> Self {
        self.refusals = Refusals::new(N::NAME, Some(Arc::new(sink)));
        self
    }

    /// Where refusals go: a `Cache` shares its own with its in-process tier.
    /// How long an entry is fresh (by default as long as it is kept): for a
    /// [`Cache`](crate::Cache) that keeps stale values for fail-safe answers.
    pub(crate) fn fresh_for(mut self, fresh_for: FreshFor) -> Self {
        self.fresh_for = fresh_for;
        self
    }

    pub(crate) fn refusals(mut self, refusals: Refusals) -> Self {
        self.refusals = refusals;
        self
    }

    /// Test-only fault injection (feature `testing`): lookups of a key are answered with the
    /// entry of the key `chaos` returns, as a buggy map would. Every such hit must be refused.
    ///
    /// # Examples
    ///
    /// ```
    /// # use scoped_cache::{DeviceId, Key, LocalCache, Namespace, RawBytes, TenantId, ViolationKind};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let alices = Key::new(TenantId::new("alice")?, DeviceId::new("cam-7")?, 9);
    /// let bobs = Key::new(TenantId::new("bob")?, DeviceId::new("cam-7")?, 9);
    /// let chaos_bobs = bobs.clone();
    /// let cache = LocalCache::<Thumbnails>::builder()
    ///     // A map bug: reads of Alice's key find Bob's entry.
    ///     .lookup_chaos(move |key| (key == &alices).then(|| chaos_bobs.clone()))
    ///     .build()?;
    /// cache.insert(&bobs, bytes::Bytes::from_static(b"bob's jpeg"));
    /// let alices = Key::new(TenantId::new("alice")?, DeviceId::new("cam-7")?, 9);
    /// assert_eq!(cache.get(&alices), None); // refused, not served
    /// assert_eq!(cache.stats().violations.get(ViolationKind::OwnerMismatch), 1);
    /// assert_eq!(cache.get(&bobs).as_deref(), Some(&b"bob's jpeg"[..])); // Bob's reads are his own
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "testing")]
    pub fn lookup_chaos(
        mut self,
        chaos: impl Fn(&Key<N>) -> Option<Key<N>> + Send + Sync + 'static,
    ) -> Self {
        self.chaos = Some(Arc::new(chaos));
        self
    }

    /// Hashes keys with `hasher` instead of aHash (randomly seeded per cache).
    ///
    /// The hash is the key's fingerprint, the map's only key: keys whose fingerprints collide
    /// share one entry (each reads the other's as a miss, never as a value). Use a full 64-bit
    /// hash, seeded where callers choose keys; a constant or narrow hash still returns only the
    /// right values, but keeps about one entry per distinct hash.
    pub fn hasher<S2: BuildHasher + Clone>(self, hasher: S2) -> LocalCacheBuilder<N, S2> {
        LocalCacheBuilder {
            capacity: self.capacity,
            weigher: self.weigher,
            ttl: self.ttl,
            fresh_for: self.fresh_for,
            clock: self.clock,
            refusals: self.refusals,
            hasher,
            #[cfg(feature = "testing")]
            chaos: self.chaos,
        }
    }

    /// Builds the cache.
    ///
    /// # Errors
    ///
    /// [`BuildError::ZeroCapacity`]; [`BuildError::TtlTooShort`] or [`BuildError::TtlTooLong`]
    /// for a TTL under 1 ms or over [`MAX_TTL`](crate::MAX_TTL).
    pub fn build(self) -> Result<LocalCache<N, S>, BuildError> {
        if self.capacity == 0 {
            return Err(BuildError::ZeroCapacity);
        }
        if let Some(ttl) = self.ttl {
            validate_ttl(ttl)?;
        }
        let weigher: Option<Weigher<Fingerprint, Entry<N>>> =
            self.weigher.map(|weigh| -> Weigher<Fingerprint, Entry<N>> {
                Arc::new(move |_, entry| weigh(&entry.key, &entry.value))
            });
        Ok(LocalCache {
            map: BoundedMap::new(
                self.capacity,
                // An entry weighs at least 1.
                self.capacity,
                weigher,
                self.clock,
                BuildNoHashHasher::default(),
            ),
            hasher: self.hasher,
            ttl: self.ttl,
            fresh_for: self.fresh_for,
            refusals: self.refusals,
            flights: crate::sync::Arc::new(LoadFlights::<N>::default()),
            #[cfg(feature = "testing")]
            chaos: self.chaos,
        })
    }
}

/// Loom models: `RUSTFLAGS="--cfg scoped_cache_loom" cargo test --release --lib loom_`.
#[cfg(all(test, scoped_cache_loom))]
mod loom_models {
    use super::*;
    use crate::codec::RawBytes;
    use crate::id::{DeviceId, TenantId};
    use bytes::Bytes;
    use loom::thread;

    struct Thumbs;
    impl Namespace for Thumbs {
        const NAME: &'static str = "thumb";
        const SCHEMA: u16 = 1;
        type Item = u64;
        type Value = Bytes;
        type Codec = RawBytes;
    }

    fn key(tenant: u64, device: u64) -> Key<Thumbs> {
        Key::new(TenantId::from_u64(tenant), DeviceId::from_u64(device), 1)
    }

    #[test]
    fn loom_reads_racing_insert_overwrite_and_remove_see_only_their_own_values() {
        loom::model(|| {
            let cache = crate::sync::Arc::new(
                LocalCache::<Thumbs>::new(2).unwrap_or_else(|_| unreachable!()),
            );
            let (mine, swapped) = (key(1, 2), key(2, 1));
            let writer = {
                let (cache, mine, swapped) = (cache.clone(), mine.clone(), swapped.clone());
                thread::spawn(move || {
                    cache.insert(&mine, Bytes::from_static(b"1/2 v1"));
                    cache.insert(&swapped, Bytes::from_static(b"2/1"));
                    cache.insert(&mine, Bytes::from_static(b"1/2 v2"));
                })
            };
            let remover = {
                let (cache, mine) = (cache.clone(), mine.clone());
                thread::spawn(move || {
                    cache.remove(&mine);
                })
            };
            let seen = cache.get(&mine);
            assert!(
                matches!(seen.as_deref(), None | Some(b"1/2 v1" | b"1/2 v2")),
                "a read of (1, 2) saw {seen:?}"
            );
            writer.join().unwrap();
            remover.join().unwrap();
            assert!(cache.len() <= 2);
            assert_eq!(cache.stats().violations.total(), 0);
        });
    }
}
