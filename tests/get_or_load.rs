//! `get_or_load`: one load per cold full key, results only to callers of that key, and no caller
//! left waiting on a load that nobody runs.

mod support;

use bytes::Bytes;
use scoped_cache::{Cache, Client, Key, LoadError, LocalCache, MemoryStore, Policy};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::fixture::{Thumbs, client, concurrent_loads, key, truth};

fn cache(remote: bool, local_capacity: u64) -> Cache<Thumbs> {
    let client = if remote {
        client(Arc::new(MemoryStore::default()))
    } else {
        Client::builder().build().unwrap()
    };
    client
        .cache::<Thumbs>()
        .local_capacity(local_capacity)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_callers_of_one_cold_key_run_one_load() {
    for (remote, local_capacity) in [(true, 10_000), (true, 0), (false, 10_000)] {
        let cache = cache(remote, local_capacity);
        let calls = concurrent_loads(&cache, std::iter::repeat_n(key(1, 2, 3), 1_000)).await;
        assert_eq!(
            calls, 1,
            "remote={remote} local={local_capacity}: one loader call"
        );
        assert_eq!(cache.stats().loads, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_keys_each_load_once_and_get_their_own_value() {
    let cache = cache(true, 100_000);
    let calls = Arc::new(AtomicUsize::new(0));
    // 100 tenants x 10 devices; tenant and device ids overlap, so (t, d) and (d, t) both exist.
    let keys: Vec<_> = (0..100)
        .flat_map(|t| (0..10).map(move |d| key(t, (t + d) % 100, 1)))
        .collect();
    let tasks: Vec<_> = keys
        .iter()
        .flat_map(|k| std::iter::repeat_n(k.clone(), 2))
        .map(|k| {
            let (cache, calls) = (cache.clone(), Arc::clone(&calls));
            tokio::spawn(async move {
                let load = || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    Ok::<_, std::io::Error>(truth(&k))
                };
                (cache.get_or_load(&k, load).await, k)
            })
        })
        .collect();
    for task in tasks {
        let (value, k) = task.await.unwrap();
        assert_eq!(
            value.unwrap(),
            truth(&k),
            "every caller gets its own key's value"
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1_000,
        "one load per distinct key"
    );
}

/// Keys that differ only in their item, or only by tenant and device exchanged: coalescing keyed
/// without the item, or on the pair of ids unordered, would hand one key's value to the other.
fn near_keys() -> [Key<Thumbs>; 4] {
    [key(1, 2, 3), key(1, 2, 4), key(2, 1, 3), key(2, 1, 4)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_differ_only_in_item_or_by_exchange_never_share_a_load() {
    for (remote, local_capacity) in [(true, 10_000), (true, 0), (false, 0)] {
        let cache = cache(remote, local_capacity);
        // Every key's callers start together and its load takes a while, so they overlap.
        let keys = near_keys()
            .into_iter()
            .flat_map(|k| std::iter::repeat_n(k, 25));
        assert_eq!(
            concurrent_loads(&cache, keys).await,
            4,
            "remote={remote} local={local_capacity}: one load per key, not per owner or pair"
        );
    }
}

#[test]
fn local_get_or_load_never_shares_a_load_between_near_keys() {
    let cache = Arc::new(LocalCache::<Thumbs>::new(1_000).unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(std::sync::Barrier::new(4 * 8));
    let threads: Vec<_> = near_keys()
        .into_iter()
        .flat_map(|k| std::iter::repeat_n(k, 8))
        .map(|k| {
            let (cache, calls, barrier) = (cache.clone(), calls.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let value = cache.get_or_load(&k, || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    Ok::<_, std::io::Error>(truth(&k))
                });
                (value, k)
            })
        })
        .collect();
    for thread in threads {
        let (value, k) = thread.join().unwrap();
        assert_eq!(value.unwrap(), truth(&k), "{k:?} got another key's value");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4, "one load per key");
}

#[tokio::test]
async fn a_cancelled_leader_hands_the_load_to_a_waiter() {
    let cache = cache(false, 1_000);
    let k = key(1, 1, 1);
    let leader = {
        let (cache, k) = (cache.clone(), k.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&k, || {
                    std::future::pending::<Result<Bytes, std::io::Error>>()
                })
                .await
        })
    };
    tokio::task::yield_now().await; // the leader starts its endless load
    let waiter = {
        let (cache, k) = (cache.clone(), k.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&k, || async { Ok::<_, std::io::Error>(truth(&k)) })
                .await
        })
    };
    tokio::task::yield_now().await; // the waiter joins the flight
    leader.abort();
    let value = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("waiter must not hang");
    assert_eq!(value.unwrap().unwrap(), truth(&k));
    assert!(
        cache.stats().coalesced >= 1,
        "the second caller waited on the first"
    );
}

#[tokio::test]
async fn loader_errors_are_shared_not_cached_and_timeouts_bound_the_load() {
    let cache = Client::builder()
        .build()
        .unwrap()
        .cache::<Thumbs>()
        .load_timeout(Some(Duration::from_millis(50)))
        .build()
        .unwrap();
    let k = key(1, 1, 1);
    let failed = cache
        .get_or_load(&k, || async {
            Err::<Bytes, _>(std::io::Error::other("db down"))
        })
        .await;
    assert!(
        matches!(&failed, Err(LoadError::Loader(e)) if e.to_string() == "db down"),
        "{failed:?}"
    );
    let slow = cache
        .get_or_load(&k, || {
            std::future::pending::<Result<Bytes, std::io::Error>>()
        })
        .await;
    assert!(matches!(slow, Err(LoadError::Timeout(_))), "{slow:?}");
    let loaded = cache
        .get_or_load(&k, || async { Ok::<_, std::io::Error>(truth(&k)) })
        .await;
    assert_eq!(loaded.unwrap(), truth(&k), "errors were not cached");
    assert_eq!(cache.stats().load_errors, 2);
}

#[tokio::test]
async fn bypass_calls_the_loader_every_time_and_stores_nothing() {
    let client = client(Arc::new(MemoryStore::default()));
    let relations = client
        .cache::<Thumbs>()
        .policy(Policy::Bypass)
        .build()
        .unwrap();
    let calls = AtomicUsize::new(0);
    let k = key(1, 1, 1);
    for _ in 0..3 {
        let value = relations
            .get_or_load(&k, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(truth(&k))
            })
            .await;
        assert_eq!(value.unwrap(), truth(&k));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(relations.get(&k).await, None, "bypass never stores");
    let stats = relations.stats();
    assert_eq!(
        (stats.loads, stats.misses, stats.inserts),
        (3, 4, 0),
        "every bypassed read is a miss, every bypassed load a load"
    );
}

#[test]
fn local_get_or_load_blocks_waiters_and_survives_a_panicking_leader() {
    let cache = Arc::new(LocalCache::<Thumbs>::new(1_000).unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let k = key(5, 6, 7);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            let (cache, calls, k) = (Arc::clone(&cache), Arc::clone(&calls), k.clone());
            scope.spawn(move || {
                let value = cache.get_or_load(&k, || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    Ok::<_, std::io::Error>(truth(&k))
                });
                assert_eq!(value.unwrap(), truth(&k));
            });
        }
    });
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let k = key(8, 8, 8);
    let panicked = std::thread::scope(|scope| {
        let leader = {
            let (cache, k) = (Arc::clone(&cache), k.clone());
            scope.spawn(move || {
                cache.get_or_load(&k, || -> Result<Bytes, std::io::Error> {
                    std::thread::sleep(Duration::from_millis(50));
                    panic!("loader bug")
                })
            })
        };
        std::thread::sleep(Duration::from_millis(10));
        let value = cache.get_or_load(&k, || Ok::<_, std::io::Error>(truth(&k)));
        assert_eq!(
            value.unwrap(),
            truth(&k),
            "a waiter took over the abandoned load"
        );
        leader.join().is_err()
    });
    assert!(panicked, "the leader's panic reached its own caller");
}

/// A loader's error with a cause of its own, as a database client's error would have.
#[derive(Debug)]
struct QueryFailed(std::io::Error);

impl std::fmt::Display for QueryFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("query failed")
    }
}

impl std::error::Error for QueryFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[tokio::test]
async fn a_loader_error_is_the_source_of_the_load_error_and_its_chain_follows() {
    let cache = cache(false, 100);
    let failed = cache
        .get_or_load(&key(1, 2, 3), || async {
            Err::<Bytes, _>(QueryFailed(std::io::Error::other("connection reset")))
        })
        .await
        .unwrap_err();
    assert!(matches!(failed, LoadError::Loader(_)), "{failed:?}");
    let error: &(dyn std::error::Error + 'static) = &failed;
    let mut chain = Vec::new();
    let mut next = error.source();
    while let Some(cause) = next {
        chain.push(cause.to_string());
        next = cause.source();
    }
    assert_eq!(chain, ["query failed", "connection reset"]);
    let loader_error = error.source().expect("the loader's error");
    assert!(
        loader_error.downcast_ref::<QueryFailed>().is_some(),
        "the loader's own error, not a wrapper: {loader_error:?}"
    );
    assert!(
        loader_error
            .source()
            .and_then(|cause| cause.downcast_ref::<std::io::Error>())
            .is_some(),
        "then its cause"
    );
}

/// A load that read the source of truth before an `invalidate` must not be cached after it:
/// the loader here waits, on a channel, until the invalidation has run.
#[tokio::test]
async fn an_invalidate_during_a_load_keeps_the_loaded_value_out_of_the_cache() {
    for (remote, local_capacity) in [(true, 100), (true, 0), (false, 100)] {
        let cache = cache(remote, local_capacity);
        let k = key(1, 2, 3);
        let (started, loading) = tokio::sync::oneshot::channel();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let leader = tokio::spawn({
            let (cache, k) = (cache.clone(), k.clone());
            async move {
                cache
                    .get_or_load(&k, || async move {
                        started.send(()).expect("test waits");
                        released.await.expect("test releases");
                        Ok::<_, std::io::Error>(Bytes::from_static(b"read before"))
                    })
                    .await
            }
        });
        loading.await.expect("the loader started");
        cache.invalidate(&k).await.expect("invalidate");
        release.send(()).expect("loader waits");
        let loaded = leader.await.expect("leader task").expect("loaded");
        assert_eq!(
            loaded, "read before",
            "its callers still get what they asked for"
        );
        assert_eq!(
            cache.get(&k).await,
            None,
            "remote {remote}, local {local_capacity}: not cached after the invalidation"
        );
        let fresh = cache
            .get_or_load(&k, || async {
                Ok::<_, std::io::Error>(Bytes::from_static(b"read after"))
            })
            .await
            .expect("loaded");
        assert_eq!(fresh, "read after");
        assert_eq!(cache.get(&k).await.as_deref(), Some(&b"read after"[..]));
    }
}

/// A `MemoryStore` whose `set`s wait until the test lets them through.
struct GatedSets {
    store: MemoryStore,
    entered: tokio::sync::Semaphore,
    release: tokio::sync::Semaphore,
}

impl scoped_cache::store::RemoteStore for GatedSets {
    fn get<'a>(&'a self, key: &'a [u8]) -> scoped_cache::store::StoreFuture<'a, Option<Bytes>> {
        self.store.get(key)
    }
    fn set<'a>(
        &'a self,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Duration>,
    ) -> scoped_cache::store::StoreFuture<'a, ()> {
        Box::pin(async move {
            self.entered.add_permits(1);
            self.release.acquire().await.expect("open").forget();
            self.store.set(key, value, ttl).await
        })
    }
    fn delete<'a>(&'a self, key: &'a [u8]) -> scoped_cache::store::StoreFuture<'a, ()> {
        self.store.delete(key)
    }
}

/// An `invalidate` that arrives while the leader is storing its value waits for that store,
/// then deletes: the remote write cannot land after the delete.
#[tokio::test]
async fn an_invalidate_during_the_leaders_store_waits_for_it_then_deletes() {
    let store = Arc::new(GatedSets {
        store: MemoryStore::default(),
        entered: tokio::sync::Semaphore::new(0),
        release: tokio::sync::Semaphore::new(0),
    });
    let cache = client(store.clone()).cache::<Thumbs>().build().unwrap();
    let k = key(1, 2, 3);
    let leader = tokio::spawn({
        let (cache, k) = (cache.clone(), k.clone());
        async move {
            cache
                .get_or_load(&k, || async {
                    Ok::<_, std::io::Error>(Bytes::from_static(b"read before"))
                })
                .await
        }
    });
    store.entered.acquire().await.expect("open").forget(); // the leader is storing
    let invalidate = tokio::spawn({
        let (cache, k) = (cache.clone(), k.clone());
        async move { cache.invalidate(&k).await }
    });
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(
        !invalidate.is_finished(),
        "the invalidation waits for the store in progress"
    );
    store.release.add_permits(1);
    invalidate.await.expect("task").expect("invalidate");
    assert_eq!(leader.await.expect("task").expect("loaded"), "read before");
    assert_eq!(cache.get(&k).await, None, "the delete came after the store");
    assert!(store.store.is_empty());
}
