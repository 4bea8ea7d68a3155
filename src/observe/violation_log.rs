//! `ViolationLog`: a violation sink that appends JSON lines to a file, off the caller's thread.
//!
//! The lines are written by hand rather than through serde: one flat object of strings and
//! numbers, so the library keeps no serde dependency for it; the unit tests read every line
//! back with `serde_json`, and `scoped-cache-audit report` reads them the same way.

use crate::id::IdRepr;
use crate::key::{Escaped, Owner};
use crate::observe::tier_name;
use crate::violation::{Violation, ViolationReport};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::{SystemTime, UNIX_EPOCH};

/// A violation sink that appends one JSON line per [`ViolationReport`] to a file: time,
/// namespace, tier, kind, expected owner, found owner, store key. Never payload bytes.
///
/// **It never blocks the caller.** A report is queued (a bounded queue, by default 4096) and a
/// writer thread of its own formats and appends it; when the queue is full the report is
/// dropped and counted, and the writer records how many it lost in the log itself
/// (`{"dropped":N,"reason":"queue_full"}`). **The file is bounded**: once it reaches
/// [`max_bytes`](ViolationLogBuilder::max_bytes) (default 64 MiB) the log stops, writes one
/// last line saying so (`{"log_full":true}`), and counts what it no longer writes; the first
/// reports of an incident are the ones kept, since they say when and where it began. Written
/// lines reach the file whenever the queue runs empty, so a crash loses at most what was
/// queued.
///
/// Each violation line is one JSON object:
///
/// | field | value |
/// |---|---|
/// | `time`, `time_ms` | when the violation was reported: RFC 3339 UTC, and ms since the Unix epoch |
/// | `namespace`, `tier`, `kind` | the namespace `NAME`, `"local"` or `"remote"`, the [`ViolationKind`](crate::ViolationKind) name |
/// | `expected` | the owner asked for: `{"tenant": ID, "device": ID}` |
/// | `found` | the owner whose data the value proved to be ([`ViolationReport::found_owner`]), or `null` when nothing inside it was believed |
/// | `found_namespace` | for `namespace_mismatch` only: the namespace the value was sealed for |
/// | `key` | the store key read ([`ViolationReport::key`]), written as [`Escaped`] |
///
/// An `ID` is a JSON number for an id made with `from_u64`, a string for a text id, and
/// `{"uuid":"…"}` for a UUID, so ids of different kinds never read alike. `scoped-cache-audit
/// report LOG…` reads the logs of many instances and answers who was offered whose data.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use scoped_cache::{Client, DeviceId, Key, KeyId, KeyRing, MemoryStore, Namespace, RawBytes, TenantId, ViolationLog};
/// use scoped_cache::store::RemoteStore;
/// use std::sync::Arc;
/// # struct Thumbnails;
/// # impl Namespace for Thumbnails {
/// #     const NAME: &'static str = "thumb";
/// #     const SCHEMA: u16 = 1;
/// #     type Item = u64;
/// #     type Value = bytes::Bytes;
/// #     type Codec = RawBytes;
/// # }
/// let dir = tempfile::tempdir()?;
/// let log = ViolationLog::open(dir.path().join("violations.jsonl"))?;
/// let store = Arc::new(MemoryStore::default());
/// let client = Client::builder()
///     .key_ring(KeyRing::new(KeyId(1), &[42; 32])?)
///     .remote_shared(store.clone())
///     .on_violation(log.sink())
///     .build()?;
/// let thumbs = client.cache::<Thumbnails>().local_capacity(0).build()?;
/// let alice = Key::new(TenantId::new("alice")?, DeviceId::new("cam-7")?, 9);
/// let bob = Key::new(TenantId::new("bob")?, DeviceId::new("cam-7")?, 9);
/// thumbs.insert(&alice, bytes::Bytes::from_static(b"alice's jpeg")).await?;
/// store.set(&bob.encode(), store.get(&alice.encode()).await?.unwrap(), None).await?;
/// assert_eq!(thumbs.get(&bob).await, None);
///
/// log.flush()?; // waits until every report queued so far is in the file
/// let text = std::fs::read_to_string(dir.path().join("violations.jsonl"))?;
/// assert!(text.contains(r#""kind":"owner_mismatch","expected":{"tenant":"bob","device":"cam-7"},"found":{"tenant":"alice","device":"cam-7"}"#));
/// assert!(!text.contains("jpeg"));
/// assert_eq!(log.stats().logged, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct ViolationLog {
    sender: SyncSender<Message>,
    counts: Arc<Counts>,
    path: Arc<Path>,
}

/// Configures a [`ViolationLog`]; from [`ViolationLog::builder`].
#[derive(Debug)]
#[must_use]
pub struct ViolationLogBuilder {
    path: PathBuf,
    max_bytes: u64,
    queue: usize,
}

/// What a [`ViolationLog`] has done so far; from [`ViolationLog::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ViolationLogStats {
    /// Reports written to the file.
    pub logged: u64,
    /// Reports dropped because the queue was full (the writer could not keep up).
    pub dropped_queue_full: u64,
    /// Reports not written because the file had reached its size limit.
    pub dropped_log_full: u64,
    /// Writes that failed (the file system refused); their reports are lost.
    pub write_errors: u64,
}

#[derive(Default)]
struct Counts {
    logged: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_log_full: AtomicU64,
    write_errors: AtomicU64,
}

enum Message {
    Report {
        time_ms: u64,
        report: Box<ViolationReport>,
    },
    /// Reply once everything queued before is in the file.
    Flush(mpsc::Sender<Result<(), String>>),
}

impl ViolationLog {
    /// Default size limit of the file: 64 MiB.
    pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
    /// Default number of reports that may wait for the writer.
    pub const DEFAULT_QUEUE: usize = 4096;

    /// Opens (or creates) `path` for appending, with the default limits.
    ///
    /// # Errors
    ///
    /// As [`ViolationLogBuilder::open`].
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        Self::builder(path).open()
    }

    /// A builder for a log at `path`.
    pub fn builder(path: impl AsRef<Path>) -> ViolationLogBuilder {
        ViolationLogBuilder {
            path: path.as_ref().to_path_buf(),
            max_bytes: Self::DEFAULT_MAX_BYTES,
            queue: Self::DEFAULT_QUEUE,
        }
    }

    /// The sink to give [`ClientBuilder::on_violation`](crate::ClientBuilder::on_violation).
    /// Every sink of one log shares its queue and file.
    pub fn sink(&self) -> impl Fn(&ViolationReport) + Send + Sync + 'static {
        let log = self.clone();
        move |report| log.record(report)
    }

    /// Queues `report` for the file, or drops and counts it when the queue is full. Never
    /// blocks.
    pub fn record(&self, report: &ViolationReport) {
        let message = Message::Report {
            time_ms: now_ms(),
            report: Box::new(report.clone()),
        };
        match self.sender.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.counts
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
            }
            // The writer has stopped (it does not while a handle exists); nothing to count into.
            Err(TrySendError::Disconnected(_)) => {
                self.counts.write_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Waits until every report queued before this call is written and flushed to the file.
    /// Blocks (unlike [`record`](Self::record)): for shutdown, tests and tools.
    ///
    /// # Errors
    ///
    /// The first write error since the last flush, or an error when the writer thread is gone.
    pub fn flush(&self) -> io::Result<()> {
        let (reply, replied) = mpsc::channel();
        let gone = || io::Error::other("the violation log's writer thread has stopped");
        self.sender
            .send(Message::Flush(reply))
            .map_err(|_| gone())?;
        replied
            .recv()
            .map_err(|_| gone())?
            .map_err(io::Error::other)
    }

    /// What the log has written and dropped so far.
    pub fn stats(&self) -> ViolationLogStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ViolationLogStats {
            logged: load(&self.counts.logged),
            dropped_queue_full: load(&self.counts.dropped_queue_full),
            dropped_log_full: load(&self.counts.dropped_log_full),
            write_errors: load(&self.counts.write_errors),
        }
    }

    /// The file the log appends to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::fmt::Debug for ViolationLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViolationLog")
            .field("path", &self.path)
            .field("stats", &self.stats())
            .finish()
    }
}

impl ViolationLogBuilder {
    /// The size the file may reach before the log stops (default
    /// [`ViolationLog::DEFAULT_MAX_BYTES`]); what is already in it counts.
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// How many reports may wait for the writer before more are dropped (default
    /// [`ViolationLog::DEFAULT_QUEUE`], at least 1).
    pub fn queue(mut self, reports: usize) -> Self {
        self.queue = reports.max(1);
        self
    }

    /// Opens (or creates) the file for appending and starts the writer thread, which ends when
    /// the last handle and sink of the log are dropped.
    ///
    /// # Errors
    ///
    /// The file cannot be opened for appending, or the thread cannot be started.
    pub fn open(self) -> io::Result<ViolationLog> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let size = file.metadata()?.len();
        let (sender, receiver) = mpsc::sync_channel(self.queue);
        let counts = Arc::new(Counts::default());
        let mut writer = Writer {
            out: BufWriter::new(file),
            size,
            max_bytes: self.max_bytes,
            full: false,
            counts: Arc::clone(&counts),
            dropped_noted: 0,
            error: None,
            line: String::new(),
        };
        std::thread::Builder::new()
            .name("violation-log".into())
            .spawn(move || writer.run(receiver))?;
        Ok(ViolationLog {
            sender,
            counts,
            path: self.path.into(),
        })
    }
}

/// The writer thread's state.
struct Writer {
    out: BufWriter<File>,
    /// Bytes in the file.
    size: u64,
    max_bytes: u64,
    /// The size limit was reached and said so; nothing more is written.
    full: bool,
    counts: Arc<Counts>,
    /// Queue-full drops already written to the log.
    dropped_noted: u64,
    /// The first write error since the last flush.
    error: Option<String>,
    line: String,
}

impl Writer {
    fn run(&mut self, receiver: Receiver<Message>) {
        while let Ok(message) = receiver.recv() {
            self.handle(message);
            while let Ok(message) = receiver.try_recv() {
                self.handle(message);
            }
            // The queue ran empty: say what was dropped, and let the lines reach the file.
            self.note_drops();
            self.flush();
        }
        self.note_drops();
        self.flush();
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Report { time_ms, report } => {
                self.note_drops();
                self.line.clear();
                report_line(&mut self.line, time_ms, &report);
                if self.append() {
                    self.counts.logged.fetch_add(1, Ordering::Relaxed);
                } else if self.full {
                    self.counts.dropped_log_full.fetch_add(1, Ordering::Relaxed);
                }
            }
            Message::Flush(reply) => {
                self.note_drops();
                self.flush();
                let _ = reply.send(self.error.take().map_or(Ok(()), Err));
            }
        }
    }

    /// Writes a line counting the reports dropped for a full queue since the last such line.
    fn note_drops(&mut self) {
        let dropped = self.counts.dropped_queue_full.load(Ordering::Relaxed);
        if dropped > self.dropped_noted && !self.full {
            self.line.clear();
            let time_ms = now_ms();
            line_start(&mut self.line, time_ms);
            let _ = write!(
                self.line,
                ",\"dropped\":{},\"reason\":\"queue_full\"}}",
                dropped - self.dropped_noted
            );
            self.line.push('\n');
            self.dropped_noted = dropped;
            self.append();
        }
    }

    /// Appends `self.line` unless the file is full; once the next line would pass the limit,
    /// writes the closing `log_full` line instead. Whether the line was written.
    fn append(&mut self) -> bool {
        if self.full {
            return false;
        }
        if self.size + self.line.len() as u64 > self.max_bytes {
            self.full = true;
            self.line.clear();
            line_start(&mut self.line, now_ms());
            let _ = writeln!(
                self.line,
                ",\"log_full\":true,\"max_bytes\":{}}}",
                self.max_bytes
            );
            self.write_line();
            return false;
        }
        self.write_line()
    }

    fn write_line(&mut self) -> bool {
        match self.out.write_all(self.line.as_bytes()) {
            Ok(()) => {
                self.size += self.line.len() as u64;
                true
            }
            Err(error) => {
                self.counts.write_errors.fetch_add(1, Ordering::Relaxed);
                self.error.get_or_insert_with(|| error.to_string());
                false
            }
        }
    }

    fn flush(&mut self) {
        if let Err(error) = self.out.flush() {
            self.counts.write_errors.fetch_add(1, Ordering::Relaxed);
            self.error.get_or_insert_with(|| error.to_string());
        }
    }
}

/// `{"time":"…","time_ms":…` (no closing brace).
fn line_start(out: &mut String, time_ms: u64) {
    out.push_str("{\"time\":\"");
    rfc3339(out, time_ms);
    let _ = write!(out, "\",\"time_ms\":{time_ms}");
}

/// One violation report as a JSON line.
fn report_line(out: &mut String, time_ms: u64, report: &ViolationReport) {
    line_start(out, time_ms);
    out.push_str(",\"namespace\":");
    json_str(out, report.namespace);
    let _ = write!(
        out,
        ",\"tier\":\"{}\",\"kind\":\"{}\",\"expected\":",
        tier_name(report.tier),
        report.violation.kind().name()
    );
    owner(out, &report.expected);
    out.push_str(",\"found\":");
    match report.found_owner() {
        Some(found) => owner(out, found),
        None => out.push_str("null"),
    }
    if let Violation::NamespaceMismatch { found, .. } = &report.violation {
        out.push_str(",\"found_namespace\":");
        json_str(out, found);
    }
    out.push_str(",\"key\":");
    json_str(out, &Escaped(&report.key).to_string());
    out.push_str("}\n");
}

fn owner(out: &mut String, owner: &Owner) {
    out.push_str("{\"tenant\":");
    id(out, &owner.tenant.0);
    out.push_str(",\"device\":");
    id(out, &owner.device.0);
    out.push('}');
}

/// A number, a string, or `{"uuid":"…"}`: ids of different kinds never read alike.
fn id(out: &mut String, id: &IdRepr) {
    match id {
        IdRepr::Num(number) => {
            let _ = write!(out, "{number}");
        }
        IdRepr::Uuid(bytes) => {
            out.push_str("{\"uuid\":\"");
            for (i, byte) in bytes.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    out.push('-');
                }
                let _ = write!(out, "{byte:02x}");
            }
            out.push_str("\"}");
        }
        IdRepr::Inline { .. } | IdRepr::Heap(_) => json_str(out, id.as_text().unwrap_or_default()),
    }
}

/// A JSON string: `"` and `\` escaped, control characters as `\u00XX` (RFC 8259).
fn json_str(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `time_ms` as RFC 3339 UTC with milliseconds, e.g. `2024-03-01T12:00:00.000Z`.
fn rfc3339(out: &mut String, time_ms: u64) {
    let (days, ms_of_day) = (time_ms / 86_400_000, time_ms % 86_400_000);
    let (year, month, day) = civil_from_days(days);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    );
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{DeviceId, TenantId};
    use crate::violation::{Malformed, Tier};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn report(expected: Owner, violation: Violation) -> ViolationReport {
        ViolationReport {
            namespace: "thumb",
            tier: Tier::Remote,
            expected,
            violation,
            key: b"sc1:thumb:T\x01\x08\"\\".to_vec(),
        }
    }

    fn lines(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
            .collect()
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let at = |ms| {
            let mut out = String::new();
            rfc3339(&mut out, ms);
            out
        };
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(1_709_294_400_123), "2024-03-01T12:00:00.123Z");
        assert_eq!(at(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn every_kind_of_report_is_one_json_line_with_authenticated_owners_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.jsonl");
        let log = ViolationLog::open(&path).unwrap();
        let bob = Owner::new(TenantId::new("bob").unwrap(), DeviceId::from_u64(7));
        let alice = Owner::new(TenantId::from_uuid([0xab; 16]), DeviceId::from_u64(7));
        let sink = log.sink();
        for violation in [
            Violation::OwnerMismatch {
                expected: bob.clone(),
                found: alice.clone(),
            },
            Violation::ItemMismatch,
            Violation::NamespaceMismatch {
                expected: "thumb",
                found: "events".into(),
            },
            Violation::BadTag,
            Violation::Malformed {
                reason: Malformed::Truncated,
            },
        ] {
            sink(&report(bob.clone(), violation));
        }
        log.flush().unwrap();
        let lines = lines(&path);
        let bob_json = json!({"tenant": "bob", "device": 7});
        let alice_json =
            json!({"tenant": {"uuid": "abababab-abab-abab-abab-abababababab"}, "device": 7});
        let found: Vec<(&str, &Value)> = lines
            .iter()
            .map(|line| (line["kind"].as_str().unwrap(), &line["found"]))
            .collect();
        assert_eq!(
            found,
            [
                ("owner_mismatch", &alice_json),
                ("item_mismatch", &bob_json),
                ("namespace_mismatch", &Value::Null),
                ("bad_tag", &Value::Null),
                ("malformed", &Value::Null),
            ]
        );
        for line in &lines {
            assert_eq!(line["expected"], bob_json);
            assert_eq!(line["namespace"], "thumb");
            assert_eq!(line["tier"], "remote");
            assert_eq!(line["key"], r#"sc1:thumb:T\x01\x08\"\\"#);
            assert!(line["time_ms"].as_u64().unwrap() > 1_700_000_000_000);
        }
        assert_eq!(lines[2]["found_namespace"], "events");
        assert_eq!(log.stats().logged, 5);
    }

    #[test]
    fn the_file_stops_at_its_limit_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.jsonl");
        let log = ViolationLog::builder(&path).max_bytes(1000).open().unwrap();
        let owner = Owner::new(TenantId::from_u64(1), DeviceId::from_u64(2));
        for _ in 0..20 {
            log.record(&report(owner.clone(), Violation::BadTag));
        }
        log.flush().unwrap();
        let stats = log.stats();
        let lines = lines(&path);
        assert_eq!(stats.logged + stats.dropped_log_full, 20, "{stats:?}");
        assert!(stats.dropped_log_full > 0, "{stats:?}");
        assert_eq!(lines.len() as u64, stats.logged + 1);
        assert_eq!(lines.last().unwrap()["log_full"], true);
        let size = std::fs::metadata(&path).unwrap().len();
        let marker = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .last()
            .unwrap()
            .len()
            + 1;
        assert!(size - marker as u64 <= 1000, "{size} bytes");
    }

    #[test]
    fn a_full_queue_drops_counts_and_logs_the_count_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.jsonl");
        let log = ViolationLog::builder(&path).queue(1).open().unwrap();
        let owner = Owner::new(TenantId::from_u64(1), DeviceId::from_u64(2));
        let sent = 20_000;
        for _ in 0..sent {
            log.record(&report(owner.clone(), Violation::BadTag));
        }
        log.flush().unwrap();
        let stats = log.stats();
        assert_eq!(stats.logged + stats.dropped_queue_full, sent, "{stats:?}");
        let lines = lines(&path);
        let dropped: u64 = lines.iter().filter_map(|l| l["dropped"].as_u64()).sum();
        let logged = lines.iter().filter(|l| l.get("kind").is_some()).count() as u64;
        assert_eq!((logged, dropped), (stats.logged, stats.dropped_queue_full));
    }

    proptest! {
        /// Any text id, however hostile, stays inside its JSON string.
        #[test]
        fn text_ids_round_trip_through_json(tenant in "\\PC{1,40}", device in "[\"\\\\\u{202e}a-z]{1,8}") {
            let (Ok(tenant), Ok(device)) = (TenantId::new(&tenant), DeviceId::new(&device)) else {
                return Ok(());
            };
            let owner = Owner::new(tenant.clone(), device.clone());
            let mut line = String::new();
            report_line(&mut line, 0, &report(owner, Violation::ItemMismatch));
            let value: Value = serde_json::from_str(&line).map_err(|e| TestCaseError::fail(format!("{line}: {e}")))?;
            prop_assert_eq!(value["expected"]["tenant"].as_str(), tenant.as_str(), "{}", line);
            prop_assert_eq!(value["found"]["device"].as_str(), device.as_str(), "{}", line);
        }
    }
}
