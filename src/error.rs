//! Errors of cache operations and of building caches.

use crate::codec::CodecError;
use crate::envelope::SealError;
use crate::key::Owner;
use crate::store::StoreError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A write or invalidation failed. Reads never fail: they return a verified value or a miss.
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
///     .max_payload(4)
///     .build()?;
/// let thumbs = client.cache::<Thumbnails>().build()?;
/// let key = Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
/// match thumbs.insert(&key, bytes::Bytes::from_static(b"a large jpeg")).await {
///     Err(Error::Seal(error)) => assert!(error.to_string().contains("exceeds the limit")),
///     other => panic!("expected a seal error, got {other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The value could not be encoded by the namespace's codec; nothing was stored.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The value could not be sealed (too large); nothing was stored.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The remote store failed; the in-process tier was still updated.
    #[error("remote store failed: {0}")]
    Remote(#[from] StoreError),
    /// The value names another owner than the key it was written for (see
    /// [`Owned`](crate::Owned)); nothing was stored. A caller bug: it was about to cache one
    /// owner's data under another's key.
    #[error("value belongs to {found}, not to the key's owner {expected}: nothing was stored")]
    OwnerMismatch {
        /// The key's owner.
        expected: Owner,
        /// The owner the value names.
        found: Owner,
    },
}

/// A cache or client configuration was refused.
///
/// # Examples
///
/// ```
/// use scoped_cache::{BuildError, Client, MemoryStore};
/// let error = Client::builder().remote(MemoryStore::default()).build().unwrap_err();
/// assert_eq!(error, BuildError::MissingKeyRing);
/// assert!(error.to_string().contains("key_ring()")); // says what to do
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A capacity of zero was given; use a positive capacity (or disable the tier).
    #[error("capacity must be positive")]
    ZeroCapacity,
    /// A TTL under one millisecond (the resolution of expiry): every entry would be expired on
    /// arrival.
    #[error(
        "ttl {ttl:?} is under 1 ms; give at least 1 ms, or no TTL for entries that live until evicted"
    )]
    TtlTooShort {
        /// The TTL given.
        ttl: Duration,
    },
    /// A TTL longer than the cache or its remote store can express; every write would fail.
    #[error(
        "ttl {ttl:?} is longer than the {max:?} the store can express; use a shorter one, or no TTL"
    )]
    TtlTooLong {
        /// The TTL given.
        ttl: Duration,
        /// The longest TTL accepted.
        max: Duration,
    },
    /// Two different namespace types with the same [`NAME`](crate::Namespace::NAME) on one
    /// client: their entries would share store keys, and one would read the other's bytes as
    /// its own type.
    #[error(
        "namespace name {name:?} is already used by another namespace type on this client; give each namespace its own NAME"
    )]
    NamespaceNameTaken {
        /// The name both types declare.
        name: &'static str,
    },
    /// The clock-skew allowance is longer than the cache can add to a sealed expiry.
    #[error(
        "clock-skew allowance {allowance:?} is longer than {max:?}; clocks that far apart need fixing, not tolerating"
    )]
    SkewAllowanceTooLong {
        /// The allowance given.
        allowance: Duration,
        /// The longest allowance accepted.
        max: Duration,
    },
    /// Fail-safe settings that cannot work together (see
    /// [`CacheBuilder::stale_for`](crate::CacheBuilder::stale_for)).
    #[error("fail-safe settings: {0}")]
    FailSafe(&'static str),
    /// A remote store was configured without a key ring to seal its values.
    #[error("a remote store needs a key ring: call key_ring() with the deployment's secret")]
    MissingKeyRing,
    /// [`Policy::Coherent`](crate::Policy::Coherent) needs a client with an invalidation bus
    /// ([`ClientBuilder::bus`](crate::ClientBuilder::bus)).
    #[error("a coherent cache needs a client with an invalidation bus; set ClientBuilder::bus")]
    CoherentWithoutBus,
    /// A bus with heartbeats was configured outside a Tokio runtime; build the client inside one.
    #[error("the bus needs a Tokio runtime for its heartbeats; build the client inside one")]
    BusNeedsRuntime,
}

/// `get_or_load` could not produce a value. Every caller waiting on the same load gets the same
/// error; errors are not cached, so the next call loads again.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use scoped_cache::{Client, DeviceId, Key, LoadError, Namespace, RawBytes, TenantId};
/// use std::time::Duration;
/// # struct Thumbnails;
/// # impl Namespace for Thumbnails {
/// #     const NAME: &'static str = "thumb";
/// #     const SCHEMA: u16 = 1;
/// #     type Item = u64;
/// #     type Value = bytes::Bytes;
/// #     type Codec = RawBytes;
/// # }
/// let thumbs = Client::builder()
///     .build()?
///     .cache::<Thumbnails>()
///     .load_timeout(Some(Duration::from_millis(50)))
///     .build()?;
/// let key = Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
///
/// let failed = thumbs.get_or_load(&key, || async { Err(std::io::Error::other("db down")) }).await;
/// let Err(LoadError::Loader(error)) = failed else { panic!("expected a loader error") };
/// assert_eq!(error.downcast_ref::<std::io::Error>().map(|e| e.to_string()).as_deref(), Some("db down"));
///
/// let slow = thumbs
///     .get_or_load(&key, || async {
///         tokio::time::sleep(Duration::from_secs(10)).await;
///         Ok::<_, std::io::Error>(bytes::Bytes::new())
///     })
///     .await;
/// assert!(matches!(slow, Err(LoadError::Timeout(_))));
/// assert_eq!(thumbs.stats().load_errors, 2); // and nothing was cached
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum LoadError {
    /// The loader returned an error, shared by every caller of that load. It is the loader's
    /// own error, boxed: inspect it with `downcast_ref` on `dyn Error`. It is also this error's
    /// [`source`](std::error::Error::source), so error reporters print its chain.
    Loader(Arc<dyn std::error::Error + Send + Sync>),
    /// The loader did not finish within the cache's load timeout.
    Timeout(Duration),
    /// The loader returned a value of another owner than the key's (see
    /// [`Owned`](crate::Owned)): it was neither cached nor returned. Check the source of truth.
    OwnerMismatch {
        /// The key's owner.
        expected: Owner,
        /// The owner the loaded value names.
        found: Owner,
    },
    /// The caller's wait ran out before the load ended ([`CacheBuilder::max_wait`], or the wait
    /// given to [`Cache::get_or_refresh_within`]) and no stale value could answer. The load goes
    /// on and fills the cache for the next caller.
    ///
    /// [`CacheBuilder::max_wait`]: crate::CacheBuilder::max_wait
    /// [`Cache::get_or_refresh_within`]: crate::Cache::get_or_refresh_within
    DeadlineExceeded(Duration),
    /// The namespace's loads in flight and its load queue were full
    /// ([`CacheBuilder::max_loads`](crate::CacheBuilder::max_loads)): the loader was not called.
    Overloaded,
    /// The load waited in the namespace's queue until nobody waited for it any more, and was
    /// dropped before it reached the loader.
    Abandoned,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Loader(error) => write!(f, "loader failed: {error}"),
            LoadError::Timeout(limit) => write!(f, "loader did not finish within {limit:?}"),
            LoadError::OwnerMismatch { expected, found } => write!(
                f,
                "loader returned a value of {found} for a key of {expected}: refused, not cached"
            ),
            LoadError::DeadlineExceeded(wait) => {
                write!(
                    f,
                    "no value within {wait:?}; the load goes on for the next caller"
                )
            }
            LoadError::Overloaded => {
                f.write_str("too many loads in flight and queued: the loader was not called")
            }
            LoadError::Abandoned => {
                f.write_str("the load was dropped from the queue: nobody waited for it any more")
            }
        }
    }
}

// By hand rather than derived: thiserror's `#[source]` would hand out the `Arc` itself, whose
// own `source` skips the loader's error, so the chain could not be downcast to it.
impl std::error::Error for LoadError {
    /// The loader's own error for [`LoadError::Loader`] (not the `Arc` around it, so that
    /// `downcast_ref` on it finds the loader's type); `None` otherwise.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Loader(error) => Some(&**error),
            LoadError::Timeout(_)
            | LoadError::OwnerMismatch { .. }
            | LoadError::DeadlineExceeded(_)
            | LoadError::Overloaded
            | LoadError::Abandoned => None,
        }
    }
}
