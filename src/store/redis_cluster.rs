//! `RedisClusterStore`: Redis Cluster (or Valkey in cluster mode) as the shared tier, through
//! redis-rs's async cluster client. Like `RedisStore`, one of the few places in the crate that
//! touch sockets.

use crate::store::commands::{self, Connections};
use crate::store::redis::{server_error, store_error};
use crate::store::{KeyLayout, RemoteStore, StoreError, StoreFuture};
use crate::sync::{Mutex, lock};
use bytes::Bytes;
use redis::aio::ConnectionLike as _;
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_read_routing::RandomReplicaStrategy;
use redis::{Cmd, RedisError, Value};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often redis-rs may retry one command inside a call (a `MOVED` or `ASK` redirect, a
/// reconnection, a `TRYAGAIN` during a slot migration each count as one), always within the
/// call's response timeout.
const RETRIES: u32 = 6;
/// The shortest and longest pause before a retry that waits (`TRYAGAIN`, `CLUSTERDOWN`, a slot
/// with no known node), in milliseconds. redis-rs's defaults (1.28 s to 11 min) are meant for
/// clients that would rather wait than fail; a cache would rather miss.
const MIN_RETRY_WAIT_MS: u64 = 5;
const MAX_RETRY_WAIT_MS: u64 = 100;
/// After how long without any reply (a value or an error) while calls time out the cluster
/// connection counts as stuck and is replaced; at least this, at least four response timeouts.
const STUCK_AFTER: Duration = Duration::from_secs(2);

/// Redis Cluster (or Valkey in cluster mode) as the shared tier: `GET`, `SET … PX`, `DEL`, a
/// compare-and-delete script and `MGET`, routed by slot through redis-rs's async cluster client,
/// which discovers the topology from seed nodes, follows `MOVED` and `ASK` redirects, refreshes
/// its slot map and reconnects by itself.
///
/// Every call is bounded by the response timeout, redirects, retries and reconnections
/// included: during a failover, a slot migration or a restart a call fails with
/// [`StoreError::Timeout`] or [`StoreError::Unavailable`] (or [`StoreError::Server`] for a
/// `CLUSTERDOWN` that outlasts the retries), which [`Cache::get`](crate::Cache::get) turns into
/// a counted miss (`remote_errors`). Nothing panics on a reply; a reply of the wrong shape is a
/// [`StoreError::Protocol`].
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use scoped_cache::{Client, KeyId, KeyRing};
/// use scoped_cache::store::RedisClusterStore;
/// use std::time::Duration;
///
/// // Any reachable nodes will do: the rest of the cluster is discovered from them.
/// let store = RedisClusterStore::builder(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"])
///     .response_timeout(Duration::from_millis(200))
///     .key_prefix("thumbs-service:")
///     .connect()
///     .await?;
/// // The same, from one URL (as the storm and the thumbnail service take it).
/// let same = RedisClusterStore::builder_from_url("redis-cluster://10.0.0.1:7000,10.0.0.2:7000")
///     .connect()
///     .await?;
/// let client = Client::builder()
///     .key_ring(KeyRing::new(KeyId(1), &[42; 32])?)
///     .remote(store)
///     .build()?;
/// # let _ = (client, same); Ok(()) }
/// ```
///
/// # What it trusts, and what it does not
///
/// Nothing it returns is trusted: [`Cache`](crate::Cache) opens every value it reads as an
/// [`Envelope`](crate::envelope::Envelope) *for the key it asked for*, so a node, a redirect or a
/// connection that hands back another key's bytes causes a counted violation and a miss, never
/// a leak. [`get_many`](RemoteStore::get_many) sends one `MGET`, which redis-rs splits into one
/// `MGET` per slot (`MultiSlot` routing), sends to each slot's node, and reassembles in the
/// caller's order by the positions it recorded when splitting (`combine_and_sort_array_results`
/// in redis-rs 1.8, which refuses a sub-reply of the wrong length); any sub-request that fails
/// fails the whole batch, which `Cache` reads as misses. Each element is then still opened for
/// the key at its position.
///
/// # Why a cancelled or timed-out request cannot take another request's reply
///
/// A call hands its command to the cluster connection's task together with a oneshot channel
/// of its own, and awaits that channel. The task routes the command to a node's multiplexed
/// connection, whose driver matches replies to requests in order (`PipelineSink` in redis-rs:
/// the n-th reply read goes to the n-th request written, each to its own channel; see
/// [`RedisStore`](crate::RedisStore) for the details) and hands the reply back to the task,
/// which sends it into that request's oneshot channel. A redirect or retry resends the same
/// command with the same channel. A caller that times out or is dropped only drops its
/// receiver: the task stops retrying a request whose receiver is closed (`is_closed` before
/// each attempt), and a reply that still arrives for it is read in order and dropped into the
/// closed channel. No caller reads a socket, so no reply can be left unread for the next
/// caller, and no reply can reach a channel other than its own request's. For a batch, every
/// per-slot sub-request has its own channel, and the batch is reassembled from those channels
/// only.
///
/// Should that matching ever break anyway, `Cache` refuses any value that is not sealed for the
/// requested key, and this store treats a reply of the wrong type, or a value sealed for
/// another key than the one requested, as a sign the connection is out of step: it replaces
/// the whole cluster connection (counted in [`RedisClusterStore::connections_replaced`]) so the
/// fault does not outlive its cause.
///
/// # A connection that stops answering
///
/// redis-rs bounds each attempt inside a call by the response timeout too (slot refreshes and
/// connection checks included), so that no internal request can hold the connection's task.
/// Should the cluster connection still stop answering altogether — every call timing out and
/// no reply at all, not even an error, for two seconds (or four response timeouts, if longer)
/// — the store replaces it with a fresh one that rediscovers the cluster from the seeds (also
/// counted in [`RedisClusterStore::connections_replaced`]). The failover tests saw this
/// happen, rarely, after a primary was killed under load: without it, the store would have
/// kept timing out after the cluster had recovered.
///
/// # Reads from replicas
///
/// Off by default: every command goes to its slot's primary. With
/// [`read_from_replicas`](RedisClusterStoreBuilder::read_from_replicas), `GET` and `MGET` go to
/// a random replica of the slot (the primary when it has none); writes and compare-and-delete
/// still go to the primary. Replication is asynchronous, so a replica can answer with a value
/// that the primary has since replaced, or that [`Cache::invalidate`](crate::Cache::invalidate)
/// has deleted, for as long as replication lags (usually well under a millisecond; unbounded
/// while a replica is cut off from its primary). Such a value is still opened and verified for
/// the requested key: it can only ever be *the same owner's* older value, within its envelope's
/// expiry, never another owner's. Keep it off for namespaces whose invalidations must take
/// effect at once (authorization relations).
///
/// # Key prefixes, hash tags and the owner-affine layout
///
/// Keys are stored as the prefix followed by the encoded key, and Redis Cluster places a key
/// by the CRC16 of its first `{…}` hash tag if it has one. By default
/// ([`KeyLayout::Flat`]) each key has its own slot: a `get_many` of one device's values is one
/// `MGET` per slot, sent to the nodes in parallel. With
/// [`key_layout(KeyLayout::OwnerAffine)`](RedisClusterStoreBuilder::key_layout) a hash tag of
/// the owner puts all of a device's values in one slot: `get_many` for one device is one `MGET`
/// to one node, at the price of that device's whole load on one primary (see [`KeyLayout`]).
/// Either way the value is sealed for, and opened for, the full key.
///
/// A prefix containing a hash tag (such as `"{thumbs}:"`) puts every key on one slot and one
/// node, whatever the layout: a hot node.
///
/// # Panics
///
/// Calls are bounded with Tokio's timer, and redis-rs drives the cluster connection on a Tokio
/// task: calling the store must happen inside a Tokio runtime with the time driver enabled.
/// Building it outside a runtime is refused with [`StoreError::Config`], not a panic.
pub struct RedisClusterStore {
    current: Mutex<Generation>,
    client: ClusterClient,
    config: ClusterConfig,
    prefix: Box<[u8]>,
    layout: KeyLayout,
    response_timeout: Duration,
    read_from_replicas: bool,
    replaced: AtomicU64,
    /// When the store was created; `silent_since_ms` counts from here.
    created: Instant,
    /// 0 while calls get replies; else 1 + when a call first timed out since the last reply.
    silent_since_ms: AtomicU64,
    stuck_after: Duration,
}

/// The cluster connection in use and its generation, so that several callers that detect the
/// same broken connection replace it once.
#[derive(Clone)]
struct Generation {
    number: u64,
    connection: ClusterConnection,
}

/// Configures a [`RedisClusterStore`]; from [`RedisClusterStore::builder`] or
/// [`RedisClusterStore::builder_from_url`].
#[must_use]
pub struct RedisClusterStoreBuilder {
    /// Seed node URLs, or why the URL they came from is invalid (reported by `connect`).
    nodes: Result<Vec<String>, String>,
    connect_timeout: Duration,
    response_timeout: Duration,
    prefix: Vec<u8>,
    layout: KeyLayout,
    read_from_replicas: bool,
}

impl RedisClusterStore {
    /// How long [`RedisClusterStoreBuilder::connect`] waits for the cluster by default.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    /// How long one store call may take by default, redirects, retries and reconnection
    /// included.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

    /// A builder for a store on the cluster that `nodes` belong to.
    ///
    /// Each seed is a node URL: `redis://[user:password@]host:port`, or `rediss://…` for TLS
    /// (with the `redis-tls` feature); all seeds must share credentials and TLS mode. One
    /// reachable seed is enough: the other nodes are discovered from it (`CLUSTER SLOTS`).
    /// Unix sockets are refused: cluster nodes announce each other by IP and port. Defaults:
    /// connect timeout [`RedisClusterStore::DEFAULT_CONNECT_TIMEOUT`], response timeout
    /// [`RedisClusterStore::DEFAULT_RESPONSE_TIMEOUT`], no key prefix, [`KeyLayout::Flat`],
    /// reads from primaries only.
    pub fn builder<I, S>(nodes: I) -> RedisClusterStoreBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisClusterStoreBuilder::new(Ok(nodes.into_iter().map(Into::into).collect()))
    }

    /// A builder from one URL naming the seed nodes:
    /// `redis-cluster://[user:password@]host:port[,host:port…]`, or `rediss-cluster://…` for
    /// TLS. The credentials apply to every node.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use scoped_cache::store::{RedisClusterStore, StoreError};
    /// // No server needed: nothing is contacted yet.
    /// let url = "redis-cluster://cache-user:secret@127.0.0.1:7000,127.0.0.1:7001";
    /// let store = RedisClusterStore::builder_from_url(url).connect_lazy()?;
    /// assert!(!format!("{store:?}").contains("secret")); // nodes and credentials are never printed
    ///
    /// let bad = RedisClusterStore::builder_from_url("redis://127.0.0.1:7000").connect_lazy();
    /// assert!(matches!(bad, Err(StoreError::Config(_))));
    /// # Ok::<(), StoreError>(()) }).unwrap();
    /// ```
    pub fn builder_from_url(url: &str) -> RedisClusterStoreBuilder {
        RedisClusterStoreBuilder::new(seed_urls(url))
    }

    /// How many times the cluster connection was replaced because it answered out of step (a
    /// reply of the wrong type, or a value sealed for another key than the one requested) or
    /// stopped answering (see *A connection that stops answering*).
    pub fn connections_replaced(&self) -> u64 {
        self.replaced.load(Ordering::Relaxed)
    }

    /// Sends `cmd` to the node its key routes to, bounded by the response timeout. Server error
    /// replies are returned as they are, for the caller to tell apart.
    async fn send(&self, cmd: &Cmd) -> Result<(Result<Value, RedisError>, u64), StoreError> {
        let Generation {
            number,
            mut connection,
        } = lock(&self.current).clone();
        match tokio::time::timeout(self.response_timeout, connection.req_packed_command(cmd)).await
        {
            Ok(reply) => {
                // A load first: no write to a shared cache line on the usual path.
                if self.silent_since_ms.load(Ordering::Relaxed) != 0 {
                    self.silent_since_ms.store(0, Ordering::Relaxed);
                }
                Ok((reply, number))
            }
            Err(_) => {
                self.on_timeout(number);
                Err(StoreError::Timeout(self.response_timeout))
            }
        }
    }

    /// Replaces the connection of generation `used` when calls have only timed out, with no
    /// reply at all, for `stuck_after`.
    fn on_timeout(&self, used: u64) {
        let now = self.elapsed_ms().saturating_add(1);
        match self
            .silent_since_ms
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => {}
            Err(since) if u128::from(now.saturating_sub(since)) >= self.stuck_after.as_millis() => {
                // The new connection gets a grace period of its own.
                self.silent_since_ms.store(0, Ordering::Relaxed);
                self.replace(used);
            }
            Err(_) => {}
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Replaces the cluster connection of generation `used`, unless another caller already did.
    fn replace(&self, used: u64) {
        let mut current = lock(&self.current);
        if current.number != used {
            return;
        }
        // Pending: the new connection discovers the cluster in the background; calls meanwhile
        // wait for it within their own timeout.
        let connection = self
            .client
            .get_pending_async_connection_with_config(self.config.clone());
        *current = Generation {
            number: used.wrapping_add(1),
            connection,
        };
        self.replaced.fetch_add(1, Ordering::Relaxed);
    }
}

impl RedisClusterStoreBuilder {
    fn new(nodes: Result<Vec<String>, String>) -> Self {
        Self {
            nodes,
            connect_timeout: RedisClusterStore::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: RedisClusterStore::DEFAULT_RESPONSE_TIMEOUT,
            prefix: Vec::new(),
            layout: KeyLayout::Flat,
            read_from_replicas: false,
        }
    }

    /// How long [`connect`](Self::connect) waits for the cluster's topology, and how long each
    /// later connection attempt to a node may take (default
    /// [`RedisClusterStore::DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The longest any store call may take, redirects, retries and waiting for a reconnection
    /// included (default [`RedisClusterStore::DEFAULT_RESPONSE_TIMEOUT`]). A call that takes
    /// longer fails with [`StoreError::Timeout`]; its reply, if it comes, is discarded.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Prepended to every key, e.g. to share a cluster between services (default: none). See
    /// [`RedisClusterStore`]'s notes on hash tags.
    pub fn key_prefix(mut self, prefix: impl AsRef<[u8]>) -> Self {
        self.prefix = prefix.as_ref().to_vec();
        self
    }

    /// Where keys go in the cluster (default [`KeyLayout::Flat`]: each key in its own slot).
    /// [`KeyLayout::OwnerAffine`] puts all of a device's values in one slot, so that
    /// `get_many` for one device is one round trip to one node; see [`KeyLayout`] for the
    /// trade-off. Every instance sharing the cluster must use the same layout.
    pub fn key_layout(mut self, layout: KeyLayout) -> Self {
        self.layout = layout;
        self
    }

    /// Whether `GET` and `MGET` may be answered by a replica of the key's slot (default
    /// `false`). Spreads reads over more nodes, at the price of reading values that may be
    /// older than the primary's: see [`RedisClusterStore`]'s *Reads from replicas*.
    pub fn read_from_replicas(mut self, enabled: bool) -> Self {
        self.read_from_replicas = enabled;
        self
    }

    /// Creates the store without contacting the cluster: the topology is discovered in the
    /// background, and calls made meanwhile wait for it within their own response timeout. For
    /// services that must start while the cluster is down.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use scoped_cache::store::{RedisClusterStore, StoreError};
    /// let store = RedisClusterStore::builder(["redis://127.0.0.1:1"]).connect_lazy()?;
    /// assert_eq!(store.connections_replaced(), 0);
    ///
    /// let none = RedisClusterStore::builder(Vec::<String>::new()).connect_lazy();
    /// assert!(matches!(none, Err(StoreError::Config(_))));
    /// # Ok::<(), StoreError>(()) }).unwrap();
    /// ```
    ///
    /// Outside a Tokio runtime it is refused, not a panic:
    ///
    /// ```
    /// use scoped_cache::store::{RedisClusterStore, StoreError};
    /// let outside = RedisClusterStore::builder(["redis://127.0.0.1:7000"]).connect_lazy();
    /// assert!(matches!(outside, Err(StoreError::Config(message)) if message.contains("Tokio runtime")));
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] for no seed node, an invalid URL (a unix socket, `rediss://`
    /// without TLS support, seeds with different credentials), a zero timeout, or when called
    /// outside a Tokio runtime.
    pub fn connect_lazy(self) -> Result<RedisClusterStore, StoreError> {
        let (client, config) = self.client()?;
        let connection = client.get_pending_async_connection_with_config(config.clone());
        Ok(self.store(client, config, connection))
    }

    /// Creates the store once the cluster's topology has been read from a seed node, within the
    /// connect timeout.
    ///
    /// # Errors
    ///
    /// As [`connect_lazy`](Self::connect_lazy); [`StoreError::Timeout`] or
    /// [`StoreError::Unavailable`] when no seed can be reached in time, [`StoreError::Server`]
    /// when the cluster refuses (wrong credentials, a node not in cluster mode).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future drops the half-built connection.
    pub async fn connect(self) -> Result<RedisClusterStore, StoreError> {
        let (client, config) = self.client()?;
        let connection = tokio::time::timeout(
            self.connect_timeout,
            client.get_async_connection_with_config(config.clone()),
        )
        .await
        .map_err(|_| StoreError::Timeout(self.connect_timeout))?
        .map_err(|err| store_error(&err, self.connect_timeout))?;
        Ok(self.store(client, config, connection))
    }

    fn client(&self) -> Result<(ClusterClient, ClusterConfig), StoreError> {
        if self.connect_timeout.is_zero() || self.response_timeout.is_zero() {
            return Err(StoreError::Config(
                "timeouts must be greater than zero".into(),
            ));
        }
        let nodes = self.nodes.clone().map_err(StoreError::Config)?;
        if nodes.is_empty() {
            return Err(StoreError::Config(
                "at least one seed node is needed".into(),
            ));
        }
        #[cfg(feature = "redis-tls")]
        if nodes.iter().any(|node| node.starts_with("rediss:")) {
            // redis-rs builds its TLS config from the process-wide rustls provider; install ring
            // unless the application installed one, so that building it cannot panic.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let mut builder = ClusterClientBuilder::new(nodes)
            .connection_timeout(self.connect_timeout)
            .retries(RETRIES)
            .min_retry_wait(MIN_RETRY_WAIT_MS)
            .max_retry_wait(MAX_RETRY_WAIT_MS)
            // No timers of redis-rs's own around a whole request: every call is bounded by
            // `request`'s timeout, redirects and retries included.
            .overall_response_timeout(None);
        if self.read_from_replicas {
            builder = builder.read_routing_strategy(RandomReplicaStrategy);
        }
        let client = builder
            .build()
            .map_err(|err| StoreError::Config(format!("redis cluster: {err}")))?;
        // redis-rs spawns the cluster connection's task on the current runtime, and panics
        // without one.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::Config(
                "the cluster store must be created inside a Tokio runtime (redis-rs spawns a \
                 task per connection): call it from async code or within Runtime::enter"
                    .into(),
            ));
        }
        // `ClusterConfig` replaces the client's timeouts: the connect timeout for each
        // connection attempt, and the response timeout for each attempt within a call, so
        // that no request of redis-rs's own (a slot refresh, a connection check) can wait
        // forever and hold up the connection's task.
        let config = ClusterConfig::new()
            .set_connection_timeout(self.connect_timeout)
            .set_response_timeout(self.response_timeout);
        Ok((client, config))
    }

    fn store(
        self,
        client: ClusterClient,
        config: ClusterConfig,
        connection: ClusterConnection,
    ) -> RedisClusterStore {
        RedisClusterStore {
            current: Mutex::new(Generation {
                number: 0,
                connection,
            }),
            client,
            config,
            prefix: self.prefix.into_boxed_slice(),
            layout: self.layout,
            response_timeout: self.response_timeout,
            read_from_replicas: self.read_from_replicas,
            replaced: AtomicU64::new(0),
            created: Instant::now(),
            silent_since_ms: AtomicU64::new(0),
            stuck_after: STUCK_AFTER.max(4 * self.response_timeout),
        }
    }
}

/// The seed node URLs in a `redis-cluster://` (or `rediss-cluster://`) URL. Errors never quote
/// the URL: it may hold a password.
fn seed_urls(url: &str) -> Result<Vec<String>, String> {
    const USAGE: &str =
        "redis cluster url: expected redis-cluster://[user:password@]host:port[,host:port…]";
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("redis-cluster://") {
        ("redis", rest)
    } else if let Some(rest) = url.strip_prefix("rediss-cluster://") {
        ("rediss", rest)
    } else {
        return Err(USAGE.into());
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (credentials, hosts) = match rest.rsplit_once('@') {
        Some((credentials, hosts)) => (Some(credentials), hosts),
        None => (None, rest),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .map(|host| {
            let valid = !host.is_empty() && !host.contains(['/', '?', '#', '@']);
            valid
                .then(|| match credentials {
                    Some(credentials) => format!("{scheme}://{credentials}@{host}"),
                    None => format!("{scheme}://{host}"),
                })
                .ok_or_else(|| String::from(USAGE))
        })
        .collect::<Result<_, _>>()?;
    Ok(nodes)
}

impl fmt::Debug for RedisClusterStoreBuilder {
    /// Leaves out the nodes: their URLs may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisClusterStoreBuilder")
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("key_prefix", &String::from_utf8_lossy(&self.prefix))
            .field("key_layout", &self.layout)
            .field("read_from_replicas", &self.read_from_replicas)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RedisClusterStore {
    /// Leaves out the nodes and connection details: they may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisClusterStore")
            .field("response_timeout", &self.response_timeout)
            .field("key_prefix", &String::from_utf8_lossy(&self.prefix))
            .field("key_layout", &self.layout)
            .field("read_from_replicas", &self.read_from_replicas)
            .field("connections_replaced", &self.connections_replaced())
            .finish_non_exhaustive()
    }
}

impl Connections for RedisClusterStore {
    type Used = u64;

    fn key_arg(&self, cmd: &mut Cmd, key: &[u8]) {
        self.layout.key_arg(cmd, &self.prefix, key);
    }

    /// [`send`](RedisClusterStore::send), with every server error as a [`StoreError`].
    async fn request(&self, cmd: &Cmd) -> Result<(Value, u64), StoreError> {
        match self.send(cmd).await? {
            (Ok(Value::ServerError(err)), _) => Err(server_error(&err)),
            (Ok(reply), generation) => Ok((reply, generation)),
            (Err(err), _) => Err(store_error(&err, self.response_timeout)),
        }
    }

    fn replace(&self, used: u64) {
        RedisClusterStore::replace(self, used);
    }
}

/// `get_many` is one `MGET`, split by slot and reassembled in the caller's order by redis-rs
/// (see [`RedisClusterStore`]), read key by key when slots move under it; `delete_if` runs its
/// one-key script on the key's primary.
impl RemoteStore for RedisClusterStore {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Bytes>> {
        Box::pin(commands::get(self, key))
    }

    fn get_many<'a>(&'a self, keys: &'a [Vec<u8>]) -> StoreFuture<'a, Vec<Option<Bytes>>> {
        Box::pin(async move {
            match commands::get_many(self, keys).await {
                // redis-rs could not put a multi-slot `MGET` back together (a slot moved while
                // its part was in flight): each key alone follows its own redirect, all of them
                // within one more response timeout.
                Err(StoreError::Unavailable(message)) if message.contains("multi-slot") => {
                    let one_by_one = async {
                        let mut values = Vec::with_capacity(keys.len());
                        for key in keys {
                            values.push(commands::get(self, key).await?);
                        }
                        Ok(values)
                    };
                    tokio::time::timeout(self.response_timeout, one_by_one)
                        .await
                        .unwrap_or(Err(StoreError::Timeout(self.response_timeout)))
                }
                batch => batch,
            }
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move { commands::set(self, key, &value, ttl).await })
    }

    fn delete<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, ()> {
        Box::pin(commands::delete(self, key))
    }

    fn delete_if<'a>(&'a self, key: &'a [u8], value: &'a Bytes) -> StoreFuture<'a, ()> {
        Box::pin(commands::delete_if(self, key, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn cluster_urls_name_every_seed_with_the_shared_credentials() {
        assert_eq!(
            seed_urls("redis-cluster://127.0.0.1:7000,127.0.0.1:7001/").unwrap(),
            ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
        );
        assert_eq!(
            seed_urls("rediss-cluster://u:p@w@a:1,[::1]:2").unwrap(),
            ["rediss://u:p@w@a:1", "rediss://u:p@w@[::1]:2"]
        );
        for bad in [
            "redis://127.0.0.1:7000",
            "redis-cluster://",
            "redis-cluster://a:1,,b:2",
            "redis-cluster://a:1/0",
            "redis-cluster://a:1?x=y",
        ] {
            let err = seed_urls(bad).unwrap_err();
            assert!(err.starts_with("redis cluster url"), "{bad}: {err}");
        }
        assert!(
            !seed_urls("redis-cluster://user:hunter2@a:1/x")
                .unwrap_err()
                .contains("hunter2")
        );
    }

    #[test]
    fn bad_configuration_is_a_config_error() {
        runtime().block_on(async {
            for builder in [
                RedisClusterStore::builder(["not a url"]),
                RedisClusterStore::builder(Vec::<String>::new()),
                RedisClusterStore::builder(["redis+unix:///tmp/redis.sock"]),
                RedisClusterStore::builder(["redis://u:p@a:1", "redis://b:2"]),
                RedisClusterStore::builder(["redis://127.0.0.1:1"])
                    .response_timeout(Duration::ZERO),
                RedisClusterStore::builder_from_url("http://127.0.0.1:1"),
            ] {
                let built = builder.connect_lazy();
                assert!(matches!(built, Err(StoreError::Config(_))), "{built:?}");
            }
        });
    }

    #[test]
    fn nothing_listening_is_an_error_within_the_timeout() {
        runtime().block_on(async {
            let timeout = Duration::from_millis(200);
            let started = std::time::Instant::now();
            let err = RedisClusterStore::builder(["redis://127.0.0.1:1"])
                .connect_timeout(timeout)
                .connect()
                .await
                .unwrap_err();
            assert!(
                matches!(err, StoreError::Unavailable(_) | StoreError::Timeout(_)),
                "{err:?}"
            );
            assert!(started.elapsed() < timeout + Duration::from_secs(1));

            let lazy = RedisClusterStore::builder(["redis://127.0.0.1:1"])
                .response_timeout(timeout)
                .connect_lazy()
                .unwrap();
            let started = std::time::Instant::now();
            assert!(lazy.get(b"k").await.is_err());
            assert!(
                lazy.get_many(&[b"a".to_vec(), b"b".to_vec()])
                    .await
                    .is_err()
            );
            assert!(started.elapsed() < 2 * timeout + Duration::from_secs(1));
        });
    }

    /// A "node" that accepts connections and never answers: every call times out, and after
    /// `STUCK_AFTER` of nothing but timeouts the cluster connection is replaced.
    #[test]
    fn a_silent_connection_is_replaced() {
        runtime().block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            // Holds every accepted connection open, silently; ends with the runtime.
            tokio::spawn(async move {
                let mut open = Vec::new();
                while let Ok((stream, _)) = listener.accept().await {
                    open.push(stream);
                }
            });
            let timeout = Duration::from_millis(100);
            let store = RedisClusterStore::builder([format!("redis://{address}")])
                .response_timeout(timeout)
                .connect_timeout(timeout)
                .connect_lazy()
                .unwrap();
            let started = std::time::Instant::now();
            while started.elapsed() < STUCK_AFTER + Duration::from_millis(500) {
                let call = std::time::Instant::now();
                assert!(matches!(store.get(b"k").await, Err(StoreError::Timeout(_))));
                assert!(call.elapsed() < timeout + Duration::from_secs(1));
            }
            assert!(store.connections_replaced() >= 1, "{store:?}");
        });
    }

    #[test]
    fn public_types_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<RedisClusterStore>();
        send_sync::<RedisClusterStoreBuilder>();
    }

    #[test]
    fn debug_never_shows_the_nodes() {
        let builder = RedisClusterStore::builder_from_url("redis-cluster://user:hunter2@a:1");
        assert!(!format!("{builder:?}").contains("hunter2"));
        let builder = RedisClusterStore::builder(["redis://user:hunter2@a:1"]);
        assert!(!format!("{builder:?}").contains("hunter2"));
    }
}
