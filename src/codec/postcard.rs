//! `Postcard<T>`: any serde type, in postcard's stable, compact wire format (feature `serde`).

use super::{Codec, CodecError};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::marker::PhantomData;

/// The codec for any `Serialize + DeserializeOwned` value, in [postcard]'s wire format
/// (feature `serde`).
///
/// Postcard's format is stable across its 1.x releases and compact (varint integers, no field
/// names). It is not self-describing: a changed value type must come with a new
/// [`Namespace::SCHEMA`](crate::Namespace::SCHEMA), so old entries read as
/// [`Freshness::SchemaMismatch`](crate::Freshness::SchemaMismatch) misses instead of being
/// decoded as the new type.
///
/// Decoding is exact: bytes left over after the value are an error, as is any malformed or
/// truncated input (a counted [`Violation::Undecodable`](crate::Violation::Undecodable) miss in a
/// cache, never a panic).
///
/// [postcard]: https://docs.rs/postcard/1
///
/// # Examples
///
/// ```
/// use scoped_cache::{Codec, Postcard};
///
/// #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
/// struct Event {
///     id: u64,
///     label: String,
/// }
///
/// let event = Event { id: 9, label: "motion".into() };
/// let bytes = Postcard::<Event>::encode(&event)?;
/// assert_eq!(Postcard::<Event>::decode(bytes.clone())?, event);
/// assert!(Postcard::<Event>::decode(bytes.slice(..bytes.len() - 1)).is_err()); // truncated
/// # Ok::<(), scoped_cache::CodecError>(())
/// ```
pub struct Postcard<T>(PhantomData<fn() -> T>);

impl<T> Codec<T> for Postcard<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn encode(value: &T) -> Result<Bytes, CodecError> {
        ::postcard::to_stdvec(value)
            .map(Bytes::from)
            .map_err(|error| CodecError(Box::new(error)))
    }

    fn decode(payload: Bytes) -> Result<T, CodecError> {
        let (value, rest) = ::postcard::take_from_bytes::<T>(&payload)
            .map_err(|error| CodecError(Box::new(error)))?;
        if rest.is_empty() {
            Ok(value)
        } else {
            Err(CodecError(Box::new(TrailingBytes(rest.len()))))
        }
    }
}

impl<T> fmt::Debug for Postcard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Postcard")
    }
}

impl<T> Default for Postcard<T> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T> Clone for Postcard<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Postcard<T> {}

/// A payload longer than the value it encodes.
#[derive(Debug, thiserror::Error)]
#[error("{0} bytes after the value")]
struct TrailingBytes(usize);
