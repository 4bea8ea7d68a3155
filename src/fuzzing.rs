//! Fuzzing entry points, compiled only with `--cfg fuzzing` (as `cargo fuzz` builds).
//!
//! Each function takes the fuzzer's bytes and asserts an invariant of the format; the targets in
//! `fuzz/fuzz_targets/` are one-line calls into them, so this logic type-checks with the crate
//! and can use crate-private fields. A panic here is a bug in the crate (or in the invariant).
//!
//! The fixed key and ring of [`envelope_open`] are those of test vector 1 in `docs/ENVELOPE.md`,
//! so that vector (committed as a seed) opens, and the other seeds sealed with the same secret
//! reach every post-tag check.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use crate::RawBytes;
use crate::envelope::{Envelope, Header, MAX_KEY_LEN, NEVER, SealError, Sealing};
use crate::freshness::Freshness;
use crate::id::{DeviceId, IdRepr, TenantId};
use crate::key::{Key, Owner, RawKey};
use crate::keyring::{KeyId, KeyRing};
use crate::mac::NONCE_LEN;
use crate::namespace::Namespace;
use crate::refusal::Refusal;
use crate::violation::Violation;
use bytes::Bytes;
use std::sync::OnceLock;

/// The secret of test vector 1: bytes `0x00..=0x1f`.
pub const SECRET: [u8; 32] = {
    let mut secret = [0; 32];
    let mut i = 0;
    while i < 32 {
        secret[i] = i as u8;
        i += 1;
    }
    secret
};

/// The key id of test vector 1.
pub const KEY_ID: KeyId = KeyId(1);

/// The time at which [`envelope_open`] opens: vector 1's `created_ms` plus one second.
pub const NOW_MS: u64 = 1_700_000_001_000;

/// Namespace `thumb`, schema 1, `u64` items (test vector 1).
#[derive(Debug)]
pub struct Thumb;
impl Namespace for Thumb {
    const NAME: &'static str = "thumb";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = Bytes;
    type Codec = RawBytes;
}

/// Namespace `event-meta`, schema 3, text items (test vector 2).
#[derive(Debug)]
pub struct EventMeta;
impl Namespace for EventMeta {
    const NAME: &'static str = "event-meta";
    const SCHEMA: u16 = 3;
    type Item = String;
    type Value = Bytes;
    type Codec = RawBytes;
}

/// Namespace `blob`, schema 2, arbitrary byte items.
#[derive(Debug)]
pub struct Blob;
impl Namespace for Blob {
    const NAME: &'static str = "blob";
    const SCHEMA: u16 = 2;
    type Item = Bytes;
    type Value = Bytes;
    type Codec = RawBytes;
}

/// Namespace `relation`, schema 1, one value per owner (test vector 4).
#[derive(Debug)]
pub struct Relation;
impl Namespace for Relation {
    const NAME: &'static str = "relation";
    const SCHEMA: u16 = 1;
    type Item = ();
    type Value = Bytes;
    type Codec = RawBytes;
}

/// The ring of [`envelope_open`]: [`KEY_ID`] with [`SECRET`], signing and verifying.
pub fn ring() -> &'static KeyRing {
    static RING: OnceLock<KeyRing> = OnceLock::new();
    RING.get_or_init(|| KeyRing::new(KEY_ID, &SECRET).expect("a 32-byte secret is accepted"))
}

/// The key [`envelope_open`] opens for: tenant 42, device 7, item 9 of [`Thumb`] (vector 1).
pub fn fixed_key() -> Key<Thumb> {
    Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9)
}

/// Opens arbitrary bytes for [`fixed_key`] at [`NOW_MS`]; never panics, and an envelope that
/// opens is byte for byte what sealing its payload gives, in its version and form, with its
/// nonce (only sealing makes an authentic one). With version 1's window closed, a version 1
/// envelope that would open is refused as a retired version, and nothing else changes.
pub fn envelope_open(data: &[u8]) {
    let key = fixed_key();
    let sealed = Bytes::copy_from_slice(data);
    let small = Envelope::with_max_payload(64);
    let small_result = small.open(&sealed, &key, NOW_MS, ring());
    let window_closed =
        Envelope::default()
            .with_version_1(false)
            .open(&sealed, &key, NOW_MS, ring());
    match Envelope::default().open_details(&sealed, &key, NOW_MS, ring()) {
        Ok(opened) => {
            assert!(NOW_MS < opened.expires_ms, "an expired envelope opened");
            let encoded = key.encode();
            let nonce = (sealed[5] != 0).then(|| {
                let at = 36 + encoded.len();
                let mut nonce = [0; NONCE_LEN];
                nonce.copy_from_slice(&sealed[at..at + NONCE_LEN]);
                nonce
            });
            let header = Header {
                version: sealed[4],
                schema: Thumb::SCHEMA,
                created_ms: opened.created_ms,
                expires_ms: opened.expires_ms,
            };
            let resealed = Envelope::default()
                .write(
                    header,
                    encoded.len(),
                    |out| out.extend_from_slice(&encoded),
                    &opened.payload,
                    nonce,
                    ring(),
                )
                .expect("a payload that opened can be sealed again");
            assert_eq!(
                resealed, sealed,
                "an envelope opened that is not the sealing of its payload"
            );
            if let Ok(payload) = small_result {
                assert_eq!(payload, opened.payload, "limits changed the payload");
            }
            if sealed[4] == 1 {
                assert_eq!(
                    window_closed,
                    Err(Refusal::Freshness(Freshness::RetiredVersion { version: 1 })),
                    "a version 1 envelope opened after its window"
                );
            } else {
                assert_eq!(
                    window_closed,
                    Ok(opened.payload),
                    "the window changed a version 2 envelope"
                );
            }
        }
        Err(refusal) => {
            assert!(
                small_result.is_err(),
                "a lower payload limit accepted what the default refused"
            );
            // The window is checked after the key and before the schema and the expiry.
            let later_step = matches!(
                refusal,
                Refusal::Freshness(Freshness::SchemaMismatch { .. } | Freshness::Expired { .. })
            );
            let expected = if sealed.get(4) == Some(&1) && later_step {
                Refusal::Freshness(Freshness::RetiredVersion { version: 1 })
            } else {
                refusal.clone()
            };
            assert_eq!(window_closed, Err(expected), "the window changed a refusal");
            check_reported_fields(&refusal, key.owner());
        }
    }
}

/// Decodes arbitrary bytes as a key; never panics, and a key that decodes re-encodes to exactly
/// the input (decoding accepts only canonical encodings, so the encoding is injective).
pub fn key_decode(data: &[u8]) {
    if let Ok(raw) = RawKey::decode(data) {
        assert_eq!(raw.encode(), data, "a non-canonical key decoded");
        assert_eq!(
            RawKey::new(&raw.namespace, raw.owner.clone(), raw.item.clone()).as_ref(),
            Ok(&raw),
            "a decoded key has an invalid namespace"
        );
    }
    if let Ok(key) = Key::<Thumb>::decode(data) {
        assert_eq!(key.encode(), data, "a non-canonical typed key decoded");
    }
    if let Ok(key) = Key::<EventMeta>::decode(data) {
        assert_eq!(key.encode(), data, "a non-canonical typed key decoded");
    }
}

/// Derives a key, timestamps and payload from the bytes, seals, and checks that the envelope
/// opens for that key only: the same payload for it, [`Violation::OwnerMismatch`] for another
/// owner (including tenant and device exchanged), and the other checks for other items,
/// namespaces, times and damaged bytes.
pub fn envelope_roundtrip(data: &[u8]) {
    let mut input = Input(data);
    let owner = Owner::new(TenantId(input.id()), DeviceId(input.id()));
    match input.byte() % 4 {
        0 => {
            let item = input.u64();
            roundtrip::<Thumb>(&mut input, owner, item, Some(item.wrapping_add(1)));
        }
        1 => {
            let item = String::from_utf8_lossy(input.bytes()).into_owned();
            let other = format!("{item}-");
            roundtrip::<EventMeta>(&mut input, owner, item, Some(other));
        }
        2 => {
            let item = Bytes::copy_from_slice(input.bytes());
            let mut other = item.to_vec();
            other.push(0);
            roundtrip::<Blob>(&mut input, owner, item, Some(other.into()));
        }
        _ => roundtrip::<Relation>(&mut input, owner, (), None),
    }
}

fn roundtrip<N: Namespace>(
    input: &mut Input<'_>,
    owner: Owner,
    item: N::Item,
    other_item: Option<N::Item>,
) {
    let key = Key::<N>::for_owner(owner.clone(), item);
    let encoded = key.encode();
    assert_eq!(
        Key::<N>::decode(&encoded).as_ref(),
        Ok(&key),
        "a key does not decode to itself"
    );
    // 0-2: authenticated, 3-5: encrypted; with a 16 B, 1 KiB or 8 MiB payload limit.
    let form = input.byte() % 6;
    let envelope = match form % 3 {
        0 => Envelope::with_max_payload(16),
        1 => Envelope::with_max_payload(1024),
        _ => Envelope::default(),
    }
    .with_sealing(if form < 3 {
        Sealing::Authenticated
    } else {
        Sealing::Encrypted
    });
    let created = input.u64();
    let expires = input.u64();
    let now = input.u64();
    let flip_at = usize::from(input.u16());
    let payload = input.rest();

    let sealed = match envelope.seal(&key, payload, created, expires, ring()) {
        Ok(sealed) => sealed,
        Err(SealError::KeyTooLong { len }) => {
            assert!(
                len > MAX_KEY_LEN && len == encoded.len(),
                "wrong KeyTooLong"
            );
            return;
        }
        Err(SealError::PayloadTooLarge { len, limit }) => {
            assert!(
                len > limit && limit == envelope.max_payload(),
                "wrong PayloadTooLarge"
            );
            return;
        }
        Err(SealError::NoRandomness) => panic!("no random nonce"),
    };
    if envelope.sealing() == Sealing::Encrypted && payload.len() >= 8 {
        let at = 36 + encoded.len() + NONCE_LEN;
        assert_ne!(
            &sealed[at..at + payload.len()],
            payload,
            "an encrypted payload is in the clear"
        );
    }

    // The owner it was sealed for gets the payload back, until it expires.
    match envelope.open(&sealed, &key, now, ring()) {
        Ok(opened) => {
            assert!(
                now < expires || expires == NEVER,
                "opened at {now} though it expired at {expires}"
            );
            assert_eq!(opened, payload, "the payload changed");
        }
        Err(Refusal::Freshness(Freshness::Expired { expires_ms, now_ms })) => {
            assert!(
                now >= expires && expires != NEVER && expires_ms == expires && now_ms == now,
                "wrongly expired: {expires_ms} at {now_ms}"
            );
        }
        Err(other) => panic!("own envelope refused: {other:?}"),
    }

    // Any other owner is refused as an owner mismatch, whatever the time: exchanged ids first.
    let swapped = Owner::new(
        TenantId(owner.device.0.clone()),
        DeviceId(owner.tenant.0.clone()),
    );
    let other_tenant = Owner::new(TenantId(other_id(&owner.tenant.0)), owner.device.clone());
    let other_device = Owner::new(owner.tenant.clone(), DeviceId(other_id(&owner.device.0)));
    for other in [swapped, other_tenant, other_device] {
        if other == owner {
            continue;
        }
        let theirs = Key::<N>::for_owner(other.clone(), key.item().clone());
        assert_ne!(theirs.encode(), encoded, "two owners share an encoding");
        match envelope.open(&sealed, &theirs, now, ring()) {
            Err(Refusal::Violation(Violation::OwnerMismatch { expected, found })) => {
                assert_eq!((expected, &found), (other, &owner), "wrong owners reported");
            }
            result => panic!("another owner got {result:?}"),
        }
    }

    if let Some(other_item) = other_item {
        let theirs = Key::<N>::for_owner(owner.clone(), other_item);
        assert_eq!(
            envelope.open(&sealed, &theirs, now, ring()),
            Err(Refusal::Violation(Violation::ItemMismatch)),
            "another item of the same owner"
        );
    }

    if N::NAME != Relation::NAME {
        let theirs = Key::<Relation>::for_owner(owner.clone(), ());
        assert!(
            matches!(
                envelope.open(&sealed, &theirs, now, ring()),
                Err(Refusal::Violation(Violation::NamespaceMismatch { expected: "relation", found }))
                    if found == N::NAME
            ),
            "another namespace"
        );
    }

    // Damaged bytes never open: one flipped bit anywhere, or any truncation.
    let mut flipped = sealed.to_vec();
    let at = flip_at % flipped.len();
    flipped[at] ^= 1 << (flip_at % 8);
    assert!(
        envelope.open(&flipped.into(), &key, now, ring()).is_err(),
        "a flipped bit at {at} opened"
    );
    let truncated = sealed.slice(..flip_at % sealed.len());
    assert!(
        envelope.open(&truncated, &key, now, ring()).is_err(),
        "a truncation opened"
    );
}

/// An id of the same kind as `id` that differs from it.
fn other_id(id: &IdRepr) -> IdRepr {
    match id {
        IdRepr::Num(n) => IdRepr::Num(n.wrapping_add(1)),
        IdRepr::Uuid(u) => {
            let mut u = *u;
            u[15] ^= 1;
            IdRepr::Uuid(u)
        }
        IdRepr::Inline { .. } | IdRepr::Heap(_) => {
            let text = id.as_text().unwrap_or_default();
            let other = if text.len() < 128 {
                format!("{text}x")
            } else {
                "x".to_owned()
            };
            IdRepr::text(&other).expect("a valid text id with one more letter is valid")
        }
    }
}

/// Checks what a refusal reports about the envelope against the key it was opened for.
fn check_reported_fields(refusal: &Refusal, expected: &Owner) {
    match refusal {
        Refusal::Violation(Violation::OwnerMismatch { expected: e, found }) => {
            assert_eq!(e, expected, "the expected owner is the caller's");
            assert_ne!(found, expected, "an owner mismatch with equal owners");
        }
        Refusal::Violation(Violation::NamespaceMismatch { expected: e, found }) => {
            assert_eq!(*e, Thumb::NAME);
            assert_ne!(found, Thumb::NAME, "a namespace mismatch with equal names");
        }
        Refusal::Freshness(Freshness::SchemaMismatch { expected: e, found }) => {
            assert_eq!(*e, Thumb::SCHEMA);
            assert_ne!(
                *found,
                Thumb::SCHEMA,
                "a schema mismatch with equal schemas"
            );
        }
        Refusal::Freshness(Freshness::Expired { now_ms, expires_ms }) => {
            assert_eq!(*now_ms, NOW_MS);
            assert!(*expires_ms <= NOW_MS, "expired before its expiry");
            assert_ne!(*expires_ms, NEVER, "a never-expiring envelope expired");
        }
        _ => {}
    }
}

/// `arbitrary`-style reading of fuzzer bytes: each read takes what it needs from the front and
/// yields zeros once the input is used up, so every input maps to some value.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, len: usize) -> &'a [u8] {
        let (head, tail) = self.0.split_at(len.min(self.0.len()));
        self.0 = tail;
        head
    }

    fn array<const L: usize>(&mut self) -> [u8; L] {
        let mut out = [0; L];
        let head = self.take(L);
        out[..head.len()].copy_from_slice(head);
        out
    }

    fn byte(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.array())
    }

    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.array())
    }

    /// A length-prefixed slice (u16 length, so items can exceed the key limit).
    fn bytes(&mut self) -> &'a [u8] {
        let len = usize::from(self.u16());
        self.take(len)
    }

    fn rest(&mut self) -> &'a [u8] {
        self.take(self.0.len())
    }

    /// An id of a kind chosen by the input; text that is not a valid id becomes a number.
    fn id(&mut self) -> IdRepr {
        match self.byte() % 3 {
            0 => IdRepr::Num(self.u64()),
            1 => IdRepr::Uuid(self.array()),
            _ => {
                let len = usize::from(self.byte());
                let text = String::from_utf8_lossy(self.take(len)).into_owned();
                IdRepr::text(&text).unwrap_or(IdRepr::Num(len as u64))
            }
        }
    }
}
