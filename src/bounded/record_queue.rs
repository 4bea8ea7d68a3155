//! One S3-FIFO queue of records, from which stale records are swept out a few at a time.
//!
//! A removed entry (or one replaced by an entry of another weight) leaves its record in the queue
//! until it is popped, which in a map that never fills is never. Dropping them all in one pass
//! held the policy shard's lock for the whole pass: at 4,000,000 entries, a pass over a shard's
//! 1,000,000 records (a map lookup each) took 0.5–0.9 s, and every writer of the shard waited. A sweep here looks at a bounded
//! number of records per call and keeps the queue's order, while records are pushed and popped
//! between calls.

use super::s3fifo::Record;
use std::collections::VecDeque;

pub(super) struct RecordQueue<K> {
    /// The queue's front: the records the sweep in progress has looked at and kept, in order.
    kept: VecDeque<Record<K>>,
    /// The rest of the queue, in order; the sweep in progress has yet to look at the first
    /// `unswept` of them. Empty `kept` whenever `unswept` is 0.
    rest: VecDeque<Record<K>>,
    unswept: usize,
}

impl<K> Default for RecordQueue<K> {
    fn default() -> Self {
        Self {
            kept: VecDeque::new(),
            rest: VecDeque::new(),
            unswept: 0,
        }
    }
}

impl<K> RecordQueue<K> {
    pub(super) fn len(&self) -> usize {
        self.kept.len() + self.rest.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn push_back(&mut self, record: Record<K>) {
        self.rest.push_back(record);
    }

    pub(super) fn pop_front(&mut self) -> Option<Record<K>> {
        if self.unswept == 0 {
            // No sweep in progress, so nothing is kept apart: the common case, on every eviction.
            return self.rest.pop_front();
        }
        if let Some(record) = self.kept.pop_front() {
            return Some(record);
        }
        let record = self.rest.pop_front()?;
        self.unswept -= 1;
        Some(record)
    }

    /// Whether a sweep is in progress.
    pub(super) fn is_sweeping(&self) -> bool {
        self.unswept > 0
    }

    /// Begins a sweep of every record queued now (records pushed later are not looked at).
    pub(super) fn begin_sweep(&mut self) {
        if !self.is_sweeping() {
            self.unswept = self.rest.len();
            // Room for every record kept, so that no push copies what was kept so far.
            self.kept.reserve(self.unswept);
        }
    }

    /// Looks at up to `budget` more records of the sweep in progress (taking them off the
    /// budget) and drops those `is_live` rejects; returns the weight it dropped.
    pub(super) fn sweep(
        &mut self,
        budget: &mut usize,
        mut is_live: impl FnMut(&Record<K>) -> bool,
    ) -> u64 {
        let mut dropped = 0;
        while *budget > 0 && self.unswept > 0 {
            let Some(record) = self.rest.pop_front() else {
                self.unswept = 0;
                break;
            };
            *budget -= 1;
            self.unswept -= 1;
            if is_live(&record) {
                self.kept.push_back(record);
            } else {
                dropped += record.weight;
            }
        }
        if self.unswept == 0 && !self.kept.is_empty() {
            // The kept records go back in front of those pushed since the sweep began: a
            // copy of those few, not of the queue.
            self.kept.append(&mut self.rest);
            self.rest = std::mem::take(&mut self.kept);
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64) -> Record<()> {
        Record {
            key: (),
            hash: id,
            id,
            weight: id,
        }
    }

    fn ids(queue: &mut RecordQueue<()>) -> Vec<u64> {
        std::iter::from_fn(|| queue.pop_front().map(|record| record.id)).collect()
    }

    #[test]
    fn a_sweep_drops_stale_records_a_few_at_a_time_and_keeps_the_order() {
        let mut queue = RecordQueue::default();
        (0..10).for_each(|id| queue.push_back(record(id)));
        let even_are_live = |record: &Record<()>| record.id.is_multiple_of(2);
        queue.begin_sweep();
        let mut budget = 3;
        assert_eq!(
            queue.sweep(&mut budget, even_are_live),
            1,
            "looked at 0, 1, 2"
        );
        assert_eq!(budget, 0);
        assert_eq!(queue.pop_front().map(|record| record.id), Some(0));
        queue.push_back(record(11));
        let mut budget = 4;
        assert_eq!(
            queue.sweep(&mut budget, even_are_live),
            3 + 5,
            "looked at 3..=6"
        );
        let mut budget = 100;
        assert_eq!(queue.sweep(&mut budget, even_are_live), 7 + 9);
        assert_eq!(budget, 97, "only the records queued when the sweep began");
        assert!(!queue.is_sweeping());
        assert_eq!(queue.len(), 5);
        assert_eq!(ids(&mut queue), [2, 4, 6, 8, 11]);
    }

    #[test]
    fn popping_the_unswept_records_ends_the_sweep() {
        let mut queue = RecordQueue::default();
        (0..4).for_each(|id| queue.push_back(record(id)));
        queue.begin_sweep();
        assert_eq!(ids(&mut queue), [0, 1, 2, 3]);
        assert!(!queue.is_sweeping());
        queue.push_back(record(4));
        let mut budget = 10;
        assert_eq!(
            queue.sweep(&mut budget, |_| false),
            0,
            "no sweep in progress"
        );
        assert_eq!(ids(&mut queue), [4]);
    }
}
