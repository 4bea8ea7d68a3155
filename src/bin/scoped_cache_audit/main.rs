//! `scoped-cache-audit`: answers, during and after an incident, what in the shared store is
//! mis-filed or forged, and which owners were offered whose data.
//!
//! ```text
//! cargo run --release --features audit --bin scoped-cache-audit -- \
//!     --redis redis://127.0.0.1:6379 --secret-file ring.txt [--key-prefix P] [--namespace N] \
//!     [--rate 10000] [--delete] [--json audit.json]
//! cargo run --release --features audit --bin scoped-cache-audit -- report a.jsonl b.jsonl
//! ```
//!
//! **The audit** `SCAN`s the keys under the store's prefix (one namespace's, with
//! `--namespace`) at no more than `--rate` keys per second, on the server or on every primary
//! of a cluster, reads each batch with one pipeline of `GET`s, and opens every entry for the key
//! it is stored under (`classify`; in either store layout, `KeyLayout::key_stored_under`): valid, mis-filed (an authentic value of another owner, item
//! or namespace, and whose it is), forged or damaged (bad tag, malformed), expired, or sealed
//! with a key id the ring lacks. It prints a table per namespace and the refused entries, and
//! writes them all with `--json`. No payload byte is ever printed or written.
//!
//! `--delete` removes integrity failures and expired entries through the library's store with
//! compare-and-delete: an entry rewritten since it was read stays. Nothing is deleted before an
//! entry has verified under the ring; when none does (every entry a bad tag or an unknown key
//! id), the secret does not match: the audit says so and exits 4 with nothing deleted.
//!
//! **`report LOG…`** reads the violation logs (`scoped_cache::ViolationLog`) of any number of
//! instances (`violation_report`) and answers how many owners were offered other owners' data,
//! which (expected, found) pairs, how often, over which window and from which tier, and that
//! nothing was served.
//!
//! Exit status: 0 no integrity failure, 1 integrity failures found, 2 bad flags or secret file,
//! 3 server or file error, 4 the secret does not match.

mod audit;
mod classify;
mod flags;
mod ring;
mod scan;
mod violation_report;

use audit::{Audit, SecretMismatch};
use clap::Parser;
use flags::{AuditArgs, Cli, Command, Rate, ReportArgs};
use indicatif::{ProgressBar, ProgressStyle};
use scan::{Pacer, Scanner};
use scoped_cache::RedisStore;
use scoped_cache::store::{RedisClusterStore, RemoteStore};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Refused entries listed in the text summary (all of them are in `--json`).
const LISTED: usize = 20;

fn main() -> ExitCode {
    // `--help` exits 0; bad flags say what is wrong and exit 2.
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Report(args)) => report(&args),
        None => audit_main(cli.audit),
    }
}

/// A failed audit: the message and the exit status.
struct Failure(String, u8);

fn audit_main(args: AuditArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(Failure(format!("cannot start a runtime: {error}"), 3)),
    };
    match runtime.block_on(run_audit(&args)) {
        Ok(report) => {
            if report.integrity_failures > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(failure) => fail(failure),
    }
}

fn fail(Failure(message, status): Failure) -> ExitCode {
    eprintln!("scoped-cache-audit: {message}");
    ExitCode::from(status)
}

async fn run_audit(args: &AuditArgs) -> Result<audit::Report, Failure> {
    let (Some(url), Some(secret_file)) = (&args.redis, &args.secret_file) else {
        return Err(Failure("--redis and --secret-file are required".into(), 2));
    };
    let ring = ring::read_ring(secret_file).map_err(|message| Failure(message, 2))?;
    let unreachable = |message: String| Failure(message, 3);
    let targets = scan::targets(url, args.timeout)
        .await
        .map_err(unreachable)?;
    let pattern = scan::pattern(args.key_prefix.as_bytes(), args.namespace.as_deref());
    let batch = Pacer::batch(args.rate, args.batch);
    let mut scanners = Vec::with_capacity(targets.len());
    for target in &targets {
        scanners.push(
            Scanner::open(target, pattern.clone(), batch, args.timeout)
                .await
                .map_err(unreachable)?,
        );
    }
    let delete = match args.delete {
        true => Some(deleting_store(url, &args.key_prefix, args.timeout).await?),
        false => None,
    };
    let mut total = 0;
    for scanner in &mut scanners {
        total += scanner.size().await.map_err(unreachable)?;
    }
    let progress = progress_bar(total, args.no_progress);

    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    let mut audit = Audit::new(ring, args.key_prefix.as_bytes().to_vec(), now_ms, delete);
    let mut pacer = Pacer::new(args.rate);
    let started = Instant::now();
    let mismatch = |mismatch: SecretMismatch, audit: &Audit| {
        Failure(
            secret_mismatch_message(&mismatch, secret_file, audit.deletes()),
            4,
        )
    };
    for scanner in &mut scanners {
        while let Some(batch) = scanner.next().await.map_err(unreachable)? {
            let keys = batch.len();
            if let Err(error) = audit.judge(batch).await {
                progress.finish_and_clear();
                return Err(mismatch(error, &audit));
            }
            progress.inc(keys as u64);
            progress.set_message(format!(
                "{} refused, {} deleted",
                audit.report.refused.len(),
                audit.report.deleted
            ));
            pacer.read(keys).await;
        }
    }
    progress.finish_and_clear();
    if let Err(error) = audit.finish() {
        return Err(mismatch(error, &audit));
    }
    let mut report = audit.report;
    report.elapsed_s = started.elapsed().as_secs_f64();
    report.keys_per_s = report.scanned as f64 / report.elapsed_s.max(1e-9);
    report.servers = targets.iter().map(|target| target.name.clone()).collect();
    report.pattern = scoped_cache::envelope::Escaped(&pattern).to_string();
    report.rate_limit = match args.rate {
        Rate::PerSecond(n) => Some(n),
        Rate::Unlimited => None,
    };
    print!("{}", report.text(LISTED));
    if args.delete {
        println!(
            "deleted {} entr{} with compare-and-delete ({} not deleted: changed since read, or failed)",
            report.deleted,
            if report.deleted == 1 { "y" } else { "ies" },
            report.delete_errors
        );
    }
    if let Some(path) = &args.json {
        write_json(path, &report).map_err(|message| Failure(message, 3))?;
    }
    Ok(report)
}

/// The library's store for `url`, which deletes with compare-and-delete under the prefix.
async fn deleting_store(
    url: &str,
    prefix: &str,
    timeout: std::time::Duration,
) -> Result<Arc<dyn RemoteStore>, Failure> {
    let failed = |error: scoped_cache::store::StoreError| Failure(error.to_string(), 3);
    Ok(
        if url.starts_with("redis-cluster://") || url.starts_with("rediss-cluster://") {
            Arc::new(
                RedisClusterStore::builder_from_url(url)
                    .key_prefix(prefix)
                    .response_timeout(timeout)
                    .connect()
                    .await
                    .map_err(failed)?,
            )
        } else {
            Arc::new(
                RedisStore::builder(url)
                    .key_prefix(prefix)
                    .response_timeout(timeout)
                    .connect()
                    .await
                    .map_err(failed)?,
            )
        },
    )
}

fn secret_mismatch_message(mismatch: &SecretMismatch, file: &Path, deletes: bool) -> String {
    let ids = mismatch
        .unknown_key_ids
        .iter()
        .map(|(id, count)| format!("{id} ({count})"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "the secret does not match: no entry verified with the key ring in {} ({} bad tag(s); \
         unknown key ids: {}). Use the fleet's key ring, or, if it is the fleet's, every entry \
         scanned is forged.{}",
        file.display(),
        mismatch.bad_tags,
        if ids.is_empty() { "none".into() } else { ids },
        if deletes { " Nothing was deleted." } else { "" }
    )
}

fn progress_bar(total: u64, hidden: bool) -> ProgressBar {
    if hidden || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "[{elapsed_precise}] {bar:30} {pos}/~{len} keys {per_sec}  {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    std::fs::write(path, text + "\n")
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

fn report(args: &ReportArgs) -> ExitCode {
    let report = match violation_report::read_logs(&args.logs) {
        Ok(report) => report,
        Err(message) => return fail(Failure(message, 3)),
    };
    print!("{}", report.text(args.top));
    if let Some(path) = &args.json
        && let Err(message) = write_json(path, &report)
    {
        return fail(Failure(message, 3));
    }
    ExitCode::SUCCESS
}
