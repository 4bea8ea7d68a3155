//! `KeyLayout`: where an encoded key goes in a Redis key, and so, on a cluster, which slot
//! holds it. Pure functions over bytes; the stores write keys through it.

use crate::key::owner_span;
use sha2::{Digest as _, Sha256};
use std::borrow::Cow;

/// Hex digits of the owner's hash tag: 32 bits, far more than the 16,384 slots need.
const TAG_HEX: usize = 8;

/// How a Redis store lays out its keys (after its prefix); chosen with
/// [`RedisClusterStoreBuilder::key_layout`](crate::store::RedisClusterStoreBuilder::key_layout).
///
/// The layout decides only *where* a value is stored. The value is still an envelope sealed
/// for the full encoded key, and still opened for the key the caller asked for: a layout cannot
/// make one owner's value readable as another's, whichever slot they share.
///
/// Every instance of a fleet must use the same layout, or each finds only its own writes:
/// changing it is a cold shared tier (values under the old layout are no longer read, and
/// expire with their TTL), never a wrong value.
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use scoped_cache::store::KeyLayout;
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
/// let key = |device, item| {
///     Key::<Thumbnails>::new(TenantId::from_u64(42), DeviceId::from_u64(device), item).encode()
/// };
///
/// // Flat: the encoded key as it is.
/// assert_eq!(KeyLayout::Flat.store_key(&key(7, 1)), key(7, 1));
///
/// // Owner-affine: a hash tag of (tenant, device) after the namespace, the same for every item
/// // of the device, so that Redis Cluster puts them all in one slot.
/// let one = KeyLayout::OwnerAffine.store_key(&key(7, 1));
/// let two = KeyLayout::OwnerAffine.store_key(&key(7, 2));
/// let other_device = KeyLayout::OwnerAffine.store_key(&key(8, 1));
/// assert!(one.starts_with(b"sc1:thumb:{"));
/// assert_eq!(one[..19], two[..19]); // "sc1:thumb:{" and the same 8-digit tag, then "}"
/// assert_ne!(one[..19], other_device[..19]);
///
/// // Tools that read store keys get the encoded key back from either layout.
/// assert_eq!(KeyLayout::key_stored_under(&one), key(7, 1));
/// assert_eq!(KeyLayout::key_stored_under(&key(7, 1)), key(7, 1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeyLayout {
    /// The encoded key as it is: `sc1:thumb:T…D…I…`. On a cluster each key lands in the slot of
    /// its own CRC16, so one device's values are spread over every primary, and a `get_many`
    /// of them is one request per slot, sent to the nodes in parallel.
    #[default]
    Flat,
    /// A hash tag of the owner (tenant and device) inserted after the namespace:
    /// `sc1:thumb:{1f3a9c0e}T…D…I…`. Redis Cluster places a key by its first `{…}`, so all of a
    /// device's values, in every namespace, share one slot: a `get_many` for one device is one
    /// `MGET` to one node, and a device's values move together in a reshard.
    ///
    /// The price is balance: a device's whole load falls on one primary. Devices are many and
    /// their tags spread evenly over the slots, so this only matters when a few devices carry a
    /// large share of the traffic. The tag is the first 32 bits of SHA-256 of the owner's encoded
    /// fields, in hex: the same in every process and version, and it never contains a `}`. Keys
    /// that are not scoped-cache keys are stored flat.
    OwnerAffine,
}

impl KeyLayout {
    /// The Redis key, without the store's prefix, under which `key` (an encoded key, as
    /// [`Key::encode`](crate::Key::encode) writes it) is stored in this layout.
    pub fn store_key(self, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(key.len() + TAG_HEX + 2);
        self.write(&mut out, key);
        out
    }

    /// The encoded key stored under the Redis key `store_key` (without the store's prefix),
    /// whichever layout wrote it: an owner-affine key without its tag, any other bytes as they
    /// are. A tag that is not the one of the key's owner is left in place, so such bytes do not
    /// decode as a key (no store of this crate reads or writes them).
    pub fn key_stored_under(store_key: &[u8]) -> Cow<'_, [u8]> {
        let Some(at) = tag_position(store_key) else {
            return Cow::Borrowed(store_key);
        };
        let Some(end) = at.checked_add(TAG_HEX + 2) else {
            return Cow::Borrowed(store_key);
        };
        let Some(tag) = store_key.get(at..end) else {
            return Cow::Borrowed(store_key);
        };
        let key = [&store_key[..at], &store_key[end..]].concat();
        match owner_span(&key) {
            Some(owner)
                if owner.start == at
                    && tag.last() == Some(&b'}')
                    && tag[1..=TAG_HEX] == owner_tag(&key[owner.clone()]) =>
            {
                Cow::Owned(key)
            }
            _ => Cow::Borrowed(store_key),
        }
    }

    /// Appends `prefix` and `key`'s store key to `cmd`, as one argument.
    #[cfg(any(feature = "redis-cluster", test))]
    pub(crate) fn key_arg(self, cmd: &mut redis::Cmd, prefix: &[u8], key: &[u8]) {
        use redis::RedisWrite as _;
        let mut arg = cmd.writer_for_next_arg();
        // Writing to the command's own buffer cannot fail.
        let _ = std::io::Write::write_all(&mut arg, prefix);
        let mut out = Vec::new();
        let store_key: &[u8] = match self {
            KeyLayout::Flat => key,
            KeyLayout::OwnerAffine => {
                self.write(&mut out, key);
                &out
            }
        };
        let _ = std::io::Write::write_all(&mut arg, store_key);
    }

    fn write(self, out: &mut Vec<u8>, key: &[u8]) {
        match (self, owner_span(key)) {
            (KeyLayout::OwnerAffine, Some(owner)) => {
                out.extend_from_slice(&key[..owner.start]);
                out.push(b'{');
                out.extend_from_slice(&owner_tag(&key[owner.clone()]));
                out.push(b'}');
                out.extend_from_slice(&key[owner.start..]);
            }
            _ => out.extend_from_slice(key),
        }
    }
}

/// Where an owner tag would start in `store_key`: just after the namespace's `:`, when a `{`
/// is there (an encoded key has its tenant tag `T` there).
fn tag_position(store_key: &[u8]) -> Option<usize> {
    let rest = store_key.strip_prefix(crate::key::KEY_PREFIX)?;
    let at = crate::key::KEY_PREFIX.len() + rest.iter().position(|&b| b == b':')? + 1;
    (store_key.get(at) == Some(&b'{')).then_some(at)
}

/// The hash tag's content for an owner's encoded fields: lower-case hex, never a `}`.
fn owner_tag(owner: &[u8]) -> [u8; TAG_HEX] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(owner);
    let mut tag = [0; TAG_HEX];
    for (i, pair) in tag.chunks_exact_mut(2).enumerate() {
        pair[0] = HEX[usize::from(digest[i] >> 4)];
        pair[1] = HEX[usize::from(digest[i] & 0x0f)];
    }
    tag
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceId, Key, Namespace, RawBytes, TenantId};
    use bytes::Bytes;

    struct Thumbs;
    impl Namespace for Thumbs {
        const NAME: &'static str = "thumb";
        const SCHEMA: u16 = 1;
        type Item = u64;
        type Value = Bytes;
        type Codec = RawBytes;
    }

    fn key(tenant: &str, device: &str, item: u64) -> Vec<u8> {
        Key::<Thumbs>::new(
            TenantId::new(tenant).unwrap(),
            DeviceId::new(device).unwrap(),
            item,
        )
        .encode()
    }

    /// The hash tag as Redis Cluster reads it: the bytes between the first `{` and the first
    /// `}` after it, when there are any.
    fn redis_hash_tag(key: &[u8]) -> Option<&[u8]> {
        let open = key.iter().position(|&b| b == b'{')?;
        let close = key[open + 1..].iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &key[open + 1..open + 1 + close])
    }

    #[test]
    fn one_owner_one_tag_whatever_its_ids_contain() {
        // Ids with braces, and lengths of 123 and 125 ('{' and '}' as the length byte).
        let long = |c: char, n: usize| c.to_string().repeat(n);
        let owners = [
            ("user-42".to_owned(), "cam-7".to_owned()),
            ("a}b".to_owned(), "{c}".to_owned()),
            (long('x', 123), long('y', 125)),
        ];
        for (tenant, device) in &owners {
            let one = KeyLayout::OwnerAffine.store_key(&key(tenant, device, 1));
            let two = KeyLayout::OwnerAffine.store_key(&key(tenant, device, u64::MAX));
            let tag = redis_hash_tag(&one).unwrap();
            assert_eq!(tag.len(), TAG_HEX, "{tenant}/{device}");
            assert_eq!(Some(tag), redis_hash_tag(&two), "{tenant}/{device}");
            let swapped = KeyLayout::OwnerAffine.store_key(&key(device, tenant, 1));
            assert_ne!(Some(tag), redis_hash_tag(&swapped), "{tenant}/{device}");
            for (store_key, item) in [(&one, 1), (&two, u64::MAX)] {
                assert_eq!(
                    KeyLayout::key_stored_under(store_key),
                    key(tenant, device, item)
                );
            }
        }
    }

    #[test]
    fn a_wrong_tag_or_anything_else_is_left_as_it_is() {
        let encoded = key("user-42", "cam-7", 9);
        let mut store_key = KeyLayout::OwnerAffine.store_key(&encoded);
        assert_eq!(KeyLayout::key_stored_under(&store_key), encoded);
        // Another owner's tag in front of this owner's key.
        let other = KeyLayout::OwnerAffine.store_key(&key("user-43", "cam-7", 9));
        store_key[10..20].copy_from_slice(&other[10..20]);
        assert_eq!(KeyLayout::key_stored_under(&store_key), store_key);
        for bytes in [
            &b""[..],
            b"sc1:",
            b"sc1:thumb:{",
            b"sc1:thumb:{0123456",
            b"sc1:thumb:{01234567}",
            b"sc1:thumb:{01234567}T",
            b"not a key",
        ] {
            assert_eq!(KeyLayout::key_stored_under(bytes), bytes);
            assert_eq!(KeyLayout::OwnerAffine.store_key(bytes), bytes);
        }
    }

    #[test]
    fn the_command_argument_is_the_prefix_then_the_store_key() {
        let encoded = key("user-42", "cam-7", 9);
        for layout in [KeyLayout::Flat, KeyLayout::OwnerAffine] {
            let mut cmd = redis::cmd("GET");
            layout.key_arg(&mut cmd, b"svc:", &encoded);
            let expected = [&b"svc:"[..], &layout.store_key(&encoded)].concat();
            assert_eq!(
                cmd.args_iter().nth(1),
                Some(redis::Arg::Simple(&expected[..]))
            );
        }
    }
}
