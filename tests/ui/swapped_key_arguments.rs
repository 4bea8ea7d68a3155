// `Key::new(tenant, device, item)` with tenant and device exchanged does not compile.
use bytes::Bytes;
use scoped_cache::{DeviceId, Key, Namespace, RawBytes, TenantId};

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
    let _ = Key::<Thumbnails>::new(device, tenant, 9);
}
