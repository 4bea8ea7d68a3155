//! The report built from what the runs measured: the checks that decide pass or fail.

use super::{
    ByTier, ConfigSummary, Detection, GroupCount, Report, RunSummary, Verdict, ViolationExample,
    injected_where,
};
use crate::config::{Config, Stop};
use crate::fault_plan::GROUPS;
use crate::measured::Measured;
use crate::origin::OriginSummary;
use scoped_cache::testing::FaultKind;
use scoped_cache::{FreshnessKind, ViolationKind};

impl Report {
    pub fn new(config: &Config, verified: Measured, naive: Option<Measured>) -> Self {
        let verified = RunSummary::judge(verified);
        // The naive run is there to be compared with; only the verified run must pass.
        let revoked_served = verified
            .fleet
            .as_ref()
            .and_then(|fleet| fleet.transfers.as_ref())
            .map_or(0, |transfers| transfers.served_after_revocation);
        let passed = verified.leaks == 0
            && verified.detection.all_injected_wrong_values_refused
            && revoked_served == 0;
        let result = if passed { Verdict::Pass } else { Verdict::Fail };
        Self {
            verified,
            config: ConfigSummary::of(config),
            baseline_unverified: naive.map(RunSummary::judge),
            result,
        }
    }
}

impl ConfigSummary {
    fn of(config: &Config) -> Self {
        let (requests, duration_s) = match config.stop() {
            Stop::Requests(n) => (Some(n), None),
            Stop::After(limit) => (None, Some(limit)),
        };
        Self {
            tenants: config.tenants,
            devices_per_tenant: config.devices_per_tenant,
            items_per_device: config.items_per_device,
            sessions_per_device: config.sessions_per_device,
            keys: config.population().keys(),
            rate: config.rate,
            deadline_s: config.deadline,
            max_loads: config.max_loads.map(|n| (n, config.load_queue)),
            requests,
            duration_s,
            l1_capacity: config.l1_capacity,
            ttl_s: config.ttl,
            origin_latency_us: config.origin_latency,
            origin_concurrency: config.origin_concurrency,
            origin_outage: config.origin_outage.map(|window| window.to_string()),
            origin_slow: config
                .origin_slow
                .map(|(window, latency)| format!("{window}@{latency:?}")),
            stale_for_s: config.stale_for,
            refresh_after_s: config.refresh_after,
            soft_timeout_s: config.soft_timeout,
            policy: config.policy(),
            backend: config.backend_name().to_owned(),
            seed: config.seed,
            timeline_s: config.timeline,
            faults: config.faults,
        }
    }
}

impl RunSummary {
    fn judge(run: Measured) -> Self {
        let violations = |kind: ViolationKind| run.stats.map_or(0, |s| s.violations.get(kind));
        let freshness = |kind: FreshnessKind| run.stats.map_or(0, |s| s.freshness_misses.get(kind));
        let faults_injected: Vec<_> = run.injected.iter().collect();
        // Every wrong value the store handed out must come back as a remote-tier violation, or
        // (a stale value, a corrupted key id no ring has) as a freshness miss. Expiry misses the
        // store causes by itself (a write that reached it later than the expiry margin) are
        // weather: counted apart, never a failure.
        let wrong_values = injected_where(&faults_injected, FaultKind::is_wrong_value);
        let stale = run.injected.get(FaultKind::Stale);
        let expired_unaided = freshness(FreshnessKind::Expired).saturating_sub(stale);
        let refused =
            run.sink_remote + run.stats.map_or(0, |s| s.freshness_misses.total()) - expired_unaided;
        let by_group = GROUPS
            .iter()
            .map(|group| GroupCount {
                group: group.name,
                injected: group
                    .faults
                    .iter()
                    .map(|&kind| run.injected.get(kind))
                    .sum(),
                refused: group
                    .violations
                    .iter()
                    .map(|&kind| violations(kind))
                    .sum::<u64>()
                    + group
                        .freshness
                        .iter()
                        .map(|&kind| match kind {
                            // Less the expiry misses no injection caused (weather).
                            FreshnessKind::Expired => freshness(kind) - expired_unaided,
                            _ => freshness(kind),
                        })
                        .sum::<u64>(),
            })
            .collect();
        Self {
            path: run.label,
            requests: run.tally.requests,
            served: run.tally.served,
            errors: run.tally.errors,
            served_stale: run.tally.served_stale,
            stale_age_ms_max: run.tally.stale_age_max.as_millis() as u64,
            refreshes: run.stats.map_or(0, |s| s.refreshes),
            deadline_exceeded: run.stats.map_or(0, |s| s.deadline_exceeded),
            overloaded: run.stats.map_or(0, |s| s.overloaded),
            loads_abandoned: run.stats.map_or(0, |s| s.loads_abandoned),
            peak_rss_mib: crate::measured::peak_rss_mib(),
            error_examples: run.tally.error_examples,
            hits_l1: run.counts.hits_l1,
            hits_l2: run.counts.hits_l2,
            misses: run.counts.misses,
            loads: run.counts.loads,
            coalesced: run.counts.coalesced,
            load_errors: run.counts.load_errors,
            remote_reads: run.remote_reads,
            remote_errors: run.counts.remote_errors,
            backend_errors: run.backend_errors,
            backend_error_examples: run.backend_error_examples,
            l2_evictions: run.l2_evictions,
            origin_loads_per_key_max: run.origin.loads_per_key_max_per_fill,
            origin: OriginSummary {
                wasted_loads: run.stats.map_or(0, |s| s.loads_unclaimed),
                ..run.origin
            },
            breaker_trips: run.stats.map_or(0, |s| s.breaker_trips),
            breaker_open_ms: run.stats.map_or(0, |s| s.breaker_open_ms),
            faults_injected,
            faults_injected_total: run.injected.total(),
            violations_detected: run.stats.iter().flat_map(|s| s.violations.iter()).collect(),
            violations_detected_total: run.sink_local + run.sink_remote,
            freshness_misses: run
                .stats
                .iter()
                .flat_map(|s| s.freshness_misses.iter())
                .collect(),
            remote_skipped: run.stats.map_or(0, |s| s.remote_skipped),
            store_breaker_trips: run.stats.map_or(0, |s| s.store_breaker_trips),
            violations_by_tier: ByTier {
                l1: run.sink_local,
                l2: run.sink_remote,
            },
            detection: Detection {
                all_injected_wrong_values_refused: wrong_values == refused,
                by_group,
                mismatch_reason: mismatch_reason(wrong_values, refused),
                expired_unaided,
            },
            leaks: run.tally.leaks,
            leaks_other_owner: run.tally.leaks_other_owner,
            leaks_damaged: run.tally.leaks - run.tally.leaks_other_owner,
            expired_served: run.counts.expired_served,
            leak_examples: run.tally.leak_examples,
            violation_examples: run
                .sink_examples
                .into_iter()
                .map(|(kind, report)| ViolationExample { kind, report })
                .collect(),
            latency_us: run.latency,
            arrival: run.arrival,
            elapsed_s: run.elapsed.as_secs_f64(),
            prepared_s: run.prepared.as_secs_f64(),
            ops_per_s: run.tally.requests as f64 / run.elapsed.as_secs_f64().max(1e-9),
            timeline: run.timeline,
            fleet: run.fleet,
        }
    }
}

/// Why injected wrong values and remote refusals differ, when they do.
fn mismatch_reason(injected: u64, refused: u64) -> Option<String> {
    if injected == refused {
        return None;
    }
    Some(if refused > injected {
        format!(
            "{} more remote refusals than injected wrong values: the store held values that \
             fail verification without help, or a replay was refused; anything else is a bug",
            refused - injected,
        )
    } else {
        format!(
            "{} injected wrong values were not refused: one passed verification (see leaks), or \
             a read was abandoned between the store and the check",
            injected - refused
        )
    })
}
