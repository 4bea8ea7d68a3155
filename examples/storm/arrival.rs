//! Open-loop arrivals (`--rate`): requests arrive on a fixed schedule, `--rate` per second,
//! whatever the cache answers, and at most `--in-flight` run at once.
//!
//! The default storm is closed-loop: every session is spawned before the barrier and sends its
//! next request as soon as its last one is answered. At a million devices that is two million
//! tasks on two cores, and a request's latency is then mostly the wait for the scheduler to
//! come round to its task again, which measures the harness, not the cache. With `--rate`, the
//! harness creates no more work than it is asked to: request `i` is due `i / rate` seconds
//! after the start, and one of `--in-flight` workers sends it then (or as soon as one is free).
//! Its latency counts from when it was *due*, not from when a worker got to it, so a harness
//! (or a cache) that falls behind the schedule shows as latency rather than hiding it
//! (no coordinated omission); `arrival.late_p99_us` says how late requests were sent.
//!
//! Request `i` is the `i / sessions`-th request of session `i % sessions`, in the order the
//! closed-loop storm's sessions would send theirs: a device's sessions are adjacent, so they
//! ask for the same cold key at the same moment, and every device fetches its items in turn.

use crate::config::Stop;
use crate::population::Population;
use crate::run::Run;
use crate::session::{LATENCY_BATCH, Tally, record_latencies};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the arrivals kept to their schedule (the report's `arrival` object).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ArrivalSummary {
    /// `--rate`: requests due per second.
    pub rate_per_s: f64,
    /// `--in-flight`: the most requests sent and not yet answered.
    pub in_flight: usize,
    /// Requests sent per second of the run.
    pub sent_per_s: f64,
    /// How late after its due time a request was sent (all workers busy, or the machine
    /// behind): p50, p99 and max in µs.
    pub late_p50_us: u64,
    pub late_p99_us: u64,
    pub late_max_us: u64,
}

/// The schedule the workers share.
struct Schedule {
    run: Arc<Run>,
    started: Instant,
    rate: f64,
    stop: Stop,
    /// The next request's number.
    next: AtomicU64,
    sessions_per_device: u64,
    /// How late requests were sent, in µs: one histogram for all workers (one each would
    /// take ~180 KiB a worker).
    late_us: Mutex<Histogram<u64>>,
}

impl Schedule {
    /// When request `i` is due.
    fn due(&self, i: u64) -> Instant {
        self.started + Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// The next request to send, if the run is not over.
    fn claim(&self) -> Option<u64> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let over = match self.stop {
            Stop::Requests(total) => i >= total,
            Stop::After(limit) => self.due(i) >= self.started + limit,
        };
        (!over).then_some(i)
    }
}

/// Sends the run's requests on schedule from `started`, with `in_flight` workers, and returns
/// their counts and how late they were sent.
pub async fn arrivals(
    run: Arc<Run>,
    started: Instant,
    rate: f64,
    in_flight: usize,
    stop: Stop,
    sessions_per_device: u64,
) -> (Tally, ArrivalSummary) {
    let schedule = Arc::new(Schedule {
        run,
        started,
        rate,
        stop,
        next: AtomicU64::new(0),
        sessions_per_device,
        late_us: Mutex::new(new_histogram()),
    });
    let workers: Vec<_> = (0..in_flight)
        .map(|_| tokio::spawn(worker(Arc::clone(&schedule))))
        .collect();
    let mut tally = Tally::default();
    for worker in workers {
        match worker.await {
            Ok(done) => tally.merge(done),
            Err(error) => eprintln!("storm: an arrival worker failed: {error}"),
        }
    }
    let late = schedule.late_us.lock().unwrap_or_else(|e| e.into_inner());
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let summary = ArrivalSummary {
        rate_per_s: rate,
        in_flight,
        sent_per_s: tally.requests as f64 / elapsed,
        late_p50_us: late.value_at_quantile(0.5),
        late_p99_us: late.value_at_quantile(0.99),
        late_max_us: late.max(),
    };
    (tally, summary)
}

/// One worker: sends the next due request, waits for its answer, checks it; until the run is
/// over.
async fn worker(schedule: Arc<Schedule>) -> Tally {
    let run = &schedule.run;
    let mut tally = Tally::default();
    let mut late = Vec::with_capacity(LATENCY_BATCH);
    let mut latencies = Vec::with_capacity(LATENCY_BATCH);
    while let Some(i) = schedule.claim() {
        let due = schedule.due(i);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        } else {
            // Behind schedule: nothing here waits, so spend budget to let other tasks run.
            tokio::task::coop::consume_budget().await;
        }
        late.push(due.elapsed().as_micros() as u64);
        if late.len() == LATENCY_BATCH {
            record_late(&schedule, &mut late);
        }
        let (tenant, device_index, item) =
            request(&run.population, schedule.sessions_per_device, i);
        // Requests go to the instances in turn.
        let instance = (i % run.path.instances() as u64) as usize;
        let ids = (tenant, device_index, item);
        tally
            .fetch_and_check(run, instance, ids, due, &mut latencies)
            .await;
    }
    record_latencies(run, &mut latencies);
    record_late(&schedule, &mut late);
    tally
}

/// The (tenant, device index, item) of request `i`: the `i / sessions`-th request of session
/// `i % sessions`, a device's sessions numbered one after another.
fn request(population: &Population, sessions_per_device: u64, i: u64) -> (u64, u64, u64) {
    let sessions = population.tenants * population.devices_per_tenant * sessions_per_device;
    let (session, nth) = (i % sessions, i / sessions);
    let device_slot = session / sessions_per_device;
    (
        device_slot / population.devices_per_tenant,
        device_slot % population.devices_per_tenant,
        nth % population.items_per_device,
    )
}

fn record_late(schedule: &Schedule, late: &mut Vec<u64>) {
    let mut histogram = schedule.late_us.lock().unwrap_or_else(|e| e.into_inner());
    for &us in late.iter() {
        histogram.saturating_record(us.max(1));
    }
    late.clear();
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("1 µs to 1 h at 3 digits are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The requests of one pass over the sessions name every device once per session, a
    /// device's sessions one after another (so they coalesce), and the next pass the next item.
    #[test]
    fn requests_follow_the_sessions_order() {
        let population = Population {
            tenants: 3,
            devices_per_tenant: 2,
            items_per_device: 2,
        };
        let request = |i| request(&population, 2, i);
        let first_pass: Vec<_> = (0..12).map(request).collect();
        assert_eq!(
            first_pass[0], first_pass[1],
            "a device's two sessions ask together"
        );
        let mut devices = first_pass.clone();
        devices.dedup();
        assert_eq!(devices.len(), 6, "every device once: {devices:?}");
        assert!(first_pass.iter().all(|&(_, _, item)| item == 0));
        assert!((12..24).map(request).all(|(_, _, item)| item == 1));
        assert_eq!(request(24), request(0), "then the first item again");
    }
}
