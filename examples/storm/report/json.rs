//! The report as JSON (`--json PATH`).

use super::{Report, RunReport};
use crate::config::Stop;
use crate::fault_plan::GROUPS;
use serde_json::json;

impl RunReport {
    pub fn to_json(&self) -> serde_json::Value {
        let faults: serde_json::Map<_, _> = self
            .injected
            .iter()
            .map(|(kind, n)| (kind.name().to_owned(), json!(n)))
            .collect();
        let violations: serde_json::Map<_, _> = self
            .stats
            .iter()
            .flat_map(|stats| stats.violations.iter())
            .map(|(kind, n)| (kind.name().to_owned(), json!(n)))
            .collect();
        let groups: Vec<_> = GROUPS
            .iter()
            .map(|group| {
                let (injected, refused) = self.group_counts(group);
                json!({ "group": group.name, "injected": injected, "refused": refused })
            })
            .collect();
        let (trips, open_ms) = self.breaker();
        let o = &self.origin;
        json!({
            "path": self.label,
            "requests": self.tally.requests,
            "served": self.tally.served,
            "errors": self.tally.errors,
            "error_examples": self.tally.error_examples,
            "hits_l1": self.counts.hits_l1,
            "hits_l2": self.counts.hits_l2,
            "misses": self.counts.misses,
            "loads": self.counts.loads,
            "coalesced": self.counts.coalesced,
            "load_errors": self.counts.load_errors,
            "remote_reads": self.remote_reads,
            "remote_errors": self.counts.remote_errors,
            "backend_errors": self.backend_errors,
            "l2_evictions": self.l2_evictions,
            "origin_loads_per_key_max": o.per_key_max_per_fill,
            "origin": {
                "loads": o.loads,
                "keys_loaded": o.keys_loaded,
                "loads_per_key_max_per_fill": o.per_key_max_per_fill,
                "loads_per_key_max_over_run": o.per_key_max_total,
                "reloads_after_fill_ended": o.reloads_after_fill_ended,
                "reloads_unexplained": o.reloads_unexplained,
                "loads_while_breaker_open": o.loads_while_open,
            },
            "breaker_trips": trips,
            "breaker_open_ms": open_ms,
            "faults_injected": faults,
            "faults_injected_total": self.injected.total(),
            "violations_detected": violations,
            "violations_detected_total": self.sink_local + self.sink_remote,
            "violations_by_tier": { "l1": self.sink_local, "l2": self.sink_remote },
            "detection": {
                "all_injected_wrong_values_refused": self.all_refused(),
                "by_group": groups,
                "mismatch_reason": self.mismatch_reason(),
            },
            "leaks": self.tally.leaks,
            "leaks_other_owner": self.tally.leaks_other_owner,
            "leaks_damaged": self.tally.leaks - self.tally.leaks_other_owner,
            "expired_served": self.counts.expired_served,
            "leak_examples": self.tally.leak_examples,
            "violation_examples": self
                .sink_examples
                .iter()
                .map(|(label, text)| json!({ "kind": label, "report": text }))
                .collect::<Vec<_>>(),
            "latency_us": self.latency.to_json(),
            "elapsed_s": self.elapsed.as_secs_f64(),
            "prepared_s": self.prepared.as_secs_f64(),
            "ops_per_s": self.ops_per_s(),
        })
    }
}

impl Report {
    pub fn to_json(&self) -> serde_json::Value {
        let c = &self.config;
        let mut out = self.verified.to_json();
        let config = json!({
            "tenants": c.tenants,
            "devices_per_tenant": c.devices_per_tenant,
            "items_per_device": c.items_per_device,
            "sessions_per_device": c.sessions_per_device,
            "keys": c.population().keys(),
            "requests": match c.stop { Stop::Requests(n) => json!(n), Stop::After(_) => json!(null) },
            "duration_s": match c.stop { Stop::After(d) => json!(d.as_secs_f64()), Stop::Requests(_) => json!(null) },
            "l1_capacity": c.l1_capacity,
            "ttl_s": c.ttl.as_secs_f64(),
            "origin_latency_us": c.origin_latency.as_micros() as u64,
            "origin_concurrency": c.origin_concurrency,
            "policy": c.policy_name(),
            "backend": c.backend_name(),
            "seed": c.seed,
            "faults": c.faults.to_string(),
        });
        if let Some(object) = out.as_object_mut() {
            object.insert("config".into(), config);
            if let Some(naive) = &self.naive {
                object.insert("baseline_unverified".into(), naive.to_json());
            }
            object.insert(
                "result".into(),
                json!(if self.ok() { "pass" } else { "fail" }),
            );
        }
        out
    }
}
