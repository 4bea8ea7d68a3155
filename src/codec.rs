//! Value codecs: how a namespace's values become the payload of an envelope.

#[cfg(feature = "serde")]
mod postcard;

use bytes::Bytes;

#[cfg(feature = "serde")]
pub use self::postcard::Postcard;

/// A value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("value codec failed: {0}")]
pub struct CodecError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

/// Turns values of type `V` into bytes and back.
///
/// Decoding runs only on payloads whose envelope verified for the requested key, schema and
/// namespace; a payload that still fails to decode is a counted violation and a miss.
/// Encoding runs on every remote write. In-process hits never encode or decode.
///
/// The crate provides [`RawBytes`] and, with the `serde` feature, `Postcard<T>`.
///
/// # Examples
///
/// A codec for UTF-8 text:
///
/// ```
/// use bytes::Bytes;
/// use scoped_cache::{Codec, CodecError};
///
/// struct Utf8;
/// impl Codec<String> for Utf8 {
///     fn encode(value: &String) -> Result<Bytes, CodecError> {
///         Ok(Bytes::copy_from_slice(value.as_bytes()))
///     }
///     fn decode(payload: Bytes) -> Result<String, CodecError> {
///         String::from_utf8(payload.to_vec()).map_err(|error| CodecError(Box::new(error)))
///     }
/// }
///
/// let bytes = Utf8::encode(&"motion at 09:14".to_string())?;
/// assert_eq!(Utf8::decode(bytes)?, "motion at 09:14");
/// assert!(Utf8::decode(Bytes::from_static(&[0xff])).is_err());
/// # Ok::<(), CodecError>(())
/// ```
pub trait Codec<V>: Send + Sync + 'static {
    /// Encodes a value.
    ///
    /// # Errors
    ///
    /// [`CodecError`] when the value cannot be represented.
    fn encode(value: &V) -> Result<Bytes, CodecError>;

    /// Decodes a payload.
    ///
    /// # Errors
    ///
    /// [`CodecError`] for bytes that are not a valid encoding; never panics.
    fn decode(payload: Bytes) -> Result<V, CodecError>;
}

/// The identity codec for [`Bytes`] values: zero-copy in both directions.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use scoped_cache::{Codec, RawBytes};
/// let bytes = Bytes::from_static(b"jpeg");
/// assert_eq!(RawBytes::decode(RawBytes::encode(&bytes)?)?, bytes);
/// # Ok::<(), scoped_cache::CodecError>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RawBytes;

impl Codec<Bytes> for RawBytes {
    fn encode(value: &Bytes) -> Result<Bytes, CodecError> {
        Ok(value.clone())
    }

    fn decode(payload: Bytes) -> Result<Bytes, CodecError> {
        Ok(payload)
    }
}
