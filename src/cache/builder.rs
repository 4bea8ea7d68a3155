//! `CacheBuilder` and `Policy`: how the cache of one namespace is configured.

use super::coherent::Coherence;
use super::{Cache, FailSafe, Inner};
use crate::breaker::{Breaker, BreakerScope, BreakerState};
use crate::bus::CoherentTier;
use crate::clock::{expiry_margin, validate_ttl};
use crate::envelope::Sealing;
use crate::error::BuildError;
use crate::found::FreshFor;
use crate::limiter::LoadLimiter;
use crate::load::LoadFlights;
use crate::local::LocalCache;
use crate::namespace::Namespace;
use crate::observe;
use crate::refusal::Refusals;
use crate::shared::Shared;
use crate::stats::Counters;
use crate::sync::ConcurrentMap;
use crate::violation::{ViolationReport, ViolationSink};
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
/// // A breaker: 10 violations within a minute skip the remote tier for 30 s, then it is probed.
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
    /// such as authorisation relations. Every `get_or_load` runs its own loader: nothing is
    /// shared between callers, not even a load in flight.
    Bypass,
    /// Like `Cache`, with a breaker: when `threshold` integrity violations (of either tier;
    /// freshness misses do not count) happen within `window`, reads and writes skip the remote
    /// tier for `cool_down`; then a few reads probe it and, if they are clean, it is used again.
    /// While it is open the in-process tier, whose every hit is checked against the requested
    /// key, stays in use, and concurrent `get_or_load` calls of one key still share one load:
    /// the breaker protects the source of truth, it never stampedes it. State changes go to the
    /// client's breaker sink and show in [`Stats`](crate::Stats).
    AutoBypass {
        /// Violations within one window that open the breaker (at least 1).
        threshold: u32,
        /// The counting window.
        window: Duration,
        /// How long the breaker stays open before probing.
        cool_down: Duration,
    },
    /// For data whose revocation must reach every instance, such as authorisation relations
    /// (who may see which camera). Needs a client with a [bus](crate::ClientBuilder::bus).
    ///
    /// Like `Cache`, except that: in-process entries live at most `l1_ttl`; every
    /// [`invalidate`](Cache::invalidate), [`invalidate_device`](Cache::invalidate_device) and
    /// [`invalidate_owner`](Cache::invalidate_owner) writes a revocation marker to the shared
    /// store, which every remote read checks, and is published on the bus, on which every
    /// instance drops the matching in-process entries; and in-process entries are served only
    /// while the bus is listening (see [`bus`](crate::bus)): on a disconnect, a heartbeat
    /// lapse, a resubscription or a lost message they are all dropped and reads go to the
    /// store until it listens again.
    ///
    /// **The revocation bound.** Once an invalidation returns, no instance serves a value of
    /// what it named that was stored before the call, except an instance that has not yet
    /// received the message: for at most the bus's delivery time while it is subscribed (zero
    /// for [`MemoryBus`](crate::MemoryBus), whose publish returns after delivery; for
    /// `RedisBus`, a round trip through Redis plus the time the subscriber's runtime takes to
    /// read the message, milliseconds on a loaded host), and, when the subscription fails
    /// silently, until the failure is noticed: at once for a closed connection, at most three
    /// heartbeat intervals otherwise (300 ms by default).
    ///
    /// **Loads that race a revocation.** A loaded value is sealed as of when its load began,
    /// so one whose load began before a revocation is refused in the store however late it is
    /// stored, and is not kept in-process. Callers after a revocation do not wait for a load
    /// that began before it (nor, while the bus is not listening, for any load): they load for
    /// themselves. Such a load returns what it read to the callers it already had. An instance
    /// remembers a revocation for the load timeout (without one, `l1_ttl`) plus the clock-skew
    /// allowance: a load that runs longer than that is the one not covered.
    Coherent {
        /// The longest an in-process entry lives (the remote tier keeps the cache's TTL).
        l1_ttl: Duration,
    },
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
/// assert_eq!(zero.err(), Some(BuildError::TtlTooShort { ttl: Duration::ZERO }));
/// let forever = client.cache::<Thumbnails>().ttl(Duration::MAX).build();
/// assert!(matches!(forever, Err(BuildError::TtlTooLong { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct CacheBuilder<N: Namespace> {
    shared: Arc<Shared>,
    local_capacity: u64,
    ttl: Option<Duration>,
    policy: Policy,
    load_timeout: Option<Duration>,
    fail_safe: FailSafe,
    /// Loads in flight and queued at most.
    max_loads: Option<(usize, usize)>,
    max_wait: Option<Duration>,
    sealing: Sealing,
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
            fail_safe: FailSafe::default(),
            max_loads: None,
            max_wait: None,
            sealing: Sealing::Authenticated,
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

    /// How long values live in both tiers (default 10 minutes; at least 1 ms, at most
    /// [`MAX_TTL`](crate::MAX_TTL)).
    ///
    /// The envelope sealed into the store expires at `ttl`, so no value is served older than
    /// that; the store and the in-process tier drop it a little earlier, by the client's
    /// [clock-skew allowance](crate::ClientBuilder::clock_skew_allowance) but at most a quarter
    /// of `ttl`, so that expiry is a plain miss, not a refused value.
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

    /// How long past its TTL a value is kept to answer [`Cache::get_or_refresh`] when the
    /// loader fails or is slow (*fail-safe*; default: not kept).
    ///
    /// The value is sealed to expire at TTL + `stale_for`, so no tier ever serves it later, and
    /// it is the key's own value, verified like any other. Only `get_or_refresh` serves a stale
    /// value, and says so ([`Fetched::stale`](crate::Fetched::stale)); [`Cache::get`],
    /// [`Cache::get_many`] and [`Cache::get_or_load`] treat it as a miss. The store holds each
    /// value that much longer.
    pub fn stale_for(mut self, stale_for: Duration) -> Self {
        self.fail_safe.stale_for = Some(stale_for);
        self
    }

    /// How old a fresh value may get before a [`Cache::get_or_refresh`] that finds it starts
    /// one load for the key in the background (*refresh-ahead*; default: never). That call, and
    /// others meanwhile, still get the value at once. Shorter than the TTL.
    pub fn refresh_after(mut self, age: Duration) -> Self {
        self.fail_safe.refresh_after = Some(age);
        self
    }

    /// How long [`Cache::get_or_refresh`] waits for a load before it answers with a stale value,
    /// when it has one (default: until the load ends). The load goes on in the background, up
    /// to the [load timeout](Self::load_timeout), and refreshes the cache. Needs
    /// [`stale_for`](Self::stale_for), and is shorter than the load timeout.
    pub fn soft_load_timeout(mut self, limit: Duration) -> Self {
        self.fail_safe.soft_timeout = Some(limit);
        self
    }

    /// After a load fails and a stale value answered for it, how long further calls for that key
    /// are answered with the stale value without another load (default 1 s; `None`: every call
    /// tries the origin again). Keeps a failing origin from being asked once per request.
    pub fn fail_safe_throttle(mut self, throttle: Option<Duration>) -> Self {
        self.fail_safe.throttle = throttle;
        self
    }

    /// At most `in_flight` loads of this namespace at once (at least 1), and `queued` more
    /// waiting for a place (default: no limit). A load that finds the queue full fails at once
    /// with [`LoadError::Overloaded`](crate::LoadError::Overloaded) instead of waiting, and a
    /// queued load whose callers have all stopped waiting (their deadline passed) is dropped
    /// before it reaches the loader ([`LoadError::Abandoned`](crate::LoadError::Abandoned)):
    /// when its turn comes, the place going to the next load at once, or, while it waits, at
    /// its next check (once a second), which also gives its place in the queue back.
    /// Protects the source of truth when every device reconnects at once.
    pub fn max_loads(mut self, in_flight: usize, queued: usize) -> Self {
        self.max_loads = Some((in_flight, queued));
        self
    }

    /// How long [`Cache::get_or_refresh`] waits for a value (default: until the load ends or
    /// times out). When it passes, the call answers with a stale value if it has one, else
    /// fails with [`LoadError::DeadlineExceeded`](crate::LoadError::DeadlineExceeded) at once;
    /// the load goes on and fills the cache for the next caller.
    /// [`Cache::get_or_refresh_within`] sets it per call.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = Some(wait);
        self
    }

    /// How this namespace's values are sealed in the remote tier (default
    /// [`Sealing::Authenticated`]): [`Sealing::Encrypted`] keeps payloads confidential from
    /// whoever can read the store, for one extra pass over the bytes and 8 bytes per value.
    /// Values are read in either form, so a namespace can switch without losing its entries;
    /// without a remote tier it changes nothing. See `docs/ENVELOPE.md` for what encryption
    /// protects and what it does not.
    ///
    /// # Examples
    ///
    /// ```
    /// # use scoped_cache::{Client, DeviceId, Key, KeyId, KeyRing, MemoryStore, Namespace, RawBytes, TenantId};
    /// use scoped_cache::envelope::Sealing;
    /// use scoped_cache::store::RemoteStore;
    /// use std::sync::Arc;
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// # pollster::block_on(async {
    /// let store = Arc::new(MemoryStore::default());
    /// let client = Client::builder()
    ///     .key_ring(KeyRing::new(KeyId(1), &[42; 32])?)
    ///     .remote_shared(store.clone())
    ///     .build()?;
    /// let thumbs = client.cache::<Thumbnails>().sealing(Sealing::Encrypted).build()?;
    /// let key = Key::<Thumbnails>::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    /// thumbs.insert(&key, bytes::Bytes::from_static(b"a private jpeg")).await?;
    /// let stored = store.get(&key.encode()).await?.expect("stored");
    /// assert!(!stored.windows(14).any(|w| w == b"a private jpeg")); // the store sees ciphertext
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn sealing(mut self, sealing: Sealing) -> Self {
        self.sealing = sealing;
        self
    }

    /// Builds the cache.
    ///
    /// # Errors
    ///
    /// [`BuildError::TtlTooShort`] for a TTL under 1 ms, [`BuildError::TtlTooLong`] for one
    /// (with its stale time) over [`MAX_TTL`](crate::MAX_TTL);
    /// [`BuildError::NamespaceNameTaken`] when another namespace type with the same
    /// [`NAME`](Namespace::NAME) already has a cache on this client;
    /// [`BuildError::FailSafe`] for fail-safe settings that cannot work together (see
    /// [`stale_for`](Self::stale_for), [`refresh_after`](Self::refresh_after),
    /// [`soft_load_timeout`](Self::soft_load_timeout)).
    pub fn build(self) -> Result<Cache<N>, BuildError> {
        if let Some(ttl) = self.ttl {
            validate_ttl(ttl)?;
        }
        self.fail_safe
            .validate(self.ttl, self.load_timeout, self.policy)?;
        let lifetime = self
            .ttl
            .map(|ttl| ttl + self.fail_safe.stale_for.unwrap_or_default());
        if let Some(lifetime) = lifetime {
            validate_ttl(lifetime)?;
        }
        let fresh_for = match (self.fail_safe.stale_for, self.ttl) {
            (Some(_), Some(ttl)) => FreshFor::ttl(ttl),
            _ => FreshFor::ALWAYS,
        };
        self.shared.claim_namespace::<N>()?;
        let breaker = match self.policy {
            Policy::AutoBypass {
                threshold,
                window,
                cool_down,
            } => Some(Arc::new(Breaker::new(
                BreakerScope::Namespace,
                threshold,
                window,
                cool_down,
            ))),
            Policy::Cache | Policy::Bypass | Policy::Coherent { .. } => None,
        };
        // Violations of either tier reach the client's sink and, with a breaker, count towards it.
        let sink: Option<ViolationSink> = match &breaker {
            None => self.shared.sink.clone(),
            Some(breaker) => {
                let (breaker, shared) = (Arc::clone(breaker), Arc::clone(&self.shared));
                observe::breaker(N::NAME, BreakerState::Closed);
                Some(Arc::new(move |report: &ViolationReport| {
                    shared.report_violation(report, Some(&breaker))
                }))
            }
        };
        let refusals = Refusals::new(N::NAME, sink);
        let keep_for = lifetime.map(|lifetime| {
            let allowance = self
                .shared
                .remote
                .as_ref()
                .map_or(0, |remote| remote.skew_allowance_ms);
            lifetime - expiry_margin(lifetime, allowance)
        });
        let local = match self.local_capacity {
            0 => None,
            capacity => Some(
                LocalCache::builder()
                    .max_entries(capacity)
                    .clock(self.shared.clock.clone())
                    .fresh_for(fresh_for)
                    .refusals(refusals.clone())
                    .build()?,
            ),
        };
        let coherence = match self.policy {
            Policy::Coherent { l1_ttl } => {
                validate_ttl(l1_ttl)?;
                let hub = self
                    .shared
                    .bus
                    .clone()
                    .ok_or(BuildError::CoherentWithoutBus)?;
                let allowance = self
                    .shared
                    .remote
                    .as_ref()
                    .map_or(0, |remote| remote.skew_allowance_ms);
                // The longest a load can run: what it read may predate a revocation that long.
                let longest_load = self.load_timeout.unwrap_or(l1_ttl);
                Some(Coherence::new(hub, l1_ttl, allowance, longest_load))
            }
            _ => None,
        };
        let cache = Cache {
            inner: Arc::new(Inner {
                shared: self.shared,
                local,
                ttl: self.ttl,
                lifetime,
                keep_for,
                fresh_for,
                fail_safe: self.fail_safe,
                refreshes: ConcurrentMap::with_hasher(ahash::RandomState::new()),
                limiter: self
                    .max_loads
                    .map(|(in_flight, queued)| LoadLimiter::new(in_flight, queued)),
                max_wait: self.max_wait,
                failed_loads: ConcurrentMap::with_hasher(ahash::RandomState::new()),
                policy: self.policy,
                breaker,
                load_timeout: self.load_timeout,
                refusals,
                flights: crate::sync::Arc::new(LoadFlights::<N>::default()),
                counters: Counters::default(),
                coherence,
                sealing: self.sealing,
            }),
        };
        if let Some(coherence) = &cache.inner.coherence {
            let tier: std::sync::Weak<dyn CoherentTier> = Arc::downgrade(&cache.inner) as _;
            coherence.hub.register(tier);
        }
        Ok(cache)
    }
}
