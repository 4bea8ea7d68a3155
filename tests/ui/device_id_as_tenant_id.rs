// A `DeviceId` cannot be passed where a `TenantId` is expected: no conversion exists.
use scoped_cache::{DeviceId, TenantId};

fn owner_of(tenant: TenantId) -> TenantId {
    tenant
}

fn main() {
    let device = DeviceId::from_u64(7);
    let _ = owner_of(device);
}
