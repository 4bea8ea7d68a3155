//! `RemoteStore`: the byte-level interface of a shared tier (Redis, the in-process `MemoryStore`).

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
}

/// A shared tier that stores bytes under bytes, with a TTL.
///
/// Implementations never see an unsealed value: [`Cache`](crate::Cache) writes sealed envelopes
/// and opens every value it reads for the key it asked for, so a store that returns the wrong
/// bytes causes a counted miss, never a leak. Implementations should still bound every call in
/// time and must not panic on any reply.
pub trait RemoteStore: Send + Sync + 'static {
    /// The bytes stored under `key`, if any.
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Bytes>>;

    /// The bytes under each of `keys`, in the same order; exactly `keys.len()` results.
    ///
    /// The default issues one `get` after another; stores with batching override it.
    fn get_many<'a>(&'a self, keys: &'a [Vec<u8>]) -> StoreFuture<'a, Vec<Option<Bytes>>> {
        Box::pin(async move {
            let mut values = Vec::with_capacity(keys.len());
            for key in keys {
                values.push(self.get(key).await?);
            }
            Ok(values)
        })
    }

    /// Stores `value` under `key`, dropped after `ttl` if one is given.
    fn set<'a>(&'a self, key: &'a [u8], value: Bytes, ttl: Option<Duration>)
    -> StoreFuture<'a, ()>;

    /// Deletes `key` (no error if absent).
    fn delete<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, ()>;
}
