//! Fault kinds, their rates, and counts of what was injected.

use std::fmt;
use std::str::FromStr;

/// A kind of wrong answer a [`FaultyStore`](super::FaultyStore) can give to a read.
///
/// Each kind reproduces a failure seen in real cache clients or servers. New kinds will be
/// added (truncation alone, stale and replayed values, dropped calls, delays, timeouts), hence
/// `#[non_exhaustive]`.
///
/// # Examples
///
/// ```
/// use scoped_cache::testing::FaultKind;
/// assert_eq!("confuse".parse::<FaultKind>(), Ok(FaultKind::Confuse));
/// assert_eq!(FaultKind::Swap.name(), "swap");
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
    /// The stored value with one byte flipped, or truncated at a random length. Models bit rot,
    /// a partial read, a buggy proxy. Injected only when the key holds a non-empty value.
    Corrupt,
}

impl FaultKind {
    /// Every kind, in declaration order.
    pub const ALL: [FaultKind; 3] = [FaultKind::Swap, FaultKind::Confuse, FaultKind::Corrupt];

    /// A stable lower-case name, as used by [`FaultRates`]' text form.
    pub const fn name(self) -> &'static str {
        match self {
            FaultKind::Swap => "swap",
            FaultKind::Confuse => "confuse",
            FaultKind::Corrupt => "corrupt",
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
    #[error("unknown fault kind {0:?}; expected one of swap, confuse, corrupt")]
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
    #[error("expected kind=rate, found {0:?}; write e.g. swap=0.01,corrupt=0.001 or none")]
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
}

/// The probability, per read, that a [`FaultyStore`](super::FaultyStore) attempts each
/// [`FaultKind`]. At most one fault is attempted per read, so the rates may add up to 1.
///
/// The text form is `none` or a comma-separated list of `kind=rate`; kinds not listed are 0.
///
/// # Examples
///
/// ```
/// use scoped_cache::testing::{FaultKind, FaultRates};
/// let rates: FaultRates = "swap=0.01,corrupt=0.001".parse()?;
/// assert_eq!(rates.get(FaultKind::Swap), 0.01);
/// assert_eq!(rates.get(FaultKind::Confuse), 0.0);
/// assert_eq!(rates.to_string(), "swap=0.01,corrupt=0.001");
/// assert!("none".parse::<FaultRates>()?.is_none());
/// assert!("swap=2".parse::<FaultRates>().is_err());
/// assert_eq!(FaultRates::none().with(FaultKind::Confuse, 0.5)?.total(), 0.5);
/// # Ok::<(), scoped_cache::testing::FaultRatesError>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultRates([f64; FaultKind::ALL.len()]);

impl FaultRates {
    /// No faults.
    pub const fn none() -> Self {
        Self([0.0; FaultKind::ALL.len()])
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
        self.0[kind.index()] = rate;
        let total = self.total();
        // Allow for rounding in sums such as 0.1 + 0.2 + 0.7.
        if total > 1.0 + 1e-9 {
            return Err(FaultRatesError::SumAboveOne(total));
        }
        Ok(self)
    }

    /// The rate of `kind`.
    pub fn get(&self, kind: FaultKind) -> f64 {
        self.0[kind.index()]
    }

    /// The probability that a read attempts some fault.
    pub fn total(&self) -> f64 {
        self.0.iter().sum()
    }

    /// Whether every rate is 0.
    pub fn is_none(&self) -> bool {
        self.0.iter().all(|&rate| rate == 0.0)
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
            let (name, rate) = pair
                .split_once('=')
                .ok_or_else(|| FaultRatesError::Syntax(pair.to_owned()))?;
            let kind: FaultKind = name.trim().parse()?;
            if std::mem::replace(&mut seen[kind.index()], true) {
                return Err(FaultRatesError::Duplicate(kind));
            }
            let rate = rate
                .trim()
                .parse::<f64>()
                .map_err(|_| FaultRatesError::NotANumber {
                    kind,
                    text: rate.to_owned(),
                })?;
            rates = rates.with(kind, rate)?;
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
        }
        Ok(())
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
        let rates: FaultRates = "swap=0.01, confuse=0.02,corrupt=0.001"
            .parse()
            .unwrap_or_default();
        assert_eq!(rates.get(FaultKind::Confuse), 0.02, "spaces are allowed");
        assert_eq!(rates.to_string().parse::<FaultRates>(), Ok(rates));
        for bad in [
            "",
            "swap",
            "swap=x",
            "swap=-0.1",
            "swap=NaN",
            "swap=0.1,swap=0.2",
            "flip=0.1",
            "swap=0.6,confuse=0.6",
        ] {
            assert!(bad.parse::<FaultRates>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn pick_slices_the_unit_interval_by_rate() {
        let rates = FaultRates::none()
            .with(FaultKind::Swap, 0.25)
            .and_then(|r| r.with(FaultKind::Corrupt, 0.25))
            .unwrap_or_default();
        assert_eq!(rates.pick(0.0), Some(FaultKind::Swap));
        assert_eq!(rates.pick(0.3), Some(FaultKind::Corrupt));
        assert_eq!(rates.pick(0.5), None);
        assert_eq!(FaultRates::none().pick(0.0), None);
    }
}
