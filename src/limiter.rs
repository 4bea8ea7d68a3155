//! Origin protection: at most so many loads of a namespace at once, a bounded queue for the rest,
//! and no load started for callers who have all stopped waiting.

use crate::error::LoadError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// How often a queued load checks that somebody still waits for it.
const RECHECK: Duration = Duration::from_millis(5);

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
    /// `wanted` says nobody waits for the load any more while it is queued.
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
                Ok(Ok(permit)) => return Ok(permit),
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
