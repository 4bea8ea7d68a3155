//! What the storm caches, and the secret its values are sealed with.

use bytes::Bytes;
use scoped_cache::{Namespace, RawBytes};

/// Camera thumbnails, one per (tenant, device, event).
pub struct Thumbnails;

impl Namespace for Thumbnails {
    const NAME: &'static str = "thumb";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = Bytes;
    type Codec = RawBytes;
}

pub const SECRET: &[u8] = b"storm: a demo secret, not for production";
