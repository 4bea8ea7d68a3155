//! thumbnail_service: camera thumbnails over HTTP, cached per (user, camera, event) with
//! scoped-cache, ownership checked against the database on every request.
//!
//! ```text
//! cargo run --release --example thumbnail_service
//! cargo run --release --example thumbnail_service -- --listen 0.0.0.0:8080
//! cargo run --release --features redis --example thumbnail_service -- --redis redis://127.0.0.1:6379
//! cargo run --release --features redis-cluster --example thumbnail_service -- --redis redis-cluster://127.0.0.1:7000,127.0.0.1:7001
//! ```
//!
//! `GET /users/{user}/cameras/{camera}/events/{event}/thumbnail` with the caller's user id in
//! `x-user-id` (set by an authenticating gateway in a real deployment): 401 without it, 403 for
//! another user's path or a camera the user does not own, else the `image/jpeg`. When the origin
//! fails or is too slow, a thumbnail cached before is served stale for up to an hour past its
//! TTL, with its `Age` header and `Cache-Control: private, no-cache`; without one, and when the
//! database fails, the answer is 503. A cache store that fails or lies never makes a
//! request fail: its answer is verified, and a refused or missing value is loaded again.
//!
//! `POST /cameras/{camera}/transfer` by the camera's owner (`x-user-id`), the new owner's id
//! as the body: 204 once the database says so and every instance has dropped the old owner's
//! ownership entry and thumbnails of the camera. Ownership is cached under
//! `Policy::Coherent` with an invalidation bus: in-process with the in-process store, Redis
//! pub/sub with `--redis redis://…`. With a cluster or Sentinel URL there is no bus, and
//! ownership is not cached (`Policy::Bypass`).
//!
//! The key ring's secret comes from `THUMBNAIL_SERVICE_SECRET` (at least 32 bytes, the same on
//! every instance); without it a random one is made at start, so values cached by earlier runs
//! or other instances are refused (and reloaded), never served.

mod app;

use app::{App, Config, THUMBNAIL_ROUTE, TRANSFER_ROUTE, USER_HEADER};
use clap::Parser;
use rand::TryRng;
use scoped_cache::bus::BusTransport;
use scoped_cache::store::RemoteStore;
use scoped_cache::{KeyId, KeyRing, MemoryBus, MemoryStore};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

/// Where the key ring's secret comes from, when set.
const SECRET_VAR: &str = "THUMBNAIL_SERVICE_SECRET";

/// Camera thumbnails over HTTP, cached per (user, camera, event) with scoped-cache.
#[derive(Parser)]
#[command(
    name = "thumbnail_service",
    after_help = format!(
        "env: {SECRET_VAR}  key-ring secret, >= 32 bytes, the same on every instance \
         [default: a random one per start]"
    )
)]
struct Flags {
    /// Address to serve on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Keep thumbnails in Redis/Valkey: redis://host:port or redis+unix:///path (needs a build
    /// with --features redis), redis-cluster://host:port,… (--features redis-cluster),
    /// redis+sentinel://host:port,…/service (--features redis-sentinel) [default: the
    /// in-process store]
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
}

/// The key ring: from `THUMBNAIL_SERVICE_SECRET`, or a random secret for this process only.
fn key_ring() -> Result<KeyRing, String> {
    let secret = match std::env::var_os(SECRET_VAR) {
        Some(secret) => {
            eprintln!("key ring: secret from {SECRET_VAR}");
            secret.into_encoded_bytes()
        }
        None => {
            let mut secret = vec![0; 32];
            rand::rngs::SysRng
                .try_fill_bytes(&mut secret)
                .map_err(|error| format!("cannot read OS randomness for a secret: {error}"))?;
            eprintln!(
                "key ring: {SECRET_VAR} is not set; using a random secret for this process only \
                 (values cached by other runs or instances will be refused and reloaded)"
            );
            secret
        }
    };
    KeyRing::new(KeyId(1), &secret).map_err(|error| format!("{SECRET_VAR}: {error}"))
}

#[cfg(feature = "redis")]
async fn redis_store(url: &str) -> Result<Arc<dyn RemoteStore>, String> {
    // Room for other services in the same database.
    const PREFIX: &str = "thumbnail_service:";
    let store: Result<Arc<dyn RemoteStore>, String> = if url.starts_with("redis-cluster://")
        || url.starts_with("rediss-cluster://")
    {
        #[cfg(feature = "redis-cluster")]
        let store = scoped_cache::store::RedisClusterStore::builder_from_url(url)
            .key_prefix(PREFIX)
            .connect()
            .await
            .map(|store| Arc::new(store) as Arc<dyn RemoteStore>)
            .map_err(|error| error.to_string());
        #[cfg(not(feature = "redis-cluster"))]
        let store =
            Err("this build has no Redis Cluster support; add --features redis-cluster".into());
        store
    } else if url.starts_with("redis+sentinel://") {
        #[cfg(feature = "redis-sentinel")]
        let store = scoped_cache::store::RedisSentinelStore::builder_from_url(url)
            .key_prefix(PREFIX)
            .connect()
            .await
            .map(|store| Arc::new(store) as Arc<dyn RemoteStore>)
            .map_err(|error| error.to_string());
        #[cfg(not(feature = "redis-sentinel"))]
        let store = Err("this build has no Sentinel support; add --features redis-sentinel".into());
        store
    } else {
        scoped_cache::RedisStore::builder(url)
            .key_prefix(PREFIX)
            .connect()
            .await
            .map(|store| Arc::new(store) as Arc<dyn RemoteStore>)
            .map_err(|error| error.to_string())
    };
    store.map_err(|error| format!("cannot connect to {url}: {error}"))
}

/// The bus the instances on `url` share: Redis pub/sub on a standalone server; none for a
/// cluster or Sentinel.
#[cfg(feature = "redis")]
fn redis_bus(url: &str) -> Result<Option<Arc<dyn BusTransport>>, String> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.contains("+unix")) {
        return Ok(None);
    }
    let bus = scoped_cache::bus::RedisBus::builder(url)
        .channel("thumbnail_service:bus")
        .build()
        .map_err(|error| format!("the bus on {url}: {error}"))?;
    Ok(Some(Arc::new(bus)))
}

#[cfg(not(feature = "redis"))]
fn redis_bus(_url: &str) -> Result<Option<Arc<dyn BusTransport>>, String> {
    Ok(None)
}

#[cfg(not(feature = "redis"))]
async fn redis_store(url: &str) -> Result<Arc<dyn RemoteStore>, String> {
    let feature = if url.starts_with("redis-cluster://") || url.starts_with("rediss-cluster://") {
        "redis-cluster"
    } else if url.starts_with("redis+sentinel://") {
        "redis-sentinel"
    } else {
        "redis"
    };
    Err(format!(
        "--redis {url}: this build has no Redis support; rebuild with --features {feature}:\n  \
         cargo run --release --features {feature} --example thumbnail_service -- --redis {url}"
    ))
}

/// Resolves on Ctrl-C, or on SIGTERM (how container runtimes stop a service).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            eprintln!("cannot listen for Ctrl-C ({error}); stop with SIGTERM");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    eprintln!("shutting down: finishing requests in flight");
}

async fn run(flags: Flags) -> Result<(), String> {
    let (store, bus): (Arc<dyn RemoteStore>, Option<Arc<dyn BusTransport>>) = match &flags.redis {
        Some(url) => (redis_store(url).await?, redis_bus(url)?),
        None => (
            Arc::new(MemoryStore::default()),
            Some(Arc::new(MemoryBus::new())),
        ),
    };
    let key_ring = key_ring()?;
    let store_name = flags.redis.as_deref().unwrap_or("in-process MemoryStore");
    let ownership = match &bus {
        Some(_) => "cached, coherent over the bus",
        None => "not cached: no bus",
    };
    let config = Config {
        bus,
        ..Config::new(store, key_ring)
    };
    let app = App::new(config).map_err(|error| error.to_string())?;
    let listener = tokio::net::TcpListener::bind(flags.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", flags.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|error| format!("cannot read the listening address: {error}"))?;

    let url = |user: &str, camera: &str| {
        let path = THUMBNAIL_ROUTE
            .replace("{user}", user)
            .replace("{camera}", camera)
            .replace("{event}", "42");
        format!("http://{addr}{path}")
    };
    println!(
        "thumbnail_service on http://{addr}, thumbnails cached in {store_name}; ownership {ownership}"
    );
    println!("users: alice owns cam-1 and cam-2, bob owns cam-3. Try:");
    let examples = [
        ("alice", "alice", "cam-1", "200, alice's thumbnail"),
        ("alice", "alice", "cam-3", "403, bob's camera"),
        ("bob", "alice", "cam-1", "403, alice's path"),
    ];
    for (caller, user, camera, outcome) in examples {
        println!("  # {outcome}");
        println!(
            "  curl -i -H '{USER_HEADER}: {caller}' {}",
            url(user, camera)
        );
    }
    println!("  # 401, no user\n  curl -i {}", url("alice", "cam-1"));
    let transfer = TRANSFER_ROUTE.replace("{camera}", "cam-1");
    println!(
        "  # 204, cam-1 is bob's from now on, on every instance\n  curl -i -X POST -H '{USER_HEADER}: alice' -d bob http://{addr}{transfer}\n"
    );

    axum::serve(listener, app.router())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|error| format!("server failed: {error}"))?;

    let (thumbs, owners) = (app.thumbnail_stats(), app.ownership_stats());
    println!(
        "thumbnails: {} hits in-process, {} from the store, {} loads, {} refused values, {} store errors",
        thumbs.hits_local,
        thumbs.hits_remote,
        thumbs.loads,
        thumbs.violations.total(),
        thumbs.remote_errors
    );
    println!(
        "ownership checks: {} from the database, {} cached",
        owners.loads,
        owners.hits_local + owners.hits_remote
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    // Bad flags exit with status 2 and a message, `--help` with 0.
    match run(Flags::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("thumbnail_service: {error}");
            ExitCode::FAILURE
        }
    }
}
