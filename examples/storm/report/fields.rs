//! How the report's fields that are not plain numbers or text are written in JSON: durations in
//! the unit their key names, counts as an object keyed by kind name, the policy and the fault
//! rates as the text the summary shows.

use scoped_cache::testing::FaultKind;
use scoped_cache::{FreshnessKind, Policy, ViolationKind};
use serde::Serializer;
use std::fmt::Display;
use std::time::Duration;

pub fn seconds<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

pub fn seconds_or_null<S: Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => seconds(duration, serializer),
        None => serializer.serialize_none(),
    }
}

/// Whole microseconds.
pub fn micros<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(duration.as_micros() as u64)
}

/// Anything by its `Display` text.
pub fn text<S: Serializer>(value: &impl Display, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

pub fn policy<S: Serializer>(policy: &Policy, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&describe_policy(policy))
}

/// The policy as the report names it: `cache`, or `autobypass (…)` with the breaker's settings.
pub fn describe_policy(policy: &Policy) -> String {
    match policy {
        Policy::AutoBypass {
            threshold,
            window,
            cool_down,
        } => format!(
            "autobypass (open at {threshold} violations in {window:?}, cool-down {cool_down:?})"
        ),
        Policy::Cache => "cache".into(),
        Policy::Bypass => "bypass".into(),
        other => format!("{other:?}"),
    }
}

/// Counts per kind, as an object `{ "name": count, … }` in the order given.
pub fn by_name<K: KindName, S: Serializer>(
    counts: &[(K, u64)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(counts.iter().map(|&(kind, n)| (kind.kind_name(), n)))
}

/// A kind with a stable lower-case name.
pub trait KindName: Copy {
    fn kind_name(self) -> &'static str;
}

impl KindName for FaultKind {
    fn kind_name(self) -> &'static str {
        self.name()
    }
}

impl KindName for ViolationKind {
    fn kind_name(self) -> &'static str {
        self.name()
    }
}

impl KindName for FreshnessKind {
    fn kind_name(self) -> &'static str {
        self.name()
    }
}
