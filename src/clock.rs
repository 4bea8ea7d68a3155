//! Wall-clock time in ms since the Unix epoch, with a manual clock for tests.
//!
//! Envelopes are shared between processes, so their timestamps are wall-clock time; the
//! in-process tier uses the same clock so one expiry means one thing everywhere.

use crate::error::BuildError;
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
    /// its resolution, so an entry may be treated as expired up to one tick early. It is late
    /// only when the kernel's tick itself is (a busy virtual machine can delay it by a few ms),
    /// which the expiry margin between the tiers and the envelope absorbs.
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

/// `expires_ms` of a value that never expires.
pub const NEVER: u64 = u64::MAX;

/// Whether a value that expires at `expires_ms` is expired now: from `expires_ms` on. [`NEVER`]
/// is a sentinel, not a time: it does not expire even at `u64::MAX`, and the clock is not read
/// for it. The one expiry rule of the envelope, both tiers and the test doubles.
#[inline]
pub(crate) fn is_expired(expires_ms: u64, now_ms: impl FnOnce() -> u64) -> bool {
    expires_ms != NEVER && now_ms() >= expires_ms
}

/// `now + ttl` in ms; `None` (no TTL) is [`NEVER`]. Saturates below `NEVER`, so a very long TTL
/// still expires instead of turning into the sentinel (builders refuse TTLs that long).
pub(crate) fn deadline(now_ms: u64, ttl: Option<Duration>) -> u64 {
    ttl.map_or(NEVER, |ttl| {
        now_ms
            .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .min(NEVER - 1)
    })
}

/// Checks a TTL for a cache: at least 1 ms (the resolution of expiry), at most [`MAX_TTL`].
pub(crate) fn validate_ttl(ttl: Duration) -> Result<(), BuildError> {
    if ttl < Duration::from_millis(1) {
        Err(BuildError::TtlTooShort { ttl })
    } else if ttl > MAX_TTL {
        Err(BuildError::TtlTooLong { ttl, max: MAX_TTL })
    } else {
        Ok(())
    }
}

/// How much earlier than its sealed expiry a value leaves the store and the in-process tier: the
/// clock-skew allowance, but at most a quarter of the TTL, in whole milliseconds (so a TTL of at
/// least 1 ms leaves at least 1 ms to keep the value).
pub(crate) fn expiry_margin(ttl: Duration, allowance_ms: u64) -> Duration {
    let quarter_ms = (ttl.as_millis() / 4).min(u128::from(u64::MAX)) as u64;
    Duration::from_millis(allowance_ms.min(quarter_ms))
}

/// The longest TTL a cache accepts: about 100 years, far inside what every store and the
/// envelope's millisecond timestamps can express.
pub const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_margin_is_the_allowance_within_a_quarter_of_the_ttl() {
        let ms = Duration::from_millis;
        assert_eq!(expiry_margin(Duration::from_secs(600), 1_000), ms(1_000));
        assert_eq!(expiry_margin(ms(200), 1_000), ms(50));
        assert_eq!(
            expiry_margin(ms(200), 0),
            ms(0),
            "no remote tier, no margin"
        );
        assert_eq!(expiry_margin(ms(3), 1_000), ms(0), "whole milliseconds");
        assert_eq!(expiry_margin(ms(1), 1_000), ms(0));
        assert_eq!(expiry_margin(Duration::from_secs(4_000_000_000), 5), ms(5));
    }

    #[test]
    fn expiry_starts_at_the_deadline_and_never_for_the_sentinel() {
        assert!(!is_expired(1_000, || 999));
        assert!(is_expired(1_000, || 1_000), "expired from expires_ms on");
        assert!(is_expired(1_000, || 1_001));
        assert!(!is_expired(NEVER, || u64::MAX), "NEVER is not a time");
        assert_eq!(deadline(5, None), NEVER);
        assert_eq!(deadline(5, Some(Duration::from_millis(10))), 15);
        assert_eq!(
            deadline(u64::MAX - 3, Some(Duration::from_secs(1))),
            NEVER - 1,
            "a deadline saturates below the sentinel"
        );
    }

    /// Behind only by a tick the kernel delivered late: a few ms on a busy VM (1 ms was seen
    /// under a CI build). 50 ms is far beyond that and far below the expiry margin.
    #[test]
    fn expiry_time_is_never_far_behind_the_wall_clock() {
        const LATE_TICK_MS: u64 = 50;
        let clock = Clock::system();
        for _ in 0..10_000 {
            let before = clock.now_ms();
            let expiry_now = clock.expiry_now_ms();
            assert!(
                expiry_now + LATE_TICK_MS >= before,
                "expiry clock {expiry_now} behind wall clock {before}"
            );
            assert!(
                expiry_now <= clock.now_ms() + 1_000,
                "expiry clock runs far ahead"
            );
        }
    }
}
