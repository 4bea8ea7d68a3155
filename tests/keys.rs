//! Ids and keys: the key encoding is injective, canonical and total to decode; ids are validated,
//! never truncated; every public type is `Send + Sync`.

use bytes::Bytes;
use proptest::prelude::*;
use scoped_cache::envelope::{Envelope, KEY_PREFIX, KeyDecodeError, RawKey, Sealing};
use scoped_cache::store::StoreError;
use scoped_cache::{
    Cache, Client, DeviceId, Error, IdError, Key, KeyRing, LocalCache, MAX_TEXT_ID_LEN,
    MemoryStore, Namespace, Owner, RawBytes, Stats, TenantId, Violation, ViolationReport,
};

/// Which id constructor to use; the same `IdSpec` builds a tenant or a device id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum IdSpec {
    Num(u64),
    Uuid([u8; 16]),
    Text(String),
}

impl IdSpec {
    fn tenant(&self) -> TenantId {
        match self {
            IdSpec::Num(n) => TenantId::from_u64(*n),
            IdSpec::Uuid(u) => TenantId::from_uuid(*u),
            IdSpec::Text(t) => TenantId::new(t).expect("strategy yields valid text ids"),
        }
    }

    fn device(&self) -> DeviceId {
        match self {
            IdSpec::Num(n) => DeviceId::from_u64(*n),
            IdSpec::Uuid(u) => DeviceId::from_uuid(*u),
            IdSpec::Text(t) => DeviceId::new(t).expect("strategy yields valid text ids"),
        }
    }
}

/// Valid text ids, including the lengths at the inline/heap boundary and the maximum, and texts
/// that look like numbers or UUID bytes (to meet the other kinds).
fn text_id_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]{1,3}",
        "[0-9]{1,20}",
        "[ -~]{15,17}",
        "[a-zé:\u{1F600}]{1,40}",
        "[a-z]{128}",
        Just("é".repeat(64)),
    ]
    .prop_filter("text ids are 1..=128 bytes", |s| {
        (1..=MAX_TEXT_ID_LEN).contains(&s.len())
    })
}

/// Ids of all three kinds, drawn from small pools so equal ids come up often.
fn id_spec_strategy() -> impl Strategy<Value = IdSpec> {
    prop_oneof![
        (0u64..4).prop_map(IdSpec::Num),
        any::<u64>().prop_map(IdSpec::Num),
        (0u8..3).prop_map(|b| IdSpec::Uuid([b; 16])),
        any::<[u8; 16]>().prop_map(IdSpec::Uuid),
        prop_oneof![Just("1".to_owned()), Just("a".to_owned())].prop_map(IdSpec::Text),
        text_id_strategy().prop_map(IdSpec::Text),
    ]
}

fn owner_strategy() -> impl Strategy<Value = Owner> {
    (id_spec_strategy(), id_spec_strategy()).prop_map(|(t, d)| Owner::new(t.tenant(), d.device()))
}

macro_rules! namespace {
    ($name:ident, $text:literal, $item:ty) => {
        #[derive(Debug)]
        struct $name;
        impl Namespace for $name {
            const NAME: &'static str = $text;
            const SCHEMA: u16 = 1;
            type Item = $item;
            type Value = Bytes;
            type Codec = RawBytes;
        }
    };
}

namespace!(ThumbsU64, "thumb", u64);
namespace!(EventsU128, "event", u128);
namespace!(RelationsUnit, "relation", ());
namespace!(BlobsUuid, "blob", [u8; 16]);
namespace!(NamesString, "name", String);
namespace!(RawItems, "raw_item-2", Bytes);
namespace!(SmallU32, "small", u32);
namespace!(SignedI64, "signed", i64);

fn namespace_name_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("thumb".to_owned()),
        Just("thumb2".to_owned()),
        Just("t".to_owned()),
        "[a-z0-9_-]{1,32}",
    ]
}

fn item_bytes_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        proptest::collection::vec(0u8..3, 0..4),
        proptest::collection::vec(any::<u8>(), 0..40),
    ]
}

fn raw_key_strategy() -> impl Strategy<Value = RawKey> {
    (
        namespace_name_strategy(),
        owner_strategy(),
        item_bytes_strategy(),
    )
        .prop_map(|(namespace, owner, item)| {
            RawKey::new(&namespace, owner, item).expect("valid namespace")
        })
}

/// Keys of one namespace for each item type, with item values drawn so equal items come up.
fn u64_key_strategy() -> impl Strategy<Value = Key<ThumbsU64>> {
    (owner_strategy(), prop_oneof![0u64..3, any::<u64>()])
        .prop_map(|(owner, item)| Key::for_owner(owner, item))
}

fn string_key_strategy() -> impl Strategy<Value = Key<NamesString>> {
    (owner_strategy(), prop_oneof!["[ab]{0,2}", ".{0,20}"])
        .prop_map(|(owner, item)| Key::for_owner(owner, item))
}

/// Mutations of a valid encoding: the inputs where non-canonical acceptance would hide.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Truncate { len: usize },
    Append { bytes: Vec<u8> },
    Insert { at: usize, byte: u8 },
    Remove { at: usize },
}

fn mutation_strategy() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        proptest::collection::vec(any::<u8>(), 1..8).prop_map(|bytes| Mutation::Append { bytes }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Remove { at }),
    ]
}

fn apply(mutation: &Mutation, mut bytes: Vec<u8>) -> Vec<u8> {
    let n = bytes.len();
    match *mutation {
        Mutation::Flip { at, mask } => bytes[at % n] ^= mask,
        Mutation::Truncate { len } => bytes.truncate(len % n),
        Mutation::Append { bytes: ref extra } => bytes.extend_from_slice(extra),
        Mutation::Insert { at, byte } => bytes.insert(at % (n + 1), byte),
        Mutation::Remove { at } => {
            bytes.remove(at % n);
        }
    }
    bytes
}

/// Checks `Key::decode(encode(k)) == k` and `RawKey::decode(encode(k))` agrees with it.
fn round_trips<N: Namespace>(key: &Key<N>) -> Result<(), TestCaseError> {
    let bytes = key.encode();
    prop_assert!(bytes.starts_with(KEY_PREFIX), "{key:?} lacks the prefix");
    let decoded = Key::<N>::decode(&bytes);
    prop_assert_eq!(decoded.as_ref(), Ok(key), "Key::decode(encode(k)) != k");
    let raw = RawKey::decode(&bytes).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    prop_assert_eq!(raw.namespace.as_str(), N::NAME, "raw namespace differs");
    prop_assert_eq!(&raw.owner, key.owner(), "raw owner differs");
    prop_assert_eq!(raw.encode(), bytes, "RawKey re-encodes differently");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn raw_key_encoding_is_injective(a in raw_key_strategy(), b in raw_key_strategy()) {
        prop_assert_eq!(
            a == b,
            a.encode() == b.encode(),
            "keys {:?} and {:?}: equality and encoding equality disagree", a, b
        );
    }

    #[test]
    fn typed_key_encoding_is_injective(
        a in u64_key_strategy(),
        b in u64_key_strategy(),
        c in string_key_strategy(),
        d in string_key_strategy(),
    ) {
        prop_assert_eq!(a == b, a.encode() == b.encode(), "u64 keys {:?} / {:?}", a, b);
        prop_assert_eq!(c == d, c.encode() == d.encode(), "string keys {:?} / {:?}", c, d);
        // Different namespace names: never equal bytes, whatever the owner and item.
        prop_assert_ne!(a.encode(), c.encode(), "keys of two namespaces encode equal");
    }

    #[test]
    fn tenant_device_swap_encodes_differently(
        a in id_spec_strategy(),
        b in id_spec_strategy(),
        item in any::<u64>(),
    ) {
        let ab = Key::<ThumbsU64>::new(a.tenant(), b.device(), item);
        let ba = Key::<ThumbsU64>::new(b.tenant(), a.device(), item);
        prop_assert_eq!(
            ab.encode() == ba.encode(),
            a == b,
            "(a,b) and (b,a) encode equal although a != b: {:?} {:?}", a, b
        );
        prop_assert_eq!(ab == ba, a == b, "(a,b) == (b,a) although a != b");
    }

    #[test]
    fn moving_bytes_between_fields_changes_the_encoding(
        text in "[a-z:]{3,24}",
        cuts in (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
        other_cuts in (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
    ) {
        // One string split three ways into tenant, device and item: only the same split
        // may encode equal (no ambiguous separators).
        let split = |(a, b): (prop::sample::Index, prop::sample::Index)| {
            let mut cut = [1 + a.index(text.len() - 2), 1 + b.index(text.len() - 2)];
            cut.sort_unstable();
            if cut[0] == cut[1] {
                cut[1] += 1;
            }
            (cut[0], cut[1])
        };
        let key = |(i, j): (usize, usize)| {
            Key::<NamesString>::new(
                TenantId::new(&text[..i]).expect("non-empty"),
                DeviceId::new(&text[i..j]).expect("non-empty"),
                text[j..].to_owned(),
            )
        };
        let (first, second) = (split(cuts), split(other_cuts));
        prop_assert_eq!(
            key(first).encode() == key(second).encode(),
            first == second,
            "splits {:?} and {:?} of {:?}", first, second, text
        );
    }

    #[test]
    fn ids_of_different_kinds_never_collide(a in id_spec_strategy(), b in id_spec_strategy()) {
        prop_assert_eq!(a.tenant() == b.tenant(), a == b, "tenant ids {:?} / {:?}", a, b);
        prop_assert_eq!(a.device() == b.device(), a == b, "device ids {:?} / {:?}", a, b);
        let key = |spec: &IdSpec| Key::<RelationsUnit>::new(spec.tenant(), spec.device(), ()).encode();
        prop_assert_eq!(key(&a) == key(&b), a == b, "encodings of {:?} / {:?}", a, b);
    }

    #[test]
    fn keys_of_every_item_type_round_trip(
        owner in owner_strategy(),
        n in any::<u64>(),
        wide in any::<u128>(),
        uuid in any::<[u8; 16]>(),
        text in ".{0,40}",
        raw in proptest::collection::vec(any::<u8>(), 0..64),
        small in any::<u32>(),
        signed in any::<i64>(),
    ) {
        round_trips(&Key::<ThumbsU64>::for_owner(owner.clone(), n))?;
        round_trips(&Key::<EventsU128>::for_owner(owner.clone(), wide))?;
        round_trips(&Key::<RelationsUnit>::for_owner(owner.clone(), ()))?;
        round_trips(&Key::<BlobsUuid>::for_owner(owner.clone(), uuid))?;
        round_trips(&Key::<NamesString>::for_owner(owner.clone(), text))?;
        round_trips(&Key::<RawItems>::for_owner(owner.clone(), Bytes::from(raw)))?;
        round_trips(&Key::<SmallU32>::for_owner(owner.clone(), small))?;
        round_trips(&Key::<SignedI64>::for_owner(owner, signed))?;
    }

    #[test]
    fn every_item_type_encodes_injectively(
        owner in owner_strategy(),
        wide in (prop_oneof![0u128..3, any::<u128>()], prop_oneof![0u128..3, any::<u128>()]),
        signed in (-1i64..2, -1i64..2),
        small in (0u32..3, 0u32..3),
        uuid in (0u8..2, 0u8..2),
        raw in (item_bytes_strategy(), item_bytes_strategy()),
    ) {
        fn same<N: Namespace>(owner: &Owner, a: N::Item, b: N::Item) -> Result<(), TestCaseError> {
            let (ka, kb) = (Key::<N>::for_owner(owner.clone(), a), Key::<N>::for_owner(owner.clone(), b));
            prop_assert_eq!(ka == kb, ka.encode() == kb.encode(), "items of {}: {:?} / {:?}", N::NAME, ka, kb);
            Ok(())
        }
        same::<EventsU128>(&owner, wide.0, wide.1)?;
        same::<SignedI64>(&owner, signed.0, signed.1)?;
        same::<SmallU32>(&owner, small.0, small.1)?;
        same::<BlobsUuid>(&owner, [uuid.0; 16], [uuid.1; 16])?;
        same::<RawItems>(&owner, Bytes::from(raw.0), Bytes::from(raw.1))?;
        same::<RelationsUnit>(&owner, (), ())?;
    }

    #[test]
    fn key_decode_refuses_other_namespaces(key in u64_key_strategy()) {
        let bytes = key.encode();
        prop_assert_eq!(
            Key::<SmallU32>::decode(&bytes),
            Err(KeyDecodeError::OtherNamespace),
            "a thumb key decoded as a small key"
        );
    }

    #[test]
    fn raw_key_decode_is_total_and_canonical_on_arbitrary_bytes(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..96),
            proptest::collection::vec(any::<u8>(), 0..96).prop_map(|tail| {
                let mut bytes = b"sc1:thumb:".to_vec();
                bytes.extend(tail);
                bytes
            }),
        ],
    ) {
        if let Ok(key) = RawKey::decode(&bytes) {
            prop_assert_eq!(key.encode(), bytes, "decode accepted a non-canonical encoding");
        }
    }

    #[test]
    fn raw_key_decode_is_total_and_canonical_near_valid_keys(
        key in raw_key_strategy(),
        mutations in proptest::collection::vec(mutation_strategy(), 1..4),
    ) {
        let mut bytes = key.encode();
        for mutation in &mutations {
            if bytes.is_empty() {
                break;
            }
            bytes = apply(mutation, bytes);
        }
        if let Ok(decoded) = RawKey::decode(&bytes) {
            prop_assert_eq!(
                &decoded.encode(),
                &bytes,
                "decode accepted a non-canonical encoding"
            );
        }
        // The typed decoder is total too.
        let _ = Key::<ThumbsU64>::decode(&bytes);
        let _ = Key::<NamesString>::decode(&bytes);
    }

    #[test]
    fn every_proper_prefix_of_a_key_is_refused(key in raw_key_strategy()) {
        let bytes = key.encode();
        for len in 0..bytes.len() {
            prop_assert!(
                RawKey::decode(&bytes[..len]).is_err(),
                "a {len}-byte prefix of a {}-byte key decoded", bytes.len()
            );
        }
    }

    #[test]
    fn text_ids_are_kept_exactly_or_refused(text in prop_oneof![
        ".{0,20}",
        "[a-z]{120,140}",
        "[é]{60,70}",
        "[a-z\\x00-\\x1f\\x7f\u{80}-\u{9f}]{1,10}",
    ]) {
        let expected = if text.is_empty() {
            Err(IdError::Empty)
        } else if text.len() > MAX_TEXT_ID_LEN {
            Err(IdError::TooLong { len: text.len() })
        } else if let Some((at, _)) = text.char_indices().find(|(_, c)| c.is_control()) {
            Err(IdError::ControlChar { at })
        } else {
            Ok(text.as_str())
        };
        let expected = expected.map(|text| Some(text.to_owned()));
        let tenant = TenantId::new(&text).map(|id| id.as_str().map(str::to_owned));
        let device = DeviceId::new(&text).map(|id| id.as_str().map(str::to_owned));
        prop_assert_eq!(&tenant, &expected, "TenantId::new({:?})", text);
        prop_assert_eq!(&device, &expected, "DeviceId::new({:?})", text);
    }
}

#[test]
fn id_validation_errors_are_precise() {
    assert_eq!(TenantId::new(""), Err(IdError::Empty));
    assert_eq!(DeviceId::new(""), Err(IdError::Empty));
    let long = "x".repeat(129);
    assert_eq!(TenantId::new(&long), Err(IdError::TooLong { len: 129 }));
    assert_eq!(DeviceId::new(&long), Err(IdError::TooLong { len: 129 }));
    // 65 two-byte characters: 130 bytes although only 65 characters.
    assert_eq!(
        TenantId::new(&"é".repeat(65)),
        Err(IdError::TooLong { len: 130 })
    );
    for (text, at) in [
        ("\0", 0),
        ("a\nb", 1),
        ("tab\there", 3),
        ("del\x7f", 3),
        ("éé\u{85}", 4),
    ] {
        assert_eq!(
            TenantId::new(text),
            Err(IdError::ControlChar { at }),
            "{text:?}"
        );
        assert_eq!(
            DeviceId::new(text),
            Err(IdError::ControlChar { at }),
            "{text:?}"
        );
    }
}

#[test]
fn ids_are_inline_or_shared_and_never_truncated() {
    for len in [1, 15, 16, 17, 64, 127, 128] {
        let text: String = "abcdefghijklmnopqrstuvwxyz"
            .chars()
            .cycle()
            .take(len)
            .collect();
        let tenant = TenantId::new(&text).expect("valid id");
        let device = DeviceId::new(&text).expect("valid id");
        assert_eq!(tenant.as_str(), Some(text.as_str()), "len {len}");
        assert_eq!(device.as_str(), Some(text.as_str()), "len {len}");
        assert_eq!(tenant.clone(), tenant, "clone of a {len}-byte id");
        assert_eq!(tenant.to_string(), text);
        let key = Key::<ThumbsU64>::new(tenant, device, 1);
        assert_eq!(Key::<ThumbsU64>::decode(&key.encode()), Ok(key));
    }
    // Two ids that share their first 16 (inline) or 128 bytes stay distinct.
    let a = TenantId::new("0123456789abcdef").expect("valid id");
    let b = TenantId::new("0123456789abcdefX").expect("valid id");
    assert_ne!(a, b);
    let max = "m".repeat(128);
    assert!(TenantId::new(&max).is_ok());
    assert!(TenantId::new(&format!("{max}m")).is_err());
    // Small enough that short ids do not allocate (an `Arc<str>` plus the tag at most).
    assert!(std::mem::size_of::<TenantId>() <= 24);
    assert!(std::mem::size_of::<DeviceId>() <= 24);
}

#[test]
fn id_kinds_are_distinct() {
    assert_ne!(
        TenantId::from_u64(42),
        TenantId::new("42").expect("valid id")
    );
    assert_ne!(TenantId::from_uuid([0; 16]), TenantId::from_u64(0));
    assert_eq!(TenantId::from_u64(42).as_u64(), Some(42));
    assert_eq!(TenantId::from_u64(42).as_str(), None);
    assert_eq!(DeviceId::from_uuid([7; 16]).as_uuid(), Some([7; 16]));
    assert_eq!(DeviceId::from_uuid([7; 16]).as_u64(), None);
}

#[test]
fn raw_key_new_validates_the_namespace() {
    let owner = Owner::new(TenantId::from_u64(1), DeviceId::from_u64(2));
    for bad in ["", "Bad", "a:b", "a b", &"x".repeat(33)] {
        assert!(
            matches!(
                RawKey::new(bad, owner.clone(), Vec::new()),
                Err(KeyDecodeError::Namespace(_))
            ),
            "{bad:?} accepted"
        );
    }
    assert!(RawKey::new(&"x".repeat(32), owner, Vec::new()).is_ok());
}

#[test]
fn key_decode_reports_why() {
    let key = Key::<ThumbsU64>::new(TenantId::from_u64(1), DeviceId::from_u64(2), 3);
    let bytes = key.encode();
    assert_eq!(
        RawKey::decode(b"sc2:thumb:"),
        Err(KeyDecodeError::MissingPrefix)
    );
    assert_eq!(RawKey::decode(b""), Err(KeyDecodeError::Truncated));
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        RawKey::decode(&trailing),
        Err(KeyDecodeError::TrailingBytes(1))
    );
    // A u64 item of 7 bytes is a valid raw key but not a valid `Key<ThumbsU64>`.
    let raw = RawKey::new("thumb", key.owner().clone(), vec![0; 7]).expect("valid namespace");
    assert!(matches!(
        Key::<ThumbsU64>::decode(&raw.encode()),
        Err(KeyDecodeError::Item(_))
    ));
}

#[test]
fn owner_display_names_both_roles() {
    let owner = Owner::new(TenantId::from_u64(42), DeviceId::from_u64(7));
    assert_eq!(owner.to_string(), "tenant 42, device 7");
}

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn public_types_are_send_and_sync() {
    assert_send_sync::<Cache<ThumbsU64>>();
    assert_send_sync::<Cache<NamesString>>();
    assert_send_sync::<LocalCache<ThumbsU64>>();
    assert_send_sync::<
        LocalCache<ThumbsU64, std::hash::BuildHasherDefault<std::hash::DefaultHasher>>,
    >();
    assert_send_sync::<Client>();
    assert_send_sync::<KeyRing>();
    assert_send_sync::<Envelope>();
    assert_send_sync::<Sealing>();
    assert_send_sync::<MemoryStore>();
    assert_send_sync::<Key<ThumbsU64>>();
    assert_send_sync::<Key<RawItems>>();
    assert_send_sync::<Owner>();
    assert_send_sync::<TenantId>();
    assert_send_sync::<DeviceId>();
    assert_send_sync::<Violation>();
    assert_send_sync::<ViolationReport>();
    assert_send_sync::<Stats>();
    assert_send_sync::<Error>();
    assert_send_sync::<StoreError>();
    assert_send_sync::<RawKey>();
    assert_send_sync::<IdError>();
    assert_send_sync::<KeyDecodeError>();
}
