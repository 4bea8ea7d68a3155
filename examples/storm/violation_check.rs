//! `--violation-log PATH`: the verified run's violation reports go to a `ViolationLog` as well;
//! after the run the log is read back with the code `scoped-cache-audit report` runs, and its
//! owner pairs must equal the harness's own ground truth: which owner's stored value each
//! injected `swap` and `confuse` handed to which other owner's read (`FaultyStore`'s
//! misdirect observer), and how often.

#[allow(dead_code)] // the audit's report code, of which the storm uses the reading part
#[path = "../../src/bin/scoped_cache_audit/violation_report.rs"]
mod violation_report;

use scoped_cache::ViolationLog;
use scoped_cache::envelope::RawKey;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use violation_report::{Owner, read_logs};

/// (owner read, owner whose value was handed out) → how many times: what the store injected.
#[derive(Default)]
pub struct GroundTruth(Mutex<BTreeMap<(Owner, Owner), u64>>);

impl GroundTruth {
    /// A `swap` or `confuse` handed the value stored under `source` to a read of `read`.
    pub fn record(&self, read: &[u8], source: &[u8]) {
        let (Ok(read), Ok(source)) = (RawKey::decode(read), RawKey::decode(source)) else {
            return;
        };
        let pair = (Owner::of(&read.owner), Owner::of(&source.owner));
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(pair)
            .or_default() += 1;
    }
}

/// The log and the ground truth of one verified run.
pub struct ViolationCheck {
    pub log: ViolationLog,
    pub truth: Arc<GroundTruth>,
}

impl ViolationCheck {
    /// Starts a log at `path` (replacing the file).
    pub fn open(path: &Path) -> Result<Self, String> {
        let _ = std::fs::remove_file(path);
        let log = ViolationLog::builder(path)
            .max_bytes(1 << 30)
            .open()
            .map_err(|error| {
                format!("cannot open the violation log {}: {error}", path.display())
            })?;
        Ok(Self {
            log,
            truth: Arc::default(),
        })
    }

    /// Flushes the log, reads it back as `scoped-cache-audit report` does, and compares its
    /// owner pairs with the ground truth: the summary, and whether they are equal.
    pub fn verdict(&self) -> Result<(String, bool), String> {
        self.log
            .flush()
            .map_err(|error| format!("violation log: {error}"))?;
        let report = read_logs(&[self.log.path().to_path_buf()])?;
        let truth = self.truth.0.lock().unwrap_or_else(|e| e.into_inner());
        let injected: u64 = truth.values().sum();
        let own: u64 = truth
            .iter()
            .filter(|((read, source), _)| read == source)
            .map(|(_, count)| count)
            .sum();
        let expected: BTreeMap<(&Owner, &Owner), u64> = truth
            .iter()
            .filter(|((read, source), _)| read != source)
            .map(|((read, source), count)| ((read, source), *count))
            .collect();
        let reported: BTreeMap<(&Owner, &Owner), u64> = report
            .pairs
            .iter()
            .map(|pair| ((&pair.expected, &pair.found), pair.count))
            .collect();
        // Lines that name a found owner; the rest (bad tag, malformed) come from other faults.
        let attributed = reported.values().sum::<u64>() + report.own_data_refused;
        let stats = self.log.stats();
        let equal = reported == expected
            && report.own_data_refused == own
            && attributed == injected
            && stats.dropped_queue_full + stats.dropped_log_full == 0;
        let mut summary = format!(
            "violation log {}: {} line(s) ({} dropped)\n{}",
            self.log.path().display(),
            stats.logged,
            stats.dropped_queue_full + stats.dropped_log_full,
            report.text(5)
        );
        summary.push_str(&format!(
            "ground truth (swap and confuse injected): {injected} wrong value(s), {} pair(s) of \
             different owners, {own} of the owner's own other item\n\
             report over the log vs ground truth: {}\n",
            expected.len(),
            if equal {
                "EQUAL (every pair and count)"
            } else {
                "DIFFERENT"
            }
        ));
        if !equal {
            let missing = expected
                .iter()
                .filter(|(pair, count)| reported.get(pair) != Some(count))
                .count();
            let extra = reported
                .iter()
                .filter(|(pair, count)| expected.get(pair) != Some(count))
                .count();
            summary.push_str(&format!(
                "  {missing} injected pair(s) missing or miscounted in the log, {extra} logged pair(s) not injected or miscounted; own-item refusals logged {} vs {own}; refusals naming an owner logged {attributed} vs {injected}\n",
                report.own_data_refused
            ));
        }
        Ok((summary, equal))
    }
}
