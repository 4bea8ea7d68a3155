//! Counters that do not contend: each thread adds to its own cache-line-padded stripe.
//!
//! A thread owns its stripe while it lives: no other thread writes it, so an add is a plain
//! load and store rather than a locked read-modify-write (~20 cycles on x86, and a barrier to
//! the memory accesses around it; every L1 hit counts one). Threads beyond [`OWNED_STRIPES`] at
//! once share the remaining stripes and add atomically.

use crate::breaker::BreakerState;
use crate::freshness::FreshnessKind;
use crate::sync::{AtomicU64, Ordering};
use crate::violation::ViolationKind;
use std::cell::Cell;

/// A snapshot of a cache's counters.
///
/// Counters are summed over stripes without a global lock, so a snapshot taken while other
/// threads work is not an atomic cut, but every counted event appears in a later snapshot.
/// From [`Cache::stats`](crate::Cache::stats), [`LocalCache::stats`](crate::LocalCache::stats)
/// and [`MemoryStore::stats`](crate::MemoryStore::stats) (which fill in the counters that apply).
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use scoped_cache::{Client, DeviceId, Key, KeyId, KeyRing, MemoryStore, Namespace, RawBytes, TenantId, ViolationKind};
/// # struct Thumbnails;
/// # impl Namespace for Thumbnails {
/// #     const NAME: &'static str = "thumb";
/// #     const SCHEMA: u16 = 1;
/// #     type Item = u64;
/// #     type Value = bytes::Bytes;
/// #     type Codec = RawBytes;
/// # }
/// let client = Client::builder().key_ring(KeyRing::new(KeyId(1), &[42; 32])?).remote(MemoryStore::default()).build()?;
/// let thumbs = client.cache::<Thumbnails>().build()?;
/// let key = Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
/// thumbs.insert(&key, bytes::Bytes::from_static(b"jpeg")).await?;
/// thumbs.get(&key).await;
/// let stats = thumbs.stats();
/// assert_eq!((stats.inserts, stats.hits_local, stats.hits_remote), (1, 1, 0));
/// assert_eq!(stats.violations.get(ViolationKind::OwnerMismatch), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Reads answered by the in-process tier.
    pub hits_local: u64,
    /// Reads answered by the remote tier (verified, then promoted).
    pub hits_remote: u64,
    /// Reads that found no verified value: one per key for `get_many`, one per `get_or_load`
    /// that found none (whether it then loads or waits for another caller's load). A read under
    /// [`Policy::Bypass`](crate::Policy::Bypass) looks in neither tier and is a miss too, as its
    /// caller sees it.
    pub misses: u64,
    /// Values written to at least one tier (not writes skipped by the policy, an open breaker,
    /// or a cache that has no tier).
    pub inserts: u64,
    /// Entries evicted to stay within capacity.
    pub evictions: u64,
    /// Entries dropped because their TTL passed.
    pub expirations: u64,
    /// Remote calls that failed (the read became a miss, the write was not stored remotely).
    pub remote_errors: u64,
    /// Remote calls not made because the store's breaker was open (the store kept failing):
    /// reads that became misses, writes kept in-process only, deletes not done.
    pub remote_skipped: u64,
    /// Loader calls made by `get_or_load`.
    pub loads: u64,
    /// Loader calls that failed or timed out.
    pub load_errors: u64,
    /// `get_or_load` calls that waited for another caller's load instead of loading.
    pub coalesced: u64,
    /// Stale values served by [`Cache::get_or_refresh`](crate::Cache::get_or_refresh) because
    /// the load failed or was slow (fail-safe answers).
    pub served_stale: u64,
    /// Background loads started by a hit past the namespace's
    /// [`refresh_after`](crate::CacheBuilder::refresh_after) (each also counted in `loads`).
    pub refreshes: u64,
    /// Calls that stopped waiting at their deadline with no value to answer
    /// ([`LoadError::DeadlineExceeded`](crate::LoadError::DeadlineExceeded)).
    pub deadline_exceeded: u64,
    /// Loads refused because the namespace's loads in flight and queue were full
    /// ([`LoadError::Overloaded`](crate::LoadError::Overloaded)).
    pub overloaded: u64,
    /// Queued loads dropped before reaching the loader, because nobody waited for them any more.
    pub loads_abandoned: u64,
    /// Loads that ended with a value after every caller of theirs had stopped waiting: stored
    /// for the next caller, received by none.
    pub loads_unclaimed: u64,
    /// Values refused as integrity failures, by kind: each one was also reported to the
    /// violation sink. Zero in normal operation.
    pub violations: ViolationCounts,
    /// Authentic values of the requested key that were not used (expired, another schema, a key
    /// id this ring lacks), by kind: misses of normal operation, never reported as violations.
    pub freshness_misses: FreshnessCounts,
    /// The state of the namespace's breaker (`Closed` without `Policy::AutoBypass`).
    pub breaker_state: BreakerState,
    /// How often the breaker opened.
    pub breaker_trips: u64,
    /// Total time the breaker has spent open, in ms.
    pub breaker_open_ms: u64,
    /// The state of the client's store breaker, shared by every cache of the client (`Closed`
    /// without a remote tier).
    pub store_breaker_state: BreakerState,
    /// How often the store breaker opened.
    pub store_breaker_trips: u64,
}

/// Violations counted by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ViolationCounts([u64; ViolationKind::ALL.len()]);

/// Freshness misses counted by kind.
///
/// # Examples
///
/// ```
/// use scoped_cache::{FreshnessKind, Stats};
/// let stats = Stats::default();
/// assert_eq!(stats.freshness_misses.get(FreshnessKind::Expired), 0);
/// assert_eq!(stats.freshness_misses.total(), 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FreshnessCounts([u64; FreshnessKind::ALL.len()]);

impl FreshnessCounts {
    /// Misses of `kind`.
    pub fn get(&self, kind: FreshnessKind) -> u64 {
        self.0[kind.index()]
    }

    /// Misses of every kind.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(kind, count)` for every kind, in [`FreshnessKind::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (FreshnessKind, u64)> + '_ {
        FreshnessKind::ALL
            .into_iter()
            .map(|kind| (kind, self.get(kind)))
    }
}

impl ViolationCounts {
    /// The count of one kind.
    pub fn get(&self, kind: ViolationKind) -> u64 {
        self.0[kind.index()]
    }

    /// The count of all kinds together.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Each kind with its count, in [`ViolationKind::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (ViolationKind, u64)> + '_ {
        ViolationKind::ALL
            .into_iter()
            .map(|kind| (kind, self.get(kind)))
    }
}

/// What a counter counts. Violations take the last `ViolationKind::ALL.len()` slots.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Event {
    HitLocal,
    HitRemote,
    Miss,
    Insert,
    Eviction,
    Expiration,
    RemoteError,
    RemoteSkipped,
    Load,
    LoadError,
    Coalesced,
    ServedStale,
    Refresh,
    DeadlineExceeded,
    Overloaded,
    LoadAbandoned,
    LoadUnclaimed,
    Violation(ViolationKind),
    Freshness(FreshnessKind),
}

const PLAIN_EVENTS: usize = 17;
const SLOTS: usize = PLAIN_EVENTS + ViolationKind::ALL.len() + FreshnessKind::ALL.len();
/// Under loom every atomic access is a scheduling point: one shared stripe keeps the models
/// small.
const STRIPES: usize = if cfg!(scoped_cache_loom) { 1 } else { 32 };
/// Stripes `0..OWNED_STRIPES` belong to one thread each; the rest are shared.
const OWNED_STRIPES: usize = if cfg!(scoped_cache_loom) { 0 } else { 28 };
const _: () = assert!(STRIPES.is_power_of_two() && OWNED_STRIPES < STRIPES);
const _: () = assert!(OWNED_STRIPES <= u32::BITS as usize);

impl Event {
    #[inline]
    fn slot(self) -> usize {
        match self {
            Event::HitLocal => 0,
            Event::HitRemote => 1,
            Event::Miss => 2,
            Event::Insert => 3,
            Event::Eviction => 4,
            Event::Expiration => 5,
            Event::RemoteError => 6,
            Event::RemoteSkipped => 7,
            Event::Load => 8,
            Event::LoadError => 9,
            Event::Coalesced => 10,
            Event::ServedStale => 11,
            Event::Refresh => 12,
            Event::DeadlineExceeded => 13,
            Event::Overloaded => 14,
            Event::LoadAbandoned => 15,
            Event::LoadUnclaimed => 16,
            Event::Violation(kind) => PLAIN_EVENTS + kind.index(),
            Event::Freshness(kind) => PLAIN_EVENTS + ViolationKind::ALL.len() + kind.index(),
        }
    }
}

/// One thread's counters, alone on its cache lines.
#[repr(align(128))]
#[derive(Default)]
struct Stripe([AtomicU64; SLOTS]);

/// Striped event counters.
pub(crate) struct Counters {
    /// A fixed-size array, so that indexing it by a masked stripe index needs no bounds check.
    stripes: Box<[Stripe; STRIPES]>,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            stripes: Box::new(std::array::from_fn(|_| Stripe::default())),
        }
    }
}

impl Counters {
    #[inline]
    pub(crate) fn add(&self, event: Event, n: u64) {
        let stripe = stripe_index();
        // STRIPES is a power of two: the mask is one instruction and proves the index in bounds.
        let counter = &self.stripes[stripe & (STRIPES - 1)].0[event.slot()];
        if stripe < OWNED_STRIPES {
            // Only this thread writes its owned stripe.
            counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
        } else {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    #[inline]
    pub(crate) fn record(&self, event: Event) {
        self.add(event, 1);
    }

    fn sum(&self, slot: usize) -> u64 {
        self.stripes
            .iter()
            .map(|stripe| stripe.0[slot].load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let mut violations = ViolationCounts::default();
        for kind in ViolationKind::ALL {
            violations.0[kind.index()] = self.sum(Event::Violation(kind).slot());
        }
        let mut freshness_misses = FreshnessCounts::default();
        for kind in FreshnessKind::ALL {
            freshness_misses.0[kind.index()] = self.sum(Event::Freshness(kind).slot());
        }
        Stats {
            hits_local: self.sum(Event::HitLocal.slot()),
            hits_remote: self.sum(Event::HitRemote.slot()),
            misses: self.sum(Event::Miss.slot()),
            inserts: self.sum(Event::Insert.slot()),
            evictions: self.sum(Event::Eviction.slot()),
            expirations: self.sum(Event::Expiration.slot()),
            remote_errors: self.sum(Event::RemoteError.slot()),
            remote_skipped: self.sum(Event::RemoteSkipped.slot()),
            loads: self.sum(Event::Load.slot()),
            load_errors: self.sum(Event::LoadError.slot()),
            coalesced: self.sum(Event::Coalesced.slot()),
            served_stale: self.sum(Event::ServedStale.slot()),
            refreshes: self.sum(Event::Refresh.slot()),
            deadline_exceeded: self.sum(Event::DeadlineExceeded.slot()),
            overloaded: self.sum(Event::Overloaded.slot()),
            loads_abandoned: self.sum(Event::LoadAbandoned.slot()),
            loads_unclaimed: self.sum(Event::LoadUnclaimed.slot()),
            violations,
            freshness_misses,
            ..Stats::default()
        }
    }
}

impl std::ops::Add for Stats {
    type Output = Stats;

    fn add(self, other: Stats) -> Stats {
        let mut violations = self.violations;
        for (mine, theirs) in violations.0.iter_mut().zip(other.violations.0) {
            *mine += theirs;
        }
        let mut freshness_misses = self.freshness_misses;
        for (mine, theirs) in freshness_misses.0.iter_mut().zip(other.freshness_misses.0) {
            *mine += theirs;
        }
        Stats {
            hits_local: self.hits_local + other.hits_local,
            hits_remote: self.hits_remote + other.hits_remote,
            misses: self.misses + other.misses,
            inserts: self.inserts + other.inserts,
            evictions: self.evictions + other.evictions,
            expirations: self.expirations + other.expirations,
            remote_errors: self.remote_errors + other.remote_errors,
            remote_skipped: self.remote_skipped + other.remote_skipped,
            loads: self.loads + other.loads,
            load_errors: self.load_errors + other.load_errors,
            coalesced: self.coalesced + other.coalesced,
            served_stale: self.served_stale + other.served_stale,
            refreshes: self.refreshes + other.refreshes,
            deadline_exceeded: self.deadline_exceeded + other.deadline_exceeded,
            overloaded: self.overloaded + other.overloaded,
            loads_abandoned: self.loads_abandoned + other.loads_abandoned,
            loads_unclaimed: self.loads_unclaimed + other.loads_unclaimed,
            violations,
            freshness_misses,
            breaker_state: self.breaker_state,
            breaker_trips: self.breaker_trips + other.breaker_trips,
            breaker_open_ms: self.breaker_open_ms + other.breaker_open_ms,
            store_breaker_state: self.store_breaker_state,
            store_breaker_trips: self.store_breaker_trips + other.store_breaker_trips,
        }
    }
}

thread_local! {
    /// This thread's stripe; `usize::MAX` until it first counts.
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's stripe, claimed on first use.
#[inline]
fn stripe_index() -> usize {
    let index = STRIPE.get();
    if index != usize::MAX {
        return index;
    }
    let index = ownership::claim();
    STRIPE.set(index);
    index
}

/// Which owned stripes are free, process-wide: an index is owned in every `Counters` at once.
mod ownership {
    use super::{OWNED_STRIPES, STRIPE, STRIPES};
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

    /// Bit `i` set: owned stripe `i` is free.
    static FREE: AtomicU32 = AtomicU32::new(if OWNED_STRIPES == 0 {
        0
    } else {
        u32::MAX >> (u32::BITS as usize - OWNED_STRIPES)
    });

    /// Gives the stripe back when its thread exits.
    struct Owner(usize);

    impl Drop for Owner {
        fn drop(&mut self) {
            // Whatever the thread still counts while exiting goes to a shared stripe.
            STRIPE.set(shared());
            // Release: the exiting thread's last adds happen before the next owner's first.
            FREE.fetch_or(1 << self.0, Ordering::Release);
        }
    }

    thread_local! {
        static OWNER: Cell<Option<Owner>> = const { Cell::new(None) };
    }

    /// A free owned stripe, which the calling thread then owns until it exits; or, when every
    /// owned stripe is taken (or the thread is exiting), a shared one.
    #[cold]
    pub(super) fn claim() -> usize {
        let mut free = FREE.load(Ordering::Acquire);
        while free != 0 {
            let index = free.trailing_zeros() as usize;
            match FREE.compare_exchange_weak(
                free,
                free & !(1 << index),
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    if OWNER
                        .try_with(|owner| owner.set(Some(Owner(index))))
                        .is_ok()
                    {
                        return index;
                    }
                    // The thread's locals are being destroyed: nothing would release it.
                    FREE.fetch_or(1 << index, Ordering::Release);
                    break;
                }
                Err(now) => free = now,
            }
        }
        shared()
    }

    /// A shared stripe, dealt round-robin.
    fn shared() -> usize {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        OWNED_STRIPES + NEXT.fetch_add(1, Ordering::Relaxed) % (STRIPES - OWNED_STRIPES)
    }
}

#[cfg(all(test, not(scoped_cache_loom)))]
mod tests {
    use super::*;

    /// More threads at once than there are owned stripes, each counting many times, in waves
    /// that exit and hand their stripes on: a stripe written by two threads at once would lose
    /// adds (a plain load and store), and the total would come up short.
    #[test]
    fn no_add_is_lost_when_threads_outnumber_the_owned_stripes_and_come_and_go() {
        const THREADS: usize = OWNED_STRIPES + 12;
        const ADDS: u64 = 20_000;
        const WAVES: u64 = 3;
        let counters = Counters::default();
        for _ in 0..WAVES {
            std::thread::scope(|scope| {
                for _ in 0..THREADS {
                    scope.spawn(|| {
                        for _ in 0..ADDS {
                            counters.record(Event::HitLocal);
                        }
                        counters.add(Event::Insert, 2);
                    });
                }
            });
        }
        let total = THREADS as u64 * WAVES;
        assert_eq!(counters.sum(Event::HitLocal.slot()), total * ADDS);
        assert_eq!(counters.sum(Event::Insert.slot()), total * 2);
    }

    #[test]
    fn a_thread_owns_a_stripe_until_it_exits() {
        let owned: Vec<usize> = std::thread::scope(|scope| {
            let claims: Vec<_> = (0..OWNED_STRIPES + 4)
                .map(|_| {
                    scope.spawn(|| {
                        let index = stripe_index();
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        index
                    })
                })
                .collect();
            claims
                .into_iter()
                .map(|claim| claim.join().expect("thread"))
                .filter(|&index| index < OWNED_STRIPES)
                .collect()
        });
        let mut distinct = owned.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            owned.len(),
            "no owned stripe twice at once: {owned:?}"
        );
    }
}
