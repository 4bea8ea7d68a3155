//! Latency percentiles, read from the run's histogram.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles in µs (the report's `latency_us` object).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latency {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            p50: histogram.value_at_quantile(0.5),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
    }
}
