//! The synchronisation primitives the crate uses, in one place so loom models can swap them.

pub(crate) use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

/// Locks a mutex, ignoring poisoning: every critical section leaves its data consistent before
/// anything in it can panic, so a panic elsewhere does not make the data unusable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
