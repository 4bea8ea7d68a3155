//! What the storm caches, and the key ring its values are sealed with.

use bytes::Bytes;
use scoped_cache::{KeyId, KeyRing, Namespace, RawBytes};

/// Camera thumbnails, one per (tenant, device, event).
pub struct Thumbnails;

impl Namespace for Thumbnails {
    const NAME: &'static str = "thumb";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = Bytes;
    type Codec = RawBytes;
}

const SECRET: &[u8] = b"storm: a demo secret, not for production";

/// The key ring every value of the storm is sealed and opened with. Yesterday's values and both
/// runs must share it: under another ring every old value would be refused as another secret's,
/// so `stale` would not be refused as expired nor `replay` accepted as the owner's own.
pub fn key_ring() -> Result<KeyRing, String> {
    KeyRing::new(KeyId(1), SECRET).map_err(|e| e.to_string())
}
