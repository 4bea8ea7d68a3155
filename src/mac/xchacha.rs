//! XChaCha20-Poly1305, built as its specification (draft-irtf-cfrg-xchacha-03, §2.3) builds it:
//! HChaCha20 of the key and the nonce's first 16 bytes gives a subkey, which seals with
//! ChaCha20-Poly1305 (RFC 8439) under four zero bytes and the nonce's last 8 bytes.
//!
//! HChaCha20 comes from RustCrypto's `chacha20`, ChaCha20-Poly1305 from `ring`. RustCrypto's
//! own `XChaCha20Poly1305` gives the same bytes (the tests hold it as the reference), but its
//! `poly1305` (0.9) sets up its AVX2 backend in ~1.1 µs for every message: four times ring's
//! whole seal of a 64-byte payload, and still twice ring's time at 16 KiB
//! (`benches/envelope.rs`, `BENCHMARKS.md`).

use super::{AEAD_TAG_LEN, NONCE_LEN};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};

/// XChaCha20-Poly1305 under one key: a 24-byte nonce, a 16-byte tag.
#[derive(Clone)]
pub(crate) struct XChaCha20Poly1305 {
    key: chacha20::Key,
}

impl XChaCha20Poly1305 {
    pub(crate) fn new(key: [u8; 32]) -> Self {
        Self { key: key.into() }
    }

    /// The ChaCha20-Poly1305 key and nonce that `nonce` selects under this key. `None` never
    /// happens: the lengths are fixed (16 + 8 nonce bytes, a 32-byte subkey).
    fn select(&self, nonce: &[u8; NONCE_LEN]) -> Option<(LessSafeKey, Nonce)> {
        let (prefix, suffix) = nonce.split_first_chunk::<16>()?;
        let subkey = chacha20::hchacha::<chacha20::R20>(&self.key, &(*prefix).into());
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &subkey).ok()?;
        let mut short_nonce = [0; 12];
        short_nonce[4..].copy_from_slice(suffix);
        Some((
            LessSafeKey::new(unbound),
            Nonce::assume_unique_for_key(short_nonce),
        ))
    }

    /// Encrypts `buffer` in place, binding `associated_data`; returns the tag. `None` only for
    /// a message over the cipher's limit (256 GiB), which the payload limit rules out.
    pub(crate) fn encrypt(
        &self,
        nonce: &[u8; NONCE_LEN],
        associated_data: &[u8],
        buffer: &mut [u8],
    ) -> Option<[u8; AEAD_TAG_LEN]> {
        let (key, nonce) = self.select(nonce)?;
        let tag = key
            .seal_in_place_separate_tag(nonce, Aad::from(associated_data), buffer)
            .ok()?;
        tag.as_ref().try_into().ok()
    }

    /// Verifies `tag` over `associated_data` and `ciphertext` and, only if it holds, returns the
    /// plaintext; `None` when anything was altered, another key sealed it, or the nonce or the
    /// tag has the wrong length.
    pub(crate) fn decrypt(
        &self,
        nonce: &[u8],
        associated_data: &[u8],
        ciphertext: &[u8],
        tag: &[u8],
    ) -> Option<Vec<u8>> {
        let (key, nonce) = self.select(nonce.try_into().ok()?)?;
        let tag = Tag::from(<[u8; AEAD_TAG_LEN]>::try_from(tag).ok()?);
        let mut buffer = ciphertext.to_vec();
        key.open_in_place_separate_tag(nonce, Aad::from(associated_data), tag, &mut buffer, 0..)
            .ok()?;
        Some(buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20poly1305::{AeadInOut, KeyInit, XNonce};
    use proptest::prelude::*;

    proptest! {
        /// Byte for byte what RustCrypto's `XChaCha20Poly1305` seals, and it opens what that
        /// seals; any flipped bit of the ciphertext, the associated data or the tag is refused.
        #[test]
        fn seals_and_opens_as_the_reference_does(
            key: [u8; 32],
            nonce: [u8; NONCE_LEN],
            associated_data in proptest::collection::vec(any::<u8>(), 0..300),
            plaintext in proptest::collection::vec(any::<u8>(), 0..2000),
            flip: (usize, u8),
        ) {
            let ours = XChaCha20Poly1305::new(key);
            let reference = chacha20poly1305::XChaCha20Poly1305::new_from_slice(&key).unwrap();
            let mut sealed = plaintext.clone();
            let tag = ours.encrypt(&nonce, &associated_data, &mut sealed).unwrap();
            let mut expected = plaintext.clone();
            let expected_tag = reference
                .encrypt_inout_detached(&XNonce::from(nonce), &associated_data, expected.as_mut_slice().into())
                .unwrap();
            prop_assert_eq!(&sealed, &expected);
            prop_assert_eq!(&tag[..], &expected_tag[..]);
            prop_assert_eq!(ours.decrypt(&nonce, &associated_data, &sealed, &tag), Some(plaintext));

            // One bit flipped anywhere in what the tag covers, or in the tag itself.
            let (mut ciphertext, mut ad, mut bad_tag) = (sealed, associated_data, tag);
            let covered = ciphertext.len() + ad.len() + AEAD_TAG_LEN;
            let (at, bit) = (flip.0 % covered, 1 << (flip.1 % 8));
            if at < ciphertext.len() {
                ciphertext[at] ^= bit;
            } else if at < ciphertext.len() + ad.len() {
                ad[at - ciphertext.len()] ^= bit;
            } else {
                bad_tag[at - ciphertext.len() - ad.len()] ^= bit;
            }
            prop_assert_eq!(ours.decrypt(&nonce, &ad, &ciphertext, &bad_tag), None);
        }
    }

    /// draft-irtf-cfrg-xchacha-03, appendix A.3.1: the published XChaCha20-Poly1305 vector, sealed
    /// and opened.
    #[test]
    fn seals_and_opens_the_drafts_test_vector() {
        let hex = |s: &str| -> Vec<u8> {
            let s: String = s.split_whitespace().collect();
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let key: [u8; 32] = hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
            .try_into()
            .unwrap();
        let nonce: [u8; 24] = hex("404142434445464748494a4b4c4d4e4f5051525354555657")
            .try_into()
            .unwrap();
        let associated_data = hex("50515253c0c1c2c3c4c5c6c7");
        let plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let aead = XChaCha20Poly1305::new(key);
        let mut buffer = plaintext.to_vec();
        let tag = aead.encrypt(&nonce, &associated_data, &mut buffer).unwrap();
        let ciphertext = hex(
            "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb
             731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452
             2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9
             21f9664c97637da9768812f615c68b13b52e",
        );
        assert_eq!(buffer, ciphertext);
        assert_eq!(tag.to_vec(), hex("c0875924c1c7987947deafd8780acf49"));
        let opened = aead.decrypt(&nonce, &associated_data, &ciphertext, &tag);
        assert_eq!(opened.as_deref(), Some(&plaintext[..]));
    }
}
