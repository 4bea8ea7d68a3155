//! Test doubles for proving the guarantee under faults (feature `testing`).
//!
//! [`FaultyStore`] wraps any [`RemoteStore`](crate::store::RemoteStore) and, at seeded per-kind
//! rates, answers reads the ways real stores and clients have answered wrongly: another key's
//! value, the value of the same ids with tenant and device exchanged, damaged bytes, an expired or
//! an earlier value of the same key, an error, or late. It counts every fault it injects (and can
//! tell an observer which key each hit), so a harness can check that each wrong value was
//! refused by [`Cache`](crate::Cache) (as a [`Violation`](crate::Violation)) and none reached a
//! caller as data.
//!
//! Nothing in this module is needed in production; it exists so that tests, benches and the
//! `storm` example exercise the same fault model.
//!
//! | kind | what a read returns instead of the stored value | a verifying reader |
//! |---|---|---|
//! | [`swap`](FaultKind::Swap) | the value recently written under another key | refuses it |
//! | [`confuse`](FaultKind::Confuse) | the value stored under the same key with tenant and device exchanged | refuses it |
//! | [`corrupt`](FaultKind::Corrupt) | the stored value with one byte flipped | refuses it |
//! | [`truncate`](FaultKind::Truncate) | the stored value cut short | refuses it |
//! | [`stale`](FaultKind::Stale) | a value once written under the key whose TTL has passed | refuses it |
//! | [`replay`](FaultKind::Replay) | a value once written under the key before the latest, unexpired | accepts it: the owner's own |
//! | [`drop`](FaultKind::Drop) | `StoreError::Unavailable` | reads a miss |
//! | [`delay`](FaultKind::Delay) | the stored value, after a delay | returns it |
//! | [`timeout`](FaultKind::Timeout) | `StoreError::Timeout`, after a delay | reads a miss |
//!
//! [`DownStore`] fails every call, as an unreachable store.
//!
//! The L1 lookup chaos hook of the same feature,
//! [`LocalCacheBuilder::lookup_chaos`](crate::LocalCacheBuilder::lookup_chaos), makes the
//! in-process map hand back another entry, to prove the in-process owner check.

mod down_store;
mod fault;
mod faulty_store;
mod history;
mod rng;
mod timer;

pub use down_store::DownStore;
pub use fault::{FaultCounts, FaultKind, FaultRates, FaultRatesError};
pub use faulty_store::{FaultObserver, FaultyStore, FaultyStoreBuilder, MisdirectObserver};
