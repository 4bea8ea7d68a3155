//! Who owns what, and the dense per-key index the origin counts by.

use crate::namespace::Thumbnails;
use scoped_cache::Key;

/// Who owns what: tenants `0..tenants`, each with `devices_per_tenant` devices whose ids are
/// drawn from the same range, such that `t` owns `d` exactly when `d` owns `t`.
#[derive(Debug, Clone, Copy)]
pub struct Population {
    pub tenants: u64,
    pub devices_per_tenant: u64,
    pub items_per_device: u64,
}

impl Population {
    /// The `index`-th device of `tenant`: `tenant ± 1`, `tenant ± 2`, … modulo `tenants`, and
    /// `tenant` itself last when the count is odd. The offsets are closed under negation, so the
    /// relation is symmetric; they are distinct because `devices_per_tenant < tenants`.
    pub fn device(&self, tenant: u64, index: u64) -> u64 {
        if self.devices_per_tenant % 2 == 1 && index == self.devices_per_tenant - 1 {
            return tenant;
        }
        let offset = (index / 2 + 1) % self.tenants;
        if index.is_multiple_of(2) {
            (tenant + offset) % self.tenants
        } else {
            (tenant + self.tenants - offset) % self.tenants
        }
    }

    /// Which of `tenant`'s devices `device` is, if it is one.
    fn device_index(&self, tenant: u64, device: u64) -> Option<u64> {
        (0..self.devices_per_tenant).find(|&index| self.device(tenant, index) == device)
    }

    pub fn keys(&self) -> u64 {
        self.tenants * self.devices_per_tenant * self.items_per_device
    }

    /// A dense index of (tenant, device index, item), for per-key counters.
    pub fn key_index(&self, tenant: u64, device_index: u64, item: u64) -> usize {
        ((tenant * self.devices_per_tenant + device_index) * self.items_per_device + item) as usize
    }

    /// The dense index of an encoded key, if it is one of this population's.
    pub fn index_of_encoded(&self, encoded: &[u8]) -> Option<usize> {
        let key = Key::<Thumbnails>::decode(encoded).ok()?;
        let tenant = key.owner().tenant.as_u64()?;
        let device = key.owner().device.as_u64()?;
        let item = *key.item();
        if tenant >= self.tenants || item >= self.items_per_device {
            return None;
        }
        let index = self.device_index(tenant, device)?;
        Some(self.key_index(tenant, index, item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scoped_cache::{DeviceId, TenantId};

    #[test]
    fn device_sets_are_symmetric_and_distinct() {
        for (tenants, devices) in [(2, 1), (5, 4), (6, 5), (7, 3), (1000, 4), (10_000, 10)] {
            let population = Population {
                tenants,
                devices_per_tenant: devices,
                items_per_device: 1,
            };
            let owns = |t: u64, d: u64| (0..devices).any(|j| population.device(t, j) == d);
            for t in 0..tenants.min(50) {
                let mut seen: Vec<u64> = (0..devices).map(|j| population.device(t, j)).collect();
                seen.sort_unstable();
                seen.dedup();
                assert_eq!(seen.len() as u64, devices, "duplicate devices of {t}");
                for d in seen {
                    assert!(owns(d, t), "{t} owns {d} but {d} does not own {t}");
                }
            }
        }
    }

    #[test]
    fn encoded_keys_map_back_to_their_index() {
        let population = Population {
            tenants: 7,
            devices_per_tenant: 3,
            items_per_device: 2,
        };
        let mut seen = std::collections::HashSet::new();
        for tenant in 0..7 {
            for index in 0..3 {
                for item in 0..2 {
                    let device = population.device(tenant, index);
                    let key = Key::<Thumbnails>::new(
                        TenantId::from_u64(tenant),
                        DeviceId::from_u64(device),
                        item,
                    );
                    let at = population.key_index(tenant, index, item);
                    assert_eq!(population.index_of_encoded(&key.encode()), Some(at));
                    assert!(at < population.keys() as usize && seen.insert(at));
                }
            }
        }
        let foreign = Key::<Thumbnails>::new(TenantId::from_u64(0), DeviceId::from_u64(3), 0);
        assert_eq!(
            population.index_of_encoded(&foreign.encode()),
            None,
            "0 does not own 3"
        );
        assert_eq!(population.index_of_encoded(b"not a key"), None);
    }
}
