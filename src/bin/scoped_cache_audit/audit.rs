//! The audit: every entry judged, counted per namespace, refused ones listed and (with
//! `--delete`) removed by compare-and-delete once the ring has proven to be the fleet's.

use crate::classify::{Finding, Kind, Refused, classify};
use crate::violation_report::Owner;
use bytes::Bytes;
use scoped_cache::KeyRing;
use scoped_cache::envelope::{Envelope, Escaped, RawKey};
use scoped_cache::store::{KeyLayout, RemoteStore};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// How many entries refusable for deletion are held back, while no entry has yet verified
/// under the ring, before the audit concludes that the secret is wrong.
pub const UNPROVEN_LIMIT: usize = 10_000;

/// Counts of one namespace (the namespace of the key an entry is stored under).
#[derive(Debug, Default, Serialize)]
pub struct NamespaceCounts {
    pub entries: u64,
    pub valid: u64,
    /// Refused entries by kind.
    pub refused: BTreeMap<&'static str, u64>,
    /// Schemas of the authentic entries filed under their own key (valid or expired).
    pub schemas: BTreeMap<u16, u64>,
}

/// A key as the report shows it: namespace, owner, and the item's bytes in hex.
#[derive(Debug, Serialize)]
pub struct KeyView {
    pub namespace: String,
    pub tenant: crate::violation_report::Id,
    pub device: crate::violation_report::Id,
    pub item: String,
}

impl KeyView {
    fn of(key: &RawKey) -> Self {
        let owner = Owner::of(&key.owner);
        Self {
            namespace: key.namespace.clone(),
            tenant: owner.tenant,
            device: owner.device,
            item: key.item.iter().fold(String::new(), |mut hex, byte| {
                let _ = write!(hex, "{byte:02x}");
                hex
            }),
        }
    }
}

/// One refused entry.
#[derive(Debug, Serialize)]
pub struct Listed {
    /// The full store key (the store's prefix included), as `redis-cli` takes it in quotes.
    pub store_key: String,
    pub kind: &'static str,
    /// The key it is stored under.
    pub stored_under: Option<KeyView>,
    /// The key it was sealed for, when its tag verified; never an unauthenticated claim.
    pub found: Option<KeyView>,
    pub detail: Option<String>,
    pub deleted: bool,
}

/// The audit's report.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub servers: Vec<String>,
    /// The `SCAN MATCH` pattern, escaped as the store keys are.
    pub pattern: String,
    /// Keys per second at most; `None`: unlimited.
    pub rate_limit: Option<u64>,
    pub elapsed_s: f64,
    pub keys_per_s: f64,
    /// Keys `SCAN` returned.
    pub scanned: u64,
    /// Keys gone between `SCAN` and `GET` (deleted or expired), or not strings.
    pub gone: u64,
    pub namespaces: BTreeMap<String, NamespaceCounts>,
    /// Integrity failures: mis-filed, forged, damaged.
    pub integrity_failures: u64,
    /// Entries refused as freshness misses (expired, unknown key id).
    pub freshness_refused: u64,
    /// Keys under the pattern that are not scoped-cache keys.
    pub not_keys: u64,
    /// Entries that verified under the ring.
    pub authenticated: u64,
    pub deleted: u64,
    /// Deletes skipped because the entry had changed since it was read, or that failed.
    pub delete_errors: u64,
    pub refused: Vec<Listed>,
}

/// The audit ran, but its ring proved to be the wrong one.
#[derive(Debug)]
pub struct SecretMismatch {
    pub bad_tags: u64,
    pub unknown_key_ids: BTreeMap<String, u64>,
}

/// The state of one audit.
pub struct Audit {
    envelope: Envelope,
    ring: KeyRing,
    prefix: Vec<u8>,
    now_ms: u64,
    /// The store to delete from, with `--delete`.
    delete: Option<Arc<dyn RemoteStore>>,
    /// Deletions held back until an entry proves the ring is the fleet's: (index in
    /// `refused`, key without prefix, the bytes read).
    unproven: Vec<(usize, Vec<u8>, Bytes)>,
    pub report: Report,
}

impl Audit {
    pub fn new(
        ring: KeyRing,
        prefix: Vec<u8>,
        now_ms: u64,
        delete: Option<Arc<dyn RemoteStore>>,
    ) -> Self {
        Self {
            envelope: Envelope::default(),
            ring,
            prefix,
            now_ms,
            delete,
            unproven: Vec::new(),
            report: Report::default(),
        }
    }

    /// Judges a batch of (full store key, value) pairs, deleting what `--delete` removes once
    /// the ring is proven.
    ///
    /// # Errors
    ///
    /// [`SecretMismatch`] once [`UNPROVEN_LIMIT`] entries refused and none verified.
    pub async fn judge(
        &mut self,
        batch: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), SecretMismatch> {
        for (full_key, value) in batch {
            self.report.scanned += 1;
            let Some(value) = value else {
                self.report.gone += 1;
                continue;
            };
            let key = full_key
                .strip_prefix(self.prefix.as_slice())
                .unwrap_or(&full_key)
                .to_vec();
            // Opened for the encoded key it is stored under, in either store layout (an
            // owner-affine key without its hash tag); deleted, if at all, under `key` itself.
            let stored_under = KeyLayout::key_stored_under(&key);
            let finding = classify(
                &self.envelope,
                &stored_under,
                &value,
                self.now_ms,
                &self.ring,
            );
            if finding.is_authenticated() {
                self.report.authenticated += 1;
            }
            match finding {
                Finding::Valid { namespace, schema } => {
                    let counts = self.report.namespaces.entry(namespace).or_default();
                    counts.entries += 1;
                    counts.valid += 1;
                    *counts.schemas.entry(schema).or_default() += 1;
                }
                Finding::Refused(refused) => {
                    self.refuse(&full_key, key, Bytes::from(value), refused)
                        .await;
                }
            }
            if self.unproven.len() >= UNPROVEN_LIMIT && self.report.authenticated == 0 {
                return Err(self.secret_mismatch());
            }
        }
        if self.report.authenticated > 0 {
            for (index, key, value) in std::mem::take(&mut self.unproven) {
                self.delete(index, &key, &value).await;
            }
        }
        Ok(())
    }

    async fn refuse(&mut self, full_key: &[u8], key: Vec<u8>, value: Bytes, refused: Refused) {
        let Refused {
            kind,
            stored_under,
            found,
            detail,
            ..
        } = refused;
        match &stored_under {
            Some(stored) => {
                let counts = self
                    .report
                    .namespaces
                    .entry(stored.namespace.clone())
                    .or_default();
                counts.entries += 1;
                *counts.refused.entry(kind.name()).or_default() += 1;
            }
            None => self.report.not_keys += 1,
        }
        if kind.is_integrity() {
            self.report.integrity_failures += 1;
        } else if kind != Kind::NotAKey {
            self.report.freshness_refused += 1;
        }
        self.report.refused.push(Listed {
            store_key: Escaped(full_key).to_string(),
            kind: kind.name(),
            stored_under: stored_under.as_ref().map(KeyView::of),
            found: found.as_ref().map(KeyView::of),
            detail,
            deleted: false,
        });
        if kind.is_deleted() && self.delete.is_some() {
            let index = self.report.refused.len() - 1;
            if self.report.authenticated > 0 {
                self.delete(index, &key, &value).await;
            } else {
                self.unproven.push((index, key, value));
            }
        }
    }

    /// Deletes `key` only while it still holds `value` (the library's compare-and-delete).
    async fn delete(&mut self, index: usize, key: &[u8], value: &Bytes) {
        let Some(store) = &self.delete else { return };
        match store.delete_if(key, value).await {
            Ok(()) => {
                self.report.deleted += 1;
                if let Some(listed) = self.report.refused.get_mut(index) {
                    listed.deleted = true;
                }
            }
            Err(_) => self.report.delete_errors += 1,
        }
    }

    /// At the end: the ring never verified an entry, though entries were refused as sealed
    /// with another secret or key id.
    pub fn finish(&mut self) -> Result<(), SecretMismatch> {
        let refused_for_ring = self.count(Kind::BadTag) + self.count(Kind::UnknownKey);
        if self.report.authenticated == 0 && refused_for_ring > 0 {
            return Err(self.secret_mismatch());
        }
        Ok(())
    }

    fn count(&self, kind: Kind) -> u64 {
        self.report
            .namespaces
            .values()
            .map(|counts| counts.refused.get(kind.name()).copied().unwrap_or(0))
            .sum()
    }

    fn secret_mismatch(&self) -> SecretMismatch {
        let mut unknown_key_ids = BTreeMap::new();
        for listed in &self.report.refused {
            if listed.kind == Kind::UnknownKey.name() {
                let id = listed.detail.clone().unwrap_or_default();
                *unknown_key_ids.entry(id).or_default() += 1;
            }
        }
        SecretMismatch {
            bad_tags: self.count(Kind::BadTag),
            unknown_key_ids,
        }
    }

    /// Whether `--delete` was given.
    pub fn deletes(&self) -> bool {
        self.delete.is_some()
    }
}

impl Report {
    /// The summary table, and the first `listed` refused entries.
    pub fn text(&self, listed: usize) -> String {
        let mut out = String::new();
        let rate = self
            .rate_limit
            .map_or("unlimited".to_owned(), |n| format!("at most {n}/s"));
        let _ = writeln!(
            out,
            "scanned {} key(s) matching \"{}\" on {} in {:.1} s ({:.0} keys/s; rate {rate})",
            self.scanned,
            self.pattern,
            self.servers.join(", "),
            self.elapsed_s,
            self.keys_per_s
        );
        let kinds: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|kind| *kind != Kind::NotAKey)
            .collect();
        let _ = write!(
            out,
            "\n{:<20} {:>10} {:>10}",
            "namespace", "entries", "valid"
        );
        for kind in &kinds {
            let _ = write!(
                out,
                " {:>width$}",
                kind.name(),
                width = kind.name().len().max(6)
            );
        }
        out.push('\n');
        for (namespace, counts) in &self.namespaces {
            let _ = write!(
                out,
                "{namespace:<20} {:>10} {:>10}",
                counts.entries, counts.valid
            );
            for kind in &kinds {
                let count = counts.refused.get(kind.name()).copied().unwrap_or(0);
                let _ = write!(out, " {count:>width$}", width = kind.name().len().max(6));
            }
            out.push('\n');
        }
        if self.namespaces.is_empty() {
            out.push_str("(no entries)\n");
        }
        let _ = writeln!(
            out,
            "\nintegrity failures: {} (mis-filed, forged or damaged); freshness: {} (expired, unknown key id); not scoped-cache keys: {}; gone before read: {}",
            self.integrity_failures, self.freshness_refused, self.not_keys, self.gone
        );
        for entry in self.refused.iter().take(listed) {
            let _ = write!(out, "  {:<18} \"{}\"", entry.kind, entry.store_key);
            if let Some(found) = &entry.found {
                let _ = write!(
                    out,
                    "  holds {}: tenant {}, device {}, item {}",
                    found.namespace, found.tenant, found.device, found.item
                );
            }
            if let Some(detail) = &entry.detail {
                let _ = write!(out, "  ({detail})");
            }
            if entry.deleted {
                out.push_str("  deleted");
            }
            out.push('\n');
        }
        if self.refused.len() > listed {
            let _ = writeln!(
                out,
                "  … {} more (all of them in --json)",
                self.refused.len() - listed
            );
        }
        out
    }
}
