//! The origin's thumbnails, computed from the ids alone: what every served value is compared with.

use bytes::Bytes;

/// The origin's thumbnail of `item` of `device` of `tenant`: a header naming its owner, then
/// 64..=511 pseudo-random bytes derived from the ids. The harness's ground truth.
pub fn thumbnail(tenant: u64, device: u64, item: u64) -> Bytes {
    let mut state = tenant
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(device.wrapping_mul(0xc2b2_ae3d_27d4_eb4f))
        .wrapping_add(item.wrapping_mul(0x1656_67b1_9e37_79f9));
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let body_len = 64 + (next() % 448) as usize;
    let mut out = Vec::with_capacity(HEADER.len() + 24 + body_len + 8);
    out.extend_from_slice(HEADER);
    for id in [tenant, device, item] {
        out.extend_from_slice(&id.to_be_bytes());
    }
    while out.len() < HEADER.len() + 24 + body_len {
        out.extend_from_slice(&next().to_le_bytes());
    }
    out.truncate(HEADER.len() + 24 + body_len);
    Bytes::from(out)
}

const HEADER: &[u8] = b"THUMB\x01";

/// The (tenant, device, item) a thumbnail's header names, if it has one: to say whose data leaked.
pub fn named_owner(bytes: &[u8]) -> Option<(u64, u64, u64)> {
    let ids = bytes.strip_prefix(HEADER)?;
    let id = |at: usize| Some(u64::from_be_bytes(ids.get(at..at + 8)?.try_into().ok()?));
    Some((id(0)?, id(8)?, id(16)?))
}
