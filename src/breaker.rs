//! The breakers: one per `Policy::AutoBypass` namespace, fed by integrity violations, and one per
//! client for its remote store, fed by failed store calls.
//!
//! Closed: the guarded thing is used and faults are counted in a fixed window. When a window's
//! count reaches the threshold the breaker opens: calls skip it (a namespace's reads and writes
//! skip the remote tier, never single-flight nor the verified in-process tier; the store's calls
//! are not made) for the cool-down.
//! Then it is half-open: the next few calls probe; if they all finish without a fault it closes,
//! and a fault during a probe opens it again.
//!
//! The state is one atomic read on the hot path; transitions take a mutex.

use crate::sync::{AtomicBool, AtomicU8, AtomicU64, Mutex, Ordering, lock};
use std::time::Duration;

/// Reads that probe the cache while half-open; all must be clean to close the breaker.
pub(crate) const HALF_OPEN_PROBES: u64 = 3;

/// The state of a namespace's breaker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BreakerState {
    /// The cache is used (also the state of caches without a breaker).
    #[default]
    Closed,
    /// Too many violations: the cache is bypassed.
    Open,
    /// After the cool-down: a few reads probe the cache.
    HalfOpen,
}

/// What a breaker guards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BreakerScope {
    /// The cache tiers of one namespace ([`Policy::AutoBypass`](crate::Policy::AutoBypass)),
    /// opened by integrity violations.
    #[default]
    Namespace,
    /// The client's remote store, opened by failed or timed-out store calls
    /// ([`ClientBuilder::store_breaker`](crate::ClientBuilder::store_breaker)).
    Store,
}

/// A breaker changed state; given to the client's breaker sink.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerEvent {
    /// What the breaker guards.
    pub scope: BreakerScope,
    /// The namespace whose breaker moved; for the store breaker, the namespace of the call that
    /// moved it.
    pub namespace: &'static str,
    /// The state before.
    pub from: BreakerState,
    /// The state now.
    pub to: BreakerState,
    /// Faults in the window that tripped it: violations, or failed store calls for the store
    /// breaker (0 for other transitions).
    pub violations: u64,
}

/// A breaker's state change, before it is told to anyone: the caller names the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transition {
    pub(crate) scope: BreakerScope,
    pub(crate) from: BreakerState,
    pub(crate) to: BreakerState,
    pub(crate) violations: u64,
}

impl Transition {
    /// The event of this change, seen by a call of `namespace`.
    pub(crate) fn event(self, namespace: &'static str) -> BreakerEvent {
        BreakerEvent {
            scope: self.scope,
            namespace,
            from: self.from,
            to: self.to,
            violations: self.violations,
        }
    }
}

/// How a read or write may use the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    Use,
    Probe,
    Bypass,
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

pub(crate) struct Breaker {
    scope: BreakerScope,
    threshold: u64,
    window_ms: u64,
    cool_down_ms: u64,
    state: AtomicU8,
    /// When the breaker last opened (ms), read lock-free to end the cool-down.
    opened_at_ms: AtomicU64,
    probes_admitted: AtomicU64,
    /// Whether the closed breaker's window holds faults, read lock-free by `record_success`.
    faults_pending: AtomicBool,
    books: Mutex<Books>,
}

#[derive(Default)]
struct Books {
    window_start_ms: u64,
    violations: u64,
    clean_probes: u64,
    trips: u64,
    open_ms: u64,
}

/// Counters of a breaker, for [`Stats`](crate::Stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BreakerReport {
    pub(crate) state: BreakerState,
    pub(crate) trips: u64,
    pub(crate) open_ms: u64,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Breaker {
    pub(crate) fn new(
        scope: BreakerScope,
        threshold: u32,
        window: Duration,
        cool_down: Duration,
    ) -> Self {
        Self {
            scope,
            threshold: u64::from(threshold.max(1)),
            window_ms: millis(window).max(1),
            cool_down_ms: millis(cool_down),
            state: AtomicU8::new(CLOSED),
            opened_at_ms: AtomicU64::new(0),
            probes_admitted: AtomicU64::new(0),
            faults_pending: AtomicBool::new(false),
            books: Mutex::new(Books::default()),
        }
    }

    /// Whether a read may use the cache; reads the clock only when the breaker is not closed.
    pub(crate) fn admit(&self, now_ms: impl FnOnce() -> u64) -> (Admission, Option<Transition>) {
        let state = self.state.load(Ordering::Acquire);
        if state == CLOSED {
            return (Admission::Use, None);
        }
        let now_ms = now_ms();
        let cool_down_over = now_ms
            >= self
                .opened_at_ms
                .load(Ordering::Acquire)
                .saturating_add(self.cool_down_ms);
        match state {
            OPEN if !cool_down_over => (Admission::Bypass, None),
            OPEN => {
                let event = self.half_open(now_ms);
                (self.probe_slot(), event)
            }
            _ => match self.probe_slot() {
                // Probes that never reported (their callers were cancelled) must not keep the
                // breaker half-open for ever: after another cool-down, probe afresh.
                Admission::Bypass if cool_down_over => {
                    self.rearm(now_ms);
                    (self.probe_slot(), None)
                }
                admission => (admission, None),
            },
        }
    }

    /// Whether writes are bypassed (the breaker is open).
    pub(crate) fn is_open(&self) -> bool {
        self.state.load(Ordering::Acquire) == OPEN
    }

    fn probe_slot(&self) -> Admission {
        if self.probes_admitted.fetch_add(1, Ordering::AcqRel) < HALF_OPEN_PROBES {
            Admission::Probe
        } else {
            Admission::Bypass
        }
    }

    fn half_open(&self, now_ms: u64) -> Option<Transition> {
        let mut books = lock(&self.books);
        // Another thread may have moved it already.
        if self.state.load(Ordering::Acquire) != OPEN {
            return None;
        }
        books.open_ms += now_ms.saturating_sub(self.opened_at_ms.load(Ordering::Acquire));
        books.clean_probes = 0;
        self.probes_admitted.store(0, Ordering::Release);
        // While half-open, `opened_at_ms` is when probing (re)started.
        self.opened_at_ms.store(now_ms, Ordering::Release);
        self.state.store(HALF_OPEN, Ordering::Release);
        Some(self.event(BreakerState::Open, BreakerState::HalfOpen, 0))
    }

    fn rearm(&self, now_ms: u64) {
        let mut books = lock(&self.books);
        if self.state.load(Ordering::Acquire) == HALF_OPEN {
            books.clean_probes = 0;
            self.probes_admitted.store(0, Ordering::Release);
            self.opened_at_ms.store(now_ms, Ordering::Release);
        }
    }

    /// Counts a fault (a violation, or a failed store call); returns the change if it opened
    /// the breaker.
    pub(crate) fn record_fault(&self, now_ms: u64) -> Option<Transition> {
        let mut books = lock(&self.books);
        match self.state.load(Ordering::Acquire) {
            CLOSED => {
                if now_ms.saturating_sub(books.window_start_ms) >= self.window_ms {
                    books.window_start_ms = now_ms;
                    books.violations = 0;
                }
                books.violations += 1;
                if books.violations < self.threshold {
                    self.faults_pending.store(true, Ordering::Release);
                    return None;
                }
                let violations = books.violations;
                self.open(&mut books, now_ms);
                Some(self.event(BreakerState::Closed, BreakerState::Open, violations))
            }
            HALF_OPEN => {
                self.open(&mut books, now_ms);
                Some(self.event(BreakerState::HalfOpen, BreakerState::Open, 1))
            }
            _ => None,
        }
    }

    /// A call finished without a fault: the faults counted so far no longer run in a row, so
    /// the count starts over. The store breaker calls it on every successful store call (one
    /// atomic load while no fault is pending); a namespace's breaker counts violations in its
    /// window whatever succeeds between them, and does not.
    pub(crate) fn record_success(&self) {
        if !self.faults_pending.load(Ordering::Acquire) {
            return;
        }
        let mut books = lock(&self.books);
        if self.state.load(Ordering::Acquire) == CLOSED {
            books.violations = 0;
        }
        self.faults_pending.store(false, Ordering::Release);
    }

    /// A probe finished without a violation; returns the event if that closed the breaker.
    pub(crate) fn record_clean_probe(&self) -> Option<Transition> {
        let mut books = lock(&self.books);
        if self.state.load(Ordering::Acquire) != HALF_OPEN {
            return None;
        }
        books.clean_probes += 1;
        if books.clean_probes < HALF_OPEN_PROBES {
            return None;
        }
        books.violations = 0;
        self.state.store(CLOSED, Ordering::Release);
        Some(self.event(BreakerState::HalfOpen, BreakerState::Closed, 0))
    }

    fn open(&self, books: &mut Books, now_ms: u64) {
        books.trips += 1;
        books.violations = 0;
        self.faults_pending.store(false, Ordering::Release);
        self.opened_at_ms.store(now_ms, Ordering::Release);
        self.state.store(OPEN, Ordering::Release);
    }

    fn event(&self, from: BreakerState, to: BreakerState, violations: u64) -> Transition {
        Transition {
            scope: self.scope,
            from,
            to,
            violations,
        }
    }

    pub(crate) fn report(&self, now_ms: u64) -> BreakerReport {
        let books = lock(&self.books);
        let state = match self.state.load(Ordering::Acquire) {
            CLOSED => BreakerState::Closed,
            OPEN => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        };
        let open_now = if state == BreakerState::Open {
            now_ms.saturating_sub(self.opened_at_ms.load(Ordering::Acquire))
        } else {
            0
        };
        BreakerReport {
            state,
            trips: books.trips,
            open_ms: books.open_ms + open_now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Breaker {
        fn admit_at(&self, now_ms: u64) -> (Admission, Option<Transition>) {
            self.admit(|| now_ms)
        }
    }

    fn breaker() -> Breaker {
        Breaker::new(
            BreakerScope::Namespace,
            3,
            Duration::from_secs(10),
            Duration::from_secs(5),
        )
    }

    #[test]
    fn opens_at_the_threshold_within_a_window_only() {
        let b = breaker();
        assert_eq!(b.record_fault(0), None);
        assert_eq!(b.record_fault(1), None);
        // The window ended: counting starts over.
        assert_eq!(b.record_fault(10_001), None);
        assert_eq!(b.record_fault(10_002), None);
        let event = b.record_fault(10_003).map(|e| (e.from, e.to, e.violations));
        assert_eq!(event, Some((BreakerState::Closed, BreakerState::Open, 3)));
        assert_eq!(b.admit_at(10_004).0, Admission::Bypass);
    }

    #[test]
    fn half_opens_after_the_cool_down_and_closes_after_clean_probes() {
        let b = breaker();
        for t in 0..3 {
            let _ = b.record_fault(t);
        }
        assert_eq!(b.admit_at(5_001), (Admission::Bypass, None));
        let (admission, event) = b.admit_at(5_002);
        assert_eq!(admission, Admission::Probe);
        assert_eq!(event.map(|e| e.to), Some(BreakerState::HalfOpen));
        assert_eq!(b.admit_at(5_003).0, Admission::Probe);
        assert_eq!(b.admit_at(5_003).0, Admission::Probe);
        assert_eq!(
            b.admit_at(5_003).0,
            Admission::Bypass,
            "only {HALF_OPEN_PROBES} probes at a time"
        );
        assert_eq!(b.record_clean_probe(), None);
        assert_eq!(b.record_clean_probe(), None);
        assert_eq!(
            b.record_clean_probe().map(|e| e.to),
            Some(BreakerState::Closed)
        );
        assert_eq!(b.admit_at(5_004).0, Admission::Use);
        let report = b.report(5_004);
        assert_eq!(
            (report.state, report.trips, report.open_ms),
            (BreakerState::Closed, 1, 5_000)
        );
    }

    #[test]
    fn a_violation_while_half_open_opens_again() {
        let b = breaker();
        for t in 0..3 {
            let _ = b.record_fault(t);
        }
        assert_eq!(b.admit_at(6_000).0, Admission::Probe);
        assert_eq!(
            b.record_fault(6_001).map(|e| e.to),
            Some(BreakerState::Open)
        );
        assert_eq!(b.admit_at(6_002).0, Admission::Bypass);
        assert_eq!(b.report(7_001).trips, 2);
    }

    #[test]
    fn probes_that_never_report_are_rearmed_after_a_cool_down() {
        let b = breaker();
        for t in 0..3 {
            let _ = b.record_fault(t);
        }
        for _ in 0..HALF_OPEN_PROBES {
            assert_eq!(b.admit_at(5_002).0, Admission::Probe);
        }
        assert_eq!(b.admit_at(10_001).0, Admission::Bypass);
        assert_eq!(
            b.admit_at(10_002).0,
            Admission::Probe,
            "cancelled probes do not wedge the breaker"
        );
    }
}

/// Loom models: `RUSTFLAGS="--cfg scoped_cache_loom" cargo test --release --lib loom_`.
#[cfg(all(test, scoped_cache_loom))]
mod loom_models {
    use super::*;
    use crate::sync::Arc;
    use loom::thread;

    #[test]
    fn loom_racing_violations_open_the_breaker_exactly_once() {
        loom::model(|| {
            let breaker = Arc::new(Breaker::new(
                BreakerScope::Namespace,
                2,
                Duration::from_secs(10),
                Duration::ZERO,
            ));
            let other = {
                let breaker = Arc::clone(&breaker);
                thread::spawn(move || breaker.record_fault(1))
            };
            let mine = breaker.record_fault(1);
            let theirs = other.join().unwrap();
            let opened = [mine, theirs]
                .into_iter()
                .flatten()
                .filter(|e| e.to == BreakerState::Open)
                .count();
            assert_eq!(opened, 1, "two violations at threshold 2 open it once");
            assert_eq!(breaker.report(1).trips, 1);
        });
    }

    #[test]
    fn loom_racing_admissions_half_open_once_and_bound_the_probes() {
        loom::model(|| {
            let breaker = Arc::new(Breaker::new(
                BreakerScope::Namespace,
                1,
                Duration::from_secs(10),
                Duration::ZERO,
            ));
            let _ = breaker.record_fault(0);
            let other = {
                let breaker = Arc::clone(&breaker);
                thread::spawn(move || {
                    let first = breaker.admit(|| 1);
                    (first, breaker.record_clean_probe())
                })
            };
            let mine = breaker.admit(|| 1);
            let ((theirs, their_close), my_close) =
                (other.join().unwrap(), breaker.record_clean_probe());
            let half_opened = [&mine.1, &theirs.1].into_iter().flatten().count();
            assert_eq!(half_opened, 1, "the cool-down ends once");
            assert!(
                [mine.0, theirs.0].iter().all(|a| *a == Admission::Probe),
                "both fit in the probe budget"
            );
            assert!(
                their_close.is_none() && my_close.is_none(),
                "two clean probes of three do not close it"
            );
            assert_eq!(breaker.report(1).state, BreakerState::HalfOpen);
        });
    }
}
