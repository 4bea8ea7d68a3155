//! `FaultyStore`: a `RemoteStore` wrapper that answers reads with wrong bytes, on purpose.

use super::fault::{FaultCounts, FaultKind, FaultRates, FaultRatesError};
use super::rng::SharedRng;
use crate::id::{DeviceId, TenantId};
use crate::key::{Owner, RawKey};
use crate::store::{RemoteStore, StoreError, StoreFuture};
use crate::sync::{AtomicU64, Mutex, Ordering, lock};
use bytes::Bytes;
use std::fmt;
use std::time::Duration;

/// Recently written (key, value) pairs kept for [`FaultKind::Swap`] by default.
const DEFAULT_SWAP_POOL: usize = 1024;

/// A [`RemoteStore`] that wraps another and, at seeded per-kind rates, answers reads with the
/// wrong bytes, counting every fault it injects.
///
/// On each `get` (and each key of `get_many`) one uniform draw picks at most one
/// [`FaultKind`] with the probabilities of its [`FaultRates`]. When the picked fault cannot be
/// made (no other key written yet for `swap`, no value under the exchanged key for `confuse`, no
/// value for `corrupt`), the read is answered truthfully and nothing is counted; so
/// [`injected`](FaultyStore::injected) counts exactly the wrong answers handed out. Writes and
/// deletes go to the inner store unchanged; errors of the inner store are passed through and are
/// never counted as faults.
///
/// The random stream is fixed by the seed; under concurrency which read receives which draw
/// depends on scheduling, so counts vary slightly between concurrent runs with one seed.
///
/// It never panics, whatever the keys and values.
///
/// # Examples
///
/// A value sealed for one owner, handed to another through a `swap`, is refused by
/// [`Cache`](crate::Cache) and read as a miss:
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use bytes::Bytes;
/// use scoped_cache::testing::{FaultKind, FaultRates, FaultyStore};
/// use scoped_cache::{Client, DeviceId, Key, KeyId, KeyRing, MemoryStore, Namespace, RawBytes, TenantId};
/// use std::sync::Arc;
///
/// struct Thumbnails;
/// impl Namespace for Thumbnails {
///     const NAME: &'static str = "thumb";
///     const SCHEMA: u16 = 1;
///     type Item = u64;
///     type Value = Bytes;
///     type Codec = RawBytes;
/// }
///
/// // Every read is answered with another key's value once one has been written.
/// let store = Arc::new(
///     FaultyStore::builder(MemoryStore::default())
///         .seed(7)
///         .rates(FaultRates::none().with(FaultKind::Swap, 1.0)?)
///         .build()?,
/// );
/// let client = Client::builder()
///     .key_ring(KeyRing::new(KeyId(1), &[42; 32])?)
///     .remote_shared(store.clone())
///     .build()?;
/// // No in-process tier: every read goes to the faulty store.
/// let thumbs = client.cache::<Thumbnails>().local_capacity(0).build()?;
///
/// let alice = Key::new(TenantId::from_u64(1), DeviceId::from_u64(2), 9);
/// let bob = Key::new(TenantId::from_u64(2), DeviceId::from_u64(1), 9);
/// thumbs.insert(&alice, Bytes::from_static(b"alice's camera")).await?;
///
/// assert_eq!(thumbs.get(&bob).await, None); // handed alice's value: refused
/// assert_eq!(store.injected().get(FaultKind::Swap), 1);
/// assert_eq!(thumbs.stats().violations.total(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
pub struct FaultyStore<S: RemoteStore> {
    inner: S,
    rates: FaultRates,
    rng: SharedRng,
    recent: Option<Mutex<Recent>>,
    reads: AtomicU64,
    injected: [AtomicU64; FaultKind::ALL.len()],
}

impl<S: RemoteStore> FaultyStore<S> {
    /// A builder around `inner`: no faults, seed 0, a swap pool of 1024 pairs.
    pub fn builder(inner: S) -> FaultyStoreBuilder<S> {
        FaultyStoreBuilder {
            inner,
            rates: FaultRates::none(),
            pending: Vec::new(),
            seed: 0,
            swap_pool: DEFAULT_SWAP_POOL,
        }
    }

    /// A store around `inner` injecting faults at `rates`, seeded with `seed`.
    pub fn new(inner: S, rates: FaultRates, seed: u64) -> Self {
        Self::with_swap_pool(inner, rates, seed, DEFAULT_SWAP_POOL)
    }

    fn with_swap_pool(inner: S, rates: FaultRates, seed: u64, swap_pool: usize) -> Self {
        Self {
            inner,
            rates,
            rng: SharedRng::new(seed),
            // Written pairs are remembered only when they may be swapped in.
            recent: (rates.get(FaultKind::Swap) > 0.0).then(|| Mutex::new(Recent::new(swap_pool))),
            reads: AtomicU64::new(0),
            injected: Default::default(),
        }
    }

    /// How many faults of each kind were handed out so far.
    pub fn injected(&self) -> FaultCounts {
        FaultCounts(
            self.injected
                .each_ref()
                .map(|count| count.load(Ordering::Relaxed)),
        )
    }

    /// How many keys were read (each key of a `get_many` counts once).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// The configured rates.
    pub fn rates(&self) -> FaultRates {
        self.rates
    }

    /// The wrapped store, e.g. to inspect it or to read past the faults.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn count(&self, kind: FaultKind) {
        self.injected[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Reads `key`, perhaps answering wrongly.
    async fn read(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let Some(kind) = self.rates.pick(self.rng.next_f64()) else {
            return self.inner.get(key).await;
        };
        let wrong = match kind {
            FaultKind::Swap => self.swapped(key),
            FaultKind::Confuse => self.confused(key).await?,
            FaultKind::Corrupt => self.corrupted(key).await?,
        };
        match wrong {
            Some(wrong) => {
                self.count(kind);
                Ok(Some(wrong))
            }
            None => self.inner.get(key).await,
        }
    }

    /// A recently written value of another key.
    fn swapped(&self, key: &[u8]) -> Option<Bytes> {
        let recent = lock(self.recent.as_ref()?);
        recent.other_than(key, self.rng.below(recent.len()))
    }

    /// The value of the same namespace and item with tenant and device exchanged.
    async fn confused(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        let Ok(raw) = RawKey::decode(key) else {
            return Ok(None);
        };
        // The mix-up this fault models: a device id used as a tenant id and vice versa.
        let exchanged = Owner::new(
            TenantId(raw.owner.device.0.clone()),
            DeviceId(raw.owner.tenant.0.clone()),
        );
        if exchanged == raw.owner {
            return Ok(None);
        }
        let confused = RawKey {
            owner: exchanged,
            ..raw
        };
        self.inner.get(&confused.encode()).await
    }

    /// The stored value with one byte flipped or cut short.
    async fn corrupted(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        let Some(value) = self.inner.get(key).await? else {
            return Ok(None);
        };
        if value.is_empty() {
            return Ok(None);
        }
        let bits = self.rng.next_u64();
        let at = self.rng.below(value.len());
        Ok(Some(if bits & 1 == 0 {
            let mut flipped = value.to_vec();
            // A mask in 1..=255: the byte always changes.
            let mask = (bits >> 8) as u8 % 255 + 1;
            if let Some(byte) = flipped.get_mut(at) {
                *byte ^= mask;
            }
            Bytes::from(flipped)
        } else {
            // `at < len`: strictly shorter, possibly empty.
            value.slice(..at)
        }))
    }
}

impl<S: RemoteStore> RemoteStore for FaultyStore<S> {
    fn get<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, Option<Bytes>> {
        Box::pin(self.read(key))
    }

    fn get_many<'a>(&'a self, keys: &'a [Vec<u8>]) -> StoreFuture<'a, Vec<Option<Bytes>>> {
        Box::pin(async move {
            let mut values = Vec::with_capacity(keys.len());
            for key in keys {
                values.push(self.read(key).await?);
            }
            Ok(values)
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a [u8],
        value: Bytes,
        ttl: Option<Duration>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.inner.set(key, value.clone(), ttl).await?;
            if let Some(recent) = &self.recent {
                lock(recent).push(Bytes::copy_from_slice(key), value);
            }
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, ()> {
        self.inner.delete(key)
    }
}

impl<S: RemoteStore + fmt::Debug> fmt::Debug for FaultyStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("inner", &self.inner)
            .field("rates", &self.rates)
            .field("injected", &self.injected())
            .finish_non_exhaustive()
    }
}

/// Configures a [`FaultyStore`]; from [`FaultyStore::builder`].
#[must_use]
pub struct FaultyStoreBuilder<S: RemoteStore> {
    inner: S,
    rates: FaultRates,
    /// Rates set one by one, validated together in `build`.
    pending: Vec<(FaultKind, f64)>,
    seed: u64,
    swap_pool: usize,
}

impl<S: RemoteStore> FaultyStoreBuilder<S> {
    /// Seeds the random stream (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// All rates at once (replacing any set before).
    pub fn rates(mut self, rates: FaultRates) -> Self {
        self.rates = rates;
        self.pending.clear();
        self
    }

    /// The rate of one kind; checked by [`build`](Self::build).
    pub fn rate(mut self, kind: FaultKind, rate: f64) -> Self {
        self.pending.push((kind, rate));
        self
    }

    /// How many recently written (key, value) pairs `swap` picks from (default 1024; at least 1).
    pub fn swap_pool(mut self, pairs: usize) -> Self {
        self.swap_pool = pairs.max(1);
        self
    }

    /// Builds the store.
    ///
    /// # Errors
    ///
    /// [`FaultRatesError`] when a rate given with [`rate`](Self::rate) is outside `[0, 1]` or
    /// the rates add up to more than 1.
    pub fn build(self) -> Result<FaultyStore<S>, FaultRatesError> {
        let mut rates = self.rates;
        for (kind, rate) in self.pending {
            rates = rates.with(kind, rate)?;
        }
        Ok(FaultyStore::with_swap_pool(
            self.inner,
            rates,
            self.seed,
            self.swap_pool,
        ))
    }
}

/// A ring of the most recently written (key, value) pairs.
struct Recent {
    pairs: Vec<(Bytes, Bytes)>,
    capacity: usize,
    next: usize,
}

impl Recent {
    fn new(capacity: usize) -> Self {
        Self {
            pairs: Vec::new(),
            capacity: capacity.max(1),
            next: 0,
        }
    }

    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn push(&mut self, key: Bytes, value: Bytes) {
        if self.pairs.len() < self.capacity {
            self.pairs.push((key, value));
        } else if let Some(slot) = self.pairs.get_mut(self.next) {
            *slot = (key, value);
        }
        self.next = (self.next + 1) % self.capacity;
    }

    /// The first value, scanning from `start` and wrapping, whose key is not `key`.
    fn other_than(&self, key: &[u8], start: usize) -> Option<Bytes> {
        let (before, after) = self.pairs.split_at(start.min(self.pairs.len()));
        after
            .iter()
            .chain(before)
            .find(|(other, _)| other.as_ref() != key)
            .map(|(_, value)| value.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_store::MemoryStore;

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .map(|runtime| runtime.block_on(future))
            .unwrap_or_else(|error| unreachable!("no runtime: {error}"))
    }

    fn store(kind: FaultKind, rate: f64) -> FaultyStore<MemoryStore> {
        FaultyStore::builder(MemoryStore::default())
            .seed(1)
            .rate(kind, rate)
            .swap_pool(4)
            .build()
            .unwrap_or_else(|error| unreachable!("{error}"))
    }

    fn key(tenant: u64, device: u64) -> Vec<u8> {
        RawKey::new(
            "thumb",
            Owner::new(TenantId::from_u64(tenant), DeviceId::from_u64(device)),
            vec![9],
        )
        .map(|raw| raw.encode())
        .unwrap_or_default()
    }

    #[test]
    fn no_faults_is_transparent() {
        block_on(async {
            let store = store(FaultKind::Swap, 0.0);
            store.set(b"a", Bytes::from_static(b"1"), None).await.ok();
            for _ in 0..100 {
                assert_eq!(
                    store.get(b"a").await.ok().flatten().as_deref(),
                    Some(&b"1"[..])
                );
            }
            assert_eq!(store.injected().total(), 0, "nothing injected");
            assert_eq!(store.reads(), 100);
        });
    }

    #[test]
    fn swap_returns_another_keys_value_only() {
        block_on(async {
            let store = store(FaultKind::Swap, 1.0);
            store.set(b"a", Bytes::from_static(b"1"), None).await.ok();
            // Only the key itself was written: nothing to swap in.
            assert_eq!(
                store.get(b"a").await.ok().flatten().as_deref(),
                Some(&b"1"[..])
            );
            assert_eq!(store.injected().get(FaultKind::Swap), 0);
            for (i, key) in [b"b", b"c", b"d", b"e", b"f"].iter().enumerate() {
                store.set(*key, Bytes::from(vec![i as u8]), None).await.ok();
            }
            for _ in 0..50 {
                let got = store.get(b"f").await.ok().flatten();
                assert!(
                    got.is_some() && got.as_deref() != Some(&[4u8][..]),
                    "{got:?}"
                );
            }
            assert_eq!(store.injected().get(FaultKind::Swap), 50);
        });
    }

    #[test]
    fn confuse_reads_the_exchanged_key_when_it_exists() {
        block_on(async {
            let store = store(FaultKind::Confuse, 1.0);
            store
                .set(&key(1, 2), Bytes::from_static(b"t1d2"), None)
                .await
                .ok();
            // (2, 1) is absent: truthful answer, not counted.
            assert_eq!(
                store.get(&key(1, 2)).await.ok().flatten().as_deref(),
                Some(&b"t1d2"[..])
            );
            assert_eq!(store.injected().get(FaultKind::Confuse), 0);
            store
                .set(&key(2, 1), Bytes::from_static(b"t2d1"), None)
                .await
                .ok();
            assert_eq!(
                store.get(&key(1, 2)).await.ok().flatten().as_deref(),
                Some(&b"t2d1"[..])
            );
            assert_eq!(store.injected().get(FaultKind::Confuse), 1);
            // Tenant id equal to device id: exchanging changes nothing, so no fault.
            store
                .set(&key(3, 3), Bytes::from_static(b"t3d3"), None)
                .await
                .ok();
            assert_eq!(
                store.get(&key(3, 3)).await.ok().flatten().as_deref(),
                Some(&b"t3d3"[..])
            );
            // Not a key at all: no fault, no panic.
            assert_eq!(store.get(b"\xff").await.ok().flatten(), None);
            assert_eq!(store.injected().get(FaultKind::Confuse), 1);
        });
    }

    #[test]
    fn corrupt_always_changes_the_bytes() {
        block_on(async {
            let store = store(FaultKind::Corrupt, 1.0);
            let value = Bytes::from_static(b"a value of some length");
            store.set(b"k", value.clone(), None).await.ok();
            store.set(b"empty", Bytes::new(), None).await.ok();
            for _ in 0..500 {
                let got = store.get(b"k").await.ok().flatten().unwrap_or_default();
                assert_ne!(got, value, "corrupt returned the stored value");
                assert!(got.len() <= value.len());
            }
            assert_eq!(store.get(b"empty").await.ok().flatten(), Some(Bytes::new()));
            assert_eq!(store.get(b"absent").await.ok().flatten(), None);
            assert_eq!(store.injected().get(FaultKind::Corrupt), 500);
        });
    }

    #[test]
    fn the_swap_pool_is_bounded() {
        let mut recent = Recent::new(3);
        for i in 0..10u8 {
            recent.push(Bytes::from(vec![i]), Bytes::from(vec![i]));
        }
        assert_eq!(recent.len(), 3);
        assert_eq!(recent.other_than(&[9], 100), Some(Bytes::from(vec![7])));
        assert_eq!(Recent::new(0).other_than(b"x", 0), None);
    }
}
