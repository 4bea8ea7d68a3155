//! The unverified baseline: a naive cache client that serves whatever the store hands it.

use crate::namespace::Thumbnails;
use crate::now_ms;
use bytes::Bytes;
use scoped_cache::envelope::Envelope;
use scoped_cache::store::RemoteStore;
use scoped_cache::{Key, KeyRing};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A naive cache client, as many are: an L1 keyed by the key bytes, the remote value's payload
/// cut out of the envelope by its length fields without checking tag, owner, item or expiry,
/// and no single-flight. The verified run's `Cache` does everything this skips.
pub struct NaiveCache {
    pub l1: Option<quick_cache::sync::Cache<Vec<u8>, Bytes>>,
    pub store: Arc<dyn RemoteStore>,
    pub ring: KeyRing,
    pub ttl: Duration,
    pub hits_l1: AtomicU64,
    pub hits_l2: AtomicU64,
    pub misses: AtomicU64,
    pub remote_errors: AtomicU64,
    pub expired_served: AtomicU64,
}

impl NaiveCache {
    pub async fn get_or_load<Fut, E>(
        &self,
        key: &Key<Thumbnails>,
        load: Fut,
    ) -> Result<Bytes, String>
    where
        Fut: Future<Output = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let encoded = key.encode();
        if let Some(value) = self.l1.as_ref().and_then(|l1| l1.get(&encoded)) {
            self.hits_l1.fetch_add(1, Ordering::Relaxed);
            return Ok(value);
        }
        match self.store.get(&encoded).await {
            Ok(Some(raw)) => {
                if let Some((payload, expires_ms)) = cut_payload(&raw) {
                    if expires_ms <= now_ms() {
                        self.expired_served.fetch_add(1, Ordering::Relaxed);
                    }
                    self.hits_l2.fetch_add(1, Ordering::Relaxed);
                    if let Some(l1) = &self.l1 {
                        l1.insert(encoded, payload.clone());
                    }
                    return Ok(payload);
                }
            }
            Ok(None) => {}
            Err(_) => {
                self.remote_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let value = load.await.map_err(|error| error.to_string())?;
        let now = now_ms();
        let expires = now.saturating_add(self.ttl.as_millis() as u64);
        let sealed = Envelope::default()
            .seal(key, &value, now, expires, &self.ring)
            .map_err(|error| error.to_string())?;
        if self
            .store
            .set(&encoded, sealed, Some(self.ttl))
            .await
            .is_err()
        {
            self.remote_errors.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(l1) = &self.l1 {
            l1.insert(encoded, value.clone());
        }
        Ok(value)
    }
}

/// The payload of an envelope found by its length fields, and its expiry, with no check at all
/// (layout: magic 4, version 1, flags 1, schema 2, key id 4, created 8, expires 8, key length 4,
/// key, payload length 4, payload, tag 32). `None` only when the lengths point outside the bytes.
fn cut_payload(raw: &Bytes) -> Option<(Bytes, u64)> {
    let u32_at = |at: usize| -> Option<usize> {
        Some(u32::from_be_bytes(raw.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let expires_ms = u64::from_be_bytes(raw.get(20..28)?.try_into().ok()?);
    let payload_len_at = 32usize.checked_add(u32_at(28)?)?;
    let start = payload_len_at.checked_add(4)?;
    let end = start.checked_add(u32_at(payload_len_at)?)?;
    (end <= raw.len()).then(|| (raw.slice(start..end), expires_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::key_ring;
    use scoped_cache::{DeviceId, TenantId};

    #[test]
    fn the_naive_cut_reads_any_envelope_without_checking_it() {
        let ring = key_ring().unwrap_or_else(|e| unreachable!("{e}"));
        let key = Key::<Thumbnails>::new(TenantId::from_u64(1), DeviceId::from_u64(2), 3);
        let sealed = Envelope::default()
            .seal(&key, b"payload", 10, 20, &ring)
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            cut_payload(&sealed),
            Some((Bytes::from_static(b"payload"), 20))
        );
        let mut flipped = sealed.to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 1; // the tag: unchecked, so the payload is still served
        assert_eq!(
            cut_payload(&Bytes::from(flipped)).map(|(payload, _)| payload),
            Some(Bytes::from_static(b"payload"))
        );
        assert_eq!(
            cut_payload(&sealed.slice(..40)),
            None,
            "lengths point past the end"
        );
        assert_eq!(cut_payload(&Bytes::new()), None);
    }
}
