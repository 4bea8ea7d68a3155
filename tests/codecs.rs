//! Value codecs: `RawBytes` and `Postcard<T>` round trip through both tiers; a deploy that bumps
//! a namespace's `SCHEMA` (and changes its value type) reads the old entries as counted, reported
//! `SchemaMismatch` misses; an authentic payload that does not decode is a counted, reported,
//! deleted `Undecodable` miss; decoding arbitrary bytes never panics.
#![cfg(feature = "serde")]

mod support;

use bytes::Bytes;
use proptest::prelude::*;
use scoped_cache::envelope::Envelope;
use scoped_cache::store::RemoteStore;
use scoped_cache::{
    Cache, Codec, FreshnessKind, Namespace, Postcard, RawBytes, Violation, ViolationKind,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use support::fixture::{Fixture, Thumbs, key, key_in, ring};

/// Event metadata as deploy 1 stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct EventV1 {
    id: u64,
    label: String,
}

/// Deploy 2 added a score and tags: same namespace name, new schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct EventV2 {
    id: u64,
    label: String,
    score: f32,
    tags: BTreeMap<String, u32>,
}

struct EventsV1;
impl Namespace for EventsV1 {
    const NAME: &'static str = "event";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = EventV1;
    type Codec = Postcard<EventV1>;
}

struct EventsV2;
impl Namespace for EventsV2 {
    const NAME: &'static str = "event";
    const SCHEMA: u16 = 2;
    type Item = u64;
    type Value = EventV2;
    type Codec = Postcard<EventV2>;
}

fn event_v1(id: u64) -> EventV1 {
    EventV1 {
        id,
        label: format!("motion {id}"),
    }
}

fn event_v2(id: u64) -> EventV2 {
    EventV2 {
        id,
        label: format!("motion {id}"),
        score: 0.75,
        tags: BTreeMap::from([("person".to_owned(), 2)]),
    }
}

#[test]
fn codecs_round_trip() {
    let jpeg = Bytes::from_static(b"\xff\xd8 jpeg");
    assert_eq!(
        RawBytes::decode(RawBytes::encode(&jpeg).expect("encodes")).expect("decodes"),
        jpeg
    );
    for event in [event_v2(0), event_v2(u64::MAX)] {
        let bytes = Postcard::<EventV2>::encode(&event).expect("encodes");
        assert_eq!(Postcard::<EventV2>::decode(bytes).expect("decodes"), event);
    }
    // Plain types too: any `Serialize + DeserializeOwned + Send + Sync + 'static`.
    let pairs = vec![(1u32, "a".to_owned()), (2, String::new())];
    let bytes = Postcard::<Vec<(u32, String)>>::encode(&pairs).expect("encodes");
    assert_eq!(
        Postcard::<Vec<(u32, String)>>::decode(bytes).expect("decodes"),
        pairs
    );
}

#[test]
fn postcard_decoding_is_exact() {
    let bytes = Postcard::<EventV1>::encode(&event_v1(7)).expect("encodes");
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert!(
        Postcard::<EventV1>::decode(Bytes::from(longer)).is_err(),
        "trailing bytes are refused"
    );
    for len in 0..bytes.len() {
        assert!(
            Postcard::<EventV1>::decode(bytes.slice(..len)).is_err(),
            "a truncation to {len} bytes is refused"
        );
    }
}

#[tokio::test]
async fn values_round_trip_through_both_tiers() {
    let deploy = Fixture::new();
    let events: Cache<EventsV2> = deploy.client.cache().build().expect("valid cache");
    let thumbs: Cache<Thumbs> = deploy.client.cache().build().expect("valid cache");
    let (event_key, thumb_key) = (key_in::<EventsV2>(1, 2, 3), key(1, 2, 3));
    events
        .insert(&event_key, event_v2(3))
        .await
        .expect("insert");
    thumbs
        .insert(&thumb_key, Bytes::from_static(b"jpeg"))
        .await
        .expect("insert");

    assert_eq!(events.get(&event_key).await, Some(event_v2(3)));
    assert_eq!(
        thumbs.get(&thumb_key).await,
        Some(Bytes::from_static(b"jpeg"))
    );
    // From the remote tier: decoded from the sealed payload.
    let reader = deploy.peer();
    assert_eq!(
        reader.remote_only_cache::<EventsV2>().get(&event_key).await,
        Some(event_v2(3))
    );
    assert_eq!(
        reader.remote_only_cache::<Thumbs>().get(&thumb_key).await,
        Some(Bytes::from_static(b"jpeg"))
    );
    assert!(deploy.reports().is_empty() && reader.reports().is_empty());
}

#[tokio::test]
async fn a_schema_bump_reads_old_entries_as_counted_misses() {
    let old = Fixture::new();
    let new = old.peer();
    let old_events = old.remote_only_cache::<EventsV1>();
    let new_events = new.remote_only_cache::<EventsV2>();
    let (old_key, new_key) = (key_in::<EventsV1>(1, 2, 3), key_in::<EventsV2>(1, 2, 3));
    assert_eq!(
        old_key.encode(),
        new_key.encode(),
        "both deploys use the same store entry"
    );

    old_events
        .insert(&old_key, event_v1(3))
        .await
        .expect("insert");
    assert_eq!(new_events.get(&new_key).await, None, "a miss, not garbage");
    let stats = new_events.stats();
    assert_eq!(
        stats.freshness_misses.get(FreshnessKind::SchemaMismatch),
        1,
        "another version's value is a freshness miss"
    );
    assert_eq!(stats.violations.total(), 0, "a deploy is not an attack");
    assert_eq!((stats.misses, stats.hits_remote), (1, 0));
    assert!(
        new.reports().is_empty(),
        "nothing reported: {:?}",
        new.reports()
    );
    assert_eq!(
        old.store.len(),
        1,
        "the old version's entry stays for the old deploy"
    );
    assert_eq!(
        old_events.get(&old_key).await,
        Some(event_v1(3)),
        "the old deploy still reads its own value"
    );

    // The new deploy loads and stores its own value; now the old deploy misses in its turn.
    let loaded = new_events
        .get_or_load(&new_key, || async { Ok::<_, std::io::Error>(event_v2(3)) })
        .await
        .expect("loads");
    assert_eq!(loaded, event_v2(3));
    assert_eq!(new_events.get(&new_key).await, Some(event_v2(3)));
    assert_eq!(old_events.get(&old_key).await, None);
    let old_stats = old_events.stats();
    assert_eq!(
        old_stats
            .freshness_misses
            .get(FreshnessKind::SchemaMismatch),
        1
    );
    assert_eq!(old_stats.violations.total(), 0);
    assert!(
        old.reports().is_empty(),
        "nothing reported: {:?}",
        old.reports()
    );
    assert_eq!(
        new_events.get(&new_key).await,
        Some(event_v2(3)),
        "nor deleted"
    );
}

#[tokio::test]
async fn an_authentic_payload_that_does_not_decode_is_a_counted_miss() {
    let deploy = Fixture::new();
    let events = deploy.remote_only_cache::<EventsV1>();
    let mine = key_in::<EventsV1>(1, 2, 3);
    let valid = Postcard::<EventV1>::encode(&event_v1(3)).expect("encodes");
    let mut trailing = valid.to_vec();
    trailing.extend_from_slice(b"extra");
    let payloads: [(&str, Bytes); 4] = [
        ("empty", Bytes::new()),
        ("truncated", valid.slice(..valid.len() - 1)),
        ("trailing bytes", Bytes::from(trailing)),
        ("a varint that never ends", Bytes::from(vec![0xff; 16])),
    ];

    for (round, (case, payload)) in payloads.into_iter().enumerate() {
        // Sealed for exactly this key and schema: only the payload is wrong, as from a writer
        // with another codec or a value type changed without a schema bump.
        let sealed = Envelope::default()
            .seal(&mine, &payload, 0, u64::MAX, &ring())
            .expect("seals");
        deploy
            .store
            .set(&mine.encode(), sealed, None)
            .await
            .expect("store write");

        assert_eq!(events.get(&mine).await, None, "{case}: a miss");
        let count = round as u64 + 1;
        let stats = events.stats();
        assert_eq!(
            stats.violations.get(ViolationKind::Undecodable),
            count,
            "{case}: counted"
        );
        assert_eq!(stats.misses, count, "{case}: a miss");
        assert_eq!(
            deploy.reports().last().map(|report| &report.violation),
            Some(&Violation::Undecodable),
            "{case}: reported"
        );
        assert!(deploy.store.is_empty(), "{case}: deleted");
    }
    assert_eq!(deploy.reports().len(), 4);
}

proptest! {
    #[test]
    fn postcard_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = Postcard::<EventV2>::decode(Bytes::from(bytes.clone()));
        let _ = Postcard::<Vec<String>>::decode(Bytes::from(bytes));
    }

    #[test]
    fn postcard_round_trips(id in any::<u64>(), label in ".{0,40}", score in any::<f32>()) {
        prop_assume!(!score.is_nan());
        let event = EventV2 { id, label, score, tags: BTreeMap::new() };
        let decoded = Postcard::<EventV2>::decode(Postcard::<EventV2>::encode(&event).expect("encodes"));
        prop_assert_eq!(decoded.ok(), Some(event), "decode(encode(v)) == v");
    }
}
