//! What one run measured, as `run` hands it to the report to be judged.

use crate::arrival::ArrivalSummary;
use crate::fleet::FleetBusSummary;
use crate::latency::Latency;
use crate::origin::OriginSummary;
use crate::session::Tally;
use crate::timeline::Interval;
use crate::transfers::TransferSummary;
use crate::violation_check::ViolationCheck;
use scoped_cache::Stats;
use scoped_cache::testing::FaultCounts;
use serde::Serialize;
use std::time::Duration;

/// The cache's own counts, whichever path ran.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheCounts {
    pub hits_l1: u64,
    pub hits_l2: u64,
    pub misses: u64,
    pub loads: u64,
    pub coalesced: u64,
    pub load_errors: u64,
    pub remote_errors: u64,
    pub expired_served: u64,
}

/// Everything one run measured.
pub struct Measured {
    pub label: &'static str,
    pub tally: Tally,
    pub counts: CacheCounts,
    /// The library's stats (verified run only).
    pub stats: Option<Stats>,
    pub origin: OriginSummary,
    pub injected: FaultCounts,
    pub remote_reads: u64,
    /// Calls the backend itself failed (not injected).
    pub backend_errors: u64,
    /// The first of them, one per distinct message.
    pub backend_error_examples: Vec<String>,
    pub l2_evictions: Option<u64>,
    pub sink_local: u64,
    pub sink_remote: u64,
    pub sink_examples: Vec<(String, String)>,
    pub latency: Latency,
    pub elapsed: Duration,
    /// Writing yesterday's values and spawning the sessions, before the barrier.
    pub prepared: Duration,
    /// Per interval of `--timeline`; empty without it.
    pub timeline: Vec<Interval>,
    /// `--rate`: how the arrivals kept to their schedule; none for the closed-loop storm.
    pub arrival: Option<ArrivalSummary>,
    /// `--violation-log`: the verified run's log and ground truth.
    pub violation_check: Option<ViolationCheck>,
    /// `--instances`, `--transfers`: the fleet's transfers and bus.
    pub fleet: Option<FleetMeasured>,
}

/// What a fleet run measured besides what every run does.
#[derive(Debug, Serialize)]
pub struct FleetMeasured {
    /// With `--transfers`.
    #[serde(flatten)]
    pub transfers: Option<TransferSummary>,
    pub bus: FleetBusSummary,
}

/// The process's peak resident memory so far (VmHWM in `/proc/self/status`), in MiB.
pub fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}
