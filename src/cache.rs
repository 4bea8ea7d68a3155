//! `Cache<N>`: the async front over the in-process and remote tiers; it decides which tiers an
//! operation uses and in what order. The remote tier's reads and writes live in
//! `cache/remote_tier.rs`, configuration in `cache/builder.rs`, loading in `load.rs`.

mod builder;
mod coherent;
mod fail_safe;
mod provenance;
mod remote_tier;

pub use builder::{CacheBuilder, Policy};
use fail_safe::FailSafe;
pub use fail_safe::{Fetched, StaleReason};
pub(crate) use provenance::{LoadStart, Read};

use crate::breaker::{Admission, Breaker};
use crate::clock::deadline;
use crate::error::{Error, LoadError};
use crate::found::{Found, FreshFor};
use crate::key::Key;
use crate::limiter::LoadLimiter;
use crate::load::{self, LoadFlights, Source, Wait};
use crate::local::LocalCache;
use crate::namespace::Namespace;
use crate::observe::{self, Op, OpKind, Outcome};
use crate::owned;
use crate::refusal::Refusals;
use crate::shared::Shared;
use crate::stats::{Counters, Event, Stats};
use crate::sync::ConcurrentMap;
use crate::violation::Tier;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The cache of one namespace: in-process tier, then remote tier, then a miss. Cheap to clone.
///
/// Every value read from the remote tier is opened as an
/// [`Envelope`](crate::envelope::Envelope) for the requested key before it is decoded; every
/// in-process hit is compared with the requested key.
/// A value that fails either check is read as a miss: an integrity failure is also counted as a
/// violation, reported to the client's violation sink and deleted from the tier it came from; a
/// freshness miss (expired, another schema, an unknown key id) is only counted (see
/// [`Refusal`](crate::Refusal)).
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use bytes::Bytes;
/// use scoped_cache::{Client, DeviceId, Key, KeyId, KeyRing, MemoryStore, Namespace, RawBytes, TenantId};
/// use std::time::Duration;
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
/// let client = Client::builder()
///     .key_ring(KeyRing::new(KeyId(1), &[42; 32])?)
///     .remote(MemoryStore::default())
///     .build()?;
/// let thumbs = client.cache::<Thumbnails>().local_capacity(100_000).ttl(Duration::from_secs(600)).build()?;
///
/// let key = Key::new(TenantId::new("user-42")?, DeviceId::new("cam-7")?, 9);
/// thumbs.insert(&key, Bytes::from_static(b"jpeg")).await?;
/// assert_eq!(thumbs.get(&key).await, Some(Bytes::from_static(b"jpeg")));
/// thumbs.invalidate(&key).await?;
/// assert_eq!(thumbs.get(&key).await, None);
/// assert_eq!(thumbs.stats().hits_local, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
pub struct Cache<N: Namespace> {
    inner: Arc<Inner<N>>,
}

struct Inner<N: Namespace> {
    shared: Arc<Shared>,
    /// How values are sealed in the remote tier.
    sealing: crate::envelope::Sealing,
    local: Option<LocalCache<N>>,
    /// How long a value is fresh.
    ttl: Option<Duration>,
    /// How long a value may be served at all: the TTL, plus its stale time for a namespace that
    /// serves stale values when its loader fails. The expiry sealed into its envelope.
    lifetime: Option<Duration>,
    /// How long the tiers keep it: the lifetime less the expiry margin, so that the store and
    /// the in-process tier drop a value before any reader within the clock-skew allowance finds
    /// its envelope expired.
    keep_for: Option<Duration>,
    /// When a value is fresh: for [`Found::fresh`] of both tiers.
    fresh_for: FreshFor,
    /// Stale answers and refreshes ahead, for [`Cache::get_or_refresh`].
    fail_safe: FailSafe,
    /// The namespace's limit on loads in flight and queued, if it has one.
    limiter: Option<LoadLimiter>,
    /// How long `get_or_refresh` waits for a value before it gives up, if it is bounded.
    max_wait: Option<Duration>,
    /// Keys whose last load failed, answered stale without a load until the time given (the
    /// fail-safe throttle), with that load's error.
    failed_loads: ConcurrentMap<Key<N>, (u64, LoadError), ahash::RandomState>,
    /// Keys with a refresh-ahead task waiting to run or running: one at a time per key.
    refreshes: ConcurrentMap<Key<N>, (), ahash::RandomState>,
    policy: Policy,
    breaker: Option<Arc<Breaker>>,
    load_timeout: Option<Duration>,
    /// Where both tiers' refusals go.
    refusals: Refusals,
    flights: crate::sync::Arc<LoadFlights<N>>,
    counters: Counters,
    /// The bus link of a [`Policy::Coherent`] cache.
    coherence: Option<coherent::Coherence>,
}

impl<N: Namespace> Clone for Cache<N> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<N: Namespace> Cache<N> {
    /// The verified value for `key`, or `None` on a miss.
    ///
    /// Reads never fail: a remote failure or a refused value is a miss too (counted in
    /// [`Stats`]; an integrity violation is also reported to the violation sink and deleted from
    /// its tier). A remote hit is promoted to the in-process tier, expiring no later than its
    /// envelope. With [`Policy::Bypass`] every call is a miss that touches neither tier (counted
    /// in `misses`, as every read the cache did not answer); while the breaker of
    /// [`Policy::AutoBypass`] is open, only the in-process tier is read.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use scoped_cache::{Client, DeviceId, Key, KeyId, KeyRing, MemoryStore, Namespace, RawBytes, TenantId};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let client = Client::builder().key_ring(KeyRing::new(KeyId(1), &[42; 32])?).remote(MemoryStore::default()).build()?;
    /// let thumbs = client.cache::<Thumbnails>().build()?;
    /// let alices = Key::new(TenantId::new("alice")?, DeviceId::new("cam-7")?, 9);
    /// let bobs = Key::new(TenantId::new("bob")?, DeviceId::new("cam-7")?, 9);
    /// thumbs.insert(&alices, bytes::Bytes::from_static(b"jpeg")).await?;
    /// assert_eq!(thumbs.get(&alices).await.as_deref(), Some(&b"jpeg"[..]));
    /// assert_eq!(thumbs.get(&bobs).await, None); // same device name and item, another tenant
    /// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a value is returned whole and verified, or not at all, and a dropped future
    /// loses nothing a later call needs. If it is dropped while deleting a refused remote value,
    /// the violation has been counted and reported but the value may still be in the store (the
    /// next read refuses it again). A dropped read that was probing a half-open breaker never
    /// reports; the breaker starts probing afresh after another cool-down.
    pub async fn get(&self, key: &Key<N>) -> Option<N::Value> {
        let get = async {
            match self.reach() {
                Reach::Nothing => {
                    self.inner.counters.record(Event::Miss);
                    (None, Outcome::Bypass)
                }
                reach => {
                    let (value, tier) = fresh(self.find(key, reach).await);
                    (value, Outcome::read(tier))
                }
            }
        };
        Op::start(N::NAME, OpKind::Get).run(get).await
    }

    /// Which tiers this operation may use, per the policy and the breaker.
    fn reach(&self) -> Reach {
        let inner = &*self.inner;
        match (inner.policy, &inner.breaker) {
            (Policy::Bypass, _) => Reach::Nothing,
            (_, Some(breaker)) => {
                let (admission, transition) = breaker.admit(|| inner.shared.clock.now_ms());
                inner.shared.breaker_event(N::NAME, transition);
                match admission {
                    Admission::Bypass => Reach::Local,
                    admission => Reach::Both(admission),
                }
            }
            _ => Reach::Both(Admission::Use),
        }
    }

    /// The verified value for `key` from the tiers `reach` allows (see [`Cache::lookup`]),
    /// counted: a hit of the tier that had it fresh, else a miss.
    pub(crate) async fn find(&self, key: &Key<N>, reach: Reach) -> Option<(Found<N::Value>, Tier)> {
        let inner = &*self.inner;
        let found = match reach {
            Reach::Both(_) => self.lookup(key).await,
            Reach::Local | Reach::Nothing => {
                let local = self.readable_local().and_then(|local| local.find(key));
                local.map(|found| (found, Tier::Local))
            }
        };
        match &found {
            Some((found, Tier::Local)) if found.fresh => {} // counted by the in-process tier
            Some((found, Tier::Remote)) if found.fresh => inner.counters.record(Event::HitRemote),
            _ => inner.counters.record(Event::Miss),
        }
        if let (Reach::Both(Admission::Probe), Some(breaker)) = (reach, &inner.breaker) {
            // A violation during this read has already reopened the breaker; then this is a no-op.
            inner
                .shared
                .breaker_event(N::NAME, breaker.record_clean_probe());
        }
        found
    }

    /// The verified value for `key` from either tier, and the tier that had it: a fresh one if
    /// either has one, else the younger stale one (kept only by a namespace with
    /// [`stale_for`](CacheBuilder::stale_for)).
    async fn lookup(&self, key: &Key<N>) -> Option<(Found<N::Value>, Tier)> {
        let local = self.readable_local().and_then(|local| local.find(key));
        if local.as_ref().is_some_and(|local| local.fresh) {
            return local.map(|found| (found, Tier::Local));
        }
        let remote = self.remote_get(key, local.is_none()).await;
        if self.inner.shared.remote.is_some() {
            let fresh = remote.as_ref().is_some_and(|remote| remote.fresh);
            observe::lookup(N::NAME, Tier::Remote, fresh);
        }
        match (local, remote) {
            (Some(local), Some(remote))
                if !remote.fresh && local.created_ms > remote.created_ms =>
            {
                Some((local, Tier::Local))
            }
            (_, Some(remote)) => Some((remote, Tier::Remote)),
            (local, None) => local.map(|found| (found, Tier::Local)),
        }
    }

    /// The value for `key` from the cache, or else from `load`, which then fills both tiers.
    ///
    /// Concurrent calls for the same full key (namespace, tenant, device, item — never a hash of
    /// it) run one load; the others wait for its outcome. A loader error or timeout is given to
    /// every caller of that load and is not cached: the next call loads again. If the caller
    /// running the load is cancelled or its loader panics, one of the waiting callers runs its own
    /// loader instead, so nobody waits for a load that no one is running. While the breaker of
    /// [`Policy::AutoBypass`] is open the tiers are skipped, but concurrent calls of one key
    /// still share one load. With [`Policy::Bypass`] every call runs its own loader and nothing
    /// is shared or stored. If `key` is [invalidated](Cache::invalidate) while the load runs,
    /// its callers get the value but it is not stored.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use scoped_cache::{Client, DeviceId, Key, Namespace, RawBytes, TenantId};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let thumbs = Client::builder().build()?.cache::<Thumbnails>().build()?;
    /// let key = Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    /// let load = || async { Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"jpeg")) };
    /// assert_eq!(thumbs.get_or_load(&key, load).await?, "jpeg");
    /// assert_eq!(thumbs.get_or_load(&key, load).await?, "jpeg"); // from the cache
    /// assert_eq!(thumbs.stats().loads, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`LoadError::Loader`] with the loader's error; [`LoadError::Timeout`] when the load took
    /// longer than the cache's load timeout (see [`CacheBuilder::load_timeout`]);
    /// [`LoadError::OwnerMismatch`] when the namespace checks value owners
    /// ([`Owned`](crate::Owned)) and the loader returned another owner's value (not cached, not
    /// returned). A failure to store the loaded value is not an error (it is counted in
    /// `remote_errors`).
    ///
    /// # Panics
    ///
    /// With a load timeout set (the default), the call must run inside a Tokio runtime with the
    /// time driver enabled (as `#[tokio::main]` provides). A loader's own panic propagates to its
    /// caller.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe. A cancelled waiter just stops waiting; the load goes on for the others. A
    /// cancelled leader drops its loader's future mid-way (so the loader itself should be cancel
    /// safe) and hands the load on: one waiting caller, if any, checks the cache again and
    /// otherwise runs its own loader. If the leader is dropped after its loader finished, while
    /// it stores the value, the value may be in the in-process tier only, or in both tiers
    /// (see [`Cache::insert`]); a waiter that takes over then finds it in the in-process tier
    /// instead of loading again.
    pub async fn get_or_load<F, Fut, E>(&self, key: &Key<N>, load: F) -> Result<N::Value, LoadError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<N::Value, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let get_or_load = self.get_or_load_observed(key, load);
        Op::start(N::NAME, OpKind::GetOrLoad).run(get_or_load).await
    }

    async fn get_or_load_observed<F, Fut, E>(
        &self,
        key: &Key<N>,
        load: F,
    ) -> (Result<N::Value, LoadError>, Outcome)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<N::Value, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let inner = &*self.inner;
        if inner.policy == Policy::Bypass {
            inner.counters.record(Event::Miss);
            return self.load_alone(key, load).await;
        }
        // An open breaker skips the remote tier, never single-flight nor the verified
        // in-process tier: it must not stampede the origin.
        let reach = self.reach();
        let ticket = inner.flights.ticket(key);
        if let (Some(value), tier) = fresh(self.find(key, reach).await) {
            return (Ok(value), Outcome::read(tier));
        }
        // A coherent key revoked moments ago, or since its load in flight began, is loaded by
        // this caller alone and not stored.
        if self.must_load_alone(key) {
            return self.load_alone(key, load).await;
        }
        // Only when a load ended since our miss: it may have stored the value (in-process,
        // where a small tier may already have evicted it, and remotely).
        let recheck = || async move { fresh(self.find(key, reach).await).0 };
        // Where the breaker lets it (in-process only while it is open); a failed remote write
        // is counted and the value still returned.
        let began = LoadStart::default();
        let store = |value| async {
            let _ = self.write(key, value, began.read()).await;
        };
        let (outcome, source) = load::get_or_load(
            &inner.flights,
            &inner.counters,
            inner.limiter.as_ref(),
            key,
            ticket,
            Wait::Yield,
            recheck,
            || self.timed_from(&began, load),
            store,
        )
        .await;
        let observed = match source {
            Source::Coalesced => Outcome::Coalesced,
            // Another caller's load, found in the cache after it ended.
            Source::Cached => Outcome::Coalesced,
            Source::Loaded => Outcome::Loaded,
        };
        (outcome.clone(), observed.unless_err(&outcome))
    }

    /// Now, as a [`Read`] of a value would note it.
    pub(super) fn read_now(&self) -> Read {
        Read {
            at_ms: self.inner.shared.clock.now_ms(),
            generation: self.bus_generation(),
        }
    }

    /// [`timed`](Self::timed), noting in `began` when the load started.
    fn timed_from<'a, F, Fut, E>(
        &'a self,
        began: &'a LoadStart,
        load: F,
    ) -> impl Future<Output = Result<N::Value, LoadError>> + 'a
    where
        F: FnOnce() -> Fut + 'a,
        Fut: Future<Output = Result<N::Value, E>> + 'a,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'a,
    {
        began.mark(self.read_now());
        self.timed(load)
    }

    /// Loads `key` for this caller only: no flight joined, nothing stored.
    async fn load_alone<F, Fut, E>(
        &self,
        key: &Key<N>,
        load: F,
    ) -> (Result<N::Value, LoadError>, Outcome)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<N::Value, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let inner = &*self.inner;
        let limiter = inner.limiter.as_ref();
        let loaded = load::run_load(&inner.counters, limiter, &|| true, key, || self.timed(load));
        let outcome = loaded.await;
        (outcome.clone(), Outcome::Bypass.unless_err(&outcome))
    }

    /// Runs `load` within the cache's load timeout.
    async fn timed<F, Fut, E>(&self, load: F) -> Result<N::Value, LoadError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<N::Value, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let loaded = match self.inner.load_timeout {
            Some(limit) => tokio::time::timeout(limit, load())
                .await
                .map_err(|_| LoadError::Timeout(limit)),
            None => Ok(load().await),
        };
        loaded
            .and_then(|outcome| outcome.map_err(|error| LoadError::Loader(Arc::from(error.into()))))
    }

    /// The verified values for `keys`, in the same order (`None` for a miss), reading the keys the
    /// in-process tier lacks from the remote tier in one batch.
    ///
    /// Each remote value is matched to its key by position *and* opened for that key, so a store
    /// that returns a batch out of order or short causes misses, never another key's value. A
    /// batch of the wrong length is refused whole (counted as a remote error).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use scoped_cache::{Client, DeviceId, Key, KeyId, KeyRing, MemoryStore, Namespace, RawBytes, TenantId};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let client = Client::builder().key_ring(KeyRing::new(KeyId(1), &[42; 32])?).remote(MemoryStore::default()).build()?;
    /// let thumbs = client.cache::<Thumbnails>().local_capacity(0).build()?;
    /// let keys: Vec<_> = (0..3).map(|item| Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), item)).collect();
    /// thumbs.insert(&keys[1], bytes::Bytes::from_static(b"jpeg")).await?;
    /// assert_eq!(thumbs.get_many(&keys).await, [None, Some(bytes::Bytes::from_static(b"jpeg")), None]);
    /// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
    /// ```
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as [`Cache::get`].
    pub async fn get_many(&self, keys: &[Key<N>]) -> Vec<Option<N::Value>> {
        let get_many = async {
            match self.reach() {
                Reach::Nothing => {
                    self.inner.counters.add(Event::Miss, keys.len() as u64);
                    (keys.iter().map(|_| None).collect(), Outcome::Bypass)
                }
                reach => self.get_many_admitted(keys, reach).await,
            }
        };
        Op::start(N::NAME, OpKind::GetMany).run(get_many).await
    }

    /// [`Cache::get_many`] once admitted, with the batch's outcome: a miss if any key missed,
    /// else a remote hit if any key was read remotely, else an in-process hit.
    async fn get_many_admitted(
        &self,
        keys: &[Key<N>],
        reach: Reach,
    ) -> (Vec<Option<N::Value>>, Outcome) {
        let inner = &*self.inner;
        let mut values: Vec<Option<N::Value>> = match self.readable_local() {
            Some(local) => keys.iter().map(|key| local.get(key)).collect(),
            None => keys.iter().map(|_| None).collect(),
        };
        let mut missing: Vec<usize> = (0..keys.len()).filter(|&i| values[i].is_none()).collect();
        if !missing.is_empty() && reach != Reach::Local {
            self.remote_get_many(keys, &missing, &mut values).await;
        } else {
            missing.clear(); // no remote lookup
        }
        let misses = values.iter().filter(|value| value.is_none()).count();
        inner.counters.add(Event::Miss, misses as u64);
        if let (Reach::Both(Admission::Probe), Some(breaker)) = (reach, &inner.breaker) {
            inner
                .shared
                .breaker_event(N::NAME, breaker.record_clean_probe());
        }
        let outcome = match (misses, missing.is_empty()) {
            (0, true) => Outcome::HitLocal,
            (0, false) => Outcome::HitRemote,
            _ => Outcome::Miss,
        };
        (values, outcome)
    }

    /// Stores `value` for `key` in both tiers, with the cache's TTL, replacing any value there.
    ///
    /// The value is encoded and sealed first; then the in-process tier is updated, then the
    /// remote one. With [`Policy::Bypass`] nothing is stored and the call succeeds; while the
    /// breaker of [`Policy::AutoBypass`] is open, only the in-process tier is written.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use scoped_cache::{Client, DeviceId, Error, Key, KeyId, KeyRing, MemoryStore, Namespace, RawBytes, TenantId};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let client = Client::builder()
    ///     .key_ring(KeyRing::new(KeyId(1), &[42; 32])?)
    ///     .remote(MemoryStore::default())
    ///     .max_payload(1024)
    ///     .build()?;
    /// let thumbs = client.cache::<Thumbnails>().build()?;
    /// let key = Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    /// thumbs.insert(&key, bytes::Bytes::from_static(b"jpeg")).await?;
    /// assert_eq!(thumbs.get(&key).await.as_deref(), Some(&b"jpeg"[..]));
    ///
    /// let too_large = bytes::Bytes::from(vec![0; 2048]);
    /// assert!(matches!(thumbs.insert(&key, too_large).await, Err(Error::Seal(_))));
    /// assert_eq!(thumbs.get(&key).await.as_deref(), Some(&b"jpeg"[..])); // unchanged
    /// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] or [`Error::Seal`] when the value cannot be encoded or is too large
    /// (nothing is stored); [`Error::OwnerMismatch`] when the namespace checks value owners
    /// ([`Owned`](crate::Owned)) and `value` names another owner than `key` (nothing is stored);
    /// [`Error::Remote`] when the remote write failed: the in-process tier holds the new value,
    /// the remote tier whatever it held before (which other processes, and this one once the
    /// in-process entry is gone, may still read until it expires).
    ///
    /// # Cancel safety
    ///
    /// Not atomic across tiers. Dropped before its first poll, it stores nothing. Once polled,
    /// the in-process tier holds the new value; dropped while the remote write is in flight, the
    /// remote tier holds either the new value or whatever it held before. Either way each tier
    /// holds a complete value sealed for `key`, never a partial one.
    pub async fn insert(&self, key: &Key<N>, value: N::Value) -> Result<(), Error> {
        let insert = async {
            let written = self.write(key, value, None).await;
            let outcome = match written {
                Ok(true) => Outcome::Stored,
                Ok(false) => Outcome::Bypass,
                Err(_) => Outcome::Error,
            };
            (written.map(drop), outcome)
        };
        Op::start(N::NAME, OpKind::Insert).run(insert).await
    }

    /// [`Cache::insert`], unobserved; `Ok(false)` when the policy or breaker skipped the cache,
    /// or it has no tier. A loaded value is created as of its `read`, when its load began: a
    /// revocation after that is after the source of truth was read, and refuses it.
    async fn write(
        &self,
        key: &Key<N>,
        value: N::Value,
        read: Option<Read>,
    ) -> Result<bool, Error> {
        owned::check_write(key, &value)?;
        let inner = &*self.inner;
        if inner.policy == Policy::Bypass {
            return Ok(false);
        }
        // While the breaker is open, the remote tier is skipped.
        let remote = inner.shared.remote.is_some()
            && !inner
                .breaker
                .as_ref()
                .is_some_and(|breaker| breaker.is_open());
        if inner.local.is_none() && !remote {
            return Ok(false); // no tier to store in: nothing written, nothing counted
        }
        let now = self.read_now();
        let read = read.unwrap_or(now);
        let created_ms = read.at_ms.min(now.at_ms);
        // Sealed before anything is stored: a value that cannot be sealed is stored nowhere.
        let sealed = match remote {
            true => self.remote_seal(key, &value, created_ms)?,
            false => None,
        };
        inner.counters.record(Event::Insert);
        if let Some(local) = &inner.local {
            let until = deadline(created_ms, inner.keep_for);
            self.local_insert(
                local,
                key,
                value,
                Read {
                    at_ms: created_ms,
                    ..read
                },
                until,
            );
        }
        if let Some((encoded, sealed)) = sealed {
            self.remote_set(&encoded, sealed).await?;
        }
        Ok(true)
    }

    /// Removes `key` from both tiers: the in-process entry first, then the remote one.
    ///
    /// A [`get_or_load`](Cache::get_or_load) of this cache (or a clone of it) already running
    /// for `key` does not store the value it loaded, which may predate the change this
    /// invalidation announces: its callers still receive it, the next call loads again. If that
    /// load is already storing its value, the invalidation waits for the store to finish and
    /// then deletes.
    ///
    /// What it does not order (call it *after* updating the source of truth, and rely on the
    /// TTL for the rest): a [`get`](Cache::get) that read the remote value before the delete may
    /// still copy it to the in-process tier afterwards; loads in other processes, or of another
    /// `Cache` built for the same namespace, are not stopped; and an [`insert`](Cache::insert)
    /// does not stop a load in progress, whose older value may then replace the inserted one.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use scoped_cache::{Client, DeviceId, Key, KeyId, KeyRing, MemoryStore, Namespace, RawBytes, TenantId};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let client = Client::builder().key_ring(KeyRing::new(KeyId(1), &[42; 32])?).remote(MemoryStore::default()).build()?;
    /// let thumbs = client.cache::<Thumbnails>().build()?;
    /// let key = Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    /// thumbs.insert(&key, bytes::Bytes::from_static(b"jpeg")).await?;
    /// thumbs.invalidate(&key).await?;
    /// assert_eq!(thumbs.get(&key).await, None); // gone from both tiers
    /// thumbs.invalidate(&key).await?; // removing an absent key is not an error
    /// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Remote`] when the remote delete failed: the in-process entry is gone, but the
    /// remote value may remain, and a later read (here or in another process) may return it
    /// until it expires. Retry the invalidation.
    ///
    /// # Cancel safety
    ///
    /// Dropped while waiting for a load's store to finish, it has removed nothing (a load it
    /// found still loading stays kept from storing). Once it removes, the in-process entry is
    /// gone; dropped while the remote delete is in flight, the remote value may or may not have
    /// been deleted, with the consequences of a failed delete above.
    pub async fn invalidate(&self, key: &Key<N>) -> Result<(), Error> {
        let invalidate = async {
            let inner = &*self.inner;
            // A load in progress is kept from storing; one already storing is waited for, so that
            // the deletes below come after its writes.
            if let Some(storing) = inner.flights.invalidate(key) {
                storing.wait().await;
            }
            if let Some(local) = &inner.local {
                local.remove(key);
            }
            let removed = self.remote_delete(key).await;
            let revoked = self.revoke_key(key).await;
            let removed = removed.and(revoked);
            let outcome = Outcome::Invalidated.unless_err(&removed);
            (removed, outcome)
        };
        Op::start(N::NAME, OpKind::Invalidate).run(invalidate).await
    }

    /// Counters of both tiers: hits per tier, misses, inserts, evictions and expirations of the
    /// in-process tier, remote errors and skipped remote calls, loads, violations and freshness
    /// misses by kind (both tiers), the namespace's breaker and the client's store breaker. A
    /// snapshot: it does not change as the cache is used.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use scoped_cache::{Client, DeviceId, Key, Namespace, RawBytes, TenantId};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let thumbs = Client::builder().build()?.cache::<Thumbnails>().build()?;
    /// let key = Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    /// assert_eq!(thumbs.get(&key).await, None);
    /// thumbs.insert(&key, bytes::Bytes::from_static(b"jpeg")).await?;
    /// assert!(thumbs.get(&key).await.is_some());
    /// let stats = thumbs.stats();
    /// assert_eq!((stats.hits_local, stats.misses, stats.inserts), (1, 1, 1));
    /// assert_eq!(stats.violations.total(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
    /// ```
    pub fn stats(&self) -> Stats {
        let mut stats = self.inner.counters.snapshot();
        if let Some(local) = &self.inner.local {
            let local = local.stats();
            // The in-process tier's own misses and inserts (promotions) are not the cache's.
            stats = stats
                + Stats {
                    misses: 0,
                    inserts: 0,
                    ..local
                };
        }
        let now_ms = self.inner.shared.clock.now_ms();
        if let Some(breaker) = &self.inner.breaker {
            let report = breaker.report(now_ms);
            stats.breaker_state = report.state;
            stats.breaker_trips = report.trips;
            stats.breaker_open_ms = report.open_ms;
        }
        let remote = self.inner.shared.remote.as_ref();
        if let Some(breaker) = remote.and_then(|remote| remote.breaker.as_ref()) {
            let report = breaker.report(now_ms);
            stats.store_breaker_state = report.state;
            stats.store_breaker_trips = report.trips;
        }
        stats
    }

    /// The in-process tier, if enabled (for inspection; writes should go through the cache).
    pub fn local(&self) -> Option<&LocalCache<N>> {
        self.inner.local.as_ref()
    }
}

impl<N: Namespace> fmt::Debug for Cache<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("namespace", &N::NAME)
            .field("policy", &self.inner.policy)
            .field("ttl", &self.inner.ttl)
            .finish_non_exhaustive()
    }
}

/// The value and tier of a find, if it is fresh.
fn fresh<V>(found: Option<(Found<V>, Tier)>) -> (Option<V>, Option<Tier>) {
    match found {
        Some((found, tier)) if found.fresh => (Some(found.value), Some(tier)),
        _ => (None, None),
    }
}

/// Which tiers an operation may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// None: [`Policy::Bypass`].
    Nothing,
    /// The in-process tier only: the breaker is open, so the remote tier is skipped.
    Local,
    /// Both tiers, probing the breaker when half-open.
    Both(Admission),
}
