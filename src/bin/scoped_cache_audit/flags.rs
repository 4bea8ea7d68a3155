//! The command line: the audit's flags and the `report` subcommand (clap derive: defaults and
//! `--help` written once).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// Audits a shared Redis keyspace of scoped-cache entries, or reports over violation logs.
#[derive(Debug, Parser)]
#[command(
    name = "scoped-cache-audit",
    version,
    about = "Opens every scoped-cache entry of a Redis keyspace for the key it is stored under \
             and lists what is mis-filed, forged, damaged or expired; `report` tells from \
             violation logs who was offered whose data.",
    long_about = None,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "secret file: one key per line, \"ID base64:SECRET\" or \"ID text:SECRET\" \
                  (the bytes the service gives KeyRing::new); '#' starts a comment\n\
                  exit status: 0 nothing refused for integrity, 1 integrity failures found, 2 bad \
                  flags or secret file, 3 server or file error, 4 the secret does not match \
                  (nothing deleted)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub audit: AuditArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Who was offered whose data: reads the violation logs (ViolationLog JSON lines) of any
    /// number of instances
    Report(ReportArgs),
}

/// The audit's flags.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The store: redis://USER:PASS@HOST:PORT/DB (credentials and db optional), rediss://…,
    /// redis+unix:///PATH, or redis-cluster://HOST:PORT,HOST:PORT… (every primary is scanned)
    #[arg(long, value_name = "URL", required = true)]
    pub redis: Option<String>,
    /// The key ring the fleet seals with (see below)
    #[arg(long, value_name = "FILE", required = true)]
    pub secret_file: Option<PathBuf>,
    /// The key prefix the services give their store (RedisStore::key_prefix)
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub key_prefix: String,
    /// Audit one namespace (its NAME) instead of all
    #[arg(long, value_name = "NAME", value_parser = namespace)]
    pub namespace: Option<String>,
    /// At most N keys read per second, over all servers; or "unlimited"
    #[arg(long, value_name = "N|unlimited", default_value = "10000", value_parser = rate)]
    pub rate: Rate,
    /// Keys asked for per SCAN call, read in one pipeline
    #[arg(long, value_name = "N", default_value = "500", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// Delete every entry refused for integrity, and every expired one, with compare-and-delete
    /// (an entry rewritten since it was read stays)
    #[arg(long)]
    pub delete: bool,
    /// Write the report, every refused entry listed, as JSON to PATH
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// The longest a server call may take (e.g. 5s, 500ms)
    #[arg(long, value_name = "D", default_value = "5s", value_parser = duration)]
    pub timeout: Duration,
    /// No progress bar, even on a terminal
    #[arg(long)]
    pub no_progress: bool,
}

/// The `report` subcommand's flags.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Violation logs, e.g. one per instance
    #[arg(value_name = "LOG", required = true)]
    pub logs: Vec<PathBuf>,
    /// Also write the report, every pair listed, as JSON to PATH
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Pairs of owners listed in the text
    #[arg(long, value_name = "N", default_value = "20")]
    pub top: usize,
}

/// A bound on keys read per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    PerSecond(u64),
    Unlimited,
}

fn rate(text: &str) -> Result<Rate, String> {
    if text == "unlimited" {
        return Ok(Rate::Unlimited);
    }
    match text.replace('_', "").parse::<u64>() {
        Ok(0) | Err(_) => Err("a number of keys per second above 0, or \"unlimited\"".into()),
        Ok(n) => Ok(Rate::PerSecond(n)),
    }
}

fn namespace(text: &str) -> Result<String, String> {
    scoped_cache::validate_namespace(text)
        .map(|()| text.to_owned())
        .map_err(|error| error.to_string())
}

/// A duration: a number and `ms` or `s`.
fn duration(text: &str) -> Result<Duration, String> {
    let bad = || "a duration such as 500ms or 5s".to_owned();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1.0)
    } else {
        return Err(bad());
    };
    let seconds = number.parse::<f64>().map_err(|_| bad())? * scale;
    match Duration::try_from_secs_f64(seconds) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(flags: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("scoped-cache-audit").chain(flags.split_whitespace()))
    }

    #[test]
    fn flags_parse_and_bad_ones_exit_2() {
        Cli::command().debug_assert();
        let cli =
            parse("--redis redis://h --secret-file f --rate 1_000 --namespace thumb --delete")
                .unwrap();
        assert_eq!(cli.audit.rate, Rate::PerSecond(1000));
        assert!(cli.audit.delete && cli.command.is_none());
        assert!(matches!(
            parse("report a.jsonl b.jsonl").unwrap().command,
            Some(Command::Report(ReportArgs { logs, .. })) if logs.len() == 2
        ));
        for bad in [
            "",
            "--redis redis://h",
            "--secret-file f",
            "--redis redis://h --secret-file f --rate 0",
            "--redis redis://h --secret-file f --namespace Thumb:",
            "--redis redis://h --secret-file f --timeout 0s",
            "--redis redis://h --secret-file f --batch 0",
            "--redis redis://h --secret-file f --frobnicate",
            "report",
        ] {
            let error = parse(bad).err();
            assert_eq!(error.map(|e| e.exit_code()), Some(2), "{bad:?} accepted");
        }
    }
}
