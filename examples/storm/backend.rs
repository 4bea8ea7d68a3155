//! The remote tier the flags chose (in-process memory or Redis), opened fresh for each run and
//! observed for the values it loses.

use crate::config::{BackendChoice, Config};
use crate::now_ms;
use crate::origin::Origin;
use bytes::Bytes;
use scoped_cache::MemoryStore;
use scoped_cache::store::{RemoteStore, StoreFuture};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The chosen backend behind one type, so that `FaultyStore` can wrap whichever it is. It also
/// ends a key's fill where the backend loses the key's value: when the key is deleted (the cache
/// deletes a key whose read it refused; this backend keeps `RemoteStore::delete_if`'s default,
/// an unconditional delete, so that every refusal ends the fill where the harness can see it,
/// even though it can remove a value another caller has just loaded and written), and when a
/// read or write of it fails on its own (not injected): a failed read is a miss, a failed write
/// leaves the value out of the shared tier.
pub struct Backend {
    pub store: Arc<dyn RemoteStore>,
    pub origin: Arc<Origin>,
    pub errors: AtomicU64,
    /// The first calls the backend failed, one per distinct message.
    pub error_examples: Mutex<Vec<String>>,
}

/// How many distinct backend errors a run keeps as examples.
const ERROR_EXAMPLES: usize = 8;

impl Backend {
    fn observe<'a, T: Send + 'a>(
        &'a self,
        key: &'a [u8],
        call: StoreFuture<'a, T>,
        ends_fill: bool,
    ) -> StoreFuture<'a, T> {
        Box::pin(async move {
            let outcome = call.await;
            if let Err(error) = &outcome {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let mut examples = self
                    .error_examples
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let message = error.to_string();
                if examples.len() < ERROR_EXAMPLES && !examples.contains(&message) {
                    examples.push(message);
                }
                if ends_fill {
                    self.origin.end_fill(key);
                }
            }
            outcome
        })
    }
}

impl RemoteStore for Backend {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Bytes>> {
        self.observe(key, self.store.get(key), true)
    }

    fn set<'a>(
        &'a self,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()> {
        self.observe(key, self.store.set(key, value, ttl), true)
    }

    fn delete<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let outcome = self.observe(key, self.store.delete(key), false).await;
            self.origin.end_fill(key);
            outcome
        })
    }

    /// Unconditional, on purpose: every refusal the cache deletes ends the key's fill, so the
    /// fill accounting never depends on whether a value was replaced since it was read.
    fn delete_if<'a>(&'a self, key: &'a [u8], _value: &'a Bytes) -> StoreFuture<'a, ()> {
        self.delete(key)
    }
}

/// The chosen backend, fresh for one run; the `MemoryStore` too when it is one, for its stats.
/// A Redis backend gets a key prefix of its own per run, so that runs (and the baseline) never
/// see each other's keys.
pub async fn open_backend(
    config: &Config,
    run: &str,
) -> Result<(Arc<dyn RemoteStore>, Option<Arc<MemoryStore>>), String> {
    let timeout = config.store_timeout;
    let (url, store) = match &config.backend {
        BackendChoice::Memory => {
            // Room for every key: evictions would only cost reloads, never the checks.
            let memory = Arc::new(MemoryStore::new(4 << 30));
            return Ok((memory.clone(), Some(memory)));
        }
        BackendChoice::Redis(url) => (url, open_redis(url, prefix(run), timeout).await),
        BackendChoice::RedisCluster(url) => {
            (url, open_redis_cluster(url, prefix(run), timeout).await)
        }
        BackendChoice::RedisSentinel(url) => {
            (url, open_redis_sentinel(url, prefix(run), timeout).await)
        }
    };
    store
        .map(|store| (store, None))
        .map_err(|error| format!("cannot connect to {url}: {error}"))
}

fn prefix(run: &str) -> String {
    format!("storm:{}:{}:{run}:", std::process::id(), now_ms())
}

// `BackendChoice::from_str` accepts a Redis URL only in a build with its feature; a build
// without it keeps the variant, and these say which feature it lacks.

/// `--store-timeout`, or the store's default.
type Timeout = Option<Duration>;

#[cfg(feature = "redis")]
async fn open_redis(
    url: &str,
    prefix: String,
    timeout: Timeout,
) -> Result<Arc<dyn RemoteStore>, String> {
    let mut builder = scoped_cache::RedisStore::builder(url).key_prefix(prefix);
    if let Some(timeout) = timeout {
        builder = builder.response_timeout(timeout);
    }
    builder
        .connect()
        .await
        .map(|store| Arc::new(store) as Arc<dyn RemoteStore>)
        .map_err(|error| error.to_string())
}

#[cfg(not(feature = "redis"))]
async fn open_redis(_: &str, _: String, _: Timeout) -> Result<Arc<dyn RemoteStore>, String> {
    Err("this build has no Redis support; add --features redis".into())
}

#[cfg(feature = "redis-cluster")]
async fn open_redis_cluster(
    url: &str,
    prefix: String,
    timeout: Timeout,
) -> Result<Arc<dyn RemoteStore>, String> {
    let mut builder =
        scoped_cache::store::RedisClusterStore::builder_from_url(url).key_prefix(prefix);
    if let Some(timeout) = timeout {
        builder = builder.response_timeout(timeout);
    }
    builder
        .connect()
        .await
        .map(|store| Arc::new(store) as Arc<dyn RemoteStore>)
        .map_err(|error| error.to_string())
}

#[cfg(not(feature = "redis-cluster"))]
async fn open_redis_cluster(
    _: &str,
    _: String,
    _: Timeout,
) -> Result<Arc<dyn RemoteStore>, String> {
    Err("this build has no Redis Cluster support; add --features redis-cluster".into())
}

#[cfg(feature = "redis-sentinel")]
async fn open_redis_sentinel(
    url: &str,
    prefix: String,
    timeout: Timeout,
) -> Result<Arc<dyn RemoteStore>, String> {
    let mut builder =
        scoped_cache::store::RedisSentinelStore::builder_from_url(url).key_prefix(prefix);
    if let Some(timeout) = timeout {
        builder = builder.response_timeout(timeout);
    }
    builder
        .connect()
        .await
        .map(|store| Arc::new(store) as Arc<dyn RemoteStore>)
        .map_err(|error| error.to_string())
}

#[cfg(not(feature = "redis-sentinel"))]
async fn open_redis_sentinel(
    _: &str,
    _: String,
    _: Timeout,
) -> Result<Arc<dyn RemoteStore>, String> {
    Err("this build has no Sentinel support; add --features redis-sentinel".into())
}
