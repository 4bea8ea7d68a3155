//! `MemoryStore`: an in-process `RemoteStore` (the embedded default L2, and a test double).

use crate::bounded::{BoundedMap, Lookup};
use crate::clock::{Clock, deadline};
use crate::stats::{Event, Stats};
use crate::store::{RemoteStore, StoreFuture};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// Bytes charged per entry on top of its key and value, for the map's own overhead.
const ENTRY_OVERHEAD: u64 = 64;

/// A bounded in-process byte store with TTL, evicting with S3-FIFO by bytes.
///
/// It plays the remote tier without a server: values are sealed envelopes exactly as in Redis,
/// so everything `Cache` checks is checked here too. Its [`RemoteStore`] calls never fail and
/// complete on their first poll, so they are trivially cancel safe.
///
/// # Examples
///
/// ```
/// # tokio_test_block_on(async {
/// use bytes::Bytes;
/// use scoped_cache::MemoryStore;
/// use scoped_cache::store::RemoteStore;
/// let store = MemoryStore::new(1 << 20);
/// store.set(b"k", Bytes::from_static(b"v"), None).await?;
/// assert_eq!(store.get(b"k").await?, Some(Bytes::from_static(b"v")));
/// # Ok::<(), scoped_cache::store::StoreError>(()) });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f) }
/// ```
pub struct MemoryStore {
    map: BoundedMap<Bytes, Bytes, ahash::RandomState>,
}

impl MemoryStore {
    /// A store of at most `max_bytes` (keys, values and 64 bytes per entry counted).
    pub fn new(max_bytes: u64) -> Self {
        Self::with_clock(max_bytes, Clock::system())
    }

    /// Like [`MemoryStore::new`], reading time from `clock`.
    pub fn with_clock(max_bytes: u64, clock: Clock) -> Self {
        let weigh = |key: &Bytes, value: &Bytes| (key.len() + value.len()) as u64 + ENTRY_OVERHEAD;
        Self {
            map: BoundedMap::new(
                max_bytes,
                // Every entry weighs at least its overhead.
                max_bytes / ENTRY_OVERHEAD,
                Some(Arc::new(weigh)),
                clock,
                ahash::RandomState::new(),
            ),
        }
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hits (`hits_local`), misses, inserts, evictions and expirations of this store.
    pub fn stats(&self) -> Stats {
        self.map.counters().snapshot()
    }

    fn get_now(&self, key: &[u8]) -> Option<Bytes> {
        match self.map.get_with(key, Bytes::clone) {
            Lookup::Hit(value) => {
                self.map.counters().record(Event::HitLocal);
                Some(value)
            }
            Lookup::Miss => {
                self.map.counters().record(Event::Miss);
                None
            }
        }
    }
}

impl Default for MemoryStore {
    /// 64 MiB.
    fn default() -> Self {
        Self::new(64 << 20)
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl RemoteStore for MemoryStore {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Bytes>> {
        Box::pin(async move { Ok(self.get_now(key)) })
    }

    fn get_many<'a>(&'a self, keys: &'a [Vec<u8>]) -> StoreFuture<'a, Vec<Option<Bytes>>> {
        Box::pin(async move { Ok(keys.iter().map(|key| self.get_now(key)).collect()) })
    }

    fn set<'a>(
        &'a self,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let expires_ms = deadline(self.map.clock().now_ms(), ttl);
            self.map
                .insert(Bytes::copy_from_slice(key), value, expires_ms);
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.map.remove(key);
            Ok(())
        })
    }

    fn delete_if<'a>(&'a self, key: &'a [u8], value: &'a Bytes) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            // Compared and removed under the map's lock for the key: atomic with writers.
            self.map.remove_if(key, |stored| stored == value);
            Ok(())
        })
    }
}
