//! Sealing keys by id: one signs, all verify (rotation without a cold cache).

use crate::mac::{MacKey, SealKeys};
use std::fmt;

/// Shortest secret accepted, in bytes (256 bits).
pub const MIN_SECRET_LEN: usize = 32;

/// The id of a MAC key, written into every envelope it seals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A key ring could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRingError {
    /// The secret is too short to be a MAC key.
    #[error("secret for key {id} is {len} bytes; use at least {MIN_SECRET_LEN} random bytes")]
    SecretTooShort {
        /// The key id given with the secret.
        id: KeyId,
        /// The secret's length.
        len: usize,
    },
    /// Two secrets were given for one key id.
    #[error("key id {0} is already in the ring")]
    DuplicateId(KeyId),
}

/// The sealing keys of a deployment: one signing key and any number of older verifying keys.
///
/// Each secret gives every key the envelope formats use, each derived for one primitive only
/// (see `docs/ENVELOPE.md`): the format 2 MAC keys, the key that encrypts
/// [`Sealing::Encrypted`](crate::envelope::Sealing::Encrypted) payloads, and the format 1 MAC
/// key, which is the secret itself.
///
/// Rotate by adding the new key as a verifier everywhere, then making it the signer, then
/// dropping the old one once its envelopes have expired. Envelopes sealed with a key id not in the
/// ring are refused as [`Freshness::UnknownKey`](crate::Freshness::UnknownKey) misses, never as
/// violations: a rotation that reaches a writer before a reader is normal operation.
/// Secrets never appear in `Debug` output.
///
/// # Examples
///
/// ```
/// use scoped_cache::{KeyId, KeyRing};
/// let ring = KeyRing::new(KeyId(2), &[7; 32])?.with_verifier(KeyId(1), &[9; 32])?;
/// assert_eq!(ring.signing_id(), KeyId(2));
/// assert_eq!(format!("{ring:?}"), "KeyRing { signing: KeyId(2), verifying: [KeyId(2), KeyId(1)] }");
/// assert!(KeyRing::new(KeyId(1), b"short").is_err());
/// # Ok::<(), scoped_cache::KeyRingError>(())
/// ```
#[derive(Clone)]
pub struct KeyRing {
    signing: KeyId,
    /// The signing key first; rings are small, so lookup is a scan.
    keys: Vec<(KeyId, SealKeys)>,
}

impl KeyRing {
    /// A ring whose key `id` signs and verifies.
    ///
    /// # Errors
    ///
    /// [`KeyRingError::SecretTooShort`] when `secret` has fewer than 32 bytes.
    pub fn new(id: KeyId, secret: &[u8]) -> Result<Self, KeyRingError> {
        Ok(Self {
            signing: id,
            keys: vec![(id, mac_key(id, secret)?)],
        })
    }

    /// Adds a key that verifies but does not sign.
    ///
    /// # Errors
    ///
    /// [`KeyRingError`] when the secret is too short or the id is already in the ring.
    pub fn with_verifier(mut self, id: KeyId, secret: &[u8]) -> Result<Self, KeyRingError> {
        if self.keys.iter().any(|(known, _)| *known == id) {
            return Err(KeyRingError::DuplicateId(id));
        }
        self.keys.push((id, mac_key(id, secret)?));
        Ok(self)
    }

    /// The id that seals new envelopes.
    pub fn signing_id(&self) -> KeyId {
        self.signing
    }

    /// The signing key's HMAC-SHA256 key of format 1 (the bus seals its messages with it).
    pub(crate) fn signing_key(&self) -> &MacKey {
        &self.signing_keys().v1
    }

    /// Key `id`'s HMAC-SHA256 key of format 1.
    pub(crate) fn verifying_key(&self, id: KeyId) -> Option<&MacKey> {
        self.verifying_keys(id).map(|keys| &keys.v1)
    }

    /// Every key of the signing secret.
    pub(crate) fn signing_keys(&self) -> &SealKeys {
        // `keys[0]` is the signing key by construction.
        &self.keys[0].1
    }

    /// Every key of secret `id`.
    pub(crate) fn verifying_keys(&self, id: KeyId) -> Option<&SealKeys> {
        self.keys
            .iter()
            .find(|(known, _)| *known == id)
            .map(|(_, key)| key)
    }
}

fn mac_key(id: KeyId, secret: &[u8]) -> Result<SealKeys, KeyRingError> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(KeyRingError::SecretTooShort {
            id,
            len: secret.len(),
        });
    }
    SealKeys::new(secret).ok_or(KeyRingError::SecretTooShort {
        id,
        len: secret.len(),
    })
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<KeyId> = self.keys.iter().map(|(id, _)| *id).collect();
        f.debug_struct("KeyRing")
            .field("signing", &self.signing)
            .field("verifying", &ids)
            .finish()
    }
}
