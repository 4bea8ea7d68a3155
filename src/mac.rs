//! The keyed MAC that seals envelopes: HMAC-SHA256 with a 256-bit tag.
//!
//! Chosen over keyed BLAKE3 by measurement on the development machine (see `BENCHMARKS.md` and
//! the `mac` group of `benches/envelope.rs`). Only this file knows which MAC is used.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Length of a tag in bytes.
pub(crate) const TAG_LEN: usize = 32;

/// A MAC key with its HMAC inner and outer pads already absorbed, cloned per message.
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
