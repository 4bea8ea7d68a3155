//! The wire format: sealed envelopes, the only form in which a value leaves the process. Sans-IO.
//!
//! An envelope binds a payload to its full key (namespace, tenant, device, item), its schema, its
//! lifetime and the id of the ring key that sealed it: under a 256-bit MAC tag
//! ([`Sealing::Authenticated`]), or with the payload encrypted by XChaCha20-Poly1305 and
//! everything before it as associated data ([`Sealing::Encrypted`]). Opening it *for a requested
//! key* checks all of them; any mismatch is a [`Violation`], never a value.
//!
//! [`Cache`](crate::Cache) seals every value it writes to a
//! [`RemoteStore`](crate::store::RemoteStore) and opens every value it reads, so most programs
//! never use this module. It is for code that works with the stored bytes themselves: tools that
//! inspect or migrate a store, tests of a store, and implementations of the format in other
//! languages. Everything here is pure: no I/O, no clock (time is a parameter).
//!
//! - [`Envelope`] seals ([`Envelope::seal`], as its [`Sealing`] says) and opens ([`Envelope::open`],
//!   [`Envelope::open_details`] → [`Opened`]) under size limits; [`SealError`] says why a value
//!   could not be sealed, [`Malformed`] why bytes are not a well-formed envelope.
//!   [`Envelope::inspect`] → [`Inspected`] verifies an envelope without a typed key and says
//!   which key it was sealed for, for tools that read a store's entries (the audit).
//! - [`RawKey`] encodes and decodes the store key an envelope carries (prefix [`KEY_PREFIX`];
//!   [`KeyDecodeError`] when bytes are not a key), without a [`Namespace`] type; [`Escaped`]
//!   writes one as text.
//! - [`MAGIC`], [`FORMAT_VERSION`], [`MAX_KEY_LEN`], [`DEFAULT_MAX_PAYLOAD`] and [`NEVER`] are the
//!   format's constants.
//!
//! The byte layout, with test vectors, is specified in `docs/ENVELOPE.md`:
//!
//! ```text
//! magic(4) version(1) flags(1) schema(2) key_id(4) created_ms(8) expires_ms(8) key_len(4)
//! key(key_len) payload_len(4)                                       all integers big-endian
//!   flags 0: payload(payload_len) tag(32)
//!   flags 1: nonce(24) ciphertext(payload_len) aead_tag(16)
//! ```
//!
//! This build writes version 2 and, while [`Envelope::with_version_1`] allows it (the default),
//! also opens version 1.

use crate::clock::is_expired;
use crate::freshness::Freshness;
use crate::key::Key;
use crate::keyring::{KeyId, KeyRing};
use crate::mac::{AEAD_TAG_LEN, NONCE_LEN, TAG_LEN};
use crate::namespace::Namespace;
use crate::refusal::Refusal;
use crate::violation::Violation;
use bytes::Bytes;

pub use crate::clock::NEVER;
pub use crate::key::{Escaped, KEY_PREFIX, KeyDecodeError, RawKey};
pub use crate::violation::Malformed;

/// The first four bytes of every envelope. The high first byte keeps text from passing for one.
pub const MAGIC: [u8; 4] = [0x89, b'S', b'C', b'E'];
/// The format version this build writes. It also reads version 1, until
/// [`Envelope::with_version_1`] ends that.
pub const FORMAT_VERSION: u8 = 2;
/// The previous format version, read during a migration window.
const VERSION_1: u8 = 1;
/// The flag of an encrypted envelope (format 2).
const FLAG_ENCRYPTED: u8 = 0x01;
/// Longest encoded key an envelope carries, in bytes.
pub const MAX_KEY_LEN: usize = 4096;
/// Default largest payload: 8 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 8 << 20;

/// Bytes before the key: magic, version, flags, schema, key id, created, expires, key length.
const HEADER_LEN: usize = 4 + 1 + 1 + 2 + 4 + 8 + 8 + 4;
/// The smallest envelope: header, empty key, payload length, empty payload, tag.
const MIN_LEN: usize = HEADER_LEN + 4 + TAG_LEN;
/// What follows the payload length, besides the payload, in the longer of the two forms.
const MAX_TRAILER: usize = NONCE_LEN + AEAD_TAG_LEN;

/// How an envelope protects its payload. Both forms bind it to its full key, schema, lifetime and
/// key id, and both open only for exactly that key; see `docs/ENVELOPE.md` for what each
/// protects and what it does not.
///
/// Set per namespace with [`CacheBuilder::sealing`](crate::CacheBuilder::sealing), or on an
/// [`Envelope`] with [`Envelope::with_sealing`]. It says how values are *written*: an envelope
/// opens in either form, whatever the reader's setting.
///
/// # Examples
///
/// ```
/// # use scoped_cache::{DeviceId, Key, KeyId, KeyRing, Namespace, RawBytes, TenantId};
/// use scoped_cache::envelope::{Envelope, NEVER, Sealing};
/// # struct Thumbnails;
/// # impl Namespace for Thumbnails {
/// #     const NAME: &'static str = "thumb";
/// #     const SCHEMA: u16 = 1;
/// #     type Item = u64;
/// #     type Value = bytes::Bytes;
/// #     type Codec = RawBytes;
/// # }
/// let ring = KeyRing::new(KeyId(1), &[42; 32])?;
/// let key = Key::<Thumbnails>::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
/// let secret_jpeg = b"the inside of someone's home";
/// let envelope = Envelope::default().with_sealing(Sealing::Encrypted);
/// let sealed = envelope.seal(&key, secret_jpeg, 0, NEVER, &ring)?;
/// assert!(!sealed.windows(secret_jpeg.len()).any(|w| w == secret_jpeg)); // not in the clear
/// assert_eq!(Envelope::default().open(&sealed, &key, 1, &ring)?, &secret_jpeg[..]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Sealing {
    /// The payload in the clear under a 256-bit MAC tag (HMAC-SHA256 for short envelopes, keyed
    /// BLAKE3 for long ones). The default.
    #[default]
    Authenticated,
    /// The payload encrypted with XChaCha20-Poly1305 under a random 192-bit nonce, the full key
    /// header as associated data, a 128-bit tag. Whoever reads the store sees keys, lengths and
    /// times, not payloads. Sealing draws the nonce from the operating system.
    Encrypted,
}

/// A value could not be sealed.
///
/// # Examples
///
/// ```
/// # use scoped_cache::{DeviceId, Key, KeyId, KeyRing, Namespace, RawBytes, TenantId};
/// # use scoped_cache::envelope::{Envelope, NEVER, SealError};
/// # struct Thumbnails;
/// # impl Namespace for Thumbnails {
/// #     const NAME: &'static str = "thumb";
/// #     const SCHEMA: u16 = 1;
/// #     type Item = u64;
/// #     type Value = bytes::Bytes;
/// #     type Codec = RawBytes;
/// # }
/// let ring = KeyRing::new(KeyId(1), &[42; 32])?;
/// let key = Key::<Thumbnails>::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
/// let envelope = Envelope::with_max_payload(4);
/// let error = envelope.seal(&key, b"a large jpeg", 0, NEVER, &ring).unwrap_err();
/// assert_eq!(error, SealError::PayloadTooLarge { len: 12, limit: 4 });
/// assert!(error.to_string().contains("raise max_payload")); // says what to do
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The payload exceeds the configured maximum.
    #[error("payload of {len} bytes exceeds the limit of {limit}; raise max_payload or store less")]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The encoded key exceeds [`MAX_KEY_LEN`] (an item of several KiB).
    #[error("encoded key of {len} bytes exceeds the limit of {MAX_KEY_LEN}; use a shorter item")]
    KeyTooLong {
        /// Encoded key length.
        len: usize,
    },
    /// The operating system gave no random bytes for an encrypted envelope's nonce.
    #[error("no random bytes for a nonce from the operating system; check its entropy source")]
    NoRandomness,
}

/// An envelope that opened for the requested key; from [`Envelope::open_details`].
///
/// # Examples
///
/// ```
/// # use scoped_cache::{DeviceId, Key, KeyId, KeyRing, Namespace, RawBytes, TenantId};
/// # use scoped_cache::envelope::{Envelope, Opened};
/// # struct Thumbnails;
/// # impl Namespace for Thumbnails {
/// #     const NAME: &'static str = "thumb";
/// #     const SCHEMA: u16 = 1;
/// #     type Item = u64;
/// #     type Value = bytes::Bytes;
/// #     type Codec = RawBytes;
/// # }
/// let ring = KeyRing::new(KeyId(1), &[42; 32])?;
/// let key = Key::<Thumbnails>::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
/// let sealed = Envelope::default().seal(&key, b"jpeg", 1_000, 61_000, &ring)?;
/// let opened: Opened = Envelope::default().open_details(&sealed, &key, 2_000, &ring)?;
/// assert_eq!(opened.payload, "jpeg");
/// assert_eq!((opened.created_ms, opened.expires_ms), (1_000, 61_000));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Opened {
    /// The verified payload: a zero-copy slice of an authenticated envelope, the decrypted
    /// bytes of an encrypted one.
    pub payload: Bytes,
    /// When it was sealed, in ms since the Unix epoch.
    pub created_ms: u64,
    /// When it expires, in ms since the Unix epoch ([`NEVER`] if it does not).
    pub expires_ms: u64,
}

/// What an authentic envelope was sealed for; from [`Envelope::inspect`]. Every field is
/// authenticated by the envelope's tag. The payload is left out: a tool that inspects a store
/// has no use for another owner's data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Inspected {
    /// The key the envelope was sealed for.
    pub key: RawKey,
    /// The schema its namespace had when it was sealed.
    pub schema: u16,
    /// The id of the MAC key that sealed it.
    pub key_id: KeyId,
    /// When it was sealed, in ms since the Unix epoch.
    pub created_ms: u64,
    /// When it expires, in ms since the Unix epoch ([`NEVER`] if it does not).
    pub expires_ms: u64,
    /// The payload's length in bytes.
    pub payload_len: usize,
    /// The envelope's format version.
    pub version: u8,
    /// Whether its payload is encrypted.
    pub sealing: Sealing,
}

impl Inspected {
    /// Whether it has expired at `now_ms`, by the rule [`Envelope::open`] applies.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        is_expired(self.expires_ms, || now_ms)
    }
}

/// Seals and opens envelopes under size limits.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use scoped_cache::{DeviceId, Freshness, Key, KeyId, KeyRing, Namespace, RawBytes, Refusal, TenantId, Violation};
/// use scoped_cache::envelope::Envelope;
///
/// struct Thumbnails;
/// impl Namespace for Thumbnails {
///     const NAME: &'static str = "thumb";
///     const SCHEMA: u16 = 1;
///     type Item = u64;
///     type Value = Bytes;
///     type Codec = RawBytes;
/// }
///
/// let ring = KeyRing::new(KeyId(1), &[42; 32])?;
/// let mine = Key::<Thumbnails>::new(TenantId::from_u64(1), DeviceId::from_u64(2), 9);
/// let theirs = Key::<Thumbnails>::new(TenantId::from_u64(2), DeviceId::from_u64(1), 9);
/// let sealed = Envelope::default().seal(&mine, b"jpeg", 1_000, 61_000, &ring)?;
///
/// assert_eq!(Envelope::default().open(&sealed, &mine, 2_000, &ring)?, Bytes::from_static(b"jpeg"));
/// assert!(matches!(
///     Envelope::default().open(&sealed, &theirs, 2_000, &ring),
///     Err(Refusal::Violation(Violation::OwnerMismatch { .. }))
/// ));
/// assert!(matches!(
///     Envelope::default().open(&sealed, &mine, 61_000, &ring),
///     Err(Refusal::Freshness(Freshness::Expired { .. }))
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope {
    max_payload: usize,
    sealing: Sealing,
    version_1: bool,
}

impl Default for Envelope {
    /// 8 MiB payloads, [`Sealing::Authenticated`], version 1 still opened.
    fn default() -> Self {
        Self {
            max_payload: DEFAULT_MAX_PAYLOAD,
            sealing: Sealing::Authenticated,
            version_1: true,
        }
    }
}

impl Envelope {
    /// Limits payloads to `max_payload` bytes (at most `u32::MAX`; larger values are clamped).
    ///
    /// The limit applies both ways: a larger payload is not sealed, and an envelope whose
    /// payload (or whole length) exceeds it is refused as [`Malformed::TooLarge`] before its tag
    /// is computed.
    ///
    /// # Examples
    ///
    /// ```
    /// # use scoped_cache::{DeviceId, Key, KeyId, KeyRing, Namespace, RawBytes, Refusal, TenantId, Violation};
    /// # use scoped_cache::envelope::{Envelope, Malformed, NEVER, SealError};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let ring = KeyRing::new(KeyId(1), &[42; 32])?;
    /// let key = Key::<Thumbnails>::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    /// let small = Envelope::with_max_payload(4);
    /// assert_eq!(small.max_payload(), 4);
    /// assert!(matches!(small.seal(&key, b"12345", 0, NEVER, &ring), Err(SealError::PayloadTooLarge { .. })));
    /// let sealed = Envelope::default().seal(&key, b"12345", 0, NEVER, &ring)?;
    /// assert!(matches!(
    ///     small.open(&sealed, &key, 0, &ring),
    ///     Err(Refusal::Violation(Violation::Malformed { reason: Malformed::TooLarge { .. } }))
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_max_payload(max_payload: usize) -> Self {
        Self {
            max_payload: max_payload.min(u32::MAX as usize),
            ..Self::default()
        }
    }

    /// Seals with `sealing` from now on (default [`Sealing::Authenticated`]). Opening accepts
    /// both forms whatever this says.
    pub fn with_sealing(self, sealing: Sealing) -> Self {
        Self { sealing, ..self }
    }

    /// How [`seal`](Self::seal) protects payloads.
    pub fn sealing(&self) -> Sealing {
        self.sealing
    }

    /// Whether version 1 envelopes still open (default `true`): the migration window from
    /// version 1, which this build no longer writes
    /// ([`ClientBuilder::read_version_1`](crate::ClientBuilder::read_version_1) for a client). With `false`, an authentic version 1
    /// envelope of the requested key is refused as [`Freshness::RetiredVersion`] (a counted
    /// miss, not a violation); a forged or damaged one is still a violation.
    ///
    /// End the window once no writer seals version 1 and every version 1 value has expired
    /// (one TTL after the last such writer stopped).
    ///
    /// # Examples
    ///
    /// ```
    /// # use scoped_cache::{Freshness, Key, KeyId, KeyRing, Namespace, RawBytes, Refusal, TenantId, DeviceId};
    /// use scoped_cache::envelope::Envelope;
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let ring = KeyRing::new(KeyId(1), &[42; 32])?;
    /// let key = Key::<Thumbnails>::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    /// let sealed = Envelope::default().seal(&key, b"jpeg", 0, 1_000, &ring)?;
    /// assert_eq!(sealed[4], 2); // written as version 2 ...
    /// let window_closed = Envelope::default().with_version_1(false);
    /// assert_eq!(window_closed.open(&sealed, &key, 1, &ring)?, "jpeg"); // ... which always opens
    /// assert!(!window_closed.reads_version_1());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_version_1(self, open: bool) -> Self {
        Self {
            version_1: open,
            ..self
        }
    }

    /// Whether version 1 envelopes open.
    pub fn reads_version_1(&self) -> bool {
        self.version_1
    }

    /// The largest payload sealed or opened.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// The largest envelope opened; anything longer is refused before it is parsed.
    pub fn max_envelope_len(&self) -> usize {
        HEADER_LEN + MAX_KEY_LEN + 4 + self.max_payload + MAX_TRAILER
    }

    /// Seals `payload` for `key`, valid from `created_ms` until `expires_ms` (ms since the Unix
    /// epoch; [`NEVER`] for no expiry), with the ring's signing key.
    ///
    /// The envelope embeds the full key (namespace, owner, item) and the namespace's schema, so
    /// it opens only for exactly that key. It is format version 2, in the form
    /// [`sealing`](Self::sealing) says. No clock (time is a parameter) and no I/O, except that
    /// [`Sealing::Encrypted`] draws a 24-byte nonce from the operating system's random source.
    ///
    /// # Examples
    ///
    /// ```
    /// # use scoped_cache::{DeviceId, Key, KeyId, KeyRing, Namespace, RawBytes, TenantId};
    /// # use scoped_cache::envelope::{Envelope, MAGIC, NEVER};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let ring = KeyRing::new(KeyId(1), &[42; 32])?;
    /// let key = Key::<Thumbnails>::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    /// let sealed = Envelope::default().seal(&key, b"jpeg", 1_000, NEVER, &ring)?;
    /// assert!(sealed.starts_with(&MAGIC));
    /// assert_eq!(Envelope::default().open(&sealed, &key, u64::MAX, &ring)?, "jpeg"); // never expires
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`SealError`] when the payload or the encoded key exceeds its limit, or when an encrypted
    /// envelope gets no random nonce ([`SealError::NoRandomness`]).
    pub fn seal<N: Namespace>(
        &self,
        key: &Key<N>,
        payload: &[u8],
        created_ms: u64,
        expires_ms: u64,
        ring: &KeyRing,
    ) -> Result<Bytes, SealError> {
        let header = Header {
            version: FORMAT_VERSION,
            schema: N::SCHEMA,
            created_ms,
            expires_ms,
        };
        // The key is encoded straight into the envelope: no buffer of its own.
        let key_len = key.encoded_len();
        self.seal_key(header, key_len, |out| key.encode_into(out), payload, ring)
    }

    /// Opens `sealed` for `key` at time `now_ms` and returns the payload.
    ///
    /// The checks run in this order, and the first that fails is the error:
    ///
    /// 1. Structure, before any MAC is computed ([`Violation::Malformed`]): the length is at most
    ///    [`max_envelope_len`](Self::max_envelope_len) and at least the minimum, then the magic,
    ///    the format version (1 or 2), the flags (0, or 1 for encrypted in version 2), the key
    ///    length (at most [`MAX_KEY_LEN`]), the payload length (at most
    ///    [`max_payload`](Self::max_payload)), and that the lengths account for every byte
    ///    (truncated or trailing bytes).
    /// 2. The key id is in `ring` ([`Freshness::UnknownKey`]: a rotation not yet known here).
    /// 3. The tag verifies, in constant time, or the ciphertext decrypts under its tag
    ///    ([`Violation::BadTag`] either way). Nothing before this point is authenticated;
    ///    everything after it is.
    /// 4. The embedded key is `key`'s encoding: [`Violation::NamespaceMismatch`],
    ///    [`Violation::OwnerMismatch`] or [`Violation::ItemMismatch`], in that order of
    ///    precedence (or [`Malformed::BadKey`] if it does not decode).
    /// 5. A version 1 envelope opens only while [`reads_version_1`](Self::reads_version_1)
    ///    ([`Freshness::RetiredVersion`]).
    /// 6. The schema is the namespace's ([`Freshness::SchemaMismatch`]: another version's value).
    /// 7. It has not expired: `now_ms < expires_ms`, unless it is [`NEVER`]
    ///    ([`Freshness::Expired`]).
    ///
    /// Steps 1, 3 and 4 are integrity refusals ([`Refusal::Violation`]); steps 2, 5, 6 and 7 are
    /// freshness misses ([`Refusal::Freshness`]), see [`Refusal`] for what each class means.
    /// An encrypted envelope's payload is decrypted at step 3 and returned only if every later
    /// step passes.
    ///
    /// # Examples
    ///
    /// ```
    /// # use scoped_cache::{DeviceId, Freshness, Key, KeyId, KeyRing, Namespace, RawBytes, Refusal, TenantId, Violation};
    /// # use scoped_cache::envelope::Envelope;
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let ring = KeyRing::new(KeyId(1), &[42; 32])?;
    /// let alices = Key::<Thumbnails>::new(TenantId::new("alice")?, DeviceId::new("cam-7")?, 9);
    /// let bobs = Key::<Thumbnails>::new(TenantId::new("bob")?, DeviceId::new("cam-7")?, 9);
    /// let envelope = Envelope::default();
    /// let sealed = envelope.seal(&alices, b"jpeg", 1_000, 61_000, &ring)?;
    /// assert_eq!(envelope.open(&sealed, &alices, 2_000, &ring)?, "jpeg");
    ///
    /// // Bob's key never opens Alice's value: a violation naming both owners, not a miss.
    /// let Err(Refusal::Violation(Violation::OwnerMismatch { expected, found })) = envelope.open(&sealed, &bobs, 2_000, &ring) else {
    ///     panic!("expected an owner mismatch");
    /// };
    /// assert_eq!((expected, found), (bobs.owner().clone(), alices.owner().clone()));
    ///
    /// // A flipped payload byte fails the tag before anything else is believed.
    /// let mut tampered = sealed.to_vec();
    /// let last_payload_byte = tampered.len() - 33;
    /// tampered[last_payload_byte] ^= 1;
    /// assert_eq!(envelope.open(&tampered.into(), &alices, 2_000, &ring), Err(Violation::BadTag.into()));
    ///
    /// // Another secret under the same key id: the tag does not verify either.
    /// let other_ring = KeyRing::new(KeyId(1), &[7; 32])?;
    /// assert_eq!(envelope.open(&sealed, &alices, 2_000, &other_ring), Err(Violation::BadTag.into()));
    ///
    /// // Expiry is a freshness miss: the owner's own value, too old to use.
    /// assert!(matches!(envelope.open(&sealed, &alices, 61_000, &ring), Err(Refusal::Freshness(Freshness::Expired { .. }))));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A [`Refusal`] unless the envelope is well formed, sealed by a key in `ring`, untampered,
    /// and written for exactly this namespace, schema, owner and item, and not expired (checked
    /// in the order above).
    pub fn open<N: Namespace>(
        &self,
        sealed: &Bytes,
        key: &Key<N>,
        now_ms: u64,
        ring: &KeyRing,
    ) -> Result<Bytes, Refusal> {
        self.open_details(sealed, key, now_ms, ring)
            .map(|opened| opened.payload)
    }

    /// Like [`Envelope::open`], also returning the envelope's timestamps (the same checks, in
    /// the same order).
    ///
    /// # Examples
    ///
    /// ```
    /// # use scoped_cache::{DeviceId, Key, KeyId, KeyRing, Namespace, RawBytes, TenantId};
    /// # use scoped_cache::envelope::Envelope;
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let ring = KeyRing::new(KeyId(1), &[42; 32])?;
    /// let key = Key::<Thumbnails>::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    /// let sealed = Envelope::default().seal(&key, b"jpeg", 1_000, 61_000, &ring)?;
    /// let opened = Envelope::default().open_details(&sealed, &key, 2_000, &ring)?;
    /// assert_eq!(opened.payload, "jpeg");
    /// assert_eq!(opened.expires_ms - 2_000, 59_000); // time left, e.g. for a TTL downstream
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Envelope::open`].
    pub fn open_details<N: Namespace>(
        &self,
        sealed: &Bytes,
        key: &Key<N>,
        now_ms: u64,
        ring: &KeyRing,
    ) -> Result<Opened, Refusal> {
        // The embedded key is compared with `key` in place: building `key`'s encoding to
        // compare with was ~3% of opening a 1 KiB envelope.
        self.open_checked(
            sealed,
            key,
            |embedded| key.is_encoded_by(embedded),
            now_ms,
            ring,
        )
    }

    /// Verifies `sealed` without a key to open it for, and says what it was sealed for: the
    /// tool for reading a store whose namespaces this program has no types for (an audit of
    /// the shared keyspace).
    ///
    /// It runs steps 1 to 3 of [`Envelope::open`] (structure, key id, tag) and then decodes
    /// the embedded key; it checks neither the key, the schema nor the expiry, and returns no
    /// payload. Whoever calls it decides what the envelope should have been sealed for, and
    /// compares: an entry of a store is valid only when [`Inspected::key`] is the key it is
    /// stored under and it has not expired ([`Inspected::is_expired`]).
    ///
    /// # Examples
    ///
    /// ```
    /// # use scoped_cache::{DeviceId, Key, KeyId, KeyRing, Namespace, RawBytes, TenantId};
    /// # use scoped_cache::envelope::{Envelope, RawKey};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let ring = KeyRing::new(KeyId(1), &[42; 32])?;
    /// let alices = Key::<Thumbnails>::new(TenantId::new("alice")?, DeviceId::new("cam-7")?, 9);
    /// let sealed = Envelope::default().seal(&alices, b"jpeg", 1_000, 61_000, &ring)?;
    ///
    /// // Found under bob's store key: what is inside is authentic, and alice's.
    /// let stored_under = RawKey::decode(&Key::<Thumbnails>::new(TenantId::new("bob")?, DeviceId::new("cam-7")?, 9).encode())?;
    /// let inspected = Envelope::default().inspect(&sealed, &ring)?;
    /// assert_eq!(&inspected.key.owner, alices.owner());
    /// assert_ne!(inspected.key, stored_under);
    /// assert_eq!((inspected.schema, inspected.key_id, inspected.payload_len), (1, KeyId(1), 4));
    /// assert!(inspected.is_expired(61_000));
    ///
    /// // Another secret: nothing inside is believed.
    /// let other_ring = KeyRing::new(KeyId(1), &[7; 32])?;
    /// assert!(Envelope::default().inspect(&sealed, &other_ring).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Violation::Malformed`] for bytes that are not a well-formed envelope (and
    /// [`Malformed::BadKey`] for an authentic one whose embedded key does not decode),
    /// [`Freshness::UnknownKey`] for a key id not in `ring`, [`Violation::BadTag`] when the tag
    /// does not verify.
    pub fn inspect(&self, sealed: &[u8], ring: &KeyRing) -> Result<Inspected, Refusal> {
        let (fields, _) = self.authenticate(sealed, ring)?;
        let embedded_key = &sealed[HEADER_LEN..HEADER_LEN + fields.key_len];
        let key = RawKey::decode(embedded_key).map_err(|_| Violation::Malformed {
            reason: Malformed::BadKey,
        })?;
        Ok(Inspected {
            key,
            schema: fields.schema,
            key_id: fields.key_id,
            created_ms: fields.created_ms,
            expires_ms: fields.expires_ms,
            payload_len: fields.payload_len,
            version: fields.version,
            sealing: if fields.encrypted {
                Sealing::Encrypted
            } else {
                Sealing::Authenticated
            },
        })
    }

    /// Seals `payload` for the key whose encoding is `encoded_key`.
    pub(crate) fn seal_encoded(
        &self,
        schema: u16,
        encoded_key: &[u8],
        payload: &[u8],
        created_ms: u64,
        expires_ms: u64,
        ring: &KeyRing,
    ) -> Result<Bytes, SealError> {
        let header = Header {
            version: FORMAT_VERSION,
            schema,
            created_ms,
            expires_ms,
        };
        let write_key = |out: &mut Vec<u8>| out.extend_from_slice(encoded_key);
        self.seal_key(header, encoded_key.len(), write_key, payload, ring)
    }

    /// Seals `payload` for the key that `write_key` appends (`key_len` bytes), in the form
    /// [`sealing`](Self::sealing) says: an encrypted envelope draws its nonce here.
    fn seal_key(
        &self,
        header: Header,
        key_len: usize,
        write_key: impl FnOnce(&mut Vec<u8>),
        payload: &[u8],
        ring: &KeyRing,
    ) -> Result<Bytes, SealError> {
        let nonce = match self.sealing {
            Sealing::Authenticated => None,
            Sealing::Encrypted => {
                let mut nonce = [0; NONCE_LEN];
                getrandom::fill(&mut nonce).map_err(|_| SealError::NoRandomness)?;
                Some(nonce)
            }
        };
        self.write(header, key_len, write_key, payload, nonce, ring)
    }

    /// Writes an envelope for the key that `write_key` appends (`key_len` bytes, which sizes
    /// the allocation; the header records what was written): with a `nonce`, encrypted under
    /// it (format 2 only), else under a MAC tag of `header.version`.
    pub(crate) fn write(
        &self,
        header: Header,
        key_len: usize,
        write_key: impl FnOnce(&mut Vec<u8>),
        payload: &[u8],
        nonce: Option<[u8; NONCE_LEN]>,
        ring: &KeyRing,
    ) -> Result<Bytes, SealError> {
        if key_len > MAX_KEY_LEN {
            return Err(SealError::KeyTooLong { len: key_len });
        }
        let too_large = SealError::PayloadTooLarge {
            len: payload.len(),
            limit: self.max_payload,
        };
        if payload.len() > self.max_payload {
            return Err(too_large);
        }
        let keys = ring.signing_keys();
        let (flags, trailer) = match nonce {
            None => (0, TAG_LEN),
            Some(_) => (FLAG_ENCRYPTED, MAX_TRAILER),
        };
        let mut fixed = [0; HEADER_LEN];
        fixed[..4].copy_from_slice(&MAGIC);
        fixed[4] = header.version;
        fixed[5] = flags;
        fixed[6..8].copy_from_slice(&header.schema.to_be_bytes());
        fixed[8..12].copy_from_slice(&ring.signing_id().0.to_be_bytes());
        fixed[12..20].copy_from_slice(&header.created_ms.to_be_bytes());
        fixed[20..28].copy_from_slice(&header.expires_ms.to_be_bytes());
        // Exactly the envelope's length: `Bytes::from` then takes the vector as it is.
        let mut out = Vec::with_capacity(HEADER_LEN + key_len + 4 + payload.len() + trailer);
        out.extend_from_slice(&fixed);
        write_key(&mut out);
        let written = out.len() - HEADER_LEN;
        if written > MAX_KEY_LEN {
            return Err(SealError::KeyTooLong { len: written });
        }
        // Both lengths were checked against limits that fit a u32.
        out[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&(written as u32).to_be_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        match nonce {
            None => {
                out.extend_from_slice(payload);
                let tag = if header.version == VERSION_1 {
                    keys.v1.tag(&out)
                } else {
                    keys.tag(&out)
                };
                out.extend_from_slice(&tag);
            }
            Some(nonce) => {
                // Everything before the nonce is the associated data.
                let associated_len = out.len();
                out.extend_from_slice(&nonce);
                out.extend_from_slice(payload);
                let (associated, rest) = out.split_at_mut(associated_len);
                let tag = keys
                    .aead
                    .encrypt(&nonce, associated, &mut rest[NONCE_LEN..])
                    .ok_or(too_large)?;
                out.extend_from_slice(&tag);
            }
        }
        Ok(Bytes::from(out))
    }

    /// Opens `sealed` for `key`, whose encoding the caller already has in `encoded_key`.
    pub(crate) fn open_encoded<N: Namespace>(
        &self,
        sealed: &Bytes,
        key: &Key<N>,
        encoded_key: &[u8],
        now_ms: u64,
        ring: &KeyRing,
    ) -> Result<Opened, Refusal> {
        self.open_checked(
            sealed,
            key,
            |embedded| embedded == encoded_key,
            now_ms,
            ring,
        )
    }

    /// Opens `sealed` for `key`; `is_key` tells whether an embedded key's bytes are `key`'s
    /// encoding.
    fn open_checked<N: Namespace>(
        &self,
        sealed: &Bytes,
        key: &Key<N>,
        is_key: impl FnOnce(&[u8]) -> bool,
        now_ms: u64,
        ring: &KeyRing,
    ) -> Result<Opened, Refusal> {
        let (fields, plaintext) = self.authenticate(sealed, ring)?;
        // Authenticated from here on: the fields may be reported.
        let embedded_key = &sealed[HEADER_LEN..HEADER_LEN + fields.key_len];
        if !is_key(embedded_key) {
            return Err(key_mismatch::<N>(embedded_key, key).into());
        }
        if fields.version != FORMAT_VERSION && !self.version_1 {
            return Err(Freshness::RetiredVersion {
                version: fields.version,
            }
            .into());
        }
        if fields.schema != N::SCHEMA {
            return Err(Freshness::SchemaMismatch {
                expected: N::SCHEMA,
                found: fields.schema,
            }
            .into());
        }
        if is_expired(fields.expires_ms, || now_ms) {
            return Err(Freshness::Expired {
                expires_ms: fields.expires_ms,
                now_ms,
            }
            .into());
        }
        let payload = match plaintext {
            Some(plaintext) => Bytes::from(plaintext),
            None => sealed.slice(fields.payload_start..fields.payload_end()),
        };
        Ok(Opened {
            payload,
            created_ms: fields.created_ms,
            expires_ms: fields.expires_ms,
        })
    }

    /// Checks the structure, finds the keys and verifies the tag (decrypting an encrypted
    /// payload, returned here): steps 1 to 3 of [`Envelope::open`], the part that needs no
    /// requested key.
    fn authenticate(
        &self,
        sealed: &[u8],
        ring: &KeyRing,
    ) -> Result<(Fields, Option<Vec<u8>>), Refusal> {
        let fields = self.parse(sealed)?;
        let keys = ring
            .verifying_keys(fields.key_id)
            .ok_or(Freshness::UnknownKey {
                key_id: fields.key_id,
            })?;
        let (signed, tag) = sealed.split_at(fields.payload_end());
        if fields.encrypted {
            let (associated, nonce) =
                signed[..fields.payload_start].split_at(fields.payload_start - NONCE_LEN);
            let ciphertext = &signed[fields.payload_start..];
            let plaintext = keys
                .aead
                .decrypt(nonce, associated, ciphertext, tag)
                .ok_or(Violation::BadTag)?;
            return Ok((fields, Some(plaintext)));
        }
        let authentic = if fields.version == VERSION_1 {
            keys.v1.verify(signed, tag)
        } else {
            keys.verify(signed, tag)
        };
        if !authentic {
            return Err(Violation::BadTag.into());
        }
        Ok((fields, None))
    }

    /// Checks the structure and reads the fixed fields. Nothing here is authenticated yet.
    fn parse(&self, sealed: &[u8]) -> Result<Fields, Violation> {
        let malformed = |reason| Violation::Malformed { reason };
        let limit = self.max_envelope_len();
        if sealed.len() > limit {
            return Err(malformed(Malformed::TooLarge {
                len: sealed.len(),
                limit,
            }));
        }
        if sealed.len() < MIN_LEN {
            return Err(malformed(Malformed::Truncated));
        }
        if sealed[..4] != MAGIC {
            return Err(malformed(Malformed::BadMagic));
        }
        let version = sealed[4];
        if version != FORMAT_VERSION && version != VERSION_1 {
            return Err(malformed(Malformed::UnsupportedVersion(version)));
        }
        let encrypted = match (version, sealed[5]) {
            (_, 0) => false,
            (FORMAT_VERSION, FLAG_ENCRYPTED) => true,
            _ => return Err(malformed(Malformed::ReservedFlags)),
        };
        let (nonce_len, tag_len) = if encrypted {
            (NONCE_LEN, AEAD_TAG_LEN)
        } else {
            (0, TAG_LEN)
        };
        let key_len = be_u32(sealed, 28) as usize;
        if key_len > MAX_KEY_LEN {
            return Err(malformed(Malformed::TooLarge {
                len: key_len,
                limit: MAX_KEY_LEN,
            }));
        }
        // MIN_LEN covers an empty key, so this offset plus 4 is within `sealed` when it is short
        // enough to hold the key; otherwise the envelope is truncated.
        let payload_len_at = HEADER_LEN + key_len;
        if payload_len_at + 4 + nonce_len + tag_len > sealed.len() {
            return Err(malformed(Malformed::Truncated));
        }
        let payload_len = be_u32(sealed, payload_len_at) as usize;
        if payload_len > self.max_payload {
            return Err(malformed(Malformed::TooLarge {
                len: payload_len,
                limit: self.max_payload,
            }));
        }
        let payload_start = payload_len_at + 4 + nonce_len;
        let expected_len = payload_start + payload_len + tag_len;
        if expected_len > sealed.len() {
            return Err(malformed(Malformed::Truncated));
        }
        if expected_len < sealed.len() {
            return Err(malformed(Malformed::TrailingBytes));
        }
        Ok(Fields {
            version,
            encrypted,
            schema: u16::from_be_bytes([sealed[6], sealed[7]]),
            key_id: KeyId(be_u32(sealed, 8)),
            created_ms: be_u64(sealed, 12),
            expires_ms: be_u64(sealed, 20),
            key_len,
            payload_start,
            payload_len,
        })
    }
}

/// The header fields a writer chooses (the key id is the ring's signing id).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub(crate) version: u8,
    pub(crate) schema: u16,
    pub(crate) created_ms: u64,
    pub(crate) expires_ms: u64,
}

/// The fixed fields of a structurally valid envelope.
struct Fields {
    version: u8,
    encrypted: bool,
    schema: u16,
    key_id: KeyId,
    created_ms: u64,
    expires_ms: u64,
    key_len: usize,
    /// Where the payload (or its ciphertext) starts.
    payload_start: usize,
    payload_len: usize,
}

impl Fields {
    /// Where the payload (or its ciphertext) ends and the tag starts.
    fn payload_end(&self) -> usize {
        self.payload_start + self.payload_len
    }
}

/// The expiry a sealed value claims, *unverified*: for the test doubles, which hand back values
/// a reader must find expired (the store's own TTL ends earlier, by the expiry margin).
#[cfg(feature = "testing")]
pub(crate) fn claimed_expiry(sealed: &[u8]) -> Option<u64> {
    Envelope::default()
        .parse(sealed)
        .ok()
        .map(|fields| fields.expires_ms)
}

/// Classifies an authentic envelope written for another key.
fn key_mismatch<N: Namespace>(embedded_key: &[u8], expected: &Key<N>) -> Violation {
    let Ok(found) = RawKey::decode(embedded_key) else {
        return Violation::Malformed {
            reason: Malformed::BadKey,
        };
    };
    if found.namespace != N::NAME {
        Violation::NamespaceMismatch {
            expected: N::NAME,
            found: found.namespace,
        }
    } else if &found.owner != expected.owner() {
        Violation::OwnerMismatch {
            expected: expected.owner().clone(),
            found: found.owner,
        }
    } else {
        Violation::ItemMismatch
    }
}

/// Reads a big-endian u32 at `at`; callers have checked `at + 4 <= bytes.len()`.
fn be_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(word)
}

/// Reads a big-endian u64 at `at`; callers have checked `at + 8 <= bytes.len()`.
fn be_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(word)
}
