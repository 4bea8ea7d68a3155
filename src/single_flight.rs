//! Single-flight: concurrent misses for one *full* key share one load.
//!
//! Flights are keyed by the key itself (its `Eq`), never by its hash, so two keys that collide
//! never share a result. The first caller leads; later callers wait for its outcome. A leader that
//! is dropped before it finishes (cancelled, or unwinding from a panic in the loader) abandons the
//! flight, and its waiters race to lead a new one with their own loaders: nobody waits on a load
//! that no one is running.
//!
//! An invalidation of a key with a flight in progress keeps the flight's value out of the cache:
//! while the leader is still loading, [`Flights::invalidate`] marks the flight stale and
//! [`Leader::may_store`] then refuses; once the leader has started storing, the invalidation
//! waits for the flight to end and deletes after it. Either way no value loaded before the
//! invalidation is stored after it.

use crate::sync::{Arc, AtomicU64, Condvar, Mutex, Ordering, lock};
use std::collections::HashMap;
use std::hash::Hash;

/// The loads in flight, by key.
pub(crate) struct Flights<K, V> {
    map: Mutex<HashMap<K, Arc<Flight<V>>, ahash::RandomState>>,
    /// Flights ended so far, counted per stripe of keys (by `stripes`' hash): see [`Ticket`].
    ended: Box<[AtomicU64]>,
    stripes: ahash::RandomState,
}

/// Stripes of [`Flights::ended`]: two keys share one with probability 1/256, which costs at
/// most a needless re-check.
const ENDED_STRIPES: usize = if cfg!(scoped_cache_loom) { 1 } else { 256 };

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::default()),
            ended: (0..ENDED_STRIPES).map(|_| AtomicU64::new(0)).collect(),
            stripes: ahash::RandomState::new(),
        }
    }
}

/// What a caller noted before it looked in the cache: how many flights of its key's stripe had
/// ended. If none has ended since when it comes to lead, no load stored a value after its look,
/// and it need not look again (a cold miss reads each tier once); otherwise it re-checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    stripe: usize,
    ended: u64,
}

/// A caller's part in a flight.
pub(crate) enum Role<K: Hash + Eq, V> {
    /// Run the load and [`Leader::finish`] with its outcome.
    Leader(Leader<K, V>),
    /// Wait for the leader's outcome.
    Waiter(Arc<Flight<V>>),
}

impl<K: Hash + Eq + Clone, V: Clone> Flights<K, V> {
    /// Notes, before a caller looks in the cache for `key`, how many flights of its stripe
    /// have ended.
    pub(crate) fn ticket(&self, key: &K) -> Ticket {
        let stripe = (self.stripes.hash_one(key) as usize) % ENDED_STRIPES;
        Ticket {
            stripe,
            ended: self.ended[stripe].load(Ordering::Acquire),
        }
    }

    /// Marks every flight still loading whose key `revoked` names stale (its leader will not
    /// store), as [`invalidate`](Self::invalidate) does for one key.
    pub(crate) fn invalidate_where(&self, revoked: impl Fn(&K) -> bool) {
        let map = lock(&self.map);
        for (key, flight) in map.iter() {
            if revoked(key) {
                let mut state = lock(&flight.state);
                if let State::Loading { stale } = &mut *state {
                    *stale = true;
                }
            }
        }
    }

    /// Whether `key`'s flight in progress was marked stale: what it loads may predate a
    /// change, and a caller should not wait for it.
    pub(crate) fn is_stale(&self, key: &K) -> bool {
        let map = lock(&self.map);
        map.get(key)
            .is_some_and(|flight| matches!(*lock(&flight.state), State::Loading { stale: true }))
    }

    /// Leads a new flight for `key`, or joins the one in progress. The leader owns its part
    /// (it holds the flights), so a load can run in a task of its own.
    pub(crate) fn join(flights: &Arc<Self>, key: &K) -> Role<K, V> {
        let mut map = lock(&flights.map);
        if let Some(flight) = map.get(key) {
            return Role::Waiter(Arc::clone(flight));
        }
        let flight = Arc::new(Flight {
            state: Mutex::new(State::Loading { stale: false }),
            notify: tokio::sync::Notify::new(),
            condvar: Condvar::new(),
        });
        map.insert(key.clone(), Arc::clone(&flight));
        Role::Leader(Leader {
            flights: Arc::clone(flights),
            key: key.clone(),
            flight,
            finished: false,
        })
    }

    /// Keeps the value of `key`'s flight in progress, if any, out of the cache: a flight still
    /// loading is marked stale (its leader will not store); a flight whose leader is storing is
    /// returned, for the caller to wait for before it deletes the key.
    pub(crate) fn invalidate(&self, key: &K) -> Option<Arc<Flight<V>>> {
        let map = lock(&self.map);
        let flight = map.get(key)?;
        let mut state = lock(&flight.state);
        match &mut *state {
            State::Loading { stale } => {
                *stale = true;
                None
            }
            State::Storing => Some(Arc::clone(flight)),
            // Ended: its store, if any, finished before it left the map.
            State::Done(_) | State::Abandoned => None,
        }
    }

    /// The number of flights in progress.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }
}

/// The leader's obligation to end its flight; dropping it unfinished abandons the flight.
pub(crate) struct Leader<K: Hash + Eq, V> {
    flights: Arc<Flights<K, V>>,
    key: K,
    flight: Arc<Flight<V>>,
    finished: bool,
}

impl<K: Hash + Eq, V> Leader<K, V> {
    /// Whether the loaded value may be stored: `false` when the key was invalidated since the
    /// flight began. When `true`, an invalidation from now on waits until the flight ends, so
    /// store before [`finish`](Self::finish).
    pub(crate) fn may_store(&self) -> bool {
        let mut state = lock(&self.flight.state);
        match *state {
            State::Loading { stale: false } => {
                *state = State::Storing;
                true
            }
            _ => false,
        }
    }

    /// Whether another caller waits for this flight's outcome.
    pub(crate) fn has_waiters(&self) -> bool {
        // The map and this leader hold one reference each; each waiter holds another.
        Arc::strong_count(&self.flight) > 2
    }

    /// Whether a flight of the ticket's stripe has ended since it was taken: a value may have
    /// been stored after the caller looked.
    pub(crate) fn ended_since(&self, ticket: Ticket) -> bool {
        self.flights.ended[ticket.stripe].load(Ordering::Acquire) != ticket.ended
    }

    /// Hands `outcome` to every waiter and ends the flight.
    pub(crate) fn finish(mut self, outcome: V) {
        self.finished = true;
        self.end(State::Done(outcome));
    }

    fn end(&self, state: State<V>) {
        // Counted before the flight leaves the map: a caller that then finds no flight to join
        // sees the count moved, and re-checks the cache for what this one stored.
        let stripe = (self.flights.stripes.hash_one(&self.key) as usize) % ENDED_STRIPES;
        self.flights.ended[stripe].fetch_add(1, Ordering::AcqRel);
        // Leave the map first: a caller arriving after this starts a new flight rather than
        // joining one that is over.
        {
            let mut map = lock(&self.flights.map);
            if map
                .get(&self.key)
                .is_some_and(|flight| Arc::ptr_eq(flight, &self.flight))
            {
                map.remove(&self.key);
            }
        }
        *lock(&self.flight.state) = state;
        self.flight.notify.notify_waiters();
        self.flight.condvar.notify_all();
    }
}

impl<K: Hash + Eq, V> Drop for Leader<K, V> {
    fn drop(&mut self) {
        if !self.finished {
            self.end(State::Abandoned);
        }
    }
}

enum State<V> {
    /// The leader is loading; `stale` once the key was invalidated meanwhile.
    Loading {
        stale: bool,
    },
    /// The leader is storing the value it loaded.
    Storing,
    Done(V),
    Abandoned,
}

/// One load in progress, awaited by async and blocking waiters alike.
pub(crate) struct Flight<V> {
    state: Mutex<State<V>>,
    notify: tokio::sync::Notify,
    condvar: Condvar,
}

impl<V: Clone> Flight<V> {
    /// The leader's outcome, or `None` if the leader abandoned the flight.
    ///
    /// Cancel safe: dropping the future only stops waiting.
    pub(crate) async fn wait(&self) -> Option<V> {
        loop {
            let notified = self.notify.notified();
            let mut notified = std::pin::pin!(notified);
            // Register before looking, so a `notify_waiters` between the look and the await is
            // not lost.
            notified.as_mut().enable();
            if let Some(outcome) = self.outcome() {
                return outcome;
            }
            notified.await;
        }
    }

    /// Like [`Flight::wait`], blocking the thread.
    pub(crate) fn wait_blocking(&self) -> Option<V> {
        let mut state = lock(&self.state);
        loop {
            match &*state {
                State::Loading { .. } | State::Storing => {
                    state = self
                        .condvar
                        .wait(state)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                State::Done(outcome) => return Some(outcome.clone()),
                State::Abandoned => return None,
            }
        }
    }

    /// `None` while running; `Some(None)` when abandoned.
    fn outcome(&self) -> Option<Option<V>> {
        match &*lock(&self.state) {
            State::Loading { .. } | State::Storing => None,
            State::Done(outcome) => Some(Some(outcome.clone())),
            State::Abandoned => Some(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_outcome_reaches_waiters_and_the_flight_ends() {
        let flights = Arc::new(Flights::<u64, u32>::default());
        let Role::Leader(leader) = Flights::join(&flights, &1) else {
            panic!("first caller must lead")
        };
        let Role::Waiter(flight) = Flights::join(&flights, &1) else {
            panic!("second caller must wait")
        };
        assert!(
            matches!(Flights::join(&flights, &2), Role::Leader(_)),
            "another key is another flight"
        );
        leader.finish(7);
        assert_eq!(flight.wait_blocking(), Some(7));
        assert_eq!(flights.len(), 0);
    }

    #[test]
    fn an_invalidation_stops_a_loading_leader_and_waits_for_a_storing_one() {
        let flights = Arc::new(Flights::<u64, u32>::default());
        assert!(flights.invalidate(&1).is_none(), "no flight, nothing to do");
        let Role::Leader(leader) = Flights::join(&flights, &1) else {
            panic!("first caller must lead")
        };
        assert!(flights.invalidate(&1).is_none(), "loading: marked, no wait");
        assert!(!leader.may_store(), "invalidated while loading");
        leader.finish(7);

        let Role::Leader(leader) = Flights::join(&flights, &1) else {
            panic!("a new flight")
        };
        assert!(leader.may_store(), "not invalidated");
        let flight = flights.invalidate(&1).expect("storing: wait for it");
        leader.finish(8);
        assert_eq!(flight.wait_blocking(), Some(8));
        assert!(flights.invalidate(&1).is_none(), "ended");
    }

    #[test]
    fn a_dropped_leader_abandons_and_the_next_caller_leads() {
        let flights = Arc::new(Flights::<u64, u32>::default());
        let leader = Flights::join(&flights, &1);
        let Role::Waiter(flight) = Flights::join(&flights, &1) else {
            panic!("second caller must wait")
        };
        drop(leader);
        assert_eq!(flight.wait_blocking(), None);
        assert!(matches!(Flights::join(&flights, &1), Role::Leader(_)));
    }
}

/// Loom models: `RUSTFLAGS="--cfg scoped_cache_loom" cargo test --release --lib loom_`.
#[cfg(all(test, scoped_cache_loom))]
mod loom_models {
    use super::*;
    use loom::thread;
    use std::hash::Hasher;

    /// A key whose every value hashes alike: flights must still be told apart by `Eq`.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Colliding(u8);

    impl Hash for Colliding {
        fn hash<H: Hasher>(&self, state: &mut H) {
            state.write_u8(0);
        }
    }

    /// Joins the flight for `key`; a leader "loads" the key's own value (or abandons, when
    /// told to), a waiter takes the leader's outcome or, if abandoned, tries again.
    fn get_or_load(
        flights: &Arc<Flights<Colliding, u8>>,
        key: Colliding,
        abandon_first: bool,
    ) -> u8 {
        let mut abandon = abandon_first;
        loop {
            match Flights::join(flights, &key) {
                Role::Leader(leader) if abandon => {
                    abandon = false;
                    drop(leader); // cancelled mid-load
                }
                Role::Leader(leader) => {
                    leader.finish(key.0 * 10);
                    return key.0 * 10;
                }
                Role::Waiter(flight) => {
                    if let Some(value) = flight.wait_blocking() {
                        return value;
                    }
                }
            }
        }
    }

    #[test]
    fn loom_leader_and_two_waiters_all_get_the_value() {
        loom::model(|| {
            let flights = Arc::new(Flights::default());
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let flights = Arc::clone(&flights);
                    thread::spawn(move || get_or_load(&flights, Colliding(1), false))
                })
                .collect();
            assert_eq!(get_or_load(&flights, Colliding(1), false), 10);
            for handle in handles {
                assert_eq!(handle.join().unwrap(), 10);
            }
            assert_eq!(lock(&flights.map).len(), 0, "every flight ended");
        });
    }

    #[test]
    fn loom_a_cancelled_leader_hands_over_and_nobody_hangs() {
        loom::model(|| {
            let flights = Arc::new(Flights::default());
            let waiter = {
                let flights = Arc::clone(&flights);
                thread::spawn(move || get_or_load(&flights, Colliding(1), false))
            };
            // This caller abandons its first lead (if it leads); loom explores both orders.
            assert_eq!(get_or_load(&flights, Colliding(1), true), 10);
            assert_eq!(waiter.join().unwrap(), 10);
        });
    }

    /// The ticket rule: two callers who both miss a cold key load it once between them. Each
    /// takes a ticket, looks in the cache, and joins; a caller that comes to lead skips its
    /// re-check only when no flight ended since its ticket, and then the cache it saw empty is
    /// still empty: the other caller's value, if stored, is found by the re-check.
    #[test]
    fn loom_a_caller_that_missed_while_a_load_ended_finds_its_value_and_does_not_load() {
        fn miss_then_load(
            flights: &Arc<Flights<Colliding, u8>>,
            cache: &Mutex<Option<u8>>,
            loads: &AtomicU64,
        ) -> u8 {
            let ticket = flights.ticket(&Colliding(1));
            if let Some(value) = *lock(cache) {
                return value;
            }
            loop {
                match Flights::join(flights, &Colliding(1)) {
                    Role::Leader(leader) => {
                        if leader.ended_since(ticket)
                            && let Some(value) = *lock(cache)
                        {
                            leader.finish(value);
                            return value;
                        }
                        loads.fetch_add(1, Ordering::AcqRel);
                        *lock(cache) = Some(10);
                        leader.finish(10);
                        return 10;
                    }
                    Role::Waiter(flight) => {
                        if let Some(value) = flight.wait_blocking() {
                            return value;
                        }
                    }
                }
            }
        }
        loom::model(|| {
            let flights = Arc::new(Flights::<Colliding, u8>::default());
            let cache = Arc::new(Mutex::new(None));
            let loads = Arc::new(AtomicU64::new(0));
            let other = {
                let (flights, cache, loads) =
                    (Arc::clone(&flights), Arc::clone(&cache), Arc::clone(&loads));
                thread::spawn(move || miss_then_load(&flights, &cache, &loads))
            };
            assert_eq!(miss_then_load(&flights, &cache, &loads), 10);
            assert_eq!(other.join().unwrap(), 10);
            assert_eq!(loads.load(Ordering::Acquire), 1, "a cold key loaded twice");
        });
    }

    /// A load that began before an invalidation is never stored after it: the leader either
    /// sees the mark and skips its store, or the invalidation waits for the store to end and
    /// deletes after it.
    #[test]
    fn loom_an_invalidation_racing_the_leader_leaves_nothing_stored() {
        loom::model(|| {
            let flights = Arc::new(Flights::<Colliding, u8>::default());
            let stored = Arc::new(Mutex::new(None));
            let Role::Leader(leader) = Flights::join(&flights, &Colliding(1)) else {
                panic!("first caller must lead")
            };
            let invalidator = {
                let (flights, stored) = (Arc::clone(&flights), Arc::clone(&stored));
                thread::spawn(move || {
                    if let Some(flight) = flights.invalidate(&Colliding(1)) {
                        flight.wait_blocking();
                    }
                    *lock(&stored) = None; // the delete
                })
            };
            if leader.may_store() {
                *lock(&stored) = Some(10);
            }
            leader.finish(10);
            invalidator.join().unwrap();
            assert_eq!(
                *lock(&stored),
                None,
                "a value loaded before the invalidation"
            );
        });
    }

    /// A background refresh owns its leader and runs as a task of its own (another thread here).
    /// Whether it finishes or is dropped unfinished (cancelled, or its loader panicked), a caller
    /// that misses meanwhile gets a value, the refresh's or its own load's, and no two loads of
    /// the key ever run at once.
    #[test]
    fn loom_a_background_refresh_hands_over_whether_it_finishes_or_not() {
        for finishes in [true, false] {
            loom::model(move || {
                let flights = Arc::new(Flights::<Colliding, u8>::default());
                let loading = Arc::new(AtomicU64::new(0));
                let Role::Leader(leader) = Flights::join(&flights, &Colliding(1)) else {
                    panic!("the refresh leads")
                };
                let refresh = {
                    let loading = Arc::clone(&loading);
                    thread::spawn(move || {
                        assert_eq!(loading.fetch_add(1, Ordering::AcqRel), 0, "two loads");
                        loading.fetch_sub(1, Ordering::AcqRel);
                        match finishes {
                            true => leader.finish(10),
                            false => drop(leader),
                        }
                    })
                };
                let value = loop {
                    match Flights::join(&flights, &Colliding(1)) {
                        Role::Leader(leader) => {
                            assert_eq!(loading.fetch_add(1, Ordering::AcqRel), 0, "two loads");
                            loading.fetch_sub(1, Ordering::AcqRel);
                            leader.finish(10);
                            break 10;
                        }
                        Role::Waiter(flight) => {
                            if let Some(value) = flight.wait_blocking() {
                                break value;
                            }
                        }
                    }
                };
                assert_eq!(value, 10);
                refresh.join().unwrap();
                assert_eq!(lock(&flights.map).len(), 0, "every flight ended");
            });
        }
    }

    #[test]
    fn loom_colliding_keys_never_share_a_result() {
        loom::model(|| {
            let flights = Arc::new(Flights::default());
            let other = {
                let flights = Arc::clone(&flights);
                thread::spawn(move || get_or_load(&flights, Colliding(2), false))
            };
            assert_eq!(get_or_load(&flights, Colliding(1), false), 10);
            assert_eq!(other.join().unwrap(), 20);
        });
    }
}
