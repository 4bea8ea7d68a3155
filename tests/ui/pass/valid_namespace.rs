// The control case: the same code with a valid name and the right types compiles and runs, so
// each compile-fail case fails for the reason it names and nothing else.
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

fn main() {
    let tenant = TenantId::from_u64(42);
    let device = DeviceId::from_u64(7);
    let key = Key::<Thumbnails>::new(tenant, device, 9);
    let cache = LocalCache::<Thumbnails>::new(100).unwrap();
    cache.insert(&key, Bytes::from_static(b"jpeg"));
    assert_eq!(cache.get(&key), Some(Bytes::from_static(b"jpeg")));
}
