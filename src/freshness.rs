//! Freshness misses: an authentic value of the requested key that this reader may not use now.

use crate::keyring::KeyId;

/// Why an authentic value of the requested key was not used: normal operation, not an attack.
///
/// These are the refusals a healthy fleet produces every day. Each is a counted miss
/// ([`Stats::freshness_misses`](crate::Stats::freshness_misses)) and nothing else: no violation
/// report, nothing fed to the breaker, and the value stays in the store, because another
/// instance (the old version during a deploy, the other half of a key rotation) may still read
/// it, and the store's own TTL removes it.
///
/// A forged value is refused either way: an envelope naming a key id this ring does not have
/// cannot be verified and is never read, whoever wrote it. What the class decides is only who is
/// alarmed.
///
/// # Examples
///
/// ```
/// use scoped_cache::{DeviceId, Freshness, Key, KeyId, KeyRing, Namespace, RawBytes, Refusal, TenantId};
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
/// let key = Key::<Thumbnails>::new(TenantId::from_u64(1), DeviceId::from_u64(2), 9);
/// let sealed = Envelope::default().seal(&key, b"jpeg", 1_000, 61_000, &ring)?;
/// let refused = Envelope::default().open(&sealed, &key, 61_000, &ring).unwrap_err();
/// assert!(matches!(refused, Refusal::Freshness(Freshness::Expired { .. })));
/// assert!(!refused.is_violation());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Freshness {
    /// An authentic value past the expiry sealed into it: a store that kept it a little longer
    /// than its TTL, or a reader whose clock runs ahead of the writer's by more than the
    /// client's [clock-skew allowance](crate::ClientBuilder::clock_skew_allowance).
    #[error("expired at {expires_ms} ms since the epoch (now {now_ms})")]
    Expired {
        /// When the envelope expired, in ms since the Unix epoch.
        expires_ms: u64,
        /// The time of the check.
        now_ms: u64,
    },
    /// An authentic value written with another [`SCHEMA`](crate::Namespace::SCHEMA): the other
    /// version of a rolling deploy. Its bytes are never decoded as this version's type.
    #[error("schema mismatch: expected {expected}, found {found}; another version wrote it")]
    SchemaMismatch {
        /// The namespace's schema.
        expected: u16,
        /// The schema in the envelope.
        found: u16,
    },
    /// Sealed with a key id this ring does not have, so it cannot be verified: usually a key
    /// rotation reaching this instance after the writer's.
    #[error("sealed with unknown key id {key_id}; add it to the key ring if it is yours")]
    UnknownKey {
        /// The key id written in the envelope (not authenticated).
        key_id: KeyId,
    },
    /// An authentic value in a format version this reader no longer opens: version 1 after
    /// [`ClientBuilder::read_version_1`](crate::ClientBuilder::read_version_1) ended its
    /// migration window. Reloaded and written again in the current version.
    #[error("envelope format {version} is no longer read; it is rewritten on the next load")]
    RetiredVersion {
        /// The envelope's format version.
        version: u8,
    },
}

/// The kind of a [`Freshness`] miss, without its details: for counters and metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FreshnessKind {
    /// [`Freshness::Expired`].
    Expired,
    /// [`Freshness::SchemaMismatch`].
    SchemaMismatch,
    /// [`Freshness::UnknownKey`].
    UnknownKey,
    /// [`Freshness::RetiredVersion`].
    RetiredVersion,
}

impl FreshnessKind {
    /// Every kind, in declaration order.
    pub const ALL: [FreshnessKind; 4] = [
        FreshnessKind::Expired,
        FreshnessKind::SchemaMismatch,
        FreshnessKind::UnknownKey,
        FreshnessKind::RetiredVersion,
    ];

    /// A stable snake_case name, for logs, reports and metric labels.
    pub const fn name(self) -> &'static str {
        match self {
            FreshnessKind::Expired => "expired",
            FreshnessKind::SchemaMismatch => "schema_mismatch",
            FreshnessKind::UnknownKey => "unknown_key",
            FreshnessKind::RetiredVersion => "retired_version",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl Freshness {
    /// This miss's kind.
    pub fn kind(&self) -> FreshnessKind {
        match self {
            Freshness::Expired { .. } => FreshnessKind::Expired,
            Freshness::SchemaMismatch { .. } => FreshnessKind::SchemaMismatch,
            Freshness::UnknownKey { .. } => FreshnessKind::UnknownKey,
            Freshness::RetiredVersion { .. } => FreshnessKind::RetiredVersion,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_kind_at_its_index() {
        // Exhaustive: a new kind does not compile here until it is given a place, here and in
        // `ALL` (whose length below then changes too).
        let position = |kind: FreshnessKind| match kind {
            FreshnessKind::Expired => 0,
            FreshnessKind::SchemaMismatch => 1,
            FreshnessKind::UnknownKey => 2,
            FreshnessKind::RetiredVersion => 3,
        };
        for (index, kind) in FreshnessKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), index, "{kind:?} is not at its index in ALL");
            assert_eq!(position(kind), index, "{kind:?} listed out of order");
        }
        assert_eq!(FreshnessKind::ALL.len(), 4, "ALL must list every kind once");
    }
}
