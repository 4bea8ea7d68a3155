//! `Client`: what every cache of a service shares: key ring, remote store, violation sink, clock.

use crate::breaker::{Breaker, BreakerEvent};
use crate::cache::CacheBuilder;
use crate::clock::Clock;
use crate::envelope::{DEFAULT_MAX_PAYLOAD, Envelope};
use crate::error::BuildError;
use crate::keyring::KeyRing;
use crate::namespace::Namespace;
use crate::observe;
use crate::store::RemoteStore;
use crate::violation::{ViolationReport, ViolationSink};
use std::fmt;
use std::sync::Arc;

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

pub(crate) struct Shared {
    pub(crate) remote: Option<Remote>,
    pub(crate) sink: Option<ViolationSink>,
    pub(crate) breaker_sink: Option<BreakerSink>,
    pub(crate) clock: Clock,
}

/// A callback that receives every breaker state change.
pub type BreakerSink = Arc<dyn Fn(&BreakerEvent) + Send + Sync>;

impl Shared {
    /// Hands a violation to the sink and, with a breaker, counts it there (a state change it
    /// causes goes through [`Shared::breaker_event`]).
    pub(crate) fn report_violation(&self, report: &ViolationReport, breaker: Option<&Breaker>) {
        if let Some(sink) = &self.sink {
            sink(report);
        }
        if let Some(breaker) = breaker {
            self.breaker_event(breaker.record_violation(self.clock.now_ms()));
        }
    }

    /// The one path for a breaker state change, whatever noticed it (an admission, a probe, a
    /// violation of either tier): the breaker gauge follows it, then the breaker sink gets it.
    pub(crate) fn breaker_event(&self, event: Option<BreakerEvent>) {
        let Some(event) = event else { return };
        observe::breaker(event.namespace, event.to);
        if let Some(sink) = &self.breaker_sink {
            sink(&event);
        }
    }
}

/// A remote store and the key ring that seals what goes into it.
pub(crate) struct Remote {
    pub(crate) store: Arc<dyn RemoteStore>,
    pub(crate) ring: KeyRing,
    pub(crate) envelope: Envelope,
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
        }
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
}

impl ClientBuilder {
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

    /// Builds the client.
    ///
    /// # Errors
    ///
    /// [`BuildError::MissingKeyRing`] when a remote store is set without a key ring.
    pub fn build(self) -> Result<Client, BuildError> {
        let remote = match (self.store, self.ring) {
            (Some(store), Some(ring)) => Some(Remote {
                store,
                ring,
                envelope: Envelope::with_max_payload(self.max_payload),
            }),
            (Some(_), None) => return Err(BuildError::MissingKeyRing),
            (None, _) => None,
        };
        Ok(Client {
            shared: Arc::new(Shared {
                remote,
                sink: self.sink,
                breaker_sink: self.breaker_sink,
                clock: self.clock,
            }),
        })
    }
}
