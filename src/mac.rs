//! The primitives that seal envelopes, and the keys each one gets from a ring secret.
//!
//! - Format 1 (read during a migration window, and the invalidation bus's messages):
//!   HMAC-SHA256 keyed with the secret itself, 256-bit tag.
//! - Format 2, authenticated: HMAC-SHA256 for MAC inputs shorter than [`BLAKE3_FROM`] bytes,
//!   keyed BLAKE3 from there on; both 256-bit tags, each under its own derived key. The split
//!   is where keyed BLAKE3 overtakes HMAC-SHA256 (`benches/envelope.rs`, `BENCHMARKS.md`).
//! - Format 2, encrypted: XChaCha20-Poly1305 ([`xchacha`]) under a third derived key.
//!
//! Derived keys are `BLAKE3::derive_key(context, secret)` with one context string per use, so no
//! two primitives ever share a key. Only this module knows which primitives are used.

mod xchacha;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use xchacha::XChaCha20Poly1305;

/// Length of a MAC tag in bytes (both formats, both MACs).
pub(crate) const TAG_LEN: usize = 32;
/// Length of an XChaCha20-Poly1305 nonce.
pub(crate) const NONCE_LEN: usize = 24;
/// Length of a Poly1305 tag.
pub(crate) const AEAD_TAG_LEN: usize = 16;
/// Format 2 tags MAC inputs of this many bytes or more with keyed BLAKE3, shorter ones with
/// HMAC-SHA256.
pub(crate) const BLAKE3_FROM: usize = 2048;

/// The `derive_key` contexts: one per primitive of format 2. Never reuse or change one.
const HMAC_CONTEXT: &str = "scoped-cache 2026-12-02 envelope v2 HMAC-SHA256 key";
const BLAKE3_CONTEXT: &str = "scoped-cache 2026-12-02 envelope v2 keyed BLAKE3 key";
const AEAD_CONTEXT: &str = "scoped-cache 2026-12-02 envelope v2 XChaCha20-Poly1305 key";

/// An HMAC-SHA256 key with its inner and outer pads already absorbed, cloned per message.
#[derive(Clone)]
pub(crate) struct MacKey(Hmac<Sha256>);

impl MacKey {
    /// `None` only if HMAC refused the key length, which it never does (any length is valid).
    pub(crate) fn new(secret: &[u8]) -> Option<Self> {
        Hmac::new_from_slice(secret).ok().map(Self)
    }

    pub(crate) fn tag(&self, message: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.0.clone();
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    /// Constant-time comparison of `tag` with the tag of `message`.
    pub(crate) fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.0.clone();
        mac.update(message);
        mac.verify_slice(tag).is_ok()
    }
}

/// Every key that one ring secret gives: format 1's, and format 2's three derived keys.
#[derive(Clone)]
pub(crate) struct SealKeys {
    /// HMAC-SHA256 under the secret itself: format 1 and the bus.
    pub(crate) v1: MacKey,
    hmac: MacKey,
    blake3: [u8; 32],
    /// Format 2's encryption.
    pub(crate) aead: XChaCha20Poly1305,
}

impl SealKeys {
    /// `None` only if a primitive refused a key length, which none does (checked lengths).
    pub(crate) fn new(secret: &[u8]) -> Option<Self> {
        let aead_key = blake3::derive_key(AEAD_CONTEXT, secret);
        Some(Self {
            v1: MacKey::new(secret)?,
            hmac: MacKey::new(&blake3::derive_key(HMAC_CONTEXT, secret))?,
            blake3: blake3::derive_key(BLAKE3_CONTEXT, secret),
            aead: XChaCha20Poly1305::new(aead_key),
        })
    }

    /// Format 2's tag of `message`.
    pub(crate) fn tag(&self, message: &[u8]) -> [u8; TAG_LEN] {
        if message.len() < BLAKE3_FROM {
            self.hmac.tag(message)
        } else {
            *blake3::keyed_hash(&self.blake3, message).as_bytes()
        }
    }

    /// Constant-time check of format 2's tag of `message`.
    pub(crate) fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        if message.len() < BLAKE3_FROM {
            return self.hmac.verify(message, tag);
        }
        let Ok(tag) = <[u8; TAG_LEN]>::try_from(tag) else {
            return false;
        };
        // `blake3::Hash`'s equality is constant-time.
        blake3::keyed_hash(&self.blake3, message) == blake3::Hash::from_bytes(tag)
    }
}
