//! The thumbnail service (`examples/thumbnail_service`) under a storm, over real HTTP.
//!
//! The service runs in-process on 127.0.0.1:0 over a `FaultyStore` that answers reads with
//! another key's value, the value of the same ids with user and camera exchanged, damaged,
//! expired or replayed bytes, errors, late, or not at all. Hundreds of simulated users send
//! requests concurrently with reqwest: mostly for their own cameras, some for cameras they do
//! not own, some with another user's id in the header, some with none. Every response is
//! checked against ground truth computed here from the request alone: a 200 must carry exactly
//! that user's thumbnail of that camera and event; other users' cameras and mismatched headers
//! must be 403, a missing header 401; nothing may be a 5xx. The faults must have happened, and
//! every wrong value the store handed out must show up as a refused value in `Stats`.

#[path = "../examples/thumbnail_service/app.rs"]
mod app;
mod support;

use app::{
    App, Config, Database, THUMBNAIL_ROUTE, TRANSFER_ROUTE, ThumbnailOrigin, Thumbnails,
    USER_HEADER,
};
use bytes::Bytes;
use scoped_cache::store::RemoteStore;
use scoped_cache::testing::{DownStore, FaultCounts, FaultKind, FaultRates, FaultyStore};
use scoped_cache::{Client, DeviceId, FreshnessKind, Key, MemoryBus, MemoryStore, Stats, TenantId};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::fixture::ring;
use support::harness::{self, trials};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// libtest-mimic (`harness = false`): without `redis-server` the Redis storm is reported as
/// ignored, not passed (see `support::harness`).
fn main() -> std::process::ExitCode {
    #[allow(unused_mut)] // without the `redis` feature
    let mut trials = trials![
        tokio_test(storm_over_http_serves_only_the_owners_thumbnails),
        tokio_test(a_store_that_is_down_is_never_a_5xx),
        tokio_test(a_slow_origin_is_a_503_and_is_not_cached),
        tokio_test(while_the_origin_is_down_a_cached_thumbnail_is_served_stale_with_its_age),
        tokio_test(a_transfer_on_one_instance_is_a_403_for_the_old_owner_on_the_other),
    ];
    #[cfg(feature = "redis")]
    trials.extend(trials![redis_test(
        storm_over_http_with_redis_serves_only_the_owners_thumbnails
    )]);
    harness::run(trials)
}

/// The storm may take this long at most; then the test fails instead of hanging.
const STORM_DEADLINE: Duration = Duration::from_secs(120);

/// Per store read; every kind the `FaultyStore` knows, at rates that make each happen hundreds
/// of times in a run. Timed kinds are short so that the storm stays quick.
const FAULTS: &str = "swap=0.05,confuse=0.05,corrupt=0.02,truncate=0.02,stale=0.03,\
                      replay=0.03,drop=0.02,delay=0.02@2ms,timeout=0.01@20ms";

/// Who owns what. Users and cameras share one id space (`"0"`, `"1"`, …) and ownership is
/// symmetric: user `u` owns camera `c` exactly when user `c` owns camera `u`. So the key with
/// user and camera exchanged is a real, populated key: the user-id/device-id mix-up of the
/// incident this crate exists for, which the `confuse` fault hands out.
#[derive(Debug, Clone, Copy)]
struct Population {
    users: u64,
    cameras_per_user: u64,
    events_per_camera: u64,
}

impl Population {
    /// The `index`-th camera of `user`: `user+1`, `user-1`, `user+2`, `user-2`, … modulo `users`
    /// (offsets closed under negation, so the relation is symmetric).
    fn camera(&self, user: u64, index: u64) -> u64 {
        let offset = index / 2 + 1;
        if index.is_multiple_of(2) {
            (user + offset) % self.users
        } else {
            (user + self.users - offset) % self.users
        }
    }

    fn owns(&self, user: u64, camera: u64) -> bool {
        (0..self.cameras_per_user).any(|index| self.camera(user, index) == camera)
    }

    fn database(&self, latency: Duration) -> Database {
        Database::new(
            latency,
            (0..self.users).map(|user| {
                let cameras = (0..self.cameras_per_user).map(move |i| self.camera(user, i));
                (user.to_string(), cameras.map(|camera| camera.to_string()))
            }),
        )
    }

    fn keys(&self) -> impl Iterator<Item = Key<Thumbnails>> + '_ {
        (0..self.users).flat_map(move |user| {
            (0..self.cameras_per_user).flat_map(move |index| {
                (0..self.events_per_camera)
                    .map(move |event| thumbnail_key(user, self.camera(user, index), event))
            })
        })
    }
}

fn tenant(user: u64) -> TenantId {
    TenantId::new(&user.to_string()).unwrap_or_else(|error| panic!("user id: {error}"))
}

fn device(camera: u64) -> DeviceId {
    DeviceId::new(&camera.to_string()).unwrap_or_else(|error| panic!("camera id: {error}"))
}

fn thumbnail_key(user: u64, camera: u64, event: u64) -> Key<Thumbnails> {
    Key::new(tenant(user), device(camera), event)
}

/// The thumbnail a request for (`user`, `camera`, `event`) must get: computed from the request's
/// ids alone, never from anything the cache or the service reports.
fn expected_thumbnail(user: u64, camera: u64, event: u64) -> Bytes {
    app::render_thumbnail(&tenant(user), &device(camera), event)
}

/// One request a simulated user makes.
#[derive(Debug, Clone)]
struct Ask {
    /// The `x-user-id` header, if any.
    header: Option<u64>,
    user: u64,
    camera: u64,
    event: u64,
}

/// What the answer to an [`Ask`] must be.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Thumbnail(Bytes),
    Forbidden,
    Unauthorized,
}

impl Ask {
    /// 85% their own camera, 7% a camera they do not own, 4% with another user's id in the
    /// header, 4% with no header.
    fn draw(user: u64, population: &Population, rng: &mut support::Rng) -> Self {
        let own = population.camera(user, rng.below(population.cameras_per_user));
        let event = rng.below(population.events_per_camera);
        let ask = |header, camera| Ask {
            header,
            user,
            camera,
            event,
        };
        match rng.below(100) {
            0..85 => ask(Some(user), own),
            85..92 => {
                // Owned cameras are within ±cameras_per_user of the user; this is farther.
                let far = population.cameras_per_user + 1;
                let span = population.users - 2 * far;
                ask(
                    Some(user),
                    (user + far + rng.below(span)) % population.users,
                )
            }
            92..96 => {
                let other = (user + 1 + rng.below(population.users - 1)) % population.users;
                ask(Some(other), own)
            }
            _ => ask(None, own),
        }
    }

    /// Ground truth, from the population's table.
    fn expect(&self, population: &Population) -> Expect {
        match self.header {
            None => Expect::Unauthorized,
            Some(header) if header != self.user => Expect::Forbidden,
            Some(_) if !population.owns(self.user, self.camera) => Expect::Forbidden,
            Some(_) => Expect::Thumbnail(expected_thumbnail(self.user, self.camera, self.event)),
        }
    }
}

/// What came back, tallied.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    by_status: BTreeMap<u16, u64>,
    /// 200s whose body was not exactly the requested owner's thumbnail.
    wrong_thumbnails: u64,
    /// 200s that should have been refused.
    served_when_refusal_expected: u64,
    server_errors: u64,
    /// Any other status than the expected one.
    unexpected_status: u64,
    transport_errors: u64,
    /// The first few mismatches, to say what went wrong.
    examples: Vec<String>,
}

impl Tally {
    fn note(&mut self, example: String) {
        if self.examples.len() < 10 {
            self.examples.push(example);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        for (status, count) in other.by_status {
            *self.by_status.entry(status).or_default() += count;
        }
        self.wrong_thumbnails += other.wrong_thumbnails;
        self.served_when_refusal_expected += other.served_when_refusal_expected;
        self.server_errors += other.server_errors;
        self.unexpected_status += other.unexpected_status;
        self.transport_errors += other.transport_errors;
        for example in other.examples {
            self.note(example);
        }
    }
}

/// The service on an ephemeral port, stopped gracefully by [`Server::stop`].
struct Server {
    /// `http://127.0.0.1:port/`, parsed once: parsing a URL per request is a fair share of a
    /// debug build's time.
    base: reqwest::Url,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(app: &Arc<App>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|error| panic!("bind 127.0.0.1:0: {error}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("local address: {error}"));
        let (stop, stopped) = oneshot::channel::<()>();
        let serve = axum::serve(listener, app.router()).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        let task = tokio::spawn(async move { serve.await });
        let base = reqwest::Url::parse(&format!("http://{addr}/"))
            .unwrap_or_else(|error| panic!("base url: {error}"));
        Self { base, stop, task }
    }

    fn url(&self, user: &str, camera: &str, event: &str) -> reqwest::Url {
        let path = THUMBNAIL_ROUTE
            .replace("{user}", user)
            .replace("{camera}", camera)
            .replace("{event}", event);
        let mut url = self.base.clone();
        url.set_path(&path);
        url
    }

    /// Stops accepting, waits for requests in flight, and fails the test if the server failed.
    async fn stop(self) {
        let _ = self.stop.send(());
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => panic!("server failed: {error}"),
            Ok(Err(error)) => panic!("server task failed: {error}"),
            Err(_) => panic!("server did not shut down within 10 s"),
        }
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_else(|error| panic!("reqwest client: {error}"))
}

/// Sends `ask` and checks the answer against `expect`.
async fn send(
    http: &reqwest::Client,
    server: &Server,
    ask: &Ask,
    expect: Expect,
    tally: &mut Tally,
) {
    tally.requests += 1;
    let url = server.url(
        &ask.user.to_string(),
        &ask.camera.to_string(),
        &ask.event.to_string(),
    );
    let mut request = http.get(url);
    if let Some(header) = ask.header {
        request = request.header(USER_HEADER, header.to_string());
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            tally.transport_errors += 1;
            tally.note(format!("{ask:?}: transport error {error}"));
            return;
        }
    };
    let status = response.status().as_u16();
    *tally.by_status.entry(status).or_default() += 1;
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(error) => {
            tally.transport_errors += 1;
            tally.note(format!("{ask:?}: body error {error}"));
            return;
        }
    };
    if status >= 500 {
        tally.server_errors += 1;
        tally.note(format!(
            "{ask:?}: {status} {}",
            String::from_utf8_lossy(&body)
        ));
        return;
    }
    match (expect, status) {
        (Expect::Thumbnail(expected), 200) => {
            if body != expected || content_type.as_deref() != Some("image/jpeg") {
                tally.wrong_thumbnails += 1;
                tally.note(format!(
                    "{ask:?}: 200 ({content_type:?}) with the wrong bytes: {}",
                    String::from_utf8_lossy(&body)
                ));
            }
        }
        (Expect::Forbidden, 403) | (Expect::Unauthorized, 401) => {}
        (expect, 200) => {
            tally.served_when_refusal_expected += 1;
            tally.note(format!("{ask:?}: 200 where {expect:?} was due"));
        }
        (expect, status) => {
            tally.unexpected_status += 1;
            tally.note(format!("{ask:?}: {status} where {expect:?} was due"));
        }
    }
}

/// How a storm is set up.
struct StormPlan {
    population: Population,
    /// Concurrent sessions of each user (the camera, the phone app, …). They send the same
    /// requests in the same order, as clients reconnecting together do, so their misses
    /// coincide and `get_or_load` coalesces them.
    sessions_per_user: u64,
    requests_per_session: u64,
    seed: u64,
}

impl StormPlan {
    fn requests(&self) -> u64 {
        self.population.users * self.sessions_per_user * self.requests_per_session
    }
}

/// What a storm produced.
struct StormReport {
    tally: Tally,
    expected_statuses: BTreeMap<u16, u64>,
    injected: FaultCounts,
    store_reads: u64,
    stats: Stats,
    ownership: Stats,
    /// Requests that passed the header checks, each of which must ask the database.
    expected_ownership_checks: u64,
    sink_reports: u64,
}

/// Writes "yesterday's" values of every key, as a cache that lived before an outage would have
/// them: one generation that has expired (for `stale`, with other bytes than today's, so that
/// serving one would show as a wrong thumbnail), and one lost in the outage (deleted, for
/// `replay` once the service writes today's value). The store remembers both; it seals nothing.
async fn seed_yesterday(store: Arc<dyn RemoteStore>, population: &Population) {
    let client = Client::builder()
        .key_ring(ring())
        .remote_shared(store)
        .build()
        .unwrap_or_else(|error| panic!("seeding client: {error}"));
    let build = |ttl| {
        client
            .cache::<Thumbnails>()
            .local_capacity(0)
            .ttl(ttl)
            .build()
            .unwrap_or_else(|error| panic!("seeding cache: {error}"))
    };
    let (expiring, lost) = (
        build(Duration::from_millis(1)),
        build(Duration::from_secs(600)),
    );
    for key in population.keys() {
        let expired = format!("yesterday's thumbnail of {}", key.owner());
        let today = app::render_thumbnail(&key.owner().tenant, &key.owner().device, *key.item());
        let writes = async {
            expiring.insert(&key, Bytes::from(expired)).await?;
            lost.insert(&key, today).await?;
            lost.invalidate(&key).await
        };
        writes
            .await
            .unwrap_or_else(|error| panic!("seeding {key:?}: {error}"));
    }
    // Past the expiring generation's TTL on any clock granularity.
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// Runs the service over `inner` wrapped in a `FaultyStore`, and every simulated user against it.
async fn storm<S: RemoteStore>(inner: S, plan: &StormPlan) -> StormReport {
    let rates: FaultRates = FAULTS
        .parse()
        .unwrap_or_else(|error| panic!("{FAULTS}: {error}"));
    let store = Arc::new(
        FaultyStore::builder(inner)
            .seed(plan.seed)
            .rates(rates)
            .build()
            .unwrap_or_else(|error| panic!("faulty store: {error}")),
    );
    let population = plan.population;
    seed_yesterday(store.clone(), &population).await;

    let sink_reports = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&sink_reports);
    let app = App::new(Config {
        database: Arc::new(population.database(Duration::from_millis(1))),
        origin: ThumbnailOrigin::new(Duration::from_millis(3)),
        // No in-process tier: every read goes to the faulty store.
        local_capacity: 0,
        on_violation: Arc::new(move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
        }),
        ..Config::new(store.clone(), ring())
    })
    .unwrap_or_else(|error| panic!("app: {error}"));
    let server = Arc::new(Server::start(&app).await);
    let http = http_client();

    // Ground truth of the statuses, from the same seeded draws the users will make.
    let mut expected_statuses = BTreeMap::new();
    let mut expected_ownership_checks = 0;
    let mut users = JoinSet::new();
    for user in 0..population.users {
        let asks: Vec<(Ask, Expect)> = {
            let mut rng = support::Rng::new(plan.seed ^ user.wrapping_mul(0x2545_f491_4f6c_dd1d));
            (0..plan.requests_per_session)
                .map(|_| {
                    let ask = Ask::draw(user, &population, &mut rng);
                    let expect = ask.expect(&population);
                    (ask, expect)
                })
                .collect()
        };
        for (ask, expect) in &asks {
            if ask.header == Some(ask.user) {
                expected_ownership_checks += plan.sessions_per_user;
            }
            let status = match expect {
                Expect::Thumbnail(_) => 200,
                Expect::Forbidden => 403,
                Expect::Unauthorized => 401,
            };
            *expected_statuses.entry(status).or_insert(0) += plan.sessions_per_user;
        }
        for _ in 0..plan.sessions_per_user {
            let (http, server, asks) = (http.clone(), Arc::clone(&server), asks.clone());
            users.spawn(async move {
                let mut tally = Tally::default();
                for (ask, expect) in asks {
                    send(&http, &server, &ask, expect, &mut tally).await;
                }
                tally
            });
        }
    }
    let all_done = async {
        let mut tally = Tally::default();
        while let Some(joined) = users.join_next().await {
            tally.merge(joined.unwrap_or_else(|error| panic!("a user task failed: {error}")));
        }
        tally
    };
    let tally = tokio::time::timeout(STORM_DEADLINE, all_done)
        .await
        .unwrap_or_else(|_| panic!("the storm did not finish within {STORM_DEADLINE:?}"));
    drop(http);
    match Arc::try_unwrap(server) {
        Ok(server) => server.stop().await,
        Err(_) => panic!("a user task still holds the server"),
    }

    StormReport {
        tally,
        expected_statuses,
        injected: store.injected(),
        store_reads: store.reads(),
        stats: app.thumbnail_stats(),
        ownership: app.ownership_stats(),
        expected_ownership_checks,
        sink_reports: sink_reports.load(Ordering::Relaxed),
    }
}

/// Prints the summary, then asserts on it.
fn check(name: &str, report: &StormReport, elapsed: Duration) {
    let StormReport {
        tally,
        expected_statuses,
        injected,
        store_reads,
        stats,
        ownership,
        expected_ownership_checks,
        sink_reports,
    } = report;
    let statuses = |counts: &BTreeMap<u16, u64>| {
        counts
            .iter()
            .map(|(status, count)| format!("{status}: {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let wrong_values: u64 = injected
        .iter()
        .filter(|(kind, _)| kind.is_wrong_value())
        .map(|(_, count)| count)
        .sum();
    let errors_injected = injected.get(FaultKind::Drop) + injected.get(FaultKind::Timeout);
    println!("--- {name} ({:.1} s) ---", elapsed.as_secs_f64());
    println!(
        "requests: {} ({} transport errors)",
        tally.requests, tally.transport_errors
    );
    println!("by status: {}", statuses(&tally.by_status));
    println!("expected:  {}", statuses(expected_statuses));
    println!(
        "faults injected: {} of {store_reads} store reads: {}",
        injected.total(),
        injected
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "refused by the cache (Stats): {} ({}); violation sink: {sink_reports}; wrong values injected: {wrong_values}",
        stats.violations.total(),
        stats
            .violations
            .iter()
            .filter(|(_, count)| *count > 0)
            .map(|(kind, count)| format!("{} {count}", kind.name()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "store errors read as misses: {} (injected drop + timeout: {errors_injected}); loads: {}, coalesced: {}, remote hits: {}",
        stats.remote_errors, stats.loads, stats.coalesced, stats.hits_remote
    );
    println!(
        "wrong thumbnails: {}, served when refusal due: {}, 5xx: {}, other unexpected statuses: {}",
        tally.wrong_thumbnails,
        tally.served_when_refusal_expected,
        tally.server_errors,
        tally.unexpected_status
    );
    println!(
        "ownership checks: {} loads from the database, {} cache hits, {} stored (due: {expected_ownership_checks}, 0, 0)",
        ownership.loads,
        ownership.hits_local + ownership.hits_remote,
        ownership.inserts
    );
    for example in &tally.examples {
        println!("  {example}");
    }

    assert_eq!(
        tally.wrong_thumbnails, 0,
        "a 200 carried bytes that are not the requested owner's thumbnail"
    );
    assert_eq!(
        tally.served_when_refusal_expected, 0,
        "a 200 where 401/403 was due"
    );
    assert_eq!(tally.server_errors, 0, "a store fault became a 5xx");
    assert_eq!(
        tally.unexpected_status, 0,
        "a status other than the due one"
    );
    assert_eq!(tally.transport_errors, 0, "requests failed below HTTP");
    assert_eq!(
        &tally.by_status, expected_statuses,
        "statuses differ from ground truth"
    );
    for kind in FaultKind::ALL {
        assert!(
            injected.get(kind) > 0,
            "no {kind} fault was injected: the storm proved nothing about it"
        );
    }
    assert_eq!(
        stats.violations.total() + stats.freshness_misses.total(),
        wrong_values,
        "every wrong value the store handed out must be refused, and nothing else"
    );
    assert_eq!(
        stats.freshness_misses.get(FreshnessKind::Expired),
        injected.get(FaultKind::Stale),
        "every stale value is an expiry miss, not a violation"
    );
    assert_eq!(
        *sink_reports,
        stats.violations.total(),
        "every refused value must reach the violation sink"
    );
    assert_eq!(
        (
            ownership.loads,
            ownership.hits_local + ownership.hits_remote,
            ownership.inserts
        ),
        (*expected_ownership_checks, 0, 0),
        "every ownership check must come from the database, none from or into the cache"
    );
    assert!(
        stats.remote_errors >= errors_injected,
        "every injected store error must be counted ({} < {errors_injected})",
        stats.remote_errors
    );
}

/// 200 users with 4 cameras each, two sessions each, 16,000 requests, over the in-process store.
/// (Sized to stay well under 30 s in a debug build on a busy two-core machine: a request costs
/// about 0.7 ms of CPU there, client and server together.)
async fn storm_over_http_serves_only_the_owners_thumbnails() {
    let plan = StormPlan {
        population: Population {
            users: 200,
            cameras_per_user: 4,
            events_per_camera: 6,
        },
        sessions_per_user: 2,
        requests_per_session: 40,
        seed: 42,
    };
    let started = Instant::now();
    let report = storm(MemoryStore::new(256 << 20), &plan).await;
    check("service storm, MemoryStore", &report, started.elapsed());
    assert_eq!(report.tally.requests, plan.requests());
    assert_eq!(plan.requests(), 16_000);
}

/// The same storm, smaller, with thumbnails in a real `redis-server` the test starts.
#[cfg(feature = "redis")]
async fn storm_over_http_with_redis_serves_only_the_owners_thumbnails(
    server: support::RedisServer,
) {
    let redis = scoped_cache::RedisStore::builder(server.url())
        // A loaded CI machine must not turn slow replies into errors the test then tolerates.
        .response_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap_or_else(|error| panic!("connect to {}: {error}", server.url()));
    let plan = StormPlan {
        population: Population {
            users: 40,
            cameras_per_user: 4,
            events_per_camera: 4,
        },
        sessions_per_user: 2,
        requests_per_session: 25,
        seed: 7,
    };
    let started = Instant::now();
    let report = storm(redis, &plan).await;
    check("service storm, redis-server", &report, started.elapsed());
    assert_eq!(report.tally.requests, plan.requests());
}

async fn get(
    http: &reqwest::Client,
    server: &Server,
    path: (&str, &str, &str),
    user: Option<&str>,
) -> (u16, Bytes) {
    let mut request = http.get(server.url(path.0, path.1, path.2));
    if let Some(user) = user {
        request = request.header(USER_HEADER, user);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|error| panic!("GET {path:?}: {error}"));
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .unwrap_or_else(|error| panic!("GET {path:?}: body: {error}"));
    (status, body)
}

/// With the store down, the demo's requests still get their thumbnails (loaded each time) and
/// their refusals; bad ids are a 400.
async fn a_store_that_is_down_is_never_a_5xx() {
    let app = App::new(Config {
        local_capacity: 0,
        ..Config::new(Arc::new(DownStore), ring())
    })
    .unwrap_or_else(|error| panic!("app: {error}"));
    let server = Server::start(&app).await;
    let http = http_client();
    let alice_cam_1 = app::render_thumbnail(&tenant_text("alice"), &device_text("cam-1"), 42);

    for _ in 0..3 {
        let answer = get(&http, &server, ("alice", "cam-1", "42"), Some("alice")).await;
        assert_eq!(answer, (200, alice_cam_1.clone()));
    }
    for (path, user, status) in [
        (("alice", "cam-3", "42"), Some("alice"), 403), // bob's camera
        (("alice", "cam-1", "42"), Some("bob"), 403),   // alice's path
        (("alice", "cam-9", "42"), Some("alice"), 403), // no such camera
        (("carol", "cam-1", "42"), Some("carol"), 403), // no such user
        (("alice", "cam-1", "42"), None, 401),
        (("alice", "%01", "42"), Some("alice"), 400), // not an id
        (("alice", "cam-1", "latest"), Some("alice"), 400), // not an event id
    ] {
        let (got, body) = get(&http, &server, path, user).await;
        assert_eq!(
            got,
            status,
            "{path:?} as {user:?}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    server.stop().await;
    let stats = app.thumbnail_stats();
    assert_eq!(stats.loads, 3, "each read missed and loaded: {stats:?}");
    assert!(
        stats.remote_errors + stats.remote_skipped >= 6,
        "3 reads and 3 writes failed or skipped the store: {stats:?}"
    );
}

/// An origin slower than the load timeout is a 503, and nothing is cached: the next request
/// tries the origin again.
async fn a_slow_origin_is_a_503_and_is_not_cached() {
    let app = App::new(Config {
        origin: ThumbnailOrigin::new(Duration::from_secs(5)),
        load_timeout: Duration::from_millis(50),
        ..Config::new(Arc::new(MemoryStore::default()), ring())
    })
    .unwrap_or_else(|error| panic!("app: {error}"));
    let server = Server::start(&app).await;
    let http = http_client();
    for _ in 0..2 {
        let (status, body) = get(&http, &server, ("bob", "cam-3", "7"), Some("bob")).await;
        assert_eq!(status, 503);
        assert_eq!(body, "thumbnail origin unavailable, retry later\n");
    }
    server.stop().await;
    let stats = app.thumbnail_stats();
    assert_eq!(
        (stats.loads, stats.load_errors, stats.inserts),
        (2, 2, 0),
        "{stats:?}"
    );
}

/// An origin outage: a thumbnail cached before is served stale, with its `Age`, only to its
/// owner; one never cached is a 503; once the origin is back (and the fail-safe throttle after
/// the failed load has passed), a fresh one is served.
async fn while_the_origin_is_down_a_cached_thumbnail_is_served_stale_with_its_age() {
    let app = App::new(Config {
        ttl: Duration::from_millis(200),
        origin: ThumbnailOrigin::new(Duration::ZERO),
        ..Config::new(Arc::new(MemoryStore::default()), ring())
    })
    .unwrap_or_else(|error| panic!("app: {error}"));
    let server = Server::start(&app).await;
    let http = http_client();
    let alice_cam_1 = app::render_thumbnail(&tenant_text("alice"), &device_text("cam-1"), 42);
    let answer = |path: (&'static str, &'static str, &'static str), user: &'static str| {
        let request = http
            .get(server.url(path.0, path.1, path.2))
            .header(USER_HEADER, user);
        async move {
            let response = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {path:?}: {e}"));
            let status = response.status().as_u16();
            let header = |name| {
                response
                    .headers()
                    .get(name)
                    .map(|value| value.to_str().unwrap_or("?").to_owned())
            };
            let (age, cache_control) = (header("age"), header("cache-control"));
            let body = response
                .bytes()
                .await
                .unwrap_or_else(|e| panic!("body: {e}"));
            (status, body, age, cache_control)
        }
    };

    let (status, body, age, _) = answer(("alice", "cam-1", "42"), "alice").await;
    assert_eq!(
        (status, body, age.as_deref()),
        (200, alice_cam_1.clone(), Some("0"))
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await; // past the TTL, by over a second
    app.origin().set_down(true);
    let (status, body, age, cache_control) = answer(("alice", "cam-1", "42"), "alice").await;
    assert_eq!((status, body), (200, alice_cam_1.clone()), "served stale");
    assert!(
        age.is_some_and(|age| age != "0"),
        "a stale answer says its age"
    );
    assert_eq!(cache_control.as_deref(), Some("private, no-cache"));
    let (status, ..) = answer(("alice", "cam-1", "42"), "bob").await;
    assert_eq!(status, 403, "never to another user");
    let (status, body, ..) = answer(("alice", "cam-1", "43"), "alice").await;
    assert_eq!(
        (status, &body[..]),
        (503, &b"thumbnail origin unavailable, retry later\n"[..])
    );

    app.origin().set_down(false);
    // The failed load holds the key to stale answers for the fail-safe throttle (1 s).
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, body, age, cache_control) = answer(("alice", "cam-1", "42"), "alice").await;
    assert_eq!(
        (status, body, age.as_deref()),
        (200, alice_cam_1, Some("0")),
        "fresh again"
    );
    assert_eq!(cache_control.as_deref(), Some("private, max-age=600"));
    server.stop().await;
    let stats = app.thumbnail_stats();
    assert_eq!(stats.served_stale, 1, "{stats:?}");
}

fn tenant_text(text: &str) -> TenantId {
    TenantId::new(text).unwrap_or_else(|error| panic!("{text}: {error}"))
}

fn device_text(text: &str) -> DeviceId {
    DeviceId::new(text).unwrap_or_else(|error| panic!("{text}: {error}"))
}

/// Two instances on one store and bus, ownership cached on both: once alice's transfer of cam-1
/// to bob returns on one, the other answers alice 403 and bob his thumbnail, though both had
/// alice's answer cached.
async fn a_transfer_on_one_instance_is_a_403_for_the_old_owner_on_the_other() {
    let (store, bus) = (Arc::new(MemoryStore::default()), MemoryBus::new());
    let database = Arc::new(Database::demo());
    let instance = || {
        let config = Config {
            bus: Some(Arc::new(bus.clone())),
            database: database.clone(),
            ..Config::new(store.clone(), ring())
        };
        App::new(config).unwrap_or_else(|error| panic!("app: {error}"))
    };
    let (a, b) = (instance(), instance());
    let (server_a, server_b) = (Server::start(&a).await, Server::start(&b).await);
    let http = http_client();
    let alice_cam_1 = app::render_thumbnail(&tenant_text("alice"), &device_text("cam-1"), 42);
    for server in [&server_a, &server_b] {
        for _ in 0..2 {
            let answer = get(&http, server, ("alice", "cam-1", "42"), Some("alice")).await;
            assert_eq!(answer, (200, alice_cam_1.clone()));
        }
    }
    let cached = b.ownership_stats().hits_local;
    assert!(
        cached >= 1,
        "ownership was not cached: {:?}",
        b.ownership_stats()
    );

    let mut transfer = server_a.base.clone();
    transfer.set_path(&TRANSFER_ROUTE.replace("{camera}", "cam-1"));
    let moved = |user: &'static str| {
        http.post(transfer.clone())
            .header(USER_HEADER, user)
            .body("bob")
            .send()
    };
    let status = |response: reqwest::Result<reqwest::Response>| {
        response
            .unwrap_or_else(|error| panic!("POST transfer: {error}"))
            .status()
            .as_u16()
    };
    assert_eq!(status(moved("bob").await), 403, "bob moved alice's camera");
    assert_eq!(status(moved("alice").await), 204);

    for server in [&server_b, &server_a] {
        let (code, _) = get(&http, server, ("alice", "cam-1", "42"), Some("alice")).await;
        assert_eq!(code, 403, "alice still sees cam-1 after the transfer");
        let (code, body) = get(&http, server, ("bob", "cam-1", "42"), Some("bob")).await;
        assert_eq!(code, 200);
        assert_eq!(
            body,
            app::render_thumbnail(&tenant_text("bob"), &device_text("cam-1"), 42)
        );
    }
    server_a.stop().await;
    server_b.stop().await;
}
