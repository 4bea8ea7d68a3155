//! `metrics` output (feature `metrics`). Labels are the namespace, tier, operation, outcome and
//! violation kind only: bounded sets, never a tenant, device or item.

use super::{OpKind, Outcome, tier_name};
use crate::breaker::BreakerState;
use crate::error::LoadError;
use crate::freshness::FreshnessKind;
use crate::violation::{Tier, ViolationKind};
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use std::time::Duration;

const HITS: &str = "scoped_cache_hits_total";
const MISSES: &str = "scoped_cache_misses_total";
const LOADS: &str = "scoped_cache_loads_total";
const LOAD_ERRORS: &str = "scoped_cache_load_errors_total";
const VIOLATIONS: &str = "scoped_cache_violations_total";
const FRESHNESS_MISSES: &str = "scoped_cache_freshness_misses_total";
const BREAKER_STATE: &str = "scoped_cache_breaker_state";
const STORE_BREAKER_STATE: &str = "scoped_cache_store_breaker_state";
const DURATION: &str = "scoped_cache_operation_duration_seconds";

/// Registers the descriptions and units of every metric this crate emits with the installed
/// recorder (feature `metrics`). Optional: call it once after installing your exporter so
/// dashboards get help texts.
///
/// | metric | kind | labels | counts |
/// |---|---|---|---|
/// | `scoped_cache_hits_total` | counter | `namespace`, `tier` | lookups a tier answered with a verified value |
/// | `scoped_cache_misses_total` | counter | `namespace`, `tier` | lookups a tier could not answer (absent, failed or refused) |
/// | `scoped_cache_loads_total` | counter | `namespace` | loader calls by `get_or_load` |
/// | `scoped_cache_load_errors_total` | counter | `namespace`, `reason` (`loader`, `timeout`, `owner_mismatch`) | failed loads |
/// | `scoped_cache_violations_total` | counter | `namespace`, `tier`, `kind` ([`ViolationKind::name`]) | values refused as integrity failures (alert on any) |
/// | `scoped_cache_freshness_misses_total` | counter | `namespace`, `tier`, `kind` ([`FreshnessKind::name`](crate::FreshnessKind::name)) | authentic values not used: expired, another schema, an unknown key id (normal operation) |
/// | `scoped_cache_breaker_state` | gauge | `namespace` | 0 closed, 1 open, 2 half-open (`Policy::AutoBypass` only) |
/// | `scoped_cache_store_breaker_state` | gauge | none | the client's store breaker: 0 closed, 1 open, 2 half-open |
/// | `scoped_cache_operation_duration_seconds` | histogram | `namespace`, `op`, `outcome` | latency of `Cache` operations |
///
/// `op` is `get`, `get_many`, `insert`, `invalidate` or `get_or_load`; `outcome` is
/// `hit_local`, `hit_remote`, `miss`, `bypass`, `loaded`, `coalesced`, `stored`, `invalidated`
/// or `error`. A `get_many` batch is one operation: `hit_local` when every key was answered
/// in-process, `hit_remote` when every key was answered and some remotely, `miss` when any key
/// missed; the hit and miss counters count each of its keys, per tier.
///
/// # Examples
///
/// ```
/// scoped_cache::describe_metrics(); // a no-op until a recorder is installed
/// ```
pub fn describe_metrics() {
    describe_counter!(HITS, "Lookups a cache tier answered with a verified value.");
    describe_counter!(
        MISSES,
        "Lookups a cache tier could not answer: absent, failed, or refused."
    );
    describe_counter!(LOADS, "Loader calls made by get_or_load.");
    describe_counter!(LOAD_ERRORS, "Loads that failed, timed out or were refused.");
    describe_counter!(
        VIOLATIONS,
        "Cached values refused because they did not prove they belong to the requested key."
    );
    describe_counter!(
        FRESHNESS_MISSES,
        "Authentic cached values not used: expired, another schema, or an unknown key id."
    );
    describe_gauge!(
        STORE_BREAKER_STATE,
        "State of the client's store breaker: 0 closed, 1 open, 2 half-open."
    );
    describe_gauge!(
        BREAKER_STATE,
        "State of the namespace's breaker: 0 closed, 1 open, 2 half-open."
    );
    describe_histogram!(DURATION, Unit::Seconds, "Latency of cache operations.");
}

pub(super) fn lookup(namespace: &'static str, tier: Tier, hit: bool) {
    let name = if hit { HITS } else { MISSES };
    counter!(name, "namespace" => namespace, "tier" => tier_name(tier)).increment(1);
}

pub(super) fn load(namespace: &'static str) {
    counter!(LOADS, "namespace" => namespace).increment(1);
}

pub(super) fn load_error(namespace: &'static str, error: &LoadError) {
    let reason = match error {
        LoadError::Loader(_) => "loader",
        LoadError::Timeout(_) => "timeout",
        LoadError::OwnerMismatch { .. } => "owner_mismatch",
        LoadError::DeadlineExceeded(_) => "deadline_exceeded",
        LoadError::Overloaded => "overloaded",
        LoadError::Abandoned => "abandoned",
    };
    counter!(LOAD_ERRORS, "namespace" => namespace, "reason" => reason).increment(1);
}

pub(super) fn violation(namespace: &'static str, tier: Tier, kind: ViolationKind) {
    counter!(
        VIOLATIONS,
        "namespace" => namespace,
        "tier" => tier_name(tier),
        "kind" => kind.name(),
    )
    .increment(1);
}

pub(super) fn freshness(namespace: &'static str, tier: Tier, kind: FreshnessKind) {
    counter!(
        FRESHNESS_MISSES,
        "namespace" => namespace,
        "tier" => tier_name(tier),
        "kind" => kind.name(),
    )
    .increment(1);
}

fn breaker_value(state: BreakerState) -> f64 {
    match state {
        BreakerState::Closed => 0.0,
        BreakerState::Open => 1.0,
        BreakerState::HalfOpen => 2.0,
    }
}

pub(super) fn breaker(namespace: &'static str, state: BreakerState) {
    gauge!(BREAKER_STATE, "namespace" => namespace).set(breaker_value(state));
}

pub(super) fn store_breaker(state: BreakerState) {
    gauge!(STORE_BREAKER_STATE).set(breaker_value(state));
}

pub(super) fn operation(
    namespace: &'static str,
    kind: OpKind,
    outcome: Outcome,
    elapsed: Duration,
) {
    histogram!(
        DURATION,
        "namespace" => namespace,
        "op" => kind.name(),
        "outcome" => outcome.name(),
    )
    .record(elapsed.as_secs_f64());
}
