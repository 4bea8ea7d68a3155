// A `Key<A>` cannot be used with a `LocalCache<B>`.
use bytes::Bytes;
use scoped_cache::{DeviceId, Key, LocalCache, Namespace, RawBytes, TenantId};

struct Thumbnails;
impl Namespace for Thumbnails {
    const NAME: &'static str = "thumb";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = Bytes;
    type Codec = RawBytes;
}

struct Relations;
impl Namespace for Relations {
    const NAME: &'static str = "relation";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = Bytes;
    type Codec = RawBytes;
}

fn main() {
    let relations = LocalCache::<Relations>::new(100).unwrap();
    let key = Key::<Thumbnails>::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    relations.insert(&key, Bytes::from_static(b"jpeg"));
}
