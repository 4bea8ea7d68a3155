// A namespace whose NAME breaks `[a-z0-9_-]{1,32}` fails to compile at its first `Key::new`.
use bytes::Bytes;
use scoped_cache::{DeviceId, Key, Namespace, RawBytes, TenantId};

struct BadName;
impl Namespace for BadName {
    const NAME: &'static str = "Bad:Name";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = Bytes;
    type Codec = RawBytes;
}

fn main() {
    let key = Key::<BadName>::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    let _ = key.encode();
}
