//! One device's session of the storm, and the counts it keeps: every value it is served is
//! checked against the ground truth.

use crate::ground_truth::{named_owner, thumbnail};
use crate::run::Run;
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
        self.leak_examples.extend(other.leak_examples);
        self.leak_examples.truncate(MAX_EXAMPLES);
        self.error_examples.extend(other.error_examples);
        self.error_examples.truncate(MAX_EXAMPLES);
    }
}

const MAX_EXAMPLES: usize = 5;
/// Latencies a session gathers before adding them to the shared histogram.
const LATENCY_BATCH: usize = 256;

/// One device's session: waits at the barrier with every other, then fetches the device's
/// items in turn.
pub async fn session(
    run: Arc<Run>,
    barrier: Arc<Barrier>,
    tenant: u64,
    device_index: u64,
    requests: Option<u64>,
) -> Tally {
    let population = run.population;
    let device = population.device(tenant, device_index);
    let mut tally = Tally::default();
    let mut latencies = Vec::with_capacity(LATENCY_BATCH);
    barrier.wait().await;
    let mut sent = 0u64;
    while requests.is_none_or(|limit| sent < limit) && !run.stopped.load(Ordering::Relaxed) {
        let item = sent % population.items_per_device;
        sent += 1;
        let key = Key::new(TenantId::from_u64(tenant), DeviceId::from_u64(device), item);
        let started = Instant::now();
        let fetched = run
            .path
            .fetch(&key, &run.origin, tenant, device_index, item)
            .await;
        latencies.push(started.elapsed().as_micros() as u64);
        if latencies.len() == LATENCY_BATCH {
            record_latencies(&run, &mut latencies);
        }
        tally.requests += 1;
        match fetched {
            Ok(value) => {
                tally.served += 1;
                // Ground truth is recomputed here, independently of the cache's verdict.
                if value != thumbnail(tenant, device, item) {
                    tally.leaks += 1;
                    if named_owner(&value).is_some_and(|(t, d, _)| (t, d) != (tenant, device)) {
                        tally.leaks_other_owner += 1;
                    }
                    if tally.leak_examples.len() < MAX_EXAMPLES {
                        tally
                            .leak_examples
                            .push(describe_leak(tenant, device, item, &value));
                    }
                }
            }
            Err(error) => {
                tally.errors += 1;
                if tally.error_examples.len() < MAX_EXAMPLES {
                    tally.error_examples.push(error);
                }
            }
        }
        run.done.fetch_add(1, Ordering::Relaxed);
    }
    record_latencies(&run, &mut latencies);
    tally
}

fn record_latencies(run: &Run, latencies: &mut Vec<u64>) {
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
