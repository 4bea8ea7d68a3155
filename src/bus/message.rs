//! The bus's wire format, sans-IO: invalidation messages and the revocation markers written to
//! the shared store, each authenticated under the key ring.
//!
//! A message:
//!
//! ```text
//! "scb1" | kind u8 | key id u32 | publisher u64 | seq u64 | sent_ms u64 | body_len u32 | body | tag[32]
//! ```
//!
//! The tag is HMAC-SHA256 under the ring key `key id` over a domain label and every byte before
//! it. `kind` 0 is a heartbeat (empty body); 1 names one key (the body is its store key
//! encoding), 2 a device of a tenant, 3 a tenant (the body is a raw key encoding of the
//! namespace and owner with an empty item; for a tenant the device is a placeholder).
//!
//! A revocation marker, stored under [`marker_key`]:
//!
//! ```text
//! "scr1" | key id u32 | revoked_before_ms u64 | tag[32]
//! ```
//!
//! with the tag over a domain label, the marker's store key and the fields: a marker cannot be
//! moved to another owner's key.

use crate::envelope::RawKey;
use crate::id::{DeviceId, TenantId};
use crate::key::Owner;
use crate::keyring::{KeyId, KeyRing};
use crate::mac::TAG_LEN;

const MESSAGE_MAGIC: &[u8; 4] = b"scb1";
const MARKER_MAGIC: &[u8; 4] = b"scr1";
const MESSAGE_DOMAIN: &[u8] = b"scoped-cache invalidation bus v1\0";
const MARKER_DOMAIN: &[u8] = b"scoped-cache revocation marker v1\0";
/// Store keys of markers start here; value keys start with `sc1:`, so the two never meet.
const MARKER_PREFIX: &[u8] = b"sc1-revoked:";
const HEADER_LEN: usize = 4 + 1 + 4 + 8 + 8 + 8 + 4;
/// The longest body accepted: a key's encoding is far shorter.
const MAX_BODY: usize = 64 * 1024;
/// The device placeholder in a tenant-wide scope's body.
const ANY_DEVICE: DeviceId = DeviceId::from_u64(0);

/// What one message asks every instance to forget.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    /// One key, by its store key encoding.
    Key(Vec<u8>),
    /// Every value of one device of a tenant, in one namespace.
    Device { namespace: String, owner: Owner },
    /// Every value of one tenant, in one namespace.
    Tenant { namespace: String, tenant: TenantId },
}

impl Scope {
    fn kind(&self) -> u8 {
        match self {
            Scope::Key(_) => 1,
            Scope::Device { .. } => 2,
            Scope::Tenant { .. } => 3,
        }
    }

    fn body(&self) -> Vec<u8> {
        match self {
            Scope::Key(encoded) => encoded.clone(),
            Scope::Device { namespace, owner } => raw(namespace, owner.clone()),
            Scope::Tenant { namespace, tenant } => {
                raw(namespace, Owner::new(tenant.clone(), ANY_DEVICE))
            }
        }
    }

    fn from_body(kind: u8, body: &[u8]) -> Option<Self> {
        let raw = RawKey::decode(body).ok()?;
        match kind {
            1 => Some(Scope::Key(body.to_vec())),
            2 if raw.item.is_empty() => Some(Scope::Device {
                namespace: raw.namespace,
                owner: raw.owner,
            }),
            3 if raw.item.is_empty() && raw.owner.device == ANY_DEVICE => Some(Scope::Tenant {
                namespace: raw.namespace,
                tenant: raw.owner.tenant,
            }),
            _ => None,
        }
    }

    /// The namespace the scope is in.
    pub(crate) fn namespace(&self) -> Option<String> {
        match self {
            Scope::Key(encoded) => RawKey::decode(encoded).ok().map(|raw| raw.namespace),
            Scope::Device { namespace, .. } | Scope::Tenant { namespace, .. } => {
                Some(namespace.clone())
            }
        }
    }
}

fn raw(namespace: &str, owner: Owner) -> Vec<u8> {
    match RawKey::new(namespace, owner, Vec::new()) {
        Ok(raw) => raw.encode(),
        // Namespaces are validated when their cache is built; an invalid one names nothing.
        Err(_) => Vec::new(),
    }
}

/// A verified message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) publisher: u64,
    pub(crate) seq: u64,
    pub(crate) sent_ms: u64,
    /// `None` for a heartbeat.
    pub(crate) scope: Option<Scope>,
}

/// Why a message was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not a message of this format, or cut short, or with an unknown scope.
    Malformed,
    /// The tag does not verify, or its key id is not in this ring.
    BadTag,
}

/// Seals a message under the ring's signing key.
pub(crate) fn seal(
    ring: &KeyRing,
    publisher: u64,
    seq: u64,
    sent_ms: u64,
    scope: Option<&Scope>,
) -> Vec<u8> {
    let (kind, body) = match scope {
        None => (0, Vec::new()),
        Some(scope) => (scope.kind(), scope.body()),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + TAG_LEN);
    out.extend_from_slice(MESSAGE_MAGIC);
    out.push(kind);
    out.extend_from_slice(&ring.signing_id().0.to_be_bytes());
    out.extend_from_slice(&publisher.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&sent_ms.to_be_bytes());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    let tag = ring.signing_key().tag(&[MESSAGE_DOMAIN, &out].concat());
    out.extend_from_slice(&tag);
    out
}

/// Opens a message: checks its format and tag. Never panics, whatever the bytes.
pub(crate) fn open(ring: &KeyRing, bytes: &[u8]) -> Result<Message, Refused> {
    let header = bytes.get(..HEADER_LEN).ok_or(Refused::Malformed)?;
    if &header[..4] != MESSAGE_MAGIC {
        return Err(Refused::Malformed);
    }
    let kind = header[4];
    let u32_at = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let u64_at = |at: usize| {
        let mut word = [0; 8];
        word.copy_from_slice(&header[at..at + 8]);
        u64::from_be_bytes(word)
    };
    let key_id = KeyId(u32_at(5));
    let body_len = u32_at(33) as usize;
    if body_len > MAX_BODY || bytes.len() != HEADER_LEN + body_len + TAG_LEN {
        return Err(Refused::Malformed);
    }
    let (signed, tag) = bytes.split_at(HEADER_LEN + body_len);
    let key = ring.verifying_key(key_id).ok_or(Refused::BadTag)?;
    if !key.verify(&[MESSAGE_DOMAIN, signed].concat(), tag) {
        return Err(Refused::BadTag);
    }
    let body = &signed[HEADER_LEN..];
    let scope = match kind {
        0 if body.is_empty() => None,
        0 => return Err(Refused::Malformed),
        kind => Some(Scope::from_body(kind, body).ok_or(Refused::Malformed)?),
    };
    Ok(Message {
        publisher: u64_at(9),
        seq: u64_at(17),
        sent_ms: u64_at(25),
        scope,
    })
}

/// Whether `bytes` look like an invalidation (not a heartbeat), without verifying them: for
/// transports and harnesses that observe the bus.
pub(crate) fn is_invalidation(bytes: &[u8]) -> bool {
    bytes.len() > HEADER_LEN && bytes.starts_with(MESSAGE_MAGIC) && bytes[4] != 0
}

/// The store key of the revocation marker of a scope.
pub(crate) fn marker_key(scope: &Scope) -> Vec<u8> {
    let mut out = MARKER_PREFIX.to_vec();
    out.push(scope.kind());
    out.extend_from_slice(&scope.body());
    out
}

/// A marker saying: values of this scope sealed before `revoked_before_ms` are revoked.
pub(crate) fn seal_marker(ring: &KeyRing, marker_key: &[u8], revoked_before_ms: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 4 + 8 + TAG_LEN);
    out.extend_from_slice(MARKER_MAGIC);
    out.extend_from_slice(&ring.signing_id().0.to_be_bytes());
    out.extend_from_slice(&revoked_before_ms.to_be_bytes());
    let tag = ring
        .signing_key()
        .tag(&[MARKER_DOMAIN, marker_key, &out].concat());
    out.extend_from_slice(&tag);
    out
}

/// The `revoked_before_ms` of a marker read from `marker_key`, if it verifies.
pub(crate) fn open_marker(ring: &KeyRing, marker_key: &[u8], bytes: &[u8]) -> Result<u64, Refused> {
    if bytes.len() != 16 + TAG_LEN || &bytes[..4] != MARKER_MAGIC {
        return Err(Refused::Malformed);
    }
    let (signed, tag) = bytes.split_at(16);
    let key_id = KeyId(u32::from_be_bytes([
        signed[4], signed[5], signed[6], signed[7],
    ]));
    let key = ring.verifying_key(key_id).ok_or(Refused::BadTag)?;
    if !key.verify(&[MARKER_DOMAIN, marker_key, signed].concat(), tag) {
        return Err(Refused::BadTag);
    }
    let mut word = [0; 8];
    word.copy_from_slice(&signed[8..16]);
    Ok(u64::from_be_bytes(word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::DeviceId;

    fn ring() -> KeyRing {
        KeyRing::new(KeyId(1), &[7; 32]).unwrap_or_else(|e| unreachable!("{e}"))
    }

    fn device_scope() -> Scope {
        Scope::Device {
            namespace: "rel".into(),
            owner: Owner::new(TenantId::from_u64(4), DeviceId::from_u64(9)),
        }
    }

    #[test]
    fn messages_round_trip_and_every_flipped_byte_is_refused() {
        let ring = ring();
        for scope in [
            None,
            Some(device_scope()),
            Some(Scope::Tenant {
                namespace: "rel".into(),
                tenant: TenantId::from_u64(4),
            }),
        ] {
            let sealed = seal(&ring, 11, 5, 1_000, scope.as_ref());
            let opened = open(&ring, &sealed).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(
                (opened.publisher, opened.seq, opened.sent_ms, opened.scope),
                (11, 5, 1_000, scope)
            );
            for at in 0..sealed.len() {
                let mut forged = sealed.clone();
                forged[at] ^= 0x01;
                assert!(
                    open(&ring, &forged).is_err(),
                    "a flip at byte {at} was accepted"
                );
            }
            for len in 0..sealed.len() {
                assert!(
                    open(&ring, &sealed[..len]).is_err(),
                    "a cut at {len} was accepted"
                );
            }
        }
    }

    #[test]
    fn another_ring_cannot_forge_a_message_or_a_marker() {
        let other = KeyRing::new(KeyId(1), &[8; 32]).unwrap_or_else(|e| unreachable!("{e}"));
        let forged = seal(&other, 1, 1, 1, Some(&device_scope()));
        assert_eq!(open(&ring(), &forged), Err(Refused::BadTag));
        let key = marker_key(&device_scope());
        let marker = seal_marker(&other, &key, 99);
        assert_eq!(open_marker(&ring(), &key, &marker), Err(Refused::BadTag));
        assert_eq!(open_marker(&other, &key, &marker), Ok(99));
    }

    #[test]
    fn a_marker_does_not_verify_under_another_scope() {
        let ring = ring();
        let key = marker_key(&device_scope());
        let marker = seal_marker(&ring, &key, 99);
        let tenant = marker_key(&Scope::Tenant {
            namespace: "rel".into(),
            tenant: TenantId::from_u64(4),
        });
        assert_eq!(open_marker(&ring, &tenant, &marker), Err(Refused::BadTag));
        assert!(!key.starts_with(crate::envelope::KEY_PREFIX));
    }
}
