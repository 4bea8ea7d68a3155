//! Reading violation logs (`scoped_cache::ViolationLog`'s JSON lines) from any number of
//! instances into one answer: who was offered whose data, how often, when, from which tier.
//!
//! Self-contained (serde only), so that the storm example reads its own log with the very code
//! `scoped-cache-audit report` runs (`#[path]`-included there).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// An id as the log writes it: a number (`from_u64`), a string (text), or `{"uuid":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    Num(u64),
    Text(String),
    Uuid { uuid: String },
}

impl Id {
    /// The id of a tenant or device, from its public accessors.
    pub fn of(number: Option<u64>, uuid: Option<[u8; 16]>, text: Option<&str>) -> Self {
        match (number, uuid, text) {
            (Some(number), _, _) => Id::Num(number),
            (_, Some(bytes), _) => Id::Uuid {
                uuid: hyphenated(&bytes),
            },
            (_, _, text) => Id::Text(text.unwrap_or_default().to_owned()),
        }
    }
}

fn hyphenated(bytes: &[u8; 16]) -> String {
    let mut out = String::with_capacity(36);
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

impl fmt::Display for Id {
    /// Numbers bare, text quoted and escaped (so no id can pose as another), UUIDs as `uuid:…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Num(number) => write!(f, "{number}"),
            Id::Text(text) => write!(f, "{text:?}"),
            Id::Uuid { uuid } => write!(f, "uuid:{uuid}"),
        }
    }
}

/// An owner as the log writes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Owner {
    pub tenant: Id,
    pub device: Id,
}

impl Owner {
    /// The log's form of a library owner.
    pub fn of(owner: &scoped_cache::Owner) -> Self {
        Owner {
            tenant: Id::of(
                owner.tenant.as_u64(),
                owner.tenant.as_uuid(),
                owner.tenant.as_str(),
            ),
            device: Id::of(
                owner.device.as_u64(),
                owner.device.as_uuid(),
                owner.device.as_str(),
            ),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tenant {}, device {}", self.tenant, self.device)
    }
}

/// One line of a violation log: a violation, a count of dropped reports, or the end of a
/// full log.
#[derive(Debug, Deserialize)]
struct Line {
    time: Option<String>,
    time_ms: Option<u64>,
    namespace: Option<String>,
    tier: Option<String>,
    kind: Option<String>,
    expected: Option<Owner>,
    found: Option<Owner>,
    dropped: Option<u64>,
    log_full: Option<bool>,
}

/// How often one owner was offered another's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pair {
    /// The owner who asked.
    pub expected: Owner,
    /// The owner whose data the refused value was.
    pub found: Owner,
    pub count: u64,
    /// The first and last of them, RFC 3339 UTC.
    #[serde(serialize_with = "moment_text")]
    pub first: Moment,
    #[serde(serialize_with = "moment_text")]
    pub last: Moment,
    /// Refusals by tier (`local`, `remote`).
    pub tiers: BTreeMap<String, u64>,
    pub namespaces: BTreeMap<String, u64>,
}

/// A time as the log gives it: ms since the epoch (to order by), and its RFC 3339 text.
pub type Moment = (u64, String);

fn moment_text<S: serde::Serializer>(moment: &Moment, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&moment.1)
}

/// The answer over a set of logs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogReport {
    pub files: Vec<PathBuf>,
    /// Violation lines read.
    pub violations: u64,
    pub by_kind: BTreeMap<String, u64>,
    pub by_tier: BTreeMap<String, u64>,
    pub by_namespace: BTreeMap<String, u64>,
    /// The first and last violation, RFC 3339 UTC.
    pub first: Option<String>,
    pub last: Option<String>,
    /// Distinct owners who were offered (and refused) another owner's data.
    pub owners_offered_others_data: u64,
    /// Distinct owners whose data was offered to another owner.
    pub owners_whose_data_was_offered: u64,
    /// Every (expected, found) pair of different owners, most frequent first.
    pub pairs: Vec<Pair>,
    /// Refusals of a value proven to be the asking owner's own (another item; a payload its
    /// codec cannot read).
    pub own_data_refused: u64,
    /// Refusals where nothing inside the value was believed (bad tag, malformed), or of
    /// another namespace's value: no owner can be named for them.
    pub unattributed: u64,
    /// Reports the instances could not write (queue full), as counted in the logs.
    pub dropped: u64,
    /// Logs that reached their size limit: reports after that are missing.
    pub full_logs: Vec<PathBuf>,
    /// Lines that are not JSON objects of the log (a line cut short by a crash).
    pub unreadable_lines: u64,
    /// Values returned to the wrong owner: none, by construction.
    pub served_to_wrong_owner: u64,
}

/// Reads every log in `paths` into one report.
///
/// # Errors
///
/// A message naming the file that cannot be read.
pub fn read_logs(paths: &[PathBuf]) -> Result<LogReport, String> {
    let mut report = LogReport::default();
    let mut pairs: BTreeMap<(Owner, Owner), Pair> = BTreeMap::new();
    let mut window: Option<(Moment, Moment)> = None;
    for path in paths {
        read_log(path, &mut report, &mut pairs, &mut window)?;
    }
    report.files = paths.to_vec();
    let expected: std::collections::BTreeSet<&Owner> = pairs.keys().map(|(e, _)| e).collect();
    let found: std::collections::BTreeSet<&Owner> = pairs.keys().map(|(_, f)| f).collect();
    report.owners_offered_others_data = expected.len() as u64;
    report.owners_whose_data_was_offered = found.len() as u64;
    if let Some((first, last)) = window {
        report.first = Some(first.1);
        report.last = Some(last.1);
    }
    let mut pairs: Vec<Pair> = pairs.into_values().collect();
    pairs.sort_by(|a, b| (b.count, &a.expected, &a.found).cmp(&(a.count, &b.expected, &b.found)));
    report.pairs = pairs;
    Ok(report)
}

fn read_log(
    path: &Path,
    report: &mut LogReport,
    pairs: &mut BTreeMap<(Owner, Owner), Pair>,
    window: &mut Option<(Moment, Moment)>,
) -> Result<(), String> {
    let file = std::fs::File::open(path)
        .map_err(|error| format!("cannot open the log {}: {error}", path.display()))?;
    for line in std::io::BufReader::new(file).lines() {
        let line =
            line.map_err(|error| format!("cannot read the log {}: {error}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let Ok(line) = serde_json::from_str::<Line>(&line) else {
            report.unreadable_lines += 1;
            continue;
        };
        if line.log_full == Some(true) {
            report.full_logs.push(path.to_path_buf());
            continue;
        }
        if let Some(dropped) = line.dropped {
            report.dropped += dropped;
            continue;
        }
        let (Some(kind), Some(expected), Some(time_ms)) = (line.kind, line.expected, line.time_ms)
        else {
            report.unreadable_lines += 1;
            continue;
        };
        let tier = line.tier.unwrap_or_else(|| "unknown".into());
        let namespace = line.namespace.unwrap_or_else(|| "unknown".into());
        report.violations += 1;
        *report.by_kind.entry(kind).or_default() += 1;
        *report.by_tier.entry(tier.clone()).or_default() += 1;
        *report.by_namespace.entry(namespace.clone()).or_default() += 1;
        let at: Moment = (time_ms, line.time.unwrap_or_default());
        *window = Some(match window.take() {
            None => (at.clone(), at.clone()),
            Some((first, last)) => (first.min(at.clone()), last.max(at.clone())),
        });
        match line.found {
            Some(found) if found == expected => report.own_data_refused += 1,
            Some(found) => {
                let pair = pairs
                    .entry((expected.clone(), found.clone()))
                    .or_insert_with(|| Pair {
                        expected,
                        found,
                        count: 0,
                        first: at.clone(),
                        last: at.clone(),
                        tiers: BTreeMap::new(),
                        namespaces: BTreeMap::new(),
                    });
                pair.count += 1;
                pair.first = pair.first.clone().min(at.clone());
                pair.last = pair.last.clone().max(at);
                *pair.tiers.entry(tier).or_default() += 1;
                *pair.namespaces.entry(namespace).or_default() += 1;
            }
            None => report.unattributed += 1,
        }
    }
    Ok(())
}

/// Why nothing was served, for the report's reader.
pub const NOTHING_SERVED: &str = "Served to the wrong owner: nothing. Every line is a refusal: \
the value was refused before it reached the caller, who got a miss (and, with get_or_load, a \
fresh load for its own key). By construction a cached value is returned only after it proves \
that it belongs to the key asked for: a remote value by its MAC over the full key (tenant, \
device, item, namespace), an in-process value by the key it carries.";

impl LogReport {
    /// The report as text, listing at most `top` pairs.
    pub fn text(&self, top: usize) -> String {
        let mut out = String::new();
        let files = self.files.len();
        out.push_str(&format!(
            "{} violation report(s) in {files} log(s)",
            self.violations
        ));
        if let (Some(first), Some(last)) = (&self.first, &self.last) {
            out.push_str(&format!(", from {first} to {last}"));
        }
        out.push('\n');
        let list = |map: &BTreeMap<String, u64>| {
            map.iter()
                .map(|(name, count)| format!("{name} {count}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.violations > 0 {
            out.push_str(&format!("  by kind:      {}\n", list(&self.by_kind)));
            out.push_str(&format!("  by tier:      {}\n", list(&self.by_tier)));
            out.push_str(&format!("  by namespace: {}\n", list(&self.by_namespace)));
        }
        out.push_str(&format!(
            "\n{} owner(s) were offered another owner's data ({} distinct pair(s)); the data of {} owner(s) was offered to others.\n",
            self.owners_offered_others_data,
            self.pairs.len(),
            self.owners_whose_data_was_offered
        ));
        for pair in self.pairs.iter().take(top) {
            out.push_str(&format!(
                "  {:>7}x  asked by {}  <-  data of {}  ({} .. {}; {}; {})\n",
                pair.count,
                pair.expected,
                pair.found,
                pair.first.1,
                pair.last.1,
                list(&pair.tiers),
                list(&pair.namespaces)
            ));
        }
        if self.pairs.len() > top {
            out.push_str(&format!(
                "  … {} more pair(s) (all of them in --json)\n",
                self.pairs.len() - top
            ));
        }
        out.push_str(&format!(
            "{} refusal(s) of the asking owner's own data (another item, or undecodable); {} with no owner to name (bad tag, malformed, another namespace).\n",
            self.own_data_refused, self.unattributed
        ));
        if self.dropped > 0 || !self.full_logs.is_empty() || self.unreadable_lines > 0 {
            out.push_str(&format!(
                "\nINCOMPLETE: {} report(s) dropped by instances that could not keep up; {} log(s) full ({}); {} unreadable line(s). The figures above are lower bounds.\n",
                self.dropped,
                self.full_logs.len(),
                self.full_logs
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                self.unreadable_lines
            ));
        }
        out.push('\n');
        out.push_str(NOTHING_SERVED);
        out.push('\n');
        out
    }
}
