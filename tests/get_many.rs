//! `Cache::get_many`: one batched remote read, every element matched by position and opened for
//! its own key, so a store that scrambles or shortens a batch causes misses, never wrong values.

mod support;

use bytes::Bytes;
use scoped_cache::store::{RemoteStore, StoreFuture};
use scoped_cache::{Cache, MemoryStore, ViolationKind};
use std::sync::Arc;
use std::time::Duration;
use support::fixture::{Thumbs, client, key, truth};

/// How a store mangles batches.
#[derive(Clone, Copy)]
enum Mangle {
    Reverse,
    DropLast,
}

struct MangledBatches {
    inner: MemoryStore,
    mangle: Mangle,
}

impl RemoteStore for MangledBatches {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Bytes>> {
        self.inner.get(key)
    }

    fn get_many<'a>(&'a self, keys: &'a [Vec<u8>]) -> StoreFuture<'a, Vec<Option<Bytes>>> {
        Box::pin(async move {
            let mut values = self.inner.get_many(keys).await?;
            match self.mangle {
                Mangle::Reverse => values.reverse(),
                Mangle::DropLast => drop(values.pop()),
            }
            Ok(values)
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()> {
        self.inner.set(key, value, ttl)
    }

    fn delete<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, ()> {
        self.inner.delete(key)
    }
}

fn cache(store: Arc<dyn RemoteStore>, local_capacity: u64) -> Cache<Thumbs> {
    client(store)
        .cache()
        .local_capacity(local_capacity)
        .build()
        .unwrap()
}

#[tokio::test]
async fn batches_return_each_key_its_own_value_and_misses_in_place() {
    let store: Arc<dyn RemoteStore> = Arc::new(MemoryStore::default());
    let writer = cache(Arc::clone(&store), 0);
    // (1, 2) and (2, 1) both exist: the incident's pair.
    let keys = [key(1, 2, 1), key(2, 1, 1), key(1, 2, 2), key(3, 3, 3)];
    for k in &keys[..3] {
        writer.insert(k, truth(k)).await.unwrap();
    }
    let reader = cache(store, 100);
    assert_eq!(
        reader.get(&keys[0]).await,
        Some(truth(&keys[0])),
        "one key already in L1"
    );
    let values = reader.get_many(&keys).await;
    assert_eq!(
        values,
        [
            Some(truth(&keys[0])),
            Some(truth(&keys[1])),
            Some(truth(&keys[2])),
            None
        ]
    );
    let stats = reader.stats();
    // The first get was a remote hit (then promoted); the batch had one local and two remote hits.
    assert_eq!(
        (
            stats.hits_local,
            stats.hits_remote,
            stats.violations.total()
        ),
        (1, 3, 0)
    );
}

#[tokio::test]
async fn a_scrambled_batch_is_refused_element_by_element() {
    let store = Arc::new(MangledBatches {
        inner: MemoryStore::default(),
        mangle: Mangle::Reverse,
    });
    let cache = cache(store, 0);
    let keys = [key(1, 2, 1), key(2, 1, 1), key(1, 2, 2)];
    for k in &keys {
        cache.insert(k, truth(k)).await.unwrap();
    }
    let values = cache.get_many(&keys).await;
    // Reversed: the middle element is its own; the outer two are each other's.
    assert_eq!(values, [None, Some(truth(&keys[1])), None]);
    assert_eq!(cache.stats().violations.get(ViolationKind::ItemMismatch), 2);
}

#[tokio::test]
async fn a_short_batch_is_refused_whole() {
    let store = Arc::new(MangledBatches {
        inner: MemoryStore::default(),
        mangle: Mangle::DropLast,
    });
    let cache = cache(store, 0);
    let keys = [key(1, 2, 1), key(2, 1, 1)];
    for k in &keys {
        cache.insert(k, truth(k)).await.unwrap();
    }
    assert_eq!(cache.get_many(&keys).await, [None, None]);
    let stats = cache.stats();
    assert_eq!((stats.remote_errors, stats.misses), (1, 2));
}
