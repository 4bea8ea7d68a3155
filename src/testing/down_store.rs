//! `DownStore`: a shared tier that is unreachable.

use crate::store::{RemoteStore, StoreError, StoreFuture};
use bytes::Bytes;
use std::time::Duration;

/// A [`RemoteStore`] whose every call fails with [`StoreError::Unavailable`], as a store that
/// is down. A cache over it must serve misses and loads, never an error in place of a value.
///
/// # Examples
///
/// ```
/// use scoped_cache::store::RemoteStore;
/// use scoped_cache::testing::DownStore;
///
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// assert!(DownStore.get(b"key").await.is_err());
/// assert!(DownStore.set(b"key", bytes::Bytes::new(), None).await.is_err());
/// # });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct DownStore;

fn down<T>() -> StoreFuture<'static, T> {
    Box::pin(async { Err(StoreError::Unavailable("store is down".to_owned())) })
}

impl RemoteStore for DownStore {
    fn get<'a>(&'a self, _key: &'a [u8]) -> StoreFuture<'a, Option<Bytes>> {
        down()
    }

    fn set<'a>(
        &'a self,
        _key: &'a [u8],
        _value: Bytes,
        _ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()> {
        down()
    }

    fn delete<'a>(&'a self, _key: &'a [u8]) -> StoreFuture<'a, ()> {
        down()
    }
}
