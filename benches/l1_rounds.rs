//! The L1 verified hit against a raw `DashMap`, moka and quick_cache, measured in **interleaved
//! rounds**: the comparison to quote for the hit, all four contenders in one run.
//!
//! Criterion (`benches/hot_path.rs`) measures one contender after another, so a change in the
//! machine's state between two contenders' benchmarks (another process, frequency, the host)
//! lands in their ratio; on a 2-vCPU VM the ratio of the same row moves by ±20–40 % between runs.
//! Here every round runs each contender once, the order rotated every round so none always runs
//! first, and the median over the rounds is taken per contender: a disturbance hits the
//! contenders of a round alike, or is one round out of [`ROUNDS`].
//!
//! For each key count ([`ENTRIES`]: 100,000 keys; [`SMALL_ENTRIES`]: 1,000 keys, all in L2, so
//! CPU-bound) and each thread count of [`thread_counts`]: every contender is filled with every
//! key (capacity twice the key count, no TTL) and checked to hit on each, then [`ROUNDS`] rounds
//! run; in a round each contender's threads, released together by a barrier, each perform
//! [`GETS_PER_THREAD`] gets over a seeded uniform random key sequence (the workload and
//! contenders of `benches/common/contenders.rs`, as in `hot_path`'s `l1_get_hit`). The round's
//! time per get is the slowest thread's elapsed time ÷ its gets. One untimed round per contender
//! precedes the measured ones.
//!
//! `cargo bench --bench l1_rounds` prints a table (median and interquartile range of the time per
//! get per contender; `LocalCache` median ÷ each peer's median) and writes it to
//! `target/l1_rounds.json`. Under `cargo test --benches` (no `--bench` flag) it runs one round of
//! a few gets on 1,000 entries as a smoke test and writes no file.

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
/// The smoke test's gets per thread (one round, no warm-up).
const SMOKE_GETS: u64 = 10_000;

/// The four contenders' names, in the order of the tables.
const NAMES: [&str; 4] = ["scoped_cache", "dashmap_raw", "moka", "quick_cache"];

/// Quantile `q` of sorted `xs`, interpolated linearly between the two nearest ranks.
fn quantile(xs: &[f64], q: f64) -> f64 {
    let rank = q * (xs.len() - 1) as f64;
    let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
    xs[low] + (xs[high] - xs[low]) * (rank - low as f64)
}

/// Median, first and third quartile of one contender's per-get times, in ns.
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

/// One contender's round: `threads` threads, `gets` gets each; returns ns per get.
fn round<C: Contender>(cache: &C, workload: &Workload, threads: usize, gets: u64) -> f64 {
    let elapsed: Duration = run_threads(cache, workload, threads, gets);
    elapsed.as_nanos() as f64 / gets as f64
}

/// Every configuration's rounds for `entries` keys; one summary per contender (in [`NAMES`]
/// order) per thread count.
fn measure(entries: usize, rounds: usize, gets: u64, warm_up: bool) -> Vec<(usize, [Summary; 4])> {
    let capacity = 2 * entries;
    let workload = Workload::uniform_reads(entries, 0..entries);
    let local = workload.fill(local_cache(capacity, None), 0..entries);
    let dashmap = workload.fill(raw_dashmap(), 0..entries);
    let moka = workload.fill(moka(capacity, None), 0..entries);
    let quick = workload.fill(quick_cache(capacity), 0..entries);
    // Every read of the sequence hits: every key is resident in every contender.
    workload.check_resident(&local, 0..entries);
    workload.check_resident(&dashmap, 0..entries);
    workload.check_resident(&moka, 0..entries);
    workload.check_resident(&quick, 0..entries);

    let runners: [&(dyn Fn(usize, u64) -> f64 + Sync); 4] = [
        &|threads, gets| round(&local, &workload, threads, gets),
        &|threads, gets| round(&dashmap, &workload, threads, gets),
        &|threads, gets| round(&moka, &workload, threads, gets),
        &|threads, gets| round(&quick, &workload, threads, gets),
    ];
    let mut results = Vec::new();
    for threads in thread_counts() {
        if warm_up {
            for run in &runners {
                run(threads, gets);
            }
        }
        let mut times: [Vec<f64>; 4] = Default::default();
        for r in 0..rounds {
            // Rotate the order: in round r, contender (r + i) % 4 runs i-th.
            for i in 0..runners.len() {
                let c = (r + i) % runners.len();
                times[c].push(runners[c](threads, gets));
            }
        }
        results.push((threads, times.map(Summary::of)));
    }
    results
}

fn main() {
    let measuring = measuring();
    let (sizes, rounds, gets): (&[usize], usize, u64) = if measuring {
        (&[ENTRIES, SMALL_ENTRIES], ROUNDS, GETS_PER_THREAD)
    } else {
        (&[SMALL_ENTRIES], 1, SMOKE_GETS)
    };
    let load_before = load_average();
    println!(
        "l1_rounds: {rounds} interleaved round(s) of {gets} verified-hit gets per thread per \
         contender, order rotated each round; load average (1 min) {load_before} at start"
    );
    let mut rows = Vec::new();
    for &entries in sizes {
        for (threads, summaries) in measure(entries, rounds, gets, measuring) {
            rows.push((entries, threads, summaries));
        }
    }
    let load_after = load_average();

    println!("\nLocalCache median ÷ peer median (lower is better for LocalCache)\n");
    println!(
        "{:>8} {:>7} {:>13} {:>8} {:>13}",
        "entries", "threads", "÷ dashmap_raw", "÷ moka", "÷ quick_cache"
    );
    for (entries, threads, s) in &rows {
        println!(
            "{:>8} {:>7} {:>12.3}× {:>7.3}× {:>12.3}×",
            entries,
            threads,
            s[0].median / s[1].median,
            s[0].median / s[2].median,
            s[0].median / s[3].median,
        );
    }
    println!("\nns per get: median [first quartile – third quartile] over the rounds\n");
    println!(
        "{:>8} {:>7} {:>26} {:>26} {:>26} {:>26}",
        "entries", "threads", NAMES[0], NAMES[1], NAMES[2], NAMES[3]
    );
    for (entries, threads, s) in &rows {
        let cells: Vec<String> = s
            .iter()
            .map(|s| format!("{:.1} [{:.1} – {:.1}]", s.median, s.q1, s.q3))
            .collect();
        println!(
            "{:>8} {:>7} {:>26} {:>26} {:>26} {:>26}",
            entries, threads, cells[0], cells[1], cells[2], cells[3]
        );
    }
    println!("\nload average (1 min) {load_after} at end");

    if measuring {
        let record = json!({
            "rounds": rounds,
            "gets_per_thread": gets,
            "load_average_1min": { "start": load_before, "end": load_after },
            "results": rows.iter().map(|(entries, threads, s)| json!({
                "entries": entries,
                "threads": threads,
                "ns_per_get": NAMES.iter().zip(s).map(|(name, s)| (name.to_string(), json!({
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
