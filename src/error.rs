//! Errors of cache operations and of building caches.

use crate::codec::CodecError;
use crate::envelope::SealError;
use crate::key::Owner;
use crate::store::StoreError;
use std::sync::Arc;
use std::time::Duration;

/// A write or invalidation failed. Reads never fail: they return a verified value or a miss.
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A capacity of zero was given; use a positive capacity (or disable the tier).
    #[error("capacity must be positive")]
    ZeroCapacity,
    /// A TTL of zero was given; every entry would be expired on arrival.
    #[error("ttl must be positive; omit it for entries that live until evicted")]
    ZeroTtl,
    /// A remote store was configured without a key ring to seal its values.
    #[error("a remote store needs a key ring: call key_ring() with the deployment's secret")]
    MissingKeyRing,
}

/// `get_or_load` could not produce a value. Every caller waiting on the same load gets the same
/// error; errors are not cached, so the next call loads again.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The loader returned an error (shared by every caller of that load; downcast it with
    /// `source()` or `Arc::downcast`-style helpers on `dyn Error`).
    #[error("loader failed: {0}")]
    Loader(Arc<dyn std::error::Error + Send + Sync>),
    /// The loader did not finish within the cache's load timeout.
    #[error("loader did not finish within {0:?}")]
    Timeout(Duration),
    /// The loader returned a value of another owner than the key's (see
    /// [`Owned`](crate::Owned)): it was neither cached nor returned. Check the source of truth.
    #[error("loader returned a value of {found} for a key of {expected}: refused, not cached")]
    OwnerMismatch {
        /// The key's owner.
        expected: Owner,
        /// The owner the loaded value names.
        found: Owner,
    },
}
