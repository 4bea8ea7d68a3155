//! What one store entry is, opened for the key it is stored under. Pure: no I/O, time given.

use scoped_cache::envelope::{Envelope, Malformed, RawKey};
use scoped_cache::{Freshness, Refusal, Violation};

/// Why an entry was refused. The first six are integrity failures (what `Cache` reports as a
/// violation); `Expired` and `UnknownKey` are freshness misses; `NotAKey` is a store key under
/// the scanned prefix that is not a scoped-cache key at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// An authentic value of another owner: mis-filed across owners.
    OwnerMismatch,
    /// An authentic value of the same owner's other item.
    ItemMismatch,
    /// An authentic value of another namespace.
    NamespaceMismatch,
    /// The tag does not verify: forged, damaged, or sealed with a secret not in the ring.
    BadTag,
    /// Not a well-formed envelope (truncated, not an envelope, too large, …).
    Malformed,
    /// Authentic and filed under its own key, but past the expiry sealed into it.
    Expired,
    /// Sealed with a key id the ring does not have: another ring, or a rotation it lacks.
    UnknownKey,
    /// The store key itself does not decode as a scoped-cache key.
    NotAKey,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 8] = [
        Kind::OwnerMismatch,
        Kind::ItemMismatch,
        Kind::NamespaceMismatch,
        Kind::BadTag,
        Kind::Malformed,
        Kind::Expired,
        Kind::UnknownKey,
        Kind::NotAKey,
    ];

    /// The name used in reports (a `ViolationKind` or `FreshnessKind` name where there is one).
    pub fn name(self) -> &'static str {
        match self {
            Kind::OwnerMismatch => "owner_mismatch",
            Kind::ItemMismatch => "item_mismatch",
            Kind::NamespaceMismatch => "namespace_mismatch",
            Kind::BadTag => "bad_tag",
            Kind::Malformed => "malformed",
            Kind::Expired => "expired",
            Kind::UnknownKey => "unknown_key",
            Kind::NotAKey => "not_a_key",
        }
    }

    /// An integrity failure: an attack or a bug, never normal operation.
    pub fn is_integrity(self) -> bool {
        !matches!(self, Kind::Expired | Kind::UnknownKey | Kind::NotAKey)
    }

    /// Whether `--delete` removes it: integrity failures and expired entries, which no reader
    /// can use. An unknown key id may be another ring's live value, and a key that is not a
    /// scoped-cache key is not ours: both stay.
    pub fn is_deleted(self) -> bool {
        self.is_integrity() || self == Kind::Expired
    }
}

/// One entry, judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Authentic, filed under its own key, unexpired.
    Valid {
        namespace: String,
        schema: u16,
    },
    Refused(Refused),
}

/// A refused entry: what it is stored under, and what is authentically inside, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub kind: Kind,
    /// The key it is stored under; `None` for [`Kind::NotAKey`].
    pub stored_under: Option<RawKey>,
    /// The key it was sealed for, when its tag verified (never an unauthenticated claim).
    pub found: Option<RawKey>,
    /// More on the kind: the malformation, the unknown key id, the expiry.
    pub detail: Option<String>,
    /// Its tag verified under the ring (always so when `found` is known).
    pub authenticated: bool,
}

impl Finding {
    /// Whether the entry proved it was sealed with a key of the ring (valid or not): evidence
    /// that the ring's secret is the fleet's.
    pub fn is_authenticated(&self) -> bool {
        match self {
            Finding::Valid { .. } => true,
            Finding::Refused(refused) => refused.authenticated,
        }
    }
}

/// Opens `value`, stored under the (prefix-less) store key `stored_under`, for that key at
/// `now_ms`.
pub fn classify(
    envelope: &Envelope,
    stored_under: &[u8],
    value: &[u8],
    now_ms: u64,
    ring: &scoped_cache::KeyRing,
) -> Finding {
    let inspected = envelope.inspect(value, ring);
    let Ok(stored) = RawKey::decode(stored_under) else {
        return refused(Kind::NotAKey, None, inspected.ok().map(|i| i.key), None);
    };
    let inspected = match inspected {
        Ok(inspected) => inspected,
        Err(refusal) => {
            let (kind, detail) = match &refusal {
                Refusal::Violation(Violation::BadTag) => (Kind::BadTag, None),
                Refusal::Violation(Violation::Malformed { reason }) => {
                    (Kind::Malformed, Some(reason.to_string()))
                }
                Refusal::Freshness(Freshness::UnknownKey { key_id }) => {
                    (Kind::UnknownKey, Some(format!("key id {key_id}")))
                }
                // `inspect` refuses nothing else; should a later version, it is not valid.
                other => (Kind::Malformed, Some(other.to_string())),
            };
            let mut finding = refused(kind, Some(stored), None, detail);
            // An authentic envelope whose embedded key does not decode (a buggy writer): its
            // tag verified, so it was sealed with the ring all the same.
            if let (
                Finding::Refused(refused),
                Refusal::Violation(Violation::Malformed {
                    reason: Malformed::BadKey,
                }),
            ) = (&mut finding, &refusal)
            {
                refused.authenticated = true;
            }
            return finding;
        }
    };
    let found = inspected.key.clone();
    let kind = if found.namespace != stored.namespace {
        Kind::NamespaceMismatch
    } else if found.owner != stored.owner {
        Kind::OwnerMismatch
    } else if found.item != stored.item {
        Kind::ItemMismatch
    } else if inspected.is_expired(now_ms) {
        let detail = format!("expired at {} ms since the epoch", inspected.expires_ms);
        return refused(Kind::Expired, Some(stored), Some(found), Some(detail));
    } else {
        return Finding::Valid {
            namespace: stored.namespace,
            schema: inspected.schema,
        };
    };
    refused(kind, Some(stored), Some(found), None)
}

fn refused(
    kind: Kind,
    stored_under: Option<RawKey>,
    found: Option<RawKey>,
    detail: Option<String>,
) -> Finding {
    Finding::Refused(Refused {
        kind,
        stored_under,
        authenticated: found.is_some(),
        found,
        detail,
    })
}
