// A `Key<A>` cannot be used with a `Cache<B>`.
use bytes::Bytes;
use scoped_cache::{Cache, DeviceId, Key, Namespace, RawBytes, TenantId};

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

async fn read(relations: &Cache<Relations>) -> Option<Bytes> {
    let key = Key::<Thumbnails>::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    relations.get(&key).await
}

fn main() {
    let _ = read;
}
