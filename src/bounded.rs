//! A bounded, concurrent map with TTL and S3-FIFO eviction: the engine under [`LocalCache`] and
//! [`MemoryStore`].
//!
//! Reads take only the `DashMap` shard's read lock and bump a 2-bit frequency. Writes also take
//! the lock of the policy shard that owns the key (always before the map's lock), so every
//! mutation of one key is serialised with the bookkeeping that counts its weight.
//!
//! [`LocalCache`]: crate::LocalCache
//! [`MemoryStore`]: crate::MemoryStore

mod record_queue;
mod s3fifo;

use crate::clock::Clock;
use crate::clock::is_expired;
use crate::stats::{Counters, Event};
use crate::sync::{AtomicU8, ConcurrentMap, MapEntry, Mutex, Ordering, lock};
use s3fifo::{S3Fifo, Visit};
use std::borrow::Borrow;
use std::cell::OnceCell;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

/// Computes an entry's weight against the capacity.
pub(crate) type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u64 + Send + Sync>;

/// The smallest policy shard worth splitting off, in capacity units. Shards only spread write
/// contention (reads never lock them), and each costs accuracy: a shard evicts when it is full
/// even if another has room. With ≥ 4096 units per shard, that shortfall stays well under 1%.
const MIN_SHARD_CAPACITY: u64 = 4096;

/// The most entries a map shard should hold when the map is full. A `DashMap` shard grows by
/// rehashing every entry into a table twice the size under the shard's write lock, and every
/// reader and writer of the shard waits meanwhile: at ~0.35 µs an entry, a shard of 458,000
/// entries held its lock for 160 ms, and a store of 4,000,000 entries in the default 8 shards
/// crossed that size in all 8 within a second. At 16,384 entries a shard grows in a few ms.
const MAX_ENTRIES_PER_MAP_SHARD: u64 = 1 << 14;

/// Records an insert looks at while stale records are being swept out of its policy shard.
/// An insert adds at most one record, so a sweep outpaces them many times over; and no insert
/// holds the shard's lock for more than these few map lookups.
const SWEEP_STEP: usize = 16;

/// The most map shards: beyond this, each shard's header (128 bytes) costs more than the
/// shorter growth pauses are worth.
const MAX_MAP_SHARDS: u64 = 1 << 10;

/// In this order (`repr(C)`): what a hit reads first, right after the map's key, and the `id`
/// only eviction reads last, so that a hit spans as few cache lines of its bucket as it can.
#[repr(C)]
struct Slot<V> {
    expires_ms: u64,
    /// Reads since queued, saturating at 3.
    freq: AtomicU8,
    /// At most `u32::MAX` (heavier entries are not stored): with the 1-byte `freq` it fills
    /// what would be padding, so a map bucket stays a power of two in size (128 bytes for
    /// `LocalCache`'s entries), which its probe addresses with a shift.
    weight: u32,
    value: V,
    id: u64,
}

/// The result of a read.
pub(crate) enum Lookup<R> {
    Hit(R),
    Miss,
}

pub(crate) struct BoundedMap<K, V, S> {
    map: ConcurrentMap<K, Slot<V>, S>,
    policy: Box<[Mutex<S3Fifo<K>>]>,
    /// Shifts a hash (less hashbrown's top 7 bits) down to its policy shard's bits.
    policy_shift: u32,
    weigher: Option<Weigher<K, V>>,
    clock: Clock,
    counters: Counters,
}

impl<K, V, S> BoundedMap<K, V, S>
where
    K: Hash + Eq + Clone,
    S: BuildHasher + Clone,
{
    /// A map holding at most `capacity` units of weight (entries, without a weigher), and so at
    /// most `max_entries` entries (`capacity` over the lightest entry's weight): the map is
    /// sharded so that no shard grows past [`MAX_ENTRIES_PER_MAP_SHARD`].
    pub(crate) fn new(
        capacity: u64,
        max_entries: u64,
        weigher: Option<Weigher<K, V>>,
        clock: Clock,
        hasher: S,
    ) -> Self {
        let max_shards = shards_per_core().next_power_of_two();
        let mut shards = 1;
        while shards * 2 <= max_shards && capacity / (shards * 2) >= MIN_SHARD_CAPACITY {
            shards *= 2;
        }
        let policy = (0..shards)
            .map(|i| {
                Mutex::new(S3Fifo::new(
                    capacity / shards + u64::from(i < capacity % shards),
                ))
            })
            .collect();
        Self {
            map: ConcurrentMap::with_hasher_and_shard_amount(hasher, map_shards(max_entries)),
            policy,
            // At least 1, so that a single shard's shift stays in range; its mask is 0.
            policy_shift: u64::BITS - shards.trailing_zeros().max(1),
            weigher,
            clock,
            counters: Counters::default(),
        }
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The total capacity, in weight units.
    pub(crate) fn capacity(&self) -> u64 {
        self.policy.iter().map(|shard| lock(shard).capacity()).sum()
    }

    /// Reads the entry for `key` through `read`, unless it is absent or expired.
    /// Counts neither hits nor misses: the caller knows whether `read` accepted the entry.
    /// Inlined, like [`LocalCache::get`](crate::LocalCache::get): it is the L1 hit path.
    #[inline]
    pub(crate) fn get_with<Q, R>(&self, key: &Q, read: impl FnOnce(&V) -> R) -> Lookup<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // `get`, not `view`: dashmap's `view` adds an out-of-line frame to every hit.
        let looked = self.map.get(key).map(|entry| {
            let slot = entry.value();
            if !is_expired(slot.expires_ms, || self.clock.expiry_now_ms()) {
                let freq = slot.freq.load(Ordering::Relaxed);
                if freq < 3 {
                    slot.freq.store(freq + 1, Ordering::Relaxed);
                }
                Ok(read(&slot.value))
            } else {
                Err(slot.id)
            }
        });
        match looked {
            None => Lookup::Miss,
            Some(Ok(value)) => Lookup::Hit(value),
            Some(Err(expired_id)) => {
                self.remove_expired(key, expired_id);
                Lookup::Miss
            }
        }
    }

    /// Removes the expired entry `get_with` found, unless it was replaced meanwhile. Out of line
    /// and cold, so that it does not grow the hit path it is inlined into.
    #[cold]
    #[inline(never)]
    fn remove_expired<Q>(&self, key: &Q, expired_id: u64)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.remove_where(key, |slot| slot.id == expired_id) {
            self.counters.record(Event::Expiration);
        }
    }

    /// Inserts or replaces the entry for `key`, then evicts to fit. Returns `false` (and stores
    /// nothing) when the entry alone outweighs its shard, or `u32::MAX` units.
    pub(crate) fn insert(&self, key: K, value: V, expires_ms: u64) -> bool {
        let weight = self
            .weigher
            .as_ref()
            .map_or(1, |weigh| weigh(&key, &value))
            .max(1);
        let hash = self.map.hasher().hash_one(&key);
        let mut policy = lock(&self.policy[self.shard_of(hash)]);
        let Some(weight) = u32::try_from(weight)
            .ok()
            .filter(|&weight| u64::from(weight) <= policy.capacity())
        else {
            drop(policy);
            self.remove(&key);
            return false;
        };
        let entry = match self.map.entry(key) {
            // A resident entry of the same weight is replaced where it lies: it keeps its id,
            // and so its queue record and place, and nothing needs evicting. (Re-admitting it
            // would leave its old record stale, to be popped or swept later at a map probe each.)
            MapEntry::Occupied(mut resident) if resident.get().weight == weight => {
                let slot = resident.get_mut();
                slot.expires_ms = expires_ms;
                let old = std::mem::replace(&mut slot.value, value);
                drop(resident);
                drop(policy);
                // Dropped after the locks are released, which it does not need.
                drop(old);
                self.counters.record(Event::Insert);
                return true;
            }
            entry => entry,
        };
        let id = policy.admit(entry.key().clone(), hash, u64::from(weight));
        let slot = Slot {
            value,
            expires_ms,
            id,
            weight,
            freq: AtomicU8::new(0),
        };
        let replaced = match entry {
            MapEntry::Occupied(mut resident) => Some(resident.insert(slot)),
            MapEntry::Vacant(vacant) => {
                vacant.insert(slot);
                None
            }
        };
        if let Some(old) = &replaced {
            policy.forget(u64::from(old.weight));
        }
        self.counters.record(Event::Insert);
        // Read the clock once, and only when a visited entry has a TTL: a cache without TTLs
        // never reads it here (it was ~6% of an insert into a full cache).
        let now_ms = OnceCell::new();
        let expiry_now = || *now_ms.get_or_init(|| self.clock.expiry_now_ms());
        let counts = policy.make_room(|record, force| self.visit(record, force, expiry_now));
        if counts.evicted > 0 {
            self.counters.add(Event::Eviction, counts.evicted);
        }
        if counts.expired > 0 {
            self.counters.add(Event::Expiration, counts.expired);
        }
        policy.sweep(SWEEP_STEP, |record| {
            self.map
                .view(&record.key, |_, slot| slot.id == record.id)
                .unwrap_or(false)
        });
        true
    }

    /// Removes the entry for `key`; returns whether there was one.
    pub(crate) fn remove<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.remove_where(key, |_| true)
    }

    /// Removes the entry for `key` if `condition` holds for its value; returns whether it did.
    pub(crate) fn remove_if<Q>(&self, key: &Q, condition: impl FnOnce(&V) -> bool) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.remove_where(key, |slot| condition(&slot.value))
    }

    /// Removes every entry whose value satisfies `matches`; returns how many it removed. Walks
    /// the whole map: for the rare owner-wide invalidation, not for the hot path.
    pub(crate) fn remove_matching(&self, matches: impl Fn(&V) -> bool) -> usize {
        #[cfg(not(scoped_cache_loom))]
        let keys: Vec<K> = self
            .map
            .iter()
            .filter(|entry| matches(&entry.value().value))
            .map(|entry| entry.key().clone())
            .collect();
        #[cfg(scoped_cache_loom)]
        let keys: Vec<K> = self.map.keys_where(|slot| matches(&slot.value));
        keys.iter()
            .filter(|key| self.remove_where(*key, |slot| matches(&slot.value)))
            .count()
    }

    /// Removes every entry.
    pub(crate) fn clear(&self) {
        let mut guards: Vec<_> = self.policy.iter().map(lock).collect();
        self.map.clear();
        guards.iter_mut().for_each(|policy| policy.clear());
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    fn remove_where<Q>(&self, key: &Q, condition: impl FnOnce(&Slot<V>) -> bool) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.map.hasher().hash_one(key);
        let mut policy = lock(&self.policy[self.shard_of(hash)]);
        match self.map.remove_if(key, |_, slot| condition(slot)) {
            Some((_, slot)) => {
                policy.forget(u64::from(slot.weight));
                true
            }
            None => false,
        }
    }

    /// Decides the fate of a popped record; called with its policy shard locked.
    ///
    /// One probe of the map: the decision is taken under the shard's write lock that removes
    /// the entry when it is evicted (a referenced entry only has its frequency lowered).
    fn visit(&self, record: &s3fifo::Record<K>, force: bool, now_ms: impl Fn() -> u64) -> Visit {
        let mut visit = Visit::Stale;
        let evicted = self.map.remove_if(&record.key, |_, slot| {
            if slot.id != record.id {
                return false;
            }
            let expired = is_expired(slot.expires_ms, &now_ms);
            let freq = slot.freq.load(Ordering::Relaxed);
            if !expired && !force && freq > 0 {
                slot.freq.store(freq - 1, Ordering::Relaxed);
                visit = Visit::Referenced;
                return false;
            }
            visit = Visit::Evicted { expired };
            true
        });
        match (evicted, visit) {
            (Some(_), evicted @ Visit::Evicted { .. }) => evicted,
            (None, Visit::Referenced) => Visit::Referenced,
            _ => Visit::Stale,
        }
    }

    /// The policy shard of a key's hash: the leading bits of its map shard's index (`DashMap`
    /// takes that index from the bits below hashbrown's top 7), so every key of a policy shard
    /// lives in the same few map shards (in one, when there are as many of each). An insert
    /// then locks its own map shard and its victims' among those few, and two threads
    /// inserting meet on fewer lock words.
    fn shard_of(&self, hash: u64) -> usize {
        ((hash << 7) >> self.policy_shift) as usize & (self.policy.len() - 1)
    }
}

/// Four shards per core (`DashMap`'s default too): enough that threads seldom meet on a lock.
fn shards_per_core() -> u64 {
    std::thread::available_parallelism().map_or(4, |n| n.get() * 4) as u64
}

/// How many shards a map of at most `max_entries` entries gets: `DashMap`'s default (4 per
/// core), or more when that would let a shard grow past [`MAX_ENTRIES_PER_MAP_SHARD`]; a power
/// of two, at least 2 (`DashMap` requires both).
fn map_shards(max_entries: u64) -> usize {
    let per_core = shards_per_core();
    let needed = max_entries.div_ceil(MAX_ENTRIES_PER_MAP_SHARD);
    per_core
        .max(needed)
        .clamp(2, MAX_MAP_SHARDS.max(per_core))
        .next_power_of_two() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records queued in every policy shard, live and stale.
    fn records<K, V, S>(map: &BoundedMap<K, V, S>) -> usize {
        map.policy.iter().map(|shard| lock(shard).records()).sum()
    }

    #[test]
    fn replacing_an_entry_of_the_same_weight_keeps_its_record_and_evicts_nothing() {
        let map: BoundedMap<u64, u64, ahash::RandomState> =
            BoundedMap::new(8, 8, None, Clock::system(), ahash::RandomState::new());
        for key in 0..8 {
            assert!(map.insert(key, key, crate::clock::NEVER));
        }
        for value in 100..1_100 {
            assert!(map.insert(3, value, crate::clock::NEVER));
        }
        assert_eq!(records(&map), 8, "one record per entry, none stale");
        assert_eq!(map.counters().snapshot().evictions, 0);
        for key in 0..8 {
            let expected = if key == 3 { 1_099 } else { key };
            assert!(matches!(map.get_with(&key, |value| *value), Lookup::Hit(v) if v == expected));
        }
    }

    #[test]
    fn replacing_an_entry_with_another_weight_admits_it_again() {
        let weigher: Weigher<u64, u64> = Arc::new(|_, value| *value);
        let map: BoundedMap<u64, u64, ahash::RandomState> = BoundedMap::new(
            10,
            10,
            Some(weigher),
            Clock::system(),
            ahash::RandomState::new(),
        );
        assert!(map.insert(1, 4, crate::clock::NEVER));
        assert!(map.insert(2, 4, crate::clock::NEVER));
        assert!(
            map.insert(1, 6, crate::clock::NEVER),
            "weighs 6 now: 10 in all"
        );
        assert_eq!(map.counters().snapshot().evictions, 0);
        assert!(
            map.insert(2, 5, crate::clock::NEVER),
            "11 in all: one must go"
        );
        assert_eq!(map.counters().snapshot().evictions, 1);
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn a_full_map_shard_stays_small_enough_to_grow_quickly() {
        for max_entries in [0, 1, 4096, 200_000, 4_000_000, 16_000_000] {
            let shards = map_shards(max_entries);
            assert!(
                shards.is_power_of_two() && shards >= 2,
                "{shards} shards for {max_entries} entries"
            );
            assert!(
                max_entries.div_ceil(shards as u64) <= MAX_ENTRIES_PER_MAP_SHARD,
                "{max_entries} entries in {shards} shards"
            );
        }
        let huge = map_shards(u64::MAX);
        assert!(huge as u64 <= MAX_MAP_SHARDS.max(64), "{huge} shards");
    }
}
