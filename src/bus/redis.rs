//! `RedisBus`: the bus over Redis pub/sub.

use super::{BusReceiver, BusTransport};
use crate::store::redis::store_error;
use crate::store::{StoreError, StoreFuture};
use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubStream};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A [`BusTransport`] over Redis (or Valkey) pub/sub: every client built with a `RedisBus` on
/// the same server and channel hears every other.
///
/// Each client holds one subscriber connection (a task on the runtime the client was built in)
/// and publishes over a connection of its own. When the subscriber connection drops (a
/// restart, `CLIENT KILL TYPE pubsub`, a network cut) the client is told at once and its
/// coherent caches stop serving in-process entries; the task resubscribes with a back-off
/// (100 ms to 2 s), and serving resumes when the client hears its own next heartbeat. A failure
/// nobody reports (a half-open connection) is caught by the heartbeat lease: the client
/// publishes a heartbeat every [`heartbeat`](RedisBusBuilder::heartbeat) (default 100 ms) and
/// serves in-process entries only within three intervals of hearing its own.
///
/// Redis Cluster forwards `PUBLISH` to every node, so the URL of any one node works for a
/// cluster (the subscription follows that node, not the cluster). Give each service, or each
/// key ring, its own [`channel`](RedisBusBuilder::channel): a message sealed under another
/// ring is refused and counted as forged.
///
/// Why pub/sub and not RESP3 client tracking: tracking reports writes to keys, while
/// owner-wide invalidations name a tenant or a device, not keys; its messages come from the
/// server and cannot be authenticated under the key ring; and managed offerings and proxies
/// often disable it. Pub/sub carries the client's own sealed messages, the same on every
/// server since Redis 2.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use scoped_cache::bus::RedisBus;
/// use scoped_cache::{Client, KeyId, KeyRing, RedisStore};
///
/// let url = "redis://127.0.0.1:6379";
/// let client = Client::builder()
///     .key_ring(KeyRing::new(KeyId(1), &[42; 32])?)
///     .remote(RedisStore::connect(url).await?)
///     .bus(RedisBus::builder(url).channel("thumbs-service:bus").build()?)
///     .build()?;
/// # let _ = client; Ok(()) }
/// ```
pub struct RedisBus {
    client: redis::Client,
    channel: Arc<str>,
    response_timeout: Duration,
    heartbeat: Duration,
    publisher: tokio::sync::OnceCell<ConnectionManager>,
}

/// Configures a [`RedisBus`]; from [`RedisBus::builder`].
#[must_use]
pub struct RedisBusBuilder {
    url: String,
    channel: String,
    response_timeout: Duration,
    heartbeat: Duration,
}

/// The shortest and longest wait before resubscribing after a failure.
const RESUBSCRIBE_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(2));

impl RedisBus {
    /// The channel a bus uses unless told otherwise.
    pub const DEFAULT_CHANNEL: &'static str = "scoped-cache:bus";
    /// How long a publish or a subscribe may take by default, connecting included.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);
    /// How often a client publishes a heartbeat to itself by default.
    pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(100);

    /// A builder for a bus on the server at `url` (`redis://`, `rediss://` with feature
    /// `redis-tls`, `redis+unix://`).
    pub fn builder(url: &str) -> RedisBusBuilder {
        RedisBusBuilder {
            url: url.to_owned(),
            channel: Self::DEFAULT_CHANNEL.to_owned(),
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            heartbeat: Self::DEFAULT_HEARTBEAT,
        }
    }

    async fn publisher(&self) -> Result<ConnectionManager, StoreError> {
        let connect = || {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.response_timeout))
                .set_response_timeout(Some(self.response_timeout))
                .set_number_of_retries(1);
            ConnectionManager::new_with_config(self.client.clone(), config)
        };
        let manager = self.publisher.get_or_try_init(connect).await;
        manager
            .cloned()
            .map_err(|err| store_error(&err, self.response_timeout))
    }
}

impl RedisBusBuilder {
    /// The pub/sub channel (default [`RedisBus::DEFAULT_CHANNEL`]).
    pub fn channel(mut self, channel: &str) -> Self {
        channel.clone_into(&mut self.channel);
        self
    }

    /// How long a publish or a subscribe may take, connecting included (default 500 ms).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How often a client publishes a heartbeat to itself (default 100 ms). A client serves
    /// coherent in-process entries only within three intervals of hearing its own last one,
    /// so this bounds how long an unnoticed failure of the subscription can last.
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// The bus. It connects when a client subscribes and when it first publishes.
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] for an invalid URL (or `rediss://` without TLS support), an empty
    /// channel, or a zero timeout or heartbeat.
    pub fn build(self) -> Result<RedisBus, StoreError> {
        if self.channel.is_empty() {
            return Err(StoreError::Config("the bus channel is empty".into()));
        }
        if self.response_timeout.is_zero() || self.heartbeat.is_zero() {
            return Err(StoreError::Config(
                "the bus's timeout and heartbeat must be greater than zero".into(),
            ));
        }
        #[cfg(feature = "redis-tls")]
        if self.url.starts_with("rediss:") || self.url.starts_with("valkeys:") {
            // As for `RedisStore`: install ring unless the application installed a provider.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = redis::Client::open(self.url.as_str())
            .map_err(|err| StoreError::Config(format!("redis url: {err}")))?;
        Ok(RedisBus {
            client,
            channel: self.channel.into(),
            response_timeout: self.response_timeout,
            heartbeat: self.heartbeat,
            publisher: tokio::sync::OnceCell::new(),
        })
    }
}

impl BusTransport for RedisBus {
    fn publish(&self, message: Bytes) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut connection = self.publisher().await?;
            let mut command = redis::cmd("PUBLISH");
            command.arg(&*self.channel).arg(&message[..]);
            let publish = command.query_async::<i64>(&mut connection);
            match tokio::time::timeout(self.response_timeout, publish).await {
                Ok(Ok(_receivers)) => Ok(()),
                Ok(Err(err)) => Err(store_error(&err, self.response_timeout)),
                Err(_) => Err(StoreError::Timeout(self.response_timeout)),
            }
        })
    }

    fn subscribe(&self, receiver: Arc<dyn BusReceiver>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Never listening: coherent caches read through to the store.
            receiver.disconnected();
            return;
        };
        let listener = Listener {
            client: self.client.clone(),
            channel: Arc::clone(&self.channel),
            timeout: self.response_timeout,
            check_closed_every: self.heartbeat,
        };
        runtime.spawn(listener.run(receiver));
    }

    fn heartbeat(&self) -> Option<Duration> {
        Some(self.heartbeat)
    }
}

/// The subscriber task of one client.
struct Listener {
    client: redis::Client,
    channel: Arc<str>,
    timeout: Duration,
    check_closed_every: Duration,
}

impl Listener {
    async fn run(self, receiver: Arc<dyn BusReceiver>) {
        let (shortest, longest) = RESUBSCRIBE_BACKOFF;
        let mut backoff = shortest;
        while !receiver.is_closed() {
            if let Some(stream) = self.subscribe().await {
                backoff = shortest;
                receiver.connected();
                self.deliver(stream, &*receiver).await;
                receiver.disconnected();
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(longest);
        }
    }

    /// A confirmed subscription: messages published from now on reach the stream.
    async fn subscribe(&self) -> Option<PubSubStream> {
        let subscribe = async {
            let mut pubsub = self.client.get_async_pubsub().await?;
            pubsub.subscribe(&*self.channel).await?;
            Ok::<_, redis::RedisError>(pubsub.into_on_message())
        };
        tokio::time::timeout(self.timeout, subscribe)
            .await
            .ok()?
            .ok()
    }

    /// Hands every message to `receiver` until the connection ends or the client is gone.
    async fn deliver(&self, mut stream: PubSubStream, receiver: &dyn BusReceiver) {
        loop {
            match tokio::time::timeout(self.check_closed_every, stream.next()).await {
                Ok(Some(message)) => receiver.message(message.get_payload_bytes()),
                Ok(None) => return,
                Err(_) if receiver.is_closed() => return,
                Err(_) => {}
            }
        }
    }
}

impl fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBus")
            .field("channel", &self.channel)
            .field("response_timeout", &self.response_timeout)
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}
