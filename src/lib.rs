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
//! - **Sealed values.** Everything written to a [`RemoteStore`](store::RemoteStore) is an
//!   [`Envelope`](envelope::Envelope): the payload bound to its full key, schema and lifetime
//!   under a 256-bit MAC tag from a [`KeyRing`] (HMAC-SHA256 for small values, keyed BLAKE3 for
//!   large ones), or, for a namespace sealed with
//!   [`Sealing::Encrypted`](envelope::Sealing::Encrypted), encrypted with XChaCha20-Poly1305 and
//!   the full key as associated data, so whoever reads the store does not see payloads. A read
//!   opens it *for the key it asked for*.
//! - **Verified in-process hits.** [`LocalCache`] entries carry the key they were stored for;
//!   every hit is compared with the requested key, apart from the map's own lookup.
//! - **Fail closed.** A value that fails a check is read as a miss, never as data. Why it was
//!   refused decides who hears of it ([`Refusal`]): an *integrity* failure ([`Violation`]:
//!   another owner, item or namespace, a bad tag, malformed bytes) is counted in [`Stats`],
//!   reported to the violation sink with the expected and (authenticated) found owner, fed to the
//!   breaker and deleted from its tier (remotely, only while the store still holds those very
//!   bytes); a *freshness* miss ([`Freshness`]: expired, another schema, a key id this ring does
//!   not have yet) is only counted, because expiry, deploys and key rotations are normal.
//!
//! ## What is protected, and what is not
//!
//! The guarantee is about *which owner* a value is returned to. It holds whatever the remote
//! store, the network or the in-process map does, as long as the key ring's secret stays secret
//! and the key you pass names the owner you mean.
//!
//! **Protected** — each of these is refused and read as a miss, never returned as data (as a
//! [`Violation`], counted, reported and deleted, unless marked *freshness*):
//!
//! - *Mix-ups between owners or items, in either tier*: a value of another tenant, another device,
//!   tenant and device exchanged, or another item of the same owner — whether a store, a proxy or
//!   a buggy writer put it under the wrong store key, or a map bug in-process handed it back. (Two
//!   keys whose 64-bit in-process fingerprints collide are told apart by the key each entry
//!   carries: the other key's entry is read as a plain miss, not reported.)
//! - *Reply mismatches*: a reply read for another request, as a cancelled, timed-out or pipelined
//!   request can cause on a shared connection (redis-py #2624), or a reordered batch from
//!   [`Cache::get_many`]: each value is opened for the key that asked for it. (A batch of the
//!   wrong length is refused whole, as a remote error.)
//! - *Poisoned, swapped, corrupt or truncated remote entries*: anything not sealed with a key of
//!   the [`KeyRing`] for exactly this key fails the 256-bit tag or the key check.
//! - *Expired remote entries* (freshness): an authentic value read after the expiry sealed into
//!   it (a lagging replica, a store that ignores TTLs, a reader whose clock runs ahead by more
//!   than the client's clock-skew allowance) is refused. The tiers drop values that allowance (at
//!   most a quarter of the TTL) before their sealed expiry, so on clocks that agree it does not
//!   happen at all.
//! - *Schema and namespace changes*: a value written under another namespace is a violation; one
//!   written under another [`Namespace::SCHEMA`] is a freshness miss (the other half of a rolling
//!   deploy). Either way a deploy that changes a value type never decodes old bytes as new.
//!
//! **Not protected:**
//!
//! - *A compromised key ring.* Anyone who holds a signing or verifying secret and can write to the
//!   store can seal any value for any key; rotate the ring ([`KeyRing`]) if a secret leaks.
//!   Likewise two services that share a secret and a store must not use one namespace `NAME` for
//!   different data (or must give each its own `RedisStore` key prefix, which also keeps them
//!   out of each other's keys).
//! - *A source of truth that returns wrong data.* [`Cache::get_or_load`] stores what the loader
//!   returns for the key it was called with. If the loader returns another owner's data, that is
//!   what is cached and served to this key's owner — unless the value names its owner: a
//!   namespace whose value type implements [`Owned`] and opts in with
//!   [`Namespace::value_owner`] refuses such a value on insert and load, and checks it again on
//!   every read.
//! - *A caller who builds the key for the wrong owner.* The cache checks that a value belongs to
//!   the key it is asked for, not that the key belongs to whoever is asking: deciding which
//!   tenant and device a request may read is the caller's authorization job. Use
//!   [`Policy::Bypass`] for the authorization relations themselves.
//! - *Stale but authentic values of the same key.* A store may hand back an older value sealed
//!   for the same key that has not yet expired (a replayed or lagging entry, or one deleted by
//!   [`Cache::invalidate`] and later restored). It is the owner's own data and is accepted; keep
//!   TTLs as short as staleness allows.
//! - *Denial of service by a hostile or broken store.* It can make every read a miss (refused,
//!   absent, failed or slow up to the response timeout), so load shifts to the source of truth
//!   (one load per key at a time); with [`Policy::AutoBypass`] it can also keep the breaker
//!   open, and a store that keeps failing is skipped by the store breaker ([`StoreBreaker`]).
//!   Nothing it does yields another owner's data.
//! - *Reading the store.* Whoever can read the shared store (an operator, a backup, a replica, a
//!   dump) reads the payloads of authenticated values. A namespace sealed with
//!   [`Sealing::Encrypted`](envelope::Sealing::Encrypted) keeps its payloads confidential, but
//!   not its keys (namespace, tenant, device, item), times or payload lengths; see
//!   `docs/ENVELOPE.md`.
//! - *Timing side channels*, beyond the constant-time tag comparison. A hit is faster than a miss,
//!   so whoever can time requests can tell whether a key was cached; comparisons of
//!   already-authenticated fields (owner, item, namespace) are ordinary comparisons.
//! - *Values once returned.* A returned value is a clone owned by the caller; what the caller
//!   does with it (and anything that can read the process's memory, where in-process entries are
//!   not sealed) is outside the cache.
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
//! ## The API by role
//!
//! - **The crate root** holds what every user needs: [`Client`] and its [`Cache`]s, the in-process
//!   [`LocalCache`], keys and ids ([`Key`], [`TenantId`], [`DeviceId`], [`Namespace`]), the
//!   [`KeyRing`], codecs, [`Stats`], errors, violations and freshness misses, breaker events,
//!   clocks, and the stores most clients configure: [`MemoryStore`] and `RedisStore` (feature
//!   `redis`).
//! - **[`store`]** is the shared tier: the [`RemoteStore`](store::RemoteStore) trait and its
//!   errors for writing a store, and every store the crate ships, including the Redis Cluster and
//!   Redis Sentinel stores.
//! - **[`envelope`]** is the wire format, sans-IO: sealing and opening values, the encoding of
//!   store keys, and the format's constants, as specified in `docs/ENVELOPE.md`. Only code that
//!   handles stored bytes itself needs it.
//! - **`testing`** (feature `testing`) has fault-injecting test doubles.
//!
//! ## Cargo features
//!
//! | feature | default | what it adds | cost when off / on |
//! |---|---|---|---|
//! | `testing` | off | `scoped_cache::testing`: fault-injecting test doubles (`FaultyStore`, L1 lookup chaos) | none / not for production builds |
//! | `redis` | off | `RedisStore` (also `store::RedisStore`): Redis or Valkey as the shared tier (redis-rs, tokio) | none / redis-rs and its dependencies |
//! | `redis-tls` | off | `rediss://` URLs for `RedisStore`: TLS through rustls (ring), trusting the system's roots; enables `redis` | none / rustls and ring |
//! | `redis-cluster` | off | `store::RedisClusterStore`: Redis Cluster or Valkey cluster mode as the shared tier (slots, `MOVED`/`ASK`, failover, optional reads from replicas); enables `redis` | none / redis-rs's cluster client |
//! | `redis-sentinel` | off | `store::RedisSentinelStore`: the primary Redis Sentinel names, followed across failovers; enables `redis` | none / redis-rs's sentinel client |
//! | `serde` | off | `Postcard<T>`: a codec for any `Serialize + DeserializeOwned` value | none / serde and postcard |
//! | `tracing` | off | a `DEBUG` span per [`Cache`] operation (`get`, `get_many`, `insert`, `invalidate`, `get_or_load`; fields `namespace`, `outcome`), an `ERROR` event per violation (`namespace`, `tier`, `kind`); target `scoped_cache` | none (compiled out) / a span per operation, free when its level is disabled |
//! | `metrics` | off | counters for hits and misses per tier, loads, load errors, violations by kind; the breaker state gauge; an operation latency histogram (`describe_metrics` lists them) | none (compiled out) / a clock read and a few recorder calls per operation |
//! | `audit` | off | the `scoped-cache-audit` binary: audits a Redis keyspace and reports over violation logs (`docs/INCIDENT.md`); enables `redis-cluster` | none / clap, serde_json, base64, indicatif for the binary; the library is unchanged |
//!
//! Spans, events and metric labels never carry a tenant, device or item: only the namespace,
//! tier, operation, outcome and violation kind. The expected and found owners of a violation go
//! to the violation sink only; [`ViolationLog`] is a ready sink that writes them to a file for
//! `scoped-cache-audit report`. [`Stats`] are always available, with or without these features.
//!
//! ## Minimum supported Rust version
//!
//! Rust 1.88 (edition 2024).

#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    deny(clippy::panic, clippy::unwrap_used, clippy::expect_used)
)]

mod bounded;
mod breaker;
pub mod bus;
mod cache;
mod client;
mod clock;
mod codec;
mod detach;
pub mod envelope;
mod error;
mod found;
mod freshness;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod id;
mod item;
mod key;
mod keyring;
mod limiter;
mod load;
mod local;
mod mac;
mod namespace;
mod observe;
mod owned;
mod refusal;
mod shared;
mod single_flight;
mod stats;
pub mod store;
mod sync;
#[cfg(feature = "testing")]
pub mod testing;
mod violation;

/// The README's examples, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use breaker::{BreakerEvent, BreakerScope, BreakerState};
pub use bus::{BusStats, MemoryBus};
pub use cache::{Cache, CacheBuilder, Fetched, Policy, StaleReason};
pub use client::{Client, ClientBuilder, DEFAULT_CLOCK_SKEW_ALLOWANCE, StoreBreaker};
pub use clock::{Clock, MAX_TTL, ManualClock};
#[cfg(feature = "serde")]
pub use codec::Postcard;
pub use codec::{Codec, CodecError, RawBytes};
pub use error::{BuildError, Error, LoadError};
pub use freshness::{Freshness, FreshnessKind};
pub use id::{DeviceId, IdError, MAX_TEXT_ID_LEN, TenantId};
pub use item::{ItemDecodeError, ItemKey};
pub use key::{Key, Owner};
pub use keyring::{KeyId, KeyRing, KeyRingError, MIN_SECRET_LEN};
pub use local::{LocalCache, LocalCacheBuilder};
pub use namespace::{MAX_NAMESPACE_LEN, Namespace, NamespaceError, validate_namespace};
#[cfg(feature = "metrics")]
pub use observe::describe_metrics;
pub use observe::{ViolationLog, ViolationLogBuilder, ViolationLogStats};
pub use owned::Owned;
pub use refusal::Refusal;
pub use shared::BreakerSink;
pub use stats::{FreshnessCounts, Stats, ViolationCounts};
pub use store::MemoryStore;
#[cfg(feature = "redis")]
pub use store::RedisStore;
pub use violation::{Tier, Violation, ViolationKind, ViolationReport, ViolationSink};
