//! `RedisSentinelStore`: the primary that Redis Sentinel names, followed across failovers.
//! Every command goes through a [`RedisStore`] on the current primary; this module only finds
//! that primary (through redis-rs's sentinel client) and swaps stores when it changes.

use crate::store::redis::{RedisStore, RedisStoreBuilder};
use crate::store::{RemoteStore, StoreError, StoreFuture};
use bytes::Bytes;
use redis::IntoConnectionInfo as _;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How often the sentinels are asked for the primary when nothing went wrong: the bound on
/// how long the store may keep talking to a primary that was demoted but still answers.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest pause between two questions to the sentinels, however many calls fail.
const MIN_CHECK_GAP: Duration = Duration::from_millis(50);

/// A Redis primary found through Sentinel, as the shared tier: the same commands, timeouts,
/// key prefix and guarantees as [`RedisStore`] (each call goes to a `RedisStore` on the current
/// primary), plus failover.
///
/// A background task asks the sentinels which node is the primary of the service (redis-rs's
/// `SentinelClient`, which also checks that the node it names answers `ROLE` as a primary):
/// at start, every second, and soon after any call fails (at most every 50 ms). When the answer
/// changes, calls move to a new `RedisStore` on the new primary; calls already in flight on the
/// old one finish or fail there, within their timeout. During a failover, calls fail with
/// [`StoreError::Timeout`] or [`StoreError::Unavailable`] (counted misses for
/// [`Cache`](crate::Cache)) until the sentinels have promoted a replica and the store has
/// heard of it.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use scoped_cache::{Client, KeyId, KeyRing};
/// use scoped_cache::store::RedisSentinelStore;
/// use std::time::Duration;
///
/// let store = RedisSentinelStore::builder_from_url(
///     "redis+sentinel://cache-user:secret@10.0.0.1:26379,10.0.0.2:26379/thumbs-primary",
/// )
/// .response_timeout(Duration::from_millis(200))
/// .connect()
/// .await?;
/// let client = Client::builder()
///     .key_ring(KeyRing::new(KeyId(1), &[42; 32])?)
///     .remote(store)
///     .build()?;
/// # let _ = client; Ok(()) }
/// ```
///
/// # What it trusts, and what it does not
///
/// As [`RedisStore`]: nothing it returns is trusted, every value is opened by
/// [`Cache`](crate::Cache) for the key it asked for, and a reply can only ever reach the call
/// that sent its command (see [`RedisStore`]'s cancel-safety notes: the same connections carry
/// the same commands). A primary that was demoted but still answers may serve reads for up to
/// a second (the check interval) before the store moves: those values are the same owner's,
/// possibly older, still verified; writes to it fail (`READONLY`) and make the store ask the
/// sentinels at once.
///
/// # Limits
///
/// Sentinels are contacted over plain TCP and without credentials; the credentials and
/// database of the URL are those of the data nodes. TLS to the data nodes is not offered yet.
///
/// # Panics
///
/// As [`RedisStore`]: calls must happen inside a Tokio runtime with the time driver enabled.
/// Building the store outside a runtime is refused with [`StoreError::Config`], not a panic.
pub struct RedisSentinelStore {
    shared: Arc<Shared>,
    watcher: tokio::task::JoinHandle<()>,
}

/// What the calls and the watcher task share.
struct Shared {
    /// The store on the current primary; `None` until the sentinels first named one.
    current: watch::Sender<Option<Primary>>,
    /// Wakes the watcher early: a call failed.
    suspect: Notify,
    response_timeout: Duration,
    failovers: AtomicU64,
    /// The last reason the sentinels gave no usable primary (for `connect`'s error).
    last_error: std::sync::Mutex<Option<String>>,
}

#[derive(Clone)]
struct Primary {
    /// `host:port`, to tell a new primary from the same one.
    address: String,
    store: Arc<RedisStore>,
}

/// Configures a [`RedisSentinelStore`]; from [`RedisSentinelStore::builder`] or
/// [`RedisSentinelStore::builder_from_url`].
#[must_use]
pub struct RedisSentinelStoreBuilder {
    /// The sentinels, the service, the data nodes' settings; or why the URL is invalid.
    target: Result<Target, String>,
    connect_timeout: Duration,
    response_timeout: Duration,
    prefix: Vec<u8>,
    connections: usize,
}

#[derive(Clone)]
struct Target {
    sentinels: Vec<String>,
    service: String,
    /// A `redis://` URL with the data nodes' credentials and database (its host is not used).
    node_settings: String,
}

impl RedisSentinelStore {
    /// A builder for the primary of `service` as `sentinels` (`redis://host:port` URLs) name it.
    /// Defaults as [`RedisStore::builder`]; the data nodes are contacted without credentials
    /// on database 0 unless [`RedisSentinelStoreBuilder::credentials`] and
    /// [`RedisSentinelStoreBuilder::database`] say otherwise.
    pub fn builder<I, S>(sentinels: I, service: impl Into<String>) -> RedisSentinelStoreBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisSentinelStoreBuilder::new(Ok(Target {
            sentinels: sentinels.into_iter().map(Into::into).collect(),
            service: service.into(),
            node_settings: "redis://sentinel-primary".into(),
        }))
    }

    /// A builder from one URL:
    /// `redis+sentinel://[user:password@]host:port[,host:port…]/service[/db]`. The sentinels
    /// are the hosts; the credentials and database are those of the data nodes.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use scoped_cache::store::{RedisSentinelStore, StoreError};
    /// // No server needed: the sentinels are asked in the background.
    /// let url = "redis+sentinel://cache-user:secret@127.0.0.1:26379,127.0.0.1:26380/thumbs/2";
    /// let store = RedisSentinelStore::builder_from_url(url).connect_lazy()?;
    /// assert!(!format!("{store:?}").contains("secret")); // credentials are never printed
    ///
    /// let bad = RedisSentinelStore::builder_from_url("redis+sentinel://127.0.0.1:26379").connect_lazy();
    /// assert!(matches!(bad, Err(StoreError::Config(_)))); // no service name
    /// # Ok::<(), StoreError>(()) }).unwrap();
    /// ```
    pub fn builder_from_url(url: &str) -> RedisSentinelStoreBuilder {
        RedisSentinelStoreBuilder::new(parse_url(url))
    }

    /// How many times the store moved to a new primary.
    pub fn failovers(&self) -> u64 {
        self.shared.failovers.load(Ordering::Relaxed)
    }

    /// Runs `call` on the current primary's store, waiting (within the response timeout) for
    /// the first primary to be known; a failed call wakes the watcher.
    async fn on_primary<'a, T>(
        &'a self,
        call: impl FnOnce(Arc<RedisStore>) -> StoreFuture<'a, T>,
    ) -> Result<T, StoreError> {
        let timeout = self.shared.response_timeout;
        let result = tokio::time::timeout(timeout, async {
            let current = self.shared.current.borrow().clone();
            let primary = match current {
                Some(primary) => primary,
                None => {
                    self.shared.suspect.notify_one();
                    let mut changes = self.shared.current.subscribe();
                    let known = changes
                        .wait_for(Option::is_some)
                        .await
                        .map_err(|_| StoreError::Unavailable("sentinel watcher stopped".into()))?;
                    known
                        .clone()
                        .ok_or_else(|| StoreError::Unavailable("no primary known yet".into()))?
                }
            };
            call(primary.store).await
        })
        .await
        .unwrap_or(Err(StoreError::Timeout(timeout)));
        if result.is_err() {
            self.shared.suspect.notify_one();
        }
        result
    }
}

impl Drop for RedisSentinelStore {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl RedisSentinelStoreBuilder {
    fn new(target: Result<Target, String>) -> Self {
        Self {
            target,
            connect_timeout: RedisStore::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: RedisStore::DEFAULT_RESPONSE_TIMEOUT,
            prefix: Vec::new(),
            connections: 2,
        }
    }

    /// How long [`connect`](Self::connect) waits for the first primary, and how long asking
    /// the sentinels, or opening a connection, may take (default
    /// [`RedisStore::DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The longest any store call may take, waiting for a primary included (default
    /// [`RedisStore::DEFAULT_RESPONSE_TIMEOUT`]).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Prepended to every key (default: none).
    pub fn key_prefix(mut self, prefix: impl AsRef<[u8]>) -> Self {
        self.prefix = prefix.as_ref().to_vec();
        self
    }

    /// How many multiplexed connections to the primary (default 2; see
    /// [`RedisStoreBuilder::connections`]).
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = connections;
        self
    }

    /// The data nodes' ACL user and password (an empty `username`: the default user).
    pub fn credentials(mut self, username: &str, password: &str) -> Self {
        if let Ok(target) = &mut self.target {
            target.node_settings = node_settings_url(Some((username, password)), 0);
        }
        self
    }

    /// The data nodes' database (default 0).
    pub fn database(mut self, db: u16) -> Self {
        if let Ok(target) = &mut self.target {
            let credentials = target
                .node_settings
                .strip_prefix("redis://")
                .and_then(|rest| rest.split_once('@'))
                .map(|(credentials, _)| credentials.to_owned());
            target.node_settings = match credentials {
                Some(credentials) => format!("redis://{credentials}@sentinel-primary/{db}"),
                None => format!("redis://sentinel-primary/{db}"),
            };
        }
        self
    }

    /// Creates the store and starts asking the sentinels in the background; calls made before
    /// a primary is known wait for it within their response timeout.
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] for an invalid URL, no sentinel, an empty service name, a zero
    /// timeout, zero connections, or when called outside a Tokio runtime.
    pub fn connect_lazy(self) -> Result<RedisSentinelStore, StoreError> {
        if self.connect_timeout.is_zero() || self.response_timeout.is_zero() {
            return Err(StoreError::Config(
                "timeouts must be greater than zero".into(),
            ));
        }
        if self.connections == 0 {
            return Err(StoreError::Config(
                "at least one connection is needed".into(),
            ));
        }
        let target = self.target.clone().map_err(StoreError::Config)?;
        if target.sentinels.is_empty() || target.service.is_empty() {
            return Err(StoreError::Config(
                "at least one sentinel and a service name are needed".into(),
            ));
        }
        let node = target
            .node_settings
            .as_str()
            .into_connection_info()
            .map_err(|err| StoreError::Config(format!("redis sentinel url: {err}")))?;
        let node_info = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(node.redis_settings().clone());
        let sentinel = SentinelClient::build(
            target.sentinels.clone(),
            target.service.clone(),
            Some(node_info),
            SentinelServerType::Master,
        )
        .map_err(|err| StoreError::Config(format!("redis sentinel: {err}")))?;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(StoreError::Config(
                "the sentinel store must be created inside a Tokio runtime (it asks the \
                 sentinels on a task of its own): call it from async code or within \
                 Runtime::enter"
                    .into(),
            ));
        };
        let shared = Arc::new(Shared {
            current: watch::Sender::new(None),
            suspect: Notify::new(),
            response_timeout: self.response_timeout,
            failovers: AtomicU64::new(0),
            last_error: std::sync::Mutex::new(None),
        });
        let template = RedisStore::builder(String::new())
            .connect_timeout(self.connect_timeout)
            .response_timeout(self.response_timeout)
            .key_prefix(&self.prefix)
            .connections(self.connections);
        let watcher = runtime.spawn(watch_sentinels(
            Arc::clone(&shared),
            sentinel,
            Template {
                builder: template,
                connect_timeout: self.connect_timeout,
            },
        ));
        Ok(RedisSentinelStore { shared, watcher })
    }

    /// Creates the store once the sentinels have named a primary that answers as one, within
    /// the connect timeout.
    ///
    /// # Errors
    ///
    /// As [`connect_lazy`](Self::connect_lazy); [`StoreError::Timeout`] (with the sentinels'
    /// last answer in the message when there was one, as [`StoreError::Unavailable`]) when no
    /// primary is known in time.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future drops the half-built store, which stops its task.
    pub async fn connect(self) -> Result<RedisSentinelStore, StoreError> {
        let connect_timeout = self.connect_timeout;
        let store = self.connect_lazy()?;
        let mut changes = store.shared.current.subscribe();
        let known = tokio::time::timeout(connect_timeout, changes.wait_for(Option::is_some)).await;
        match known {
            Ok(Ok(_)) => Ok(store),
            _ => {
                let last = store
                    .shared
                    .last_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                Err(match last {
                    Some(why) => StoreError::Unavailable(format!(
                        "no primary from the sentinels within {connect_timeout:?}: {why}"
                    )),
                    None => StoreError::Timeout(connect_timeout),
                })
            }
        }
    }
}

/// How the watcher builds a store for each new primary.
struct Template {
    builder: RedisStoreBuilder,
    connect_timeout: Duration,
}

/// The watcher task: asks the sentinels at start, every `CHECK_INTERVAL`, and soon after a
/// call failed; swaps in a store on the new primary when the answer changes. Aborted when the
/// store is dropped.
async fn watch_sentinels(shared: Arc<Shared>, mut sentinel: SentinelClient, template: Template) {
    loop {
        let answer =
            tokio::time::timeout(template.connect_timeout, sentinel.async_get_client()).await;
        let outcome = match answer {
            Ok(Ok(client)) => {
                let address = client.get_connection_info().addr().to_string();
                let known = shared.current.borrow().as_ref().map(|p| p.address.clone());
                if known.as_deref() == Some(address.as_str()) {
                    Ok(())
                } else {
                    template
                        .builder
                        .clone_settings()
                        .connect_lazy_to(client)
                        .map(|store| {
                            let previous = shared.current.send_replace(Some(Primary {
                                address,
                                store: Arc::new(store),
                            }));
                            if previous.is_some() {
                                shared.failovers.fetch_add(1, Ordering::Relaxed);
                            }
                        })
                        .map_err(|err| err.to_string())
                }
            }
            Ok(Err(err)) => Err(format!("sentinels: {err}")),
            Err(_) => Err(format!(
                "sentinels: no answer within {:?}",
                template.connect_timeout
            )),
        };
        *shared
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = outcome.err();
        let _ = tokio::time::timeout(CHECK_INTERVAL, shared.suspect.notified()).await;
        tokio::time::sleep(MIN_CHECK_GAP).await;
    }
}

/// The sentinels, service and data-node settings in a `redis+sentinel://` URL. Errors never
/// quote the URL: it may hold a password.
fn parse_url(url: &str) -> Result<Target, String> {
    const USAGE: &str = "redis sentinel url: expected \
                         redis+sentinel://[user:password@]host:port[,host:port…]/service[/db]";
    let rest = url.strip_prefix("redis+sentinel://").ok_or(USAGE)?;
    let (authority, path) = rest.split_once('/').ok_or(USAGE)?;
    let (credentials, hosts) = match authority.rsplit_once('@') {
        Some((credentials, hosts)) => (Some(credentials), hosts),
        None => (None, authority),
    };
    let sentinels = hosts
        .split(',')
        .map(|host| {
            (!host.is_empty() && !host.contains(['?', '#']))
                .then(|| format!("redis://{host}"))
                .ok_or(USAGE)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let path = path.strip_suffix('/').unwrap_or(path);
    let (service, db) = match path.split_once('/') {
        Some((service, db)) => (service, db.parse::<u16>().map_err(|_| USAGE)?),
        None => (path, 0),
    };
    if service.is_empty() || service.contains(['?', '#']) {
        return Err(USAGE.into());
    }
    let credentials = credentials.map(|credentials| match credentials.split_once(':') {
        Some((user, password)) => (user, password),
        None => ("", credentials),
    });
    Ok(Target {
        sentinels,
        service: service.to_owned(),
        node_settings: node_settings_url(credentials, db),
    })
}

/// A `redis://` URL that carries only the data nodes' credentials and database.
fn node_settings_url(credentials: Option<(&str, &str)>, db: u16) -> String {
    match credentials {
        Some((user, password)) => format!("redis://{user}:{password}@sentinel-primary/{db}"),
        None => format!("redis://sentinel-primary/{db}"),
    }
}

impl fmt::Debug for RedisSentinelStoreBuilder {
    /// Leaves out the sentinels and credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSentinelStoreBuilder")
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("key_prefix", &String::from_utf8_lossy(&self.prefix))
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RedisSentinelStore {
    /// Leaves out the sentinels, the primary's address and credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSentinelStore")
            .field("response_timeout", &self.shared.response_timeout)
            .field("primary_known", &self.shared.current.borrow().is_some())
            .field("failovers", &self.failovers())
            .finish_non_exhaustive()
    }
}

impl RemoteStore for RedisSentinelStore {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Bytes>> {
        Box::pin(self.on_primary(move |store| Box::pin(async move { store.get(key).await })))
    }

    fn get_many<'a>(&'a self, keys: &'a [Vec<u8>]) -> StoreFuture<'a, Vec<Option<Bytes>>> {
        Box::pin(self.on_primary(move |store| Box::pin(async move { store.get_many(keys).await })))
    }

    fn set<'a>(
        &'a self,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(
            self.on_primary(move |store| Box::pin(async move { store.set(key, value, ttl).await })),
        )
    }

    fn delete<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, ()> {
        Box::pin(self.on_primary(move |store| Box::pin(async move { store.delete(key).await })))
    }

    fn delete_if<'a>(&'a self, key: &'a [u8], value: &'a Bytes) -> StoreFuture<'a, ()> {
        Box::pin(
            self.on_primary(move |store| {
                Box::pin(async move { store.delete_if(key, value).await })
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_sentinels_service_and_data_node_settings() {
        let target = parse_url("redis+sentinel://u:p@a:1,[::1]:2/thumbs/3").unwrap();
        assert_eq!(target.sentinels, ["redis://a:1", "redis://[::1]:2"]);
        assert_eq!(target.service, "thumbs");
        assert_eq!(target.node_settings, "redis://u:p@sentinel-primary/3");
        let target = parse_url("redis+sentinel://a:1/thumbs/").unwrap();
        assert_eq!(target.node_settings, "redis://sentinel-primary/0");
        for bad in [
            "redis://a:1/thumbs",
            "redis+sentinel://a:1",
            "redis+sentinel://a:1/",
            "redis+sentinel://a:1,,b:2/s",
            "redis+sentinel://a:1/s/x",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        let err = parse_url("redis+sentinel://u:hunter2@a:1").err().unwrap();
        assert!(!err.contains("hunter2"));
    }

    #[test]
    fn public_types_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<RedisSentinelStore>();
        send_sync::<RedisSentinelStoreBuilder>();
    }

    #[test]
    fn builder_settings_for_the_data_nodes() {
        let builder = RedisSentinelStore::builder(["redis://a:1"], "s")
            .credentials("u", "p")
            .database(4);
        let target = builder.target.as_ref().unwrap();
        assert_eq!(target.node_settings, "redis://u:p@sentinel-primary/4");
        assert!(!format!("{builder:?}").contains("u:p"));
    }

    #[test]
    fn bad_configuration_is_a_config_error() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            for builder in [
                RedisSentinelStore::builder(Vec::<String>::new(), "s"),
                RedisSentinelStore::builder(["redis://a:1"], ""),
                RedisSentinelStore::builder(["redis://a:1"], "s").connections(0),
                RedisSentinelStore::builder(["redis://a:1"], "s").response_timeout(Duration::ZERO),
                RedisSentinelStore::builder_from_url("redis://a:1/s"),
            ] {
                assert!(matches!(builder.connect_lazy(), Err(StoreError::Config(_))));
            }
        });
        // Outside a runtime: refused, not a panic.
        let outside = RedisSentinelStore::builder(["redis://a:1"], "s").connect_lazy();
        assert!(matches!(outside, Err(StoreError::Config(m)) if m.contains("Tokio runtime")));
    }

    #[test]
    fn no_sentinel_is_an_error_within_the_timeouts() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let timeout = Duration::from_millis(200);
            let started = std::time::Instant::now();
            let err = RedisSentinelStore::builder(["redis://127.0.0.1:1"], "s")
                .connect_timeout(timeout)
                .connect()
                .await
                .err()
                .unwrap();
            assert!(
                matches!(err, StoreError::Unavailable(_) | StoreError::Timeout(_)),
                "{err:?}"
            );
            assert!(started.elapsed() < timeout + Duration::from_secs(1));
            let lazy = RedisSentinelStore::builder(["redis://127.0.0.1:1"], "s")
                .response_timeout(timeout)
                .connect_lazy()
                .unwrap();
            let started = std::time::Instant::now();
            assert!(matches!(lazy.get(b"k").await, Err(StoreError::Timeout(_))));
            assert!(started.elapsed() < timeout + Duration::from_secs(1));
        });
    }
}
