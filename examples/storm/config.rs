//! The run's parameters: the storm's flags, with their defaults and help.

use crate::flags::{
    duration, every_for, number, positive, positive_duration, positive_rate, slow_window, window,
};
use crate::population::Population;
use clap::{Parser, ValueEnum};
use scoped_cache::Policy;
use scoped_cache::testing::FaultRates;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The run's parameters, read from the command line; `Config::default()` holds every flag's
/// default. A field's doc comment is its flag's `--help` line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "storm",
    about = "Every device reconnects at once and fetches its own thumbnails through a cache whose \
             remote tier lies; every value served is checked against ground truth.",
    long_about = None,
    // A flag given twice takes its last value.
    args_override_self = true,
    after_help = "durations: a number and ns, us, ms, s, m or h (1ms, 0.5s, 2m, 1h); numbers may be \
                  written with _ (1_000_000)\n\
                  exit status: 0 clean, 1 leak or unrefused fault, 2 bad flags, 3 \
                  runtime/backend/report failure"
)]
pub struct Config {
    /// Tenants; tenant and device ids are both 0..N
    #[arg(long, value_name = "N", default_value = "2000", value_parser = number::<u64>)]
    pub tenants: u64,
    /// Devices of each tenant (1..tenants-1; symmetric)
    #[arg(long, value_name = "N", default_value = "8", value_parser = number::<u64>)]
    pub devices_per_tenant: u64,
    /// Thumbnails per device
    #[arg(long, value_name = "N", default_value = "4", value_parser = positive::<u64>)]
    pub items_per_device: u64,
    /// Concurrent fetchers per device (camera + apps)
    #[arg(long, value_name = "N", default_value = "2", value_parser = positive::<u64>)]
    pub sessions_per_device: u64,
    /// Total requests, split over the sessions (with --rate, sent on its schedule)
    // Whichever of --requests and --duration comes last decides when the run stops.
    #[arg(
        long,
        value_name = "N",
        default_value = "6_000_000",
        value_parser = number::<u64>,
        overrides_with = "duration"
    )]
    pub requests: u64,
    /// Run for D (e.g. 10s) instead of --requests
    #[arg(long, value_name = "D", value_parser = duration, overrides_with = "requests")]
    pub duration: Option<Duration>,
    /// Open loop: requests arrive at R per second, whatever the cache answers, instead of each
    /// session sending its next as soon as it has an answer; latency counts from when a
    /// request was due
    #[arg(long, value_name = "R", value_parser = positive_rate)]
    pub rate: Option<f64>,
    /// With --rate: at most N requests sent and not yet answered; a request due while all are
    /// busy is sent late (and its lateness counts in its latency)
    #[arg(long, value_name = "N", default_value = "10_000", value_parser = positive::<usize>)]
    pub in_flight: usize,
    /// In-process entries; 0 disables the in-process tier
    #[arg(long, value_name = "N", default_value = "10_000", value_parser = number::<u64>)]
    pub l1_capacity: u64,
    /// Time to live of cached values (nothing expires during a run shorter than this)
    #[arg(long, value_name = "D", default_value = "600s", value_parser = positive_duration)]
    pub ttl: Duration,
    /// Time the origin takes per load
    #[arg(long, value_name = "D", default_value = "1ms", value_parser = duration)]
    pub origin_latency: Duration,
    /// Every load fails from AT after the start, for FOR (e.g. 8s+5s)
    #[arg(long, value_name = "AT+FOR", value_parser = window)]
    pub origin_outage: Option<Window>,
    /// Loads take LATENCY from AT after the start, for FOR (e.g. 8s+5s@2s)
    #[arg(long, value_name = "AT+FOR@LATENCY", value_parser = slow_window)]
    pub origin_slow: Option<(Window, Duration)>,
    /// Fail-safe: serve a value up to D past its TTL when its load fails or is slow
    /// (reads use get_or_refresh)
    #[arg(long, value_name = "D", value_parser = positive_duration)]
    pub stale_for: Option<Duration>,
    /// Refresh-ahead: reload a value in the background once it is D old (reads use
    /// get_or_refresh)
    #[arg(long, value_name = "D", value_parser = positive_duration)]
    pub refresh_after: Option<Duration>,
    /// With --stale-for: answer stale once a load has taken D (it goes on in the background)
    #[arg(long, value_name = "D", value_parser = positive_duration)]
    pub soft_timeout: Option<Duration>,
    /// Each request waits at most D for a value (reads use get_or_refresh): then a stale value,
    /// or a deadline error while the load goes on
    #[arg(long, value_name = "D", value_parser = positive_duration)]
    pub deadline: Option<Duration>,
    /// At most N loads in flight in the cache (the rest queue; see --load-queue)
    #[arg(long, value_name = "N", value_parser = positive::<usize>)]
    pub max_loads: Option<usize>,
    /// With --max-loads: loads that may wait for a place; beyond it a load fails fast
    #[arg(long, value_name = "N", default_value = "100_000", value_parser = number::<usize>)]
    pub load_queue: usize,
    /// With --stale-for: the store starts with every key's value from before the outage, past
    /// its TTL but within --stale-for
    #[arg(long)]
    pub keep_yesterday: bool,
    /// Loads the origin serves at once
    #[arg(long, value_name = "N", default_value = "64", value_parser = positive::<usize>)]
    pub origin_concurrency: usize,
    /// The namespace's policy
    #[arg(long, value_name = "POLICY", default_value = "cache")]
    pub policy: PolicyChoice,
    /// autobypass: violations per window that open it
    #[arg(long, value_name = "N", default_value = "1000", value_parser = positive::<u32>)]
    pub breaker_threshold: u32,
    /// autobypass: the counting window
    #[arg(long, value_name = "D", default_value = "1s", value_parser = duration)]
    pub breaker_window: Duration,
    /// autobypass: time open before probing
    #[arg(long, value_name = "D", default_value = "2s", value_parser = duration)]
    pub breaker_cool_down: Duration,
    /// The remote tier: in-process, or redis://… (needs --features redis),
    /// redis-cluster://H:P[,H:P…] (--features redis-cluster),
    /// redis+sentinel://H:P[,H:P…]/SERVICE (--features redis-sentinel)
    #[arg(long, value_name = "memory|URL", default_value = "memory")]
    pub backend: BackendChoice,
    /// How long one call to a Redis backend may take, reconnection included [default: the
    /// store's, 500 ms]
    #[arg(long, value_name = "D", value_parser = positive_duration)]
    pub store_timeout: Option<Duration>,
    /// kind=rate[@duration],… or none; kinds swap, confuse, corrupt, truncate, stale, replay,
    /// drop, delay, timeout
    #[arg(
        long,
        value_name = "SPEC",
        default_value = "swap=0.01,confuse=0.01,corrupt=0.001,truncate=0.001,stale=0.001,\
                         replay=0.001,drop=0.001,delay=0.001@2ms,timeout=0.0001@20ms"
    )]
    pub faults: FaultRates,
    /// Instances of the service: clients with an in-process tier each, sharing the store and
    /// an invalidation bus, the namespace coherent; each request goes to the next instance
    #[arg(long, value_name = "N", default_value = "1", value_parser = positive::<usize>)]
    pub instances: usize,
    /// Cameras moved to another tenant per second: each is invalidated on one instance, and
    /// from then its old owner must be served nothing of it (makes the namespace coherent)
    #[arg(long, value_name = "R", value_parser = positive_rate)]
    pub transfers: Option<f64>,
    /// Cut one instance's bus subscription (in turn) every EVERY for FOR (e.g. 500ms+50ms):
    /// it must serve nothing from its in-process tier meanwhile, and drop it when back
    #[arg(long, value_name = "EVERY+FOR", value_parser = every_for)]
    pub bus_cuts: Option<(Duration, Duration)>,
    /// Also run the storm through a naive unverified cache
    #[arg(long)]
    pub baseline_unverified: bool,
    /// Seed of the faults
    #[arg(long, value_name = "N", default_value = "42", value_parser = number::<u64>)]
    pub seed: u64,
    /// No progress bar (there is none when stdout is not a terminal)
    #[arg(long)]
    pub no_progress: bool,
    /// Also report throughput, hit ratio and errors for every D of the run (e.g. 1s)
    #[arg(long, value_name = "D", value_parser = positive_duration)]
    pub timeline: Option<Duration>,
    /// Also write the report as JSON to PATH
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Also log every violation to PATH (a ViolationLog) and check that the report over it
    /// names exactly the owner pairs the injected swap and confuse faults mixed up
    #[arg(long, value_name = "PATH")]
    pub violation_log: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self::parse_from(["storm"])
    }
}

/// A stretch of the run: from `at` after the barrier, for `length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub at: Duration,
    pub length: Duration,
}

impl Window {
    pub fn end(&self) -> Duration {
        self.at + self.length
    }

    pub fn contains(&self, since_start: Duration) -> bool {
        (self.at..self.end()).contains(&since_start)
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}+{:?}", self.at, self.length)
    }
}

/// When the sessions stop.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this many requests in all.
    Requests(u64),
    /// When this much time has passed since the barrier.
    After(Duration),
}

/// Which policy the namespace runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
// No doc comments on the variants: clap would show them, and `--help` would switch to its long
// layout for every flag.
pub enum PolicyChoice {
    Cache,
    #[value(name = "autobypass")]
    AutoBypass,
}

/// Where the remote tier lives: in-process, or a Redis URL of the kind its scheme names, which
/// only a build with that kind's feature accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendChoice {
    Memory,
    /// `redis://`, `rediss://`, `redis+unix://`, `unix://`: one server (`redis`).
    Redis(String),
    /// `redis-cluster://`, `rediss-cluster://`: a Redis Cluster (`redis-cluster`).
    RedisCluster(String),
    /// `redis+sentinel://`: the primary Sentinel names (`redis-sentinel`).
    RedisSentinel(String),
}

impl FromStr for BackendChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text == "memory" {
            return Ok(BackendChoice::Memory);
        }
        let scheme = |schemes: &[&str]| schemes.iter().any(|scheme| text.starts_with(scheme));
        let url = text.to_owned();
        let (choice, feature, built_with) = if scheme(&["redis-cluster://", "rediss-cluster://"]) {
            let built_with = cfg!(feature = "redis-cluster");
            (
                BackendChoice::RedisCluster(url),
                "redis-cluster",
                built_with,
            )
        } else if scheme(&["redis+sentinel://"]) {
            let built_with = cfg!(feature = "redis-sentinel");
            (
                BackendChoice::RedisSentinel(url),
                "redis-sentinel",
                built_with,
            )
        } else if scheme(&["redis://", "rediss://", "redis+unix://", "unix://"]) {
            (BackendChoice::Redis(url), "redis", cfg!(feature = "redis"))
        } else {
            return Err(
                "use memory, or a redis://, redis-cluster:// or redis+sentinel:// URL".into(),
            );
        };
        if built_with {
            Ok(choice)
        } else {
            let scheme = text.split("://").next().unwrap_or(text);
            Err(format!(
                "a {scheme}:// backend needs the {feature} feature: add --features {feature}"
            ))
        }
    }
}

impl Config {
    pub fn stop(&self) -> Stop {
        match self.duration {
            Some(limit) => Stop::After(limit),
            None => Stop::Requests(self.requests),
        }
    }

    pub fn population(&self) -> Population {
        Population {
            tenants: self.tenants,
            devices_per_tenant: self.devices_per_tenant,
            items_per_device: self.items_per_device,
        }
    }

    pub fn sessions(&self) -> u64 {
        self.tenants * self.devices_per_tenant * self.sessions_per_device
    }

    pub fn policy(&self) -> Policy {
        if self.fleet() {
            return Policy::Coherent { l1_ttl: self.ttl };
        }
        match self.policy {
            PolicyChoice::Cache => Policy::Cache,
            PolicyChoice::AutoBypass => Policy::AutoBypass {
                threshold: self.breaker_threshold,
                window: self.breaker_window,
                cool_down: self.breaker_cool_down,
            },
        }
    }

    /// Whether the run is a fleet: several instances, or transfers, under `Policy::Coherent`.
    pub fn fleet(&self) -> bool {
        self.instances > 1 || self.transfers.is_some() || self.bus_cuts.is_some()
    }

    /// Whether reads go through `get_or_refresh` (fail-safe, refresh-ahead or a deadline)
    /// rather than `get_or_load`.
    pub fn refreshing(&self) -> bool {
        self.stale_for.is_some() || self.refresh_after.is_some() || self.deadline.is_some()
    }

    pub fn backend_name(&self) -> &str {
        match &self.backend {
            BackendChoice::Memory => "memory",
            BackendChoice::Redis(url)
            | BackendChoice::RedisCluster(url)
            | BackendChoice::RedisSentinel(url) => url,
        }
    }
}
