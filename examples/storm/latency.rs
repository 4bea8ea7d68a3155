//! Latency percentiles, read from the run's histogram.

use hdrhistogram::Histogram;
use serde_json::json;

/// Latency percentiles in µs.
#[derive(Debug, Clone, Copy, Default)]
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

    pub fn to_json(self) -> serde_json::Value {
        json!({ "p50": self.p50, "p99": self.p99, "p999": self.p999, "max": self.max })
    }
}
