//! A runtime-agnostic sleep for the timed faults: one background thread wakes sleepers.
//!
//! `tokio::time::sleep` panics outside a runtime with its time driver, and a fault injector
//! must never panic whatever runtime (or none) its caller uses. So the timed faults wait on a
//! oneshot channel that a single lazily started thread completes at the deadline. If that
//! thread cannot be started, sleeps end at once: the fault loses its delay, nothing panics.
//!
//! This is test infrastructure on a real thread, never part of a loom model, so it uses
//! `std::sync` directly rather than `crate::sync`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Waits for `duration` without needing a Tokio timer; ends at once for a zero duration.
pub(crate) async fn sleep(duration: Duration) {
    if duration.is_zero() {
        return;
    }
    let Some(deadline) = Instant::now().checked_add(duration) else {
        return;
    };
    let Some(timer) = Timer::get() else {
        return;
    };
    let (wake, woken) = oneshot::channel();
    timer.schedule(deadline, wake);
    // An error means the sender was dropped, which only happens at the deadline or if the timer
    // thread died: either way the sleep is over.
    let _ = woken.await;
}

struct Sleeper {
    deadline: Instant,
    /// Breaks ties so that the heap never compares senders.
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Sleeper {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}

impl Eq for Sleeper {}

impl PartialOrd for Sleeper {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Sleeper {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline, self.seq).cmp(&(other.deadline, other.seq))
    }
}

#[derive(Default)]
struct Queue {
    sleepers: BinaryHeap<Reverse<Sleeper>>,
    next_seq: u64,
}

struct Timer {
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Timer {
    /// The process's timer, started on first use; `None` if its thread could not be started.
    fn get() -> Option<&'static Timer> {
        static TIMER: OnceLock<Option<&'static Timer>> = OnceLock::new();
        *TIMER.get_or_init(|| {
            let timer: &'static Timer = Box::leak(Box::new(Timer {
                queue: Mutex::new(Queue::default()),
                changed: Condvar::new(),
            }));
            std::thread::Builder::new()
                .name("scoped-cache-fault-timer".into())
                .spawn(move || timer.run())
                .ok()
                .map(|_| timer)
        })
    }

    fn schedule(&self, deadline: Instant, wake: oneshot::Sender<()>) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = queue.next_seq;
        queue.next_seq = seq.wrapping_add(1);
        let earliest = queue
            .sleepers
            .peek()
            .is_none_or(|Reverse(first)| deadline < first.deadline);
        queue.sleepers.push(Reverse(Sleeper {
            deadline,
            seq,
            wake,
        }));
        drop(queue);
        if earliest {
            self.changed.notify_one();
        }
    }

    fn run(&self) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            while queue
                .sleepers
                .peek()
                .is_some_and(|Reverse(first)| first.deadline <= now)
            {
                if let Some(Reverse(due)) = queue.sleepers.pop() {
                    // The sleeper may have been dropped (its read cancelled): nothing to do.
                    let _ = due.wake.send(());
                }
            }
            let wait = queue
                .sleepers
                .peek()
                .map(|Reverse(first)| first.deadline.saturating_duration_since(now));
            queue = match wait {
                Some(wait) => {
                    self.changed
                        .wait_timeout(queue, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .changed
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        // No time driver on purpose: the timer must not need one.
        tokio::runtime::Builder::new_current_thread()
            .build()
            .map(|runtime| runtime.block_on(future))
            .unwrap_or_else(|error| unreachable!("no runtime: {error}"))
    }

    #[test]
    fn sleeps_at_least_the_duration_without_a_tokio_timer() {
        block_on(async {
            let started = Instant::now();
            sleep(Duration::from_millis(20)).await;
            assert!(started.elapsed() >= Duration::from_millis(20), "woke early");
            let started = Instant::now();
            sleep(Duration::ZERO).await;
            sleep(Duration::MAX).await; // no deadline can be computed: ends at once
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "zero sleep waited"
            );
        });
    }

    #[test]
    fn sleepers_wake_in_deadline_order() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|error| unreachable!("no runtime: {error}"));
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async {
            let mut tasks = Vec::new();
            for (id, ms) in [(0, 30u64), (1, 10), (2, 20)] {
                let order = order.clone();
                tasks.push(tokio::task::spawn_local(async move {
                    sleep(Duration::from_millis(ms)).await;
                    order
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(id);
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
        });
        let order = order.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert_eq!(order, vec![1, 2, 0]);
    }
}
