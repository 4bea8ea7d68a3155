//! Violations: a stored value that does not prove it belongs to the requested key.

use crate::key::Owner;

/// Why a stored value was refused as an *integrity* failure: it does not prove it belongs to
/// the requested key. Never a value: the caller sees a miss.
///
/// Every kind here means an attack or a bug somewhere (in a store, a proxy, a connection, a
/// writer, the in-process map): another owner's, item's or namespace's value, a tag that does
/// not verify, bytes that are not an envelope, a payload its own schema cannot decode. Normal
/// operation (expiry, a deploy that changes a schema, a key rotation rolled out in any order)
/// never produces one; those are [`Freshness`](crate::Freshness) misses instead.
///
/// Fields that come from the stored bytes (`found` owner, namespace) are reported only after the
/// envelope's tag verified, so a report never repeats attacker-chosen data as fact.
///
/// A [`Cache`](crate::Cache) counts each violation in [`Stats`](crate::Stats), hands it to the
/// client's violation sink in a [`ViolationReport`], feeds it to the namespace's breaker
/// ([`Policy::AutoBypass`](crate::Policy::AutoBypass)), deletes the value from its tier and reads
/// a miss; [`Envelope::open`](crate::envelope::Envelope::open) returns it inside a
/// [`Refusal`](crate::Refusal).
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use scoped_cache::{Client, DeviceId, Key, KeyId, KeyRing, MemoryStore, Namespace, RawBytes, TenantId, Tier, Violation};
/// use scoped_cache::store::RemoteStore;
/// use std::sync::{Arc, Mutex};
/// # struct Thumbnails;
/// # impl Namespace for Thumbnails {
/// #     const NAME: &'static str = "thumb";
/// #     const SCHEMA: u16 = 1;
/// #     type Item = u64;
/// #     type Value = bytes::Bytes;
/// #     type Codec = RawBytes;
/// # }
/// let store = Arc::new(MemoryStore::default());
/// let reports = Arc::new(Mutex::new(Vec::new()));
/// let sink = reports.clone();
/// let client = Client::builder()
///     .key_ring(KeyRing::new(KeyId(1), &[42; 32])?)
///     .remote_shared(store.clone())
///     .on_violation(move |report| sink.lock().unwrap().push(report.clone()))
///     .build()?;
/// let thumbs = client.cache::<Thumbnails>().local_capacity(0).build()?;
/// let alice = Key::new(TenantId::new("alice")?, DeviceId::new("cam-7")?, 9);
/// let bob = Key::new(TenantId::new("bob")?, DeviceId::new("cam-7")?, 9);
/// thumbs.insert(&alice, bytes::Bytes::from_static(b"alice's jpeg")).await?;
///
/// // A store that hands alice's entry to bob's key (as a mixed-up connection would):
/// let alices_entry = store.get(&alice.encode()).await?.unwrap();
/// store.set(&bob.encode(), alices_entry, None).await?;
/// assert_eq!(thumbs.get(&bob).await, None);
///
/// let reports = reports.lock().unwrap();
/// assert_eq!(reports[0].tier, Tier::Remote);
/// assert!(matches!(
///     &reports[0].violation,
///     Violation::OwnerMismatch { expected, found } if *expected == *bob.owner() && *found == *alice.owner()
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// The bytes are not a well-formed envelope (or exceed the size limits).
    #[error("malformed envelope: {reason}")]
    Malformed {
        /// What was wrong.
        reason: Malformed,
    },
    /// The tag does not match the contents: tampered, corrupted, or sealed with another secret.
    #[error("envelope tag does not verify (tampered, corrupted, or another secret)")]
    BadTag,
    /// An authentic envelope of another namespace.
    #[error("namespace mismatch: expected {expected}, found {found}")]
    NamespaceMismatch {
        /// The namespace asked for.
        expected: &'static str,
        /// The namespace in the envelope.
        found: String,
    },
    /// An authentic value of another owner: the failure this crate exists to stop.
    #[error("owner mismatch: expected {expected}, found {found}")]
    OwnerMismatch {
        /// The owner asked for.
        expected: Owner,
        /// The owner the value belongs to.
        found: Owner,
    },
    /// An authentic value of the same owner but another item.
    #[error("item mismatch: a value of another item of the same owner")]
    ItemMismatch,
    /// An authentic payload that the namespace's codec cannot decode.
    #[error("payload does not decode as the namespace's value type")]
    Undecodable,
}

/// What made an envelope malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// Larger than the configured maximum; refused before any parsing.
    #[error("{len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The input length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Shorter than its fields say.
    #[error("truncated")]
    Truncated,
    /// Longer than its fields say.
    #[error("trailing bytes")]
    TrailingBytes,
    /// Does not start with the envelope magic.
    #[error("bad magic (not an envelope)")]
    BadMagic,
    /// A format version this build does not read.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// Reserved flag bits are set.
    #[error("reserved flags set")]
    ReservedFlags,
    /// The embedded key does not decode (only possible for an authentic envelope from a buggy writer).
    #[error("embedded key does not decode")]
    BadKey,
}

/// The kind of a [`Violation`], without its details: for counters and metrics labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ViolationKind {
    /// [`Violation::Malformed`]: not a well-formed envelope.
    Malformed,
    /// [`Violation::BadTag`]: the tag does not verify.
    BadTag,
    /// [`Violation::NamespaceMismatch`]: an authentic value of another namespace.
    NamespaceMismatch,
    /// [`Violation::OwnerMismatch`]: an authentic value of another owner.
    OwnerMismatch,
    /// [`Violation::ItemMismatch`]: an authentic value of another item of the same owner.
    ItemMismatch,
    /// [`Violation::Undecodable`]: an authentic payload the codec cannot decode.
    Undecodable,
}

impl ViolationKind {
    /// Every kind, in declaration order.
    pub const ALL: [ViolationKind; 6] = [
        ViolationKind::Malformed,
        ViolationKind::BadTag,
        ViolationKind::NamespaceMismatch,
        ViolationKind::OwnerMismatch,
        ViolationKind::ItemMismatch,
        ViolationKind::Undecodable,
    ];

    /// A stable snake_case name, for logs and metric labels.
    pub const fn name(self) -> &'static str {
        match self {
            ViolationKind::Malformed => "malformed",
            ViolationKind::BadTag => "bad_tag",
            ViolationKind::NamespaceMismatch => "namespace_mismatch",
            ViolationKind::OwnerMismatch => "owner_mismatch",
            ViolationKind::ItemMismatch => "item_mismatch",
            ViolationKind::Undecodable => "undecodable",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl Violation {
    /// This violation's kind.
    pub fn kind(&self) -> ViolationKind {
        match self {
            Violation::Malformed { .. } => ViolationKind::Malformed,
            Violation::BadTag => ViolationKind::BadTag,
            Violation::NamespaceMismatch { .. } => ViolationKind::NamespaceMismatch,
            Violation::OwnerMismatch { .. } => ViolationKind::OwnerMismatch,
            Violation::ItemMismatch => ViolationKind::ItemMismatch,
            Violation::Undecodable => ViolationKind::Undecodable,
        }
    }
}

/// The tier a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Tier {
    /// The in-process [`LocalCache`](crate::LocalCache).
    Local,
    /// The [`RemoteStore`](crate::store::RemoteStore).
    Remote,
}

/// What a violation sink receives: enough to scope an incident exactly, no payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ViolationReport {
    /// The namespace of the read.
    pub namespace: &'static str,
    /// Where the refused value came from (it has been deleted there).
    pub tier: Tier,
    /// The owner the caller asked for.
    pub expected: Owner,
    /// What was wrong.
    pub violation: Violation,
    /// The encoded key of the read ([`Key::encode`](crate::Key::encode)): for the remote tier,
    /// the store key the refused value was read under (without a store's own key prefix). Show
    /// it with [`Escaped`](crate::envelope::Escaped).
    pub key: Vec<u8>,
}

impl ViolationReport {
    /// The owner whose data the refused value is, when the value proved it: the authenticated
    /// owner inside it. `None` when nothing inside was believed (a bad tag, malformed bytes) or
    /// the report does not carry it (a value of another namespace, whose namespace
    /// [`Violation::NamespaceMismatch`] names).
    ///
    /// For [`Violation::OwnerMismatch`] that is its `found` owner; for
    /// [`Violation::ItemMismatch`] and [`Violation::Undecodable`] the value was sealed for the
    /// expected owner itself (another of its items, or a payload its codec cannot read), so it
    /// is [`expected`](Self::expected). Never an owner the stored bytes merely claim.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use scoped_cache::{Client, DeviceId, Key, KeyId, KeyRing, MemoryStore, Namespace, RawBytes, TenantId};
    /// use scoped_cache::store::RemoteStore;
    /// use std::sync::{Arc, Mutex};
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let store = Arc::new(MemoryStore::default());
    /// let found = Arc::new(Mutex::new(Vec::new()));
    /// let sink = found.clone();
    /// let client = Client::builder()
    ///     .key_ring(KeyRing::new(KeyId(1), &[42; 32])?)
    ///     .remote_shared(store.clone())
    ///     .on_violation(move |report| sink.lock().unwrap().push((report.found_owner().cloned(), report.key.clone())))
    ///     .build()?;
    /// let thumbs = client.cache::<Thumbnails>().local_capacity(0).build()?;
    /// let alice = Key::new(TenantId::new("alice")?, DeviceId::new("cam-7")?, 9);
    /// let bob = Key::new(TenantId::new("bob")?, DeviceId::new("cam-7")?, 9);
    /// thumbs.insert(&alice, bytes::Bytes::from_static(b"alice's jpeg")).await?;
    /// store.set(&bob.encode(), store.get(&alice.encode()).await?.unwrap(), None).await?;
    /// store.set(&Key::<Thumbnails>::new(TenantId::new("bob")?, DeviceId::new("cam-7")?, 10).encode(), "forged".into(), None).await?;
    ///
    /// assert_eq!(thumbs.get(&bob).await, None);
    /// assert_eq!(thumbs.get(&Key::new(TenantId::new("bob")?, DeviceId::new("cam-7")?, 10)).await, None);
    /// let found = found.lock().unwrap();
    /// assert_eq!(found[0], (Some(alice.owner().clone()), bob.encode())); // proven alice's
    /// assert_eq!(found[1].0, None); // not an envelope: it proves nothing
    /// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
    /// ```
    pub fn found_owner(&self) -> Option<&Owner> {
        match &self.violation {
            Violation::OwnerMismatch { found, .. } => Some(found),
            Violation::ItemMismatch | Violation::Undecodable => Some(&self.expected),
            Violation::Malformed { .. }
            | Violation::BadTag
            | Violation::NamespaceMismatch { .. } => None,
        }
    }
}

/// A callback that receives every violation report, e.g. to page an operator.
pub type ViolationSink = std::sync::Arc<dyn Fn(&ViolationReport) + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_kind_at_its_index() {
        // Exhaustive: a new kind does not compile here until it is given a place, here and in
        // `ALL` (whose length below then changes too). A kind left out of `ALL` would panic on
        // its first count.
        let position = |kind: ViolationKind| match kind {
            ViolationKind::Malformed => 0,
            ViolationKind::BadTag => 1,
            ViolationKind::NamespaceMismatch => 2,
            ViolationKind::OwnerMismatch => 3,
            ViolationKind::ItemMismatch => 4,
            ViolationKind::Undecodable => 5,
        };
        for (index, kind) in ViolationKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), index, "{kind:?} is not at its index in ALL");
            assert_eq!(position(kind), index, "{kind:?} listed out of order");
        }
        assert_eq!(ViolationKind::ALL.len(), 6, "ALL must list every kind once");
    }
}
