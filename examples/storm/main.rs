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
//! cargo run --release --example storm -- --tenants 100000 --devices-per-tenant 10 \
//!     --requests 10000000 --l1-capacity 200000 --rate 20000 --in-flight 20000 --deadline 2s \
//!     --max-loads 1024 --load-queue 32000
//! cargo run --release --features redis-cluster --example storm -- \
//!     --backend redis-cluster://127.0.0.1:7000,127.0.0.1:7001 --duration 20s --timeline 1s
//! ```
//!
//! **The storm.** Tenant ids and device ids are both numbers from `0..tenants`, and the device
//! sets are symmetric: tenant `t` owns device `d` exactly when tenant `d` owns device `t`. So the
//! key with tenant and device exchanged is a real, populated key: exactly the device-id/user-id
//! mix-up of the incident this crate is built against. Every device has `--sessions-per-device`
//! sessions (the camera and its owner's apps), all spawned before a barrier that releases them
//! together; session `s` of a device fetches item `i % items` on its `i`-th request, so a
//! device's sessions ask for the same cold keys at the same moment (`get_or_load` coalesces
//! them). A miss loads from the *origin*: it waits for one of `--origin-concurrency` places,
//! is served for `--origin-latency`, and counts the load per key.
//!
//! **Open loop.** With `--rate R` there are no sessions: requests are due at R per second from
//! the start, whatever the cache answers, in the order the sessions would send them, and at most
//! `--in-flight N` run at once (`arrival`). A request's latency counts from when it was due, so
//! a harness or a cache that falls behind shows in the latency (`arrival.late_*` says by how
//! much the sending fell behind). The closed loop measures a storm that saturates the machine;
//! the open loop measures the cache at a load the machine can carry.
//!
//! **Deadlines and overload.** `--deadline D` bounds each request's wait (`get_or_refresh`
//! with `max_wait`): at D it is answered stale if the key has a stale value, else with
//! `deadline_exceeded`. `--max-loads N --load-queue Q` caps the cache's loads in flight and
//! queued (beyond that, `overloaded` at once). `origin.utilization` is the loads the origin
//! served per second ÷ its capacity while loads queued for it; `origin.wasted_loads` the loads
//! whose value no caller received; `peak_rss_mib` the process's peak resident memory.
//!
//! **The faults.** The remote tier is a store (in-process `MemoryStore`; Redis with
//! `--features redis --backend redis://…`, a Redis Cluster with `--features redis-cluster
//! --backend redis-cluster://host:port,…`, or the primary Sentinel names with `--features
//! redis-sentinel --backend redis+sentinel://host:port,…/service`) wrapped in a `FaultyStore` that, at the given rates,
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
//! refused (the cache then deletes the entry: fail closed) or fails, the entry is deleted (the
//! harness's backend makes a refusal's delete unconditional, so it can remove a value another
//! caller has just written), a write of it fails, a breaker changes state (while the
//! namespace's is open, loaded values are not written; while the store's is, the store is
//! skipped), or the value expires (a load at least the cache's keep time, its TTL less the expiry
//! margin, after the key's previous one). A load after that is a reload the design requires;
//! those are real origin traffic and are reported next to it (`reloads_after_fill_ended`,
//! `reloads_after_expiry`, the most loads of one key over the whole run, and the loads made while
//! the breaker was open, one per key at a time). With `--stale-for`, a `replay` ends the fill
//! too: the earlier value it hands back may be unexpired but stale (yesterday's, with
//! `--keep-yesterday`), and the cache loads again. A load the cache stops waiting for before the
//! origin answers (its load timeout, 30 s by default, or a cancelled caller) stores nothing and
//! ends the fill too (`loads_dropped`; the origin still spends its place on it). A second load of
//! a key within one fill is a double load that single-flight should have prevented
//! (`reloads_unexplained`, expected 0), and so is a load that starts while the cache still waits
//! for another of the same key (`loads_beside_another`, expected 0).
//!
//! **The fleet.** `--instances N` runs N clients, each with its own in-process tier, on one
//! store and one invalidation bus (`MemoryBus`, or `RedisBus` with a `redis://` backend), the
//! namespace coherent; requests go to the instances in turn. `--transfers R` moves R cameras a
//! second to another tenant on a thread of its own: the origin refuses the old owner from the
//! moment a move starts (a load that began before returns the old thumbnail, as a real one
//! would), then one instance's `invalidate_device` runs; a value of the camera served to its old
//! owner by a read that started after that returned, and after the bus reached the serving
//! instance (or while it was not listening), counts in `served_after_revocation` and fails the
//! run. `--bus-cuts EVERY+FOR` cuts the instances' subscriptions in turn. `observed_bus` logs
//! when each invalidation was published and received, for the lag and the judgement.
//!
//! **The baseline.** `--baseline-unverified` runs the same storm again through a naive cache
//! built here: a plain `quick_cache` L1 keyed by the key bytes, the payload cut out of the
//! envelope read from the store without any check, no single-flight. It reports how many wrong
//! values it served, side by side with the verified run.
//!
//! **The violation log.** `--violation-log PATH` also sends the verified run's violation
//! reports to a `ViolationLog` at PATH, then reads it back with the code of
//! `scoped-cache-audit report` (`violation_check`) and compares its (expected, found) owner
//! pairs and counts with the harness's ground truth: which owner's stored value each injected
//! `swap` and `confuse` handed to which owner's read.
//!
//! Exit status: 0 when the verified run leaked nothing and every injected fault was refused
//! (and, with `--violation-log`, the log's report equals the ground truth); 1 when a value
//! leaked, an injected fault went unrefused or the log's report differs; 2 for bad flags; 3
//! when the runtime, the backend, the JSON report or the violation log failed.
//!
//! **The code.** `config` is the flags (clap derive: their defaults and `--help`), which `flags`
//! reads and checks; `run` runs the storm once: the `backend` under a `FaultyStore`,
//! `yesterday`'s values, the `origin`, the verified `Cache` (its refusals in a `sink_log`) or the
//! `naive_cache`, one `session` per device (or, with `--rate`, the `arrival` workers) fetching
//! over a `population` whose values
//! `ground_truth` computes, and returns what it `measured` (per interval too: the `timeline`). `report` judges that against the
//! `fault_plan` into one report (serde derive), printed as text and written as JSON.

mod arrival;
mod backend;
mod config;
mod fault_plan;
mod flags;
mod fleet;
mod ground_truth;
mod latency;
mod measured;
mod naive_cache;
mod namespace;
mod observed_bus;
mod origin;
mod population;
mod progress;
mod report;
mod run;
mod session;
mod sink_log;
mod timeline;
mod transfers;
mod violation_check;
mod yesterday;

use flags::parse_flags;
use report::Report;
use run::run;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the epoch, as envelopes count time.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

fn main() -> ExitCode {
    // `--help` prints the help and exits with 0; bad flags say what is wrong and exit with 2.
    let config = parse_flags(std::env::args_os()).unwrap_or_else(|error| error.exit());
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
    let (mut verified, naive) = match runs {
        Ok(runs) => runs,
        Err(error) => {
            eprintln!("storm: {error}");
            return ExitCode::from(3);
        }
    };
    let violation_check = verified.violation_check.take();
    let report = Report::new(&config, verified, naive);
    println!("{}", report.summary());
    let log_matches = match violation_check.map(|check| check.verdict()) {
        None => true,
        Some(Ok((summary, equal))) => {
            println!("{summary}");
            equal
        }
        Some(Err(error)) => {
            eprintln!("storm: {error}");
            return ExitCode::from(3);
        }
    };
    if let Some(path) = &config.json
        && let Err(error) = report.write_json(path)
    {
        eprintln!("storm: {error}");
        return ExitCode::from(3);
    }
    if report.ok() && log_matches {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
