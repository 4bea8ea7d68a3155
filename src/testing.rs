//! Test doubles for proving the guarantee under faults (feature `testing`).
//!
//! [`FaultyStore`] wraps any [`RemoteStore`](crate::RemoteStore) and, at seeded per-kind rates,
//! answers reads with the kind of wrong bytes real stores and clients have returned: another
//! key's value, the value of the same ids with tenant and device exchanged, corrupted or
//! truncated bytes. It counts every fault it injects, so a harness can check that each one was
//! refused by [`Cache`](crate::Cache) (as a [`Violation`](crate::Violation)) and none reached a
//! caller as data.
//!
//! Nothing in this module is needed in production; it exists so that tests, benches and the
//! `storm` example exercise the same fault model.
//!
//! | kind | what a read returns instead of the stored value |
//! |---|---|
//! | [`swap`](FaultKind::Swap) | the value recently written under another key |
//! | [`confuse`](FaultKind::Confuse) | the value stored under the same key with tenant and device exchanged |
//! | [`corrupt`](FaultKind::Corrupt) | the stored value with one byte flipped, or cut short |

mod fault;
mod faulty_store;
mod rng;

pub use fault::{FaultCounts, FaultKind, FaultRates, FaultRatesError};
pub use faulty_store::{FaultyStore, FaultyStoreBuilder};
