//! The report: what the runs measured and whether the storm passed, as plain data. It is built
//! once from the runs (`report/build.rs`, where the checks are), written as JSON by serde
//! (`--json PATH`: each field's name is its JSON key) and printed as the text summary
//! (`report/text.rs`).

mod build;
mod fields;
mod text;

use crate::arrival::ArrivalSummary;
use crate::latency::Latency;
use crate::measured::FleetMeasured;
use crate::origin::OriginSummary;
use crate::timeline::Interval;
use scoped_cache::testing::{FaultKind, FaultRates};
use scoped_cache::{FreshnessKind, Policy, ViolationKind};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// The whole report: the verified run's fields at the top level, then the configuration, the
/// naive run (with `--baseline-unverified`) and the verdict.
#[derive(Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub verified: RunSummary,
    pub config: ConfigSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_unverified: Option<RunSummary>,
    pub result: Verdict,
}

/// Pass: the verified run leaked nothing and refused every wrong value the store handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
}

/// The parameters the runs used.
#[derive(Serialize)]
pub struct ConfigSummary {
    pub tenants: u64,
    pub devices_per_tenant: u64,
    pub items_per_device: u64,
    pub sessions_per_device: u64,
    pub keys: u64,
    /// `--rate` (requests due per second); none for the closed-loop storm.
    pub rate: Option<f64>,
    /// `--deadline`; none without it.
    #[serde(serialize_with = "fields::seconds_or_null")]
    pub deadline_s: Option<Duration>,
    /// `--max-loads`, and `--load-queue` with it; none without it.
    pub max_loads: Option<(usize, usize)>,
    /// Requests in all; none when the run was timed.
    pub requests: Option<u64>,
    #[serde(serialize_with = "fields::seconds_or_null")]
    pub duration_s: Option<Duration>,
    pub l1_capacity: u64,
    #[serde(serialize_with = "fields::seconds")]
    pub ttl_s: Duration,
    #[serde(serialize_with = "fields::micros")]
    pub origin_latency_us: Duration,
    pub origin_concurrency: usize,
    /// `--origin-outage`, as `AT+FOR`; none without it.
    pub origin_outage: Option<String>,
    /// `--origin-slow`, as `AT+FOR@LATENCY`; none without it.
    pub origin_slow: Option<String>,
    #[serde(serialize_with = "fields::seconds_or_null")]
    pub stale_for_s: Option<Duration>,
    #[serde(serialize_with = "fields::seconds_or_null")]
    pub refresh_after_s: Option<Duration>,
    #[serde(serialize_with = "fields::seconds_or_null")]
    pub soft_timeout_s: Option<Duration>,
    #[serde(serialize_with = "fields::policy")]
    pub policy: Policy,
    pub backend: String,
    pub seed: u64,
    /// The `--timeline` interval; none without it.
    #[serde(serialize_with = "fields::seconds_or_null")]
    pub timeline_s: Option<Duration>,
    #[serde(serialize_with = "fields::text")]
    pub faults: FaultRates,
}

/// What one run (verified or naive) measured, and how it fared.
#[derive(Serialize)]
pub struct RunSummary {
    /// `verified` or `unverified`.
    pub path: &'static str,
    pub requests: u64,
    pub served: u64,
    /// Calls that returned an error.
    pub errors: u64,
    /// Values served past their TTL because their load failed or was slow (`--stale-for`).
    pub served_stale: u64,
    /// The oldest of them, by the age the cache reported.
    pub stale_age_ms_max: u64,
    /// Background loads started by `--refresh-after`.
    pub refreshes: u64,
    /// Calls that reached `--deadline` with no value to answer.
    pub deadline_exceeded: u64,
    /// Calls refused because the cache's loads in flight and queue were full (`--max-loads`).
    pub overloaded: u64,
    /// Queued loads dropped before reaching the origin: nobody waited for them any more.
    pub loads_abandoned: u64,
    /// The process's peak resident memory (VmHWM), in MiB; none where it cannot be read.
    pub peak_rss_mib: Option<u64>,
    pub error_examples: Vec<String>,
    pub hits_l1: u64,
    pub hits_l2: u64,
    pub misses: u64,
    /// `get_or_load` calls that ran the loader.
    pub loads: u64,
    /// Calls that waited for another caller's load of the same key.
    pub coalesced: u64,
    pub load_errors: u64,
    pub remote_reads: u64,
    pub remote_errors: u64,
    /// Calls the backend itself failed (not injected).
    pub backend_errors: u64,
    /// The first of them, one per distinct message.
    pub backend_error_examples: Vec<String>,
    /// Values the in-process `MemoryStore` evicted; none for other backends.
    pub l2_evictions: Option<u64>,
    /// The most origin loads of one key within one fill (`origin.loads_per_key_max_per_fill`).
    pub origin_loads_per_key_max: u32,
    pub origin: OriginSummary,
    pub breaker_trips: u64,
    pub breaker_open_ms: u64,
    #[serde(serialize_with = "fields::by_name")]
    pub faults_injected: Vec<(FaultKind, u64)>,
    pub faults_injected_total: u64,
    /// The library's violation counts (verified run only).
    #[serde(serialize_with = "fields::by_name")]
    pub violations_detected: Vec<(ViolationKind, u64)>,
    pub violations_detected_total: u64,
    /// Authentic values of the requested key the library did not use (expired, another
    /// schema, an unknown key id): misses, never reported as violations (verified run only).
    #[serde(serialize_with = "fields::by_name")]
    pub freshness_misses: Vec<(FreshnessKind, u64)>,
    /// Remote calls skipped while the client's store breaker was open.
    pub remote_skipped: u64,
    pub store_breaker_trips: u64,
    pub violations_by_tier: ByTier,
    pub detection: Detection,
    /// Values served that differ from the harness's own ground truth.
    pub leaks: u64,
    pub leaks_other_owner: u64,
    pub leaks_damaged: u64,
    pub expired_served: u64,
    pub leak_examples: Vec<String>,
    /// The first refusal of each kind, as the violation sink saw it.
    pub violation_examples: Vec<ViolationExample>,
    /// Latency of every call; with `--rate`, from when it was due.
    pub latency_us: Latency,
    /// `--rate`: how the arrivals kept to their schedule; absent for the closed-loop storm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arrival: Option<ArrivalSummary>,
    /// From the barrier to the last session's end.
    pub elapsed_s: f64,
    /// Writing yesterday's values and spawning the sessions, before the barrier.
    pub prepared_s: f64,
    pub ops_per_s: f64,
    /// Per interval of `--timeline`; absent without it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<Interval>,
    /// `--instances`, `--transfers`: the transfers (`served_after_revocation`, the
    /// invalidation lag) and the fleet's bus counters; absent otherwise.
    #[serde(flatten)]
    pub fleet: Option<FleetMeasured>,
}

/// Violations by the tier that refused the value.
#[derive(Serialize)]
pub struct ByTier {
    pub l1: u64,
    pub l2: u64,
}

/// Whether every wrong value the store handed out came back as a violation.
#[derive(Serialize)]
pub struct Detection {
    pub all_injected_wrong_values_refused: bool,
    pub by_group: Vec<GroupCount>,
    /// Why injected wrong values and remote refusals differ, when they do.
    pub mismatch_reason: Option<String>,
    /// Expiry misses beyond the stale values injected: a write that reached the store later
    /// than the expiry margin, or clocks further apart than the clock-skew allowance. Weather,
    /// counted apart; never a failure.
    pub expired_unaided: u64,
}

/// One group of `fault_plan::GROUPS`: its faults injected, and the violations they must produce.
#[derive(Serialize)]
pub struct GroupCount {
    pub group: &'static str,
    pub injected: u64,
    pub refused: u64,
}

/// A refusal as an operator would read it.
#[derive(Serialize)]
pub struct ViolationExample {
    /// The violation's kind, and whether tenant and device were exchanged.
    pub kind: String,
    pub report: String,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.result == Verdict::Pass
    }

    /// Writes the report as pretty-printed JSON.
    pub fn write_json(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|error| error.to_string())?;
        std::fs::write(path, text + "\n")
            .map_err(|error| format!("cannot write {}: {error}", path.display()))
    }
}

impl RunSummary {
    /// Injected faults that hand out a value the cache must refuse.
    pub fn wrong_values_injected(&self) -> u64 {
        injected_where(&self.faults_injected, FaultKind::is_wrong_value)
    }

    /// Injected faults that fail the read.
    pub fn errors_injected(&self) -> u64 {
        injected_where(&self.faults_injected, FaultKind::is_error)
    }
}

/// Injected faults of the kinds `of_kind` picks.
fn injected_where(faults: &[(FaultKind, u64)], of_kind: fn(FaultKind) -> bool) -> u64 {
    faults
        .iter()
        .filter(|&&(kind, _)| of_kind(kind))
        .map(|&(_, n)| n)
        .sum()
}
