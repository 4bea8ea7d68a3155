//! One device's session of the storm, and the counts it keeps: every value it is served is
//! checked against the ground truth.

use crate::config::Stop;
use crate::ground_truth::{named_owner, thumbnail};
use crate::run::{Run, Served};
use scoped_cache::{DeviceId, Key, TenantId};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::sync::Barrier;

/// One session's counts.
#[derive(Debug, Default)]
pub struct Tally {
    pub requests: u64,
    pub served: u64,
    /// Values that were not the requested thumbnail: another owner's, or damaged.
    pub leaks: u64,
    pub leaks_other_owner: u64,
    pub errors: u64,
    /// Errors answered to the old owner of a camera that `--transfers` moved: its due.
    pub denied: u64,
    /// Stale values served (fail-safe answers), and the oldest of them.
    pub served_stale: u64,
    pub stale_age_max: std::time::Duration,
    pub leak_examples: Vec<String>,
    pub error_examples: Vec<String>,
}

impl Tally {
    pub fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.served += other.served;
        self.leaks += other.leaks;
        self.leaks_other_owner += other.leaks_other_owner;
        self.errors += other.errors;
        self.denied += other.denied;
        self.served_stale += other.served_stale;
        self.stale_age_max = self.stale_age_max.max(other.stale_age_max);
        self.leak_examples.extend(other.leak_examples);
        self.leak_examples.truncate(MAX_EXAMPLES);
        self.error_examples.extend(other.error_examples);
        self.error_examples.truncate(MAX_EXAMPLES);
    }
}

const MAX_EXAMPLES: usize = 5;
/// Latencies a session gathers before adding them to the shared histogram.
pub const LATENCY_BATCH: usize = 256;

/// One device's session: waits at the barrier with every other, then fetches the device's
/// items in turn until it has sent its share of the requests (`Stop::Requests`, this session's
/// share) or the time since the barrier has passed (`Stop::After`).
///
/// A read served from memory (the in-process tier, or a `MemoryStore` hit) completes without
/// ever waiting, so nothing in the fetch hands the worker back to the scheduler: a session
/// over warm keys would keep its worker until it stops, starving every other task on it (the
/// other sessions, the timers, the progress ticker). So the loop spends a unit of the task's
/// co-operative budget per request, which yields once the budget is spent, as awaiting any
/// Tokio resource would; and it checks the deadline against the clock itself, so that it does
/// not depend on another task getting to run to be told to stop.
pub async fn session(
    run: Arc<Run>,
    barrier: Arc<Barrier>,
    tenant: u64,
    device_index: u64,
    stop: Stop,
) -> Tally {
    let population = run.population;
    let mut tally = Tally::default();
    let mut latencies = Vec::with_capacity(LATENCY_BATCH);
    barrier.wait().await;
    let released = *run.started.get_or_init(Instant::now);
    run.origin.release(released);
    let mut sent = 0u64;
    // Requests go to the instances in turn, each device's sessions starting at another one.
    let first_instance = (tenant * population.devices_per_tenant + device_index) as usize;
    loop {
        tokio::task::coop::consume_budget().await;
        let started = Instant::now();
        let done = match stop {
            Stop::Requests(share) => sent >= share,
            Stop::After(limit) => started.saturating_duration_since(released) >= limit,
        };
        if done {
            break;
        }
        let item = sent % population.items_per_device;
        sent += 1;
        let instance = (first_instance + sent as usize) % run.path.instances();
        tally
            .fetch_and_check(
                &run,
                instance,
                (tenant, device_index, item),
                started,
                &mut latencies,
            )
            .await;
    }
    record_latencies(&run, &mut latencies);
    tally
}

impl Tally {
    /// One request: fetches `item` of `tenant`'s `device_index`-th device, checks what it is
    /// served against ground truth, and counts it; its latency counts from `since` (into
    /// `latencies`, a batch for the shared histogram).
    pub async fn fetch_and_check(
        &mut self,
        run: &Run,
        instance: usize,
        ids: (u64, u64, u64),
        since: Instant,
        latencies: &mut Vec<u64>,
    ) {
        let (tenant, device_index, item) = ids;
        let device = run.population.device(tenant, device_index);
        let key = Key::new(TenantId::from_u64(tenant), DeviceId::from_u64(device), item);
        let started = Instant::now();
        let fetched = run.path.fetch(instance, &key, run, ids).await;
        latencies.push(since.elapsed().as_micros() as u64);
        if latencies.len() == LATENCY_BATCH {
            record_latencies(run, latencies);
        }
        self.requests += 1;
        match fetched {
            Ok(Served { value, stale_age }) => {
                self.served += 1;
                if let Some(transfers) = &run.transfers {
                    transfers.served(instance, tenant, device_index, started);
                }
                if let Some(age) = stale_age {
                    self.served_stale += 1;
                    self.stale_age_max = self.stale_age_max.max(age);
                }
                // Ground truth is recomputed here, independently of the cache's verdict.
                if value != thumbnail(tenant, device, item) {
                    self.leaks += 1;
                    if named_owner(&value).is_some_and(|(t, d, _)| (t, d) != (tenant, device)) {
                        self.leaks_other_owner += 1;
                    }
                    if self.leak_examples.len() < MAX_EXAMPLES {
                        self.leak_examples
                            .push(describe_leak(tenant, device, item, &value));
                    }
                }
            }
            Err(_)
                if run
                    .transfers
                    .as_ref()
                    .is_some_and(|t| t.is_moved(tenant, device_index)) =>
            {
                self.denied += 1;
            }
            Err(error) => {
                self.errors += 1;
                if self.error_examples.len() < MAX_EXAMPLES {
                    self.error_examples.push(error);
                }
            }
        }
        run.done.fetch_add(1, Ordering::Relaxed);
    }
}

pub fn record_latencies(run: &Run, latencies: &mut Vec<u64>) {
    let mut histogram = run.latency_us.lock().unwrap_or_else(|e| e.into_inner());
    for &us in latencies.iter() {
        histogram.saturating_record(us.max(1));
    }
    latencies.clear();
}

fn describe_leak(tenant: u64, device: u64, item: u64, value: &[u8]) -> String {
    let whose = match named_owner(value) {
        Some((t, d, i)) if (t, d) != (tenant, device) => {
            format!("the thumbnail of tenant {t}, device {d}, item {i}")
        }
        Some((_, _, i)) if i != item => format!("its own item {i}"),
        _ => format!("{} bytes that are not its thumbnail", value.len()),
    };
    format!("tenant {tenant}, device {device}, item {item} was served {whose}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::namespace::key_ring;
    use crate::origin::Origin;
    use crate::run::Path;
    use hdrhistogram::Histogram;
    use scoped_cache::{Client, MemoryStore};
    use std::sync::atomic::AtomicU64;
    use std::sync::{Mutex, OnceLock};
    use std::time::Duration;

    /// A run whose every read is ready at once: no in-process tier, a `MemoryStore` behind it,
    /// an origin without latency.
    fn always_ready_run() -> Run {
        let config = Config {
            tenants: 2,
            devices_per_tenant: 1,
            items_per_device: 2,
            l1_capacity: 0,
            origin_latency: Duration::ZERO,
            ..Config::default()
        };
        let ring = key_ring().unwrap_or_else(|e| unreachable!("{e}"));
        let client = Client::builder()
            .key_ring(ring)
            .remote_shared(Arc::new(MemoryStore::new(1 << 20)))
            .build()
            .unwrap_or_else(|e| unreachable!("{e}"));
        let cache = client
            .cache()
            .local_capacity(0)
            .build()
            .unwrap_or_else(|e| unreachable!("{e}"));
        Run {
            path: Path::Verified(vec![cache]),
            refreshing: false,
            origin: Arc::new(Origin::new(&config, tokio::runtime::Handle::current())),
            transfers: None,
            population: config.population(),
            done: AtomicU64::new(0),
            started: OnceLock::new(),
            latency_us: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3)
                    .unwrap_or_else(|e| unreachable!("{e}")),
            ),
        }
    }

    /// The bug this guards against: a session whose reads never wait kept its worker, so the
    /// timer that was to stop it never ran and `--duration 1s` ran until the TTL. On a runtime
    /// of one thread, the session must stop by itself and let a timer task tick meanwhile. The
    /// runtime runs on a thread of its own, so that a session that never stops fails the test
    /// after a generous bound instead of hanging it.
    #[test]
    fn a_session_that_never_waits_stops_on_time_and_lets_other_tasks_run() {
        let (sender, outcome) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap_or_else(|e| unreachable!("{e}"));
            let counts = runtime.block_on(async {
                let run = Arc::new(always_ready_run());
                let ticks = Arc::new(AtomicU64::new(0));
                let ticker = tokio::spawn({
                    let ticks = Arc::clone(&ticks);
                    async move {
                        loop {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            ticks.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
                let stop = Stop::After(Duration::from_millis(200));
                let tally = tokio::spawn(session(run, Arc::new(Barrier::new(1)), 0, 0, stop))
                    .await
                    .unwrap_or_else(|e| unreachable!("{e}"));
                ticker.abort();
                (tally, ticks.load(Ordering::Relaxed))
            });
            let _ = sender.send(counts);
        });
        let (tally, ticks) = outcome
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the session did not stop within 60 s of a 200 ms run"));
        assert!(tally.served > 2, "it served {} values", tally.served);
        assert_eq!((tally.leaks, tally.errors), (0, 0));
        assert!(ticks > 0, "the session starved the timer task");
    }
}
