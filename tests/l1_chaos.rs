//! The in-process tier verifies every hit: a map that hands back the wrong entry (simulated with
//! the `testing` feature's lookup chaos) causes a counted, reported miss, never the wrong value.

mod support;

use scoped_cache::{LocalCache, Tier, Violation, ViolationKind};
use support::fixture::{Reports, Thumbs, key, owner, truth};

#[test]
fn a_lookup_answered_with_another_entry_is_refused() {
    let reports = Reports::default();
    let cache = LocalCache::<Thumbs>::builder()
        .max_entries(100)
        .on_violation(reports.sink())
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
        cache.insert(&k, truth(&k));
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
    let reports = reports.all();
    assert_eq!(reports.len(), 2);
    assert!(
        matches!(reports[0].violation, Violation::ItemMismatch),
        "{:?}",
        reports[0]
    );
    assert_eq!(reports[1].tier, Tier::Local);
    assert_eq!(reports[1].expected, owner(17, 42));
    assert!(
        matches!(&reports[1].violation, Violation::OwnerMismatch { found, .. } if *found == owner(42, 17)),
        "{:?}",
        reports[1]
    );
}

#[test]
fn without_chaos_the_same_entries_are_served() {
    let cache = LocalCache::<Thumbs>::new(100).unwrap();
    for k in [key(17, 42, 1), key(42, 17, 1), key(17, 42, 2)] {
        cache.insert(&k, truth(&k));
        assert_eq!(cache.get(&k), Some(truth(&k)));
    }
    assert_eq!(cache.stats().violations.total(), 0);
}
