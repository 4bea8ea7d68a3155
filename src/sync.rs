//! The synchronisation primitives the crate uses, in one place so loom models can swap them.
//!
//! Built with `--cfg scoped_cache_loom`, these are loom's, and the concurrent map is a
//! `Mutex<HashMap>` shim with the subset of `DashMap`'s API the crate uses (see `sync/map.rs`).
//! A crate-specific cfg keeps `--cfg loom` from changing our dependencies too.

#[cfg(not(scoped_cache_loom))]
mod imp {
    pub(crate) use dashmap::DashMap as ConcurrentMap;
    pub(crate) use dashmap::mapref::entry::Entry as MapEntry;
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
    pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
}

#[cfg(scoped_cache_loom)]
#[path = "sync/map.rs"]
mod map;

#[cfg(scoped_cache_loom)]
mod imp {
    pub(crate) use super::map::{ConcurrentMap, Entry as MapEntry};
    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
    pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
}

pub(crate) use imp::*;

/// Locks a mutex, ignoring poisoning: every critical section leaves its data consistent before
/// anything in it can panic, so a panic elsewhere does not make the data unusable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
