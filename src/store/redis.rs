//! `RedisStore`: Redis (or Valkey) as the shared tier. The only code in the crate that touches
//! sockets.

use crate::envelope::MAGIC;
use crate::store::commands::{self, Connections};
use crate::store::{RemoteStore, StoreError, StoreFuture};
use crate::sync::{Mutex, lock};
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, ErrorKind, RedisError, Value};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Where the key length sits in an envelope's header (see `docs/ENVELOPE.md`): after magic(4),
/// version(1), flags(1), schema(2), key_id(4), created_ms(8), expires_ms(8).
const ENVELOPE_KEY_LEN_AT: usize = 28;
/// Where the embedded key starts in an envelope.
const ENVELOPE_KEY_AT: usize = ENVELOPE_KEY_LEN_AT + 4;

/// Redis (or Valkey) as the shared tier: `GET`, `SET … PX`, `DEL`, and one `MGET` per
/// [`get_many`](RemoteStore::get_many), over redis-rs multiplexed connections that reconnect by
/// themselves.
///
/// Every call is bounded by the response timeout (reconnection included): a slow or absent
/// server makes a call fail with [`StoreError::Timeout`] or [`StoreError::Unavailable`], which
/// [`Cache::get`](crate::Cache::get) turns into a counted miss (`remote_errors`). Nothing
/// panics on a reply; a reply of the wrong shape is a [`StoreError::Protocol`].
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use scoped_cache::{Client, KeyId, KeyRing, RedisStore};
/// use std::time::Duration;
///
/// let store = RedisStore::builder("redis://cache-user:secret@127.0.0.1:6379/0")
///     .response_timeout(Duration::from_millis(200))
///     .key_prefix("thumbs-service:")
///     .connect()
///     .await?;
/// let client = Client::builder()
///     .key_ring(KeyRing::new(KeyId(1), &[42; 32])?)
///     .remote(store)
///     .build()?;
/// # let _ = client; Ok(()) }
/// ```
///
/// # What it trusts, and what it does not
///
/// Nothing it returns is trusted: [`Cache`](crate::Cache) opens every value it reads as an
/// [`Envelope`](crate::envelope::Envelope) *for the key it asked for* — each element of a batch
/// too, matched by position and then verified by content — so a server, proxy or connection
/// that hands back another key's bytes causes a counted violation and a miss, never a leak.
///
/// # Why a cancelled or timed-out request cannot take another request's reply
///
/// Redis replies carry no request id; a client must match them to requests by order. redis-rs
/// does this in one place, the task that owns each multiplexed connection
/// (`redis/src/aio/multiplexed_connection.rs` in redis-rs 1.8, `PipelineSink`): `start_send`
/// writes a request and pushes its reply channel onto the back of an `in_flight` queue, and
/// `send_result` pops the *front* of that queue for every reply read, so the n-th reply always
/// goes to the n-th request written. A caller that times out or is dropped only drops the
/// receiving end of its channel; its queue entry stays, its reply is read and discarded into
/// the closed channel (`_ = output.send(result)`), and the next reply still goes to the next
/// request. A request whose caller is already gone before it is written is not written at all.
/// Callers never read the socket themselves, so no caller can leave a reply unread for the
/// next one — the redis-py #2624 failure. A read or parse error closes the connection
/// (`is_unrecoverable_error`) and fails every request in flight on it; the
/// [`ConnectionManager`] then opens a new one.
///
/// Should that matching ever break anyway (a proxy that shifts or swaps replies, a bug), two
/// more layers hold: `Cache` refuses any value that is not sealed for the requested key, and
/// this store treats a reply of the wrong type (a status where a value was due, a batch of
/// the wrong length), a value sealed for another key than the one requested, or a reply that
/// did not come within the response timeout as a sign the connection is out of step, and
/// replaces that connection (counted in
/// [`RedisStore::connections_replaced`]) so the fault does not outlive its cause. The value
/// itself is still handed to `Cache`, which counts and reports the violation.
///
/// # Degraded mode
///
/// While the server is down, calls fail within the response timeout (immediately when the
/// socket refuses) and the connection manager retries in the background with a short
/// exponential back-off; the first call after the server is back uses the new connection.
///
/// # Panics
///
/// Its calls are bounded with Tokio's timer, and redis-rs drives each connection on a Tokio
/// task: calling the store must happen inside a Tokio runtime with the time driver enabled (as
/// `#[tokio::main]` provides). Building it outside a runtime is refused with
/// [`StoreError::Config`], not a panic.
pub struct RedisStore {
    slots: Box<[Slot]>,
    next: AtomicUsize,
    prefix: Box<[u8]>,
    response_timeout: Duration,
    client: redis::Client,
    manager_config: ConnectionManagerConfig,
    replaced: AtomicU64,
}

/// One multiplexed connection and the generation it belongs to, so that several callers that
/// detect the same broken connection replace it once.
struct Slot {
    current: Mutex<Connection>,
}

#[derive(Clone)]
struct Connection {
    generation: u64,
    manager: ConnectionManager,
}

/// Configures a [`RedisStore`]; from [`RedisStore::builder`].
#[must_use]
pub struct RedisStoreBuilder {
    url: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    prefix: Vec<u8>,
    connections: usize,
}

impl RedisStore {
    /// How long [`RedisStoreBuilder::connect`] waits for the server by default.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    /// How long one store call may take by default, reconnection included.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

    /// Connects to `url` with the default settings (see [`RedisStore::builder`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), scoped_cache::store::StoreError> {
    /// use scoped_cache::RedisStore;
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// assert_eq!(store.connections_replaced(), 0);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`RedisStoreBuilder::connect`].
    ///
    /// # Cancel safety
    ///
    /// As [`RedisStoreBuilder::connect`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder(url).connect().await
    }

    /// A builder for a store at `url`.
    ///
    /// The URL selects transport, credentials and database: `redis://[user:password@]host[:port][/db]`,
    /// `rediss://…` for TLS (with the `redis-tls` feature), and
    /// `redis+unix:///path/to/socket?db=N&user=U&pass=P` for a unix socket. Defaults: connect
    /// timeout [`RedisStore::DEFAULT_CONNECT_TIMEOUT`], response timeout [`RedisStore::DEFAULT_RESPONSE_TIMEOUT`], no key
    /// prefix, two multiplexed connections.
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            prefix: Vec::new(),
            connections: 2,
        }
    }

    /// How many times a connection was replaced because it answered out of step (a reply of the
    /// wrong type, a value sealed for another key than the one requested, or no reply within
    /// the response timeout).
    pub fn connections_replaced(&self) -> u64 {
        self.replaced.load(Ordering::Relaxed)
    }

    /// The next connection, round robin.
    fn pick(&self) -> (usize, Connection) {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        (index, lock(&self.slots[index].current).clone())
    }

    /// Sends `cmd` on the next connection, bounded by the response timeout.
    async fn send(&self, cmd: &Cmd) -> Result<(Value, Used), StoreError> {
        let (
            slot,
            Connection {
                generation,
                mut manager,
            },
        ) = self.pick();
        let used = Used { slot, generation };
        let reply = tokio::time::timeout(self.response_timeout, manager.send_packed_command(cmd))
            .await
            .map_err(|_| {
                // A reply that did not come in time may never come (a lost reply leaves every
                // later request on this connection waiting for the next one's): do not trust
                // the connection with another request.
                self.replace(used);
                StoreError::Timeout(self.response_timeout)
            })?
            .map_err(|err| store_error(&err, self.response_timeout))?;
        match reply {
            Value::ServerError(err) => Err(server_error(&err)),
            reply => Ok((reply, used)),
        }
    }

    /// Replaces the connection `used` came from, unless another caller already did.
    fn replace(&self, used: Used) {
        let mut current = lock(&self.slots[used.slot].current);
        if current.generation != used.generation {
            return;
        }
        // Lazy: the new connection is opened by the next call on it, within that call's timeout.
        if let Ok(manager) = ConnectionManager::new_lazy_with_config(
            self.client.clone(),
            self.manager_config.clone(),
        ) {
            *current = Connection {
                generation: used.generation.wrapping_add(1),
                manager,
            };
            self.replaced.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Which connection (and generation of it) a request used.
#[derive(Clone, Copy)]
pub(crate) struct Used {
    slot: usize,
    generation: u64,
}

impl RedisStoreBuilder {
    /// How long [`connect`](Self::connect) waits for every connection to answer, and how long
    /// each later connection attempt may take (default [`RedisStore::DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The longest any store call may take, waiting for a reconnection included (default
    /// [`RedisStore::DEFAULT_RESPONSE_TIMEOUT`]). A call that takes longer fails with
    /// [`StoreError::Timeout`]; its reply, if it comes, is discarded.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Prepended to every key, e.g. to share a database between services (default: none).
    pub fn key_prefix(mut self, prefix: impl AsRef<[u8]>) -> Self {
        self.prefix = prefix.as_ref().to_vec();
        self
    }

    /// How many multiplexed connections to spread calls over, round robin (default 2).
    ///
    /// Each connection pipelines all the calls sent on it, and is driven by one task. With one,
    /// that task is the bottleneck at 64+ concurrent calls: on `benches/redis.rs` (two cores,
    /// 64 and 256 tasks), verified reads reach 0.79–0.82× the throughput of raw redis-rs `GET`s
    /// on one connection with one, 0.89–0.93× with two. More may help on machines with more
    /// cores.
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = connections;
        self
    }

    /// Creates the store without contacting the server: the first call on each connection opens
    /// it (within that call's response timeout). For services that must start while Redis is
    /// down.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use scoped_cache::RedisStore;
    /// use scoped_cache::store::StoreError;
    /// // No server needed: nothing is contacted yet.
    /// let store = RedisStore::builder("redis://cache-user:secret@127.0.0.1:6379/0").connect_lazy()?;
    /// assert!(!format!("{store:?}").contains("secret")); // the URL is never printed
    ///
    /// let bad = RedisStore::builder("http://127.0.0.1").connect_lazy();
    /// assert!(matches!(bad, Err(StoreError::Config(_))));
    /// # Ok::<(), StoreError>(()) }).unwrap();
    /// ```
    ///
    /// Outside a Tokio runtime it is refused, not a panic:
    ///
    /// ```
    /// use scoped_cache::RedisStore;
    /// use scoped_cache::store::StoreError;
    /// let outside = RedisStore::builder("redis://127.0.0.1:6379").connect_lazy();
    /// assert!(matches!(outside, Err(StoreError::Config(message)) if message.contains("Tokio runtime")));
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] for an invalid URL (or `rediss://` without TLS support), a zero
    /// timeout, zero connections, or when called outside a Tokio runtime (redis-rs spawns a task
    /// per connection here). Calls on the store then need that runtime's time and I/O drivers
    /// (see [`RedisStore`]'s `# Panics`).
    pub fn connect_lazy(self) -> Result<RedisStore, StoreError> {
        #[cfg(feature = "redis-tls")]
        if self.url.starts_with("rediss:") || self.url.starts_with("valkeys:") {
            // redis-rs builds its TLS config from the process-wide rustls provider; install ring
            // unless the application installed one, so that building it cannot panic.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = redis::Client::open(self.url.as_str())
            .map_err(|err| StoreError::Config(format!("redis url: {err}")))?;
        self.connect_lazy_to(client)
    }

    /// A copy of these settings (the Sentinel store builds a store per primary from one).
    #[cfg(feature = "redis-sentinel")]
    pub(crate) fn clone_settings(&self) -> Self {
        Self {
            url: self.url.clone(),
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            prefix: self.prefix.clone(),
            connections: self.connections,
        }
    }

    /// [`connect_lazy`](Self::connect_lazy) to the server `client` names instead of the URL's
    /// (the Sentinel store's current primary).
    pub(crate) fn connect_lazy_to(self, client: redis::Client) -> Result<RedisStore, StoreError> {
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
        // redis-rs spawns each connection's task on the current runtime, and panics without one.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::Config(
                "connect_lazy must be called inside a Tokio runtime (redis-rs spawns a task per \
                 connection): call it from async code or within Runtime::enter"
                    .into(),
            ));
        }
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            // No timer of redis-rs's own: every call is bounded by `request`'s timeout, which
            // also covers waiting for a reconnection; one timer per call instead of two.
            .set_response_timeout(None)
            // Short back-off: a few quick attempts, then the next call starts another round.
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let slots = (0..self.connections)
            .map(|_| {
                let manager =
                    ConnectionManager::new_lazy_with_config(client.clone(), manager_config.clone())
                        .map_err(|err| store_error(&err, self.response_timeout))?;
                Ok(Slot {
                    current: Mutex::new(Connection {
                        generation: 0,
                        manager,
                    }),
                })
            })
            .collect::<Result<Box<[Slot]>, StoreError>>()?;
        Ok(RedisStore {
            slots,
            next: AtomicUsize::new(0),
            prefix: self.prefix.into_boxed_slice(),
            response_timeout: self.response_timeout,
            client,
            manager_config,
            replaced: AtomicU64::new(0),
        })
    }

    /// Creates the store and checks that every connection answers `PING` within the connect
    /// timeout.
    ///
    /// # Errors
    ///
    /// As [`connect_lazy`](Self::connect_lazy); [`StoreError::Timeout`] or
    /// [`StoreError::Unavailable`] when the server cannot be reached in time,
    /// [`StoreError::Server`] when it refuses (e.g. wrong credentials or database).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future drops the half-built store and its connections.
    pub async fn connect(self) -> Result<RedisStore, StoreError> {
        let connect_timeout = self.connect_timeout;
        let store = self.connect_lazy()?;
        let ping = async {
            for slot in &*store.slots {
                let mut manager = lock(&slot.current).manager.clone();
                match manager.send_packed_command(&redis::cmd("PING")).await {
                    Ok(Value::ServerError(err)) => return Err(server_error(&err)),
                    Ok(_) => {}
                    Err(err) => return Err(store_error(&err, connect_timeout)),
                }
            }
            Ok(())
        };
        tokio::time::timeout(connect_timeout, ping)
            .await
            .map_err(|_| StoreError::Timeout(connect_timeout))??;
        Ok(store)
    }
}

impl fmt::Debug for RedisStoreBuilder {
    /// Leaves out the URL: it may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("key_prefix", &String::from_utf8_lossy(&self.prefix))
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RedisStore {
    /// Leaves out the URL and connection details: they may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("connections", &self.slots.len())
            .field("response_timeout", &self.response_timeout)
            .field("key_prefix", &String::from_utf8_lossy(&self.prefix))
            .field("connections_replaced", &self.connections_replaced())
            .finish_non_exhaustive()
    }
}

impl Connections for RedisStore {
    type Used = Used;

    fn key_arg(&self, cmd: &mut Cmd, key: &[u8]) {
        prefixed_key_arg(cmd, &self.prefix, key);
    }

    fn request(&self, cmd: &Cmd) -> impl Future<Output = Result<(Value, Used), StoreError>> + Send {
        self.send(cmd)
    }

    fn replace(&self, used: Used) {
        RedisStore::replace(self, used);
    }
}

impl RemoteStore for RedisStore {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Bytes>> {
        Box::pin(commands::get(self, key))
    }

    fn get_many<'a>(&'a self, keys: &'a [Vec<u8>]) -> StoreFuture<'a, Vec<Option<Bytes>>> {
        Box::pin(commands::get_many(self, keys))
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

/// A server's error reply as the server wrote it: its code (`NOPERM`, `OOM`, …), then the detail.
pub(crate) fn server_error(err: &redis::ServerError) -> StoreError {
    StoreError::Server(match err.details() {
        Some(detail) => format!("{} {detail}", err.code()),
        None => err.code().to_owned(),
    })
}

/// Appends `prefix` then `key` to `cmd` as one argument, without an intermediate buffer (shared
/// with the cluster and Sentinel stores).
pub(crate) fn prefixed_key_arg(cmd: &mut Cmd, prefix: &[u8], key: &[u8]) {
    use redis::RedisWrite as _;
    use std::io::Write as _;
    let mut arg = cmd.writer_for_next_arg();
    // Writing to the command's own buffer cannot fail.
    let _ = arg.write_all(prefix);
    let _ = arg.write_all(key);
}

/// The key an envelope *claims* to be sealed for, if `value` starts like one (not
/// authenticated: only a hint that a connection is out of step; `Cache` does the real check).
pub(crate) fn claimed_key(value: &[u8]) -> Option<&[u8]> {
    if !value.starts_with(&MAGIC) {
        return None;
    }
    let len_bytes = value.get(ENVELOPE_KEY_LEN_AT..ENVELOPE_KEY_AT)?;
    let len = u32::from_be_bytes(len_bytes.try_into().ok()?);
    let end = ENVELOPE_KEY_AT.checked_add(usize::try_from(len).ok()?)?;
    value.get(ENVELOPE_KEY_AT..end)
}

/// Maps a redis-rs error to a [`StoreError`] (`timeout` is the limit that was exceeded).
pub(crate) fn store_error(err: &RedisError, timeout: Duration) -> StoreError {
    if err.is_timeout() {
        return StoreError::Timeout(timeout);
    }
    match err.kind() {
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType | ErrorKind::RESP3NotSupported => {
            StoreError::Protocol(err.to_string())
        }
        ErrorKind::InvalidClientConfig => StoreError::Config(err.to_string()),
        ErrorKind::Server(_) | ErrorKind::Extension => match (err.code(), err.detail()) {
            (Some(code), Some(detail)) => StoreError::Server(format!("{code} {detail}")),
            _ => StoreError::Server(err.to_string()),
        },
        ErrorKind::AuthenticationFailed => StoreError::Server(err.to_string()),
        _ => StoreError::Unavailable(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Envelope;
    use crate::{DeviceId, Key, KeyId, KeyRing, Namespace, RawBytes, TenantId};

    struct Thumbs;
    impl Namespace for Thumbs {
        const NAME: &'static str = "thumb";
        const SCHEMA: u16 = 1;
        type Item = u64;
        type Value = Bytes;
        type Codec = RawBytes;
    }

    #[test]
    fn claimed_key_reads_the_key_a_sealed_envelope_embeds() {
        let ring = KeyRing::new(KeyId(1), &[7; 32]).unwrap();
        let key = Key::<Thumbs>::new(TenantId::from_u64(1), DeviceId::from_u64(2), 3);
        let sealed = Envelope::default()
            .seal(&key, b"jpeg", 0, 1_000, &ring)
            .unwrap();
        assert_eq!(claimed_key(&sealed), Some(&key.encode()[..]));
        assert_eq!(claimed_key(b"plain text"), None);
        assert_eq!(claimed_key(&sealed[..ENVELOPE_KEY_AT + 2]), None);
        assert_eq!(claimed_key(&MAGIC), None);
    }

    #[test]
    fn bad_configuration_is_a_config_error() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            for builder in [
                RedisStore::builder("not a url"),
                RedisStore::builder("redis://127.0.0.1").connections(0),
                RedisStore::builder("redis://127.0.0.1").response_timeout(Duration::ZERO),
            ] {
                assert!(matches!(builder.connect_lazy(), Err(StoreError::Config(_))));
            }
        });
    }

    #[test]
    fn tls_urls_need_the_tls_feature() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let store = RedisStore::builder("rediss://127.0.0.1:1").connect_lazy();
            if cfg!(feature = "redis-tls") {
                let store = store.unwrap();
                // Nothing listens there: a typed error, within the timeout, no panic.
                assert!(store.get(b"k").await.is_err());
            } else {
                assert!(matches!(store, Err(StoreError::Config(_))));
            }
        });
    }

    #[test]
    fn debug_never_shows_the_url() {
        let builder = RedisStore::builder("redis://user:hunter2@127.0.0.1");
        assert!(!format!("{builder:?}").contains("hunter2"));
    }
}
