//! Keys: who owns a value (`Owner`) and which value it is (`Key<N>`).

mod encoding;
mod escaped;

#[cfg(feature = "redis")]
#[cfg(feature = "redis")]
pub(crate) use encoding::owner_span;
pub use encoding::{KEY_PREFIX, KeyDecodeError, RawKey};
pub use escaped::Escaped;

use crate::id::{DeviceId, TenantId};
use crate::item::ItemKey;
use crate::namespace::{Namespace, assert_valid_name};
use std::cell::RefCell;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

/// The owner of a cached value: a tenant and one of its devices.
///
/// # Examples
///
/// ```
/// use scoped_cache::{DeviceId, Owner, TenantId};
/// let owner = Owner::new(TenantId::from_u64(42), DeviceId::from_u64(7));
/// assert_eq!(owner.to_string(), "tenant 42, device 7");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub struct Owner {
    /// The tenant (user, account) that owns the value.
    pub tenant: TenantId,
    /// The tenant's device the value belongs to.
    pub device: DeviceId,
}

impl Owner {
    /// An owner from its two ids, in this order.
    pub fn new(tenant: TenantId, device: DeviceId) -> Self {
        Self { tenant, device }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tenant {}, device {}", self.tenant, self.device)
    }
}

/// The full key of a cached value: namespace `N` (in the type), owner, and item.
///
/// A `Key<A>` cannot be used with a `Cache<B>` or `LocalCache<B>`. Its byte encoding
/// ([`Key::encode`]) is injective, so two different keys never share a store entry.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use scoped_cache::{DeviceId, Key, Namespace, RawBytes, TenantId};
///
/// struct Thumbnails;
/// impl Namespace for Thumbnails {
///     const NAME: &'static str = "thumb";
///     const SCHEMA: u16 = 1;
///     type Item = u64;
///     type Value = Bytes;
///     type Codec = RawBytes;
/// }
///
/// let key = Key::<Thumbnails>::new(TenantId::new("user-42")?, DeviceId::new("cam-7")?, 9);
/// let bytes = key.encode();
/// assert!(bytes.starts_with(b"sc1:thumb:"));
/// assert_eq!(Key::<Thumbnails>::decode(&bytes)?, key);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Key<N: Namespace> {
    owner: Owner,
    item: N::Item,
    namespace: PhantomData<fn() -> N>,
}

impl<N: Namespace> Key<N> {
    /// A key for `item` owned by `device` of `tenant`.
    ///
    /// The namespace's `NAME` is checked when this compiles: a name outside `[a-z0-9_-]{1,32}`
    /// is a build error, never a runtime panic.
    pub fn new(tenant: TenantId, device: DeviceId, item: N::Item) -> Self {
        Self::for_owner(Owner::new(tenant, device), item)
    }

    /// A key for `item` of `owner`.
    pub fn for_owner(owner: Owner, item: N::Item) -> Self {
        const { assert_valid_name(N::NAME) };
        Self {
            owner,
            item,
            namespace: PhantomData,
        }
    }

    /// Who owns the value.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The item within the owner.
    pub fn item(&self) -> &N::Item {
        &self.item
    }

    /// The key's bytes, as used in remote stores and envelopes (see `docs/ENVELOPE.md`).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out);
        out
    }

    /// Appends [`Key::encode`]'s bytes to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        encoding::encode_key(N::NAME, &self.owner, |out| self.item.encode_item(out), out);
    }

    /// The length of [`Key::encode`]'s bytes. Only the item is encoded, into the thread's
    /// scratch buffer: sealing sizes the envelope with it, then encodes the key straight in.
    pub(crate) fn encoded_len(&self) -> usize {
        let item_len = with_scratch(|buffer| {
            self.item.encode_item(buffer);
            buffer.len()
        });
        encoding::encoded_len(N::NAME, &self.owner, item_len)
    }

    /// Whether `encoded` is exactly [`Key::encode`]'s bytes. Checked in place: only the item
    /// is encoded, into the thread's scratch buffer, so opening an envelope allocates nothing.
    pub(crate) fn is_encoded_by(&self, encoded: &[u8]) -> bool {
        let Some(item) = encoding::item_of(encoded, N::NAME, &self.owner) else {
            return false;
        };
        with_scratch(|buffer| {
            self.item.encode_item(buffer);
            same_bytes(buffer, item)
        })
    }

    /// Reads a key back from [`Key::encode`]'s bytes.
    ///
    /// # Errors
    ///
    /// [`KeyDecodeError`] for any input that is not exactly the encoding of a key of this
    /// namespace; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, KeyDecodeError> {
        let raw = RawKey::decode(bytes)?;
        if raw.namespace != N::NAME {
            return Err(KeyDecodeError::OtherNamespace);
        }
        let item = N::Item::decode_item(&raw.item).map_err(KeyDecodeError::Item)?;
        Ok(Self::for_owner(raw.owner, item))
    }
}

/// Calls `f` with an empty buffer that each thread reuses, so encoding an item for a moment
/// allocates nothing once the thread has encoded one as long.
fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    thread_local! {
        static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buffer) => {
            buffer.clear();
            f(&mut buffer)
        }
        // Re-entered from an item's `encode_item` that itself encodes a key.
        Err(_) => f(&mut Vec::new()),
    })
}

/// Whether `a` and `b` are equal. Items are short, and compared inline: a call to `memcmp`
/// cost more than the comparison itself.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

impl<N: Namespace> Clone for Key<N> {
    fn clone(&self) -> Self {
        Self {
            owner: self.owner.clone(),
            item: self.item.clone(),
            namespace: PhantomData,
        }
    }
}

impl<N: Namespace> PartialEq for Key<N> {
    fn eq(&self, other: &Self) -> bool {
        self.owner == other.owner && self.item == other.item
    }
}

impl<N: Namespace> Eq for Key<N> {}

impl<N: Namespace> Hash for Key<N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.owner.hash(state);
        self.item.hash(state);
    }
}

impl<N: Namespace> fmt::Debug for Key<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("namespace", &N::NAME)
            .field("tenant", &self.owner.tenant)
            .field("device", &self.owner.device)
            .field("item", &self.item)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::RawBytes;
    use proptest::prelude::*;

    struct Events;
    impl Namespace for Events {
        const NAME: &'static str = "events";
        const SCHEMA: u16 = 1;
        type Item = u64;
        type Value = bytes::Bytes;
        type Codec = RawBytes;
    }

    /// The same name but one letter: a key of it must never pass for an `Events` key.
    struct Event;
    impl Namespace for Event {
        const NAME: &'static str = "event";
        const SCHEMA: u16 = 1;
        type Item = u64;
        type Value = bytes::Bytes;
        type Codec = RawBytes;
    }

    struct Names;
    impl Namespace for Names {
        const NAME: &'static str = "names";
        const SCHEMA: u16 = 1;
        type Item = String;
        type Value = bytes::Bytes;
        type Codec = RawBytes;
    }

    /// Every id kind, with numbers that text ids spell and a text id long enough for the heap.
    fn id() -> impl Strategy<Value = crate::id::IdRepr> {
        prop_oneof![
            (0u64..3).prop_map(|n| TenantId::from_u64(n).0),
            (0u8..2).prop_map(|b| TenantId::from_uuid([b; 16]).0),
            prop::sample::select(vec!["1", "2", "a-text-id-longer-than-sixteen-bytes"])
                .prop_map(|text| TenantId::new(text).expect("valid").0),
        ]
    }

    fn owner() -> impl Strategy<Value = Owner> {
        (id(), id()).prop_map(|(tenant, device)| Owner::new(TenantId(tenant), DeviceId(device)))
    }

    fn events_key() -> impl Strategy<Value = Key<Events>> {
        (owner(), 0u64..3).prop_map(|(owner, item)| Key::for_owner(owner, item))
    }

    fn names_key() -> impl Strategy<Value = Key<Names>> {
        (owner(), "[a-z]{0,3}").prop_map(|(owner, item)| Key::for_owner(owner, item))
    }

    /// Bytes to check a key against: another key's encoding, or the key's own encoding with one
    /// byte changed, cut short or extended.
    fn candidate<N: Namespace>(key: &Key<N>, other: Vec<u8>, at: usize, edit: u8) -> Vec<u8> {
        let mut bytes = key.encode();
        let at = at % bytes.len();
        match edit % 5 {
            0 => return other,
            1 => bytes[at] ^= edit | 1,
            2 => bytes.truncate(at),
            3 => bytes.insert(at, edit),
            _ => {} // the key's own encoding
        }
        bytes
    }

    proptest! {
        /// The in-place check gives the same answer as encoding the key and comparing.
        #[test]
        fn is_encoded_by_agrees_with_encode(
            key in events_key(),
            other in events_key(),
            alias in owner(),
            at in any::<usize>(),
            edit in any::<u8>(),
            names in (names_key(), names_key()),
        ) {
            let other = match edit % 3 {
                0 => other.encode(),
                1 => Key::<Event>::for_owner(alias, *key.item()).encode(),
                _ => Key::<Event>::for_owner(key.owner().clone(), *key.item()).encode(),
            };
            let bytes = candidate(&key, other, at, edit);
            prop_assert_eq!(key.is_encoded_by(&bytes), bytes == key.encode(), "{:?}", bytes);
            let (name, other_name) = names;
            let bytes = candidate(&name, other_name.encode(), at, edit);
            prop_assert_eq!(name.is_encoded_by(&bytes), bytes == name.encode(), "{:?}", bytes);
        }

        /// Sealing sizes an envelope by `encoded_len` before it encodes the key into it.
        #[test]
        fn encoded_len_is_the_encodings_length(key in events_key(), name in names_key()) {
            prop_assert_eq!(key.encoded_len(), key.encode().len(), "{:?}", key);
            prop_assert_eq!(name.encoded_len(), name.encode().len(), "{:?}", name);
        }
    }
}
