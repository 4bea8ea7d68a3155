//! The origin: the slow, limited source of truth, counting its loads per key and per fill.

use crate::config::{Config, Window};
use crate::ground_truth::thumbnail;
use crate::population::Population;
use bytes::Bytes;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The source of truth: slow, limited, and counting what it is asked for.
///
/// It has `--origin-concurrency` places, each serving one load at a time for exactly
/// `--origin-latency`, first come first served: a load arriving when every place is taken waits
/// for the first to come free. The schedule is kept in time, not in timer wake-ups: a place
/// is free again exactly one latency after its load started, however late the timer that ends
/// that load fires on a busy machine (a 1 ms sleep takes 1–2 ms on Tokio's millisecond timer,
/// which would otherwise cost the origin a third of its capacity). A load the cache stops
/// waiting for keeps its place, as a query already sent to a database runs to its end. The
/// waiting is done on a runtime of its own, as another service would.
pub struct Origin {
    latency: Duration,
    /// When each place comes free (a min-heap of instants); empty until first used.
    places: Mutex<BinaryHeap<Reverse<Instant>>>,
    server: tokio::runtime::Handle,
    population: Population,
    /// Loads of each key over the run.
    loads: Box<[AtomicU32]>,
    /// Reads of each key that a fault made fail (refused or errored): each ends a fill.
    fills_ended: Box<[AtomicU32]>,
    /// Per key: (the fill its last load belonged to) << 24 | (loads in that fill).
    fill_loads: Box<[AtomicU64]>,
    /// Per key: when its last load started, in ms since the origin opened.
    last_load_ms: Box<[AtomicU64]>,
    /// Per key: its loads the cache is still waiting for.
    running: Box<[AtomicU32]>,
    opened: Instant,
    /// How long after a load the cache loads its key again by design (in ms): when the value
    /// leaves the cache, goes stale, or is due for refresh-ahead. A load that long after the
    /// key's last one starts a new fill.
    refill_ms: u64,
    /// When every load fails.
    outage: Option<Window>,
    /// When loads take longer, and how long.
    slow: Option<(Window, Duration)>,
    /// When the barrier released the sessions: the outage and the slow stretch count from it.
    released: OnceLock<Instant>,
    /// Per key, loads in the first second after the outage (empty without one).
    after_outage: Box<[AtomicU32]>,
    loads_after_outage: AtomicU64,
    max_per_key_after_outage: AtomicU32,
    /// Loads a place started serving, per 10 ms since the release (the first hour), for the
    /// utilization.
    starts: Box<[AtomicU32]>,
    /// Per 10 ms since the release: whether a load that had to wait for a place started then,
    /// that is whether loads queued for the origin in that stretch.
    queued: Box<[AtomicBool]>,
    concurrency: usize,
    /// Breaker transitions so far: each ends every key's fill (while the breaker is open, or
    /// turning, loaded values are not written, so they load again once it closes).
    pub breaker_transitions: AtomicU32,
    pub total: AtomicU64,
    max_per_fill: AtomicU32,
    reloads_after_fill_ended: AtomicU64,
    reloads_after_expiry: AtomicU64,
    reloads_unexplained: AtomicU64,
    /// Loads of a key that started while the cache still waited for another load of it.
    loads_beside_another: AtomicU64,
    /// Loads the cache stopped waiting for before the origin answered (its load timeout, or
    /// a cancelled caller): they stored nothing, so the key's next load is a new fill.
    loads_dropped: AtomicU64,
    /// Whether the namespace's breaker is open (set by the client's breaker sink).
    pub breaker_open: AtomicBool,
    loads_while_open: AtomicU64,
}

impl Origin {
    pub fn new(config: &Config, server: tokio::runtime::Handle) -> Self {
        let keys = config.population().keys() as usize;
        let zeroed32 = || (0..keys).map(|_| AtomicU32::new(0)).collect();
        Self {
            latency: config.origin_latency,
            places: Mutex::new(BinaryHeap::with_capacity(config.origin_concurrency)),
            server,
            population: config.population(),
            loads: zeroed32(),
            fills_ended: zeroed32(),
            fill_loads: (0..keys).map(|_| AtomicU64::new(0)).collect(),
            last_load_ms: (0..keys).map(|_| AtomicU64::new(0)).collect(),
            running: zeroed32(),
            opened: Instant::now(),
            refill_ms: refill_ms(config),
            outage: config.origin_outage,
            slow: config.origin_slow,
            released: OnceLock::new(),
            after_outage: match config.origin_outage {
                Some(_) => zeroed32(),
                None => Box::default(),
            },
            loads_after_outage: AtomicU64::new(0),
            max_per_key_after_outage: AtomicU32::new(0),
            starts: (0..START_BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            queued: (0..START_BUCKETS).map(|_| AtomicBool::new(false)).collect(),
            concurrency: config.origin_concurrency,
            total: AtomicU64::new(0),
            max_per_fill: AtomicU32::new(0),
            reloads_after_fill_ended: AtomicU64::new(0),
            reloads_after_expiry: AtomicU64::new(0),
            reloads_unexplained: AtomicU64::new(0),
            loads_beside_another: AtomicU64::new(0),
            loads_dropped: AtomicU64::new(0),
            breaker_open: AtomicBool::new(false),
            breaker_transitions: AtomicU32::new(0),
            loads_while_open: AtomicU64::new(0),
        }
    }

    /// A read of the key with this encoding failed because of an injected fault.
    pub fn end_fill(&self, encoded: &[u8]) {
        if let Some(ended) = self
            .population
            .index_of_encoded(encoded)
            .and_then(|index| self.fills_ended.get(index))
        {
            ended.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// The sessions were released at `at`: the outage and the slow stretch count from then.
    pub fn release(&self, at: Instant) {
        let _ = self.released.set(at);
    }

    /// Loads a thumbnail, as slowly as the origin is; fails during the outage.
    pub async fn load(
        &self,
        tenant: u64,
        device_index: u64,
        item: u64,
    ) -> Result<Bytes, OriginDown> {
        let index = self.population.key_index(tenant, device_index, item);
        let since = self.released.get().map(Instant::elapsed);
        self.count(index, since);
        let mut running = Running::start(self, index);
        let within = |window: Window| since.is_some_and(|since| window.contains(since));
        if self.outage.is_some_and(within) {
            // A failed load stores nothing: the key's next load is a new fill.
            if let Some(ended) = self.fills_ended.get(index) {
                ended.fetch_add(1, Ordering::AcqRel);
            }
            running.answered();
            return Err(OriginDown);
        }
        let latency = match self.slow {
            Some((window, latency)) if within(window) => latency,
            _ => self.latency,
        };
        if !latency.is_zero() {
            let (start, queued) = self.take_place(latency);
            // Counted when its place starts serving it, not when it was asked for.
            if let Some(released) = self.released.get() {
                let start_ms = start.saturating_duration_since(*released).as_millis() as u64;
                let bucket = (start_ms / BUCKET_MS) as usize;
                if let Some(starts) = self.starts.get(bucket) {
                    starts.fetch_add(1, Ordering::Relaxed);
                }
                if let (true, Some(queued)) = (queued, self.queued.get(bucket)) {
                    queued.store(true, Ordering::Relaxed);
                }
            }
            let done = start + latency;
            let served = self.server.spawn(tokio::time::sleep_until(done.into()));
            // An error only means the origin's runtime is gone: the load is not slowed then.
            let _ = served.await;
        }
        running.answered();
        let device = self.population.device(tenant, device_index);
        Ok(thumbnail(tenant, device, item))
    }

    /// Takes the first place to come free for one load of `latency`: when the place starts
    /// serving it, and whether it had to wait for the place.
    fn take_place(&self, latency: Duration) -> (Instant, bool) {
        let now = Instant::now();
        let mut places = self.places.lock().unwrap_or_else(|e| e.into_inner());
        let free_at = match places.len() < self.concurrency {
            true => now,
            false => places.pop().map_or(now, |Reverse(at)| at),
        };
        let start = free_at.max(now);
        places.push(Reverse(start + latency));
        (start, free_at > now)
    }

    fn count(&self, index: usize, since_release: Option<Duration>) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if let (Some(outage), Some(since), Some(loads)) =
            (self.outage, since_release, self.after_outage.get(index))
            && (outage.end()..outage.end() + Duration::from_secs(1)).contains(&since)
        {
            self.loads_after_outage.fetch_add(1, Ordering::Relaxed);
            let loads = loads.fetch_add(1, Ordering::Relaxed) + 1;
            self.max_per_key_after_outage
                .fetch_max(loads, Ordering::Relaxed);
        }
        let (Some(loads), Some(ended), Some(fill_loads), Some(last_load_ms)) = (
            self.loads.get(index),
            self.fills_ended.get(index),
            self.fill_loads.get(index),
            self.last_load_ms.get(index),
        ) else {
            return;
        };
        let earlier = loads.fetch_add(1, Ordering::Relaxed);
        if self
            .running
            .get(index)
            .is_some_and(|running| running.load(Ordering::Acquire) > 0)
        {
            self.loads_beside_another.fetch_add(1, Ordering::Relaxed);
        }
        // The previous load's value was stored no earlier than that load started, and the
        // cache keeps it for `keep_ms`: a load that much later refills an expired value.
        let now_ms = self.opened.elapsed().as_millis() as u64;
        let previous_ms = last_load_ms.swap(now_ms, Ordering::AcqRel);
        let expired = earlier > 0 && now_ms >= previous_ms.saturating_add(self.refill_ms);
        if expired {
            ended.fetch_add(1, Ordering::AcqRel);
        }
        if self.breaker_open.load(Ordering::Relaxed) {
            // A bypassed call: it loads by design and fills nothing, so it is no part of a fill.
            self.loads_while_open.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // A fill is named by the key's ended fills and the breaker's transitions, 20 bits each
        // (wrapping; a false match needs 2^20 of either between two loads of one key).
        let fill = u64::from(self.breaker_transitions.load(Ordering::Acquire) & 0xf_ffff) << 20
            | u64::from(ended.load(Ordering::Acquire) & 0xf_ffff);
        let mut in_fill = 1;
        let _ = fill_loads.fetch_update(Ordering::AcqRel, Ordering::Acquire, |packed| {
            let (last_fill, count) = (packed >> 24, packed & 0xff_ffff);
            in_fill = if last_fill == fill && count > 0 {
                (count + 1).min(0xff_ffff)
            } else {
                1
            };
            Some(fill << 24 | in_fill)
        });
        if in_fill > 1 {
            self.reloads_unexplained.fetch_add(1, Ordering::Relaxed);
        } else if expired {
            self.reloads_after_expiry.fetch_add(1, Ordering::Relaxed);
        } else if earlier > 0 {
            self.reloads_after_fill_ended
                .fetch_add(1, Ordering::Relaxed);
        }
        self.max_per_fill
            .fetch_max(in_fill as u32, Ordering::Relaxed);
    }

    pub fn summary(&self) -> OriginSummary {
        let loads = self.loads.iter().map(|n| n.load(Ordering::Relaxed));
        let (keys_loaded, max_total) = loads.fold((0, 0), |(keys, max), n| {
            (keys + u64::from(n > 0), max.max(n))
        });
        OriginSummary {
            loads: self.total.load(Ordering::Relaxed),
            keys_loaded,
            loads_per_key_max_per_fill: self.max_per_fill.load(Ordering::Relaxed),
            loads_per_key_max_over_run: max_total,
            reloads_after_fill_ended: self.reloads_after_fill_ended.load(Ordering::Relaxed),
            reloads_after_expiry: self.reloads_after_expiry.load(Ordering::Relaxed),
            reloads_unexplained: self.reloads_unexplained.load(Ordering::Relaxed),
            loads_beside_another: self.loads_beside_another.load(Ordering::Relaxed),
            loads_dropped: self.loads_dropped.load(Ordering::Relaxed),
            loads_while_breaker_open: self.loads_while_open.load(Ordering::Relaxed),
            loads_first_second_after_outage: self
                .outage
                .map(|_| self.loads_after_outage.load(Ordering::Relaxed)),
            loads_per_key_max_first_second_after_outage: self
                .outage
                .map(|_| self.max_per_key_after_outage.load(Ordering::Relaxed)),
            utilization: self.utilization(),
            wasted_loads: 0,
        }
    }

    /// Loads served per second ÷ the origin's capacity (places ÷ latency) while a queue
    /// existed: over the 10 ms stretches in which a load that had to wait for a place started;
    /// none if none ever waited. Below 1, places stood idle while loads waited for one.
    fn utilization(&self) -> Option<f64> {
        if self.latency.is_zero() {
            return None;
        }
        let (stretches, started) = (self.queued.iter().zip(self.starts.iter()))
            .filter(|(queued, _)| queued.load(Ordering::Relaxed))
            .fold((0u64, 0u64), |(stretches, started), (_, starts)| {
                (
                    stretches + 1,
                    started + u64::from(starts.load(Ordering::Relaxed)),
                )
            });
        if stretches == 0 {
            return None;
        }
        let window_s = (stretches * BUCKET_MS) as f64 / 1_000.0;
        let capacity_per_s = self.concurrency as f64 / self.latency.as_secs_f64();
        Some(started as f64 / window_s / capacity_per_s)
    }
}

/// What the origin saw (the report's `origin` object).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct OriginSummary {
    pub loads: u64,
    pub keys_loaded: u64,
    /// The most loads of one key within one fill.
    pub loads_per_key_max_per_fill: u32,
    /// The most loads of one key over the whole run.
    pub loads_per_key_max_over_run: u32,
    /// Loads of a key after its fill ended: reloads the design requires.
    pub reloads_after_fill_ended: u64,
    /// Loads of a key at least the cache's keep time after its previous load: its value had
    /// expired (refills, not faults).
    pub reloads_after_expiry: u64,
    /// Second loads of a key within one fill, that single-flight should have prevented.
    pub reloads_unexplained: u64,
    /// Loads of a key that started while the cache still waited for another load of it: what
    /// single-flight exists to prevent (expected 0).
    pub loads_beside_another: u64,
    /// Loads the cache stopped waiting for before the origin answered (the cache's load
    /// timeout, or a cancelled caller): they stored nothing, and the key's next load starts a
    /// new fill.
    pub loads_dropped: u64,
    /// Bypassed loads while the breaker was open.
    pub loads_while_breaker_open: u64,
    /// Loads in the first second after `--origin-outage` ended (none without one): a herd
    /// would be every key at once, and several loads of one key.
    pub loads_first_second_after_outage: Option<u64>,
    pub loads_per_key_max_first_second_after_outage: Option<u32>,
    /// Loads served per second ÷ the origin's capacity while loads queued for it: over the
    /// 10 ms stretches in which a load that had to wait for a place started (none if none did).
    pub utilization: Option<f64>,
    /// Loads whose value no caller received (every caller had stopped waiting; the cache
    /// stored it): the cache's `loads_unclaimed`.
    pub wasted_loads: u64,
}

/// One load the cache waits for: counted in `Origin::running` while it runs; dropped before
/// it was `answered`, it ends the key's fill (nothing was stored).
struct Running<'a> {
    origin: &'a Origin,
    index: usize,
    answered: bool,
}

impl<'a> Running<'a> {
    fn start(origin: &'a Origin, index: usize) -> Self {
        if let Some(running) = origin.running.get(index) {
            running.fetch_add(1, Ordering::AcqRel);
        }
        Self {
            origin,
            index,
            answered: false,
        }
    }

    fn answered(&mut self) {
        self.answered = true;
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.origin.loads_dropped.fetch_add(1, Ordering::Relaxed);
            if let Some(ended) = self.origin.fills_ended.get(self.index) {
                ended.fetch_add(1, Ordering::AcqRel);
            }
        }
        if let Some(running) = self.origin.running.get(self.index) {
            running.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// The buckets of `Origin::starts`.
const BUCKET_MS: u64 = 10;
const START_BUCKETS: usize = 360_000;

/// The origin failed a load: `--origin-outage`.
#[derive(Debug, Clone, Copy)]
pub struct OriginDown;

impl std::fmt::Display for OriginDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("origin unavailable (outage)")
    }
}

impl std::error::Error for OriginDown {}

/// How long after a load the cache loads its key again by design: once a value is due for
/// refresh-ahead; else once it is stale (with fail-safe: a load then is what serves a fresh value
/// again); else once it left the cache, which keeps a value of this TTL for the TTL less the
/// expiry margin: the client's clock-skew allowance (the default, as the storm uses it) but at
/// most a quarter of the TTL, in whole ms.
fn refill_ms(config: &Config) -> u64 {
    let ms = |duration: Duration| duration.as_millis().min(u128::from(u64::MAX)) as u64;
    let ttl_ms = ms(config.ttl);
    match (config.refresh_after, config.stale_for) {
        (Some(refresh_after), _) => ms(refresh_after),
        (None, Some(_)) => ttl_ms,
        (None, None) => {
            let allowance_ms = ms(scoped_cache::DEFAULT_CLOCK_SKEW_ALLOWANCE);
            ttl_ms - allowance_ms.min(ttl_ms / 4)
        }
    }
}
