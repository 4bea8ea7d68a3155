//! S3-FIFO queue bookkeeping for one shard (Yang et al., "FIFO queues are all you need for cache
//! eviction", SOSP 2023).
//!
//! New entries enter a small FIFO (10% of the shard); an entry read while there moves to the main
//! FIFO when it reaches the head, otherwise it is evicted and its hash remembered in a ghost FIFO
//! (as many hashes as the shard holds entries).
//! A key re-inserted while its hash is a ghost goes straight to main. Main is a FIFO with
//! reinsertion (CLOCK-like, 2-bit frequency). One-hit wonders of a scan pass through small and
//! never displace the main working set: that is the scan resistance.
//!
//! The queues hold records `(key, id)`; an entry that was removed, or replaced by one of another
//! weight, leaves a stale record behind, recognised by its id and skipped, and swept out a few at
//! a time once stale records outnumber live ones. An entry replaced by one of the same weight
//! keeps its id, record and place: a write counts neither as a read nor as a new arrival.

use super::record_queue::RecordQueue;
use nohash_hasher::BuildNoHashHasher;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

/// One queued entry.
pub(super) struct Record<K> {
    pub(super) key: K,
    pub(super) hash: u64,
    pub(super) id: u64,
    pub(super) weight: u64,
}

/// What the map says about a popped record.
pub(super) enum Visit {
    /// The record's entry is gone or was replaced.
    Stale,
    /// The entry was read since it was queued: keep it (its frequency has been lowered).
    Referenced,
    /// The entry was evicted from the map, with this weight.
    Evicted {
        /// It was past its TTL (an expiration rather than an eviction).
        expired: bool,
    },
}

/// Counts from one `make_room` call.
#[derive(Default)]
pub(super) struct Evictions {
    pub(super) evicted: u64,
    pub(super) expired: u64,
}

pub(super) struct S3Fifo<K> {
    small: RecordQueue<K>,
    main: RecordQueue<K>,
    /// Weight of every record in `small`, stale ones included (they leave when popped or swept).
    small_weight: u64,
    /// Weight of live entries.
    live_weight: u64,
    live_entries: usize,
    capacity: u64,
    ghost: Ghost,
    next_id: u64,
}

impl<K> S3Fifo<K> {
    pub(super) fn new(capacity: u64) -> Self {
        Self {
            small: RecordQueue::default(),
            main: RecordQueue::default(),
            small_weight: 0,
            live_weight: 0,
            live_entries: 0,
            capacity,
            ghost: Ghost::default(),
            next_id: 0,
        }
    }

    pub(super) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Queues a new live entry and returns its id.
    pub(super) fn admit(&mut self, key: K, hash: u64, weight: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let record = Record {
            key,
            hash,
            id,
            weight,
        };
        if self.ghost.take(hash) {
            self.main.push_back(record);
        } else {
            self.small_weight += weight;
            self.small.push_back(record);
        }
        self.live_weight += weight;
        self.live_entries += 1;
        id
    }

    /// An entry left the map other than through `make_room` (removed, or replaced by one of
    /// another weight).
    pub(super) fn forget(&mut self, weight: u64) {
        self.live_weight -= weight;
        self.live_entries -= 1;
    }

    /// Pops records until the live weight fits the capacity, asking `visit` about each one.
    ///
    /// `visit(record, force)` must evict when `force` is set; it is set once a full pass over
    /// both queues has not made room (readers keep re-referencing entries).
    pub(super) fn make_room(
        &mut self,
        mut visit: impl FnMut(&Record<K>, bool) -> Visit,
    ) -> Evictions {
        let mut counts = Evictions::default();
        let mut budget = 2 * (self.small.len() + self.main.len()) + 8;
        while self.live_weight > self.capacity {
            let force = budget == 0;
            budget = budget.saturating_sub(1);
            let from_small = self.small_weight > self.capacity / 10 || self.main.is_empty();
            let popped = if from_small {
                self.small.pop_front()
            } else {
                self.main.pop_front()
            };
            let Some(record) = popped else { break };
            if from_small {
                self.small_weight -= record.weight;
            }
            match visit(&record, force) {
                Visit::Stale => {}
                Visit::Referenced => self.main.push_back(record),
                Visit::Evicted { expired } => {
                    self.live_weight -= record.weight;
                    self.live_entries -= 1;
                    if expired {
                        counts.expired += 1;
                    } else {
                        counts.evicted += 1;
                        if from_small {
                            self.ghost.remember(record.hash, self.ghost_limit());
                        }
                    }
                }
            }
        }
        counts
    }

    /// How many evicted hashes the ghost remembers: as many as the shard holds entries.
    ///
    /// Not `main.len()`: after a cold start everything sits in small and main fills only
    /// through promotions, so a ghost sized to main stays well below the shard's size for as
    /// long as hits are rare, and keys reused a little later than small's length never reach
    /// main. On the ARC paper's P3 trace at 16,384 entries a ghost sized to main gets 6.94% hits,
    /// this limit 8.88% (`examples/hit_ratio.rs`). Counting entries, not weight,
    /// keeps the ghost's memory in proportion to the entries cached when a weigher counts bytes.
    fn ghost_limit(&self) -> usize {
        self.live_entries.max(16)
    }

    /// Drops stale records, looking at up to `budget` records (those for which `is_live` is
    /// false are dropped): goes on with the sweep in progress, or begins one over both queues
    /// when stale records outnumber live ones enough to be worth it. Called on every insert, so
    /// only the test for that is inlined.
    #[inline]
    pub(super) fn sweep(&mut self, budget: usize, is_live: impl FnMut(&Record<K>) -> bool) {
        if self.small.is_sweeping()
            || self.main.is_sweeping()
            || self.small.len() + self.main.len() > 2 * self.live_entries + 64
        {
            self.sweep_some(budget, is_live);
        }
    }

    #[inline(never)]
    fn sweep_some(&mut self, mut budget: usize, mut is_live: impl FnMut(&Record<K>) -> bool) {
        if !self.small.is_sweeping() && !self.main.is_sweeping() {
            self.small.begin_sweep();
            self.main.begin_sweep();
        }
        self.small_weight -= self.small.sweep(&mut budget, &mut is_live);
        self.main.sweep(&mut budget, &mut is_live);
    }

    /// Records queued, live and stale.
    #[cfg(test)]
    pub(super) fn records(&self) -> usize {
        self.small.len() + self.main.len()
    }

    pub(super) fn clear(&mut self) {
        *self = Self::new(self.capacity);
    }
}

/// Hashes of keys recently evicted from the small queue, bounded FIFO.
#[derive(Default)]
struct Ghost {
    order: VecDeque<u64>,
    /// Keyed by the hashes themselves: they are the map's hashes of the keys, already mixed, so
    /// hashing them again would be a third of the ghost's cost per insert.
    counts: HashMap<u64, u32, BuildNoHashHasher<u64>>,
}

impl Ghost {
    fn remember(&mut self, hash: u64, limit: usize) {
        while self.order.len() >= limit {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.release(old);
        }
        self.order.push_back(hash);
        *self.counts.entry(hash).or_insert(0) += 1;
    }

    /// Whether `hash` is a ghost; consumes it (the record in `order` ages out harmlessly).
    fn take(&mut self, hash: u64) -> bool {
        self.counts.remove(&hash).is_some()
    }

    fn release(&mut self, hash: u64) {
        // One probe for the lookup and the removal.
        if let Entry::Occupied(mut count) = self.counts.entry(hash) {
            *count.get_mut() -= 1;
            if *count.get() == 0 {
                count.remove();
            }
        }
    }
}
