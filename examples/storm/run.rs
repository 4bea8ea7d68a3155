//! One run of the storm, verified or naive: the backend and its faults, the client, every session
//! spawned behind one barrier, and what they measured.

use crate::arrival::arrivals;
use crate::backend::{Backend, open_backend};
use crate::config::{Config, Stop};
use crate::fleet::Fleet;
use crate::latency::Latency;
use crate::measured::FleetMeasured;
use crate::measured::{CacheCounts, Measured};
use crate::naive_cache::NaiveCache;
use crate::namespace::{Thumbnails, key_ring};
use crate::observed_bus::{BusLog, ObservedBus};
use crate::origin::Origin;
use crate::origin::OriginDown;
use crate::population::Population;
use crate::progress::progress_bar;
use crate::session::{Tally, session};
use crate::sink_log::SinkLog;
use crate::timeline::{Sample, intervals};
use crate::transfers::Transfers;
use crate::violation_check::ViolationCheck;
use crate::yesterday::{keep_yesterday, remember_yesterday};
use bytes::Bytes;
use hdrhistogram::Histogram;
use scoped_cache::testing::{FaultKind, FaultyStore};
use scoped_cache::{
    BreakerScope, BreakerState, Cache, Client, Key, KeyRing, Stats, ViolationReport,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Barrier;

/// How a run reads: through the library (one cache per instance of the service), or through
/// the naive client.
pub enum Path {
    Verified(Vec<Cache<Thumbnails>>),
    Naive(NaiveCache),
}

/// A value a session was served: its bytes, and its age when it was stale.
pub struct Served {
    pub value: Bytes,
    pub stale_age: Option<Duration>,
}

impl Path {
    /// The number of instances reads are spread over.
    pub fn instances(&self) -> usize {
        match self {
            Path::Verified(caches) => caches.len(),
            Path::Naive(_) => 1,
        }
    }

    /// One read on `instance`: `get_or_load`, or `get_or_refresh` when the run is `refreshing`.
    /// A camera the run's transfers moved is refused its old owner by the origin.
    pub async fn fetch(
        &self,
        instance: usize,
        key: &Key<Thumbnails>,
        run: &Run,
        (tenant, device_index, item): (u64, u64, u64),
    ) -> Result<Served, String> {
        let fresh = |value| Served {
            value,
            stale_age: None,
        };
        let origin = &run.origin;
        let transfers = run.transfers.clone();
        // The origin reads the owner when the load starts, then takes its time (waiting for a
        // place, its latency): a load that began before a camera moved returns the old
        // owner's thumbnail, however late, as a real one would.
        let load = move |origin: Arc<Origin>| async move {
            match transfers {
                Some(transfers) if transfers.is_moved(tenant, device_index) => Err(OriginDown),
                _ => origin.load(tenant, device_index, item).await,
            }
        };
        match self {
            Path::Verified(caches) if run.refreshing => {
                let cache = &caches[instance % caches.len()];
                let origin = Arc::clone(origin);
                let load = move || load(origin);
                match cache.get_or_refresh(key, load).await {
                    Ok(fetched) => Ok(Served {
                        stale_age: fetched.is_stale().then_some(fetched.age),
                        value: fetched.value,
                    }),
                    Err(error) => Err(error.to_string()),
                }
            }
            Path::Verified(caches) => {
                let cache = &caches[instance % caches.len()];
                let loaded = cache.get_or_load(key, || load(Arc::clone(origin))).await;
                loaded.map(fresh).map_err(|error| error.to_string())
            }
            Path::Naive(naive) => {
                let loaded = naive.get_or_load(key, load(Arc::clone(origin)));
                loaded.await.map(fresh)
            }
        }
    }
}

impl Path {
    /// The cache's own counts so far, and the library's stats (verified run only).
    fn counts(&self) -> (CacheCounts, Option<Stats>) {
        match self {
            Path::Verified(caches) => {
                let stats = caches
                    .iter()
                    .map(Cache::stats)
                    .reduce(|sum, stats| sum + stats)
                    .unwrap_or_default();
                let counts = CacheCounts {
                    hits_l1: stats.hits_local,
                    hits_l2: stats.hits_remote,
                    misses: stats.misses,
                    loads: stats.loads,
                    coalesced: stats.coalesced,
                    load_errors: stats.load_errors,
                    remote_errors: stats.remote_errors,
                    expired_served: 0,
                };
                (counts, Some(stats))
            }
            Path::Naive(naive) => {
                let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
                let counts = CacheCounts {
                    hits_l1: load(&naive.hits_l1),
                    hits_l2: load(&naive.hits_l2),
                    misses: load(&naive.misses),
                    loads: load(&naive.misses),
                    coalesced: 0,
                    load_errors: 0,
                    remote_errors: load(&naive.remote_errors),
                    expired_served: load(&naive.expired_served),
                };
                (counts, None)
            }
        }
    }
}

/// Everything the sessions of one run share.
pub struct Run {
    pub path: Path,
    /// Reads go through `get_or_refresh` (fail-safe or refresh-ahead).
    pub refreshing: bool,
    pub origin: Arc<Origin>,
    /// `--transfers`: the cameras moved so far, and what their old owners were served.
    pub transfers: Option<Arc<Transfers>>,
    pub population: Population,
    /// Requests finished so far (for the progress bar).
    pub done: AtomicU64,
    /// When the barrier released the sessions: set by the first task past it, so the sessions
    /// and the report all count `--duration` from one instant.
    pub started: OnceLock<Instant>,
    pub latency_us: Mutex<Histogram<u64>>,
}

/// Runs the storm once, verified or naive.
pub async fn run(
    config: &Config,
    naive: bool,
    origin_server: tokio::runtime::Handle,
) -> Result<Measured, String> {
    let preparing = Instant::now();
    let label = if naive { "unverified" } else { "verified" };
    let (store, memory) = open_backend(config, label).await?;
    let origin = Arc::new(Origin::new(config, origin_server));
    let backend = Backend {
        store,
        origin: Arc::clone(&origin),
        errors: AtomicU64::new(0),
        error_examples: Mutex::default(),
    };
    let observer = {
        let origin = Arc::clone(&origin);
        // With fail-safe, a value can be unexpired (within its stale time) and still stale: a
        // `replay` may hand back such a value (yesterday's, with `--keep-yesterday`), which the
        // cache reads as a miss and loads again.
        let replay_may_be_stale = config.stale_for.is_some();
        move |key: &[u8], kind: FaultKind| {
            // The verified cache deletes a refused value and reads a failed read as a miss, so
            // the next read must load again; the naive one only misses on a failed read.
            let ends_fill = if naive {
                kind.is_error()
            } else {
                kind.is_error()
                    || kind.is_wrong_value()
                    || (replay_may_be_stale && kind == FaultKind::Replay)
            };
            if ends_fill {
                origin.end_fill(key);
            }
        }
    };
    let violation_check = match (&config.violation_log, naive) {
        (Some(path), false) => Some(ViolationCheck::open(path)?),
        _ => None,
    };
    let misdirected = {
        let truth = violation_check
            .as_ref()
            .map(|check| Arc::clone(&check.truth));
        move |read: &[u8], source: &[u8], _: FaultKind| {
            if let Some(truth) = &truth {
                truth.record(read, source);
            }
        }
    };
    let store = Arc::new(
        FaultyStore::builder(backend)
            .seed(config.seed)
            .rates(config.faults)
            .history(3, config.population().keys() as usize)
            .on_fault(observer)
            .on_misdirected(misdirected)
            .targets({
                // A coherent cache's revocation markers are read beside the values; their
                // faults make misses, not refusals, so only the values are faulted.
                let population = config.population();
                move |key| population.index_of_encoded(key).is_some()
            })
            .build()
            .map_err(|error| error.to_string())?,
    );
    if config.faults.get(FaultKind::Stale) > 0.0 || config.faults.get(FaultKind::Replay) > 0.0 {
        remember_yesterday(store.clone(), config).await?;
    }
    if let (true, Some(stale_for)) = (config.keep_yesterday, config.stale_for) {
        keep_yesterday(store.clone(), config, stale_for).await?;
    }

    let sink = Arc::new(SinkLog::default());
    let ring = key_ring()?;
    let channel_tag = format!("storm:{}:{}:{label}:", std::process::id(), crate::now_ms());
    let mut fleet = match naive {
        true => None,
        false => Fleet::open(config, &channel_tag)?,
    };
    let path = if naive {
        Path::Naive(NaiveCache {
            l1: (config.l1_capacity > 0)
                .then(|| quick_cache::sync::Cache::new(config.l1_capacity as usize)),
            store: store.clone(),
            ring,
            ttl: config.ttl,
            hits_l1: AtomicU64::new(0),
            hits_l2: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            remote_errors: AtomicU64::new(0),
            expired_served: AtomicU64::new(0),
        })
    } else {
        let log = violation_check
            .as_ref()
            .map(|check| Arc::new(check.log.sink()) as ViolationSink);
        let mut caches = Vec::with_capacity(config.instances);
        for instance in 0..config.instances {
            let bus = fleet.as_ref().map(|fleet| fleet.bus(instance));
            let (client, cache) = verified_cache(
                config,
                store.clone(),
                ring.clone(),
                (Arc::clone(&sink), log.clone()),
                Arc::clone(&origin),
                bus,
            )?;
            if let Some(fleet) = &mut fleet {
                fleet.clients.push(client);
            }
            caches.push(cache);
        }
        Path::Verified(caches)
    };
    let transfers = config
        .transfers
        .filter(|_| !naive)
        .map(|_| Arc::new(Transfers::new(config.population())));
    let run = Arc::new(Run {
        path,
        refreshing: config.refreshing(),
        origin: Arc::clone(&origin),
        transfers: transfers.clone(),
        population: config.population(),
        done: AtomicU64::new(0),
        started: OnceLock::new(),
        latency_us: Mutex::new(
            Histogram::new_with_bounds(1, 3_600_000_000, 3).map_err(|e| e.to_string())?,
        ),
    });

    // Every session is spawned and waiting before any starts: the reconnect storm. With
    // `--rate`, no sessions: workers send requests on a schedule from the start.
    let sessions = match config.rate {
        Some(_) => 0,
        None => config.sessions(),
    };
    let barrier = Arc::new(Barrier::new(sessions as usize + 1));
    let population = config.population();
    let mut tasks = Vec::with_capacity(sessions as usize);
    let mut next = 0u64;
    for tenant in (0..population.tenants).take_while(|_| sessions > 0) {
        for device_index in 0..population.devices_per_tenant {
            for _ in 0..config.sessions_per_device {
                let stop = match config.stop() {
                    Stop::Requests(total) => {
                        Stop::Requests(total / sessions + u64::from(next < total % sessions))
                    }
                    after @ Stop::After(_) => after,
                };
                next += 1;
                tasks.push(tokio::spawn(session(
                    Arc::clone(&run),
                    Arc::clone(&barrier),
                    tenant,
                    device_index,
                    stop,
                )));
            }
        }
    }
    let progress = progress_bar(config, label);
    barrier.wait().await;
    let prepared = preparing.elapsed();
    let started = *run.started.get_or_init(Instant::now);
    origin.release(started);
    let mover = match (&fleet, &run.path) {
        (Some(fleet), Path::Verified(caches)) => {
            let moves = transfers
                .as_ref()
                .zip(config.transfers)
                .map(|(transfers, rate)| {
                    let mut state = config.seed ^ 0x7472_616e_7366_6572; // "transfer"
                    let pick = move |devices: u64| splitmix64(&mut state) % devices;
                    let log = Arc::clone(&fleet.log);
                    Arc::clone(transfers).run(rate, caches.clone(), log, pick)
                });
            let cuts = config.bus_cuts.map(|every_for| {
                let log = Arc::clone(&fleet.log);
                cut_in_turn(log, caches.len(), every_for)
            });
            let admin = async move {
                let moves = async move {
                    if let Some(moves) = moves {
                        moves.await;
                    }
                };
                let cuts = async move {
                    if let Some(cuts) = cuts {
                        cuts.await;
                    }
                };
                tokio::join!(moves, cuts);
            };
            Some(on_own_thread(admin)?)
        }
        _ => None,
    };
    // The sessions stop themselves (each checks the clock); the ticker only shows progress.
    let ticker = {
        let (run, progress, sink, stop) = (
            Arc::clone(&run),
            progress.clone(),
            Arc::clone(&sink),
            config.stop(),
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let done = run.done.load(Ordering::Relaxed);
                progress.set_position(match stop {
                    Stop::Requests(_) => done,
                    Stop::After(_) => started.elapsed().as_millis() as u64,
                });
                progress.set_message(format!(
                    "{:.0} req/s, {} loads, {} refused",
                    done as f64 / started.elapsed().as_secs_f64().max(1e-3),
                    run.origin.total.load(Ordering::Relaxed),
                    sink.remote.load(Ordering::Relaxed) + sink.local.load(Ordering::Relaxed)
                ));
            }
        })
    };
    // Samples every `--timeline` interval from the barrier on; the last one when the sessions end.
    let sample = {
        let (run, store) = (Arc::clone(&run), Arc::clone(&store));
        move || {
            let (counts, _) = run.path.counts();
            Sample {
                at: started.elapsed(),
                requests: run.done.load(Ordering::Relaxed),
                hits: counts.hits_l1 + counts.hits_l2,
                misses: counts.misses,
                remote_errors: counts.remote_errors,
                backend_errors: store.inner().errors.load(Ordering::Relaxed),
            }
        }
    };
    // On a thread of its own: the runtime's workers are busy with the sessions, and a sample
    // taken late would blur the interval it ends.
    let (stop_sampling, stopped) = std::sync::mpsc::channel::<()>();
    let sampler = config.timeline.map(|every| {
        let sample = sample.clone();
        std::thread::spawn(move || {
            let mut samples = vec![sample()];
            let mut next = started + every;
            while let Err(RecvTimeoutError::Timeout) =
                stopped.recv_timeout(next.saturating_duration_since(Instant::now()))
            {
                samples.push(sample());
                next = (next + every).max(Instant::now());
            }
            samples
        })
    });
    let mut tally = Tally::default();
    for task in tasks {
        match task.await {
            Ok(done) => tally.merge(done),
            Err(error) => eprintln!("storm: a session failed: {error}"),
        }
    }
    let arrival = match config.rate {
        Some(rate) => {
            let (done, arrival) = arrivals(
                Arc::clone(&run),
                started,
                rate,
                config.in_flight,
                config.stop(),
                config.sessions_per_device,
            )
            .await;
            tally.merge(done);
            Some(arrival)
        }
        None => None,
    };
    let elapsed = started.elapsed();
    ticker.abort();
    if let Some((stop, thread)) = mover {
        let _ = stop.send(());
        let _ = thread.join();
    }
    let fleet = fleet.map(|fleet| FleetMeasured {
        transfers: transfers
            .as_ref()
            .map(|transfers| transfers.summary(config.instances, tally.denied, &fleet.log)),
        bus: fleet.bus_summary(),
    });
    let timeline = match sampler {
        Some(sampler) => {
            drop(stop_sampling);
            let mut samples = sampler.join().unwrap_or_default();
            samples.push(sample());
            intervals(&samples)
        }
        None => Vec::new(),
    };
    progress.finish_and_clear();

    let latency = Latency::of(&run.latency_us.lock().unwrap_or_else(|e| e.into_inner()));
    let (counts, stats) = run.path.counts();
    // The writes before the storm read nothing, so every read and fault counted is the storm's.
    let injected = store.injected();
    let sink_examples = sink
        .examples
        .lock()
        .map(|examples| examples.clone())
        .unwrap_or_default();
    Ok(Measured {
        label,
        tally,
        counts,
        stats,
        origin: origin.summary(),
        injected,
        remote_reads: store.reads(),
        backend_errors: store.inner().errors.load(Ordering::Relaxed),
        backend_error_examples: store
            .inner()
            .error_examples
            .lock()
            .map(|examples| examples.clone())
            .unwrap_or_default(),
        l2_evictions: memory.map(|memory| memory.stats().evictions),
        sink_local: sink.local.load(Ordering::Relaxed),
        sink_remote: sink.remote.load(Ordering::Relaxed),
        sink_examples,
        latency,
        elapsed,
        prepared,
        timeline,
        arrival,
        violation_check,
        fleet,
    })
}

/// `--bus-cuts EVERY+FOR`: cuts the instances' subscriptions in turn until aborted.
async fn cut_in_turn(log: Arc<BusLog>, instances: usize, (every, length): (Duration, Duration)) {
    for turn in 0.. {
        tokio::time::sleep(every - length).await;
        log.cut(turn % instances, length).await;
    }
}

/// Runs `task` on a thread and runtime of its own until told to stop: the transfers are the
/// service's admin calls, which the sessions' busy runtime would delay far past their rate.
fn on_own_thread(
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<
    (
        tokio::sync::oneshot::Sender<()>,
        std::thread::JoinHandle<()>,
    ),
    String,
> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let thread = std::thread::spawn(move || {
        runtime.block_on(async {
            tokio::select! {
                () = task => {}
                _ = stopped => {}
            }
        });
    });
    Ok((stop, thread))
}

/// The next number of a splitmix64 sequence: the transfers' choice of camera, from the seed.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Where an instance's refusals go besides the run's sink log: the `--violation-log`.
type ViolationSink = Arc<dyn Fn(&ViolationReport) + Send + Sync>;

/// A verified client and its cache, as one instance of the service: its refusals go to `sinks`
/// (the run's sink log and the `--violation-log`), its breakers' changes to the origin.
fn verified_cache(
    config: &Config,
    store: Arc<FaultyStore<Backend>>,
    ring: KeyRing,
    (sink, log): (Arc<SinkLog>, Option<ViolationSink>),
    breaker_origin: Arc<Origin>,
    bus: Option<ObservedBus>,
) -> Result<(Client, Cache<Thumbnails>), String> {
    let mut client = Client::builder()
        .key_ring(ring)
        .remote_shared(store.clone())
        .on_violation(move |report| {
            sink.record(report);
            if let Some(log) = &log {
                log(report);
            }
        })
        .on_breaker(move |event| {
            // Either breaker's change ends every fill (writes were or will be skipped); only
            // the namespace's makes loads bypass the cache tiers.
            if event.scope == BreakerScope::Namespace {
                let open = event.to == BreakerState::Open;
                breaker_origin.breaker_open.store(open, Ordering::Relaxed);
            }
            breaker_origin
                .breaker_transitions
                .fetch_add(1, Ordering::AcqRel);
        });
    if let Some(bus) = bus {
        client = client.bus(bus);
    }
    let client = client.build().map_err(|e| e.to_string())?;
    let mut cache = client
        .cache::<Thumbnails>()
        .local_capacity(config.l1_capacity)
        .ttl(config.ttl)
        .policy(config.policy());
    if let Some(stale_for) = config.stale_for {
        cache = cache.stale_for(stale_for);
    }
    if let Some(refresh_after) = config.refresh_after {
        cache = cache.refresh_after(refresh_after);
    }
    if let Some(soft_timeout) = config.soft_timeout {
        cache = cache.soft_load_timeout(soft_timeout);
    }
    if let Some(deadline) = config.deadline {
        cache = cache.max_wait(deadline);
    }
    if let Some(max_loads) = config.max_loads {
        cache = cache.max_loads(max_loads, config.load_queue);
    }
    Ok((client, cache.build().map_err(|e| e.to_string())?))
}
