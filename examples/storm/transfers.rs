//! Camera transfers (`--transfers R`): R times a second a camera moves to another tenant. The
//! origin (the service's database) refuses the old owner from the moment the move starts; the
//! move then invalidates the camera on one instance (`invalidate_device`), and from the moment
//! that call returns the old owner must be served nothing of the camera by any instance, beyond
//! the bus's delivery to that instance (the documented bound; zero while it is not listening).

use crate::namespace::Thumbnails;
use crate::observed_bus::BusLog;
use crate::population::Population;
use hdrhistogram::Histogram;
use scoped_cache::{Cache, DeviceId, TenantId};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A device's transfer state in `Transfers::moved`.
const NOT_MOVED: u64 = 0;
const MOVING: u64 = u64::MAX;

/// How often a transfer's invalidation is tried before it counts as failed.
const ATTEMPTS: u32 = 10;

/// The transfers of one run, and what the sessions were served of moved cameras.
pub struct Transfers {
    population: Population,
    epoch: Instant,
    /// Per device slot: `NOT_MOVED`, `MOVING`, or when its transfer returned (ns since `epoch`,
    /// plus one).
    moved: Box<[AtomicU64]>,
    /// Per transfer that returned: the device slot and the invalidation it published.
    ledger: Mutex<Vec<(usize, Option<usize>)>>,
    /// Values of a moved camera served to its old owner by a read that started after the
    /// transfer returned: (instance, device slot, when the read started).
    late: Mutex<Vec<(usize, usize, Instant)>>,
    failed: AtomicU64,
}

/// What the report says of the transfers.
#[derive(Debug, Default, Serialize)]
pub struct TransferSummary {
    pub instances: usize,
    /// Transfers whose invalidation returned.
    pub transfers: u64,
    /// Transfers whose invalidation kept failing (not judged).
    pub transfers_failed: u64,
    /// Reads of moved cameras by their old owner answered with an error, as they should be.
    pub denied_after_transfer: u64,
    /// Values served to an old owner after the transfer returned but before the bus reached
    /// the serving instance: within the documented bound.
    pub served_within_delivery: u64,
    /// Values served to an old owner after the transfer returned and after the bus reached
    /// the serving instance (or while it was not listening): beyond the bound.
    pub served_after_revocation: u64,
    /// From publishing an invalidation to the last instance having applied it.
    pub invalidation_lag_us: LagSummary,
    /// Invalidations some instance never received (it was not listening).
    pub invalidations_undelivered: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct LagSummary {
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl Transfers {
    pub fn new(population: Population) -> Self {
        let devices = (population.tenants * population.devices_per_tenant) as usize;
        Self {
            population,
            epoch: Instant::now(),
            moved: (0..devices).map(|_| AtomicU64::new(NOT_MOVED)).collect(),
            ledger: Mutex::default(),
            late: Mutex::default(),
            failed: AtomicU64::new(0),
        }
    }

    fn slot(&self, tenant: u64, device_index: u64) -> usize {
        (tenant * self.population.devices_per_tenant + device_index) as usize
    }

    /// Whether the origin refuses this device's old owner: its move has started.
    pub fn is_moved(&self, tenant: u64, device_index: u64) -> bool {
        let slot = self.slot(tenant, device_index);
        self.moved
            .get(slot)
            .is_some_and(|moved| moved.load(Ordering::Acquire) != NOT_MOVED)
    }

    /// When this device's transfer returned, if it has.
    fn returned_at(&self, slot: usize) -> Option<Instant> {
        match self.moved.get(slot)?.load(Ordering::Acquire) {
            NOT_MOVED | MOVING => None,
            ns => Some(self.epoch + Duration::from_nanos(ns - 1)),
        }
    }

    /// A session of `instance` was served a value of this device by a read that started at
    /// `started`: kept for judging if the transfer had returned by then.
    pub fn served(&self, instance: usize, tenant: u64, device_index: u64, started: Instant) {
        let slot = self.slot(tenant, device_index);
        if self.returned_at(slot).is_some_and(|at| started > at) {
            let mut late = self.late.lock().unwrap_or_else(|e| e.into_inner());
            late.push((instance, slot, started));
        }
    }

    /// Moves cameras `rate` times a second until the task is aborted: a device not moved yet,
    /// picked by `pick`, invalidated on the instances in turn.
    pub async fn run(
        self: Arc<Self>,
        rate: f64,
        caches: Vec<Cache<Thumbnails>>,
        log: Arc<BusLog>,
        mut pick: impl FnMut(u64) -> u64,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let devices = self.moved.len() as u64;
        for round in 0.. {
            tick.tick().await;
            let slot = pick(devices) as usize;
            let Some(moved) = self.moved.get(slot) else {
                continue;
            };
            if moved
                .compare_exchange(NOT_MOVED, MOVING, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue; // moved already
            }
            let per_tenant = self.population.devices_per_tenant;
            let tenant = slot as u64 / per_tenant;
            let device = self.population.device(tenant, slot as u64 % per_tenant);
            let cache = &caches[round % caches.len()];
            let before = log.published();
            let mut invalidated = false;
            let (tenant, device) = (TenantId::from_u64(tenant), DeviceId::from_u64(device));
            for _ in 0..ATTEMPTS {
                if cache.invalidate_device(&tenant, &device).await.is_ok() {
                    invalidated = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            if !invalidated {
                self.failed.fetch_add(1, Ordering::Relaxed);
                continue; // stays MOVING: refused by the origin, never judged
            }
            let ns = self.epoch.elapsed().as_nanos() as u64 + 1;
            moved.store(ns, Ordering::Release);
            // Only transfers publish invalidations, one at a time: the last one is this one's.
            let published = log.published();
            let message = (published > before).then(|| published - 1);
            let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
            ledger.push((slot, message));
        }
    }

    /// Judges what was served after the transfers, once the sessions have ended.
    pub fn summary(&self, instances: usize, denied: u64, log: &BusLog) -> TransferSummary {
        let ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        // Up to an hour, in µs: a recording past the bounds would be clamped.
        let mut lag = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).ok();
        let mut undelivered = 0;
        // Per device slot: when each instance received its invalidation.
        let mut received_by_slot = std::collections::HashMap::new();
        for &(slot, message) in ledger.iter() {
            let Some(delivery) = message.and_then(|index| log.delivery(index)) else {
                continue;
            };
            let mut last = None;
            for instance in 0..instances {
                let got = delivery.received.iter().find(|(i, _)| *i == instance);
                last = match (last, got) {
                    (Some(Some(last)), Some(&(_, at))) => Some(Some(std::cmp::max(last, at))),
                    (None, Some(&(_, at))) => Some(Some(at)),
                    _ => Some(None),
                };
            }
            match last.flatten() {
                Some(last) => {
                    let us = last
                        .saturating_duration_since(delivery.published)
                        .as_micros();
                    if let Some(lag) = &mut lag {
                        lag.saturating_record(us as u64);
                    }
                }
                None => undelivered += 1,
            }
            received_by_slot.insert(slot, delivery.received);
        }
        let late = self.late.lock().unwrap_or_else(|e| e.into_inner());
        let (mut within, mut beyond) = (0, 0);
        for &(instance, slot, started) in late.iter() {
            let reached = received_by_slot.get(&slot).and_then(|received| {
                received
                    .iter()
                    .find(|(i, _)| *i == instance)
                    .map(|&(_, at)| at)
            });
            match reached {
                Some(at) if started <= at => within += 1,
                _ => beyond += 1,
            }
        }
        let lag = lag.unwrap_or_else(|| unreachable!("valid bounds"));
        TransferSummary {
            instances,
            transfers: ledger.len() as u64,
            transfers_failed: self.failed.load(Ordering::Relaxed),
            denied_after_transfer: denied,
            served_within_delivery: within,
            served_after_revocation: beyond,
            invalidation_lag_us: LagSummary {
                p50: lag.value_at_quantile(0.5),
                p99: lag.value_at_quantile(0.99),
                max: lag.max(),
            },
            invalidations_undelivered: undelivered,
        }
    }
}
