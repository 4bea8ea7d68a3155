//! `RedisStore` behind a hostile proxy: a unix-socket relay between the client and a real
//! `redis-server` that, per phase, delays replies past the timeout, cuts connections in the
//! middle of a reply, or delivers one client connection's replies to another. Zero wrong
//! values throughout; refused values counted; the client recovers once the fault stops.

mod support;

use scoped_cache::{Cache, RedisStore, ViolationKind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::RedisServer;
use support::fixture::{Thumbs, belongs, key_of, remote_only_cache_probing_after, versioned};
use support::harness::{self, trials};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// libtest-mimic (`harness = false`): without `redis-server` the server tests are reported as
/// ignored, not passed (see `support::harness`).
fn main() -> std::process::ExitCode {
    harness::run(trials![redis_test(
        hostile_proxy_never_leaks_and_the_client_recovers
    ),])
}

/// Every test body runs under this limit.
const TEST_LIMIT: Duration = Duration::from_secs(40);
/// The store's response timeout.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(300);
/// How long the proxy holds replies in [`Mode::Delay`]: longer than the response timeout.
const DELAY: Duration = Duration::from_millis(500);
/// How long the store breaker skips the store once calls keep failing.
const STORE_COOL_DOWN: Duration = Duration::from_millis(300);

/// What the proxy does to replies (server to client); requests always pass unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// Relays faithfully.
    Pass = 0,
    /// Holds every reply chunk for [`DELAY`].
    Delay = 1,
    /// Relays half of the next reply chunk, then closes the client connection.
    Cut = 2,
    /// Delivers each reply chunk to another client connection, if there is one.
    Swap = 3,
}

/// What a client connection's writer is told.
enum Out {
    Data(Instant, Vec<u8>),
    Close,
}

/// The relay. Dropping it stops accepting; live connections end when their peers close.
struct Proxy {
    mode: Arc<AtomicU8>,
    dir: tempfile::TempDir,
    accept: tokio::task::JoinHandle<()>,
}

type Outboxes = Arc<Mutex<Vec<mpsc::UnboundedSender<Out>>>>;

impl Proxy {
    async fn start(upstream: PathBuf) -> Proxy {
        let dir = tempfile::Builder::new()
            .prefix("sc-proxy-")
            .tempdir()
            .unwrap();
        let listener = UnixListener::bind(dir.path().join("proxy.sock")).unwrap();
        let mode = Arc::new(AtomicU8::new(Mode::Pass as u8));
        let outboxes: Outboxes = Arc::default();
        let accept = {
            let mode = Arc::clone(&mode);
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = UnixStream::connect(&upstream).await else {
                        continue; // the client sees its connection closed
                    };
                    relay(client, server, Arc::clone(&mode), Arc::clone(&outboxes));
                }
            })
        };
        Proxy { mode, dir, accept }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("proxy.sock")
    }

    fn url(&self) -> String {
        format!("redis+unix://{}", self.path().display())
    }

    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn relay(client: UnixStream, server: UnixStream, mode: Arc<AtomicU8>, outboxes: Outboxes) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let (outbox, mut inbox) = mpsc::unbounded_channel::<Out>();
    outboxes.lock().unwrap().push(outbox.clone());
    // Requests: unchanged.
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    // This client connection's writer: whatever replies are routed to it, each when due.
    tokio::spawn(async move {
        while let Some(out) = inbox.recv().await {
            match out {
                Out::Data(due, bytes) => {
                    tokio::time::sleep_until(due).await;
                    if client_write.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Out::Close => break,
            }
        }
        let _ = client_write.shutdown().await;
    });
    // Replies: routed by the current mode.
    tokio::spawn(async move {
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = buf[..n].to_vec();
            let now = Instant::now();
            match mode.load(Ordering::SeqCst) {
                m if m == Mode::Delay as u8 => {
                    let _ = outbox.send(Out::Data(now + DELAY, chunk));
                }
                m if m == Mode::Cut as u8 => {
                    let _ = outbox.send(Out::Data(now, chunk[..n / 2].to_vec()));
                    break;
                }
                m if m == Mode::Swap as u8 => {
                    let other = outboxes
                        .lock()
                        .unwrap()
                        .iter()
                        .find(|other| !other.same_channel(&outbox) && !other.is_closed())
                        .cloned();
                    let _ = other
                        .unwrap_or_else(|| outbox.clone())
                        .send(Out::Data(now, chunk));
                }
                _ => {
                    let _ = outbox.send(Out::Data(now, chunk));
                }
            }
        }
        let _ = outbox.send(Out::Close);
    });
}

/// What one phase saw.
#[derive(Debug, Default)]
struct Phase {
    hits: AtomicU64,
    wrong: AtomicU64,
}

/// Runs 32 workers of reads and inserts for `duration`.
async fn storm(cache: &Cache<Thumbs>, duration: Duration, seed: u64) -> Phase {
    let phase = Arc::new(Phase::default());
    let deadline = Instant::now() + duration;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..32 {
        let (cache, phase) = (cache.clone(), Arc::clone(&phase));
        workers.spawn(async move {
            let mut rng = support::Rng::new(seed * 1000 + worker);
            let mut version = 0;
            while Instant::now() < deadline {
                let owner = (rng.below(16), rng.below(4), rng.below(4));
                if rng.below(4) == 0 {
                    version += 1;
                    let _ = cache
                        .insert(&key_of(owner), versioned(owner, version))
                        .await;
                } else {
                    match cache.get(&key_of(owner)).await {
                        Some(found) if belongs(owner, &found) => {
                            phase.hits.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(_) => {
                            phase.wrong.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {}
                    }
                }
            }
        });
    }
    // Every call is bounded, so the workers stop soon after the deadline.
    tokio::time::timeout(duration + 4 * RESPONSE_TIMEOUT, async {
        while let Some(done) = workers.join_next().await {
            done.unwrap();
        }
    })
    .await
    .expect("a worker hung");
    Arc::try_unwrap(phase).unwrap()
}

/// Runs a fault phase, then lets the client recover, then checks that it has: reads hit again,
/// and no value is refused any more.
async fn fault_then_recover(cache: &Cache<Thumbs>, proxy: &Proxy, fault: Mode, seed: u64) -> Delta {
    let before = cache.stats();
    proxy.set(fault);
    let faulty = storm(cache, Duration::from_millis(900), seed).await;
    proxy.set(Mode::Pass);
    let during = cache.stats();
    // Long enough for late replies to drain and the store breaker to probe and close.
    let recovery = storm(
        cache,
        DELAY + 2 * STORE_COOL_DOWN + Duration::from_millis(400),
        seed + 1,
    )
    .await;
    let settled = cache.stats();
    let verify = storm(cache, Duration::from_millis(500), seed + 2).await;
    let after = cache.stats();
    eprintln!(
        "{fault:?}: fault {faulty:?} recovery {recovery:?} verify {verify:?}; \
         during fault: {} remote errors, {} violations; after: {} trips, {} errors, {} skipped, {:?}",
        during.remote_errors - before.remote_errors,
        during.violations.total() - before.violations.total(),
        after.store_breaker_trips - before.store_breaker_trips,
        after.remote_errors - during.remote_errors,
        after.remote_skipped - during.remote_skipped,
        after.store_breaker_state,
    );
    for (name, phase) in [
        ("fault", &faulty),
        ("recovery", &recovery),
        ("verify", &verify),
    ] {
        assert_eq!(
            phase.wrong.load(Ordering::Relaxed),
            0,
            "{fault:?}/{name}: a read returned another owner's value"
        );
    }
    assert!(
        verify.hits.load(Ordering::Relaxed) > 50,
        "{fault:?}: reads hit again after the fault"
    );
    assert_eq!(
        after.violations.total(),
        settled.violations.total(),
        "{fault:?}: values are still refused after recovery"
    );
    assert_eq!(
        after.store_breaker_state,
        scoped_cache::BreakerState::Closed,
        "{fault:?}: the store breaker closed again"
    );
    Delta {
        store_breaker_trips: during.store_breaker_trips - before.store_breaker_trips,
        remote_errors: during.remote_errors - before.remote_errors,
        violations: during
            .violations
            .iter()
            .zip(before.violations.iter())
            .map(|((kind, after), (_, before))| (kind, after - before))
            .filter(|(_, count)| *count > 0)
            .collect(),
    }
}

/// What a fault phase caused.
#[derive(Debug)]
struct Delta {
    store_breaker_trips: u64,
    remote_errors: u64,
    violations: Vec<(ViolationKind, u64)>,
}

async fn hostile_proxy_never_leaks_and_the_client_recovers(server: RedisServer) {
    tokio::time::timeout(TEST_LIMIT, async {
        let proxy = Proxy::start(server.socket()).await;
        let store = Arc::new(
            RedisStore::builder(proxy.url())
                .connections(2)
                .response_timeout(RESPONSE_TIMEOUT)
                .connect()
                .await
                .unwrap(),
        );
        let cache = remote_only_cache_probing_after::<Thumbs>(store.clone(), STORE_COOL_DOWN);

        let baseline = storm(&cache, Duration::from_millis(400), 1).await;
        assert_eq!(baseline.wrong.load(Ordering::Relaxed), 0);
        assert!(baseline.hits.load(Ordering::Relaxed) > 50);
        assert_eq!(cache.stats().remote_errors, 0);

        let delayed = fault_then_recover(&cache, &proxy, Mode::Delay, 10).await;
        assert!(delayed.remote_errors > 0, "delayed replies time out");
        assert!(
            delayed.store_breaker_trips > 0,
            "calls that keep timing out open the store breaker"
        );

        let cut = fault_then_recover(&cache, &proxy, Mode::Cut, 20).await;
        assert!(cut.remote_errors > 0, "cut connections fail calls");

        let replaced_before = store.connections_replaced();
        let swapped = fault_then_recover(&cache, &proxy, Mode::Swap, 30).await;
        eprintln!(
            "swap: violations {:?}, connections replaced {}",
            swapped.violations,
            store.connections_replaced() - replaced_before
        );
        assert!(
            !swapped.violations.is_empty(),
            "replies delivered to the wrong connection are refused as violations"
        );
        drop(proxy);
    })
    .await
    .expect("test exceeded its time limit");
}
