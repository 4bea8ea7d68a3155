//! `Cache<N>`: the async front over the in-process and remote tiers.

use crate::breaker::{Admission, Breaker, BreakerState};
use crate::client::Shared;
use crate::clock::deadline;
use crate::codec::Codec;
use crate::error::{BuildError, Error, LoadError};
use crate::key::Key;
use crate::local::LocalCache;
use crate::namespace::Namespace;
use crate::observe::{self, Op, OpKind, Outcome};
use crate::owned;
use crate::single_flight::{Flights, Role};
use crate::stats::{Counters, Event, Stats};
use crate::violation::{Tier, Violation, ViolationReport, ViolationSink};
use bytes::Bytes;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Whether a namespace uses the cache at all; set per namespace with [`CacheBuilder::policy`].
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use scoped_cache::{Client, DeviceId, Key, Namespace, Policy, RawBytes, TenantId};
/// use std::time::Duration;
/// # struct Relations;
/// # impl Namespace for Relations {
/// #     const NAME: &'static str = "user-device";
/// #     const SCHEMA: u16 = 1;
/// #     type Item = ();
/// #     type Value = bytes::Bytes;
/// #     type Codec = RawBytes;
/// # }
/// let client = Client::builder().build()?;
/// // Authorisation relations always come from the source of truth.
/// let relations = client.cache::<Relations>().policy(Policy::Bypass).build()?;
/// let key = Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), ());
/// relations.insert(&key, bytes::Bytes::from_static(b"owner")).await?; // stores nothing
/// assert_eq!(relations.get(&key).await, None);
///
/// // A breaker: 10 violations within a minute bypass the cache for 30 s, then it is probed.
/// let guarded = Policy::AutoBypass {
///     threshold: 10,
///     window: Duration::from_secs(60),
///     cool_down: Duration::from_secs(30),
/// };
/// let _ = client.cache::<Relations>().policy(guarded).build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Policy {
    /// Read and write both tiers (the default).
    #[default]
    Cache,
    /// Never read or write the cache: for data that must always come from the source of truth,
    /// such as authorisation relations.
    Bypass,
    /// Like `Cache`, with a breaker: when `threshold` violations (of either tier) happen within
    /// `window`, the namespace behaves as `Bypass` for `cool_down`; then a few reads probe the
    /// cache and, if they are clean, it is used again. State changes go to the client's breaker
    /// sink and show in [`Stats`].
    AutoBypass {
        /// Violations within one window that open the breaker (at least 1).
        threshold: u32,
        /// The counting window.
        window: Duration,
        /// How long the breaker stays open before probing.
        cool_down: Duration,
    },
}

/// The cache of one namespace: in-process tier, then remote tier, then a miss. Cheap to clone.
///
/// Every value read from the remote tier is opened as an [`Envelope`](crate::Envelope) for the
/// requested key before it is decoded; every in-process hit is compared with the requested key.
/// A value that fails either check is counted, reported to the client's violation sink, deleted
/// from the tier it came from, and read as a miss.
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
    local: Option<LocalCache<N>>,
    ttl: Option<Duration>,
    policy: Policy,
    breaker: Option<Arc<Breaker>>,
    load_timeout: Option<Duration>,
    flights: Flights<Key<N>, Result<N::Value, LoadError>>,
    counters: Counters,
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
    /// [`Stats`]; a refused value is also reported to the violation sink and deleted from its
    /// tier). A remote hit is promoted to the in-process tier, expiring no later than its
    /// envelope. With [`Policy::Bypass`], or while the breaker is open, every call is a miss that
    /// touches neither tier (counted in `misses`, as every read the cache did not answer).
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
            match self.admit() {
                Admission::Bypass => {
                    self.inner.counters.record(Event::Miss);
                    (None, Outcome::Bypass)
                }
                admission => {
                    let (value, tier) = self.get_admitted(key, admission).await;
                    (value, Outcome::read(tier))
                }
            }
        };
        Op::start(N::NAME, OpKind::Get).run(get).await
    }

    /// How this operation may use the cache, per the policy and the breaker.
    fn admit(&self) -> Admission {
        let inner = &*self.inner;
        match (inner.policy, &inner.breaker) {
            (Policy::Bypass, _) => Admission::Bypass,
            (_, Some(breaker)) => {
                let (admission, event) = breaker.admit(|| inner.shared.clock.now_ms());
                inner.shared.breaker_event(event);
                admission
            }
            _ => Admission::Use,
        }
    }

    async fn get_admitted(
        &self,
        key: &Key<N>,
        admission: Admission,
    ) -> (Option<N::Value>, Option<Tier>) {
        let inner = &*self.inner;
        let (value, tier) = self.lookup(key).await;
        match tier {
            Some(Tier::Local) => {} // counted by the in-process tier
            Some(Tier::Remote) => inner.counters.record(Event::HitRemote),
            None => inner.counters.record(Event::Miss),
        }
        if let (Admission::Probe, Some(breaker)) = (admission, &inner.breaker) {
            // A violation during this read has already reopened the breaker; then this is a no-op.
            inner.shared.breaker_event(breaker.record_clean_probe());
        }
        (value, tier)
    }

    /// The verified value for `key` from either tier, and the tier that had it.
    async fn lookup(&self, key: &Key<N>) -> (Option<N::Value>, Option<Tier>) {
        if let Some(value) = self.inner.local.as_ref().and_then(|local| local.get(key)) {
            return (Some(value), Some(Tier::Local));
        }
        let value = self.get_remote(key).await;
        if self.inner.shared.remote.is_some() {
            observe::lookup(N::NAME, Tier::Remote, value.is_some());
        }
        match value {
            Some(value) => (Some(value), Some(Tier::Remote)),
            None => (None, None),
        }
    }

    /// The value for `key` from the cache, or else from `load`, which then fills both tiers.
    ///
    /// Concurrent calls for the same full key (namespace, tenant, device, item — never a hash of
    /// it) run one load; the others wait for its outcome. A loader error or timeout is given to
    /// every caller of that load and is not cached: the next call loads again. If the caller
    /// running the load is cancelled or its loader panics, one of the waiting callers runs its own
    /// loader instead, so nobody waits for a load that no one is running. With
    /// [`Policy::Bypass`] every call runs its loader and nothing is shared or stored. If `key`
    /// is [invalidated](Cache::invalidate) while the load runs, its callers get the value but it
    /// is not stored.
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
        let admission = self.admit();
        if admission == Admission::Bypass {
            inner.counters.record(Event::Miss);
            let outcome = self.run_loader(key, load).await;
            return (outcome.clone(), Outcome::Bypass.unless_err(&outcome));
        }
        if let (Some(value), tier) = self.get_admitted(key, admission).await {
            return (Ok(value), Outcome::read(tier));
        }
        // Wait on another caller's load until one finishes, or lead when there is none.
        let leader = loop {
            match inner.flights.join(key) {
                Role::Leader(leader) => break leader,
                Role::Waiter(flight) => {
                    inner.counters.record(Event::Coalesced);
                    if let Some(outcome) = flight.wait().await {
                        return (outcome.clone(), Outcome::Coalesced.unless_err(&outcome));
                    }
                    // The leader gave up; try to lead with our own loader.
                }
            }
        };
        // A load that finished between our miss and our lead has filled the cache.
        if let (Some(value), tier) = self.lookup(key).await {
            leader.finish(Ok(value.clone()));
            return (Ok(value), Outcome::read(tier));
        }
        let outcome = self.run_loader(key, load).await;
        if let Ok(value) = &outcome
            && leader.may_store()
        {
            // Stored before the flight ends, so later callers find it; a failed remote write is
            // counted and the value still returned. Not stored when the key was invalidated
            // while loading: the value may predate the change the invalidation announced.
            let _ = self.write(key, value.clone()).await;
        }
        leader.finish(outcome.clone());
        (outcome.clone(), Outcome::Loaded.unless_err(&outcome))
    }

    async fn run_loader<F, Fut, E>(&self, key: &Key<N>, load: F) -> Result<N::Value, LoadError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<N::Value, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let counters = &self.inner.counters;
        counters.record(Event::Load);
        observe::load(N::NAME);
        let loaded = match self.inner.load_timeout {
            Some(limit) => tokio::time::timeout(limit, load())
                .await
                .map_err(|_| LoadError::Timeout(limit)),
            None => Ok(load().await),
        };
        let outcome = loaded
            .and_then(|outcome| outcome.map_err(|error| LoadError::Loader(Arc::from(error.into()))))
            .and_then(|value| owned::check_loaded(key, value));
        if let Err(error) = &outcome {
            counters.record(Event::LoadError);
            observe::load_error(N::NAME, error);
        }
        outcome
    }

    async fn get_remote(&self, key: &Key<N>) -> Option<N::Value> {
        let inner = &*self.inner;
        let remote = inner.shared.remote.as_ref()?;
        let encoded = key.encode();
        let sealed = match remote.store.get(&encoded).await {
            Ok(found) => found?,
            Err(_) => {
                inner.counters.record(Event::RemoteError);
                return None;
            }
        };
        self.accept_remote(key, &encoded, &sealed).await
    }

    /// Opens a remote value for `key` and decodes it (promoting it to the in-process tier), or
    /// refuses it.
    async fn accept_remote(
        &self,
        key: &Key<N>,
        encoded: &[u8],
        sealed: &Bytes,
    ) -> Option<N::Value> {
        let inner = &*self.inner;
        let remote = inner.shared.remote.as_ref()?;
        let now_ms = inner.shared.clock.now_ms();
        let opened = remote
            .envelope
            .open_encoded(sealed, key, encoded, now_ms, &remote.ring);
        let decoded = opened.and_then(|opened| {
            let value = N::Codec::decode(opened.payload).map_err(|_| Violation::Undecodable)?;
            owned::check_read(key, &value)?;
            Ok((value, opened.expires_ms))
        });
        match decoded {
            Ok((value, expires_ms)) => {
                if let Some(local) = &inner.local {
                    local.insert_until(
                        key,
                        value.clone(),
                        expires_ms.min(deadline(now_ms, inner.ttl)),
                    );
                }
                Some(value)
            }
            Err(violation) => {
                self.refuse_remote(key, encoded, sealed, violation).await;
                None
            }
        }
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
            match self.admit() {
                Admission::Bypass => {
                    self.inner.counters.add(Event::Miss, keys.len() as u64);
                    (keys.iter().map(|_| None).collect(), Outcome::Bypass)
                }
                admission => self.get_many_admitted(keys, admission).await,
            }
        };
        Op::start(N::NAME, OpKind::GetMany).run(get_many).await
    }

    /// [`Cache::get_many`] once admitted, with the batch's outcome: a miss if any key missed,
    /// else a remote hit if any key was read remotely, else an in-process hit.
    async fn get_many_admitted(
        &self,
        keys: &[Key<N>],
        admission: Admission,
    ) -> (Vec<Option<N::Value>>, Outcome) {
        let inner = &*self.inner;
        let mut values: Vec<Option<N::Value>> = match &inner.local {
            Some(local) => keys.iter().map(|key| local.get(key)).collect(),
            None => keys.iter().map(|_| None).collect(),
        };
        let missing: Vec<usize> = (0..keys.len()).filter(|&i| values[i].is_none()).collect();
        if let (Some(remote), false) = (&inner.shared.remote, missing.is_empty()) {
            let encoded: Vec<Vec<u8>> = missing.iter().map(|&i| keys[i].encode()).collect();
            match remote.store.get_many(&encoded).await {
                Ok(found) if found.len() == encoded.len() => {
                    for ((&i, encoded), sealed) in missing.iter().zip(&encoded).zip(found) {
                        if let Some(sealed) = sealed {
                            values[i] = self.accept_remote(&keys[i], encoded, &sealed).await;
                            if values[i].is_some() {
                                inner.counters.record(Event::HitRemote);
                            }
                        }
                    }
                }
                Ok(_) | Err(_) => inner.counters.record(Event::RemoteError),
            }
            // One remote lookup per key asked for, as `get` counts them.
            for &i in &missing {
                observe::lookup(N::NAME, Tier::Remote, values[i].is_some());
            }
        }
        let misses = values.iter().filter(|value| value.is_none()).count();
        inner.counters.add(Event::Miss, misses as u64);
        if let (Admission::Probe, Some(breaker)) = (admission, &inner.breaker) {
            inner.shared.breaker_event(breaker.record_clean_probe());
        }
        let outcome = match (misses, missing.is_empty()) {
            (0, true) => Outcome::HitLocal,
            (0, false) => Outcome::HitRemote,
            _ => Outcome::Miss,
        };
        (values, outcome)
    }

    /// Counts and reports a refused remote value, then deletes it from the store if the store
    /// still holds exactly `refused`: a value spoiled on its way, or replaced since, is not the
    /// stored one, and deleting the key would drop a good value and send its readers to the
    /// loader (during a reconnect storm, all at once).
    async fn refuse_remote(
        &self,
        key: &Key<N>,
        encoded: &[u8],
        refused: &Bytes,
        violation: Violation,
    ) {
        let inner = &*self.inner;
        inner.counters.record(Event::Violation(violation.kind()));
        observe::violation(N::NAME, Tier::Remote, &violation);
        let report = ViolationReport {
            namespace: N::NAME,
            tier: Tier::Remote,
            expected: key.owner().clone(),
            violation,
        };
        inner
            .shared
            .report_violation(&report, inner.breaker.as_deref());
        if let Some(remote) = &inner.shared.remote
            && remote.store.delete_if(encoded, refused).await.is_err()
        {
            inner.counters.record(Event::RemoteError);
        }
    }

    /// Stores `value` for `key` in both tiers, with the cache's TTL, replacing any value there.
    ///
    /// The value is encoded and sealed first; then the in-process tier is updated, then the
    /// remote one. With [`Policy::Bypass`], or while the breaker is open, nothing is stored and
    /// the call succeeds.
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
            let written = self.write(key, value).await;
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
    /// or it has no tier.
    async fn write(&self, key: &Key<N>, value: N::Value) -> Result<bool, Error> {
        owned::check_write(key, &value)?;
        let inner = &*self.inner;
        if inner.policy == Policy::Bypass
            || inner
                .breaker
                .as_ref()
                .is_some_and(|breaker| breaker.is_open())
        {
            return Ok(false);
        }
        if inner.local.is_none() && inner.shared.remote.is_none() {
            return Ok(false); // no tier to store in: nothing written, nothing counted
        }
        let now_ms = inner.shared.clock.now_ms();
        let expires_ms = deadline(now_ms, inner.ttl);
        let sealed = match &inner.shared.remote {
            Some(remote) => {
                let payload = N::Codec::encode(&value)?;
                let encoded = key.encode();
                let sealed = remote.envelope.seal_encoded(
                    N::SCHEMA,
                    &encoded,
                    &payload,
                    now_ms,
                    expires_ms,
                    &remote.ring,
                )?;
                Some((remote, encoded, sealed))
            }
            None => None,
        };
        inner.counters.record(Event::Insert);
        if let Some(local) = &inner.local {
            local.insert_until(key, value, expires_ms);
        }
        if let Some((remote, encoded, sealed)) = sealed {
            remote
                .store
                .set(&encoded, sealed, inner.ttl)
                .await
                .inspect_err(|_| inner.counters.record(Event::RemoteError))?;
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
            let removed = match &inner.shared.remote {
                Some(remote) => remote
                    .store
                    .delete(&key.encode())
                    .await
                    .inspect_err(|_| inner.counters.record(Event::RemoteError))
                    .map_err(Error::from),
                None => Ok(()),
            };
            let outcome = Outcome::Invalidated.unless_err(&removed);
            (removed, outcome)
        };
        Op::start(N::NAME, OpKind::Invalidate).run(invalidate).await
    }

    /// Counters of both tiers: hits per tier, misses, inserts, evictions and expirations of the
    /// in-process tier, remote errors, loads, violations by kind (both tiers), and the breaker's
    /// state. A snapshot: it does not change as the cache is used.
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
        if let Some(breaker) = &self.inner.breaker {
            let report = breaker.report(self.inner.shared.clock.now_ms());
            stats.breaker_state = report.state;
            stats.breaker_trips = report.trips;
            stats.breaker_open_ms = report.open_ms;
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

/// Configures the [`Cache`] of one namespace; from [`Client::cache`](crate::Client::cache).
///
/// Defaults: 10,000 in-process entries, a 10-minute TTL, [`Policy::Cache`], a 30 s load timeout.
///
/// # Examples
///
/// ```
/// use scoped_cache::{BuildError, Client, Namespace, RawBytes};
/// use std::time::Duration;
/// # struct Thumbnails;
/// # impl Namespace for Thumbnails {
/// #     const NAME: &'static str = "thumb";
/// #     const SCHEMA: u16 = 1;
/// #     type Item = u64;
/// #     type Value = bytes::Bytes;
/// #     type Codec = RawBytes;
/// # }
/// let client = Client::builder().build()?;
/// let thumbs = client
///     .cache::<Thumbnails>()
///     .local_capacity(100_000)
///     .ttl(Duration::from_secs(60))
///     .load_timeout(Some(Duration::from_secs(2)))
///     .build()?;
/// assert_eq!(thumbs.local().map(|local| local.capacity()), Some(100_000));
///
/// let zero = client.cache::<Thumbnails>().ttl(Duration::ZERO).build();
/// assert_eq!(zero.err(), Some(BuildError::ZeroTtl));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct CacheBuilder<N: Namespace> {
    shared: Arc<Shared>,
    local_capacity: u64,
    ttl: Option<Duration>,
    policy: Policy,
    load_timeout: Option<Duration>,
    namespace: std::marker::PhantomData<fn() -> N>,
}

impl<N: Namespace> CacheBuilder<N> {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            local_capacity: 10_000,
            ttl: Some(Duration::from_secs(600)),
            policy: Policy::Cache,
            load_timeout: Some(Duration::from_secs(30)),
            namespace: std::marker::PhantomData,
        }
    }

    /// Entries in the in-process tier (default 10,000); 0 disables it.
    ///
    /// With 0 and a client without a remote tier, the cache has no tier at all: it stores
    /// nothing (inserts succeed, store nothing and are not counted in `inserts`), every read is
    /// a miss, and [`Cache::get_or_load`] still runs one load per key for concurrent callers
    /// (coalescing without caching).
    pub fn local_capacity(mut self, entries: u64) -> Self {
        self.local_capacity = entries;
        self
    }

    /// How long values live in both tiers (default 10 minutes).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Values live until evicted (and, remotely, until deleted). Use with care.
    pub fn no_ttl(mut self) -> Self {
        self.ttl = None;
        self
    }

    /// The namespace's [`Policy`] (default [`Policy::Cache`]).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// How long `get_or_load` lets a loader run before giving up (default 30 s); `None` for no
    /// limit. A limit needs a Tokio runtime with its time driver.
    pub fn load_timeout(mut self, limit: Option<Duration>) -> Self {
        self.load_timeout = limit;
        self
    }

    /// Builds the cache.
    ///
    /// # Errors
    ///
    /// [`BuildError::ZeroTtl`] for a zero TTL.
    pub fn build(self) -> Result<Cache<N>, BuildError> {
        if self.ttl == Some(Duration::ZERO) {
            return Err(BuildError::ZeroTtl);
        }
        let breaker = match self.policy {
            Policy::AutoBypass {
                threshold,
                window,
                cool_down,
            } => Some(Arc::new(Breaker::new(
                N::NAME,
                threshold,
                window,
                cool_down,
            ))),
            Policy::Cache | Policy::Bypass => None,
        };
        // In-process violations reach the client's sink and, with a breaker, count towards it.
        let local_sink: Option<ViolationSink> = match &breaker {
            None => self.shared.sink.clone(),
            Some(breaker) => {
                let (breaker, shared) = (Arc::clone(breaker), Arc::clone(&self.shared));
                observe::breaker(N::NAME, BreakerState::Closed);
                Some(Arc::new(move |report: &ViolationReport| {
                    shared.report_violation(report, Some(&breaker))
                }))
            }
        };
        let local = match self.local_capacity {
            0 => None,
            capacity => Some(
                LocalCache::builder()
                    .max_entries(capacity)
                    .clock(self.shared.clock.clone())
                    .sink(local_sink)
                    .build()?,
            ),
        };
        Ok(Cache {
            inner: Arc::new(Inner {
                shared: self.shared,
                local,
                ttl: self.ttl,
                policy: self.policy,
                breaker,
                load_timeout: self.load_timeout,
                flights: Flights::default(),
                counters: Counters::default(),
            }),
        })
    }
}
