//! Wall-clock time in ms since the Unix epoch, with a manual clock for tests.
//!
//! Envelopes are shared between processes, so their timestamps are wall-clock time; the
//! in-process tier uses the same clock so one expiry means one thing everywhere.

use crate::sync::{Arc, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where a cache reads the time.
///
/// # Examples
///
/// ```
/// use scoped_cache::{Clock, ManualClock};
/// use std::time::Duration;
/// assert!(Clock::system().now_ms() > 1_700_000_000_000);
/// let manual = ManualClock::new(1_000);
/// let clock = manual.clock();
/// manual.advance(Duration::from_millis(500));
/// assert_eq!(clock.now_ms(), 1_500);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The system's wall clock.
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// Milliseconds since the Unix epoch (0 if the system clock is set before it).
    /// This is what envelopes are stamped and checked with.
    pub fn now_ms(&self) -> u64 {
        match &self.manual {
            Some(now) => now.load(Ordering::Acquire),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |since| {
                    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
                }),
        }
    }

    /// A time no earlier than now, cheap to read: for expiry checks on the hot path.
    ///
    /// The system variant reads the kernel's coarse wall clock (a few ms resolution) and adds
    /// its resolution, so an entry may be treated as expired up to one tick early, never late.
    pub(crate) fn expiry_now_ms(&self) -> u64 {
        match &self.manual {
            Some(now) => now.load(Ordering::Acquire),
            None => coarse::upper_bound_ms().unwrap_or_else(|| self.now_ms()),
        }
    }
}

#[cfg(target_os = "linux")]
mod coarse {
    use rustix::time::{ClockId, Timespec, clock_getres, clock_gettime};
    use std::sync::OnceLock;

    fn nanos(time: Timespec) -> Option<u64> {
        let secs = u64::try_from(time.tv_sec).ok()?;
        let nanos = u64::try_from(time.tv_nsec).ok()?;
        secs.checked_mul(1_000_000_000)?.checked_add(nanos)
    }

    /// `ceil((coarse now + resolution) / 1 ms)`, or `None` if the clock is unusable.
    pub(super) fn upper_bound_ms() -> Option<u64> {
        static RESOLUTION_NS: OnceLock<Option<u64>> = OnceLock::new();
        let resolution =
            (*RESOLUTION_NS.get_or_init(|| nanos(clock_getres(ClockId::RealtimeCoarse))))?;
        let now = nanos(clock_gettime(ClockId::RealtimeCoarse))?;
        Some((now + resolution).div_ceil(1_000_000))
    }
}

#[cfg(not(target_os = "linux"))]
mod coarse {
    pub(super) fn upper_bound_ms() -> Option<u64> {
        None
    }
}

/// A clock that moves only when told to: deterministic TTL tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock that reads `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        Self(Arc::new(AtomicU64::new(start_ms)))
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(by, Ordering::AcqRel);
    }

    /// The current time, in ms.
    pub fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// A [`Clock`] that reads this manual time.
    pub fn clock(&self) -> Clock {
        Clock {
            manual: Some(Arc::clone(&self.0)),
        }
    }
}

/// `now + ttl` in ms, saturating; `None` (no TTL) is [`NEVER`](crate::envelope::NEVER).
pub(crate) fn deadline(now_ms: u64, ttl: Option<Duration>) -> u64 {
    ttl.map_or(crate::envelope::NEVER, |ttl| {
        now_ms.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_time_is_never_behind_the_wall_clock() {
        let clock = Clock::system();
        for _ in 0..10_000 {
            let before = clock.now_ms();
            let expiry_now = clock.expiry_now_ms();
            assert!(
                expiry_now >= before,
                "expiry clock {expiry_now} behind wall clock {before}"
            );
            assert!(
                expiry_now <= clock.now_ms() + 1_000,
                "expiry clock runs far ahead"
            );
        }
    }
}
