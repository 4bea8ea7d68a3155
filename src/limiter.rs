//! Origin protection: at most so many loads of a namespace at once, a bounded queue for the rest,
//! and no load started for callers who have all stopped waiting.

use crate::error::LoadError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// How often a queued load checks that somebody still waits for it, besides when its turn
/// comes. Each check is a timer wake-up of every queued load: at 5 ms, a queue of 64,000 loads
/// took 12.8 million wake-ups a second, more than two cores can run, and starved the loads it
/// was queued for. The check at its turn is what keeps an unwanted load from the origin; this
/// one only gives its queue place back sooner.
const RECHECK: Duration = Duration::from_secs(1);

/// The loads of one namespace: in flight, and queued for a place.
#[derive(Debug)]
pub(crate) struct LoadLimiter {
    permits: Semaphore,
    max_queued: usize,
    queued: AtomicUsize,
}

impl LoadLimiter {
    /// At most `in_flight` loads at once (at least 1) and `max_queued` waiting for a place.
    pub(crate) fn new(in_flight: usize, max_queued: usize) -> Self {
        Self {
            permits: Semaphore::new(in_flight.max(1)),
            max_queued,
            queued: AtomicUsize::new(0),
        }
    }

    /// A place for one load, held until the permit is dropped: at once if one is free, else in
    /// turn (first come, first served) after the loads queued before it.
    ///
    /// # Errors
    ///
    /// [`LoadError::Overloaded`] at once when the queue is full; [`LoadError::Abandoned`] when
    /// `wanted` says nobody waits for the load any more: checked when its turn comes (the place
    /// then goes to the next load at once) and every [`RECHECK`] while it is queued.
    pub(crate) async fn admit(
        &self,
        wanted: &(dyn Fn() -> bool + Sync),
    ) -> Result<SemaphorePermit<'_>, LoadError> {
        if let Ok(permit) = self.permits.try_acquire() {
            return Ok(permit);
        }
        // Counted before the check, so two callers cannot both take the last place.
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(LoadError::Overloaded);
        }
        let _queued = Queued(&self.queued);
        // Polled in place across the rechecks, so the load keeps its turn in the queue.
        let mut acquire = std::pin::pin!(self.permits.acquire());
        loop {
            match tokio::time::timeout(RECHECK, acquire.as_mut()).await {
                // Its turn came while it was queued: nobody may want it any more.
                Ok(Ok(permit)) if wanted() => return Ok(permit),
                Ok(Ok(_)) => return Err(LoadError::Abandoned),
                // The semaphore is never closed; were it, the load could never start.
                Ok(Err(_)) => return Err(LoadError::Overloaded),
                Err(_) if !wanted() => return Err(LoadError::Abandoned),
                Err(_) => {}
            }
        }
    }
}

/// One place in the queue, given back however the wait ends.
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn loads_beyond_the_places_queue_up_to_the_bound_then_fail_fast() {
        let limiter = LoadLimiter::new(1, 1);
        let running = limiter
            .admit(&|| true)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let queued = limiter.admit(&|| true);
        let mut queued = std::pin::pin!(queued);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), queued.as_mut())
                .await
                .is_err(),
            "queued behind the running load"
        );
        assert!(matches!(
            limiter.admit(&|| true).await,
            Err(LoadError::Overloaded)
        ));
        drop(running);
        assert!(queued.await.is_ok(), "its turn came");
        assert!(
            limiter.admit(&|| false).await.is_ok(),
            "a free place needs no check"
        );
    }

    /// A queued load is asked whether it is still wanted when its turn comes, and otherwise
    /// rarely: each check wakes every queued load, and a large queue of them once took more
    /// than the machine's cores (time is paused: this counts checks, not speed).
    #[tokio::test(start_paused = true)]
    async fn a_queued_load_is_checked_at_its_turn_and_seldom_before() {
        let limiter = LoadLimiter::new(1, 8);
        let running = limiter
            .admit(&|| true)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let checks = AtomicUsize::new(0);
        let still_wanted = || {
            checks.fetch_add(1, Ordering::Relaxed);
            false
        };
        let queued = limiter.admit(&still_wanted);
        let mut queued = std::pin::pin!(queued);
        assert!(
            tokio::time::timeout(Duration::from_millis(500), queued.as_mut())
                .await
                .is_err(),
            "queued behind the running load"
        );
        assert_eq!(checks.load(Ordering::Relaxed), 0, "checked while queued");
        drop(running);
        assert!(matches!(queued.await, Err(LoadError::Abandoned)));
        assert_eq!(checks.load(Ordering::Relaxed), 1, "checked at its turn");
        assert!(
            limiter.permits.try_acquire().is_ok(),
            "the place went to the next load"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_load_nobody_wants_is_dropped() {
        let limiter = LoadLimiter::new(1, 8);
        let _running = limiter
            .admit(&|| true)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            limiter.admit(&|| false).await,
            Err(LoadError::Abandoned)
        ));
        assert_eq!(
            limiter.queued.load(Ordering::Acquire),
            0,
            "its place was given back"
        );
    }
}
