//! Fault kinds, their rates, and counts of what was injected.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A kind of wrong answer a [`FaultyStore`](super::FaultyStore) can give to a read.
///
/// Each kind reproduces a failure seen in real cache clients or servers. More may be added,
/// hence `#[non_exhaustive]`; [`FaultKind::ALL`] lists them in the order their rates slice a
/// draw (new kinds are appended, so a seed keeps meaning the same faults for the old kinds).
///
/// | kind | the read returns | what [`Cache`](crate::Cache) must do |
/// |---|---|---|
/// | `swap`, `confuse` | another key's value | refuse it (owner or item mismatch) |
/// | `corrupt`, `truncate` | damaged bytes | refuse them (malformed, bad tag) |
/// | `stale` | an expired value of the same key | refuse it (expired) |
/// | `replay` | an earlier, unexpired value of the same key | accept it: it is that owner's own |
/// | `drop`, `timeout` | an error ([`StoreError`](crate::store::StoreError)) | count it, read a miss |
/// | `delay` | the right value, late | return it |
///
/// # Examples
///
/// ```
/// use scoped_cache::testing::FaultKind;
/// assert_eq!("confuse".parse::<FaultKind>(), Ok(FaultKind::Confuse));
/// assert_eq!(FaultKind::Swap.name(), "swap");
/// assert!(FaultKind::Delay.is_timed());
/// assert!(!FaultKind::Replay.is_wrong_value());
/// assert!("nonsense".parse::<FaultKind>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FaultKind {
    /// Another key's value: a recently written (key, value) pair whose key differs from the one
    /// read. Models a reply delivered to the wrong request (an unread reply left on a pooled
    /// connection, a pipeline replayed out of order).
    Swap,
    /// The value stored under the same namespace and item with tenant and device exchanged.
    /// Models a client that mixes up device ids and user ids. Injected only when such a value
    /// exists and the exchanged key differs from the one read.
    Confuse,
    /// The stored value with one byte flipped. Models bit rot or a buggy proxy. Injected only
    /// when the key holds a non-empty value.
    Corrupt,
    /// The stored value cut short at a random length (possibly empty). Models a partial read
    /// (dalli's truncated values that still decoded). Injected only when the key holds a
    /// non-empty value.
    Truncate,
    /// A value once written under the same key whose TTL has passed, although the store holds
    /// something else (or nothing) now. Models a lagging replica or a restored snapshot.
    /// Injected only when the store saw such a value (it keeps a bounded history per key).
    Stale,
    /// A value once written under the same key, before the latest write, whose TTL has *not*
    /// passed. Models a replayed reply or a lost invalidation. It is the same owner's own,
    /// authentic data, so accepting it is correct (its content may be older than the latest
    /// write). Injected only when the store saw such a value with other bytes than the latest.
    Replay,
    /// An error instead of a reply
    /// ([`StoreError::Unavailable`](crate::store::StoreError::Unavailable)): a connection cut
    /// before the reply. The inner store is not asked.
    Drop,
    /// The right answer, after the delay of [`FaultRates::duration`]: a slow network or a
    /// stalled server.
    Delay,
    /// [`StoreError::Timeout`](crate::store::StoreError::Timeout) after the delay of
    /// [`FaultRates::duration`]: a call that gave up. The inner store is not asked.
    Timeout,
}

impl FaultKind {
    /// Every kind, in declaration order.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Swap,
        FaultKind::Confuse,
        FaultKind::Corrupt,
        FaultKind::Truncate,
        FaultKind::Stale,
        FaultKind::Replay,
        FaultKind::Drop,
        FaultKind::Delay,
        FaultKind::Timeout,
    ];

    /// A stable lower-case name, as used by [`FaultRates`]' text form.
    pub const fn name(self) -> &'static str {
        match self {
            FaultKind::Swap => "swap",
            FaultKind::Confuse => "confuse",
            FaultKind::Corrupt => "corrupt",
            FaultKind::Truncate => "truncate",
            FaultKind::Stale => "stale",
            FaultKind::Replay => "replay",
            FaultKind::Drop => "drop",
            FaultKind::Delay => "delay",
            FaultKind::Timeout => "timeout",
        }
    }

    /// Whether the kind takes a duration (`delay`, `timeout`).
    pub const fn is_timed(self) -> bool {
        matches!(self, FaultKind::Delay | FaultKind::Timeout)
    }

    /// Whether the kind hands back bytes that are not the key's authentic, current value and
    /// that a verifying reader must refuse: `swap`, `confuse`, `corrupt`, `truncate`, `stale`.
    pub const fn is_wrong_value(self) -> bool {
        matches!(
            self,
            FaultKind::Swap
                | FaultKind::Confuse
                | FaultKind::Corrupt
                | FaultKind::Truncate
                | FaultKind::Stale
        )
    }

    /// Whether the kind answers with an error instead of a value: `drop`, `timeout`.
    pub const fn is_error(self) -> bool {
        matches!(self, FaultKind::Drop | FaultKind::Timeout)
    }

    /// The duration a timed kind uses when none is given: 10 ms for `delay`, 100 ms for
    /// `timeout`; zero for the others.
    pub const fn default_duration(self) -> Duration {
        match self {
            FaultKind::Delay => Duration::from_millis(10),
            FaultKind::Timeout => Duration::from_millis(100),
            _ => Duration::ZERO,
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FaultKind {
    type Err = FaultRatesError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        FaultKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| FaultRatesError::UnknownKind(name.to_owned()))
    }
}

/// Why fault rates were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FaultRatesError {
    /// A name that is not a [`FaultKind`].
    #[error(
        "unknown fault kind {0:?}; expected one of swap, confuse, corrupt, truncate, stale, \
         replay, drop, delay, timeout"
    )]
    UnknownKind(String),
    /// A `kind=rate` pair whose rate is not a number.
    #[error("fault rate {text:?} for {kind} is not a number; write e.g. {kind}=0.01")]
    NotANumber {
        /// The kind.
        kind: FaultKind,
        /// The text given as its rate.
        text: String,
    },
    /// A list item without `=`.
    #[error("expected kind=rate, found {0:?}; write e.g. swap=0.01,delay=0.001@5ms or none")]
    Syntax(String),
    /// A rate outside `[0, 1]` (or not finite).
    #[error("fault rate {rate} for {kind} is outside 0..=1")]
    OutOfRange {
        /// The kind.
        kind: FaultKind,
        /// The rate given.
        rate: f64,
    },
    /// A kind given twice.
    #[error("fault kind {0} is given twice")]
    Duplicate(FaultKind),
    /// The rates add up to more than 1.
    #[error("fault rates add up to {0}, more than 1; lower them")]
    SumAboveOne(f64),
    /// A duration given to a kind that takes none (only `delay` and `timeout` do).
    #[error("fault kind {0} takes no duration; only delay and timeout do, e.g. delay=0.01@5ms")]
    Untimed(FaultKind),
    /// A duration that is not a number with a unit.
    #[error(
        "duration {text:?} for {kind} is not valid; write e.g. {kind}=0.01@5ms (ns, us, ms, s)"
    )]
    BadDuration {
        /// The kind.
        kind: FaultKind,
        /// The text given as its duration.
        text: String,
    },
}

/// The probability, per read, that a [`FaultyStore`](super::FaultyStore) attempts each
/// [`FaultKind`], and how long the timed kinds (`delay`, `timeout`) take. At most one fault is
/// attempted per read, so the rates may add up to 1.
///
/// The text form is `none` or a comma-separated list of `kind=rate`, where a timed kind may
/// add `@duration` (`delay=0.01@5ms`; units `ns`, `us`, `ms`, `s`); kinds not listed are 0 and
/// timed kinds without a duration take [`FaultKind::default_duration`].
///
/// # Examples
///
/// ```
/// use scoped_cache::testing::{FaultKind, FaultRates};
/// use std::time::Duration;
/// let rates: FaultRates = "swap=0.01,corrupt=0.001,delay=0.01@5ms".parse()?;
/// assert_eq!(rates.get(FaultKind::Swap), 0.01);
/// assert_eq!(rates.get(FaultKind::Confuse), 0.0);
/// assert_eq!(rates.duration(FaultKind::Delay), Some(Duration::from_millis(5)));
/// assert_eq!(rates.to_string(), "swap=0.01,corrupt=0.001,delay=0.01@5ms");
/// assert!("none".parse::<FaultRates>()?.is_none());
/// assert!("swap=2".parse::<FaultRates>().is_err());
/// assert!("swap=0.1@5ms".parse::<FaultRates>().is_err());
/// assert_eq!(FaultRates::none().with(FaultKind::Confuse, 0.5)?.total(), 0.5);
/// # Ok::<(), scoped_cache::testing::FaultRatesError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultRates {
    rates: [f64; FaultKind::ALL.len()],
    delay: Duration,
    timeout: Duration,
}

impl Default for FaultRates {
    fn default() -> Self {
        Self::none()
    }
}

impl FaultRates {
    /// No faults.
    pub const fn none() -> Self {
        Self {
            rates: [0.0; FaultKind::ALL.len()],
            delay: FaultKind::Delay.default_duration(),
            timeout: FaultKind::Timeout.default_duration(),
        }
    }

    /// These rates with `kind` set to `rate`.
    ///
    /// # Errors
    ///
    /// [`FaultRatesError::OutOfRange`] when `rate` is not in `[0, 1]`;
    /// [`FaultRatesError::SumAboveOne`] when the rates would add up to more than 1.
    pub fn with(mut self, kind: FaultKind, rate: f64) -> Result<Self, FaultRatesError> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(FaultRatesError::OutOfRange { kind, rate });
        }
        self.rates[kind.index()] = rate;
        let total = self.total();
        // Allow for rounding in sums such as 0.1 + 0.2 + 0.7.
        if total > 1.0 + 1e-9 {
            return Err(FaultRatesError::SumAboveOne(total));
        }
        Ok(self)
    }

    /// These rates with the timed `kind` taking `duration`.
    ///
    /// # Errors
    ///
    /// [`FaultRatesError::Untimed`] when `kind` is not `delay` or `timeout`.
    pub fn with_duration(
        mut self,
        kind: FaultKind,
        duration: Duration,
    ) -> Result<Self, FaultRatesError> {
        match kind {
            FaultKind::Delay => self.delay = duration,
            FaultKind::Timeout => self.timeout = duration,
            other => return Err(FaultRatesError::Untimed(other)),
        }
        Ok(self)
    }

    /// The rate of `kind`.
    pub fn get(&self, kind: FaultKind) -> f64 {
        self.rates[kind.index()]
    }

    /// How long the timed `kind` takes; `None` for kinds that take no time.
    pub fn duration(&self, kind: FaultKind) -> Option<Duration> {
        match kind {
            FaultKind::Delay => Some(self.delay),
            FaultKind::Timeout => Some(self.timeout),
            _ => None,
        }
    }

    /// The probability that a read attempts some fault.
    pub fn total(&self) -> f64 {
        self.rates.iter().sum()
    }

    /// Whether every rate is 0.
    pub fn is_none(&self) -> bool {
        self.rates.iter().all(|&rate| rate == 0.0)
    }

    /// Each kind with its rate, in [`FaultKind::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (FaultKind, f64)> + '_ {
        FaultKind::ALL
            .into_iter()
            .map(|kind| (kind, self.get(kind)))
    }

    /// The kind a uniform draw `u` in `[0, 1)` selects: kinds own consecutive slices of
    /// `[0, total)`, in [`FaultKind::ALL`] order; `None` above the total.
    pub(crate) fn pick(&self, u: f64) -> Option<FaultKind> {
        let mut upper = 0.0;
        for (kind, rate) in self.iter() {
            upper += rate;
            if rate > 0.0 && u < upper {
                return Some(kind);
            }
        }
        None
    }
}

impl FromStr for FaultRates {
    type Err = FaultRatesError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text == "none" {
            return Ok(Self::none());
        }
        let mut rates = Self::none();
        let mut seen = [false; FaultKind::ALL.len()];
        for pair in text.split(',') {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| FaultRatesError::Syntax(pair.to_owned()))?;
            let kind: FaultKind = name.trim().parse()?;
            if std::mem::replace(&mut seen[kind.index()], true) {
                return Err(FaultRatesError::Duplicate(kind));
            }
            let (rate, duration) = match value.split_once('@') {
                Some((rate, duration)) => (rate, Some(duration.trim())),
                None => (value, None),
            };
            let rate = rate
                .trim()
                .parse::<f64>()
                .map_err(|_| FaultRatesError::NotANumber {
                    kind,
                    text: rate.to_owned(),
                })?;
            rates = rates.with(kind, rate)?;
            if let Some(text) = duration {
                let duration =
                    parse_duration(text).ok_or_else(|| FaultRatesError::BadDuration {
                        kind,
                        text: text.to_owned(),
                    })?;
                rates = rates.with_duration(kind, duration)?;
            }
        }
        Ok(rates)
    }
}

impl fmt::Display for FaultRates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return f.write_str("none");
        }
        let mut first = true;
        for (kind, rate) in self.iter().filter(|&(_, rate)| rate > 0.0) {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{kind}={rate}")?;
            if let Some(duration) = self.duration(kind) {
                write!(f, "@{}", DisplayDuration(duration))?;
            }
        }
        Ok(())
    }
}

/// A duration such as `5ms`, `1.5ms`, `250us`, `2s` or `100ns`; `None` for anything else
/// (negative, not finite, no unit, out of range).
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic() || c == '\u{b5}')?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.trim().parse().ok()?;
    let nanos_per_unit = match unit {
        "ns" => 1.0,
        "us" | "\u{b5}s" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return None,
    };
    let nanos = (number * nanos_per_unit).round();
    // Also refuses NaN and negative numbers; whole numbers below 2^53 convert exactly.
    if !(0.0..=u64::MAX as f64).contains(&nanos) {
        return None;
    }
    Some(Duration::from_nanos(nanos as u64))
}

/// Shows a duration in the largest of `s`, `ms`, `us`, `ns` that keeps it a whole number, so
/// that [`parse_duration`] reads back exactly the same duration.
struct DisplayDuration(Duration);

impl fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        for (unit, per) in [("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)] {
            if nanos.is_multiple_of(per) && nanos > 0 {
                return write!(f, "{}{unit}", nanos / per);
            }
        }
        write!(f, "{nanos}ns")
    }
}

/// How many faults of each kind were injected.
///
/// # Examples
///
/// ```
/// use scoped_cache::testing::{FaultCounts, FaultKind};
/// let counts = FaultCounts::default();
/// assert_eq!(counts.get(FaultKind::Swap), 0);
/// assert_eq!(counts.total(), 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts(pub(crate) [u64; FaultKind::ALL.len()]);

impl FaultCounts {
    /// The count of one kind.
    pub fn get(&self, kind: FaultKind) -> u64 {
        self.0[kind.index()]
    }

    /// The count of all kinds together.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Each kind with its count, in [`FaultKind::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (FaultKind, u64)> + '_ {
        FaultKind::ALL
            .into_iter()
            .map(|kind| (kind, self.get(kind)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_rejects_bad_input() {
        let rates: FaultRates = "swap=0.01, confuse=0.02,corrupt=0.001,timeout=0.001@1.5ms"
            .parse()
            .unwrap_or_default();
        assert_eq!(rates.get(FaultKind::Confuse), 0.02, "spaces are allowed");
        assert_eq!(
            rates.duration(FaultKind::Timeout),
            Some(Duration::from_micros(1500)),
            "fractional durations are allowed"
        );
        assert_eq!(rates.to_string().parse::<FaultRates>(), Ok(rates));
        let every: String = FaultKind::ALL
            .iter()
            .map(|kind| format!("{kind}=0.01"))
            .collect::<Vec<_>>()
            .join(",");
        let every: FaultRates = every.parse().unwrap_or_default();
        for kind in FaultKind::ALL {
            assert_eq!(every.get(kind), 0.01, "{kind} not parsed");
        }
        assert_eq!(
            every.duration(FaultKind::Delay),
            Some(FaultKind::Delay.default_duration()),
            "a timed kind without a duration takes its default"
        );
        assert_eq!(every.to_string().parse::<FaultRates>(), Ok(every));
        for bad in [
            "",
            "swap",
            "swap=x",
            "swap=-0.1",
            "swap=NaN",
            "swap=0.1,swap=0.2",
            "flip=0.1",
            "swap=0.6,confuse=0.6",
            "swap=0.1@5ms",
            "delay=0.1@5",
            "delay=0.1@5m",
            "delay=0.1@-5ms",
            "delay=0.1@",
            "timeout=0.1@1e300s",
        ] {
            assert!(bad.parse::<FaultRates>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn durations_parse_and_print_exactly() {
        for (text, nanos) in [
            ("5ms", 5_000_000),
            ("1.5ms", 1_500_000),
            ("250us", 250_000),
            ("250\u{b5}s", 250_000),
            ("2s", 2_000_000_000),
            ("0.5s", 500_000_000),
            ("100ns", 100),
            ("0ms", 0),
        ] {
            let parsed = parse_duration(text);
            assert_eq!(parsed, Some(Duration::from_nanos(nanos)), "{text}");
            let shown = DisplayDuration(Duration::from_nanos(nanos)).to_string();
            assert_eq!(parse_duration(&shown), parsed, "{text} shown as {shown}");
        }
    }

    #[test]
    fn only_timed_kinds_take_a_duration() {
        for kind in FaultKind::ALL {
            let set = FaultRates::none().with_duration(kind, Duration::from_millis(1));
            assert_eq!(set.is_ok(), kind.is_timed(), "{kind}");
            assert_eq!(
                FaultRates::none().duration(kind).is_some(),
                kind.is_timed(),
                "{kind}"
            );
        }
    }

    #[test]
    fn pick_slices_the_unit_interval_by_rate() {
        let rates = FaultRates::none()
            .with(FaultKind::Swap, 0.25)
            .and_then(|r| r.with(FaultKind::Corrupt, 0.25))
            .and_then(|r| r.with(FaultKind::Timeout, 0.25))
            .unwrap_or_default();
        assert_eq!(rates.pick(0.0), Some(FaultKind::Swap));
        assert_eq!(rates.pick(0.3), Some(FaultKind::Corrupt));
        assert_eq!(rates.pick(0.6), Some(FaultKind::Timeout));
        assert_eq!(rates.pick(0.8), None);
        assert_eq!(FaultRates::none().pick(0.0), None);
    }
}
