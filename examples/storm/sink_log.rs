//! The verified client's violation sink: refusals counted by tier, the first of each kind kept.

use scoped_cache::{Tier, Violation, ViolationReport};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the violation sink saw, by tier, with the first report of each kind as an operator
/// would read it.
#[derive(Default)]
pub struct SinkLog {
    pub local: AtomicU64,
    pub remote: AtomicU64,
    /// (label, report text), one per label.
    pub examples: Mutex<Vec<(String, String)>>,
}

impl SinkLog {
    pub fn record(&self, report: &ViolationReport) {
        match report.tier {
            Tier::Local => &self.local,
            // `Tier` is non-exhaustive; any tier below L1 counts as remote.
            _ => &self.remote,
        }
        .fetch_add(1, Ordering::Relaxed);
        let label = match &report.violation {
            Violation::OwnerMismatch { expected, found }
                if found.tenant.as_u64() == expected.device.as_u64()
                    && found.device.as_u64() == expected.tenant.as_u64() =>
            {
                "owner_mismatch (tenant/device exchanged)".to_owned()
            }
            violation => violation.kind().name().to_owned(),
        };
        let mut examples = self.examples.lock().unwrap_or_else(|e| e.into_inner());
        if !examples.iter().any(|(seen, _)| *seen == label) {
            let text = format!(
                "{:?} tier, read for {}: {}",
                report.tier, report.expected, report.violation
            );
            examples.push((label, text));
        }
    }
}
