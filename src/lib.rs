//! # scoped-cache
//!
//! A cache client for backend services that cache per-user, per-device data. Its one promise:
//!
//! > **A cached value is only ever returned to the owner it was stored for** — under any load,
//! > interleaving, or fault of the network, the cache server, or the client's own code.
//!
//! ```text
//!  caller ──Key<N>(tenant, device, item)──▶ Cache<N> ─▶ LocalCache (in-process, typed values)
//!                                              │           entry carries its owner; checked on read
//!                                              └────────▶ RemoteStore (MemoryStore, Redis, …)
//!                                                          value = sealed Envelope; opened and
//!                                                          verified for the requested key on read
//! ```
//!
//! - **Typed keys.** [`TenantId`] and [`DeviceId`] are distinct types that do not convert into
//!   each other; a [`Key<N>`](Key) is (namespace `N`, owner, item) and its byte encoding is
//!   injective, so no two keys share a store entry.
//! - **Sealed values.** Everything written to a [`RemoteStore`] is an [`Envelope`]: the payload
//!   bound to its full key, schema and lifetime under a 256-bit HMAC-SHA256 tag from a
//!   [`KeyRing`]. A read opens it *for the key it asked for*.
//! - **Verified in-process hits.** [`LocalCache`] entries carry the owner they were stored for;
//!   every hit is compared with the requested key.
//! - **Fail closed.** A value that fails a check is a [`Violation`]: counted in [`Stats`], reported
//!   to the violation sink with the expected and (authenticated) found owner, deleted from its tier,
//!   and read as a miss. Never data.
//!
//! ## What is and is not protected
//!
//! Protected: a store or connection that returns another key's value, a value written under the
//! wrong key by a buggy client (tenant and device swapped, another tenant, another item), a
//! corrupted, truncated, replayed-after-expiry or forged value, a value of another namespace or
//! schema, a hash collision or map bug in-process.
//!
//! Not protected: an attacker or bug holding the key ring's secret that seals a wrong value *for
//! your key*; a source of truth that itself returns another owner's data (the cache stores what it
//! is given, for the key it is given) — unless the value names its owner: a namespace whose value
//! type implements [`Owned`] and opts in with [`Namespace::value_owner`] refuses such a value on
//! insert and load, and checks it again on every read; stale-but-authentic values of the same key
//! within their TTL (use [`Cache::invalidate`]); anything that reads process memory.
//!
//! ## Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use bytes::Bytes;
//! use scoped_cache::{Client, DeviceId, Key, KeyId, KeyRing, MemoryStore, Namespace, RawBytes, TenantId};
//!
//! struct Thumbnails;
//! impl Namespace for Thumbnails {
//!     const NAME: &'static str = "thumb";
//!     const SCHEMA: u16 = 1;
//!     type Item = u64;
//!     type Value = Bytes;
//!     type Codec = RawBytes;
//! }
//!
//! let client = Client::builder()
//!     .key_ring(KeyRing::new(KeyId(1), b"a secret of at least thirty-two bytes!")?)
//!     .remote(MemoryStore::default())
//!     .on_violation(|report| eprintln!("refused a cached value: {report:?}"))
//!     .build()?;
//! let thumbs = client.cache::<Thumbnails>().build()?;
//!
//! let key = Key::new(TenantId::new("user-42")?, DeviceId::new("cam-7")?, 9);
//! thumbs.insert(&key, Bytes::from_static(b"jpeg")).await?;
//! assert_eq!(thumbs.get(&key).await, Some(Bytes::from_static(b"jpeg")));
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```
//!
//! ## Cargo features
//!
//! | feature | default | what it adds | cost when off / on |
//! |---|---|---|---|
//! | `testing` | off | `scoped_cache::testing`: fault-injecting test doubles (`FaultyStore`, L1 lookup chaos) | none / not for production builds |
//! | `redis` | off | `RedisStore`: Redis or Valkey as the shared tier (redis-rs, tokio) | none / redis-rs and its dependencies |
//! | `serde` | off | `Postcard<T>`: a codec for any `Serialize + DeserializeOwned` value | none / serde and postcard |
//! | `tracing` | off | a `DEBUG` span per [`Cache`] operation (`get`, `insert`, `invalidate`, `get_or_load`; fields `namespace`, `outcome`), an `ERROR` event per violation (`namespace`, `tier`, `kind`); target `scoped_cache` | none (compiled out) / a span per operation, free when its level is disabled |
//! | `metrics` | off | counters for hits and misses per tier, loads, load errors, violations by kind; the breaker state gauge; an operation latency histogram (`describe_metrics` lists them) | none (compiled out) / a clock read and a few recorder calls per operation |
//!
//! Spans, events and metric labels never carry a tenant, device or item: only the namespace,
//! tier, operation, outcome and violation kind. The expected and found owners of a violation go
//! to the violation sink only. [`Stats`] are always available, with or without these features.
//!
//! ## Minimum supported Rust version
//!
//! Rust 1.88 (edition 2024).

#![cfg_attr(
    not(test),
    deny(clippy::panic, clippy::unwrap_used, clippy::expect_used)
)]

mod bounded;
mod breaker;
mod cache;
mod client;
mod clock;
mod codec;
mod envelope;
mod error;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod id;
mod item;
mod key;
mod keyring;
mod local;
mod mac;
mod memory_store;
mod namespace;
mod observe;
mod owned;
#[cfg(feature = "redis")]
mod redis_store;
mod single_flight;
mod stats;
mod store;
mod sync;
#[cfg(feature = "testing")]
pub mod testing;
mod violation;

/// The README's examples, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use breaker::{BreakerEvent, BreakerState};
pub use cache::{Cache, CacheBuilder, Policy};
pub use client::{BreakerSink, Client, ClientBuilder};
pub use clock::{Clock, ManualClock};
#[cfg(feature = "serde")]
pub use codec::Postcard;
pub use codec::{Codec, CodecError, RawBytes};
pub use envelope::{
    DEFAULT_MAX_PAYLOAD, Envelope, FORMAT_VERSION, MAGIC, MAX_KEY_LEN, NEVER, Opened, SealError,
};
pub use error::{BuildError, Error, LoadError};
pub use id::{DeviceId, IdError, MAX_TEXT_ID_LEN, TenantId};
pub use item::{ItemDecodeError, ItemKey};
pub use key::{KEY_PREFIX, Key, KeyDecodeError, Owner, RawKey};
pub use keyring::{KeyId, KeyRing, KeyRingError, MIN_SECRET_LEN};
pub use local::{LocalCache, LocalCacheBuilder};
pub use memory_store::MemoryStore;
pub use namespace::{MAX_NAMESPACE_LEN, Namespace, NamespaceError, validate_namespace};
#[cfg(feature = "metrics")]
pub use observe::describe_metrics;
pub use owned::Owned;
#[cfg(feature = "redis")]
pub use redis_store::{RedisStore, RedisStoreBuilder};
pub use stats::{Stats, ViolationCounts};
pub use store::{RemoteStore, StoreError, StoreFuture};
pub use violation::{Malformed, Tier, Violation, ViolationKind, ViolationReport, ViolationSink};
