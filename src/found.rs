//! A verified value as a tier found it, with the time it was written: fresh, or stale (past its
//! fresh time but still kept, for a namespace that serves stale values when its loader fails).

use std::time::Duration;

/// How long after it was written a value is fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FreshFor(u64);

impl FreshFor {
    /// Fresh for as long as a tier keeps it: a namespace that keeps nothing stale.
    pub(crate) const ALWAYS: Self = Self(u64::MAX);

    /// Fresh for `ttl` after it was written.
    pub(crate) fn ttl(ttl: Duration) -> Self {
        Self(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
    }

    /// Whether a value written at `created_ms` is fresh now. The clock is read only for a
    /// limited freshness; a writer's clock ahead of ours makes a value young, not old.
    #[inline]
    pub(crate) fn is_fresh(self, created_ms: u64, now_ms: impl FnOnce() -> u64) -> bool {
        self.0 == u64::MAX || now_ms().saturating_sub(created_ms) < self.0
    }
}

/// A verified value of the requested key, from either tier.
#[derive(Debug, Clone)]
pub(crate) struct Found<V> {
    pub(crate) value: V,
    /// When its writer stored it (its envelope's `created_ms`, or the in-process insert).
    pub(crate) created_ms: u64,
    /// Within its fresh time; else it is only good for a fail-safe answer.
    pub(crate) fresh: bool,
}

impl<V> Found<V> {
    /// Its age at `now_ms`.
    pub(crate) fn age(&self, now_ms: u64) -> Duration {
        Duration::from_millis(now_ms.saturating_sub(self.created_ms))
    }

    /// The value, if fresh.
    pub(crate) fn fresh(self) -> Option<V> {
        self.fresh.then_some(self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_fresh_until_its_fresh_time_has_passed() {
        let fresh_for = FreshFor::ttl(Duration::from_millis(100));
        assert!(fresh_for.is_fresh(1_000, || 1_099));
        assert!(
            !fresh_for.is_fresh(1_000, || 1_100),
            "stale from the TTL on"
        );
        assert!(
            fresh_for.is_fresh(1_000, || 900),
            "a writer's clock ahead: young"
        );
        assert!(FreshFor::ALWAYS.is_fresh(0, || u64::MAX));
    }
}
