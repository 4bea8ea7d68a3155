//! The item part of a key: what identifies a value within one owner.

use bytes::Bytes;
use std::fmt::Debug;
use std::hash::Hash;

/// The item bytes could not be decoded as this item type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("item bytes do not decode as this item type")]
pub struct ItemDecodeError;

/// A type usable as the item part of a [`Key`](crate::Key).
///
/// The encoding must be injective (distinct items, distinct bytes) and `decode_item` must accept
/// exactly what `encode_item` produces. Key encoding length-prefixes the item, so items need not
/// be self-delimiting. Implement it for your own ids by delegating:
///
/// ```
/// use scoped_cache::{ItemDecodeError, ItemKey};
///
/// #[derive(Clone, Debug, PartialEq, Eq, Hash)]
/// struct EventId(u64);
///
/// impl ItemKey for EventId {
///     fn encode_item(&self, out: &mut Vec<u8>) {
///         self.0.encode_item(out)
///     }
///     fn decode_item(bytes: &[u8]) -> Result<Self, ItemDecodeError> {
///         u64::decode_item(bytes).map(EventId)
///     }
/// }
/// ```
pub trait ItemKey: Clone + Eq + Hash + Debug + Send + Sync + 'static {
    /// Appends this item's bytes to `out`.
    fn encode_item(&self, out: &mut Vec<u8>);

    /// Reads an item back from exactly the bytes `encode_item` wrote.
    ///
    /// # Errors
    ///
    /// [`ItemDecodeError`] for any other input; never panics.
    fn decode_item(bytes: &[u8]) -> Result<Self, ItemDecodeError>;
}

impl ItemKey for () {
    fn encode_item(&self, _out: &mut Vec<u8>) {}

    fn decode_item(bytes: &[u8]) -> Result<Self, ItemDecodeError> {
        if bytes.is_empty() {
            Ok(())
        } else {
            Err(ItemDecodeError)
        }
    }
}

macro_rules! fixed_width_item {
    ($($ty:ty),*) => {$(
        impl ItemKey for $ty {
            fn encode_item(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }

            fn decode_item(bytes: &[u8]) -> Result<Self, ItemDecodeError> {
                bytes.try_into().map(<$ty>::from_be_bytes).map_err(|_| ItemDecodeError)
            }
        }
    )*};
}

fixed_width_item!(u32, u64, u128, i64);

impl ItemKey for [u8; 16] {
    fn encode_item(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }

    fn decode_item(bytes: &[u8]) -> Result<Self, ItemDecodeError> {
        bytes.try_into().map_err(|_| ItemDecodeError)
    }
}

impl ItemKey for String {
    fn encode_item(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }

    fn decode_item(bytes: &[u8]) -> Result<Self, ItemDecodeError> {
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| ItemDecodeError)
    }
}

impl ItemKey for Bytes {
    fn encode_item(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }

    fn decode_item(bytes: &[u8]) -> Result<Self, ItemDecodeError> {
        Ok(Bytes::copy_from_slice(bytes))
    }
}
