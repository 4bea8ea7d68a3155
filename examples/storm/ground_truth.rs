//! The origin's thumbnails, computed from the ids alone: what every served value is compared with.

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, RngExt, SeedableRng};

/// The origin's thumbnail of `item` of `device` of `tenant`: a header naming its owner, then
/// 64..=511 pseudo-random bytes drawn from a generator seeded with the ids, so the thumbnail
/// is a pure function of them. The harness's ground truth.
pub fn thumbnail(tenant: u64, device: u64, item: u64) -> Bytes {
    let mut body = SmallRng::seed_from_u64(ids_hash(tenant, device, item));
    let body_len = body.random_range(64..512);
    let mut out = Vec::with_capacity(HEADER.len() + 24 + body_len);
    out.extend_from_slice(HEADER);
    for id in [tenant, device, item] {
        out.extend_from_slice(&id.to_be_bytes());
    }
    out.resize(HEADER.len() + 24 + body_len, 0);
    body.fill_bytes(&mut out[HEADER.len() + 24..]);
    Bytes::from(out)
}

/// The ids folded into one 64-bit seed: a hash, not a random draw (`seed_from_u64` mixes it
/// further before the first byte).
fn ids_hash(tenant: u64, device: u64, item: u64) -> u64 {
    tenant
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(device.wrapping_mul(0xc2b2_ae3d_27d4_eb4f))
        .wrapping_add(item.wrapping_mul(0x1656_67b1_9e37_79f9))
}

const HEADER: &[u8] = b"THUMB\x01";

/// The (tenant, device, item) a thumbnail's header names, if it has one: to say whose data leaked.
pub fn named_owner(bytes: &[u8]) -> Option<(u64, u64, u64)> {
    let ids = bytes.strip_prefix(HEADER)?;
    let id = |at: usize| Some(u64::from_be_bytes(ids.get(at..at + 8)?.try_into().ok()?));
    Some((id(0)?, id(8)?, id(16)?))
}
