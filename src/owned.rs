//! Owned values: values that name their own owner, checked against the key on every write and read.

use crate::error::{Error, LoadError};
use crate::key::{Key, Owner};
use crate::namespace::Namespace;
use crate::violation::Violation;
use std::rc::Rc;
use std::sync::Arc;

/// A value that knows which owner it belongs to (a thumbnail that carries its user and camera).
///
/// Implementing it is defence in depth: the cache already binds every value to its key, but a
/// caller or a source of truth can still hand the cache *another owner's value for this key*.
/// With the check on, such a value is refused instead of being stored or served.
///
/// The check is opt-in per namespace, without specialization: implement `Owned` for the value
/// type and point [`Namespace::value_owner`] at it. Then
///
/// - [`Cache::insert`](crate::Cache::insert) and [`LocalCache::try_insert`](crate::LocalCache::try_insert)
///   refuse the value with [`Error::OwnerMismatch`](crate::Error::OwnerMismatch)
///   ([`LocalCache::insert`](crate::LocalCache::insert) returns `false`), nothing stored;
/// - `get_or_load` refuses a loaded value with
///   [`LoadError::OwnerMismatch`](crate::LoadError::OwnerMismatch): it is neither cached nor
///   returned, to any of the callers sharing the load;
/// - every read compares the decoded (or in-process) value's owner with the requested key again:
///   a mismatch is a [`Violation::OwnerMismatch`](crate::Violation::OwnerMismatch) whose `found`
///   is the value's owner (counted, reported, deleted, a miss).
///
/// Namespaces that do not override `value_owner` pay nothing: the default returns `None` and the
/// compiler removes the checks.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use scoped_cache::{DeviceId, Key, LocalCache, Namespace, Owned, Owner, RawBytes, TenantId};
///
/// #[derive(Clone)]
/// struct Thumbnail {
///     owner: Owner,
///     jpeg: Bytes,
/// }
///
/// impl Owned for Thumbnail {
///     fn owner(&self) -> Owner {
///         self.owner.clone()
///     }
/// }
///
/// # /// This example stays in-process, so its values are never encoded.
/// # struct ThumbnailCodec;
/// # impl scoped_cache::Codec<Thumbnail> for ThumbnailCodec {
/// #     fn encode(_: &Thumbnail) -> Result<Bytes, scoped_cache::CodecError> {
/// #         Err(scoped_cache::CodecError("in-process example".into()))
/// #     }
/// #     fn decode(_: Bytes) -> Result<Thumbnail, scoped_cache::CodecError> {
/// #         Err(scoped_cache::CodecError("in-process example".into()))
/// #     }
/// # }
/// struct Thumbnails;
/// impl Namespace for Thumbnails {
///     const NAME: &'static str = "thumb";
///     const SCHEMA: u16 = 1;
///     type Item = u64;
///     type Value = Thumbnail;
///     type Codec = ThumbnailCodec; // e.g. `Postcard<Thumbnail>` with the `serde` feature
///     fn value_owner(value: &Thumbnail) -> Option<Owner> {
///         Some(value.owner()) // opt in to the check
///     }
/// }
///
/// let cache = LocalCache::<Thumbnails>::new(100)?;
/// let (alice, bob) = (TenantId::new("alice")?, TenantId::new("bob")?);
/// let cam = DeviceId::new("cam-7")?;
/// let bobs = Thumbnail { owner: Owner::new(bob, cam.clone()), jpeg: Bytes::from_static(b"jpeg") };
/// let alices_key = Key::<Thumbnails>::new(alice, cam, 9);
/// assert!(cache.try_insert(&alices_key, bobs).is_err()); // bob's thumbnail under alice's key
/// assert!(cache.get(&alices_key).is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Owned {
    /// The owner this value belongs to.
    fn owner(&self) -> Owner;
}

impl<T: Owned + ?Sized> Owned for &T {
    fn owner(&self) -> Owner {
        (**self).owner()
    }
}

impl<T: Owned + ?Sized> Owned for Box<T> {
    fn owner(&self) -> Owner {
        (**self).owner()
    }
}

impl<T: Owned + ?Sized> Owned for Arc<T> {
    fn owner(&self) -> Owner {
        (**self).owner()
    }
}

impl<T: Owned + ?Sized> Owned for Rc<T> {
    fn owner(&self) -> Owner {
        (**self).owner()
    }
}

/// The value's owner, when namespace `N` checks owners and it is not `expected`.
#[inline]
pub(crate) fn mismatch<N: Namespace>(expected: &Owner, value: &N::Value) -> Option<Owner> {
    // A `match`, not `Option::filter`: LLVM left `filter` out of line, a call on every L1 hit
    // even for a namespace whose `value_owner` is always `None`.
    match N::value_owner(value) {
        Some(found) if found != *expected => Some(found),
        _ => None,
    }
}

/// Refuses to write a value that names another owner than `key`'s.
#[inline]
pub(crate) fn check_write<N: Namespace>(key: &Key<N>, value: &N::Value) -> Result<(), Error> {
    match mismatch::<N>(key.owner(), value) {
        None => Ok(()),
        Some(found) => Err(Error::OwnerMismatch {
            expected: key.owner().clone(),
            found,
        }),
    }
}

/// Refuses a loaded value that names another owner than `key`'s.
#[inline]
pub(crate) fn check_loaded<N: Namespace>(
    key: &Key<N>,
    value: N::Value,
) -> Result<N::Value, LoadError> {
    match mismatch::<N>(key.owner(), &value) {
        None => Ok(value),
        Some(found) => Err(LoadError::OwnerMismatch {
            expected: key.owner().clone(),
            found,
        }),
    }
}

/// Refuses a read value (decoded or in-process) that names another owner than `key`'s.
#[inline]
pub(crate) fn check_read<N: Namespace>(key: &Key<N>, value: &N::Value) -> Result<(), Violation> {
    match mismatch::<N>(key.owner(), value) {
        None => Ok(()),
        Some(found) => Err(Violation::OwnerMismatch {
            expected: key.owner().clone(),
            found,
        }),
    }
}
