//! The report as text, as the storm prints it.

use super::fields::describe_policy;
use super::{Report, RunSummary};
use crate::fault_plan::handled_as;
use crate::measured::FleetMeasured;
use crate::timeline::Interval;
use scoped_cache::Policy;
use std::fmt::Write as _;

impl Report {
    pub fn summary(&self) -> String {
        let c = &self.config;
        let v = &self.verified;
        let mut out = String::new();
        let sessions = c.tenants * c.devices_per_tenant * c.sessions_per_device;
        let arriving = match (c.rate, &v.arrival) {
            (Some(rate), Some(arrival)) => format!(
                "requests arrive at {rate:.0}/s, at most {} in flight",
                arrival.in_flight
            ),
            _ => format!("{sessions} sessions, released together"),
        };
        let _ = writeln!(
            out,
            "storm: {} tenants x {} devices x {} items = {} keys; {} sessions per device \
             ({arriving})",
            c.tenants, c.devices_per_tenant, c.items_per_device, c.keys, c.sessions_per_device,
        );
        let _ = writeln!(
            out,
            "       L1 {} entries; TTL {:?}; origin {:?} x {} at once; policy {}; backend {}; seed {}",
            c.l1_capacity,
            c.ttl_s,
            c.origin_latency_us,
            c.origin_concurrency,
            describe_policy(&c.policy),
            c.backend,
            c.seed
        );
        let _ = writeln!(out, "       faults {}", c.faults);
        let fail_safe: Vec<String> = [
            c.origin_outage
                .as_ref()
                .map(|w| format!("origin outage {w}")),
            c.origin_slow.as_ref().map(|w| format!("origin slow {w}")),
            c.stale_for_s.map(|d| format!("stale for {d:?}")),
            c.refresh_after_s.map(|d| format!("refresh after {d:?}")),
            c.soft_timeout_s.map(|d| format!("soft timeout {d:?}")),
            c.deadline_s.map(|d| format!("deadline {d:?}")),
            c.max_loads
                .map(|(n, queue)| format!("at most {n} loads in flight, {queue} queued")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !fail_safe.is_empty() {
            let _ = writeln!(out, "       {}", fail_safe.join("; "));
        }
        let _ = writeln!(out);
        let pct = |n: u64| 100.0 * n as f64 / v.requests.max(1) as f64;
        let _ = writeln!(
            out,
            "  throughput     {:>10.0} req/s   {} requests in {:.2} s (after {:.2} s writing \
             yesterday's values and spawning the sessions)",
            v.ops_per_s, v.requests, v.elapsed_s, v.prepared_s
        );
        let _ = writeln!(
            out,
            "  latency        p50 {} us   p99 {} us   p99.9 {} us   max {} us",
            v.latency_us.p50, v.latency_us.p99, v.latency_us.p999, v.latency_us.max
        );
        if let Some(a) = &v.arrival {
            let _ = writeln!(
                out,
                "  arrivals       {:>10.0} req/s sent of {:.0} due; sent late by p50 {} us   \
                 p99 {} us   max {} us (counted in the latency)",
                a.sent_per_s, a.rate_per_s, a.late_p50_us, a.late_p99_us, a.late_max_us
            );
        }
        for (name, n, note) in [
            ("hits L1", v.hits_l1, String::new()),
            ("hits L2", v.hits_l2, String::new()),
            (
                "loads",
                v.loads,
                "get_or_load calls that ran the loader".into(),
            ),
            (
                "coalesced",
                v.coalesced,
                "waited for another caller's load of the same key".into(),
            ),
            (
                "served stale",
                v.served_stale,
                format!(
                    "fail-safe answers, oldest {} ms; {} refreshes ahead",
                    v.stale_age_ms_max, v.refreshes
                ),
            ),
            (
                "deadline",
                v.deadline_exceeded,
                "calls that reached --deadline with nothing to serve".into(),
            ),
            (
                "overloaded",
                v.overloaded,
                format!(
                    "refused at a full load queue; {} queued loads dropped, nobody waiting",
                    v.loads_abandoned
                ),
            ),
            (
                "errors",
                v.errors,
                format!(
                    "calls that returned an error (load errors {})",
                    v.load_errors
                ),
            ),
        ] {
            let _ = writeln!(out, "  {name:<14} {n:>10}   {:5.1} %  {note}", pct(n));
        }
        let _ = writeln!(
            out,
            "  remote         {:>10} reads, {} errors ({} from the backend itself){}",
            v.remote_reads,
            v.remote_errors,
            v.backend_errors,
            v.l2_evictions
                .map(|n| format!(", {n} evictions"))
                .unwrap_or_default()
        );
        for example in &v.backend_error_examples {
            let _ = writeln!(out, "    backend error: {example}");
        }
        if v.remote_skipped > 0 {
            let _ = writeln!(
                out,
                "  store breaker  {:>10} calls skipped the store; opened {} times",
                v.remote_skipped, v.store_breaker_trips
            );
        }
        let freshness: u64 = v.freshness_misses.iter().map(|&(_, n)| n).sum();
        let kinds: Vec<String> = v
            .freshness_misses
            .iter()
            .filter(|&&(_, n)| n > 0)
            .map(|(kind, n)| format!("{n} {}", kind.name()))
            .collect();
        let _ = writeln!(
            out,
            "  freshness      {:>10} authentic values not used, never reported{}",
            freshness,
            if kinds.is_empty() {
                String::new()
            } else {
                format!(" ({})", kinds.join(", "))
            }
        );
        let o = &v.origin;
        let _ = writeln!(
            out,
            "  origin         {:>10} loads of {} keys; {} reloads after the key's fill ended \
             (refused, deleted or unstored value), {} after it expired, {} unexplained; {} \
             beside another load of the key; {} dropped by the cache before their answer{}",
            o.loads,
            o.keys_loaded,
            o.reloads_after_fill_ended,
            o.reloads_after_expiry,
            o.reloads_unexplained,
            o.loads_beside_another,
            o.loads_dropped,
            if o.loads_while_breaker_open > 0 {
                format!(
                    ", {} while the breaker was open",
                    o.loads_while_breaker_open
                )
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            out,
            "  origin_loads_per_key_max: {}   (most loads of one key within one fill; over the \
             whole run: {})",
            o.loads_per_key_max_per_fill, o.loads_per_key_max_over_run
        );
        if let Some(utilization) = o.utilization {
            let _ = writeln!(
                out,
                "  origin busy    {utilization:>10.2} of its capacity while loads queued for it; \
                 {} loads no caller received",
                o.wasted_loads
            );
        }
        if let Some(mib) = v.peak_rss_mib {
            let _ = writeln!(
                out,
                "  memory         {mib:>10} MiB peak resident (the whole process)"
            );
        }
        if let (Some(loads), Some(per_key)) = (
            o.loads_first_second_after_outage,
            o.loads_per_key_max_first_second_after_outage,
        ) {
            let _ = writeln!(
                out,
                "  after outage   {loads:>10} loads in its first second, at most {per_key} of one key"
            );
        }
        if matches!(c.policy, Policy::AutoBypass { .. }) {
            let _ = writeln!(
                out,
                "  breaker_trips: {}   (open {:.2} s in all; {} loads while open, still one \
                 per key at a time)",
                v.breaker_trips,
                v.breaker_open_ms as f64 / 1000.0,
                o.loads_while_breaker_open
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "  {:<10} {:>10}   should be", "fault", "injected");
        for &(kind, n) in &v.faults_injected {
            let _ = writeln!(out, "  {:<10} {n:>10}   {}", kind.name(), handled_as(kind));
        }
        for group in &v.detection.by_group {
            let (injected, refused) = (group.injected, group.refused);
            let mark = if injected == refused { "ok" } else { "DIFFERS" };
            let _ = writeln!(
                out,
                "  {:<38} injected {injected:>8}   refused {refused:>8}   {mark}",
                group.group
            );
        }
        let errors = v.errors_injected() + v.backend_errors;
        let mark = if errors == v.remote_errors {
            "ok"
        } else {
            "DIFFERS"
        };
        let _ = writeln!(
            out,
            "  {:<38} injected {errors:>8}   errors  {:>8}   {mark}",
            "failed calls (drop, timeout, backend)", v.remote_errors
        );
        if !v.violation_examples.is_empty() {
            let _ = writeln!(
                out,
                "  first refusal of each kind, as the violation sink saw it"
            );
        }
        for example in &v.violation_examples {
            let _ = writeln!(out, "    {}:\n      {}", example.kind, example.report);
        }
        let _ = writeln!(out);
        match &v.detection.mismatch_reason {
            None if v.wrong_values_injected() == 0 => {
                let _ = writeln!(out, "  detection: no wrong values injected, none refused");
            }
            None => {
                let _ = writeln!(
                    out,
                    "  detection: all {} injected wrong values reached the cache and were refused",
                    v.wrong_values_injected()
                );
            }
            Some(reason) => {
                let _ = writeln!(out, "  detection: MISMATCH: {reason}");
            }
        }
        for example in &v.error_examples {
            let _ = writeln!(out, "    error: {example}");
        }
        if !v.timeline.is_empty() {
            out.push_str(&timeline(&v.timeline));
        }
        let _ = writeln!(
            out,
            "  leaks: {}   (values served that differ from the harness's own ground truth)",
            v.leaks
        );
        for example in &v.leak_examples {
            let _ = writeln!(out, "    LEAK: {example}");
        }
        if let Some(fleet) = &v.fleet {
            out.push_str(&fleet_lines(fleet));
        }
        if let Some(naive) = &self.baseline_unverified {
            let _ = writeln!(out);
            out.push_str(&side_by_side(v, naive));
        }
        let _ = write!(out, "  result: {}", if self.ok() { "PASS" } else { "FAIL" });
        out
    }
}

/// The verified run next to the naive one.
fn side_by_side(verified: &RunSummary, naive: &RunSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  the same storm, side by side            {:>14} {:>22}",
        "verified", "unverified (naive)"
    );
    let rows: [(&str, u64, u64); 9] = [
        ("requests", verified.requests, naive.requests),
        ("wrong values served (leaks)", verified.leaks, naive.leaks),
        (
            "  another owner's data",
            verified.leaks_other_owner,
            naive.leaks_other_owner,
        ),
        (
            "  damaged bytes",
            verified.leaks_damaged,
            naive.leaks_damaged,
        ),
        (
            "expired values served",
            verified.expired_served,
            naive.expired_served,
        ),
        (
            "wrong values injected",
            verified.wrong_values_injected(),
            naive.wrong_values_injected(),
        ),
        ("origin loads", verified.origin.loads, naive.origin.loads),
        (
            "origin loads per key, max",
            u64::from(verified.origin.loads_per_key_max_over_run),
            u64::from(naive.origin.loads_per_key_max_over_run),
        ),
        (
            "p99 latency (us)",
            verified.latency_us.p99,
            naive.latency_us.p99,
        ),
    ];
    for (name, left, right) in rows {
        let _ = writeln!(out, "    {name:<36} {left:>14} {right:>22}");
    }
    let _ = writeln!(
        out,
        "    {:<36} {:>14.0} {:>22.0}",
        "throughput (req/s)", verified.ops_per_s, naive.ops_per_s
    );
    let _ = writeln!(
        out,
        "  (the naive client cuts the payload out of whatever the store returns, keeps it in its \
         L1 and serves it again; it has no single-flight)"
    );
    out
}

/// The `--timeline` intervals, one line each.
fn timeline(intervals: &[Interval]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  timeline   {:>6} {:>6} {:>10} {:>7} {:>13} {:>14}",
        "from s", "to s", "req/s", "hit %", "remote errors", "backend errors"
    );
    for interval in intervals {
        let hit = interval
            .hit_ratio
            .map_or_else(|| "-".into(), |ratio| format!("{:.1}", 100.0 * ratio));
        let _ = writeln!(
            out,
            "             {:>6.2} {:>6.2} {:>10.0} {hit:>7} {:>13} {:>14}",
            interval.from_s,
            interval.to_s,
            interval.ops_per_s,
            interval.remote_errors,
            interval.backend_errors
        );
    }
    out
}

/// `--instances`, `--transfers`: what the old owners were served, the lag, the bus.
fn fleet_lines(fleet: &FleetMeasured) -> String {
    let mut out = String::new();
    let bus = &fleet.bus;
    let _ = writeln!(
        out,
        "  bus            {} published, {} applied, {} gaps, {} disconnects, {} flushes, {} \
         forged, {} replayed, {} publish errors",
        bus.published,
        bus.applied,
        bus.gaps,
        bus.disconnects,
        bus.flushes,
        bus.refused_forged,
        bus.refused_replayed,
        bus.publish_errors
    );
    if let Some(t) = &fleet.transfers {
        let _ = writeln!(
            out,
            "  transfers      {} over {} instances ({} failed); old owners denied {} times",
            t.transfers, t.instances, t.transfers_failed, t.denied_after_transfer
        );
        let lag = &t.invalidation_lag_us;
        let _ = writeln!(
            out,
            "  invalidation lag  p50 {} us   p99 {} us   max {} us   (publish to the last \
             instance; {} never reached some instance)",
            lag.p50, lag.p99, lag.max, t.invalidations_undelivered
        );
        let _ = writeln!(
            out,
            "  served_after_revocation: {}   (a moved camera's value served to its old owner \
             after the transfer returned and the bus reached the instance; {} within the \
             delivery)",
            t.served_after_revocation, t.served_within_delivery
        );
    }
    out
}
