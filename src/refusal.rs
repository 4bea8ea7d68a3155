//! Refusals: the two classes of a refused cached value, and the one place both tiers hand
//! theirs to.

use crate::freshness::Freshness;
use crate::key::Key;
use crate::namespace::Namespace;
use crate::observe;
use crate::stats::{Counters, Event};
use crate::violation::{Tier, Violation, ViolationReport, ViolationSink};

/// Why a cached value was not returned. Either way the caller sees a miss, never the value; the
/// class decides who else hears of it.
///
/// | class | kinds | counted in | violation sink | breaker | value deleted |
/// |---|---|---|---|---|---|
/// | [`Violation`] (integrity) | another owner, item or namespace; bad tag; malformed; undecodable; an [`Owned`](crate::Owned) value of another owner; an in-process entry of another key | [`Stats::violations`](crate::Stats::violations) | yes | yes | yes (remotely only while the store holds those bytes) |
/// | [`Freshness`] | expired; another schema; a key id this ring lacks | [`Stats::freshness_misses`](crate::Stats::freshness_misses) | no | no | no |
///
/// An integrity refusal means an attack or a bug and should wake someone; a freshness miss is
/// the weather of a healthy fleet (expiry, clocks that differ a little, rolling deploys, key
/// rotations) and must not.
///
/// # Examples
///
/// ```
/// use scoped_cache::{DeviceId, Key, KeyId, KeyRing, Namespace, RawBytes, Refusal, TenantId, Violation};
/// use scoped_cache::envelope::Envelope;
/// # struct Thumbnails;
/// # impl Namespace for Thumbnails {
/// #     const NAME: &'static str = "thumb";
/// #     const SCHEMA: u16 = 1;
/// #     type Item = u64;
/// #     type Value = bytes::Bytes;
/// #     type Codec = RawBytes;
/// # }
/// let ring = KeyRing::new(KeyId(1), &[42; 32])?;
/// let alices = Key::<Thumbnails>::new(TenantId::new("alice")?, DeviceId::new("cam-7")?, 9);
/// let bobs = Key::<Thumbnails>::new(TenantId::new("bob")?, DeviceId::new("cam-7")?, 9);
/// let sealed = Envelope::default().seal(&alices, b"jpeg", 1_000, 61_000, &ring)?;
/// let refused = Envelope::default().open(&sealed, &bobs, 2_000, &ring).unwrap_err();
/// assert!(refused.is_violation());
/// assert!(matches!(refused.violation(), Some(Violation::OwnerMismatch { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The value does not prove it belongs to the requested key: an attack or a bug.
    #[error(transparent)]
    Violation(Violation),
    /// An authentic value of the requested key that may not be used now: normal operation.
    #[error(transparent)]
    Freshness(Freshness),
}

impl Refusal {
    /// Whether this is an integrity refusal (a [`Violation`]).
    pub fn is_violation(&self) -> bool {
        matches!(self, Refusal::Violation(_))
    }

    /// The violation, if this is an integrity refusal.
    pub fn violation(&self) -> Option<&Violation> {
        match self {
            Refusal::Violation(violation) => Some(violation),
            Refusal::Freshness(_) => None,
        }
    }

    /// The freshness miss, if this is one.
    pub fn freshness(&self) -> Option<&Freshness> {
        match self {
            Refusal::Violation(_) => None,
            Refusal::Freshness(freshness) => Some(freshness),
        }
    }
}

impl From<Violation> for Refusal {
    fn from(violation: Violation) -> Self {
        Refusal::Violation(violation)
    }
}

impl From<Freshness> for Refusal {
    fn from(freshness: Freshness) -> Self {
        Refusal::Freshness(freshness)
    }
}

/// Where a namespace's refusals go, whichever tier refused: the one rule for counting,
/// observing and reporting them.
#[derive(Clone)]
pub(crate) struct Refusals {
    namespace: &'static str,
    /// Receives integrity refusals only (for a `Cache`, the client's sink and the breaker).
    sink: Option<ViolationSink>,
}

/// What the refusing tier does with the refused value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Disposal {
    /// Remove it: it can never be served to anyone who asks for this key.
    Delete,
    /// Leave it: another instance or version may still read it, and its TTL removes it.
    Keep,
}

impl Refusals {
    pub(crate) fn new(namespace: &'static str, sink: Option<ViolationSink>) -> Self {
        Self { namespace, sink }
    }

    /// Counts `refusal` of a value `tier` held for `key`; reports a violation.
    #[cold]
    pub(crate) fn refuse<N: Namespace>(
        &self,
        counters: &Counters,
        tier: Tier,
        key: &Key<N>,
        refusal: Refusal,
    ) -> Disposal {
        match refusal {
            Refusal::Freshness(freshness) => {
                counters.record(Event::Freshness(freshness.kind()));
                observe::freshness(self.namespace, tier, freshness.kind());
                Disposal::Keep
            }
            Refusal::Violation(violation) => {
                counters.record(Event::Violation(violation.kind()));
                observe::violation(self.namespace, tier, &violation);
                if let Some(sink) = &self.sink {
                    sink(&ViolationReport {
                        namespace: self.namespace,
                        tier,
                        expected: key.owner().clone(),
                        violation,
                        key: key.encode(),
                    });
                }
                Disposal::Delete
            }
        }
    }
}
