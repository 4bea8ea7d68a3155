//! Instrumentation: spans and violation events through `tracing` (feature `tracing`), counters,
//! a gauge and a latency histogram through `metrics` (feature `metrics`); and the violation log
//! ([`ViolationLog`], always available), a violation sink that writes reports to a file.
//!
//! Spans, events and labels never name a tenant, device or item: they carry the namespace, the
//! tier, the operation, its outcome and violation kinds only (all `&'static str` from a fixed
//! set). Owners and keys go only where the application sends its violation reports, such as a
//! `ViolationLog`. Without either feature every function is empty and [`Op`] is zero-sized, so
//! the call sites compile to nothing; there is no runtime switch.

#[cfg(feature = "metrics")]
mod meters;
#[cfg(feature = "tracing")]
mod spans;
mod violation_log;

#[cfg(feature = "metrics")]
pub use meters::describe_metrics;
pub use violation_log::{ViolationLog, ViolationLogBuilder, ViolationLogStats};

use crate::breaker::BreakerState;
use crate::error::LoadError;
use crate::freshness::FreshnessKind;
use crate::violation::{Tier, Violation};
use std::future::Future;

/// A cache operation, as named in span names and the `op` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpKind {
    Get,
    GetMany,
    Insert,
    Invalidate,
    GetOrLoad,
    GetOrRefresh,
}

impl OpKind {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) const fn name(self) -> &'static str {
        match self {
            OpKind::Get => "get",
            OpKind::GetMany => "get_many",
            OpKind::Insert => "insert",
            OpKind::Invalidate => "invalidate",
            OpKind::GetOrLoad => "get_or_load",
            OpKind::GetOrRefresh => "get_or_refresh",
        }
    }
}

/// How an operation ended, as recorded in the span's `outcome` field and the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answered by the in-process tier (`get_many`: every key was).
    HitLocal,
    /// Answered by the remote tier (`get_many`: every key was answered, some remotely).
    HitRemote,
    /// No verified value (`get_many`: for at least one key).
    Miss,
    /// The policy or the breaker skipped the cache (`insert`: or the cache has no tier).
    Bypass,
    /// `get_or_load` ran its loader.
    Loaded,
    /// `get_or_load` shared another caller's load.
    Coalesced,
    /// `get_or_refresh` served a stale value: the load failed or was slow.
    Stale,
    /// `insert` stored the value.
    Stored,
    /// `invalidate` removed the key.
    Invalidated,
    /// The operation returned an error.
    Error,
}

impl Outcome {
    /// A read's outcome from the tier that answered it.
    pub(crate) fn read(tier: Option<Tier>) -> Self {
        match tier {
            Some(Tier::Local) => Outcome::HitLocal,
            Some(Tier::Remote) => Outcome::HitRemote,
            None => Outcome::Miss,
        }
    }

    #[cfg_attr(not(any(feature = "tracing", feature = "metrics")), allow(dead_code))]
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Outcome::HitLocal => "hit_local",
            Outcome::HitRemote => "hit_remote",
            Outcome::Miss => "miss",
            Outcome::Bypass => "bypass",
            Outcome::Loaded => "loaded",
            Outcome::Coalesced => "coalesced",
            Outcome::Stale => "stale",
            Outcome::Stored => "stored",
            Outcome::Invalidated => "invalidated",
            Outcome::Error => "error",
        }
    }
}

/// One observed operation: its span (with `tracing`) and start time (with `metrics`).
pub(crate) struct Op {
    #[cfg(feature = "metrics")]
    namespace: &'static str,
    #[cfg(feature = "metrics")]
    kind: OpKind,
    #[cfg(feature = "metrics")]
    started: std::time::Instant,
    #[cfg(feature = "tracing")]
    span: ::tracing::Span,
}

impl Op {
    /// Starts observing an operation of `namespace`.
    #[inline]
    pub(crate) fn start(namespace: &'static str, kind: OpKind) -> Self {
        #[cfg(not(any(feature = "tracing", feature = "metrics")))]
        let _ = (namespace, kind);
        Op {
            #[cfg(feature = "metrics")]
            namespace,
            #[cfg(feature = "metrics")]
            kind,
            #[cfg(feature = "metrics")]
            started: std::time::Instant::now(),
            #[cfg(feature = "tracing")]
            span: spans::operation(namespace, kind),
        }
    }

    /// Runs `operation` inside the span, then records its outcome and latency.
    #[inline]
    pub(crate) async fn run<T>(self, operation: impl Future<Output = (T, Outcome)>) -> T {
        #[cfg(feature = "tracing")]
        let (value, outcome) =
            ::tracing::Instrument::instrument(operation, self.span.clone()).await;
        #[cfg(not(feature = "tracing"))]
        let (value, outcome) = operation.await;
        #[cfg(feature = "tracing")]
        self.span.record("outcome", outcome.name());
        #[cfg(feature = "metrics")]
        meters::operation(self.namespace, self.kind, outcome, self.started.elapsed());
        #[cfg(not(any(feature = "tracing", feature = "metrics")))]
        let _ = outcome;
        value
    }
}

/// A tier answered a lookup with a verified value (`hit`), or had none: absent, failed, or
/// refused.
#[inline]
pub(crate) fn lookup(namespace: &'static str, tier: Tier, hit: bool) {
    #[cfg(feature = "metrics")]
    meters::lookup(namespace, tier, hit);
    #[cfg(not(feature = "metrics"))]
    let _ = (namespace, tier, hit);
}

/// A loader was called.
#[inline]
pub(crate) fn load(namespace: &'static str) {
    #[cfg(feature = "metrics")]
    meters::load(namespace);
    #[cfg(not(feature = "metrics"))]
    let _ = namespace;
}

/// A load failed.
#[inline]
pub(crate) fn load_error(namespace: &'static str, error: &LoadError) {
    #[cfg(feature = "metrics")]
    meters::load_error(namespace, error);
    #[cfg(not(feature = "metrics"))]
    let _ = (namespace, error);
}

/// A value was refused: an `error!` event and a counter, by kind (never the owners).
#[inline]
pub(crate) fn violation(namespace: &'static str, tier: Tier, violation: &Violation) {
    #[cfg(feature = "tracing")]
    spans::violation(namespace, tier, violation.kind());
    #[cfg(feature = "metrics")]
    meters::violation(namespace, tier, violation.kind());
    #[cfg(not(any(feature = "tracing", feature = "metrics")))]
    let _ = (namespace, tier, violation);
}

/// A namespace's breaker is now in `state`.
#[inline]
pub(crate) fn breaker(namespace: &'static str, state: BreakerState) {
    #[cfg(feature = "metrics")]
    meters::breaker(namespace, state);
    #[cfg(not(feature = "metrics"))]
    let _ = (namespace, state);
}

/// The client's store breaker is now in `state`.
#[inline]
pub(crate) fn store_breaker(state: BreakerState) {
    #[cfg(feature = "metrics")]
    meters::store_breaker(state);
    #[cfg(not(feature = "metrics"))]
    let _ = state;
}

/// An authentic value was not used: a freshness miss of `kind` (a metric, no alarm).
#[inline]
pub(crate) fn freshness(namespace: &'static str, tier: Tier, kind: FreshnessKind) {
    #[cfg(feature = "metrics")]
    meters::freshness(namespace, tier, kind);
    #[cfg(not(feature = "metrics"))]
    let _ = (namespace, tier, kind);
}

/// The label value of a tier.
pub(crate) const fn tier_name(tier: Tier) -> &'static str {
    match tier {
        Tier::Local => "local",
        Tier::Remote => "remote",
    }
}

impl Outcome {
    /// `self` if `result` is `Ok`, else [`Outcome::Error`].
    pub(crate) fn unless_err<T, E>(self, result: &Result<T, E>) -> Self {
        if result.is_ok() { self } else { Outcome::Error }
    }
}
