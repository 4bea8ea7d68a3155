//! What a run measured, and the checks that decide pass or fail. The text summary and the JSON
//! report are in `report/text.rs` and `report/json.rs`.

mod json;
mod text;

use crate::config::Config;
use crate::fault_plan::Group;
use crate::latency::Latency;
use crate::origin::OriginSummary;
use crate::session::Tally;
use scoped_cache::testing::{FaultCounts, FaultKind};
use scoped_cache::{FreshnessKind, Stats, ViolationKind};
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
pub struct RunReport {
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
    pub l2_evictions: Option<u64>,
    pub sink_local: u64,
    pub sink_remote: u64,
    pub sink_examples: Vec<(String, String)>,
    pub latency: Latency,
    pub elapsed: Duration,
    /// Writing yesterday's values and spawning the sessions, before the barrier.
    pub prepared: Duration,
}

impl RunReport {
    fn ops_per_s(&self) -> f64 {
        self.tally.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn violations(&self, kind: ViolationKind) -> u64 {
        self.stats.map_or(0, |stats| stats.violations.get(kind))
    }

    fn freshness_misses(&self, kind: FreshnessKind) -> u64 {
        self.stats
            .map_or(0, |stats| stats.freshness_misses.get(kind))
    }

    /// Wrong values refused without an alarm: freshness misses (stale injections, and corrupted
    /// key ids that name no key of the ring). Normal operation produces none.
    fn freshness_refused(&self) -> u64 {
        self.stats.map_or(0, |stats| stats.freshness_misses.total())
    }

    fn injected_of(&self, kinds: &[FaultKind]) -> u64 {
        kinds.iter().map(|&kind| self.injected.get(kind)).sum()
    }

    /// Injected faults that hand out a value the cache must refuse.
    fn wrong_values_injected(&self) -> u64 {
        self.injected
            .iter()
            .filter(|(kind, _)| kind.is_wrong_value())
            .map(|(_, n)| n)
            .sum()
    }

    /// Injected faults that fail the read.
    fn errors_injected(&self) -> u64 {
        self.injected
            .iter()
            .filter(|(kind, _)| kind.is_error())
            .map(|(_, n)| n)
            .sum()
    }

    /// Every wrong value the store handed out came back as a remote-tier violation or, for a
    /// stale value or a key id no ring has, as a freshness miss.
    fn all_refused(&self) -> bool {
        self.wrong_values_injected() == self.sink_remote + self.freshness_refused()
    }

    pub fn ok(&self) -> bool {
        self.tally.leaks == 0 && self.all_refused()
    }

    /// Why injected wrong values and remote violations differ, when they do.
    fn mismatch_reason(&self) -> Option<String> {
        let (injected, refused) = (
            self.wrong_values_injected(),
            self.sink_remote + self.freshness_refused(),
        );
        if injected == refused {
            return None;
        }
        Some(if refused > injected {
            format!(
                "{} more remote refusals than injected wrong values: the store held values \
                 that fail verification without help ({} expired beyond the clock-skew \
                 allowance), or a replay was refused; anything else is a bug",
                refused - injected,
                self.freshness_misses(FreshnessKind::Expired)
                    .saturating_sub(self.injected.get(FaultKind::Stale))
            )
        } else {
            format!(
                "{} injected wrong values were not refused: one passed verification (see \
                 leaks), or a read was abandoned between the store and the check",
                injected - refused
            )
        })
    }

    fn breaker(&self) -> (u64, u64) {
        self.stats
            .map_or((0, 0), |stats| (stats.breaker_trips, stats.breaker_open_ms))
    }

    fn group_counts(&self, group: &Group) -> (u64, u64) {
        let refused = group
            .violations
            .iter()
            .map(|&k| self.violations(k))
            .sum::<u64>()
            + group
                .freshness
                .iter()
                .map(|&k| self.freshness_misses(k))
                .sum::<u64>();
        (self.injected_of(group.faults), refused)
    }
}

/// The whole report: the verified run and, with `--baseline-unverified`, the naive one.
pub struct Report {
    pub config: Config,
    pub verified: RunReport,
    pub naive: Option<RunReport>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.verified.ok()
    }
}
