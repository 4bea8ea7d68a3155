//! Errors of cache operations and of building caches.

use crate::codec::CodecError;
use crate::envelope::SealError;
use crate::store::StoreError;

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
