//! Model tests: random operation sequences against a `HashMap` model, for the in-process tier
//! (roomy, tiny, and under hashers whose fingerprints collide) and for `Cache` over `MemoryStore`
//! (both tiers, remote only, and a tiny in-process tier that keeps missing into the remote one).

mod support;

use bytes::Bytes;
use proptest::prelude::*;
use scoped_cache::{
    Cache, Client, DeviceId, FreshnessKind, Key, LocalCache, ManualClock, MemoryStore, TenantId,
};
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;
use support::fixture::{START_MS, Thumbs, ring};

/// The cache-wide TTL, in ms.
const TTL_MS: u64 = 100;
/// How long a `Cache` with a remote tier keeps a value in either tier: the TTL less the expiry
/// margin (the default 1 s clock-skew allowance, capped at a quarter of the TTL).
const KEEP_MS: u64 = TTL_MS - TTL_MS / 4;

/// A hasher that gives every key the same fingerprint: each key displaces every other.
#[derive(Clone, Default)]
struct ZeroHasher;

impl Hasher for ZeroHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, _bytes: &[u8]) {}
}

type ZeroState = BuildHasherDefault<ZeroHasher>;

/// A hasher with four outputs (two bits of SipHash): the 27 pooled keys share 4 fingerprints.
#[derive(Default)]
struct TwoBitHasher(DefaultHasher);

impl Hasher for TwoBitHasher {
    fn finish(&self) -> u64 {
        self.0.finish() & 3
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }
}

type TwoBitState = BuildHasherDefault<TwoBitHasher>;
/// The number of distinct fingerprints under [`TwoBitState`].
const TWO_BIT_FINGERPRINTS: usize = 4;

/// 27 keys: tenants and devices that share numbers (so `(1, 2)` and `(2, 1)` are both there),
/// a text id that spells a number, and three items.
fn key_pool() -> Vec<Key<Thumbs>> {
    let tenants = [
        TenantId::from_u64(1),
        TenantId::from_u64(2),
        TenantId::new("1").expect("valid id"),
    ];
    let devices = [
        DeviceId::from_u64(1),
        DeviceId::from_u64(2),
        DeviceId::new("2").expect("valid id"),
    ];
    let mut keys = Vec::new();
    for tenant in &tenants {
        for device in &devices {
            for item in 0..3 {
                keys.push(Key::new(tenant.clone(), device.clone(), item));
            }
        }
    }
    keys
}

const POOL: usize = 27;

#[derive(Debug, Clone)]
enum Op {
    /// Insert the key with the cache's TTL, or (in-process tier only) with its own TTL in ms.
    Insert {
        key: usize,
        ttl_ms: Option<u64>,
    },
    Get {
        key: usize,
    },
    Remove {
        key: usize,
    },
    /// `LocalCache::clear`; for `Cache`, clears the in-process tier only.
    Clear,
    Advance {
        ms: u64,
    },
}

fn op_strategy(own_ttl: bool) -> impl Strategy<Value = Op> {
    let ttl = if own_ttl {
        prop_oneof![Just(None), (1u64..200).prop_map(Some)].boxed()
    } else {
        Just(None).boxed()
    };
    prop_oneof![
        6 => (0..POOL, ttl).prop_map(|(key, ttl_ms)| Op::Insert { key, ttl_ms }),
        8 => (0..POOL).prop_map(|key| Op::Get { key }),
        2 => (0..POOL).prop_map(|key| Op::Remove { key }),
        1 => Just(Op::Clear),
        2 => prop_oneof![
            0u64..10,
            10u64..120,
            // Land exactly on expiry boundaries.
            Just(1),
            Just(KEEP_MS - 1),
            Just(KEEP_MS),
            Just(TTL_MS - KEEP_MS),
            Just(TTL_MS - 1),
            Just(TTL_MS),
        ]
        .prop_map(|ms| Op::Advance { ms }),
    ]
}

fn ops_strategy(own_ttl: bool) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op_strategy(own_ttl), 1..120)
}

/// A value no other insert of the sequence uses, so a wrong value cannot pass for the right one.
fn value_of(step: usize, key: usize) -> Bytes {
    Bytes::from(format!("step {step} key {key}"))
}

/// What should be stored: the value and when it expires.
type Model = HashMap<usize, (Bytes, u64)>;

/// Runs `ops` on a roomy `LocalCache` (no eviction) and requires the model's exact results,
/// including `remove`'s return value and `len()`.
fn check_exact<S: BuildHasher + Clone>(
    cache: &LocalCache<Thumbs, S>,
    clock: &ManualClock,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let keys = key_pool();
    let mut model = Model::new();
    for (step, op) in ops.iter().enumerate() {
        let now = clock.now_ms();
        match *op {
            Op::Insert { key, ttl_ms } => {
                let value = value_of(step, key);
                let stored = match ttl_ms {
                    Some(ttl) => {
                        cache.insert_with_ttl(&keys[key], value.clone(), Duration::from_millis(ttl))
                    }
                    None => cache.insert(&keys[key], value.clone()),
                };
                prop_assert!(stored, "step {}: insert refused", step);
                model.insert(key, (value, now + ttl_ms.unwrap_or(TTL_MS)));
            }
            Op::Get { key } => {
                let expected = match model.get(&key) {
                    Some((value, expires)) if now < *expires => Some(value.clone()),
                    Some(_) => {
                        // Read past its TTL: dropped by the read.
                        model.remove(&key);
                        None
                    }
                    None => None,
                };
                prop_assert_eq!(
                    cache.get(&keys[key]),
                    expected,
                    "step {}: get {:?}",
                    step,
                    op
                );
            }
            Op::Remove { key } => {
                prop_assert_eq!(
                    cache.remove(&keys[key]),
                    model.remove(&key).is_some(),
                    "step {}: remove {:?}",
                    step,
                    op
                );
            }
            Op::Clear => {
                cache.clear();
                model.clear();
            }
            Op::Advance { ms } => clock.advance(Duration::from_millis(ms)),
        }
        prop_assert_eq!(
            cache.len(),
            model.len(),
            "step {}: len after {:?}",
            step,
            op
        );
    }
    let stats = cache.stats();
    prop_assert_eq!(stats.violations.total(), 0, "violations in honest use");
    prop_assert_eq!(stats.evictions, 0, "evictions in a roomy cache");
    Ok(())
}

/// Runs `ops` on a tiny `LocalCache`: a read returns the model's value or nothing, never another
/// value, never an expired one, and an entry once gone does not come back; `len() <= capacity`.
fn check_bounded<S: BuildHasher + Clone>(
    cache: &LocalCache<Thumbs, S>,
    clock: &ManualClock,
    capacity: usize,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let keys = key_pool();
    // Entries that may still be in the cache.
    let mut model = Model::new();
    let mut inserts = 0;
    for (step, op) in ops.iter().enumerate() {
        let now = clock.now_ms();
        match *op {
            Op::Insert { key, ttl_ms } => {
                let value = value_of(step, key);
                let stored = match ttl_ms {
                    Some(ttl) => {
                        cache.insert_with_ttl(&keys[key], value.clone(), Duration::from_millis(ttl))
                    }
                    None => cache.insert(&keys[key], value.clone()),
                };
                prop_assert!(stored, "step {}: insert refused", step);
                inserts += 1;
                model.insert(key, (value, now + ttl_ms.unwrap_or(TTL_MS)));
            }
            Op::Get { key } => {
                let got = cache.get(&keys[key]);
                match (&got, model.get(&key)) {
                    (None, _) => {
                        model.remove(&key);
                    }
                    (Some(value), Some((expected, expires))) => {
                        prop_assert_eq!(
                            value,
                            expected,
                            "step {}: get {:?} returned another value",
                            step,
                            op
                        );
                        prop_assert!(
                            now < *expires,
                            "step {}: get {:?} returned an expired value",
                            step,
                            op
                        );
                    }
                    (Some(value), None) => {
                        return Err(TestCaseError::fail(format!(
                            "step {step}: get {op:?} returned {value:?} for a key that is gone"
                        )));
                    }
                }
            }
            Op::Remove { key } => {
                let removed = cache.remove(&keys[key]);
                let present = model.remove(&key).is_some();
                prop_assert!(
                    !removed || present,
                    "step {}: removed a key that was gone",
                    step
                );
            }
            Op::Clear => {
                cache.clear();
                model.clear();
            }
            Op::Advance { ms } => clock.advance(Duration::from_millis(ms)),
        }
        prop_assert!(
            cache.len() <= capacity,
            "step {}: len {} above capacity {}",
            step,
            cache.len(),
            capacity
        );
    }
    let stats = cache.stats();
    prop_assert_eq!(stats.violations.total(), 0, "violations in honest use");
    prop_assert!(
        stats.inserts == inserts,
        "inserts counted {} of {}",
        stats.inserts,
        inserts
    );
    Ok(())
}

fn roomy_cache<S: BuildHasher + Clone>(clock: &ManualClock, hasher: S) -> LocalCache<Thumbs, S> {
    // More room than any sequence has operations. Capacity is split between policy shards of
    // at least 4096 units each (one shard here), and the pool has 27 keys, so even when every key lands in one
    // shard (as under the constant hasher) nothing is ever evicted.
    LocalCache::builder()
        .max_entries(1_000)
        .ttl(Duration::from_millis(TTL_MS))
        .clock(clock.clock())
        .hasher(hasher)
        .build()
        .expect("valid configuration")
}

fn tiny_cache<S: BuildHasher + Clone>(
    clock: &ManualClock,
    capacity: usize,
    hasher: S,
) -> LocalCache<Thumbs, S> {
    LocalCache::builder()
        .max_entries(capacity as u64)
        .ttl(Duration::from_millis(TTL_MS))
        .clock(clock.clock())
        .hasher(hasher)
        .build()
        .expect("valid configuration")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
}

/// How the store's clock moves against the cache's, as (numerator, denominator) of its pace.
/// A store whose clock runs slow keeps values past the time the cache told it, as a lagging
/// replica or a store that ignores TTLs would: then the envelope's own expiry decides.
fn store_pace_strategy() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![Just((1, 1)), Just((1, 2)), Just((0, 1))]
}

/// What the cache should hold for a key: the value, and when it was inserted by the cache's
/// clock and by the store's.
type CacheModel = HashMap<usize, (Bytes, u64, u64)>;

/// Runs `ops` through `Cache` over a `MemoryStore` on its own manual clock, moving at
/// `store_pace` of the cache's; results must be exactly the model's whatever the in-process
/// capacity (0 = remote tier only):
///
/// - before the keep time (TTL less the expiry margin), the value, from either tier;
/// - after it, the value only while the store still holds it (by its clock) and the envelope
///   has not expired (by the cache's): `now < inserted + TTL`, exactly;
/// - every read of an expired envelope the store still held is one freshness miss, and nothing
///   is ever a violation.
fn check_cache(
    local_capacity: u64,
    store_pace: (u64, u64),
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let keys = key_pool();
    let clock = ManualClock::new(START_MS);
    let store_clock = ManualClock::new(START_MS);
    let store = Arc::new(MemoryStore::with_clock(64 << 20, store_clock.clock()));
    let client = Client::builder()
        .key_ring(ring())
        .remote_shared(store.clone())
        .clock(clock.clock())
        .on_violation(|report| panic!("violation in honest use: {report:?}"))
        .build()
        .expect("valid client");
    let cache: Cache<Thumbs> = client
        .cache()
        .local_capacity(local_capacity)
        .ttl(Duration::from_millis(TTL_MS))
        .build()
        .expect("valid cache");
    let mut model = CacheModel::new();
    let mut expired_reads = 0;
    runtime().block_on(async {
        for (step, op) in ops.iter().enumerate() {
            let (now, store_now) = (clock.now_ms(), store_clock.now_ms());
            match *op {
                Op::Insert { key, .. } => {
                    let value = value_of(step, key);
                    let inserted = cache.insert(&keys[key], value.clone()).await;
                    prop_assert!(
                        inserted.is_ok(),
                        "step {}: insert failed: {:?}",
                        step,
                        inserted
                    );
                    model.insert(key, (value, now, store_now));
                }
                Op::Get { key } => {
                    let expected = match model.get(&key) {
                        Some((value, at, _)) if now < at + KEEP_MS => Some(value.clone()),
                        Some((value, at, stored_at)) if store_now < stored_at + KEEP_MS => {
                            if now < at + TTL_MS {
                                Some(value.clone())
                            } else {
                                expired_reads += 1;
                                None
                            }
                        }
                        _ => None,
                    };
                    prop_assert_eq!(
                        cache.get(&keys[key]).await,
                        expected,
                        "step {}: get {:?} (local capacity {}, store pace {:?})",
                        step,
                        op,
                        local_capacity,
                        store_pace
                    );
                }
                Op::Remove { key } => {
                    let invalidated = cache.invalidate(&keys[key]).await;
                    prop_assert!(invalidated.is_ok(), "step {}: invalidate failed", step);
                    model.remove(&key);
                }
                Op::Clear => {
                    // The remote tier still has every value: reads must find them there.
                    if let Some(local) = cache.local() {
                        local.clear();
                    }
                }
                Op::Advance { ms } => {
                    clock.advance(Duration::from_millis(ms));
                    store_clock.advance(Duration::from_millis(ms * store_pace.0 / store_pace.1));
                }
            }
            if let Some(local) = cache.local() {
                prop_assert!(
                    local.len() as u64 <= local_capacity,
                    "step {}: in-process tier over capacity",
                    step
                );
            }
        }
        Ok::<(), TestCaseError>(())
    })?;
    let stats = cache.stats();
    prop_assert_eq!(stats.violations.total(), 0, "violations in honest use");
    prop_assert_eq!(
        stats.freshness_misses.get(FreshnessKind::Expired),
        expired_reads,
        "expired envelopes read"
    );
    prop_assert_eq!(
        stats.freshness_misses.total(),
        expired_reads,
        "other freshness misses in honest use"
    );
    prop_assert_eq!(stats.remote_errors, 0, "remote errors from a MemoryStore");
    if local_capacity == 0 {
        prop_assert_eq!(stats.hits_local, 0, "local hits without a local tier");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn roomy_local_cache_matches_the_model_exactly(ops in ops_strategy(true)) {
        let clock = ManualClock::new(START_MS);
        check_exact(&roomy_cache(&clock, ahash::RandomState::new()), &clock, &ops)?;
    }

    #[test]
    fn tiny_local_cache_returns_the_model_value_or_nothing(
        capacity in 1usize..6,
        ops in ops_strategy(true),
    ) {
        let clock = ManualClock::new(START_MS);
        check_bounded(&tiny_cache(&clock, capacity, ahash::RandomState::new()), &clock, capacity, &ops)?;
    }

    // Colliding fingerprints: a key whose entry another key displaced reads as a miss, never as
    // the other key's value, and no collision is reported as a violation (`check_bounded`).

    #[test]
    fn constant_hasher_local_cache_returns_the_model_value_or_nothing(ops in ops_strategy(true)) {
        let clock = ManualClock::new(START_MS);
        // One fingerprint: never more than one entry, however roomy the cache.
        check_bounded(&roomy_cache(&clock, ZeroState::default()), &clock, 1, &ops)?;
    }

    #[test]
    fn narrow_hasher_local_cache_returns_the_model_value_or_nothing(ops in ops_strategy(true)) {
        let clock = ManualClock::new(START_MS);
        check_bounded(&roomy_cache(&clock, TwoBitState::default()), &clock, TWO_BIT_FINGERPRINTS, &ops)?;
    }

    #[test]
    fn narrow_hasher_tiny_local_cache_returns_the_model_value_or_nothing(
        capacity in 1usize..6,
        ops in ops_strategy(true),
    ) {
        let clock = ManualClock::new(START_MS);
        let bound = capacity.min(TWO_BIT_FINGERPRINTS);
        check_bounded(&tiny_cache(&clock, capacity, TwoBitState::default()), &clock, bound, &ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn cache_with_both_tiers_matches_the_model(pace in store_pace_strategy(), ops in ops_strategy(false)) {
        check_cache(10_000, pace, &ops)?;
    }

    #[test]
    fn cache_with_remote_tier_only_matches_the_model(pace in store_pace_strategy(), ops in ops_strategy(false)) {
        check_cache(0, pace, &ops)?;
    }

    #[test]
    fn cache_with_tiny_local_tier_matches_the_model(
        capacity in 1u64..4,
        pace in store_pace_strategy(),
        ops in ops_strategy(false),
    ) {
        check_cache(capacity, pace, &ops)?;
    }
}

/// Many owners whose numbers are each other's swaps, all with one fingerprint: each insert
/// displaces the previous key's entry, which then reads as a miss, never as the newer value.
#[test]
fn constant_hasher_never_reads_another_keys_value() {
    let clock = ManualClock::new(START_MS);
    let cache = LocalCache::<Thumbs>::builder()
        .max_entries(127)
        .clock(clock.clock())
        .hasher(ZeroState::default())
        .build()
        .expect("valid configuration");
    let key = |t: u64, d: u64, i: u64| Key::new(TenantId::from_u64(t), DeviceId::from_u64(d), i);
    let value = |t: u64, d: u64, i: u64| Bytes::from(format!("{t}/{d}/{i}"));
    // 6 tenants x 6 devices x 3 items = 108 keys, including every (a, b) / (b, a) pair.
    let keys: Vec<_> = (0..6)
        .flat_map(|t| (0..6).flat_map(move |d| (0..3).map(move |i| (t, d, i))))
        .collect();
    for (n, &(t, d, i)) in keys.iter().enumerate() {
        assert!(cache.insert(&key(t, d, i), value(t, d, i)));
        assert_eq!(
            cache.get(&key(t, d, i)),
            Some(value(t, d, i)),
            "{t}/{d}/{i}"
        );
        // The swapped owner, an earlier key and a key never stored: all collide, none is served.
        let swapped = (t == d).then(|| value(t, d, i)); // the same key when t == d
        assert_eq!(cache.get(&key(d, t, i)), swapped, "{d}/{t}/{i}");
        if let Some(&(t0, d0, i0)) = n.checked_sub(1).map(|m| &keys[m]) {
            assert_eq!(
                cache.get(&key(t0, d0, i0)),
                None,
                "{t0}/{d0}/{i0} was displaced"
            );
            assert!(
                !cache.remove(&key(t0, d0, i0)),
                "removing a displaced key removes nothing"
            );
        }
        assert_eq!(cache.get(&key(t, d, 3)), None, "an item never stored");
        assert_eq!(cache.len(), 1);
    }
    // Text ids that spell the numbers are other ids.
    let text = Key::<Thumbs>::new(
        TenantId::new("1").expect("valid"),
        DeviceId::new("2").expect("valid"),
        0,
    );
    assert!(cache.insert(&key(1, 2, 0), Bytes::from_static(b"new")));
    assert_eq!(cache.get(&text), None);
    assert!(
        !cache.remove(&key(2, 1, 0)),
        "only the key's own entry is removed"
    );
    assert_eq!(cache.get(&key(1, 2, 0)), Some(Bytes::from_static(b"new")));
    assert!(cache.remove(&key(1, 2, 0)));
    assert!(cache.is_empty());
    let stats = cache.stats();
    assert_eq!(
        stats.violations.total(),
        0,
        "collisions are misses, not violations"
    );
    assert_eq!(
        stats.evictions, 0,
        "a displaced entry is replaced, not evicted"
    );
}

/// Far more keys than room: eviction keeps the bound and never mixes values.
#[test]
fn eviction_keeps_the_bound_and_never_mixes_values() {
    const CAPACITY: usize = 16;
    const KEYS: u64 = 500;
    let clock = ManualClock::new(START_MS);
    let cache = LocalCache::<Thumbs>::builder()
        .max_entries(CAPACITY as u64)
        .clock(clock.clock())
        .build()
        .expect("valid configuration");
    let key = |n: u64| {
        Key::new(
            TenantId::from_u64(n % 25),
            DeviceId::from_u64(n / 25),
            n % 3,
        )
    };
    let value = |n: u64| Bytes::from(n.to_string());
    for n in 0..KEYS {
        assert!(cache.insert(&key(n), value(n)));
        // Re-read a few old keys so some of them earn a place in the main queue.
        for old in [n / 2, n / 3, n.saturating_sub(1)] {
            if let Some(found) = cache.get(&key(old)) {
                assert_eq!(found, value(old), "key {old} read another key's value");
            }
        }
        assert!(cache.len() <= CAPACITY, "len {} after {n}", cache.len());
    }
    let mut present = 0;
    for n in 0..KEYS {
        if let Some(found) = cache.get(&key(n)) {
            assert_eq!(found, value(n), "key {n} read another key's value");
            present += 1;
        }
    }
    assert_eq!(present, cache.len());
    assert_eq!(cache.len(), CAPACITY, "a full cache stays full");
    let stats = cache.stats();
    assert_eq!(
        stats.evictions,
        KEYS - CAPACITY as u64,
        "every insert beyond capacity evicts one"
    );
    assert_eq!(stats.violations.total(), 0);
    assert_eq!(stats.expirations, 0);
}

/// Expired entries are never returned, and eviction prefers them.
#[test]
fn expiry_is_exact() {
    let clock = ManualClock::new(START_MS);
    let cache = LocalCache::<Thumbs>::builder()
        .max_entries(8)
        .ttl(Duration::from_millis(TTL_MS))
        .clock(clock.clock())
        .build()
        .expect("valid configuration");
    let key = |n: u64| Key::new(TenantId::from_u64(n), DeviceId::from_u64(n + 1), 0);
    for n in 0..8 {
        cache.insert(&key(n), Bytes::from(n.to_string()));
    }
    clock.advance(Duration::from_millis(TTL_MS - 1));
    assert_eq!(cache.get(&key(3)), Some(Bytes::from_static(b"3")));
    clock.advance(Duration::from_millis(1));
    for n in 0..8 {
        assert_eq!(cache.get(&key(n)), None, "expired entry {n} returned");
    }
    assert_eq!(cache.len(), 0);
    assert_eq!(cache.stats().expirations, 8);
}

/// Inserts into a full cache drop expired entries before live ones, counted as expirations.
#[test]
fn a_full_cache_drops_expired_entries_before_live_ones() {
    let clock = ManualClock::new(START_MS);
    let cache = LocalCache::<Thumbs>::builder()
        .max_entries(8)
        .clock(clock.clock())
        .build()
        .expect("valid configuration");
    let key = |n: u64| Key::new(TenantId::from_u64(n), DeviceId::from_u64(n + 1), 0);
    let value = |n: u64| Bytes::from(n.to_string());
    // The four oldest entries have a TTL; the next four have none.
    for n in 0..4 {
        cache.insert_with_ttl(&key(n), value(n), Duration::from_millis(TTL_MS));
    }
    for n in 4..8 {
        cache.insert(&key(n), value(n));
    }
    clock.advance(Duration::from_millis(TTL_MS));
    for n in 8..12 {
        assert!(cache.insert(&key(n), value(n)));
    }
    let stats = cache.stats();
    assert_eq!((stats.expirations, stats.evictions), (4, 0));
    for n in 4..12 {
        assert_eq!(cache.get(&key(n)), Some(value(n)), "live entry {n}");
    }
    assert_eq!(cache.len(), 8);
}
