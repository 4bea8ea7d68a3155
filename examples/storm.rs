//! storm: many tenants' devices fetch their own thumbnails through a `Cache` whose remote tier
//! lies, and the harness checks every value it is handed against ground truth it computes itself.
//!
//! ```text
//! cargo run --release --example storm
//! cargo run --release --example storm -- --faults swap=0.01,confuse=0.01,corrupt=0.001 --json storm.json
//! ```
//!
//! The remote tier is a `MemoryStore` wrapped in a `FaultyStore` that, at the given rates,
//! answers a read with another key's sealed value (`swap`), the value of the same ids with tenant
//! and device exchanged (`confuse`), or flipped or truncated bytes (`corrupt`).
//!
//! Tenant ids and device ids are both numbers from `0..tenants`, and the device sets are
//! symmetric: tenant `t` owns device `d` exactly when tenant `d` owns device `t`. So the key with
//! tenant and device exchanged is a real, populated key: exactly the device-id/user-id mix-up of
//! the incident this crate is built against.
//!
//! Each request picks (tenant, device, item) with a seeded RNG and calls `cache.get`. A hit is
//! compared byte for byte with the thumbnail the harness computes for that owner and item (not
//! with anything the library reports); any difference is a *leak*. A miss "loads from the origin"
//! (computes the thumbnail) and inserts it.
//!
//! Exit status: 0 when nothing leaked and every injected fault was refused; 1 when a value leaked
//! or an injected fault went unrefused; 2 for bad flags; 3 when the JSON report cannot be written.

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use scoped_cache::testing::{FaultCounts, FaultKind, FaultRates, FaultyStore};
use scoped_cache::{
    Cache, Client, DeviceId, Key, KeyId, KeyRing, MemoryStore, Namespace, RawBytes, Stats,
    TenantId, Tier, Violation, ViolationKind, ViolationReport,
};
use serde_json::json;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Camera thumbnails, one per (tenant, device, event).
struct Thumbnails;

impl Namespace for Thumbnails {
    const NAME: &'static str = "thumb";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = Bytes;
    type Codec = RawBytes;
}

const USAGE: &str = "\
usage: cargo run --release --example storm -- [flags]

  --tenants N             tenants; tenant and device ids are both 0..N        [1000]
  --devices-per-tenant N  devices of each tenant (1..tenants-1; symmetric)    [4]
  --items-per-device N    thumbnails per device                               [4]
  --requests N            total get requests                                  [3000000]
  --concurrency N         concurrent tokio tasks                              [64]
  --l1-capacity N         in-process entries; 0 disables the in-process tier  [4000]
  --seed N                seed of the request stream and of the faults        [42]
  --faults SPEC           swap=R,confuse=R,corrupt=R (rates per remote read)
                          or none                     [swap=0.01,confuse=0.01,corrupt=0.001]
  --json PATH             also write the report as JSON to PATH
  -h, --help              this text

exit status: 0 clean, 1 leak or unrefused fault, 2 bad flags, 3 report not written";

/// The run's parameters.
#[derive(Debug, Clone)]
struct Config {
    tenants: u64,
    devices_per_tenant: u64,
    items_per_device: u64,
    requests: u64,
    concurrency: u64,
    l1_capacity: u64,
    seed: u64,
    faults: FaultRates,
    json: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            tenants: 1000,
            devices_per_tenant: 4,
            items_per_device: 4,
            requests: 3_000_000,
            concurrency: 64,
            l1_capacity: 4000,
            seed: 42,
            faults: FaultRates::none()
                .with(FaultKind::Swap, 0.01)
                .and_then(|rates| rates.with(FaultKind::Confuse, 0.01))
                .and_then(|rates| rates.with(FaultKind::Corrupt, 0.001))
                .unwrap_or_default(),
            json: None,
        }
    }
}

/// What `main` should do after reading the flags.
enum Command {
    Run(Config),
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
            "--requests" => config.requests = number(&flag, &value()?)?,
            "--concurrency" => config.concurrency = number(&flag, &value()?)?,
            "--l1-capacity" => config.l1_capacity = number(&flag, &value()?)?,
            "--seed" => config.seed = number(&flag, &value()?)?,
            "--faults" => {
                config.faults = value()?
                    .parse()
                    .map_err(|error| format!("--faults: {error}"))?;
            }
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
    if config.items_per_device == 0 || config.concurrency == 0 {
        return Err("--items-per-device and --concurrency must be positive".into());
    }
    Ok(Command::Run(config))
}

/// A non-negative integer; `_` separators are allowed (`1_000_000`).
fn number(flag: &str, text: &str) -> Result<u64, String> {
    text.replace('_', "")
        .parse()
        .map_err(|_| format!("{flag}: {text:?} is not a non-negative integer"))
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

    fn keys(&self) -> u64 {
        self.tenants * self.devices_per_tenant * self.items_per_device
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

/// One task's counts.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    hits: u64,
    misses: u64,
    leaks: u64,
    insert_errors: u64,
    leak_examples: Vec<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.hits += other.hits;
        self.misses += other.misses;
        self.leaks += other.leaks;
        self.insert_errors += other.insert_errors;
        self.leak_examples.extend(other.leak_examples);
        self.leak_examples.truncate(MAX_EXAMPLES);
    }
}

const MAX_EXAMPLES: usize = 5;

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

/// Runs one task's share of the requests.
async fn worker(
    cache: Cache<Thumbnails>,
    population: Population,
    seed: u64,
    requests: u64,
) -> Tally {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut tally = Tally::default();
    for _ in 0..requests {
        let tenant = rng.random_range(0..population.tenants);
        let device = population.device(tenant, rng.random_range(0..population.devices_per_tenant));
        let item = rng.random_range(0..population.items_per_device);
        let key = Key::new(TenantId::from_u64(tenant), DeviceId::from_u64(device), item);
        tally.requests += 1;
        match cache.get(&key).await {
            Some(value) => {
                tally.hits += 1;
                // Ground truth is recomputed here, independently of the cache's verdict.
                if value != thumbnail(tenant, device, item) {
                    tally.leaks += 1;
                    if tally.leak_examples.len() < MAX_EXAMPLES {
                        tally
                            .leak_examples
                            .push(describe_leak(tenant, device, item, &value));
                    }
                }
            }
            None => {
                tally.misses += 1;
                let loaded = thumbnail(tenant, device, item);
                if cache.insert(&key, loaded).await.is_err() {
                    tally.insert_errors += 1;
                }
            }
        }
        // Let the other tasks on this worker thread interleave with this one.
        tokio::task::yield_now().await;
    }
    tally
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

/// Everything the run measured.
struct Report {
    config: Config,
    population: Population,
    tally: Tally,
    stats: Stats,
    injected: FaultCounts,
    remote_reads: u64,
    sink_local: u64,
    sink_remote: u64,
    sink_examples: Vec<(String, String)>,
    elapsed: Duration,
}

/// Faults grouped with the violations they must produce.
struct Group {
    name: &'static str,
    faults: &'static [FaultKind],
    violations: &'static [ViolationKind],
}

const GROUPS: [Group; 2] = [
    Group {
        name: "another key's value (swap, confuse)",
        faults: &[FaultKind::Swap, FaultKind::Confuse],
        violations: &[ViolationKind::OwnerMismatch, ViolationKind::ItemMismatch],
    },
    Group {
        name: "damaged bytes (corrupt)",
        faults: &[FaultKind::Corrupt],
        violations: &[
            ViolationKind::Malformed,
            ViolationKind::BadTag,
            ViolationKind::UnknownKey,
        ],
    },
];

impl Report {
    fn ops_per_s(&self) -> f64 {
        self.tally.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Every fault handed out by the store came back as a remote-tier violation.
    fn all_detected(&self) -> bool {
        self.injected.total() == self.sink_remote
    }

    fn ok(&self) -> bool {
        self.tally.leaks == 0 && self.all_detected()
    }

    /// Why injected faults and remote violations differ, when they do.
    fn mismatch_reason(&self) -> Option<String> {
        let (injected, refused) = (self.injected.total(), self.sink_remote);
        if injected == refused {
            return None;
        }
        let expired = self.stats.violations.get(ViolationKind::Expired);
        Some(if refused > injected {
            format!(
                "{} more remote violations than injected faults: the store held values that fail \
                 verification without help ({expired} expired during the run; anything else is a \
                 bug in the store or the cache)",
                refused - injected
            )
        } else {
            format!(
                "{} injected faults were not refused: a wrong value passed verification (see \
                 leaks), or a read was abandoned between the store and the check",
                injected - refused
            )
        })
    }

    fn to_json(&self) -> serde_json::Value {
        let c = &self.config;
        let faults: serde_json::Map<_, _> = self
            .injected
            .iter()
            .map(|(kind, n)| (kind.name().to_owned(), json!(n)))
            .collect();
        let violations: serde_json::Map<_, _> = self
            .stats
            .violations
            .iter()
            .map(|(kind, n)| (kind.name().to_owned(), json!(n)))
            .collect();
        let groups: Vec<_> = GROUPS
            .iter()
            .map(|group| {
                let (injected, refused) = self.group_counts(group);
                json!({ "group": group.name, "injected": injected, "refused": refused })
            })
            .collect();
        json!({
            "config": {
                "tenants": c.tenants,
                "devices_per_tenant": c.devices_per_tenant,
                "items_per_device": c.items_per_device,
                "keys": self.population.keys(),
                "requests": c.requests,
                "concurrency": c.concurrency,
                "l1_capacity": c.l1_capacity,
                "seed": c.seed,
                "faults": c.faults.to_string(),
            },
            "requests": self.tally.requests,
            "hits": self.tally.hits,
            "hits_l1": self.stats.hits_local,
            "hits_l2": self.stats.hits_remote,
            "misses": self.stats.misses,
            "inserts": self.stats.inserts,
            "insert_errors": self.tally.insert_errors,
            "remote_reads": self.remote_reads,
            "remote_errors": self.stats.remote_errors,
            "faults_injected": faults,
            "faults_injected_total": self.injected.total(),
            "violations_detected": violations,
            "violations_detected_total": self.stats.violations.total(),
            "violations_by_tier": { "l1": self.sink_local, "l2": self.sink_remote },
            "detection": {
                "all_injected_faults_refused": self.all_detected(),
                "by_group": groups,
                "mismatch_reason": self.mismatch_reason(),
            },
            "leaks": self.tally.leaks,
            "leak_examples": self.tally.leak_examples,
            "violation_examples": self
                .sink_examples
                .iter()
                .map(|(label, text)| json!({ "kind": label, "report": text }))
                .collect::<Vec<_>>(),
            "elapsed_s": self.elapsed.as_secs_f64(),
            "ops_per_s": self.ops_per_s(),
        })
    }

    fn group_counts(&self, group: &Group) -> (u64, u64) {
        let injected = group.faults.iter().map(|&k| self.injected.get(k)).sum();
        let refused = group
            .violations
            .iter()
            .map(|&k| self.stats.violations.get(k))
            .sum();
        (injected, refused)
    }

    fn summary(&self) -> String {
        let c = &self.config;
        let t = &self.tally;
        let pct = |n: u64| 100.0 * n as f64 / t.requests.max(1) as f64;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "storm: {} tenants x {} devices x {} items = {} keys; {} requests on {} tasks; \
             L1 {} entries; seed {}; faults {}",
            c.tenants,
            c.devices_per_tenant,
            c.items_per_device,
            self.population.keys(),
            t.requests,
            c.concurrency,
            c.l1_capacity,
            c.seed,
            c.faults
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  requests      {:>12}   {:.0} ops/s in {:.2} s",
            t.requests,
            self.ops_per_s(),
            self.elapsed.as_secs_f64()
        );
        for (name, n) in [
            ("hits L1", self.stats.hits_local),
            ("hits L2", self.stats.hits_remote),
            ("misses", self.stats.misses),
        ] {
            let _ = writeln!(out, "  {name:<13} {n:>12}   {:5.1} %", pct(n));
        }
        let _ = writeln!(
            out,
            "  remote reads  {:>12}   remote errors {}, insert errors {}",
            self.remote_reads, self.stats.remote_errors, t.insert_errors
        );
        let _ = writeln!(out);
        let _ = writeln!(out, "  faults injected (remote reads answered wrongly)");
        for (kind, n) in self.injected.iter() {
            let _ = writeln!(out, "    {:<22} {n:>10}", kind.name());
        }
        let _ = writeln!(out, "  violations detected (values refused)");
        for (kind, n) in self.stats.violations.iter().filter(|&(_, n)| n > 0) {
            let _ = writeln!(out, "    {:<22} {n:>10}", kind.name());
        }
        let _ = writeln!(
            out,
            "    {:<22} {:>10}   (L1 {}, L2 {})",
            "total",
            self.stats.violations.total(),
            self.sink_local,
            self.sink_remote
        );
        let _ = writeln!(out, "  faults vs violations");
        for group in &GROUPS {
            let (injected, refused) = self.group_counts(group);
            let mark = if injected == refused { "ok" } else { "DIFFERS" };
            let _ = writeln!(
                out,
                "    {:<38} injected {injected:>8}  refused {refused:>8}  {mark}",
                group.name
            );
        }
        if !self.sink_examples.is_empty() {
            let _ = writeln!(
                out,
                "  first refusal of each kind, as the violation sink saw it"
            );
        }
        for (label, text) in &self.sink_examples {
            let _ = writeln!(out, "    {label}:\n      {text}");
        }
        let _ = writeln!(out);
        match self.mismatch_reason() {
            None if self.injected.total() == 0 => {
                let _ = writeln!(out, "  detection: no faults injected, none refused");
            }
            None => {
                let _ = writeln!(
                    out,
                    "  detection: all {} injected faults reached the cache and were refused",
                    self.injected.total()
                );
            }
            Some(reason) => {
                let _ = writeln!(out, "  detection: MISMATCH: {reason}");
            }
        }
        let _ = writeln!(
            out,
            "  leaks: {}   (hits whose bytes differ from the harness's own ground truth)",
            t.leaks
        );
        for example in &t.leak_examples {
            let _ = writeln!(out, "    LEAK: {example}");
        }
        let _ = write!(out, "  result: {}", if self.ok() { "PASS" } else { "FAIL" });
        out
    }
}

async fn run(config: Config) -> Report {
    let population = Population {
        tenants: config.tenants,
        devices_per_tenant: config.devices_per_tenant,
        items_per_device: config.items_per_device,
    };
    // Room for every key: evictions would only lower the hit rate, never the checks.
    let store = Arc::new(
        FaultyStore::builder(MemoryStore::new(4 << 30))
            .seed(config.seed)
            .rates(config.faults)
            .build()
            // The rates were validated when parsed.
            .unwrap_or_else(|error| unreachable!("{error}")),
    );
    let sink = Arc::new(SinkLog::default());
    let client = {
        let sink = Arc::clone(&sink);
        Client::builder()
            .key_ring(
                KeyRing::new(KeyId(1), b"storm: a demo secret, not for production")
                    .unwrap_or_else(|e| unreachable!("{e}")),
            )
            .remote_shared(store.clone())
            .on_violation(move |report| sink.record(report))
            .build()
            .unwrap_or_else(|error| unreachable!("{error}"))
    };
    let cache = client
        .cache::<Thumbnails>()
        .local_capacity(config.l1_capacity)
        .build()
        .unwrap_or_else(|error| unreachable!("{error}"));

    let started = Instant::now();
    let tasks: Vec<_> = (0..config.concurrency)
        .map(|task| {
            let share = config.requests / config.concurrency
                + u64::from(task < config.requests % config.concurrency);
            let seed = config.seed ^ (task + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            tokio::spawn(worker(cache.clone(), population, seed, share))
        })
        .collect();
    let mut tally = Tally::default();
    for task in tasks {
        match task.await {
            Ok(done) => tally.merge(done),
            Err(error) => eprintln!("storm: a task failed: {error}"),
        }
    }
    let elapsed = started.elapsed();

    let sink_examples = sink
        .examples
        .lock()
        .map(|examples| examples.clone())
        .unwrap_or_default();
    Report {
        stats: cache.stats(),
        injected: store.injected(),
        remote_reads: store.reads(),
        sink_local: sink.local.load(Ordering::Relaxed),
        sink_remote: sink.remote.load(Ordering::Relaxed),
        sink_examples,
        config,
        population,
        tally,
        elapsed,
    }
}

fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Run(config)) => config,
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
    let report = runtime.block_on(run(config));
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
        for (tenants, devices) in [(2, 1), (5, 4), (6, 5), (7, 3), (1000, 4)] {
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
}
