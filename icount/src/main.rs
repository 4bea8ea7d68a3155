//! `icount-ratios`: the check step of `.ci/icount`.
//!
//! Reads the instruction count (Ir) of each benchmark of `benches/icount.rs` from the
//! `summary.json` files gungraun writes with `--save-summary=json`, and checks three ratios, each
//! against its budget:
//!
//! - L1: `local_hit` (verified `LocalCache::get` hits) ÷ `dashmap_get` (raw `DashMap` gets), both
//!   shown per get;
//! - L1 insert: `local_insert_full` (`LocalCache::insert` of new keys into a full cache) ÷
//!   `quick_cache_insert_full` (the same inserts into a full quick_cache cache), per insert;
//! - envelope: `envelope_open` (one `Envelope::open` of 1 KiB) ÷ `hmac_sha256` (the MAC it verifies);
//! - envelope 16K: `envelope_open` of 16 KiB ÷ `blake3_keyed` (the MAC it verifies).
//!
//! ```text
//! icount-ratios SUMMARY_DIR OPS_PER_CALL BUDGET_L1 BUDGET_ENVELOPE BUDGET_INSERT BUDGET_ENVELOPE_16K
//! ```
//!
//! `OPS_PER_CALL` is how many gets, or inserts, one call of the L1 benchmarks performs.
//!
//! `SUMMARY_DIR` holds one directory per benchmark (`local_hit.gets_1000/summary.json`, …).
//! Exit status: 0 when every ratio is within budget, 1 when one is over, 2 on bad arguments or a
//! missing or unexpected summary. The budgets themselves are set in `.ci/icount`.

use serde_json::Value;
use std::path::Path;
use std::process::ExitCode;

/// The `version` field of gungraun 0.20's summary.json.
const SUMMARY_SCHEMA: &str = "7";

/// The benchmarks, as gungraun names them: `function.id`.
const LOCAL_HIT: &str = "local_hit.gets_1000";
const DASHMAP_GET: &str = "dashmap_get.gets_1000";
const LOCAL_INSERT_FULL: &str = "local_insert_full.inserts_1000";
const QUICK_CACHE_INSERT_FULL: &str = "quick_cache_insert_full.inserts_1000";
const ENVELOPE_OPEN: &str = "envelope_open.payload_1k";
const HMAC_SHA256: &str = "hmac_sha256.payload_1k";
const ENVELOPE_OPEN_16K: &str = "envelope_open.payload_16k";
const BLAKE3_KEYED_16K: &str = "blake3_keyed.payload_16k";

const USAGE: &str = "usage: icount-ratios SUMMARY_DIR OPS_PER_CALL BUDGET_L1 BUDGET_ENVELOPE BUDGET_INSERT \
     BUDGET_ENVELOPE_16K";

/// The total Ir of callgrind's profile in `SUMMARY_DIR/<bench>/summary.json`.
fn instruction_count(summary_dir: &Path, bench: &str) -> Result<u64, String> {
    let path = summary_dir.join(bench).join("summary.json");
    let text = std::fs::read_to_string(&path);
    let path = path.display();
    let text = text.map_err(|e| format!("{path}: {e}"))?;
    let summary: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    if summary["version"] != SUMMARY_SCHEMA {
        return Err(format!(
            "{path}: summary schema {} (expected {SUMMARY_SCHEMA}, gungraun 0.20)",
            summary["version"]
        ));
    }
    let function = summary["function_name"].as_str().unwrap_or("?");
    let id = summary["id"].as_str().unwrap_or("?");
    if format!("{function}.{id}") != bench {
        return Err(format!("{path}: holds {function}.{id}, not {bench}"));
    }
    let callgrind = summary["profiles"]
        .as_array()
        .ok_or_else(|| format!("{path}: no profiles"))?
        .iter()
        .find(|profile| profile["tool"] == "Callgrind")
        .ok_or_else(|| format!("{path}: no Callgrind profile"))?;
    callgrind["data"]["total"]["metrics"]["Ir"]["values"]["new"]
        .as_u64()
        .ok_or_else(|| format!("{path}: no total Ir"))
}

/// One benchmark's count, and how many operations one call of it performs.
struct Measured {
    name: &'static str,
    instructions: u64,
    ops_per_call: u64,
}

impl Measured {
    /// `291.5 Ir/op` for a batch, `64410 Ir` for a single operation.
    fn per_op(&self) -> String {
        if self.ops_per_call == 1 {
            format!("{} Ir", self.instructions)
        } else {
            let per_op = self.instructions as f64 / self.ops_per_call as f64;
            format!("{per_op:.1} Ir/op")
        }
    }
}

/// Prints `label: ours / floor = ratio (budget) ok|OVER BUDGET`; true when within budget.
fn check(label: &str, ours: &Measured, floor: &Measured, budget: f64) -> bool {
    let ratio = ours.instructions as f64 / floor.instructions as f64;
    let within = ratio <= budget;
    println!(
        "{label}: {} {} / {} {} = {ratio:.3}x (budget <= {budget}x) {}",
        ours.name,
        ours.per_op(),
        floor.name,
        floor.per_op(),
        if within { "ok" } else { "OVER BUDGET" },
    );
    within
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [
        summary_dir,
        ops_per_call,
        budget_l1,
        budget_envelope,
        budget_insert,
        budget_envelope_16k,
    ] = &args[..]
    else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let (
        Ok(ops_per_call),
        Ok(budget_l1),
        Ok(budget_envelope),
        Ok(budget_insert),
        Ok(budget_envelope_16k),
    ) = (
        ops_per_call.parse::<u64>(),
        budget_l1.parse::<f64>(),
        budget_envelope.parse::<f64>(),
        budget_insert.parse::<f64>(),
        budget_envelope_16k.parse::<f64>(),
    )
    else {
        eprintln!("icount-ratios: OPS_PER_CALL must be an integer, the budgets numbers\n{USAGE}");
        return ExitCode::from(2);
    };

    let summary_dir = Path::new(summary_dir);
    let counts = [
        LOCAL_HIT,
        DASHMAP_GET,
        LOCAL_INSERT_FULL,
        QUICK_CACHE_INSERT_FULL,
        ENVELOPE_OPEN,
        HMAC_SHA256,
        ENVELOPE_OPEN_16K,
        BLAKE3_KEYED_16K,
    ]
    .map(|bench| instruction_count(summary_dir, bench));
    let [
        Ok(local_hit),
        Ok(dashmap_get),
        Ok(local_insert),
        Ok(quick_insert),
        Ok(open),
        Ok(hmac),
        Ok(open_16k),
        Ok(blake3_16k),
    ] = counts
    else {
        for error in counts.iter().filter_map(|count| count.as_ref().err()) {
            eprintln!("icount-ratios: {error}");
        }
        return ExitCode::from(2);
    };

    let batch = |name, instructions| Measured {
        name,
        instructions,
        ops_per_call,
    };
    let single = |name, instructions| Measured {
        name,
        instructions,
        ops_per_call: 1,
    };
    let l1_ok = check(
        "L1 verified hit ",
        &batch("local_hit", local_hit),
        &batch("dashmap_get", dashmap_get),
        budget_l1,
    );
    let insert_ok = check(
        "L1 insert, full ",
        &batch("local_insert_full", local_insert),
        &batch("quick_cache_insert_full", quick_insert),
        budget_insert,
    );
    let envelope_ok = check(
        "envelope open 1K",
        &single("envelope_open", open),
        &single("hmac_sha256", hmac),
        budget_envelope,
    );
    let envelope_16k_ok = check(
        "envelope open 16K",
        &single("envelope_open", open_16k),
        &single("blake3_keyed", blake3_16k),
        budget_envelope_16k,
    );
    if l1_ok && insert_ok && envelope_ok && envelope_16k_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
