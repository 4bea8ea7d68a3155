//! The storm as a fleet (`--instances N`, `--transfers R`): N clients, each with its own
//! in-process tier and bus subscription, sharing the store and one invalidation bus (a
//! `MemoryBus` with the in-process backend, a `RedisBus` on the Redis server of a `redis://`
//! backend), observed for the invalidation lag.

use crate::config::{BackendChoice, Config};
use crate::observed_bus::{BusLog, ObservedBus};
use scoped_cache::bus::{BusStats, BusTransport};
use scoped_cache::{Client, MemoryBus};
use serde::Serialize;
use std::sync::Arc;

/// The instances' clients and their shared bus.
pub struct Fleet {
    pub clients: Vec<Client>,
    pub log: Arc<BusLog>,
    bus: Arc<dyn BusTransport>,
}

/// The bus counters of every instance, summed.
#[derive(Debug, Default, Serialize)]
pub struct FleetBusSummary {
    pub published: u64,
    pub applied: u64,
    pub refused_forged: u64,
    pub refused_replayed: u64,
    pub gaps: u64,
    pub disconnects: u64,
    pub flushes: u64,
    pub publish_errors: u64,
}

impl Fleet {
    /// The fleet's bus for a run (`channel_tag` keeps runs on one server apart); none when
    /// the run is not a fleet.
    pub fn open(config: &Config, channel_tag: &str) -> Result<Option<Self>, String> {
        if !config.fleet() {
            return Ok(None);
        }
        let bus: Arc<dyn BusTransport> = match &config.backend {
            BackendChoice::Memory => Arc::new(MemoryBus::new()),
            BackendChoice::Redis(url) => redis_bus(url, channel_tag)?,
            _ => {
                return Err(
                    "--instances and --transfers need the memory or a redis:// backend".into(),
                );
            }
        };
        Ok(Some(Self {
            clients: Vec::with_capacity(config.instances),
            log: Arc::default(),
            bus,
        }))
    }

    /// Instance `instance`'s view of the bus.
    pub fn bus(&self, instance: usize) -> ObservedBus {
        ObservedBus {
            inner: Arc::clone(&self.bus),
            instance,
            log: Arc::clone(&self.log),
        }
    }

    pub fn bus_summary(&self) -> FleetBusSummary {
        let mut sum = FleetBusSummary::default();
        for stats in self.clients.iter().filter_map(Client::bus_stats) {
            let BusStats {
                published,
                applied,
                refused_forged,
                refused_replayed,
                gaps,
                disconnects,
                flushes,
                publish_errors,
                ..
            } = stats;
            sum.published += published;
            sum.applied += applied;
            sum.refused_forged += refused_forged;
            sum.refused_replayed += refused_replayed;
            sum.gaps += gaps;
            sum.disconnects += disconnects;
            sum.flushes += flushes;
            sum.publish_errors += publish_errors;
        }
        sum
    }
}

#[cfg(feature = "redis")]
fn redis_bus(url: &str, channel_tag: &str) -> Result<Arc<dyn BusTransport>, String> {
    let bus = scoped_cache::bus::RedisBus::builder(url)
        .channel(&format!("{channel_tag}bus"))
        .build()
        .map_err(|error| format!("the bus on {url}: {error}"))?;
    Ok(Arc::new(bus))
}

#[cfg(not(feature = "redis"))]
fn redis_bus(_url: &str, _channel_tag: &str) -> Result<Arc<dyn BusTransport>, String> {
    Err("this build has no Redis support; add --features redis".into())
}
