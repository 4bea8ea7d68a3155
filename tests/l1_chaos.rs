//! The in-process tier verifies every hit: a map that hands back the wrong entry (simulated with
//! the `testing` feature's lookup chaos) causes a counted, reported miss, never the wrong value.

use bytes::Bytes;
use scoped_cache::{
    DeviceId, Key, LocalCache, Namespace, Owner, RawBytes, TenantId, Tier, Violation, ViolationKind,
};
use std::sync::{Arc, Mutex};

struct Thumbs;
impl Namespace for Thumbs {
    const NAME: &'static str = "thumb";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = Bytes;
    type Codec = RawBytes;
}

fn key(tenant: u64, device: u64, item: u64) -> Key<Thumbs> {
    Key::new(TenantId::from_u64(tenant), DeviceId::from_u64(device), item)
}

fn value(key: &Key<Thumbs>) -> Bytes {
    Bytes::from(format!("{:?}", key))
}

#[test]
fn a_lookup_answered_with_another_entry_is_refused() {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let cache = LocalCache::<Thumbs>::builder()
        .max_entries(100)
        .on_violation({
            let reports = Arc::clone(&reports);
            move |report| reports.lock().unwrap().push(report.clone())
        })
        // The incident's bug: tenant and device ids exchanged on the way into the map; and
        // item 2 answered with item 1's entry.
        .lookup_chaos(|k| match k.item() {
            2 => Some(key(
                k.owner().tenant.as_u64()?,
                k.owner().device.as_u64()?,
                1,
            )),
            _ => Some(key(
                k.owner().device.as_u64()?,
                k.owner().tenant.as_u64()?,
                *k.item(),
            )),
        })
        .build()
        .unwrap();
    for k in [key(17, 42, 1), key(42, 17, 1), key(17, 42, 2)] {
        cache.insert(&k, value(&k));
    }

    // (The refused read removes the requested key's entry, so ask for item 2 first.)
    assert_eq!(
        cache.get(&key(17, 42, 2)),
        None,
        "item 2 must not get item 1's value"
    );
    assert_eq!(
        cache.get(&key(17, 42, 1)),
        None,
        "(17, 42) must not get (42, 17)'s value"
    );

    let stats = cache.stats();
    assert_eq!(stats.violations.get(ViolationKind::OwnerMismatch), 1);
    assert_eq!(stats.violations.get(ViolationKind::ItemMismatch), 1);
    assert_eq!(stats.hits_local, 0);
    let reports = reports.lock().unwrap();
    assert_eq!(reports.len(), 2);
    assert!(
        matches!(reports[0].violation, Violation::ItemMismatch),
        "{:?}",
        reports[0]
    );
    assert_eq!(reports[1].tier, Tier::Local);
    assert_eq!(
        reports[1].expected,
        Owner::new(TenantId::from_u64(17), DeviceId::from_u64(42))
    );
    assert!(
        matches!(&reports[1].violation, Violation::OwnerMismatch { found, .. } if *found == Owner::new(TenantId::from_u64(42), DeviceId::from_u64(17))),
        "{:?}",
        reports[1]
    );
}

#[test]
fn without_chaos_the_same_entries_are_served() {
    let cache = LocalCache::<Thumbs>::new(100).unwrap();
    for k in [key(17, 42, 1), key(42, 17, 1), key(17, 42, 2)] {
        cache.insert(&k, value(&k));
        assert_eq!(cache.get(&k), Some(value(&k)));
    }
    assert_eq!(cache.stats().violations.total(), 0);
}
