//! Namespaces: one per kind of cached value (thumbnails, event metadata, relations).

use crate::codec::Codec;
use crate::item::ItemKey;
use crate::key::Owner;

/// Longest namespace name, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 32;

/// A kind of cached value, named once and typed throughout.
///
/// `NAME` must match `[a-z0-9_-]{1,32}`; this is checked when the crate compiles your code
/// (a bad name is a compile-time error at the first `Key::new`), so no key can be built for it.
/// Bump `SCHEMA` whenever `Value` or its encoding changes: entries written under another schema are
/// then refused as [`Freshness::SchemaMismatch`](crate::Freshness::SchemaMismatch) and read as
/// misses.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use scoped_cache::{Namespace, RawBytes};
///
/// struct Thumbnails;
/// impl Namespace for Thumbnails {
///     const NAME: &'static str = "thumb";
///     const SCHEMA: u16 = 1;
///     type Item = u64; // the event id
///     type Value = Bytes;
///     type Codec = RawBytes;
/// }
/// ```
pub trait Namespace: Send + Sync + 'static {
    /// The name, `[a-z0-9_-]{1,32}`; part of every key and envelope.
    const NAME: &'static str;
    /// The version of `Value`'s encoding.
    const SCHEMA: u16;
    /// What identifies a value within one owner (an event id, `()` for one value per owner, …).
    type Item: ItemKey;
    /// The cached value. Returned by clone: wrap large values in `Arc` or use `Bytes`.
    type Value: Clone + Send + Sync + 'static;
    /// How `Value` becomes bytes for the remote tier.
    type Codec: Codec<Self::Value>;

    /// The owner a value names itself, for values that carry one: then writes refuse a value
    /// of another owner than the key's, and reads check it again. See [`Owned`](crate::Owned).
    ///
    /// The default, `None`, checks nothing and costs nothing. To opt in, implement
    /// [`Owned`](crate::Owned) for the value type and return `Some(value.owner())`.
    #[inline]
    fn value_owner(value: &Self::Value) -> Option<Owner> {
        let _ = value;
        None
    }
}

/// Why a namespace name is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NamespaceError {
    /// The name is empty or longer than 32 bytes.
    #[error("namespace name must be 1 to {MAX_NAMESPACE_LEN} bytes")]
    BadLength,
    /// The name has a byte outside `[a-z0-9_-]`.
    #[error("namespace name may only contain a-z, 0-9, '_' and '-'")]
    BadByte,
}

/// Checks a namespace name: `[a-z0-9_-]{1,32}`.
///
/// # Examples
///
/// ```
/// use scoped_cache::validate_namespace;
/// assert!(validate_namespace("thumb").is_ok());
/// assert!(validate_namespace("Thumb:1").is_err());
/// ```
///
/// # Errors
///
/// [`NamespaceError`] naming the rule that was broken.
pub const fn validate_namespace(name: &str) -> Result<(), NamespaceError> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_NAMESPACE_LEN {
        return Err(NamespaceError::BadLength);
    }
    let mut i = 0;
    while i < bytes.len() {
        if !matches!(bytes[i], b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-') {
            return Err(NamespaceError::BadByte);
        }
        i += 1;
    }
    Ok(())
}

/// Evaluated at compile time for each namespace that builds a key: the panic is a build error.
#[allow(clippy::panic)]
pub(crate) const fn assert_valid_name(name: &str) {
    if validate_namespace(name).is_err() {
        panic!("Namespace::NAME must match [a-z0-9_-]{{1,32}}");
    }
}
