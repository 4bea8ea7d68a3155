//! storm: after an outage every device reconnects at once. Each fetches its own thumbnails with
//! `get_or_load` through a `Cache` whose remote tier lies, from an origin with latency and a
//! concurrency limit; the harness checks every value it is handed against ground truth it
//! computes itself, and counts what reached the origin.
//!
//! ```text
//! cargo run --release --example storm
//! cargo run --release --example storm -- --tenants 10000 --devices-per-tenant 10 --requests 1000000 \
//!     --faults swap=0.01,confuse=0.01,corrupt=0.001,truncate=0.001,stale=0.001,replay=0.001,drop=0.001
//! cargo run --release --example storm -- --faults swap=0.2 --policy autobypass
//! cargo run --release --example storm -- --baseline-unverified --json storm.json
//! ```
//!
//! **The storm.** Tenant ids and device ids are both numbers from `0..tenants`, and the device
//! sets are symmetric: tenant `t` owns device `d` exactly when tenant `d` owns device `t`. So the
//! key with tenant and device exchanged is a real, populated key: exactly the device-id/user-id
//! mix-up of the incident this crate is built against. Every device has `--sessions-per-device`
//! sessions (the camera and its owner's apps), all spawned before a barrier that releases them
//! together; session `s` of a device fetches item `i % items` on its `i`-th request, so a
//! device's sessions ask for the same cold keys at the same moment (`get_or_load` coalesces
//! them). A miss loads from the *origin*: it waits for one of `--origin-concurrency` permits,
//! sleeps `--origin-latency`, and counts the load per key.
//!
//! **The faults.** The remote tier is a store (in-process `MemoryStore`, or Redis with
//! `--features redis --backend redis://…`) wrapped in a `FaultyStore` that, at the given rates,
//! answers a read with another key's sealed value (`swap`), the value of the same ids with tenant
//! and device exchanged (`confuse`), a flipped byte (`corrupt`), a cut-short value (`truncate`),
//! an expired value of the same key (`stale`), an earlier unexpired value of the same key
//! (`replay`: the owner's own data, correctly accepted), an error (`drop`), the right value late
//! (`delay`) or an error after a delay (`timeout`). Before the storm the harness writes
//! "yesterday's" values of every key through the cache (one generation that expires at once,
//! one that the outage then deletes), so the store has seen the old values `stale` and `replay`
//! hand back; it seals nothing itself.
//!
//! **The checks.** Every value returned is compared byte for byte with the thumbnail the harness
//! computes for that owner and item (not with anything the library reports); any difference is a
//! *leak*. Every wrong value the store handed out must come back as a violation; every dropped or
//! timed-out read as a remote error. `origin_loads_per_key_max` is the most origin loads of one
//! key *within one fill*. A fill of a key ends when the cache loses its value: a read of it is
//! refused (the cache then deletes the entry: fail closed) or fails, the entry is deleted (a
//! refusal's delete is unconditional, so with Redis it can remove a value another caller has
//! just written), a write of it fails, or the breaker changes state (while it is open, loaded
//! values are not written). A load after that is a reload the design requires; those are real
//! origin traffic and are reported next to it (`reloads_after_fill_ended`, the most loads of
//! one key over the whole run, and the loads made while the breaker was open). A second load of
//! a key within one fill is a double load that single-flight should have prevented
//! (`reloads_unexplained`, expected 0).
//!
//! **The baseline.** `--baseline-unverified` runs the same storm again through a naive cache
//! built here: a plain `quick_cache` L1 keyed by the key bytes, the payload cut out of the
//! envelope read from the store without any check, no single-flight. It reports how many wrong
//! values it served, side by side with the verified run.
//!
//! Exit status: 0 when the verified run leaked nothing and every injected fault was refused;
//! 1 when a value leaked or an injected fault went unrefused; 2 for bad flags; 3 when the
//! runtime, the backend or the JSON report failed.

use bytes::Bytes;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use scoped_cache::testing::{FaultCounts, FaultKind, FaultRates, FaultyStore};
use scoped_cache::{
    BreakerState, Cache, Client, DeviceId, Envelope, Key, KeyId, KeyRing, MemoryStore, Namespace,
    Policy, RawBytes, RemoteStore, Stats, StoreFuture, TenantId, Tier, Violation, ViolationKind,
    ViolationReport,
};
use serde_json::json;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Barrier, Semaphore};

/// Camera thumbnails, one per (tenant, device, event).
struct Thumbnails;

impl Namespace for Thumbnails {
    const NAME: &'static str = "thumb";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = Bytes;
    type Codec = RawBytes;
}

const SECRET: &[u8] = b"storm: a demo secret, not for production";

const DEFAULT_FAULTS: &str = "swap=0.01,confuse=0.01,corrupt=0.001,truncate=0.001,stale=0.001,\
                              replay=0.001,drop=0.001,delay=0.001@2ms,timeout=0.0001@20ms";

const USAGE: &str = "\
usage: cargo run --release --example storm -- [flags]

  --tenants N               tenants; tenant and device ids are both 0..N          [2000]
  --devices-per-tenant N    devices of each tenant (1..tenants-1; symmetric)      [8]
  --items-per-device N      thumbnails per device                                 [4]
  --sessions-per-device N   concurrent fetchers per device (camera + apps)        [2]
  --requests N              total get_or_load calls, split over the sessions      [6000000]
  --duration D              run for D (e.g. 10s) instead of --requests
  --l1-capacity N           in-process entries; 0 disables the in-process tier    [10000]
  --ttl D                   time to live of cached values (nothing expires
                            during a run shorter than this)                       [600s]
  --origin-latency D        time the origin takes per load                        [1ms]
  --origin-concurrency N    loads the origin serves at once                       [64]
  --policy cache|autobypass the namespace's policy                                [cache]
  --breaker-threshold N     autobypass: violations per window that open it        [1000]
  --breaker-window D        autobypass: the counting window                       [1s]
  --breaker-cool-down D     autobypass: time open before probing                  [2s]
  --backend memory|URL      the remote tier: in-process, or redis://… (needs
                            --features redis)                                     [memory]
  --faults SPEC             kind=rate[@duration],… or none; kinds swap, confuse,
                            corrupt, truncate, stale, replay, drop, delay, timeout
                            [swap=0.01,confuse=0.01,corrupt=0.001,truncate=0.001,
                             stale=0.001,replay=0.001,drop=0.001,delay=0.001@2ms,
                             timeout=0.0001@20ms]
  --baseline-unverified     also run the storm through a naive unverified cache
  --seed N                  seed of the faults                                    [42]
  --no-progress             no progress bar (there is none when stdout is not a terminal)
  --json PATH               also write the report as JSON to PATH
  -h, --help                this text

durations: a number and ns, us, ms, s or m (1ms, 0.5s, 2m)
exit status: 0 clean, 1 leak or unrefused fault, 2 bad flags, 3 runtime/backend/report failure";

/// When the sessions stop.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// After this many requests in all.
    Requests(u64),
    /// When this much time has passed since the barrier.
    After(Duration),
}

/// Which policy the namespace runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PolicyChoice {
    Cache,
    AutoBypass,
}

/// Where the remote tier lives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BackendChoice {
    Memory,
    Redis(String),
}

/// The run's parameters.
#[derive(Debug, Clone)]
struct Config {
    tenants: u64,
    devices_per_tenant: u64,
    items_per_device: u64,
    sessions_per_device: u64,
    stop: Stop,
    l1_capacity: u64,
    ttl: Duration,
    origin_latency: Duration,
    origin_concurrency: usize,
    policy: PolicyChoice,
    breaker_threshold: u32,
    breaker_window: Duration,
    breaker_cool_down: Duration,
    backend: BackendChoice,
    faults: FaultRates,
    baseline_unverified: bool,
    seed: u64,
    progress: bool,
    json: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            tenants: 2000,
            devices_per_tenant: 8,
            items_per_device: 4,
            sessions_per_device: 2,
            stop: Stop::Requests(6_000_000),
            l1_capacity: 10_000,
            ttl: Duration::from_secs(600),
            origin_latency: Duration::from_millis(1),
            origin_concurrency: 64,
            policy: PolicyChoice::Cache,
            breaker_threshold: 1000,
            breaker_window: Duration::from_secs(1),
            breaker_cool_down: Duration::from_secs(2),
            backend: BackendChoice::Memory,
            faults: DEFAULT_FAULTS.parse().unwrap_or_default(),
            baseline_unverified: false,
            seed: 42,
            progress: true,
            json: None,
        }
    }
}

impl Config {
    fn population(&self) -> Population {
        Population {
            tenants: self.tenants,
            devices_per_tenant: self.devices_per_tenant,
            items_per_device: self.items_per_device,
        }
    }

    fn sessions(&self) -> u64 {
        self.tenants * self.devices_per_tenant * self.sessions_per_device
    }

    fn policy(&self) -> Policy {
        match self.policy {
            PolicyChoice::Cache => Policy::Cache,
            PolicyChoice::AutoBypass => Policy::AutoBypass {
                threshold: self.breaker_threshold,
                window: self.breaker_window,
                cool_down: self.breaker_cool_down,
            },
        }
    }

    fn backend_name(&self) -> &str {
        match &self.backend {
            BackendChoice::Memory => "memory",
            BackendChoice::Redis(url) => url,
        }
    }

    fn policy_name(&self) -> String {
        match self.policy {
            PolicyChoice::Cache => "cache".into(),
            PolicyChoice::AutoBypass => format!(
                "autobypass (open at {} violations in {:?}, cool-down {:?})",
                self.breaker_threshold, self.breaker_window, self.breaker_cool_down
            ),
        }
    }
}

/// What `main` should do after reading the flags.
enum Command {
    Run(Box<Config>),
    Help,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut config = Config::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(Command::Help);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.into())),
            _ => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--tenants" => config.tenants = number(&flag, &value()?)?,
            "--devices-per-tenant" => config.devices_per_tenant = number(&flag, &value()?)?,
            "--items-per-device" => config.items_per_device = number(&flag, &value()?)?,
            "--sessions-per-device" => config.sessions_per_device = number(&flag, &value()?)?,
            "--requests" => config.stop = Stop::Requests(number(&flag, &value()?)?),
            "--duration" => config.stop = Stop::After(duration(&flag, &value()?)?),
            "--l1-capacity" => config.l1_capacity = number(&flag, &value()?)?,
            "--ttl" => config.ttl = duration(&flag, &value()?)?,
            "--origin-latency" => config.origin_latency = duration(&flag, &value()?)?,
            "--origin-concurrency" => {
                config.origin_concurrency = usize::try_from(number(&flag, &value()?)?)
                    .map_err(|_| format!("{flag} is too large"))?;
            }
            "--policy" => {
                config.policy = match value()?.as_str() {
                    "cache" => PolicyChoice::Cache,
                    "autobypass" => PolicyChoice::AutoBypass,
                    other => return Err(format!("--policy {other:?}: use cache or autobypass")),
                }
            }
            "--breaker-threshold" => {
                config.breaker_threshold = u32::try_from(number(&flag, &value()?)?)
                    .map_err(|_| format!("{flag} is too large"))?;
            }
            "--breaker-window" => config.breaker_window = duration(&flag, &value()?)?,
            "--breaker-cool-down" => config.breaker_cool_down = duration(&flag, &value()?)?,
            "--backend" => {
                let backend = value()?;
                config.backend = match backend.as_str() {
                    "memory" => BackendChoice::Memory,
                    url if url.starts_with("redis://")
                        || url.starts_with("rediss://")
                        || url.starts_with("redis+unix://")
                        || url.starts_with("unix://") =>
                    {
                        BackendChoice::Redis(url.to_owned())
                    }
                    other => {
                        return Err(format!("--backend {other:?}: use memory or a redis:// URL"));
                    }
                };
            }
            "--faults" => {
                config.faults = value()?
                    .parse()
                    .map_err(|error| format!("--faults: {error}"))?;
            }
            "--baseline-unverified" => config.baseline_unverified = true,
            "--seed" => config.seed = number(&flag, &value()?)?,
            "--no-progress" => config.progress = false,
            "--json" => config.json = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    if config.tenants < 2 {
        return Err("--tenants must be at least 2".into());
    }
    if !(1..config.tenants).contains(&config.devices_per_tenant) {
        return Err(format!(
            "--devices-per-tenant must be 1..={} (fewer than --tenants, so device sets are symmetric)",
            config.tenants - 1
        ));
    }
    if config.items_per_device == 0
        || config.sessions_per_device == 0
        || config.origin_concurrency == 0
        || config.breaker_threshold == 0
    {
        return Err(
            "--items-per-device, --sessions-per-device, --origin-concurrency and \
             --breaker-threshold must be positive"
                .into(),
        );
    }
    let keys = config
        .tenants
        .checked_mul(config.devices_per_tenant)
        .and_then(|devices| devices.checked_mul(config.items_per_device))
        .and_then(|keys| keys.checked_mul(config.sessions_per_device));
    if keys.is_none_or(|keys| keys > u64::from(u32::MAX)) {
        return Err("tenants x devices x items x sessions is too large".into());
    }
    if config.ttl.is_zero() {
        return Err("--ttl must be positive".into());
    }
    if matches!(config.backend, BackendChoice::Redis(_)) && !cfg!(feature = "redis") {
        return Err("--backend redis://… needs the redis feature: add --features redis".into());
    }
    Ok(Command::Run(Box::new(config)))
}

/// A non-negative integer; `_` separators are allowed (`1_000_000`).
fn number(flag: &str, text: &str) -> Result<u64, String> {
    text.replace('_', "")
        .parse()
        .map_err(|_| format!("{flag}: {text:?} is not a non-negative integer"))
}

/// A duration: a number and a unit, `ns`, `us`, `ms`, `s` or `m`.
fn duration(flag: &str, text: &str) -> Result<Duration, String> {
    let bad = || format!("{flag}: {text:?} is not a duration; write e.g. 1ms, 0.5s, 2m");
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.trim().parse().map_err(|_| bad())?;
    let seconds = match unit {
        "ns" => 1e-9,
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(number * seconds).map_err(|_| bad())
}

/// Who owns what: tenants `0..tenants`, each with `devices_per_tenant` devices whose ids are
/// drawn from the same range, such that `t` owns `d` exactly when `d` owns `t`.
#[derive(Debug, Clone, Copy)]
struct Population {
    tenants: u64,
    devices_per_tenant: u64,
    items_per_device: u64,
}

impl Population {
    /// The `index`-th device of `tenant`: `tenant ± 1`, `tenant ± 2`, … modulo `tenants`, and
    /// `tenant` itself last when the count is odd. The offsets are closed under negation, so the
    /// relation is symmetric; they are distinct because `devices_per_tenant < tenants`.
    fn device(&self, tenant: u64, index: u64) -> u64 {
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

    fn keys(&self) -> u64 {
        self.tenants * self.devices_per_tenant * self.items_per_device
    }

    /// A dense index of (tenant, device index, item), for per-key counters.
    fn key_index(&self, tenant: u64, device_index: u64, item: u64) -> usize {
        ((tenant * self.devices_per_tenant + device_index) * self.items_per_device + item) as usize
    }

    /// The dense index of an encoded key, if it is one of this population's.
    fn index_of_encoded(&self, encoded: &[u8]) -> Option<usize> {
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

/// The origin's thumbnail of `item` of `device` of `tenant`: a header naming its owner, then
/// 64..=511 pseudo-random bytes derived from the ids. The harness's ground truth.
fn thumbnail(tenant: u64, device: u64, item: u64) -> Bytes {
    let mut state = tenant
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(device.wrapping_mul(0xc2b2_ae3d_27d4_eb4f))
        .wrapping_add(item.wrapping_mul(0x1656_67b1_9e37_79f9));
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let body_len = 64 + (next() % 448) as usize;
    let mut out = Vec::with_capacity(HEADER.len() + 24 + body_len + 8);
    out.extend_from_slice(HEADER);
    for id in [tenant, device, item] {
        out.extend_from_slice(&id.to_be_bytes());
    }
    while out.len() < HEADER.len() + 24 + body_len {
        out.extend_from_slice(&next().to_le_bytes());
    }
    out.truncate(HEADER.len() + 24 + body_len);
    Bytes::from(out)
}

const HEADER: &[u8] = b"THUMB\x01";

/// The (tenant, device, item) a thumbnail's header names, if it has one: to say whose data leaked.
fn named_owner(bytes: &[u8]) -> Option<(u64, u64, u64)> {
    let ids = bytes.strip_prefix(HEADER)?;
    let id = |at: usize| Some(u64::from_be_bytes(ids.get(at..at + 8)?.try_into().ok()?));
    Some((id(0)?, id(8)?, id(16)?))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// The source of truth: slow, limited, and counting what it is asked for.
///
/// It serves on a runtime of its own, as another service would: a load's permit is held for
/// the origin's latency, not for as long as the storm's busy runtime takes to poll the loader
/// again.
struct Origin {
    latency: Duration,
    permits: Arc<Semaphore>,
    server: tokio::runtime::Handle,
    population: Population,
    /// Loads of each key over the run.
    loads: Box<[AtomicU32]>,
    /// Reads of each key that a fault made fail (refused or errored): each ends a fill.
    fills_ended: Box<[AtomicU32]>,
    /// Per key: (the fill its last load belonged to) << 24 | (loads in that fill).
    fill_loads: Box<[AtomicU64]>,
    /// Breaker transitions so far: each ends every key's fill (while the breaker is open, or
    /// turning, loaded values are not written, so they load again once it closes).
    breaker_transitions: AtomicU32,
    total: AtomicU64,
    max_per_fill: AtomicU32,
    reloads_after_fill_ended: AtomicU64,
    reloads_unexplained: AtomicU64,
    /// Whether the namespace's breaker is open (set by the client's breaker sink).
    breaker_open: AtomicBool,
    loads_while_open: AtomicU64,
}

impl Origin {
    fn new(config: &Config, server: tokio::runtime::Handle) -> Self {
        let keys = config.population().keys() as usize;
        let zeroed32 = || (0..keys).map(|_| AtomicU32::new(0)).collect();
        Self {
            latency: config.origin_latency,
            permits: Arc::new(Semaphore::new(config.origin_concurrency)),
            server,
            population: config.population(),
            loads: zeroed32(),
            fills_ended: zeroed32(),
            fill_loads: (0..keys).map(|_| AtomicU64::new(0)).collect(),
            total: AtomicU64::new(0),
            max_per_fill: AtomicU32::new(0),
            reloads_after_fill_ended: AtomicU64::new(0),
            reloads_unexplained: AtomicU64::new(0),
            breaker_open: AtomicBool::new(false),
            breaker_transitions: AtomicU32::new(0),
            loads_while_open: AtomicU64::new(0),
        }
    }

    /// A read of the key with this encoding failed because of an injected fault.
    fn end_fill(&self, encoded: &[u8]) {
        if let Some(ended) = self
            .population
            .index_of_encoded(encoded)
            .and_then(|index| self.fills_ended.get(index))
        {
            ended.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Loads a thumbnail, as slowly as the origin is.
    async fn load(&self, tenant: u64, device_index: u64, item: u64) -> Result<Bytes, Infallible> {
        self.count(self.population.key_index(tenant, device_index, item));
        if !self.latency.is_zero() {
            let (permits, latency) = (Arc::clone(&self.permits), self.latency);
            let served = self.server.spawn(async move {
                // The semaphore is never closed; were it, the load would just not wait.
                let _permit = permits.acquire().await;
                tokio::time::sleep(latency).await;
            });
            // An error only means the origin's runtime is gone: the load is not slowed then.
            let _ = served.await;
        }
        let device = self.population.device(tenant, device_index);
        Ok(thumbnail(tenant, device, item))
    }

    fn count(&self, index: usize) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let (Some(loads), Some(ended), Some(fill_loads)) = (
            self.loads.get(index),
            self.fills_ended.get(index),
            self.fill_loads.get(index),
        ) else {
            return;
        };
        let earlier = loads.fetch_add(1, Ordering::Relaxed);
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
        } else if earlier > 0 {
            self.reloads_after_fill_ended
                .fetch_add(1, Ordering::Relaxed);
        }
        self.max_per_fill
            .fetch_max(in_fill as u32, Ordering::Relaxed);
    }

    fn summary(&self) -> OriginSummary {
        let loads = self.loads.iter().map(|n| n.load(Ordering::Relaxed));
        let (keys_loaded, max_total) = loads.fold((0, 0), |(keys, max), n| {
            (keys + u64::from(n > 0), max.max(n))
        });
        OriginSummary {
            loads: self.total.load(Ordering::Relaxed),
            keys_loaded,
            per_key_max_per_fill: self.max_per_fill.load(Ordering::Relaxed),
            per_key_max_total: max_total,
            reloads_after_fill_ended: self.reloads_after_fill_ended.load(Ordering::Relaxed),
            reloads_unexplained: self.reloads_unexplained.load(Ordering::Relaxed),
            loads_while_open: self.loads_while_open.load(Ordering::Relaxed),
        }
    }
}

/// What the origin saw.
#[derive(Debug, Clone, Copy, Default)]
struct OriginSummary {
    loads: u64,
    keys_loaded: u64,
    per_key_max_per_fill: u32,
    per_key_max_total: u32,
    reloads_after_fill_ended: u64,
    reloads_unexplained: u64,
    loads_while_open: u64,
}

/// The chosen backend behind one type, so that `FaultyStore` can wrap whichever it is. It also
/// ends a key's fill where the backend loses the key's value: when the key is deleted (the cache
/// deletes a key whose read it refused; the delete is not conditional, so it can remove a value
/// another caller has just loaded and written), and when a read or write of it fails on its own
/// (not injected): a failed read is a miss, a failed write leaves the value out of the shared tier.
struct Backend {
    store: Arc<dyn RemoteStore>,
    origin: Arc<Origin>,
    errors: AtomicU64,
}

impl Backend {
    fn observe<'a, T: Send + 'a>(
        &'a self,
        key: &'a [u8],
        call: StoreFuture<'a, T>,
        ends_fill: bool,
    ) -> StoreFuture<'a, T> {
        Box::pin(async move {
            let outcome = call.await;
            if outcome.is_err() {
                self.errors.fetch_add(1, Ordering::Relaxed);
                if ends_fill {
                    self.origin.end_fill(key);
                }
            }
            outcome
        })
    }
}

impl RemoteStore for Backend {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Bytes>> {
        self.observe(key, self.store.get(key), true)
    }

    fn set<'a>(
        &'a self,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()> {
        self.observe(key, self.store.set(key, value, ttl), true)
    }

    fn delete<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let outcome = self.observe(key, self.store.delete(key), false).await;
            self.origin.end_fill(key);
            outcome
        })
    }
}

/// The chosen backend, fresh for one run; the `MemoryStore` too when it is one, for its stats.
async fn open_backend(
    config: &Config,
    run: &str,
) -> Result<(Arc<dyn RemoteStore>, Option<Arc<MemoryStore>>), String> {
    match &config.backend {
        BackendChoice::Memory => {
            // Room for every key: evictions would only cost reloads, never the checks.
            let memory = Arc::new(MemoryStore::new(4 << 30));
            Ok((memory.clone(), Some(memory)))
        }
        BackendChoice::Redis(url) => open_redis(url, run).await.map(|store| (store, None)),
    }
}

#[cfg(feature = "redis")]
async fn open_redis(url: &str, run: &str) -> Result<Arc<dyn RemoteStore>, String> {
    // A prefix of its own per run, so that runs (and the baseline) never see each other's keys.
    let prefix = format!("storm:{}:{}:{run}:", std::process::id(), now_ms());
    scoped_cache::RedisStore::builder(url)
        .key_prefix(prefix)
        .connect()
        .await
        .map(|store| Arc::new(store) as Arc<dyn RemoteStore>)
        .map_err(|error| format!("cannot connect to {url}: {error}"))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(url: &str, _run: &str) -> Result<Arc<dyn RemoteStore>, String> {
    Err(format!(
        "{url}: this build has no Redis support; add --features redis"
    ))
}

/// What the violation sink saw, by tier, with the first report of each kind as an operator
/// would read it.
#[derive(Default)]
struct SinkLog {
    local: AtomicU64,
    remote: AtomicU64,
    /// (label, report text), one per label.
    examples: Mutex<Vec<(String, String)>>,
}

impl SinkLog {
    fn record(&self, report: &ViolationReport) {
        match report.tier {
            Tier::Local => &self.local,
            // `Tier` is non-exhaustive; any tier below L1 counts as remote.
            _ => &self.remote,
        }
        .fetch_add(1, Ordering::Relaxed);
        let label = match &report.violation {
            Violation::OwnerMismatch { expected, found }
                if found.tenant.as_u64() == expected.device.as_u64()
                    && found.device.as_u64() == expected.tenant.as_u64() =>
            {
                "owner_mismatch (tenant/device exchanged)".to_owned()
            }
            violation => violation.kind().name().to_owned(),
        };
        let mut examples = self.examples.lock().unwrap_or_else(|e| e.into_inner());
        if !examples.iter().any(|(seen, _)| *seen == label) {
            let text = format!(
                "{:?} tier, read for {}: {}",
                report.tier, report.expected, report.violation
            );
            examples.push((label, text));
        }
    }
}

/// A naive cache client, as many are: an L1 keyed by the key bytes, the remote value's payload
/// cut out of the envelope by its length fields without checking tag, owner, item or expiry,
/// and no single-flight. The verified run's `Cache` does everything this skips.
struct NaiveCache {
    l1: Option<quick_cache::sync::Cache<Vec<u8>, Bytes>>,
    store: Arc<dyn RemoteStore>,
    ring: KeyRing,
    ttl: Duration,
    hits_l1: AtomicU64,
    hits_l2: AtomicU64,
    misses: AtomicU64,
    remote_errors: AtomicU64,
    expired_served: AtomicU64,
}

impl NaiveCache {
    async fn get_or_load<Fut>(&self, key: &Key<Thumbnails>, load: Fut) -> Result<Bytes, String>
    where
        Fut: Future<Output = Result<Bytes, Infallible>>,
    {
        let encoded = key.encode();
        if let Some(value) = self.l1.as_ref().and_then(|l1| l1.get(&encoded)) {
            self.hits_l1.fetch_add(1, Ordering::Relaxed);
            return Ok(value);
        }
        match self.store.get(&encoded).await {
            Ok(Some(raw)) => {
                if let Some((payload, expires_ms)) = cut_payload(&raw) {
                    if expires_ms <= now_ms() {
                        self.expired_served.fetch_add(1, Ordering::Relaxed);
                    }
                    self.hits_l2.fetch_add(1, Ordering::Relaxed);
                    if let Some(l1) = &self.l1 {
                        l1.insert(encoded, payload.clone());
                    }
                    return Ok(payload);
                }
            }
            Ok(None) => {}
            Err(_) => {
                self.remote_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let Ok(value) = load.await;
        let now = now_ms();
        let expires = now.saturating_add(self.ttl.as_millis() as u64);
        let sealed = Envelope::default()
            .seal(key, &value, now, expires, &self.ring)
            .map_err(|error| error.to_string())?;
        if self
            .store
            .set(&encoded, sealed, Some(self.ttl))
            .await
            .is_err()
        {
            self.remote_errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(l1) = &self.l1 {
            l1.insert(encoded, value.clone());
        }
        Ok(value)
    }
}

/// The payload of an envelope found by its length fields, and its expiry, with no check at all
/// (layout: magic 4, version 1, flags 1, schema 2, key id 4, created 8, expires 8, key length 4,
/// key, payload length 4, payload, tag 32). `None` only when the lengths point outside the bytes.
fn cut_payload(raw: &Bytes) -> Option<(Bytes, u64)> {
    let u32_at = |at: usize| -> Option<usize> {
        Some(u32::from_be_bytes(raw.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let expires_ms = u64::from_be_bytes(raw.get(20..28)?.try_into().ok()?);
    let payload_len_at = 32usize.checked_add(u32_at(28)?)?;
    let start = payload_len_at.checked_add(4)?;
    let end = start.checked_add(u32_at(payload_len_at)?)?;
    (end <= raw.len()).then(|| (raw.slice(start..end), expires_ms))
}

/// How a run reads: through the library, or through the naive client.
enum Path {
    Verified(Cache<Thumbnails>),
    Naive(NaiveCache),
}

impl Path {
    async fn fetch(
        &self,
        key: &Key<Thumbnails>,
        origin: &Origin,
        tenant: u64,
        device_index: u64,
        item: u64,
    ) -> Result<Bytes, String> {
        let load = || origin.load(tenant, device_index, item);
        match self {
            Path::Verified(cache) => cache
                .get_or_load(key, load)
                .await
                .map_err(|error| error.to_string()),
            Path::Naive(naive) => naive.get_or_load(key, load()).await,
        }
    }
}

/// Everything the sessions of one run share.
struct Run {
    path: Path,
    origin: Arc<Origin>,
    population: Population,
    /// Requests finished so far (for the progress bar).
    done: AtomicU64,
    /// Set when `--duration` has passed.
    stopped: AtomicBool,
    latency_us: Mutex<Histogram<u64>>,
}

/// One session's counts.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    served: u64,
    /// Values that were not the requested thumbnail: another owner's, or damaged.
    leaks: u64,
    leaks_other_owner: u64,
    errors: u64,
    leak_examples: Vec<String>,
    error_examples: Vec<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.served += other.served;
        self.leaks += other.leaks;
        self.leaks_other_owner += other.leaks_other_owner;
        self.errors += other.errors;
        self.leak_examples.extend(other.leak_examples);
        self.leak_examples.truncate(MAX_EXAMPLES);
        self.error_examples.extend(other.error_examples);
        self.error_examples.truncate(MAX_EXAMPLES);
    }
}

const MAX_EXAMPLES: usize = 5;
/// Latencies a session gathers before adding them to the shared histogram.
const LATENCY_BATCH: usize = 256;

/// One device's session: waits at the barrier with every other, then fetches the device's
/// items in turn.
async fn session(
    run: Arc<Run>,
    barrier: Arc<Barrier>,
    tenant: u64,
    device_index: u64,
    requests: Option<u64>,
) -> Tally {
    let population = run.population;
    let device = population.device(tenant, device_index);
    let mut tally = Tally::default();
    let mut latencies = Vec::with_capacity(LATENCY_BATCH);
    barrier.wait().await;
    let mut sent = 0u64;
    while requests.is_none_or(|limit| sent < limit) && !run.stopped.load(Ordering::Relaxed) {
        let item = sent % population.items_per_device;
        sent += 1;
        let key = Key::new(TenantId::from_u64(tenant), DeviceId::from_u64(device), item);
        let started = Instant::now();
        let fetched = run
            .path
            .fetch(&key, &run.origin, tenant, device_index, item)
            .await;
        latencies.push(started.elapsed().as_micros() as u64);
        if latencies.len() == LATENCY_BATCH {
            record_latencies(&run, &mut latencies);
        }
        tally.requests += 1;
        match fetched {
            Ok(value) => {
                tally.served += 1;
                // Ground truth is recomputed here, independently of the cache's verdict.
                if value != thumbnail(tenant, device, item) {
                    tally.leaks += 1;
                    if named_owner(&value).is_some_and(|(t, d, _)| (t, d) != (tenant, device)) {
                        tally.leaks_other_owner += 1;
                    }
                    if tally.leak_examples.len() < MAX_EXAMPLES {
                        tally
                            .leak_examples
                            .push(describe_leak(tenant, device, item, &value));
                    }
                }
            }
            Err(error) => {
                tally.errors += 1;
                if tally.error_examples.len() < MAX_EXAMPLES {
                    tally.error_examples.push(error);
                }
            }
        }
        run.done.fetch_add(1, Ordering::Relaxed);
    }
    record_latencies(&run, &mut latencies);
    tally
}

fn record_latencies(run: &Run, latencies: &mut Vec<u64>) {
    let mut histogram = run.latency_us.lock().unwrap_or_else(|e| e.into_inner());
    for &us in latencies.iter() {
        histogram.saturating_record(us.max(1));
    }
    latencies.clear();
}

fn describe_leak(tenant: u64, device: u64, item: u64, value: &[u8]) -> String {
    let whose = match named_owner(value) {
        Some((t, d, i)) if (t, d) != (tenant, device) => {
            format!("the thumbnail of tenant {t}, device {d}, item {i}")
        }
        Some((_, _, i)) if i != item => format!("its own item {i}"),
        _ => format!("{} bytes that are not its thumbnail", value.len()),
    };
    format!("tenant {tenant}, device {device}, item {item} was served {whose}")
}

/// Latency percentiles in µs.
#[derive(Debug, Clone, Copy, Default)]
struct Latency {
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Self {
        Self {
            p50: histogram.value_at_quantile(0.5),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
    }

    fn to_json(self) -> serde_json::Value {
        json!({ "p50": self.p50, "p99": self.p99, "p999": self.p999, "max": self.max })
    }
}

/// The cache's own counts, whichever path ran.
#[derive(Debug, Clone, Copy, Default)]
struct CacheCounts {
    hits_l1: u64,
    hits_l2: u64,
    misses: u64,
    loads: u64,
    coalesced: u64,
    load_errors: u64,
    remote_errors: u64,
    expired_served: u64,
}

/// Everything one run measured.
struct RunReport {
    label: &'static str,
    tally: Tally,
    counts: CacheCounts,
    /// The library's stats (verified run only).
    stats: Option<Stats>,
    origin: OriginSummary,
    injected: FaultCounts,
    remote_reads: u64,
    /// Calls the backend itself failed (not injected).
    backend_errors: u64,
    l2_evictions: Option<u64>,
    sink_local: u64,
    sink_remote: u64,
    sink_examples: Vec<(String, String)>,
    latency: Latency,
    elapsed: Duration,
    /// Writing yesterday's values and spawning the sessions, before the barrier.
    prepared: Duration,
}

impl RunReport {
    fn ops_per_s(&self) -> f64 {
        self.tally.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn violations(&self, kind: ViolationKind) -> u64 {
        self.stats.map_or(0, |stats| stats.violations.get(kind))
    }

    fn injected_of(&self, kinds: &[FaultKind]) -> u64 {
        kinds.iter().map(|&kind| self.injected.get(kind)).sum()
    }

    /// Injected faults that hand out a value the cache must refuse.
    fn wrong_values_injected(&self) -> u64 {
        self.injected
            .iter()
            .filter(|(kind, _)| kind.is_wrong_value())
            .map(|(_, n)| n)
            .sum()
    }

    /// Injected faults that fail the read.
    fn errors_injected(&self) -> u64 {
        self.injected
            .iter()
            .filter(|(kind, _)| kind.is_error())
            .map(|(_, n)| n)
            .sum()
    }

    /// Every wrong value the store handed out came back as a remote-tier violation.
    fn all_refused(&self) -> bool {
        self.wrong_values_injected() == self.sink_remote
    }

    fn ok(&self) -> bool {
        self.tally.leaks == 0 && self.all_refused()
    }

    /// Why injected wrong values and remote violations differ, when they do.
    fn mismatch_reason(&self) -> Option<String> {
        let (injected, refused) = (self.wrong_values_injected(), self.sink_remote);
        if injected == refused {
            return None;
        }
        Some(if refused > injected {
            format!(
                "{} more remote violations than injected wrong values: the store held values \
                 that fail verification without help ({} expired, possible only if the run \
                 outlasted --ttl), or a replay was refused; anything else is a bug",
                refused - injected,
                self.violations(ViolationKind::Expired)
                    .saturating_sub(self.injected.get(FaultKind::Stale))
            )
        } else {
            format!(
                "{} injected wrong values were not refused: one passed verification (see \
                 leaks), or a read was abandoned between the store and the check",
                injected - refused
            )
        })
    }

    fn breaker(&self) -> (u64, u64) {
        self.stats
            .map_or((0, 0), |stats| (stats.breaker_trips, stats.breaker_open_ms))
    }

    fn to_json(&self) -> serde_json::Value {
        let faults: serde_json::Map<_, _> = self
            .injected
            .iter()
            .map(|(kind, n)| (kind.name().to_owned(), json!(n)))
            .collect();
        let violations: serde_json::Map<_, _> = self
            .stats
            .iter()
            .flat_map(|stats| stats.violations.iter())
            .map(|(kind, n)| (kind.name().to_owned(), json!(n)))
            .collect();
        let groups: Vec<_> = GROUPS
            .iter()
            .map(|group| {
                let (injected, refused) = self.group_counts(group);
                json!({ "group": group.name, "injected": injected, "refused": refused })
            })
            .collect();
        let (trips, open_ms) = self.breaker();
        let o = &self.origin;
        json!({
            "path": self.label,
            "requests": self.tally.requests,
            "served": self.tally.served,
            "errors": self.tally.errors,
            "error_examples": self.tally.error_examples,
            "hits_l1": self.counts.hits_l1,
            "hits_l2": self.counts.hits_l2,
            "misses": self.counts.misses,
            "loads": self.counts.loads,
            "coalesced": self.counts.coalesced,
            "load_errors": self.counts.load_errors,
            "remote_reads": self.remote_reads,
            "remote_errors": self.counts.remote_errors,
            "backend_errors": self.backend_errors,
            "l2_evictions": self.l2_evictions,
            "origin_loads_per_key_max": o.per_key_max_per_fill,
            "origin": {
                "loads": o.loads,
                "keys_loaded": o.keys_loaded,
                "loads_per_key_max_per_fill": o.per_key_max_per_fill,
                "loads_per_key_max_over_run": o.per_key_max_total,
                "reloads_after_fill_ended": o.reloads_after_fill_ended,
                "reloads_unexplained": o.reloads_unexplained,
                "loads_while_breaker_open": o.loads_while_open,
            },
            "breaker_trips": trips,
            "breaker_open_ms": open_ms,
            "faults_injected": faults,
            "faults_injected_total": self.injected.total(),
            "violations_detected": violations,
            "violations_detected_total": self.sink_local + self.sink_remote,
            "violations_by_tier": { "l1": self.sink_local, "l2": self.sink_remote },
            "detection": {
                "all_injected_wrong_values_refused": self.all_refused(),
                "by_group": groups,
                "mismatch_reason": self.mismatch_reason(),
            },
            "leaks": self.tally.leaks,
            "leaks_other_owner": self.tally.leaks_other_owner,
            "leaks_damaged": self.tally.leaks - self.tally.leaks_other_owner,
            "expired_served": self.counts.expired_served,
            "leak_examples": self.tally.leak_examples,
            "violation_examples": self
                .sink_examples
                .iter()
                .map(|(label, text)| json!({ "kind": label, "report": text }))
                .collect::<Vec<_>>(),
            "latency_us": self.latency.to_json(),
            "elapsed_s": self.elapsed.as_secs_f64(),
            "prepared_s": self.prepared.as_secs_f64(),
            "ops_per_s": self.ops_per_s(),
        })
    }

    fn group_counts(&self, group: &Group) -> (u64, u64) {
        let refused = group.violations.iter().map(|&k| self.violations(k)).sum();
        (self.injected_of(group.faults), refused)
    }
}

/// Faults grouped with the violations they must produce.
struct Group {
    name: &'static str,
    faults: &'static [FaultKind],
    violations: &'static [ViolationKind],
}

const GROUPS: [Group; 3] = [
    Group {
        name: "another key's value (swap, confuse)",
        faults: &[FaultKind::Swap, FaultKind::Confuse],
        violations: &[
            ViolationKind::OwnerMismatch,
            ViolationKind::ItemMismatch,
            ViolationKind::NamespaceMismatch,
        ],
    },
    Group {
        name: "damaged bytes (corrupt, truncate)",
        faults: &[FaultKind::Corrupt, FaultKind::Truncate],
        violations: &[
            ViolationKind::Malformed,
            ViolationKind::BadTag,
            ViolationKind::UnknownKey,
            ViolationKind::SchemaMismatch,
            ViolationKind::Undecodable,
        ],
    },
    Group {
        name: "expired value (stale)",
        faults: &[FaultKind::Stale],
        violations: &[ViolationKind::Expired],
    },
];

/// What a fault kind should have become, for the summary.
fn handled_as(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::Swap | FaultKind::Confuse => "refused: owner or item mismatch",
        FaultKind::Corrupt | FaultKind::Truncate => "refused: malformed or bad tag",
        FaultKind::Stale => "refused: expired",
        FaultKind::Replay => "accepted: the owner's own, unexpired value",
        FaultKind::Drop | FaultKind::Timeout => "remote error: read as a miss",
        FaultKind::Delay => "answered late",
        _ => "",
    }
}

/// The whole report: the verified run and, with `--baseline-unverified`, the naive one.
struct Report {
    config: Config,
    verified: RunReport,
    naive: Option<RunReport>,
}

impl Report {
    fn ok(&self) -> bool {
        self.verified.ok()
    }

    fn to_json(&self) -> serde_json::Value {
        let c = &self.config;
        let mut out = self.verified.to_json();
        let config = json!({
            "tenants": c.tenants,
            "devices_per_tenant": c.devices_per_tenant,
            "items_per_device": c.items_per_device,
            "sessions_per_device": c.sessions_per_device,
            "keys": c.population().keys(),
            "requests": match c.stop { Stop::Requests(n) => json!(n), Stop::After(_) => json!(null) },
            "duration_s": match c.stop { Stop::After(d) => json!(d.as_secs_f64()), Stop::Requests(_) => json!(null) },
            "l1_capacity": c.l1_capacity,
            "ttl_s": c.ttl.as_secs_f64(),
            "origin_latency_us": c.origin_latency.as_micros() as u64,
            "origin_concurrency": c.origin_concurrency,
            "policy": c.policy_name(),
            "backend": c.backend_name(),
            "seed": c.seed,
            "faults": c.faults.to_string(),
        });
        if let Some(object) = out.as_object_mut() {
            object.insert("config".into(), config);
            if let Some(naive) = &self.naive {
                object.insert("baseline_unverified".into(), naive.to_json());
            }
            object.insert(
                "result".into(),
                json!(if self.ok() { "pass" } else { "fail" }),
            );
        }
        out
    }

    fn summary(&self) -> String {
        let c = &self.config;
        let v = &self.verified;
        let t = &v.tally;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "storm: {} tenants x {} devices x {} items = {} keys; {} sessions per device ({} \
             sessions, released together)",
            c.tenants,
            c.devices_per_tenant,
            c.items_per_device,
            c.population().keys(),
            c.sessions_per_device,
            c.sessions()
        );
        let _ = writeln!(
            out,
            "       L1 {} entries; TTL {:?}; origin {:?} x {} at once; policy {}; backend {}; seed {}",
            c.l1_capacity,
            c.ttl,
            c.origin_latency,
            c.origin_concurrency,
            c.policy_name(),
            c.backend_name(),
            c.seed
        );
        let _ = writeln!(out, "       faults {}", c.faults);
        let _ = writeln!(out);
        let pct = |n: u64| 100.0 * n as f64 / t.requests.max(1) as f64;
        let _ = writeln!(
            out,
            "  throughput     {:>10.0} req/s   {} requests in {:.2} s (after {:.2} s writing \
             yesterday's values and spawning the sessions)",
            v.ops_per_s(),
            t.requests,
            v.elapsed.as_secs_f64(),
            v.prepared.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "  latency        p50 {} us   p99 {} us   p99.9 {} us   max {} us",
            v.latency.p50, v.latency.p99, v.latency.p999, v.latency.max
        );
        let k = &v.counts;
        for (name, n, note) in [
            ("hits L1", k.hits_l1, String::new()),
            ("hits L2", k.hits_l2, String::new()),
            (
                "loads",
                k.loads,
                "get_or_load calls that ran the loader".into(),
            ),
            (
                "coalesced",
                k.coalesced,
                "waited for another caller's load of the same key".into(),
            ),
            (
                "errors",
                t.errors,
                format!(
                    "calls that returned an error (load errors {})",
                    k.load_errors
                ),
            ),
        ] {
            let _ = writeln!(out, "  {name:<14} {n:>10}   {:5.1} %  {note}", pct(n));
        }
        let _ = writeln!(
            out,
            "  remote         {:>10} reads, {} errors ({} from the backend itself){}",
            v.remote_reads,
            k.remote_errors,
            v.backend_errors,
            v.l2_evictions
                .map(|n| format!(", {n} evictions"))
                .unwrap_or_default()
        );
        let o = &v.origin;
        let _ = writeln!(
            out,
            "  origin         {:>10} loads of {} keys; {} reloads after the key's fill ended \
             (refused, deleted or unstored value), {} unexplained{}",
            o.loads,
            o.keys_loaded,
            o.reloads_after_fill_ended,
            o.reloads_unexplained,
            if o.loads_while_open > 0 {
                format!(", {} while the breaker was open", o.loads_while_open)
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            out,
            "  origin_loads_per_key_max: {}   (most loads of one key within one fill; over the \
             whole run: {})",
            o.per_key_max_per_fill, o.per_key_max_total
        );
        if c.policy == PolicyChoice::AutoBypass {
            let (trips, open_ms) = v.breaker();
            let _ = writeln!(
                out,
                "  breaker_trips: {trips}   (open {:.2} s in all; {} loads while open: every call \
                 loads, uncoalesced, by design)",
                open_ms as f64 / 1000.0,
                o.loads_while_open
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "  {:<10} {:>10}   should be", "fault", "injected");
        for (kind, n) in v.injected.iter() {
            let _ = writeln!(out, "  {:<10} {n:>10}   {}", kind.name(), handled_as(kind));
        }
        for group in &GROUPS {
            let (injected, refused) = v.group_counts(group);
            let mark = if injected == refused { "ok" } else { "DIFFERS" };
            let _ = writeln!(
                out,
                "  {:<38} injected {injected:>8}   refused {refused:>8}   {mark}",
                group.name
            );
        }
        let errors = v.errors_injected();
        let errors = errors + v.backend_errors;
        let mark = if errors == k.remote_errors {
            "ok"
        } else {
            "DIFFERS"
        };
        let _ = writeln!(
            out,
            "  {:<38} injected {errors:>8}   errors  {:>8}   {mark}",
            "failed calls (drop, timeout, backend)", k.remote_errors
        );
        if !v.sink_examples.is_empty() {
            let _ = writeln!(
                out,
                "  first refusal of each kind, as the violation sink saw it"
            );
        }
        for (label, text) in &v.sink_examples {
            let _ = writeln!(out, "    {label}:\n      {text}");
        }
        let _ = writeln!(out);
        match v.mismatch_reason() {
            None if v.wrong_values_injected() == 0 => {
                let _ = writeln!(out, "  detection: no wrong values injected, none refused");
            }
            None => {
                let _ = writeln!(
                    out,
                    "  detection: all {} injected wrong values reached the cache and were refused",
                    v.wrong_values_injected()
                );
            }
            Some(reason) => {
                let _ = writeln!(out, "  detection: MISMATCH: {reason}");
            }
        }
        for example in &t.error_examples {
            let _ = writeln!(out, "    error: {example}");
        }
        let _ = writeln!(
            out,
            "  leaks: {}   (values served that differ from the harness's own ground truth)",
            t.leaks
        );
        for example in &t.leak_examples {
            let _ = writeln!(out, "    LEAK: {example}");
        }
        if let Some(naive) = &self.naive {
            let _ = writeln!(out);
            out.push_str(&side_by_side(v, naive));
        }
        let _ = write!(out, "  result: {}", if self.ok() { "PASS" } else { "FAIL" });
        out
    }
}

/// The verified run next to the naive one.
fn side_by_side(verified: &RunReport, naive: &RunReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  the same storm, side by side            {:>14} {:>22}",
        "verified", "unverified (naive)"
    );
    let rows: [(&str, u64, u64); 9] = [
        ("requests", verified.tally.requests, naive.tally.requests),
        (
            "wrong values served (leaks)",
            verified.tally.leaks,
            naive.tally.leaks,
        ),
        (
            "  another owner's data",
            verified.tally.leaks_other_owner,
            naive.tally.leaks_other_owner,
        ),
        (
            "  damaged bytes",
            verified.tally.leaks - verified.tally.leaks_other_owner,
            naive.tally.leaks - naive.tally.leaks_other_owner,
        ),
        (
            "expired values served",
            verified.counts.expired_served,
            naive.counts.expired_served,
        ),
        (
            "wrong values injected",
            verified.wrong_values_injected(),
            naive.wrong_values_injected(),
        ),
        ("origin loads", verified.origin.loads, naive.origin.loads),
        (
            "origin loads per key, max",
            u64::from(verified.origin.per_key_max_total),
            u64::from(naive.origin.per_key_max_total),
        ),
        ("p99 latency (us)", verified.latency.p99, naive.latency.p99),
    ];
    for (name, left, right) in rows {
        let _ = writeln!(out, "    {name:<36} {left:>14} {right:>22}");
    }
    let _ = writeln!(
        out,
        "    {:<36} {:>14.0} {:>22.0}",
        "throughput (req/s)",
        verified.ops_per_s(),
        naive.ops_per_s()
    );
    let _ = writeln!(
        out,
        "  (the naive client cuts the payload out of whatever the store returns, keeps it in its \
         L1 and serves it again; it has no single-flight)"
    );
    out
}

/// Writes "yesterday's" values of every key through the cache, as the service did before the
/// outage: one generation sealed with a 1 ms TTL (expired by the time the storm starts) and one
/// with the run's TTL that the outage then deleted. The store keeps both in its history, so
/// `stale` and `replay` have something to hand back; the storm starts with a cold store.
async fn remember_yesterday(store: Arc<dyn RemoteStore>, config: &Config) -> Result<(), String> {
    let client = Client::builder()
        .key_ring(KeyRing::new(KeyId(1), SECRET).map_err(|e| e.to_string())?)
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
    let population = config.population();
    let workers = 8u64;
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let (expired, deleted) = (expired.clone(), deleted.clone());
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
                            let value = thumbnail(tenant, device, item);
                            let _ = expired.insert(&key, value.clone()).await;
                            let _ = deleted.insert(&key, value).await;
                            let _ = deleted.invalidate(&key).await;
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| e.to_string())?;
    }
    // Past the 1 ms TTL of the first generation.
    tokio::time::sleep(Duration::from_millis(5)).await;
    Ok(())
}

/// Runs the storm once, verified or naive.
async fn run(
    config: &Config,
    naive: bool,
    origin_server: tokio::runtime::Handle,
) -> Result<RunReport, String> {
    let preparing = Instant::now();
    let label = if naive { "unverified" } else { "verified" };
    let (store, memory) = open_backend(config, label).await?;
    let origin = Arc::new(Origin::new(config, origin_server));
    let backend = Backend {
        store,
        origin: Arc::clone(&origin),
        errors: AtomicU64::new(0),
    };
    let observer = {
        let origin = Arc::clone(&origin);
        move |key: &[u8], kind: FaultKind| {
            // The verified cache deletes a refused value and reads a failed read as a miss, so
            // the next read must load again; the naive one only misses on a failed read.
            let ends_fill = if naive {
                kind.is_error()
            } else {
                kind.is_error() || kind.is_wrong_value()
            };
            if ends_fill {
                origin.end_fill(key);
            }
        }
    };
    let store = Arc::new(
        FaultyStore::builder(backend)
            .seed(config.seed)
            .rates(config.faults)
            .history(3, config.population().keys() as usize)
            .on_fault(observer)
            .build()
            .map_err(|error| error.to_string())?,
    );
    if config.faults.get(FaultKind::Stale) > 0.0 || config.faults.get(FaultKind::Replay) > 0.0 {
        remember_yesterday(store.clone(), config).await?;
    }

    let sink = Arc::new(SinkLog::default());
    let ring = KeyRing::new(KeyId(1), SECRET).map_err(|e| e.to_string())?;
    let path = if naive {
        Path::Naive(NaiveCache {
            l1: (config.l1_capacity > 0)
                .then(|| quick_cache::sync::Cache::new(config.l1_capacity as usize)),
            store: store.clone(),
            ring,
            ttl: config.ttl,
            hits_l1: AtomicU64::new(0),
            hits_l2: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            remote_errors: AtomicU64::new(0),
            expired_served: AtomicU64::new(0),
        })
    } else {
        let sink = Arc::clone(&sink);
        let breaker_origin = Arc::clone(&origin);
        let client = Client::builder()
            .key_ring(ring)
            .remote_shared(store.clone())
            .on_violation(move |report| sink.record(report))
            .on_breaker(move |event| {
                let open = event.to == BreakerState::Open;
                breaker_origin.breaker_open.store(open, Ordering::Relaxed);
                breaker_origin
                    .breaker_transitions
                    .fetch_add(1, Ordering::AcqRel);
            })
            .build()
            .map_err(|e| e.to_string())?;
        Path::Verified(
            client
                .cache::<Thumbnails>()
                .local_capacity(config.l1_capacity)
                .ttl(config.ttl)
                .policy(config.policy())
                .build()
                .map_err(|e| e.to_string())?,
        )
    };
    let run = Arc::new(Run {
        path,
        origin: Arc::clone(&origin),
        population: config.population(),
        done: AtomicU64::new(0),
        stopped: AtomicBool::new(false),
        latency_us: Mutex::new(
            Histogram::new_with_bounds(1, 3_600_000_000, 3).map_err(|e| e.to_string())?,
        ),
    });

    // Every session is spawned and waiting before any starts: the reconnect storm.
    let sessions = config.sessions();
    let barrier = Arc::new(Barrier::new(sessions as usize + 1));
    let population = config.population();
    let mut tasks = Vec::with_capacity(sessions as usize);
    let mut next = 0u64;
    for tenant in 0..population.tenants {
        for device_index in 0..population.devices_per_tenant {
            for _ in 0..config.sessions_per_device {
                let share = match config.stop {
                    Stop::Requests(total) => {
                        Some(total / sessions + u64::from(next < total % sessions))
                    }
                    Stop::After(_) => None,
                };
                next += 1;
                tasks.push(tokio::spawn(session(
                    Arc::clone(&run),
                    Arc::clone(&barrier),
                    tenant,
                    device_index,
                    share,
                )));
            }
        }
    }
    let progress = progress_bar(config, label);
    barrier.wait().await;
    let prepared = preparing.elapsed();
    let started = Instant::now();
    let ticker = {
        let (run, progress, sink, stop) = (
            Arc::clone(&run),
            progress.clone(),
            Arc::clone(&sink),
            config.stop,
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Stop::After(limit) = stop
                    && started.elapsed() >= limit
                {
                    run.stopped.store(true, Ordering::Relaxed);
                }
                let done = run.done.load(Ordering::Relaxed);
                progress.set_position(match stop {
                    Stop::Requests(_) => done,
                    Stop::After(_) => started.elapsed().as_millis() as u64,
                });
                progress.set_message(format!(
                    "{:.0} req/s, {} loads, {} refused",
                    done as f64 / started.elapsed().as_secs_f64().max(1e-3),
                    run.origin.total.load(Ordering::Relaxed),
                    sink.remote.load(Ordering::Relaxed) + sink.local.load(Ordering::Relaxed)
                ));
            }
        })
    };
    let mut tally = Tally::default();
    for task in tasks {
        match task.await {
            Ok(done) => tally.merge(done),
            Err(error) => eprintln!("storm: a session failed: {error}"),
        }
    }
    let elapsed = started.elapsed();
    ticker.abort();
    progress.finish_and_clear();

    let latency = Latency::of(&run.latency_us.lock().unwrap_or_else(|e| e.into_inner()));
    let (counts, stats) = match &run.path {
        Path::Verified(cache) => {
            let stats = cache.stats();
            let counts = CacheCounts {
                hits_l1: stats.hits_local,
                hits_l2: stats.hits_remote,
                misses: stats.misses,
                loads: stats.loads,
                coalesced: stats.coalesced,
                load_errors: stats.load_errors,
                remote_errors: stats.remote_errors,
                expired_served: 0,
            };
            (counts, Some(stats))
        }
        Path::Naive(naive) => {
            let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
            let counts = CacheCounts {
                hits_l1: load(&naive.hits_l1),
                hits_l2: load(&naive.hits_l2),
                misses: load(&naive.misses),
                loads: load(&naive.misses),
                coalesced: 0,
                load_errors: 0,
                remote_errors: load(&naive.remote_errors),
                expired_served: load(&naive.expired_served),
            };
            (counts, None)
        }
    };
    // The writes before the storm read nothing, so every read and fault counted is the storm's.
    let injected = store.injected();
    let sink_examples = sink
        .examples
        .lock()
        .map(|examples| examples.clone())
        .unwrap_or_default();
    Ok(RunReport {
        label,
        tally,
        counts,
        stats,
        origin: origin.summary(),
        injected,
        remote_reads: store.reads(),
        backend_errors: store.inner().errors.load(Ordering::Relaxed),
        l2_evictions: memory.map(|memory| memory.stats().evictions),
        sink_local: sink.local.load(Ordering::Relaxed),
        sink_remote: sink.remote.load(Ordering::Relaxed),
        sink_examples,
        latency,
        elapsed,
        prepared,
    })
}

fn progress_bar(config: &Config, label: &str) -> ProgressBar {
    if !config.progress || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let (length, template) = match config.stop {
        Stop::Requests(total) => (
            total,
            "{prefix:>10} [{elapsed_precise}] {bar:30} {pos}/{len} req  {msg}",
        ),
        Stop::After(limit) => (
            limit.as_millis() as u64,
            "{prefix:>10} [{elapsed_precise}] {bar:30} {msg}",
        ),
    };
    let bar = ProgressBar::new(length);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_prefix(label.to_owned());
    bar
}

fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Run(config)) => *config,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("storm: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("storm: cannot start the tokio runtime: {error}");
            return ExitCode::from(3);
        }
    };
    let origin_runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("storm-origin")
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("storm: cannot start the origin's runtime: {error}");
            return ExitCode::from(3);
        }
    };
    let runs = runtime.block_on(async {
        let server = origin_runtime.handle();
        let verified = run(&config, false, server.clone()).await?;
        let naive = match config.baseline_unverified {
            true => Some(run(&config, true, server.clone()).await?),
            false => None,
        };
        Ok::<_, String>((verified, naive))
    });
    let (verified, naive) = match runs {
        Ok(runs) => runs,
        Err(error) => {
            eprintln!("storm: {error}");
            return ExitCode::from(3);
        }
    };
    let report = Report {
        config,
        verified,
        naive,
    };
    println!("{}", report.summary());
    if let Some(path) = &report.config.json {
        let text = serde_json::to_string_pretty(&report.to_json()).unwrap_or_default();
        if let Err(error) = std::fs::write(path, text + "\n") {
            eprintln!("storm: cannot write {}: {error}", path.display());
            return ExitCode::from(3);
        }
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_naive_cut_reads_any_envelope_without_checking_it() {
        let ring = KeyRing::new(KeyId(1), SECRET).unwrap_or_else(|e| unreachable!("{e}"));
        let key = Key::<Thumbnails>::new(TenantId::from_u64(1), DeviceId::from_u64(2), 3);
        let sealed = Envelope::default()
            .seal(&key, b"payload", 10, 20, &ring)
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            cut_payload(&sealed),
            Some((Bytes::from_static(b"payload"), 20))
        );
        let mut flipped = sealed.to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 1; // the tag: unchecked, so the payload is still served
        assert_eq!(
            cut_payload(&Bytes::from(flipped)).map(|(payload, _)| payload),
            Some(Bytes::from_static(b"payload"))
        );
        assert_eq!(
            cut_payload(&sealed.slice(..40)),
            None,
            "lengths point past the end"
        );
        assert_eq!(cut_payload(&Bytes::new()), None);
    }

    #[test]
    fn flags_parse_and_bad_ones_are_refused() {
        let args = |text: &str| {
            text.split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        };
        let Ok(Command::Run(config)) = parse_args(args(
            "--duration 2s --origin-latency 500us --policy autobypass --faults delay=0.1@3ms",
        )) else {
            unreachable!("valid flags refused")
        };
        assert!(matches!(config.stop, Stop::After(d) if d == Duration::from_secs(2)));
        assert_eq!(config.origin_latency, Duration::from_micros(500));
        assert_eq!(config.policy, PolicyChoice::AutoBypass);
        assert_eq!(
            config.faults.duration(FaultKind::Delay),
            Some(Duration::from_millis(3))
        );
        assert!(
            Config::default().faults.iter().all(|(_, rate)| rate > 0.0),
            "every kind on by default"
        );
        for bad in [
            "--tenants 1",
            "--tenants 10 --devices-per-tenant 10",
            "--duration 5",
            "--policy sometimes",
            "--backend mongodb://x",
            "--faults swap=2",
            "--sessions-per-device 0",
            "--ttl 0s",
            "--nonsense",
        ] {
            assert!(parse_args(args(bad)).is_err(), "{bad:?} was accepted");
        }
    }
}
