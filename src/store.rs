//! The shared tier: the stores the crate ships, and the kit for writing another.
//!
//! A [`Client`](crate::Client) talks to its shared tier through [`RemoteStore`]: bytes under
//! bytes, with a TTL. Everything the client writes there is a sealed
//! [envelope](crate::envelope) and everything it reads back is opened for the key it asked for,
//! so a store decides whether a value is found, never which owner receives it.
//!
//! The stores:
//!
//! - [`MemoryStore`]: in-process and bounded, for a single instance and for tests.
//! - `RedisStore` and its `RedisStoreBuilder` (feature `redis`): Redis or Valkey.
//! - `RedisClusterStore` and its `RedisClusterStoreBuilder` (feature `redis-cluster`): Redis
//!   Cluster or Valkey in cluster mode.
//! - `RedisSentinelStore` and its `RedisSentinelStoreBuilder` (feature `redis-sentinel`): the
//!   primary that Redis Sentinel names, followed across failovers.
//!
//! `KeyLayout` (feature `redis`) says where an encoded key goes in a Redis key: as it is, or
//! behind a hash tag of its owner, so that one device's values share a cluster slot.
//!
//! [`MemoryStore`] and `RedisStore` are also re-exported at the crate root, since every client
//! configures one.
//!
//! To put another store behind the cache, implement [`RemoteStore`] (its documentation has a
//! complete example); its methods return a [`StoreFuture`] that fails with a [`StoreError`].

#[cfg(feature = "redis")]
mod commands;
#[cfg(feature = "redis")]
mod key_layout;
mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(feature = "redis-cluster")]
mod redis_cluster;
#[cfg(feature = "redis-sentinel")]
mod redis_sentinel;

#[cfg(feature = "redis")]
pub use self::redis::{RedisStore, RedisStoreBuilder};
#[cfg(feature = "redis")]
pub use key_layout::KeyLayout;
pub use memory::MemoryStore;
#[cfg(feature = "redis-cluster")]
pub use redis_cluster::{RedisClusterStore, RedisClusterStoreBuilder};
#[cfg(feature = "redis-sentinel")]
pub use redis_sentinel::{RedisSentinelStore, RedisSentinelStoreBuilder};

use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// The future returned by [`RemoteStore`] methods.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A remote store call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached (connection refused, closed, reset).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store did not answer in time.
    #[error("store timed out after {0:?}")]
    Timeout(Duration),
    /// The store answered something that is not a valid reply.
    #[error("store protocol error: {0}")]
    Protocol(String),
    /// The store refused the command.
    #[error("store error: {0}")]
    Server(String),
    /// The store's configuration is invalid (a bad URL, a zero timeout); fix the configuration.
    #[error("invalid store configuration: {0}")]
    Config(String),
    /// Not attempted: the store failed repeatedly and the client's store breaker is open, so
    /// calls skip it until a probe succeeds
    /// ([`ClientBuilder::store_breaker`](crate::ClientBuilder::store_breaker)).
    #[error("store skipped: it kept failing, and calls resume after a successful probe")]
    Skipped,
}

/// A shared tier that stores bytes under bytes, with a TTL.
///
/// Implementations never see an unsealed value: [`Cache`](crate::Cache) writes sealed envelopes
/// and opens every value it reads for the key it asked for, so a store that returns the wrong
/// bytes causes a counted miss, never a leak. Implementations should still bound every call in
/// time and must not panic on any reply.
///
/// The crate's implementations are [`MemoryStore`] (in-process), the Redis
/// store (feature `redis`) and, for tests, `testing::FaultyStore` (feature `testing`).
///
/// # Examples
///
/// A store over a `HashMap` that ignores TTLs (expired envelopes are still refused on read):
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use bytes::Bytes;
/// use scoped_cache::{Client, DeviceId, Key, KeyId, KeyRing, Namespace, RawBytes, TenantId};
/// use scoped_cache::envelope::MAGIC;
/// use scoped_cache::store::{RemoteStore, StoreFuture};
/// use std::collections::HashMap;
/// use std::sync::{Arc, Mutex, PoisonError};
/// use std::time::Duration;
/// # struct Thumbnails;
/// # impl Namespace for Thumbnails {
/// #     const NAME: &'static str = "thumb";
/// #     const SCHEMA: u16 = 1;
/// #     type Item = u64;
/// #     type Value = Bytes;
/// #     type Codec = RawBytes;
/// # }
///
/// #[derive(Default)]
/// struct MapStore(Mutex<HashMap<Vec<u8>, Bytes>>);
///
/// impl MapStore {
///     fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Bytes>> {
///         self.0.lock().unwrap_or_else(PoisonError::into_inner)
///     }
/// }
///
/// impl RemoteStore for MapStore {
///     fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Bytes>> {
///         Box::pin(async move { Ok(self.map().get(key).cloned()) })
///     }
///     fn set<'a>(&'a self, key: &'a [u8], value: Bytes, _ttl: Option<Duration>) -> StoreFuture<'a, ()> {
///         Box::pin(async move {
///             self.map().insert(key.to_vec(), value);
///             Ok(())
///         })
///     }
///     fn delete<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, ()> {
///         Box::pin(async move {
///             self.map().remove(key);
///             Ok(())
///         })
///     }
/// }
///
/// let store = Arc::new(MapStore::default());
/// let client = Client::builder()
///     .key_ring(KeyRing::new(KeyId(1), &[42; 32])?)
///     .remote_shared(store.clone())
///     .build()?;
/// let thumbs = client.cache::<Thumbnails>().local_capacity(0).build()?;
/// let key = Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
/// thumbs.insert(&key, Bytes::from_static(b"jpeg")).await?;
/// assert!(store.map()[&key.encode()].starts_with(&MAGIC)); // the store holds an envelope
/// assert_eq!(thumbs.get(&key).await.as_deref(), Some(&b"jpeg"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
///
/// # Cancel safety
///
/// [`Cache`](crate::Cache) drops a store's future whenever its own caller is cancelled or
/// times out, at any await point. Each method must therefore be cancel safe in this sense: a
/// dropped call leaves the store usable, and in particular its reply, if one still arrives, is
/// never handed to another call (the redis-py #2624 failure). Were it handed on anyway, the
/// value would be refused as sealed for another key: a violation and a miss, not a leak. A
/// dropped `set` or `delete` may or may not have taken effect.
pub trait RemoteStore: Send + Sync + 'static {
    /// The bytes stored under `key`, if any.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the store cannot answer; [`Cache`](crate::Cache) reads it as a miss
    /// (counted in `remote_errors`).
    ///
    /// # Cancel safety
    ///
    /// Required; see the [trait docs](RemoteStore#cancel-safety).
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Bytes>>;

    /// The bytes under each of `keys`, in the same order; exactly `keys.len()` results.
    ///
    /// The default issues one `get` after another; stores with batching override it.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the store cannot answer; [`Cache::get_many`](crate::Cache::get_many)
    /// reads the whole batch as misses. A result of the wrong length is treated the same way.
    ///
    /// # Cancel safety
    ///
    /// Required; see the [trait docs](RemoteStore#cancel-safety). The default is cancel safe
    /// when `get` is.
    fn get_many<'a>(&'a self, keys: &'a [Vec<u8>]) -> StoreFuture<'a, Vec<Option<Bytes>>> {
        Box::pin(async move {
            let mut values = Vec::with_capacity(keys.len());
            for key in keys {
                values.push(self.get(key).await?);
            }
            Ok(values)
        })
    }

    /// Stores `value` under `key`, replacing any value, dropped after `ttl` if one is given
    /// (`None`: kept until deleted or evicted).
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the value may not have been stored; returned by
    /// [`Cache::insert`](crate::Cache::insert) as [`Error::Remote`](crate::Error::Remote).
    ///
    /// # Cancel safety
    ///
    /// Required; see the [trait docs](RemoteStore#cancel-safety). A dropped call may or may not
    /// have stored the value.
    fn set<'a>(&'a self, key: &'a [u8], value: Bytes, ttl: Option<Duration>)
    -> StoreFuture<'a, ()>;

    /// Deletes `key` (no error if absent).
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the value may not have been deleted; returned by
    /// [`Cache::invalidate`](crate::Cache::invalidate) as [`Error::Remote`](crate::Error::Remote).
    ///
    /// # Cancel safety
    ///
    /// Required; see the [trait docs](RemoteStore#cancel-safety). A dropped call may or may not
    /// have deleted the value.
    fn delete<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, ()>;

    /// Deletes `key` only while it still holds `value`: the bytes a read just refused.
    ///
    /// [`Cache`](crate::Cache) calls it after refusing a remote value. A value that was changed
    /// on its way (a reply swapped between connections, truncated, corrupted) or replaced since
    /// the read is not what the store holds, so the key's good value stays.
    ///
    /// The default deletes nothing: a store that cannot compare and delete in one step keeps
    /// the refused value until its TTL passes or a write replaces it (every read refuses it
    /// again, so it is never served). Override it only with an atomic compare-and-delete; a
    /// plain delete here would also remove a good value written since the read.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] when the store cannot answer (counted in `remote_errors`).
    ///
    /// # Cancel safety
    ///
    /// Required; see the [trait docs](RemoteStore#cancel-safety). A dropped call may or may not
    /// have deleted the value.
    fn delete_if<'a>(&'a self, key: &'a [u8], value: &'a Bytes) -> StoreFuture<'a, ()> {
        let _ = (key, value);
        Box::pin(async { Ok(()) })
    }
}
