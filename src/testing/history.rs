//! The values a `FaultyStore` was given, per key, for the `stale` and `replay` faults.

use super::rng::SharedRng;
use crate::clock::{deadline, is_expired};
use crate::sync::{Mutex, lock};
use bytes::Bytes;
use std::collections::HashMap;
use std::time::Duration;

/// Shards of the history map, to keep concurrent writers apart.
const SHARDS: usize = 16;

/// One value written under a key.
struct Written {
    value: Bytes,
    /// When it expires, in ms: the expiry its envelope claims, else when its TTL in the store
    /// passes ([`NEVER`](crate::envelope::NEVER) for no TTL).
    expires_ms: u64,
}

type Shard = HashMap<Bytes, Vec<Written>, ahash::RandomState>;

/// The last `depth` values written under each of up to `max_keys` keys, oldest first.
pub(crate) struct History {
    shards: Box<[Mutex<Shard>]>,
    /// Fixed seeds: which shard a key lands in (and so which keys fit) does not vary by run.
    hasher: ahash::RandomState,
    depth: usize,
    keys_per_shard: usize,
}

impl History {
    pub(crate) fn new(depth: usize, max_keys: usize) -> Self {
        let hasher = ahash::RandomState::with_seeds(1, 2, 3, 4);
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(hasher.clone())))
                .collect(),
            hasher,
            depth: depth.max(1),
            keys_per_shard: max_keys.div_ceil(SHARDS),
        }
    }

    fn shard(&self, key: &[u8]) -> Option<&Mutex<Shard>> {
        let index = self.hasher.hash_one(key) as usize % SHARDS;
        self.shards.get(index)
    }

    /// Remembers `value`, written under `key` at `now_ms` with `ttl`.
    pub(crate) fn record(&self, key: Bytes, value: Bytes, ttl: Option<Duration>, now_ms: u64) {
        let Some(shard) = self.shard(&key) else {
            return;
        };
        // An envelope expires when it says, not when the store drops it (earlier, by the
        // writer's expiry margin): only then will a reader refuse it as expired.
        let expires_ms =
            crate::envelope::claimed_expiry(&value).unwrap_or_else(|| deadline(now_ms, ttl));
        let written = Written { value, expires_ms };
        let mut shard = lock(shard);
        if let Some(values) = shard.get_mut(&key) {
            if values.len() >= self.depth {
                values.remove(0);
            }
            values.push(written);
        } else if shard.len() < self.keys_per_shard {
            shard.insert(key, vec![written]);
        }
    }

    /// A remembered value of `key` whose TTL has passed at `now_ms`, picked at random.
    pub(crate) fn stale(&self, key: &[u8], now_ms: u64, rng: &SharedRng) -> Option<Bytes> {
        let shard = lock(self.shard(key)?);
        let expired: Vec<&Written> = shard
            .get(key)?
            .iter()
            .filter(|written| is_expired(written.expires_ms, || now_ms))
            .collect();
        expired
            .get(rng.below(expired.len()))
            .map(|written| written.value.clone())
    }

    /// A value of `key` written before the latest one, unexpired at `now_ms` and with other
    /// bytes than the latest, picked at random.
    pub(crate) fn replay(&self, key: &[u8], now_ms: u64, rng: &SharedRng) -> Option<Bytes> {
        let shard = lock(self.shard(key)?);
        let (latest, earlier) = shard.get(key)?.split_last()?;
        let candidates: Vec<&Written> = earlier
            .iter()
            .filter(|written| {
                !is_expired(written.expires_ms, || now_ms) && written.value != latest.value
            })
            .collect();
        candidates
            .get(rng.below(candidates.len()))
            .map(|written| written.value.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Option<Duration> = Some(Duration::from_secs(1));

    fn bytes(text: &'static str) -> Bytes {
        Bytes::from_static(text.as_bytes())
    }

    #[test]
    fn stale_hands_back_only_expired_values_of_the_key() {
        let history = History::new(4, 100);
        let rng = SharedRng::new(1);
        history.record(bytes("k"), bytes("old"), SECOND, 1_000);
        history.record(bytes("k"), bytes("new"), SECOND, 1_500);
        history.record(bytes("k"), bytes("forever"), None, 1_500);
        history.record(bytes("other"), bytes("theirs"), SECOND, 0);
        assert_eq!(
            history.stale(b"k", 1_999, &rng),
            None,
            "nothing expired yet"
        );
        for _ in 0..20 {
            assert_eq!(history.stale(b"k", 2_000, &rng), Some(bytes("old")));
        }
        let later = history.stale(b"k", 2_500, &rng);
        assert!(
            matches!(later.as_deref(), Some(b"old" | b"new")),
            "{later:?}"
        );
        assert_eq!(history.stale(b"absent", 9_999, &rng), None);
    }

    #[test]
    fn replay_hands_back_earlier_unexpired_values_with_other_bytes() {
        let history = History::new(4, 100);
        let rng = SharedRng::new(1);
        history.record(bytes("k"), bytes("v1"), SECOND, 1_000);
        assert_eq!(history.replay(b"k", 1_000, &rng), None, "only the latest");
        history.record(bytes("k"), bytes("v1"), SECOND, 1_100);
        assert_eq!(
            history.replay(b"k", 1_100, &rng),
            None,
            "same bytes as the latest"
        );
        history.record(bytes("k"), bytes("v2"), SECOND, 1_200);
        assert_eq!(history.replay(b"k", 1_200, &rng), Some(bytes("v1")));
        assert_eq!(history.replay(b"k", 2_100, &rng), None, "both v1 expired");
    }

    #[test]
    fn history_is_bounded_per_key_and_in_keys() {
        let history = History::new(2, SHARDS);
        let rng = SharedRng::new(1);
        for (at, value) in [(0, "a"), (1, "b"), (2, "c")] {
            history.record(bytes("k"), bytes(value), Some(Duration::from_millis(1)), at);
        }
        for _ in 0..20 {
            let stale = history.stale(b"k", 10, &rng);
            assert!(matches!(stale.as_deref(), Some(b"b" | b"c")), "{stale:?}");
        }
        for i in 0..1_000u32 {
            history.record(Bytes::from(i.to_be_bytes().to_vec()), bytes("v"), None, 0);
        }
        let kept: usize = history.shards.iter().map(|shard| lock(shard).len()).sum();
        assert!(kept <= SHARDS + 1, "{kept} keys kept");
    }
}
