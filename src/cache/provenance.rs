//! When a value was read from its source, for what the cache does with it later: a value is
//! created as of its read, and a coherent cache keeps it in-process only if its bus has not
//! dropped the in-process tier since (a disconnect, a resubscription, a lost message).

use std::sync::atomic::{AtomicU64, Ordering};

/// When a value was read from its source (the origin, or the store).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Read {
    /// On the client's clock, in ms.
    pub(crate) at_ms: u64,
    /// The bus's flush generation then (0 without a bus).
    pub(crate) generation: u64,
}

/// When a load began, noted by the loader as it starts, read by what stores its value.
#[derive(Default)]
pub(crate) struct LoadStart {
    /// `at_ms + 1`, so that 0 stays "not started".
    at_ms: AtomicU64,
    generation: AtomicU64,
}

impl LoadStart {
    pub(crate) fn mark(&self, read: Read) {
        self.generation.store(read.generation, Ordering::Relaxed);
        self.at_ms
            .store(read.at_ms.saturating_add(1), Ordering::Release);
    }

    /// When the load began; `None` if it did not.
    pub(crate) fn read(&self) -> Option<Read> {
        match self.at_ms.load(Ordering::Acquire) {
            0 => None,
            at => Some(Read {
                at_ms: at - 1,
                generation: self.generation.load(Ordering::Relaxed),
            }),
        }
    }
}
