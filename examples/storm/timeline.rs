//! Throughput, hit ratio and errors per interval of a run (`--timeline D`): how the run changed
//! over time, around a failover say, where the report's totals only give the whole run.

use serde::Serialize;
use std::time::Duration;

/// The run's cumulative counts at one instant, `at` after the barrier.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Duration,
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub remote_errors: u64,
    pub backend_errors: u64,
}

/// What the run did between two samples.
#[derive(Debug, Clone, Serialize)]
pub struct Interval {
    /// Seconds after the barrier.
    pub from_s: f64,
    pub to_s: f64,
    /// Requests finished.
    pub requests: u64,
    pub ops_per_s: f64,
    /// Reads served from either tier.
    pub hits: u64,
    pub misses: u64,
    /// `hits / (hits + misses)`; none when nothing was read.
    pub hit_ratio: Option<f64>,
    /// Failed remote reads and writes, injected or not.
    pub remote_errors: u64,
    /// Calls the backend itself failed (not injected).
    pub backend_errors: u64,
}

/// The intervals between consecutive samples.
pub fn intervals(samples: &[Sample]) -> Vec<Interval> {
    samples
        .windows(2)
        .map(|pair| {
            let (from, to) = (pair[0], pair[1]);
            let (hits, misses) = (to.hits - from.hits, to.misses - from.misses);
            let requests = to.requests - from.requests;
            let seconds = (to.at - from.at).as_secs_f64();
            Interval {
                from_s: from.at.as_secs_f64(),
                to_s: to.at.as_secs_f64(),
                requests,
                ops_per_s: requests as f64 / seconds.max(1e-9),
                hits,
                misses,
                hit_ratio: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
                remote_errors: to.remote_errors - from.remote_errors,
                backend_errors: to.backend_errors - from.backend_errors,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_the_differences_of_consecutive_samples() {
        let sample = |at_ms, requests, hits, misses| Sample {
            at: Duration::from_millis(at_ms),
            requests,
            hits,
            misses,
            remote_errors: requests / 10,
            backend_errors: 0,
        };
        let samples = [
            sample(0, 0, 0, 0),
            sample(500, 100, 60, 40),
            sample(1000, 100, 60, 40),
        ];
        let intervals = intervals(&samples);
        assert_eq!(intervals.len(), 2);
        assert_eq!(
            (intervals[0].requests, intervals[0].remote_errors),
            (100, 10)
        );
        assert_eq!(intervals[0].ops_per_s, 200.0);
        assert_eq!(intervals[0].hit_ratio, Some(0.6));
        assert_eq!((intervals[1].from_s, intervals[1].to_s), (0.5, 1.0));
        assert_eq!(intervals[1].hit_ratio, None, "nothing read");
    }
}
