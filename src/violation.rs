//! Violations: a stored value that does not prove it belongs to the requested key.

use crate::key::Owner;
use crate::keyring::KeyId;

/// Why a stored value was refused. Never a value: the caller sees a miss.
///
/// Fields that come from the stored bytes (`found` owner, namespace, schema) are reported only
/// after the envelope's tag verified, so a report never repeats attacker-chosen data as fact.
///
/// A [`Cache`](crate::Cache) counts each violation in [`Stats`](crate::Stats), hands it to the
/// client's violation sink in a [`ViolationReport`], deletes the value and reads a miss;
/// [`Envelope::open`](crate::Envelope::open) returns it as its error.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use scoped_cache::{Client, DeviceId, Key, KeyId, KeyRing, MemoryStore, Namespace, RawBytes, RemoteStore, TenantId, Tier, Violation};
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
    /// The envelope names a key id this ring does not have.
    #[error("envelope sealed with unknown key id {key_id}; add it to the key ring if it is yours")]
    UnknownKey {
        /// The key id written in the envelope (not authenticated).
        key_id: KeyId,
    },
    /// An authentic envelope of another namespace.
    #[error("namespace mismatch: expected {expected}, found {found}")]
    NamespaceMismatch {
        /// The namespace asked for.
        expected: &'static str,
        /// The namespace in the envelope.
        found: String,
    },
    /// An authentic envelope written with another schema version (usually a deploy in progress).
    #[error("schema mismatch: expected {expected}, found {found}")]
    SchemaMismatch {
        /// The namespace's schema.
        expected: u16,
        /// The schema in the envelope.
        found: u16,
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
    /// An authentic value past its expiry.
    #[error("expired at {expires_ms} ms since the epoch (now {now_ms})")]
    Expired {
        /// When the envelope expired, in ms since the Unix epoch.
        expires_ms: u64,
        /// The time of the check.
        now_ms: u64,
    },
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
    /// [`Violation::UnknownKey`]: sealed with a key id not in the ring.
    UnknownKey,
    /// [`Violation::NamespaceMismatch`]: an authentic value of another namespace.
    NamespaceMismatch,
    /// [`Violation::SchemaMismatch`]: an authentic value of another schema version.
    SchemaMismatch,
    /// [`Violation::OwnerMismatch`]: an authentic value of another owner.
    OwnerMismatch,
    /// [`Violation::ItemMismatch`]: an authentic value of another item of the same owner.
    ItemMismatch,
    /// [`Violation::Expired`]: an authentic value past its expiry.
    Expired,
    /// [`Violation::Undecodable`]: an authentic payload the codec cannot decode.
    Undecodable,
}

impl ViolationKind {
    /// Every kind, in declaration order.
    pub const ALL: [ViolationKind; 9] = [
        ViolationKind::Malformed,
        ViolationKind::BadTag,
        ViolationKind::UnknownKey,
        ViolationKind::NamespaceMismatch,
        ViolationKind::SchemaMismatch,
        ViolationKind::OwnerMismatch,
        ViolationKind::ItemMismatch,
        ViolationKind::Expired,
        ViolationKind::Undecodable,
    ];

    /// A stable snake_case name, for logs and metric labels.
    pub const fn name(self) -> &'static str {
        match self {
            ViolationKind::Malformed => "malformed",
            ViolationKind::BadTag => "bad_tag",
            ViolationKind::UnknownKey => "unknown_key",
            ViolationKind::NamespaceMismatch => "namespace_mismatch",
            ViolationKind::SchemaMismatch => "schema_mismatch",
            ViolationKind::OwnerMismatch => "owner_mismatch",
            ViolationKind::ItemMismatch => "item_mismatch",
            ViolationKind::Expired => "expired",
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
            Violation::UnknownKey { .. } => ViolationKind::UnknownKey,
            Violation::NamespaceMismatch { .. } => ViolationKind::NamespaceMismatch,
            Violation::SchemaMismatch { .. } => ViolationKind::SchemaMismatch,
            Violation::OwnerMismatch { .. } => ViolationKind::OwnerMismatch,
            Violation::ItemMismatch => ViolationKind::ItemMismatch,
            Violation::Expired { .. } => ViolationKind::Expired,
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
    /// The [`RemoteStore`](crate::RemoteStore).
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
}

/// A callback that receives every violation report, e.g. to page an operator.
pub type ViolationSink = std::sync::Arc<dyn Fn(&ViolationReport) + Send + Sync>;
