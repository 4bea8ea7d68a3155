//! The L1 verified hit, and inserts into a full cache, against a raw `DashMap`, moka and
//! quick_cache, measured in **interleaved rounds**: the comparison to quote for the hit and the
//! insert, all four contenders in one run.
//!
//! Criterion (`benches/hot_path.rs`) measures one contender after another, so a change in the
//! machine's state between two contenders' benchmarks (another process, frequency, the host)
//! lands in their ratio; on a 2-vCPU VM the ratio of the same row moves by ±20–40 % between runs.
//! Here every round runs each contender once, the order rotated every round so none always runs
//! first, and the median over the rounds is taken per contender: a disturbance hits the
//! contenders of a round alike, or is one round out of [`ROUNDS`].
//!
//! Rows ([`Scenario`]), each at every thread count of [`thread_counts`]:
//! - hits on [`ENTRIES`] (100,000) keys and on [`SMALL_ENTRIES`] (1,000 keys, all in L2, so
//!   CPU-bound): every contender is filled with every key (capacity twice the key count, no
//!   TTL) and checked to hit on each; each thread performs [`GETS_PER_THREAD`] gets over a
//!   seeded uniform random key sequence (as `hot_path`'s `l1_get_hit`);
//! - inserts on [`ENTRIES`] keys into a cache of half as many, full before the first round;
//!   each thread performs [`INSERTS_PER_THREAD`] inserts of uniform random keys (as
//!   `hot_path`'s `l1_insert`).
//!
//! The workloads and contenders come from `benches/common/contenders.rs`. In a round each
//! contender's threads are released together by a barrier; the round's time per operation is
//! the slowest thread's elapsed time ÷ its operations. One untimed round per contender precedes
//! the measured ones.
//!
//! `cargo bench --bench l1_rounds` prints a table (median and interquartile range of the time per
//! operation per contender; `LocalCache` median ÷ each peer's median) and writes it to
//! `target/l1_rounds.json`; `-- insert` (or `-- hit`) runs only that operation's rows. Under
//! `cargo test --benches` (no `--bench` flag) it runs one round of a few operations on 1,000
//! entries per scenario as a smoke test and writes no file.

mod common;

use common::contenders::{
    Contender, ENTRIES, Workload, local_cache, moka, quick_cache, raw_dashmap, run_threads,
    thread_counts,
};
use common::measuring;
use serde_json::json;
use std::time::Duration;

/// The CPU-bound key count: 1,000 entries fit in each core's L2.
const SMALL_ENTRIES: usize = 1_000;
/// Measured rounds per (entries, threads) configuration.
const ROUNDS: usize = 21;
/// Gets per thread in one contender's round.
const GETS_PER_THREAD: u64 = 200_000;
/// Inserts per thread in one contender's round (fewer: moka's take ~1 µs each).
const INSERTS_PER_THREAD: u64 = 50_000;
/// The smoke test's operations per thread (one round, no warm-up).
const SMOKE_OPS: u64 = 10_000;

/// The four contenders' names, in the order of the tables.
const NAMES: [&str; 4] = ["scoped_cache", "dashmap_raw", "moka", "quick_cache"];

/// Quantile `q` of sorted `xs`, interpolated linearly between the two nearest ranks.
fn quantile(xs: &[f64], q: f64) -> f64 {
    let rank = q * (xs.len() - 1) as f64;
    let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
    xs[low] + (xs[high] - xs[low]) * (rank - low as f64)
}

/// Median, first and third quartile of one contender's times per operation, in ns.
struct Summary {
    median: f64,
    q1: f64,
    q3: f64,
}

impl Summary {
    fn of(mut ns: Vec<f64>) -> Self {
        ns.sort_by(f64::total_cmp);
        Self {
            median: quantile(&ns, 0.5),
            q1: quantile(&ns, 0.25),
            q3: quantile(&ns, 0.75),
        }
    }
}

/// The system's 1-minute load average, when `/proc/loadavg` is there.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "n/a".to_owned())
}

/// One contender's round: `threads` threads, `ops` operations each; returns ns per operation.
fn round<C: Contender>(cache: &C, workload: &Workload, threads: usize, ops: u64) -> f64 {
    let elapsed: Duration = run_threads(cache, workload, threads, ops);
    elapsed.as_nanos() as f64 / ops as f64
}

/// What the contenders do in one table row.
#[derive(Clone, Copy)]
enum Scenario {
    /// Verified hits: every key resident (capacity twice the keys), reads uniform over them.
    Hits,
    /// Inserts into a full cache: capacity half the keys, every key inserted once before
    /// measuring, then inserts of uniformly random keys (about half of them bring in a new key
    /// and evict one; the raw map holds every key and only replaces), as `hot_path`'s
    /// `l1_insert`.
    Inserts,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Hits => "hit",
            Scenario::Inserts => "insert",
        }
    }
}

/// Every configuration's rounds for `scenario` on `entries` keys; one summary per contender (in
/// [`NAMES`] order) per thread count.
fn measure(
    scenario: Scenario,
    entries: usize,
    rounds: usize,
    ops: u64,
    warm_up: bool,
) -> Vec<(usize, [Summary; 4])> {
    let (workload, capacity) = match scenario {
        Scenario::Hits => (Workload::uniform_reads(entries, 0..entries), 2 * entries),
        Scenario::Inserts => (Workload::uniform_inserts(entries), entries / 2),
    };
    let local = workload.fill(local_cache(capacity, None), 0..entries);
    let dashmap = workload.fill(raw_dashmap(), 0..entries);
    let moka = workload.fill(moka(capacity, None), 0..entries);
    let quick = workload.fill(quick_cache(capacity), 0..entries);
    if let Scenario::Hits = scenario {
        // Every read of the sequence hits: every key is resident in every contender.
        workload.check_resident(&local, 0..entries);
        workload.check_resident(&dashmap, 0..entries);
        workload.check_resident(&moka, 0..entries);
        workload.check_resident(&quick, 0..entries);
    }

    let runners: [&(dyn Fn(usize, u64) -> f64 + Sync); 4] = [
        &|threads, ops| round(&local, &workload, threads, ops),
        &|threads, ops| round(&dashmap, &workload, threads, ops),
        &|threads, ops| round(&moka, &workload, threads, ops),
        &|threads, ops| round(&quick, &workload, threads, ops),
    ];
    let mut results = Vec::new();
    for threads in thread_counts() {
        if warm_up {
            for run in &runners {
                run(threads, ops);
            }
        }
        let mut times: [Vec<f64>; 4] = Default::default();
        for r in 0..rounds {
            // Rotate the order: in round r, contender (r + i) % 4 runs i-th.
            for i in 0..runners.len() {
                let c = (r + i) % runners.len();
                times[c].push(runners[c](threads, ops));
            }
        }
        results.push((threads, times.map(Summary::of)));
    }
    results
}

fn main() {
    let measuring = measuring();
    // (scenario, keys, operations per thread per round)
    let configurations: &[(Scenario, usize, u64)] = if measuring {
        &[
            (Scenario::Hits, ENTRIES, GETS_PER_THREAD),
            (Scenario::Hits, SMALL_ENTRIES, GETS_PER_THREAD),
            (Scenario::Inserts, ENTRIES, INSERTS_PER_THREAD),
        ]
    } else {
        &[
            (Scenario::Hits, SMALL_ENTRIES, SMOKE_OPS),
            (Scenario::Inserts, SMALL_ENTRIES, SMOKE_OPS),
        ]
    };
    // `cargo bench --bench l1_rounds -- insert` runs only the rows of that operation.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let configurations: Vec<_> = configurations
        .iter()
        .filter(|(scenario, ..)| only.is_empty() || only.iter().any(|op| op == scenario.name()))
        .collect();
    let rounds = if measuring { ROUNDS } else { 1 };
    let load_before = load_average();
    println!(
        "l1_rounds: {rounds} interleaved round(s) per row, each contender's threads performing \
         {GETS_PER_THREAD} gets or {INSERTS_PER_THREAD} inserts each, order rotated each round; \
         load average (1 min) {load_before} at start"
    );
    let mut rows = Vec::new();
    for &&(scenario, entries, ops) in &configurations {
        for (threads, summaries) in measure(scenario, entries, rounds, ops, measuring) {
            rows.push((scenario, entries, threads, summaries));
        }
    }
    let load_after = load_average();

    println!("\nLocalCache median ÷ peer median (lower is better for LocalCache)\n");
    println!(
        "{:>8} {:>8} {:>7} {:>13} {:>8} {:>13}",
        "op", "entries", "threads", "÷ dashmap_raw", "÷ moka", "÷ quick_cache"
    );
    for (scenario, entries, threads, s) in &rows {
        println!(
            "{:>8} {:>8} {:>7} {:>12.3}× {:>7.3}× {:>12.3}×",
            scenario.name(),
            entries,
            threads,
            s[0].median / s[1].median,
            s[0].median / s[2].median,
            s[0].median / s[3].median,
        );
    }
    println!("\nns per operation: median [first quartile – third quartile] over the rounds\n");
    println!(
        "{:>8} {:>8} {:>7} {:>26} {:>26} {:>26} {:>26}",
        "op", "entries", "threads", NAMES[0], NAMES[1], NAMES[2], NAMES[3]
    );
    for (scenario, entries, threads, s) in &rows {
        let cells: Vec<String> = s
            .iter()
            .map(|s| format!("{:.1} [{:.1} – {:.1}]", s.median, s.q1, s.q3))
            .collect();
        println!(
            "{:>8} {:>8} {:>7} {:>26} {:>26} {:>26} {:>26}",
            scenario.name(),
            entries,
            threads,
            cells[0],
            cells[1],
            cells[2],
            cells[3]
        );
    }
    println!("\nload average (1 min) {load_after} at end");

    if measuring {
        let record = json!({
            "rounds": rounds,
            "gets_per_thread": GETS_PER_THREAD,
            "inserts_per_thread": INSERTS_PER_THREAD,
            "load_average_1min": { "start": load_before, "end": load_after },
            "results": rows.iter().map(|(scenario, entries, threads, s)| json!({
                "op": scenario.name(),
                "entries": entries,
                "threads": threads,
                "ns_per_op": NAMES.iter().zip(s).map(|(name, s)| (name.to_string(), json!({
                    "median": s.median, "q1": s.q1, "q3": s.q3, "iqr": s.q3 - s.q1,
                }))).collect::<serde_json::Map<_, _>>(),
                "scoped_cache_over": {
                    "dashmap_raw": s[0].median / s[1].median,
                    "moka": s[0].median / s[2].median,
                    "quick_cache": s[0].median / s[3].median,
                },
            })).collect::<Vec<_>>(),
        });
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/l1_rounds.json");
        let text = serde_json::to_string_pretty(&record).expect("JSON of plain numbers");
        match std::fs::write(&path, text + "\n") {
            Ok(()) => println!("written to {}", path.display()),
            Err(error) => eprintln!("could not write {}: {error}", path.display()),
        }
    }
}
