//! `Client`: what every cache of a service shares: key ring, remote store, violation sink, clock.

use crate::breaker::{Breaker, BreakerEvent, BreakerScope};
use crate::bus::{BusTransport, Hub};
use crate::cache::CacheBuilder;
use crate::clock::Clock;
use crate::envelope::{DEFAULT_MAX_PAYLOAD, Envelope};
use crate::error::BuildError;
use crate::keyring::KeyRing;
use crate::namespace::Namespace;
use crate::shared::{BreakerSink, Remote, Shared};
use crate::store::RemoteStore;
use crate::violation::{ViolationReport, ViolationSink};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The default [clock-skew allowance](ClientBuilder::clock_skew_allowance).
pub const DEFAULT_CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(1);

/// The store breaker's configuration ([`ClientBuilder::store_breaker`]).
///
/// # Examples
///
/// ```
/// use scoped_cache::StoreBreaker;
/// use std::time::Duration;
/// let patient = StoreBreaker::new(20, Duration::from_secs(5));
/// assert_eq!(StoreBreaker::default(), StoreBreaker::new(5, Duration::from_secs(1)));
/// # let _ = patient;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreBreaker {
    failures: u32,
    cool_down: Duration,
}

impl StoreBreaker {
    /// Opens after `failures` store calls in a row failed or timed out (at least 1), and stays
    /// open for `cool_down` before probing.
    pub fn new(failures: u32, cool_down: Duration) -> Self {
        Self {
            failures: failures.max(1),
            cool_down,
        }
    }
}

impl Default for StoreBreaker {
    /// Five failures in a row; one second open.
    fn default() -> Self {
        Self::new(5, Duration::from_secs(1))
    }
}

/// The shared configuration of a service's caches. Cheap to clone.
///
/// # Examples
///
/// ```
/// use scoped_cache::{Client, KeyId, KeyRing, MemoryStore};
/// let client = Client::builder()
///     .key_ring(KeyRing::new(KeyId(1), &[42; 32])?)
///     .remote(MemoryStore::default())
///     .on_violation(|report| eprintln!("cache violation: {report:?}"))
///     .build()?;
/// # let _ = client;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
}

impl Client {
    /// A builder: no remote tier, no sink, the system clock, 8 MiB payloads.
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            ring: None,
            store: None,
            sink: None,
            breaker_sink: None,
            clock: Clock::system(),
            max_payload: DEFAULT_MAX_PAYLOAD,
            read_version_1: true,
            skew_allowance: DEFAULT_CLOCK_SKEW_ALLOWANCE,
            store_breaker: Some(StoreBreaker::default()),
            bus: None,
        }
    }

    /// The counters of the client's invalidation bus, if it has one.
    pub fn bus_stats(&self) -> Option<crate::bus::BusStats> {
        self.shared.bus.as_ref().map(|bus| bus.stats())
    }

    /// Starts configuring the cache of namespace `N`.
    pub fn cache<N: Namespace>(&self) -> CacheBuilder<N> {
        CacheBuilder::new(Arc::clone(&self.shared))
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field(
                "remote",
                &self.shared.remote.as_ref().map(|remote| &remote.ring),
            )
            .finish_non_exhaustive()
    }
}

/// Configures a [`Client`]; from [`Client::builder`].
///
/// Defaults: no remote tier (in-process caching only), no violation or breaker sink, the
/// system clock, 8 MiB payloads. A remote tier needs a [`KeyRing`].
///
/// # Examples
///
/// ```
/// use scoped_cache::{BuildError, Client, KeyId, KeyRing, ManualClock, MemoryStore};
/// use std::sync::Arc;
///
/// let store = Arc::new(MemoryStore::default()); // kept, to inspect in a test
/// let clock = ManualClock::new(1_700_000_000_000);
/// let client = Client::builder()
///     .key_ring(KeyRing::new(KeyId(1), &[42; 32])?)
///     .remote_shared(store.clone())
///     .clock(clock.clock())
///     .max_payload(1 << 20)
///     .on_violation(|report| eprintln!("refused: {report:?}"))
///     .on_breaker(|event| eprintln!("breaker: {event:?}"))
///     .build()?;
/// # let _ = client;
///
/// let unsealed = Client::builder().remote(MemoryStore::default()).build();
/// assert!(matches!(unsealed, Err(BuildError::MissingKeyRing)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use]
pub struct ClientBuilder {
    ring: Option<KeyRing>,
    store: Option<Arc<dyn RemoteStore>>,
    sink: Option<ViolationSink>,
    breaker_sink: Option<BreakerSink>,
    clock: Clock,
    max_payload: usize,
    read_version_1: bool,
    skew_allowance: Duration,
    store_breaker: Option<StoreBreaker>,
    bus: Option<Arc<dyn BusTransport>>,
}

impl ClientBuilder {
    /// The invalidation bus that [coherent](crate::Policy::Coherent) caches publish their
    /// invalidations on and hear other instances' on ([`MemoryBus`](crate::MemoryBus)
    /// in-process, `RedisBus` with feature `redis`). Needs a [key ring](Self::key_ring): every
    /// message is sealed under it. A bus with heartbeats (Redis) needs the client built inside
    /// a Tokio runtime. See [`bus`](crate::bus).
    pub fn bus(mut self, transport: impl BusTransport) -> Self {
        self.bus = Some(Arc::new(transport));
        self
    }

    /// The MAC keys that seal and verify remote values. Required with a remote store; ignored
    /// without one.
    pub fn key_ring(mut self, ring: KeyRing) -> Self {
        self.ring = Some(ring);
        self
    }

    /// A shared tier below the in-process one ([`MemoryStore`](crate::MemoryStore), a Redis
    /// store, or your own [`RemoteStore`]); every value written to it is sealed.
    pub fn remote(self, store: impl RemoteStore) -> Self {
        self.remote_shared(Arc::new(store))
    }

    /// A shared tier that the caller also keeps a handle to.
    pub fn remote_shared(mut self, store: Arc<dyn RemoteStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Called with every violation of every cache of this client, e.g. to alert an operator.
    ///
    /// It runs synchronously on the thread that found the violation, before that read returns:
    /// keep it short and non-blocking (hand the report to a channel).
    pub fn on_violation(mut self, sink: impl Fn(&ViolationReport) + Send + Sync + 'static) -> Self {
        self.sink = Some(Arc::new(sink));
        self
    }

    /// Called whenever the breaker of a [`Policy::AutoBypass`](crate::Policy::AutoBypass) cache
    /// changes state; synchronously, like [`on_violation`](Self::on_violation).
    pub fn on_breaker(mut self, sink: impl Fn(&BreakerEvent) + Send + Sync + 'static) -> Self {
        self.breaker_sink = Some(Arc::new(sink));
        self
    }

    /// Reads time from `clock` (e.g. a [`ManualClock`](crate::ManualClock) in tests).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The largest value payload stored remotely (default 8 MiB); larger inserts fail and larger
    /// stored values are refused before they are parsed.
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Whether remote values in envelope format version 1 still open (default `true`).
    ///
    /// This version writes format 2 and reads both: the migration window from version 1.
    /// `false` ends the window: an authentic version 1 value is then a
    /// [`Freshness::RetiredVersion`](crate::Freshness::RetiredVersion) miss (counted, not
    /// reported, loaded again and rewritten in format 2), never a value. End it once no
    /// instance runs a version that writes format 1 and the values they wrote have expired (one
    /// TTL later).
    ///
    /// # Examples
    ///
    /// ```
    /// use scoped_cache::{Client, KeyId, KeyRing, MemoryStore};
    /// let client = Client::builder()
    ///     .key_ring(KeyRing::new(KeyId(1), &[42; 32])?)
    ///     .remote(MemoryStore::default())
    ///     .read_version_1(false) // every instance writes format 2, and old values expired
    ///     .build()?;
    /// # let _ = client;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read_version_1(mut self, read: bool) -> Self {
        self.read_version_1 = read;
        self
    }

    /// How far apart the clocks of a service's instances may be (default 1 s, at most one day).
    ///
    /// A remote value is sealed to expire at its TTL, and the store and the in-process tier
    /// drop it that much earlier (the *expiry margin*: this allowance, but at most a quarter of
    /// the TTL). So a store never hands back a value whose envelope says it has expired to a
    /// reader whose clock is within the margin of the writer's: expiry is a plain miss, never a
    /// refusal. Past the margin such reads are counted as
    /// [`Freshness::Expired`](crate::Freshness::Expired) misses, never as violations. No value
    /// is ever served past its TTL, whatever the store does.
    pub fn clock_skew_allowance(mut self, allowance: Duration) -> Self {
        self.skew_allowance = allowance;
        self
    }

    /// The store breaker (default [`StoreBreaker::default`]: five failed calls in a row open it
    /// for one second); `None` to call the store whatever happened before.
    ///
    /// While it is open, every cache of this client skips the remote store: reads are misses
    /// (`get_or_load` loads), writes stay in-process ([`Cache::insert`](crate::Cache::insert)
    /// returns [`StoreError::Skipped`](crate::store::StoreError::Skipped)), and nobody waits for
    /// the store's timeout. Then a few calls probe it; if they succeed it closes. Its state
    /// changes go to the [breaker sink](Self::on_breaker) with
    /// [`BreakerScope::Store`](crate::BreakerScope::Store) and show in
    /// [`Stats::store_breaker_state`](crate::Stats::store_breaker_state).
    pub fn store_breaker(mut self, breaker: Option<StoreBreaker>) -> Self {
        self.store_breaker = breaker;
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    ///
    /// [`BuildError::MissingKeyRing`] when a remote store is set without a key ring;
    /// [`BuildError::SkewAllowanceTooLong`] for a clock-skew allowance over one day.
    pub fn build(self) -> Result<Client, BuildError> {
        const MAX_SKEW_ALLOWANCE: Duration = Duration::from_secs(24 * 3600);
        if self.skew_allowance > MAX_SKEW_ALLOWANCE {
            return Err(BuildError::SkewAllowanceTooLong {
                allowance: self.skew_allowance,
                max: MAX_SKEW_ALLOWANCE,
            });
        }
        let bus = match (self.bus, &self.ring) {
            (Some(transport), Some(ring)) => Some(Hub::start(
                transport,
                ring.clone(),
                self.clock.clone(),
                self.skew_allowance.as_millis() as u64,
            )?),
            (Some(_), None) => return Err(BuildError::MissingKeyRing),
            (None, _) => None,
        };
        let remote = match (self.store, self.ring) {
            (Some(store), Some(ring)) => Some(Remote {
                store,
                ring,
                envelope: Envelope::with_max_payload(self.max_payload)
                    .with_version_1(self.read_version_1),
                // At most a day (checked above): fits a u64 of ms.
                skew_allowance_ms: self.skew_allowance.as_millis() as u64,
                breaker: self.store_breaker.map(|config| {
                    // Faults in a row: a success starts the count over, so no window is needed.
                    Breaker::new(
                        BreakerScope::Store,
                        config.failures,
                        Duration::MAX,
                        config.cool_down,
                    )
                }),
            }),
            (Some(_), None) => return Err(BuildError::MissingKeyRing),
            (None, _) => None,
        };
        Ok(Client {
            shared: Arc::new(
                Shared::new(remote, self.sink, self.breaker_sink, self.clock).with_bus(bus),
            ),
        })
    }
}
