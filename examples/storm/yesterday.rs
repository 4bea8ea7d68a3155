//! The store before the storm: the old values that `stale` and `replay` hand back, and, with
//! `--keep-yesterday`, every key's value from before the outage, stale but servable.

use crate::config::Config;
use crate::ground_truth::thumbnail;
use crate::namespace::{Thumbnails, key_ring};
use scoped_cache::store::RemoteStore;
use scoped_cache::{Cache, Client, DeviceId, Key, ManualClock, TenantId};
use std::sync::Arc;
use std::time::Duration;

/// Writes "yesterday's" values of every key through the cache, as the service did before the
/// outage: one generation sealed with a 1 ms TTL (expired by the time the storm starts) and one
/// with the run's TTL that the outage then deleted. The store keeps both in its history, so
/// `stale` and `replay` have something to hand back; the storm starts with a cold store.
pub async fn remember_yesterday(
    store: Arc<dyn RemoteStore>,
    config: &Config,
) -> Result<(), String> {
    let client = Client::builder()
        .key_ring(key_ring()?)
        .remote_shared(store)
        .build()
        .map_err(|e| e.to_string())?;
    let cache = |ttl| {
        client
            .cache::<Thumbnails>()
            .local_capacity(0)
            .ttl(ttl)
            .build()
            .map_err(|e| e.to_string())
    };
    let (expired, deleted) = (cache(Duration::from_millis(1))?, cache(config.ttl)?);
    for_every_key(config, move |key, value| {
        let (expired, deleted) = (expired.clone(), deleted.clone());
        async move {
            let _ = expired.insert(&key, value.clone()).await;
            let _ = deleted.insert(&key, value).await;
            let _ = deleted.invalidate(&key).await;
        }
    })
    .await?;
    // Past the 1 ms TTL of the first generation.
    tokio::time::sleep(Duration::from_millis(5)).await;
    Ok(())
}

/// Writes every key's value as the service stored it before the outage: sealed a TTL and a second
/// ago, so it is stale when the storm starts and servable for `stale_for` less that second.
pub async fn keep_yesterday(
    store: Arc<dyn RemoteStore>,
    config: &Config,
    stale_for: Duration,
) -> Result<(), String> {
    let yesterday = ManualClock::new(
        crate::now_ms() - (config.ttl + Duration::from_secs(1)).as_millis() as u64,
    );
    let cache = Client::builder()
        .key_ring(key_ring()?)
        .remote_shared(store)
        .clock(yesterday.clock())
        .build()
        .map_err(|e| e.to_string())?
        .cache::<Thumbnails>()
        .local_capacity(0)
        .ttl(config.ttl)
        .stale_for(stale_for)
        .build()
        .map_err(|e| e.to_string())?;
    for_every_key(config, move |key, value| {
        let cache: Cache<Thumbnails> = cache.clone();
        async move {
            let _ = cache.insert(&key, value).await;
        }
    })
    .await
}

/// Runs `write` for every key of the population and its value, 8 at a time.
async fn for_every_key<W, Fut>(config: &Config, write: W) -> Result<(), String>
where
    W: Fn(Key<Thumbnails>, bytes::Bytes) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let population = config.population();
    let workers = 8u64;
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let write = write.clone();
            tokio::spawn(async move {
                for tenant in (worker..population.tenants).step_by(workers as usize) {
                    for index in 0..population.devices_per_tenant {
                        let device = population.device(tenant, index);
                        for item in 0..population.items_per_device {
                            let key = Key::new(
                                TenantId::from_u64(tenant),
                                DeviceId::from_u64(device),
                                item,
                            );
                            write(key, thumbnail(tenant, device, item)).await;
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| e.to_string())?;
    }
    Ok(())
}
