//! Sealed envelopes: every tampering, truncation, swap, wrong key and expiry is refused with the
//! right `Violation`, and only an intact envelope opened for its own key yields its payload.

use bytes::Bytes;
use proptest::prelude::*;
use scoped_cache::envelope::{Envelope, MAGIC, Malformed, NEVER, SealError, Sealing};
use scoped_cache::{
    DeviceId, Freshness, Key, KeyId, KeyRing, Namespace, Owner, RawBytes, Refusal, TenantId,
    Violation,
};

macro_rules! namespace {
    ($name:ident, $text:literal, $schema:literal, $item:ty) => {
        #[derive(Debug)]
        struct $name;
        impl Namespace for $name {
            const NAME: &'static str = $text;
            const SCHEMA: u16 = $schema;
            type Item = $item;
            type Value = Bytes;
            type Codec = RawBytes;
        }
    };
}

namespace!(Thumbs, "thumb", 1, u64);
// The same name as `Thumbs` with the next schema: a deploy in progress.
namespace!(ThumbsV2, "thumb", 2, u64);
namespace!(Events, "event", 1, u64);
namespace!(Names, "name", 1, String);

/// Bytes before the embedded key: magic 4, version 1, flags 1, schema 2, key id 4, created 8,
/// expires 8, key length 4.
const HEADER_LEN: usize = 32;
const TAG_LEN: usize = 32;
const SIGNING_ID: KeyId = KeyId(7);
/// A second verifier whose id is one bit away from the signer's, so that a flip in the key-id
/// field can land on a known key (and must then fail the tag).
const NEIGHBOUR_ID: KeyId = KeyId(6);

fn ring(secret: &[u8]) -> KeyRing {
    KeyRing::new(SIGNING_ID, secret)
        .and_then(|ring| ring.with_verifier(NEIGHBOUR_ID, &[0x66; 32]))
        .expect("valid secrets")
}

/// The field an envelope byte belongs to, from the layout in `docs/ENVELOPE.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Region {
    Magic,
    Version,
    Flags,
    Schema,
    KeyId,
    Timestamps,
    KeyLen,
    Key,
    PayloadLen,
    Payload,
    Tag,
}

fn region(at: usize, key_len: usize, total: usize) -> Region {
    let payload_len_at = HEADER_LEN + key_len;
    match at {
        0..4 => Region::Magic,
        4 => Region::Version,
        5 => Region::Flags,
        6..8 => Region::Schema,
        8..12 => Region::KeyId,
        12..28 => Region::Timestamps,
        28..32 => Region::KeyLen,
        _ if at < payload_len_at => Region::Key,
        _ if at < payload_len_at + 4 => Region::PayloadLen,
        _ if at < total - TAG_LEN => Region::Payload,
        _ => Region::Tag,
    }
}

/// Whether `refusal` is an acceptable verdict for a flip in `region`.
fn allowed(region: Region, refusal: &Refusal, flipped: &[u8]) -> bool {
    // A key id this ring lacks cannot be verified: a freshness miss, the only one a flip gives.
    if let Refusal::Freshness(Freshness::UnknownKey { key_id }) = refusal {
        // The id reported is the one written in the tampered envelope.
        let written = KeyId(u32::from_be_bytes([
            flipped[8],
            flipped[9],
            flipped[10],
            flipped[11],
        ]));
        return region == Region::KeyId
            && *key_id == written
            && written != SIGNING_ID
            && written != NEIGHBOUR_ID;
    }
    let Refusal::Violation(violation) = refusal else {
        return false;
    };
    match (region, violation) {
        (Region::Magic, Violation::Malformed { reason }) => *reason == Malformed::BadMagic,
        // A version flipped to 1 is read as version 1, whose tag is another MAC's.
        (Region::Version, Violation::Malformed { reason }) => {
            matches!(reason, Malformed::UnsupportedVersion(_))
        }
        (Region::Version, Violation::BadTag) => flipped[4] == 1,
        // The encrypted flag changes the framing: the lengths no longer add up, or the tag fails.
        (Region::Flags, Violation::Malformed { reason }) => {
            *reason == Malformed::ReservedFlags
                || (flipped[5] == 1
                    && matches!(reason, Malformed::Truncated | Malformed::TrailingBytes))
        }
        (Region::Flags, Violation::BadTag) => flipped[5] == 1,
        (Region::KeyLen | Region::PayloadLen, Violation::Malformed { .. } | Violation::BadTag) => {
            true
        }
        (Region::KeyId, Violation::BadTag) => {
            // Only when the flipped id names another key of the ring.
            flipped[8..12] == NEIGHBOUR_ID.0.to_be_bytes()
        }
        (
            Region::Schema | Region::Timestamps | Region::Key | Region::Payload | Region::Tag,
            Violation::BadTag,
        ) => true,
        _ => false,
    }
}

/// Flips every byte of `sealed` with each mask and checks each result is refused as allowed.
fn check_every_flip<N: Namespace>(
    sealed: &Bytes,
    key: &Key<N>,
    now_ms: u64,
    ring: &KeyRing,
    masks: &[u8],
) -> Result<(), TestCaseError> {
    let key_len = key.encode().len();
    let envelope = Envelope::default();
    for at in 0..sealed.len() {
        for &mask in masks {
            let mut flipped = sealed.to_vec();
            flipped[at] ^= mask;
            let flipped = Bytes::from(flipped);
            let region = region(at, key_len, sealed.len());
            match envelope.open(&flipped, key, now_ms, ring) {
                Ok(payload) => {
                    return Err(TestCaseError::fail(format!(
                        "flip {mask:#04x} at {at} ({region:?}) opened to {payload:?}"
                    )));
                }
                Err(violation) => prop_assert!(
                    allowed(region, &violation, &flipped),
                    "flip {:#04x} at {} ({:?}) gave {:?}",
                    mask,
                    at,
                    region,
                    violation
                ),
            }
        }
    }
    Ok(())
}

fn id_text_strategy() -> impl Strategy<Value = String> {
    "[a-z0-9-]{1,40}"
}

fn owner_strategy() -> impl Strategy<Value = Owner> {
    let tenant = prop_oneof![
        any::<u64>().prop_map(TenantId::from_u64),
        any::<[u8; 16]>().prop_map(TenantId::from_uuid),
        id_text_strategy().prop_map(|t| TenantId::new(&t).expect("valid id")),
    ];
    let device = prop_oneof![
        any::<u64>().prop_map(DeviceId::from_u64),
        any::<[u8; 16]>().prop_map(DeviceId::from_uuid),
        id_text_strategy().prop_map(|t| DeviceId::new(&t).expect("valid id")),
    ];
    (tenant, device).prop_map(|(tenant, device)| Owner::new(tenant, device))
}

fn key_strategy() -> impl Strategy<Value = Key<Thumbs>> {
    (owner_strategy(), any::<u64>()).prop_map(|(owner, item)| Key::for_owner(owner, item))
}

fn payload_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        proptest::collection::vec(any::<u8>(), 1..200),
    ]
}

fn secret_strategy() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 32..64)
}

/// Created and expiry times with `created <= now < expires`.
fn times_strategy() -> impl Strategy<Value = (u64, u64, u64)> {
    (0u64..1 << 50, 0u64..1 << 20, 1u64..1 << 30)
        .prop_map(|(created, age, life)| (created, created + age, created + age + life))
}

fn seal(key: &Key<Thumbs>, payload: &[u8], created: u64, expires: u64, ring: &KeyRing) -> Bytes {
    Envelope::default()
        .seal(key, payload, created, expires, ring)
        .expect("within limits")
}

fn thumbs_key(tenant: u64, device: u64, item: u64) -> Key<Thumbs> {
    Key::new(TenantId::from_u64(tenant), DeviceId::from_u64(device), item)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn an_intact_envelope_opens_for_its_key(
        key in key_strategy(),
        payload in payload_strategy(),
        secret in secret_strategy(),
        (created, now, expires) in times_strategy(),
    ) {
        let ring = ring(&secret);
        let sealed = seal(&key, &payload, created, expires, &ring);
        let opened = Envelope::default().open_details(&sealed, &key, now, &ring);
        let opened = opened.map_err(|v| TestCaseError::fail(format!("refused: {v}")))?;
        prop_assert_eq!(&opened.payload[..], &payload[..], "payload changed");
        prop_assert_eq!(opened.created_ms, created, "created changed");
        prop_assert_eq!(opened.expires_ms, expires, "expires changed");
        prop_assert!(sealed.starts_with(&MAGIC), "envelope lacks the magic");
    }

    #[test]
    fn every_single_byte_flip_is_refused(
        key in key_strategy(),
        payload in payload_strategy(),
        secret in secret_strategy(),
        (created, now, expires) in times_strategy(),
    ) {
        let ring = ring(&secret);
        let sealed = seal(&key, &payload, created, expires, &ring);
        check_every_flip(&sealed, &key, now, &ring, &[0x01, 0x80, 0xff])?;
    }

    #[test]
    fn every_truncation_is_malformed(
        key in key_strategy(),
        payload in payload_strategy(),
        secret in secret_strategy(),
        (created, now, expires) in times_strategy(),
    ) {
        let ring = ring(&secret);
        let sealed = seal(&key, &payload, created, expires, &ring);
        for len in 0..sealed.len() {
            let verdict = Envelope::default().open(&sealed.slice(..len), &key, now, &ring);
            prop_assert_eq!(
                verdict,
                Err(Refusal::Violation(Violation::Malformed { reason: Malformed::Truncated })),
                "a {}-byte prefix of {} bytes", len, sealed.len()
            );
        }
    }

    #[test]
    fn appended_bytes_are_malformed(
        key in key_strategy(),
        payload in payload_strategy(),
        extra in proptest::collection::vec(any::<u8>(), 1..64),
        (created, now, expires) in times_strategy(),
    ) {
        let ring = ring(&[1; 32]);
        let sealed = seal(&key, &payload, created, expires, &ring);
        let mut longer = sealed.to_vec();
        longer.extend_from_slice(&extra);
        let verdict = Envelope::default().open(&Bytes::from(longer), &key, now, &ring);
        prop_assert_eq!(
            verdict,
            Err(Refusal::Violation(Violation::Malformed { reason: Malformed::TrailingBytes })),
            "{} appended bytes", extra.len()
        );
    }

    #[test]
    fn another_owner_is_an_owner_mismatch(
        mine in owner_strategy(),
        theirs in owner_strategy(),
        item in any::<u64>(),
        (created, now, expires) in times_strategy(),
    ) {
        prop_assume!(mine != theirs);
        let ring = ring(&[2; 32]);
        let their_key = Key::<Thumbs>::for_owner(theirs.clone(), item);
        let my_key = Key::<Thumbs>::for_owner(mine.clone(), item);
        let sealed = seal(&their_key, b"their thumbnail", created, expires, &ring);
        prop_assert_eq!(
            Envelope::default().open(&sealed, &my_key, now, &ring),
            Err(Refusal::Violation(Violation::OwnerMismatch { expected: mine, found: theirs })),
            "another owner's envelope"
        );
    }

    #[test]
    fn tenant_device_swap_is_an_owner_mismatch(
        a in any::<u64>(),
        b in any::<u64>(),
        text in id_text_strategy(),
        item in any::<u64>(),
        (created, now, expires) in times_strategy(),
    ) {
        prop_assume!(a != b);
        let ring = ring(&[3; 32]);
        let envelope = Envelope::default();
        // Numeric ids, and a text id paired with the same text as a device.
        let cases = [
            (Owner::new(TenantId::from_u64(a), DeviceId::from_u64(b)),
             Owner::new(TenantId::from_u64(b), DeviceId::from_u64(a))),
            (Owner::new(TenantId::new(&text).expect("valid"), DeviceId::from_u64(a)),
             Owner::new(TenantId::from_u64(a), DeviceId::new(&text).expect("valid"))),
        ];
        for (stored, requested) in cases {
            let sealed = seal(&Key::for_owner(stored.clone(), item), b"x", created, expires, &ring);
            prop_assert_eq!(
                envelope.open(&sealed, &Key::<Thumbs>::for_owner(requested.clone(), item), now, &ring),
                Err(Refusal::Violation(Violation::OwnerMismatch { expected: requested, found: stored })),
                "tenant and device swapped"
            );
        }
    }

    #[test]
    fn another_item_is_an_item_mismatch(
        owner in owner_strategy(),
        stored in any::<u64>(),
        requested in any::<u64>(),
        (created, now, expires) in times_strategy(),
    ) {
        prop_assume!(stored != requested);
        let ring = ring(&[4; 32]);
        let sealed = seal(&Key::for_owner(owner.clone(), stored), b"x", created, expires, &ring);
        prop_assert_eq!(
            Envelope::default().open(&sealed, &Key::<Thumbs>::for_owner(owner, requested), now, &ring),
            Err(Refusal::Violation(Violation::ItemMismatch)),
            "another item of the same owner"
        );
    }

    #[test]
    fn another_namespace_or_schema_is_refused(
        owner in owner_strategy(),
        item in any::<u64>(),
        payload in payload_strategy(),
        (created, now, expires) in times_strategy(),
    ) {
        let ring = ring(&[5; 32]);
        let envelope = Envelope::default();
        let thumbs = Key::<Thumbs>::for_owner(owner.clone(), item);
        let sealed = seal(&thumbs, &payload, created, expires, &ring);
        prop_assert_eq!(
            envelope.open(&sealed, &Key::<Events>::for_owner(owner.clone(), item), now, &ring),
            Err(Refusal::Violation(Violation::NamespaceMismatch { expected: "event", found: "thumb".to_owned() })),
            "a thumb envelope opened as an event"
        );
        let names = Key::<Names>::for_owner(owner.clone(), "9".to_owned());
        prop_assert_eq!(
            envelope.open(&sealed, &names, now, &ring),
            Err(Refusal::Violation(Violation::NamespaceMismatch { expected: "name", found: "thumb".to_owned() })),
            "a thumb envelope opened as a name"
        );
        // Same name and key bytes, other schema.
        let v2 = Key::<ThumbsV2>::for_owner(owner.clone(), item);
        prop_assert_eq!(&v2.encode(), &thumbs.encode(), "same name, same key bytes");
        prop_assert_eq!(
            envelope.open(&sealed, &v2, now, &ring),
            Err(Refusal::Freshness(Freshness::SchemaMismatch { expected: 2, found: 1 })),
            "a schema 1 envelope opened with schema 2"
        );
        let sealed_v2 = envelope.seal(&v2, &payload, created, expires, &ring).expect("fits");
        prop_assert_eq!(
            envelope.open(&sealed_v2, &thumbs, now, &ring),
            Err(Refusal::Freshness(Freshness::SchemaMismatch { expected: 1, found: 2 })),
            "a schema 2 envelope opened with schema 1"
        );
    }

    #[test]
    fn a_secret_not_in_the_ring_is_a_bad_tag(
        key in key_strategy(),
        payload in payload_strategy(),
        mine in secret_strategy(),
        forged in secret_strategy(),
        (created, now, expires) in times_strategy(),
    ) {
        prop_assume!(mine != forged);
        // The forger uses the ring's own key id with a secret the ring does not have.
        let sealed = seal(&key, &payload, created, expires, &ring(&forged));
        prop_assert_eq!(
            Envelope::default().open(&sealed, &key, now, &ring(&mine)),
            Err(Refusal::Violation(Violation::BadTag)),
            "an envelope sealed with another secret under our key id"
        );
    }

    #[test]
    fn an_unknown_key_id_is_refused(
        key in key_strategy(),
        payload in payload_strategy(),
        id in any::<u32>(),
        (created, now, expires) in times_strategy(),
    ) {
        prop_assume!(id != SIGNING_ID.0 && id != NEIGHBOUR_ID.0);
        let other = KeyRing::new(KeyId(id), &[9; 32]).expect("valid secret");
        let sealed = seal(&key, &payload, created, expires, &other);
        prop_assert_eq!(
            Envelope::default().open(&sealed, &key, now, &ring(&[9; 32])),
            Err(Refusal::Freshness(Freshness::UnknownKey { key_id: KeyId(id) })),
            "an envelope sealed under an id the ring lacks"
        );
    }

    #[test]
    fn expiry_is_enforced_from_expires_on(
        key in key_strategy(),
        created in 0u64..1 << 40,
        life in 1u64..1 << 20,
        late in 0u64..1 << 40,
    ) {
        let ring = ring(&[10; 32]);
        let expires = created + life;
        let sealed = seal(&key, b"x", created, expires, &ring);
        let envelope = Envelope::default();
        prop_assert!(envelope.open(&sealed, &key, expires - 1, &ring).is_ok(), "refused before expiry");
        for now in [expires, expires + 1, expires + late, u64::MAX] {
            prop_assert_eq!(
                envelope.open(&sealed, &key, now, &ring),
                Err(Refusal::Freshness(Freshness::Expired { expires_ms: expires, now_ms: now })),
                "opened at or after its expiry"
            );
        }
    }

    #[test]
    fn never_never_expires(key in key_strategy(), created in any::<u64>(), now in any::<u64>()) {
        let ring = ring(&[11; 32]);
        let sealed = seal(&key, b"x", created, NEVER, &ring);
        let envelope = Envelope::default();
        for now in [now, 0, u64::MAX - 1, u64::MAX] {
            prop_assert!(
                envelope.open(&sealed, &key, now, &ring).is_ok(),
                "an envelope sealed with NEVER refused at {}", now
            );
        }
    }

    #[test]
    fn payload_limits_are_enforced_both_ways(
        key in key_strategy(),
        limit in 0usize..300,
        over in 1usize..100,
    ) {
        let ring = ring(&[12; 32]);
        let small = Envelope::with_max_payload(limit);
        let large = Envelope::with_max_payload(limit + over);
        let at_limit = vec![0xab; limit];
        let above = vec![0xab; limit + over];
        prop_assert_eq!(
            small.seal(&key, &above, 0, NEVER, &ring),
            Err(SealError::PayloadTooLarge { len: limit + over, limit }),
            "sealed an oversize payload"
        );
        let sealed = small.seal(&key, &at_limit, 0, NEVER, &ring).expect("at the limit");
        prop_assert!(small.open(&sealed, &key, 1, &ring).is_ok(), "refused a payload at the limit");
        // Sealed by a more generous writer: refused before the tag is even computed.
        let sealed = large.seal(&key, &above, 0, NEVER, &ring).expect("within the larger limit");
        prop_assert_eq!(
            small.open(&sealed, &key, 1, &ring),
            Err(Refusal::Violation(Violation::Malformed { reason: Malformed::TooLarge { len: limit + over, limit } })),
            "opened an oversize payload"
        );
    }
}

/// A few fixed shapes, flipped exhaustively with every single-bit mask and more.
#[test]
fn every_flip_of_fixed_envelopes_is_refused() {
    let ring = ring(&[0x42; 32]);
    let masks: Vec<u8> = (0..8).map(|bit| 1u8 << bit).chain([0xff, 0x5a]).collect();
    let numeric = thumbs_key(1, 2, 3);
    let text = Key::<Thumbs>::new(
        TenantId::new("user-42").expect("valid"),
        DeviceId::new("a-camera-with-a-long-name").expect("valid"),
        u64::MAX,
    );
    for (key, payload) in [
        (&numeric, &b""[..]),
        (&numeric, &b"jpeg"[..]),
        (&text, &[0u8; 100][..]),
    ] {
        let sealed = seal(key, payload, 1_000, 61_000, &ring);
        check_every_flip(&sealed, key, 2_000, &ring, &masks).expect("every flip refused");
    }
    // A string item, so the key region has text in it.
    let named = Key::<Names>::new(
        TenantId::from_uuid([9; 16]),
        DeviceId::from_u64(0),
        "événement".to_owned(),
    );
    let sealed = Envelope::default()
        .seal(&named, b"v", 1_000, NEVER, &ring)
        .expect("within limits");
    check_every_flip(&sealed, &named, 2_000, &ring, &masks).expect("every flip refused");
}

#[test]
fn key_rotation_keeps_old_envelopes_until_the_key_is_dropped() {
    let key = thumbs_key(1, 2, 3);
    let envelope = Envelope::default();
    let old = KeyRing::new(KeyId(1), &[1; 32]).expect("valid");
    let sealed_old = envelope.seal(&key, b"old", 0, NEVER, &old).expect("fits");

    // Step 1: the new key verifies everywhere; step 2: it signs, the old one still verifies.
    let rotated = KeyRing::new(KeyId(2), &[2; 32])
        .and_then(|ring| ring.with_verifier(KeyId(1), &[1; 32]))
        .expect("valid");
    assert_eq!(
        envelope.open(&sealed_old, &key, 1, &rotated),
        Ok(Bytes::from_static(b"old"))
    );
    let sealed_new = envelope
        .seal(&key, b"new", 0, NEVER, &rotated)
        .expect("fits");
    assert_eq!(
        &sealed_new[8..12],
        &2u32.to_be_bytes(),
        "the new key id signs"
    );
    assert_eq!(
        envelope.open(&sealed_new, &key, 1, &rotated),
        Ok(Bytes::from_static(b"new"))
    );
    // A process still on the old ring does not know the new id.
    assert_eq!(
        envelope.open(&sealed_new, &key, 1, &old),
        Err(Refusal::Freshness(Freshness::UnknownKey {
            key_id: KeyId(2)
        }))
    );

    // Step 3: the old key is dropped; its envelopes are refused.
    let new_only = KeyRing::new(KeyId(2), &[2; 32]).expect("valid");
    assert_eq!(
        envelope.open(&sealed_old, &key, 1, &new_only),
        Err(Refusal::Freshness(Freshness::UnknownKey {
            key_id: KeyId(1)
        }))
    );
    assert_eq!(
        envelope.open(&sealed_new, &key, 1, &new_only),
        Ok(Bytes::from_static(b"new"))
    );

    // The same id with another secret is not the same key.
    let impostor = KeyRing::new(KeyId(1), &[0xee; 32]).expect("valid");
    assert_eq!(
        envelope.open(&sealed_old, &key, 1, &impostor),
        Err(Refusal::Violation(Violation::BadTag))
    );
}

#[test]
fn plain_values_are_malformed() {
    let ring = ring(&[13; 32]);
    let key = thumbs_key(1, 2, 3);
    let envelope = Envelope::default();
    let short = Bytes::from_static(b"hello");
    assert_eq!(
        envelope.open(&short, &key, 0, &ring),
        Err(Refusal::Violation(Violation::Malformed {
            reason: Malformed::Truncated
        }))
    );
    let json = Bytes::from(format!(
        "{{\"tenant\":1,\"device\":2,\"thumbnail\":\"{}\"}}",
        "A".repeat(100)
    ));
    assert_eq!(
        envelope.open(&json, &key, 0, &ring),
        Err(Refusal::Violation(Violation::Malformed {
            reason: Malformed::BadMagic
        }))
    );
    assert_eq!(
        envelope.open(&Bytes::new(), &key, 0, &ring),
        Err(Refusal::Violation(Violation::Malformed {
            reason: Malformed::Truncated
        }))
    );
    // The magic alone, padded out to a plausible length, still is not an envelope.
    let mut padded = MAGIC.to_vec();
    padded.resize(200, 0);
    assert!(matches!(
        envelope.open(&Bytes::from(padded), &key, 0, &ring),
        Err(Refusal::Violation(Violation::Malformed { .. }))
    ));
}

#[test]
fn seal_refuses_keys_longer_than_the_limit() {
    let ring = ring(&[14; 32]);
    let owner = Owner::new(TenantId::from_u64(1), DeviceId::from_u64(2));
    let key = Key::<Names>::for_owner(owner, "i".repeat(5_000));
    assert!(matches!(
        Envelope::default().seal(&key, b"x", 0, NEVER, &ring),
        Err(SealError::KeyTooLong { .. })
    ));
}

#[test]
fn oversize_envelopes_are_refused_before_parsing() {
    let ring = ring(&[15; 32]);
    let key = thumbs_key(1, 2, 3);
    let small = Envelope::with_max_payload(16);
    let huge = Bytes::from(vec![0u8; small.max_envelope_len() + 1]);
    assert_eq!(
        small.open(&huge, &key, 0, &ring),
        Err(Refusal::Violation(Violation::Malformed {
            reason: Malformed::TooLarge {
                len: huge.len(),
                limit: small.max_envelope_len()
            }
        }))
    );
}

#[test]
fn violations_say_what_happened() {
    let expected = Owner::new(TenantId::from_u64(1), DeviceId::from_u64(2));
    let found = Owner::new(TenantId::from_u64(2), DeviceId::from_u64(1));
    let violation = Violation::OwnerMismatch { expected, found };
    assert_eq!(
        violation.to_string(),
        "owner mismatch: expected tenant 1, device 2, found tenant 2, device 1"
    );
    let ring = format!("{:?}", ring(&[0x5e; 32]));
    assert!(
        !ring.contains("94") && !ring.contains("5e"),
        "secret in Debug: {ring}"
    );
}

/// The encrypted form of the same key, payload and times.
fn seal_encrypted<N: Namespace>(
    key: &Key<N>,
    payload: &[u8],
    created: u64,
    expires: u64,
    ring: &KeyRing,
) -> Bytes {
    Envelope::default()
        .with_sealing(Sealing::Encrypted)
        .seal(key, payload, created, expires, ring)
        .expect("within limits")
}

/// Bytes of the encrypted form: header and key (the associated data), then payload length,
/// nonce, ciphertext and tag.
const NONCE_LEN: usize = 24;
const AEAD_TAG_LEN: usize = 16;

#[test]
fn encrypted_envelopes_hide_the_payload_and_open_for_their_key() {
    let ring = ring(&[0x42; 32]);
    let key = thumbs_key(1, 2, 3);
    let payload = b"the living room at night, in a jpeg".repeat(10);
    let sealed = seal_encrypted(&key, &payload, 1_000, 61_000, &ring);
    let key_len = key.encode().len();
    assert_eq!(sealed[4], 2, "version 2");
    assert_eq!(sealed[5], 1, "the encrypted flag");
    assert_eq!(
        sealed.len(),
        HEADER_LEN + key_len + 4 + NONCE_LEN + payload.len() + AEAD_TAG_LEN
    );
    assert!(
        !sealed
            .windows(8)
            .any(|w| payload.windows(8).any(|p| p == w)),
        "no 8 payload bytes in the clear"
    );
    assert_eq!(
        Envelope::default().open(&sealed, &key, 2_000, &ring),
        Ok(Bytes::from(payload.clone()))
    );
    // Nonces are random: the same value seals differently every time.
    let again = seal_encrypted(&key, &payload, 1_000, 61_000, &ring);
    assert_ne!(sealed, again, "a nonce was reused");
    // Expiry and schema are checked as for the authenticated form.
    assert!(matches!(
        Envelope::default().open(&sealed, &key, 61_000, &ring),
        Err(Refusal::Freshness(Freshness::Expired { .. }))
    ));
    let next_schema = Key::<ThumbsV2>::new(TenantId::from_u64(1), DeviceId::from_u64(2), 3);
    assert_eq!(
        Envelope::default().open(&sealed, &next_schema, 2_000, &ring),
        Err(Refusal::Freshness(Freshness::SchemaMismatch {
            expected: 2,
            found: 1
        }))
    );
    let inspected = Envelope::default()
        .inspect(&sealed, &ring)
        .expect("authentic");
    assert_eq!(
        (inspected.sealing, inspected.version, inspected.payload_len),
        (Sealing::Encrypted, 2, payload.len())
    );
}

/// A value encrypted for key A is refused for key B exactly as an authenticated one is: the
/// same violation, naming both owners.
#[test]
fn encrypted_values_are_refused_for_another_key_as_authenticated_ones_are() {
    let ring = ring(&[0x42; 32]);
    let mine = thumbs_key(42, 7, 9);
    let others = [
        thumbs_key(7, 42, 9), // tenant and device exchanged
        thumbs_key(43, 7, 9),
        thumbs_key(42, 8, 9),
        thumbs_key(42, 7, 10),
    ];
    for sealed in [
        seal(&mine, b"jpeg", 1_000, NEVER, &ring),
        seal_encrypted(&mine, b"jpeg", 1_000, NEVER, &ring),
    ] {
        for other in &others {
            let expected = if other.owner() == mine.owner() {
                Violation::ItemMismatch
            } else {
                Violation::OwnerMismatch {
                    expected: other.owner().clone(),
                    found: mine.owner().clone(),
                }
            };
            assert_eq!(
                Envelope::default().open(&sealed, other, 2_000, &ring),
                Err(Refusal::Violation(expected)),
                "flags {}",
                sealed[5]
            );
        }
        let event = Key::<Events>::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
        assert_eq!(
            Envelope::default().open(&sealed, &event, 2_000, &ring),
            Err(Refusal::Violation(Violation::NamespaceMismatch {
                expected: "event",
                found: "thumb".to_owned()
            }))
        );
        // Another secret under the same id: not even the owner's key opens it.
        let impostor = KeyRing::new(SIGNING_ID, &[0x43; 32]).expect("valid");
        assert_eq!(
            Envelope::default().open(&sealed, &mine, 2_000, &impostor),
            Err(Refusal::Violation(Violation::BadTag))
        );
    }
}

/// Every flip of every byte of an encrypted envelope is refused; in the nonce, the ciphertext
/// or the tag it is a bad tag.
#[test]
fn every_flip_of_an_encrypted_envelope_is_refused() {
    let ring = ring(&[0x42; 32]);
    let key = Key::<Thumbs>::new(
        TenantId::new("user-42").expect("valid"),
        DeviceId::from_u64(7),
        9,
    );
    let key_len = key.encode().len();
    for payload in [&b""[..], b"jpeg", &[0x5a; 100]] {
        let sealed = seal_encrypted(&key, payload, 1_000, 61_000, &ring);
        let nonce_at = HEADER_LEN + key_len + 4;
        for at in 0..sealed.len() {
            for mask in [0x01, 0x80, 0xff] {
                let mut flipped = sealed.to_vec();
                flipped[at] ^= mask;
                let result = Envelope::default().open(&Bytes::from(flipped), &key, 2_000, &ring);
                assert!(result.is_err(), "flip {mask:#04x} at {at} opened");
                if at >= nonce_at {
                    assert_eq!(
                        result,
                        Err(Refusal::Violation(Violation::BadTag)),
                        "flip {mask:#04x} at {at} (nonce, ciphertext or tag)"
                    );
                }
            }
        }
        for len in 0..sealed.len() {
            assert!(
                Envelope::default()
                    .open(&sealed.slice(..len), &key, 2_000, &ring)
                    .is_err(),
                "truncated to {len}"
            );
        }
    }
}

/// The associated data is the whole header and the key: an encrypted value moved under another
/// key's header (re-framed so every length adds up), or given other times, schema or key id,
/// never opens; a bad tag, not a value and not an owner mismatch with a forged owner.
#[test]
fn the_associated_data_covers_the_full_key_header() {
    let ring = ring(&[0x42; 32]);
    let mine = thumbs_key(42, 7, 9);
    let theirs = thumbs_key(43, 7, 9); // an encoding of the same length
    let (mine_enc, theirs_enc) = (mine.encode(), theirs.encode());
    assert_eq!(mine_enc.len(), theirs_enc.len());
    let sealed = seal_encrypted(&mine, b"jpeg", 1_000, 61_000, &ring);

    // The key transplanted: the header now names their key, the ciphertext is mine.
    let mut transplanted = sealed.to_vec();
    transplanted[HEADER_LEN..HEADER_LEN + theirs_enc.len()].copy_from_slice(&theirs_enc);
    assert_eq!(
        Envelope::default().open(&Bytes::from(transplanted), &theirs, 2_000, &ring),
        Err(Refusal::Violation(Violation::BadTag)),
        "opened under another key's header"
    );
    // Each header field rewritten to another valid value.
    let rewrites: [(&str, usize, &[u8]); 4] = [
        ("schema", 6, &2u16.to_be_bytes()),
        ("created", 12, &0u64.to_be_bytes()),
        ("expires", 20, &NEVER.to_be_bytes()),
        ("key id", 8, &NEIGHBOUR_ID.0.to_be_bytes()),
    ];
    for (field, at, bytes) in rewrites {
        let mut rewritten = sealed.to_vec();
        rewritten[at..at + bytes.len()].copy_from_slice(bytes);
        assert_eq!(
            Envelope::default().open(&Bytes::from(rewritten), &mine, 2_000, &ring),
            Err(Refusal::Violation(Violation::BadTag)),
            "{field} rewritten"
        );
    }
    // The same ciphertext with an authenticated flag is not a MAC envelope either.
    let mut unflagged = sealed.to_vec();
    unflagged[5] = 0;
    assert!(
        Envelope::default()
            .open(&Bytes::from(unflagged), &mine, 2_000, &ring)
            .is_err()
    );
}

/// Format 2 covers both MAC size classes: every flip around the class boundary is refused, and
/// an envelope sealed at each size opens.
#[test]
fn both_mac_size_classes_seal_open_and_refuse_flips() {
    let ring = ring(&[0x42; 32]);
    let key = thumbs_key(1, 2, 3);
    let key_len = key.encode().len();
    // MAC inputs of 2047, 2048 and 2049 bytes: the last HMAC-SHA256 size and the first BLAKE3.
    for mac_input in [2047, 2048, 2049, 70_000] {
        let payload = vec![0xa5; mac_input - HEADER_LEN - key_len - 4];
        let sealed = seal(&key, &payload, 1_000, 61_000, &ring);
        assert_eq!(sealed.len(), mac_input + TAG_LEN);
        assert_eq!(
            Envelope::default().open(&sealed, &key, 2_000, &ring),
            Ok(Bytes::from(payload))
        );
        for at in [
            0,
            7,
            HEADER_LEN,
            sealed.len() / 2,
            sealed.len() - TAG_LEN,
            sealed.len() - 1,
        ] {
            let mut flipped = sealed.to_vec();
            flipped[at] ^= 1;
            assert!(
                Envelope::default()
                    .open(&Bytes::from(flipped), &key, 2_000, &ring)
                    .is_err(),
                "flip at {at} of {mac_input}"
            );
        }
    }
}
