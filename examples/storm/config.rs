//! The run's parameters and their defaults.

use crate::population::Population;
use scoped_cache::Policy;
use scoped_cache::testing::FaultRates;
use std::path::PathBuf;
use std::time::Duration;

const DEFAULT_FAULTS: &str = "swap=0.01,confuse=0.01,corrupt=0.001,truncate=0.001,stale=0.001,\
                              replay=0.001,drop=0.001,delay=0.001@2ms,timeout=0.0001@20ms";

/// When the sessions stop.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this many requests in all.
    Requests(u64),
    /// When this much time has passed since the barrier.
    After(Duration),
}

/// Which policy the namespace runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyChoice {
    Cache,
    AutoBypass,
}

/// Where the remote tier lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendChoice {
    Memory,
    Redis(String),
}

/// The run's parameters.
#[derive(Debug, Clone)]
pub struct Config {
    pub tenants: u64,
    pub devices_per_tenant: u64,
    pub items_per_device: u64,
    pub sessions_per_device: u64,
    pub stop: Stop,
    pub l1_capacity: u64,
    pub ttl: Duration,
    pub origin_latency: Duration,
    pub origin_concurrency: usize,
    pub policy: PolicyChoice,
    pub breaker_threshold: u32,
    pub breaker_window: Duration,
    pub breaker_cool_down: Duration,
    pub backend: BackendChoice,
    pub faults: FaultRates,
    pub baseline_unverified: bool,
    pub seed: u64,
    pub progress: bool,
    pub json: Option<PathBuf>,
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
        match self.policy {
            PolicyChoice::Cache => Policy::Cache,
            PolicyChoice::AutoBypass => Policy::AutoBypass {
                threshold: self.breaker_threshold,
                window: self.breaker_window,
                cool_down: self.breaker_cool_down,
            },
        }
    }

    pub fn backend_name(&self) -> &str {
        match &self.backend {
            BackendChoice::Memory => "memory",
            BackendChoice::Redis(url) => url,
        }
    }

    pub fn policy_name(&self) -> String {
        match self.policy {
            PolicyChoice::Cache => "cache".into(),
            PolicyChoice::AutoBypass => format!(
                "autobypass (open at {} violations in {:?}, cool-down {:?})",
                self.breaker_threshold, self.breaker_window, self.breaker_cool_down
            ),
        }
    }
}
