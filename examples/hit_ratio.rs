//! hit_ratio: replays real and synthetic traces through `LocalCache`, moka, quick_cache, a plain
//! LRU and Belady's offline optimum, and prints a markdown table of hit ratios.
//!
//! ```text
//! cargo run --release --example hit_ratio
//! cargo run --release --example hit_ratio -- --trace oltp --sizes 1000,2000,5000 --json hit.json
//! cargo run --release --example hit_ratio -- --trace p3 --repeat 5    # replay times, median of 5
//! ```
//!
//! Traces (`--trace oltp|p3|zipf|all`, default `all`):
//!
//! - `oltp`, `p3`: the block traces of the ARC paper (Megiddo and Modha, "ARC: A Self-Tuning, Low
//!   Overhead Replacement Cache", USENIX FAST 03, pp. 115-130, 2003), read from
//!   `$CARGO_MANIFEST_DIR/../shared/traces/{OLTP,P3}.lis.zst`. Each line `start count _ _` stands
//!   for `count` page requests `start, start+1, …`. When the directory is absent the tool prints
//!   `SKIPPED: ../shared/traces not found` and runs the Zipf traces only.
//! - `zipf`: two seeded synthetic traces, Zipf(0.9) and Zipf(1.1), 1,000,000 requests over 100,000
//!   keys (rand's seeded `StdRng` and an inverse-CDF sampler written here: the same traces on
//!   every run and machine with one version of rand).
//!
//! Default sizes (`--sizes a,b,c` replaces them for every trace): OLTP 1,000/5,000/15,000 pages
//! (sizes of the ARC paper's OLTP table), P3 16,384/131,072/524,288 pages (powers of two from 2 %
//! to 69 % of its 762,543 distinct pages), Zipf 1,000/10,000/30,000 keys.
//!
//! Every cache is demand-filled: a request is a `get`; a miss `insert`s the key. Replay is single
//! threaded. Policies:
//!
//! - `LocalCache`: this crate's L1 (S3-FIFO, split into policy shards), keyed by
//!   `Key<Pages>` with one fixed owner and the page number as the item.
//! - moka: `moka::sync::Cache` (TinyLFU admission, LRU eviction). moka applies reads and writes to
//!   its policy in batches; `run_pending_tasks()` is called after every insert so that it holds no
//!   more entries than its capacity, like the others (`--moka-lazy` leaves the batching to moka,
//!   which lets it run up to ~64 entries over capacity between maintenance runs).
//! - quick_cache: `quick_cache::sync::Cache` of `size` items (CLOCK-Pro-like, sharded).
//! - LRU: a plain exact LRU written below (a hash map into an index-linked list), kept here
//!   rather than taken from a crate so the lower bound is obvious to audit.
//! - Belady: the offline MIN optimum, computed here: a backward pass gives each request the index
//!   of the next request for the same key; the forward pass evicts the cached key whose next use
//!   is farthest (a `BTreeSet` ordered by next use). A key never used again is not kept.
//!
//! A hit ratio counts every request, cold misses included. The three concurrent caches hash with
//! aHash seeded from `--seed N` (default 1), so a run is reproducible; which keys share a shard
//! or a sketch counter changes with the seed, and with it the hit ratios by a few hundredths of a
//! point (moka's on P3 by up to ~0.2).
//!
//! Replay times, printed per policy on standard error: the three concurrent caches are given
//! the same keys and values (`Key<Pages>`, an empty `Bytes`), so that the times compare the
//! structures, not the sizes of what they store. `--repeat N` replays every policy N times, in
//! an order rotated each time, and prints the median time.
//!
//! Exit status: 0 on success; 2 for bad flags; 3 when a trace cannot be read or the JSON report
//! cannot be written.

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use scoped_cache::{DeviceId, Key, LocalCache, Namespace, RawBytes, TenantId};
use serde::{Serialize, Serializer};
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Pages of a block trace, one namespace for the whole replay.
struct Pages;

impl Namespace for Pages {
    const NAME: &'static str = "pages";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = Bytes;
    type Codec = RawBytes;
}

type FastMap<K, V> = HashMap<K, V, ahash::RandomState>;

const POLICIES: [&str; 5] = ["Belady", "LocalCache", "moka", "quick_cache", "LRU"];

/// Replays cache traces through LocalCache, moka, quick_cache, an LRU and Belady's optimum, and
/// prints a markdown table of hit ratios.
#[derive(Parser)]
#[command(
    name = "hit_ratio",
    after_help = "exit status: 0 success, 2 bad flags, 3 unreadable trace or JSON report"
)]
struct Options {
    /// The traces to replay
    #[arg(long = "trace", value_name = "TRACE", default_value = "all")]
    traces: TraceChoice,
    /// Cache sizes for every trace [default: each trace's own, listed at the top of
    /// examples/hit_ratio.rs]
    #[arg(long, value_name = "N,N,...", value_delimiter = ',', value_parser = positive_size)]
    sizes: Vec<usize>,
    /// Also write the table as JSON to PATH
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Leave moka's maintenance to its own batching (it may run over capacity in between)
    #[arg(long)]
    moka_lazy: bool,
    /// Seed of the caches' hashers
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Replay every policy N times, in an order rotated each time, and print the median time
    /// (one replay disturbed by the machine then moves no time it prints)
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
}

/// Which traces `--trace` names.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TraceChoice {
    /// The ARC paper's OLTP block trace
    Oltp,
    /// The ARC paper's P3 block trace
    P3,
    /// Two synthetic Zipf traces, exponents 0.9 and 1.1
    Zipf,
    /// All of them
    All,
}

impl TraceChoice {
    fn names(self) -> &'static [&'static str] {
        match self {
            TraceChoice::Oltp => &["oltp"],
            TraceChoice::P3 => &["p3"],
            TraceChoice::Zipf => &["zipf"],
            TraceChoice::All => &["oltp", "p3", "zipf"],
        }
    }
}

/// One `--sizes` entry: a positive number of entries.
fn positive_size(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(size) if size > 0 => Ok(size),
        _ => Err(format!("{text:?} is not a positive size")),
    }
}

struct Trace {
    name: String,
    requests: Vec<u64>,
    default_sizes: Vec<usize>,
}

/// One row of the table, and of the `--json` report's `rows`.
#[derive(Serialize)]
struct Row {
    trace: String,
    size: usize,
    /// Hit ratios in percent, in the order of `POLICIES` (in JSON, keyed by policy).
    #[serde(serialize_with = "by_policy")]
    hit_ratio_percent: [f64; 5],
}

fn main() -> ExitCode {
    // Bad flags exit with status 2 and a message, `--help` with 0.
    let options = Options::parse();
    let traces = match load_traces(options.traces.names()) {
        Ok(traces) => traces,
        Err(message) => {
            eprintln!("hit_ratio: {message}");
            return ExitCode::from(3);
        }
    };

    let mut rows = Vec::new();
    for trace in &traces {
        let unique = trace
            .requests
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len();
        eprintln!(
            "{}: {} requests, {} unique keys",
            trace.name,
            trace.requests.len(),
            unique
        );
        let next_use = next_use_indices(&trace.requests);
        let sizes = match options.sizes.is_empty() {
            true => &trace.default_sizes,
            false => &options.sizes,
        };
        for &size in sizes {
            let requests = &trace.requests;
            let hasher = ahash::RandomState::with_seeds(options.seed, 2, 3, 4);
            let runs: [&dyn Fn() -> u64; 5] = [
                &|| belady(requests, &next_use, size),
                &|| local_cache(requests, size, hasher.clone()),
                &|| moka(requests, size, options.moka_lazy, hasher.clone()),
                &|| quick_cache(requests, size, hasher.clone()),
                &|| lru(requests, size),
            ];
            let mut hits: [Vec<u64>; POLICIES.len()] = Default::default();
            let mut times: [Vec<f64>; POLICIES.len()] = Default::default();
            for round in 0..options.repeat as usize {
                for i in 0..POLICIES.len() {
                    let policy = (round + i) % POLICIES.len();
                    let started = Instant::now();
                    hits[policy].push(runs[policy]());
                    times[policy].push(started.elapsed().as_secs_f64());
                }
            }
            let mut timings = String::new();
            for (policy, times) in times.iter_mut().enumerate() {
                timings += &format!(" {} {:.3} s,", POLICIES[policy], median(times));
            }
            // The same on every replay, except moka's under `--moka-lazy` (its maintenance
            // runs on its own schedule).
            let ratios = hits.map(|mut hits| {
                hits.sort_unstable();
                100.0 * hits[hits.len() / 2] as f64 / requests.len() as f64
            });
            eprintln!("  size {size}:{}", timings.trim_end_matches(','));
            rows.push(Row {
                trace: trace.name.clone(),
                size,
                hit_ratio_percent: ratios,
            });
        }
    }

    if !rows.is_empty() {
        print_table(&rows, options.moka_lazy);
    }
    if let Some(path) = &options.json
        && let Err(error) = write_json(path, &rows, options.moka_lazy)
    {
        eprintln!("hit_ratio: cannot write {}: {error}", path.display());
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}

/// The median of `values` (the upper one of an even count); sorts them.
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn load_traces(names: &[&str]) -> Result<Vec<Trace>, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/traces");
    let mut traces = Vec::new();
    let wants_real = names.iter().any(|&name| name == "oltp" || name == "p3");
    if wants_real && !dir.is_dir() {
        println!("SKIPPED: ../shared/traces not found");
    }
    for &name in names {
        match name {
            "oltp" | "p3" if dir.is_dir() => {
                let (file, sizes) = if name == "oltp" {
                    ("OLTP.lis.zst", vec![1_000, 5_000, 15_000])
                } else {
                    ("P3.lis.zst", vec![16_384, 131_072, 524_288])
                };
                let requests = read_arc_trace(&dir.join(file))
                    .map_err(|error| format!("cannot read {file}: {error}"))?;
                traces.push(Trace {
                    name: name.to_uppercase(),
                    requests,
                    default_sizes: sizes,
                });
            }
            "zipf" => {
                for (exponent, seed) in [(0.9, 9), (1.1, 11)] {
                    traces.push(Trace {
                        name: format!("Zipf({exponent})"),
                        requests: zipf_trace(exponent, 100_000, 1_000_000, seed),
                        default_sizes: vec![1_000, 10_000, 30_000],
                    });
                }
            }
            _ => {}
        }
    }
    Ok(traces)
}

/// Expands an ARC-format trace: each line `start count _ _` is `count` requests from `start`.
fn read_arc_trace(path: &Path) -> std::io::Result<Vec<u64>> {
    let file = std::fs::File::open(path)?;
    let reader = BufReader::new(zstd::Decoder::new(file)?);
    let mut requests = Vec::new();
    for (number, line) in reader.lines().enumerate() {
        let line = line?;
        let mut fields = line.split_ascii_whitespace();
        let (Some(start), Some(count)) = (fields.next(), fields.next()) else {
            continue;
        };
        let bad = || {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("line {}: {line:?}", number + 1),
            )
        };
        let start: u64 = start.parse().map_err(|_| bad())?;
        let count: u64 = count.parse().map_err(|_| bad())?;
        requests.extend(start..start + count);
    }
    Ok(requests)
}

/// `len` requests over keys `0..keys`, key `k` drawn with probability ∝ 1/(k+1)^exponent
/// (inverse CDF by binary search over the cumulative weights).
fn zipf_trace(exponent: f64, keys: usize, len: usize, seed: u64) -> Vec<u64> {
    let mut cumulative = Vec::with_capacity(keys);
    let mut total = 0.0;
    for rank in 1..=keys {
        total += 1.0 / (rank as f64).powf(exponent);
        cumulative.push(total);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len)
        .map(|_| {
            let target = rng.random::<f64>() * total;
            cumulative
                .partition_point(|&weight| weight <= target)
                .min(keys - 1) as u64
        })
        .collect()
}

/// For each request, the index of the next request for the same key (`usize::MAX`: none).
fn next_use_indices(requests: &[u64]) -> Vec<usize> {
    let mut next_use = vec![usize::MAX; requests.len()];
    let mut seen: FastMap<u64, usize> = FastMap::default();
    for (index, &key) in requests.iter().enumerate().rev() {
        if let Some(next) = seen.insert(key, index) {
            next_use[index] = next;
        }
    }
    next_use
}

/// Belady's MIN: on a miss with a full cache, evict the key used again farthest in the future
/// (which may be the requested key itself: then it is not kept).
fn belady(requests: &[u64], next_use: &[usize], size: usize) -> u64 {
    let mut cached: FastMap<u64, usize> = FastMap::default();
    let mut by_next_use: BTreeSet<(usize, u64)> = BTreeSet::new();
    let mut hits = 0;
    for (&key, &next) in requests.iter().zip(next_use) {
        if let Some(old) = cached.get_mut(&key) {
            hits += 1;
            by_next_use.remove(&(*old, key));
            *old = next;
            by_next_use.insert((next, key));
            continue;
        }
        if next == usize::MAX {
            continue;
        }
        if cached.len() == size {
            let Some(&(farthest, victim)) = by_next_use.last() else {
                continue;
            };
            if farthest <= next {
                continue;
            }
            by_next_use.pop_last();
            cached.remove(&victim);
        }
        cached.insert(key, next);
        by_next_use.insert((next, key));
    }
    hits
}

/// The key every concurrent cache is given for `page`: `LocalCache`'s, with one fixed owner, so
/// that the replay times compare the structures, not the sizes of their keys and values.
fn page_key(page: u64) -> Key<Pages> {
    Key::new(TenantId::from_u64(1), DeviceId::from_u64(1), page)
}

fn local_cache(requests: &[u64], size: usize, hasher: ahash::RandomState) -> u64 {
    let Ok(cache) = LocalCache::<Pages>::builder()
        .max_entries(size as u64)
        .hasher(hasher)
        .build()
    else {
        return 0;
    };
    let mut hits = 0;
    for &page in requests {
        let key = page_key(page);
        if cache.get(&key).is_some() {
            hits += 1;
        } else {
            cache.insert(&key, Bytes::new());
        }
    }
    hits
}

fn moka(requests: &[u64], size: usize, lazy: bool, hasher: ahash::RandomState) -> u64 {
    let cache: moka::sync::Cache<Key<Pages>, Bytes, _> = moka::sync::Cache::builder()
        .max_capacity(size as u64)
        .build_with_hasher(hasher);
    let mut hits = 0;
    for &page in requests {
        let key = page_key(page);
        if cache.get(&key).is_some() {
            hits += 1;
        } else {
            cache.insert(key, Bytes::new());
            if !lazy {
                cache.run_pending_tasks();
            }
        }
    }
    hits
}

fn quick_cache(requests: &[u64], size: usize, hasher: ahash::RandomState) -> u64 {
    let cache: quick_cache::sync::Cache<Key<Pages>, Bytes, _, _> = quick_cache::sync::Cache::with(
        size,
        size as u64,
        quick_cache::UnitWeighter,
        hasher,
        quick_cache::sync::DefaultLifecycle::default(),
    );
    let mut hits = 0;
    for &page in requests {
        let key = page_key(page);
        if cache.get(&key).is_some() {
            hits += 1;
        } else {
            cache.insert(key, Bytes::new());
        }
    }
    hits
}

/// A plain LRU: a map from key to node, nodes in a doubly linked list by index (head: most
/// recent).
struct Lru {
    map: FastMap<u64, u32>,
    nodes: Vec<LruNode>,
    head: u32,
    tail: u32,
}

struct LruNode {
    key: u64,
    prev: u32,
    next: u32,
}

const NIL: u32 = u32::MAX;

impl Lru {
    fn new(size: usize) -> Self {
        Self {
            map: FastMap::with_capacity_and_hasher(size, ahash::RandomState::new()),
            nodes: Vec::with_capacity(size),
            head: NIL,
            tail: NIL,
        }
    }

    fn unlink(&mut self, index: u32) {
        let (prev, next) = {
            let node = &self.nodes[index as usize];
            (node.prev, node.next)
        };
        match prev {
            NIL => self.head = next,
            prev => self.nodes[prev as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            next => self.nodes[next as usize].prev = prev,
        }
    }

    fn push_front(&mut self, index: u32) {
        let old_head = self.head;
        {
            let node = &mut self.nodes[index as usize];
            node.prev = NIL;
            node.next = old_head;
        }
        match old_head {
            NIL => self.tail = index,
            head => self.nodes[head as usize].prev = index,
        }
        self.head = index;
    }

    /// Records a request; returns whether it was a hit.
    fn access(&mut self, key: u64, size: usize) -> bool {
        if let Some(&index) = self.map.get(&key) {
            self.unlink(index);
            self.push_front(index);
            return true;
        }
        let index = if self.nodes.len() < size {
            self.nodes.push(LruNode {
                key,
                prev: NIL,
                next: NIL,
            });
            (self.nodes.len() - 1) as u32
        } else {
            let victim = self.tail;
            self.unlink(victim);
            let old = std::mem::replace(&mut self.nodes[victim as usize].key, key);
            self.map.remove(&old);
            victim
        };
        self.map.insert(key, index);
        self.push_front(index);
        false
    }
}

fn lru(requests: &[u64], size: usize) -> u64 {
    let mut cache = Lru::new(size);
    requests
        .iter()
        .map(|&key| u64::from(cache.access(key, size)))
        .sum()
}

fn print_table(rows: &[Row], moka_lazy: bool) {
    println!(
        "| trace | size | Belady | LocalCache | moka{} | quick_cache | LRU | LocalCache − moka | LocalCache − quick_cache |",
        if moka_lazy { " (lazy)" } else { "" }
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let [belady, local, moka, quick, lru] = row.hit_ratio_percent;
        println!(
            "| {} | {} | {belady:.2} | {local:.2} | {moka:.2} | {quick:.2} | {lru:.2} | {:+.2} | {:+.2} |",
            row.trace,
            row.size,
            local - moka,
            local - quick
        );
    }
}

/// The `--json` report.
#[derive(Serialize)]
struct JsonReport<'a> {
    moka_lazy: bool,
    rows: &'a [Row],
}

fn by_policy<S: Serializer>(ratios: &[f64; 5], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_map(POLICIES.iter().zip(ratios))
}

fn write_json(path: &Path, rows: &[Row], moka_lazy: bool) -> std::io::Result<()> {
    let report = JsonReport { moka_lazy, rows };
    std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
}
