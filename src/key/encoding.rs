//! The byte encoding of keys: readable prefix, then type-tagged, length-prefixed fields.
//!
//! ```text
//! "sc1:" namespace ":"  'T' kind len id-bytes  'D' kind len id-bytes  'I' u32-be-len item-bytes
//! ```
//!
//! `kind` is 1 (u64, 8 bytes big-endian), 2 (UUID, 16 bytes) or 3 (UTF-8 text, 1..=128 bytes).
//! Every field is tagged and sized, the namespace cannot contain ':', and decoding accepts only
//! canonical input, so the encoding is injective: distinct keys never encode equal, and a key with
//! tenant and device exchanged encodes differently. The prefix `sc1:{namespace}:` lets operators
//! scan one namespace and write Redis ACL key patterns.

use crate::id::{DeviceId, IdError, IdRepr, MAX_TEXT_ID_LEN, TenantId};
use crate::item::ItemDecodeError;
use crate::key::Owner;
use crate::namespace::{NamespaceError, validate_namespace};

/// Every encoded key starts with these bytes (the format version is the `1`).
pub const KEY_PREFIX: &[u8] = b"sc1:";

const TENANT_TAG: u8 = b'T';
const DEVICE_TAG: u8 = b'D';
const ITEM_TAG: u8 = b'I';
const KIND_NUM: u8 = 1;
const KIND_UUID: u8 = 2;
const KIND_TEXT: u8 = 3;

/// Why bytes are not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyDecodeError {
    /// The bytes do not start with [`KEY_PREFIX`].
    #[error("not a scoped-cache key: missing the \"sc1:\" prefix")]
    MissingPrefix,
    /// The namespace part is invalid.
    #[error("invalid namespace in key: {0}")]
    Namespace(NamespaceError),
    /// The key belongs to another namespace than the one asked for.
    #[error("key belongs to another namespace")]
    OtherNamespace,
    /// The bytes end before the key does.
    #[error("key is truncated")]
    Truncated,
    /// A field tag or id kind is not what the format has at this position.
    #[error("unexpected byte {found:#04x} at offset {at}")]
    UnexpectedByte {
        /// Offset in the input.
        at: usize,
        /// The byte found there.
        found: u8,
    },
    /// An id has a length its kind does not allow.
    #[error("id of kind {kind} cannot be {len} bytes long")]
    BadIdLength {
        /// The id kind byte.
        kind: u8,
        /// The length found.
        len: usize,
    },
    /// A text id is not valid UTF-8.
    #[error("text id is not UTF-8")]
    NotUtf8,
    /// A text id breaks the id rules.
    #[error("invalid text id: {0}")]
    Id(IdError),
    /// The item bytes do not decode as the namespace's item type.
    #[error("{0}")]
    Item(ItemDecodeError),
    /// Bytes remain after the item.
    #[error("{0} unexpected bytes after the key")]
    TrailingBytes(usize),
}

/// A decoded key whose namespace and item type are not known statically (for tools and reports).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RawKey {
    /// The namespace name.
    pub namespace: String,
    /// The owner.
    pub owner: Owner,
    /// The item's encoded bytes.
    pub item: Vec<u8>,
}

impl RawKey {
    /// A raw key from its parts. The namespace must be valid.
    ///
    /// # Errors
    ///
    /// [`KeyDecodeError::Namespace`] when `namespace` is not `[a-z0-9_-]{1,32}`.
    pub fn new(namespace: &str, owner: Owner, item: Vec<u8>) -> Result<Self, KeyDecodeError> {
        validate_namespace(namespace).map_err(KeyDecodeError::Namespace)?;
        Ok(Self {
            namespace: namespace.to_owned(),
            owner,
            item,
        })
    }

    /// The key's bytes; equal to `Key::encode` of the same key.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        encode_key(
            &self.namespace,
            &self.owner,
            |out| out.extend_from_slice(&self.item),
            &mut out,
        );
        out
    }

    /// Decodes any bytes into a key, or says why they are not one. Total: never panics.
    ///
    /// # Errors
    ///
    /// [`KeyDecodeError`] for anything but the canonical encoding of a key.
    pub fn decode(bytes: &[u8]) -> Result<Self, KeyDecodeError> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(KEY_PREFIX.len())? != KEY_PREFIX {
            return Err(KeyDecodeError::MissingPrefix);
        }
        let rest = &bytes[reader.at..];
        let name_len = rest
            .iter()
            .position(|&b| b == b':')
            .ok_or(KeyDecodeError::Truncated)?;
        let name = reader.take(name_len)?;
        let namespace = std::str::from_utf8(name)
            .map_err(|_| KeyDecodeError::Namespace(NamespaceError::BadByte))?;
        validate_namespace(namespace).map_err(KeyDecodeError::Namespace)?;
        reader.expect(b':')?;
        reader.expect(TENANT_TAG)?;
        let tenant = TenantId(reader.id()?);
        reader.expect(DEVICE_TAG)?;
        let device = DeviceId(reader.id()?);
        reader.expect(ITEM_TAG)?;
        let len_bytes: [u8; 4] = reader
            .take(4)?
            .try_into()
            .map_err(|_| KeyDecodeError::Truncated)?;
        let item_len = usize::try_from(u32::from_be_bytes(len_bytes))
            .map_err(|_| KeyDecodeError::Truncated)?;
        let item = reader.take(item_len)?.to_vec();
        let trailing = bytes.len() - reader.at;
        if trailing != 0 {
            return Err(KeyDecodeError::TrailingBytes(trailing));
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            owner: Owner::new(tenant, device),
            item,
        })
    }
}

/// Writes the encoding of (namespace, owner, item) to `out`.
pub(crate) fn encode_key(
    namespace: &str,
    owner: &Owner,
    write_item: impl FnOnce(&mut Vec<u8>),
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(KEY_PREFIX);
    out.extend_from_slice(namespace.as_bytes());
    out.push(b':');
    out.push(TENANT_TAG);
    encode_id(&owner.tenant.0, out);
    out.push(DEVICE_TAG);
    encode_id(&owner.device.0, out);
    out.push(ITEM_TAG);
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    write_item(out);
    // Items longer than 4 GiB cannot be stored anywhere this crate writes to; saturate so the
    // envelope's size limit refuses them rather than wrapping the length.
    let item_len = u32::try_from(out.len() - len_at - 4).unwrap_or(u32::MAX);
    out[len_at..len_at + 4].copy_from_slice(&item_len.to_be_bytes());
}

/// The length of [`encode_key`]'s output for an item of `item_len` bytes.
pub(crate) fn encoded_len(namespace: &str, owner: &Owner, item_len: usize) -> usize {
    // The prefix, the namespace and ':', the three tags, the item's length.
    let fields = KEY_PREFIX.len() + namespace.len() + 1 + 3 + 4;
    fields + id_len(&owner.tenant.0) + id_len(&owner.device.0) + item_len
}

/// The length of [`encode_id`]'s output: kind, length, bytes.
fn id_len(id: &IdRepr) -> usize {
    2 + match id {
        IdRepr::Num(n) => size_of_val(n),
        IdRepr::Uuid(u) => u.len(),
        IdRepr::Inline { .. } | IdRepr::Heap(_) => id.as_text().unwrap_or_default().len(),
    }
}

fn encode_id(id: &IdRepr, out: &mut Vec<u8>) {
    let (kind, data): (u8, &[u8]) = match id {
        IdRepr::Num(n) => {
            out.extend_from_slice(&[KIND_NUM, 8]);
            out.extend_from_slice(&n.to_be_bytes());
            return;
        }
        IdRepr::Uuid(u) => (KIND_UUID, u),
        IdRepr::Inline { .. } | IdRepr::Heap(_) => {
            (KIND_TEXT, id.as_text().unwrap_or_default().as_bytes())
        }
    };
    // Text ids are at most 128 bytes and UUIDs 16, so the length fits a byte.
    out.extend_from_slice(&[kind, data.len() as u8]);
    out.extend_from_slice(data);
}

/// The item bytes of `encoded` when everything before them is what [`encode_key`] writes for
/// `namespace` and `owner`, and the item's length field counts exactly the bytes that remain;
/// `None` otherwise. Compared in place: nothing is written. Inlined into each namespace's
/// check, where the namespace is a constant and its comparison needs no call to `memcmp`.
#[inline]
pub(crate) fn item_of<'a>(encoded: &'a [u8], namespace: &str, owner: &Owner) -> Option<&'a [u8]> {
    let rest = encoded
        .strip_prefix(KEY_PREFIX)?
        .strip_prefix(namespace.as_bytes())?
        .strip_prefix(&[b':', TENANT_TAG])?;
    let rest = strip_id(rest, &owner.tenant.0)?.strip_prefix(&[DEVICE_TAG])?;
    let rest = strip_id(rest, &owner.device.0)?.strip_prefix(&[ITEM_TAG])?;
    let (item_len, item) = rest.split_first_chunk::<4>()?;
    (usize::try_from(u32::from_be_bytes(*item_len)).ok()? == item.len()).then_some(item)
}

/// Where the owner's fields (tenant and device, their tags included) lie in `encoded`, when
/// it has the shape of an encoded key up to its item tag: the prefix, a namespace, then two
/// tagged and sized ids. Checks the shape only, not the namespace's or the ids' contents (the
/// store layouts place keys with it; opening an envelope checks the key).
#[cfg(feature = "redis")]
pub(crate) fn owner_span(encoded: &[u8]) -> Option<std::ops::Range<usize>> {
    let rest = encoded.strip_prefix(KEY_PREFIX)?;
    let start = KEY_PREFIX.len() + rest.iter().position(|&b| b == b':')? + 1;
    let mut at = start;
    for tag in [TENANT_TAG, DEVICE_TAG] {
        let &[found, _kind, len] = encoded.get(at..at.checked_add(3)?)? else {
            return None;
        };
        if found != tag {
            return None;
        }
        at += 3 + usize::from(len);
    }
    (encoded.get(at) == Some(&ITEM_TAG)).then_some(start..at)
}

/// `bytes` after [`encode_id`]'s encoding of `id`, if they start with it.
#[inline]
fn strip_id<'a>(bytes: &'a [u8], id: &IdRepr) -> Option<&'a [u8]> {
    let (kind, data): (u8, &[u8]) = match id {
        IdRepr::Num(n) => {
            let (field, rest) = bytes.split_first_chunk::<10>()?;
            return (field[..2] == [KIND_NUM, 8] && field[2..] == n.to_be_bytes()).then_some(rest);
        }
        IdRepr::Uuid(u) => (KIND_UUID, u),
        IdRepr::Inline { .. } | IdRepr::Heap(_) => {
            (KIND_TEXT, id.as_text().unwrap_or_default().as_bytes())
        }
    };
    bytes
        .strip_prefix(&[kind, data.len() as u8])?
        .strip_prefix(data)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], KeyDecodeError> {
        let end = self.at.checked_add(len).ok_or(KeyDecodeError::Truncated)?;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or(KeyDecodeError::Truncated)?;
        self.at = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, KeyDecodeError> {
        self.take(1).map(|b| b[0])
    }

    fn expect(&mut self, wanted: u8) -> Result<(), KeyDecodeError> {
        let at = self.at;
        match self.byte()? {
            found if found == wanted => Ok(()),
            found => Err(KeyDecodeError::UnexpectedByte { at, found }),
        }
    }

    fn id(&mut self) -> Result<IdRepr, KeyDecodeError> {
        let at = self.at;
        let kind = self.byte()?;
        let len = usize::from(self.byte()?);
        let data = self.take(len)?;
        match kind {
            KIND_NUM => data
                .try_into()
                .map(|b| IdRepr::Num(u64::from_be_bytes(b)))
                .map_err(|_| KeyDecodeError::BadIdLength { kind, len }),
            KIND_UUID => data
                .try_into()
                .map(IdRepr::Uuid)
                .map_err(|_| KeyDecodeError::BadIdLength { kind, len }),
            KIND_TEXT if (1..=MAX_TEXT_ID_LEN).contains(&len) => {
                let text = std::str::from_utf8(data).map_err(|_| KeyDecodeError::NotUtf8)?;
                IdRepr::text(text).map_err(KeyDecodeError::Id)
            }
            KIND_TEXT => Err(KeyDecodeError::BadIdLength { kind, len }),
            found => Err(KeyDecodeError::UnexpectedByte { at, found }),
        }
    }
}
