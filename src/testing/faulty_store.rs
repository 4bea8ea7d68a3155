//! `FaultyStore`: a `RemoteStore` wrapper that answers reads with wrong bytes, on purpose.

use super::fault::{FaultCounts, FaultKind, FaultRates, FaultRatesError};
use super::history::History;
use super::rng::SharedRng;
use super::timer;
use crate::clock::Clock;
use crate::id::{DeviceId, TenantId};
use crate::key::{Owner, RawKey};
use crate::store::{RemoteStore, StoreError, StoreFuture};
use crate::sync::{AtomicU64, Mutex, Ordering, lock};
use bytes::Bytes;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Recently written (key, value) pairs kept for [`FaultKind::Swap`] by default.
const DEFAULT_SWAP_POOL: usize = 1024;
/// Values kept per key for [`FaultKind::Stale`] and [`FaultKind::Replay`] by default.
const DEFAULT_HISTORY_DEPTH: usize = 4;
/// Keys whose values are kept for [`FaultKind::Stale`] and [`FaultKind::Replay`] by default.
const DEFAULT_HISTORY_KEYS: usize = 1 << 20;

/// Called with the key read and the kind of each fault injected; see
/// [`FaultyStoreBuilder::on_fault`].
pub type FaultObserver = Arc<dyn Fn(&[u8], FaultKind) + Send + Sync>;

/// Called with the key read, the key whose stored value was handed out instead, and the kind
/// (`swap` or `confuse`); see [`FaultyStoreBuilder::on_misdirected`].
pub type MisdirectObserver = Arc<dyn Fn(&[u8], &[u8], FaultKind) + Send + Sync>;

/// Which keys a [`FaultyStore`] may fault: see [`FaultyStoreBuilder::targets`].
pub type FaultTargets = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// A [`RemoteStore`] that wraps another and, at seeded per-kind rates, answers reads with the
/// wrong bytes, an error, or late, counting every fault it injects.
///
/// On each `get` (and each key of `get_many`) one uniform draw picks at most one
/// [`FaultKind`] with the probabilities of its [`FaultRates`]. When the picked fault cannot be
/// made (no other key written yet for `swap`, no value under the exchanged key for `confuse`, no
/// value for `corrupt` or `truncate`, no expired or earlier value in the history for `stale` or
/// `replay`), the read is answered truthfully and nothing is counted; so
/// [`injected`](FaultyStore::injected) counts exactly the faults handed out. Writes and deletes
/// go to the inner store unchanged; errors of the inner store are passed through and are never
/// counted as faults.
///
/// `stale` and `replay` seal nothing: they hand back values the store was given. For them the
/// store keeps, per key, the last few values written with their TTL deadline (a bounded
/// history, kept across deletes as a lagging replica would; see
/// [`history`](FaultyStoreBuilder::history)). A value is expired once its TTL, as given to
/// [`set`](RemoteStore::set) and measured on the store's [`Clock`], has passed; values written
/// without a TTL never are.
///
/// `delay` and `timeout` wait on a timer thread of their own, so they work under any async
/// runtime, with or without Tokio's time driver.
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
    clock: Clock,
    recent: Option<Mutex<Recent>>,
    history: Option<History>,
    observer: Option<FaultObserver>,
    misdirected: Option<MisdirectObserver>,
    targets: Option<FaultTargets>,
    reads: AtomicU64,
    injected: [AtomicU64; FaultKind::ALL.len()],
}

/// What an attempt to inject a fault came to.
enum Attempt {
    /// The fault was made: this is the (wrong, late or failed) answer; counted.
    Injected(Result<Option<Bytes>, StoreError>),
    /// The fault could not be made, and reading the inner store for it gave this answer.
    Truthful(Result<Option<Bytes>, StoreError>),
    /// The fault could not be made without reading the inner store.
    NotMade,
}

impl<S: RemoteStore> FaultyStore<S> {
    /// A builder around `inner`: no faults, seed 0, the system clock, a swap pool of 1024
    /// pairs, a history of 4 values for each of up to 2^20 keys.
    pub fn builder(inner: S) -> FaultyStoreBuilder<S> {
        FaultyStoreBuilder {
            inner,
            rates: FaultRates::none(),
            pending: Vec::new(),
            seed: 0,
            clock: Clock::system(),
            swap_pool: DEFAULT_SWAP_POOL,
            history_depth: DEFAULT_HISTORY_DEPTH,
            history_keys: DEFAULT_HISTORY_KEYS,
            observer: None,
            misdirected: None,
            targets: None,
        }
    }

    /// A store around `inner` injecting faults at `rates`, seeded with `seed`, with the
    /// builder's other defaults.
    pub fn new(inner: S, rates: FaultRates, seed: u64) -> Self {
        Self::builder(inner).seed(seed).assemble(rates)
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

    fn is_target(&self, key: &[u8]) -> bool {
        self.targets.as_ref().is_none_or(|targets| targets(key))
    }

    fn count(&self, key: &[u8], kind: FaultKind) {
        self.injected[kind.index()].fetch_add(1, Ordering::Relaxed);
        if let Some(observer) = &self.observer {
            observer(key, kind);
        }
    }

    /// Reads `key`, perhaps answering wrongly.
    async fn read(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        if !self.is_target(key) {
            return self.inner.get(key).await;
        }
        let Some(kind) = self.rates.pick(self.rng.next_f64()) else {
            return self.inner.get(key).await;
        };
        match self.attempt(kind, key).await {
            Attempt::Injected(answer) => {
                self.count(key, kind);
                answer
            }
            Attempt::Truthful(answer) => answer,
            Attempt::NotMade => self.inner.get(key).await,
        }
    }

    async fn attempt(&self, kind: FaultKind, key: &[u8]) -> Attempt {
        let made = |wrong: Option<Bytes>| {
            wrong.map_or(Attempt::NotMade, |v| Attempt::Injected(Ok(Some(v))))
        };
        match kind {
            FaultKind::Swap => match self.swapped(key) {
                Some((source, value)) => {
                    self.misdirect(key, &source, kind);
                    Attempt::Injected(Ok(Some(value)))
                }
                None => Attempt::NotMade,
            },
            FaultKind::Confuse => self.confused(key).await,
            FaultKind::Corrupt | FaultKind::Truncate => self.damaged(kind, key).await,
            FaultKind::Stale => made(
                self.history
                    .as_ref()
                    .and_then(|history| history.stale(key, self.clock.now_ms(), &self.rng)),
            ),
            FaultKind::Replay => made(
                self.history
                    .as_ref()
                    .and_then(|history| history.replay(key, self.clock.now_ms(), &self.rng)),
            ),
            FaultKind::Drop => Attempt::Injected(Err(StoreError::Unavailable(
                "injected fault: connection dropped before the reply".into(),
            ))),
            FaultKind::Delay => {
                timer::sleep(self.rates.duration(kind).unwrap_or_default()).await;
                Attempt::Injected(self.inner.get(key).await)
            }
            FaultKind::Timeout => {
                let after = self.rates.duration(kind).unwrap_or_default();
                timer::sleep(after).await;
                Attempt::Injected(Err(StoreError::Timeout(after)))
            }
        }
    }

    /// Tells the misdirect observer which key's value a read of `key` is handed.
    fn misdirect(&self, key: &[u8], source: &[u8], kind: FaultKind) {
        if let Some(observer) = &self.misdirected {
            observer(key, source, kind);
        }
    }

    /// A recently written value of another key, with that key.
    fn swapped(&self, key: &[u8]) -> Option<(Bytes, Bytes)> {
        let recent = lock(self.recent.as_ref()?);
        recent.other_than(key, self.rng.below(recent.len()))
    }

    /// The value of the same namespace and item with tenant and device exchanged.
    async fn confused(&self, key: &[u8]) -> Attempt {
        let Ok(raw) = RawKey::decode(key) else {
            return Attempt::NotMade;
        };
        // The mix-up this fault models: a device id used as a tenant id and vice versa.
        let exchanged = Owner::new(
            TenantId(raw.owner.device.0.clone()),
            DeviceId(raw.owner.tenant.0.clone()),
        );
        if exchanged == raw.owner {
            return Attempt::NotMade;
        }
        let confused = RawKey {
            owner: exchanged,
            ..raw
        }
        .encode();
        match self.inner.get(&confused).await {
            Ok(Some(value)) => {
                self.misdirect(key, &confused, FaultKind::Confuse);
                Attempt::Injected(Ok(Some(value)))
            }
            Ok(None) => Attempt::NotMade,
            // An error of the inner store is its own, not a fault: passed through uncounted.
            Err(error) => Attempt::Truthful(Err(error)),
        }
    }

    /// The stored value with one byte flipped (`corrupt`) or cut short (`truncate`).
    async fn damaged(&self, kind: FaultKind, key: &[u8]) -> Attempt {
        let value = match self.inner.get(key).await {
            Ok(Some(value)) if !value.is_empty() => value,
            truthful => return Attempt::Truthful(truthful),
        };
        let at = self.rng.below(value.len());
        Attempt::Injected(Ok(Some(if kind == FaultKind::Corrupt {
            let mut flipped = value.to_vec();
            // A mask in 1..=255: the byte always changes.
            let mask = (self.rng.next_u64() % 255 + 1) as u8;
            if let Some(byte) = flipped.get_mut(at) {
                *byte ^= mask;
            }
            Bytes::from(flipped)
        } else {
            // `at < len`: strictly shorter, possibly empty.
            value.slice(..at)
        })))
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
            if (self.recent.is_none() && self.history.is_none()) || !self.is_target(key) {
                return Ok(());
            }
            let key = Bytes::copy_from_slice(key);
            if let Some(history) = &self.history {
                history.record(key.clone(), value.clone(), ttl, self.clock.now_ms());
            }
            if let Some(recent) = &self.recent {
                lock(recent).push(key, value);
            }
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a [u8]) -> StoreFuture<'a, ()> {
        // The history keeps the key's values: what a store once said can come back.
        self.inner.delete(key)
    }

    fn delete_if<'a>(&'a self, key: &'a [u8], value: &'a Bytes) -> StoreFuture<'a, ()> {
        // A faulted read handed out bytes the inner store does not hold: those stay undeleted,
        // as they would behind a real network fault.
        self.inner.delete_if(key, value)
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

/// A setting given to the builder, validated together in `build`.
enum Pending {
    Rate(FaultKind, f64),
    Duration(FaultKind, Duration),
}

/// Configures a [`FaultyStore`]; from [`FaultyStore::builder`].
#[must_use]
pub struct FaultyStoreBuilder<S: RemoteStore> {
    inner: S,
    rates: FaultRates,
    pending: Vec<Pending>,
    seed: u64,
    clock: Clock,
    swap_pool: usize,
    history_depth: usize,
    history_keys: usize,
    observer: Option<FaultObserver>,
    misdirected: Option<MisdirectObserver>,
    targets: Option<FaultTargets>,
}

impl<S: RemoteStore> FaultyStoreBuilder<S> {
    /// Seeds the random stream (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// All rates and durations at once (replacing any set before).
    pub fn rates(mut self, rates: FaultRates) -> Self {
        self.rates = rates;
        self.pending.clear();
        self
    }

    /// The rate of one kind; checked by [`build`](Self::build).
    pub fn rate(mut self, kind: FaultKind, rate: f64) -> Self {
        self.pending.push(Pending::Rate(kind, rate));
        self
    }

    /// How long a `delay` fault holds a read before answering it (default 10 ms).
    pub fn delay(mut self, duration: Duration) -> Self {
        self.pending
            .push(Pending::Duration(FaultKind::Delay, duration));
        self
    }

    /// How long a `timeout` fault holds a read before failing it (default 100 ms).
    pub fn timeout(mut self, duration: Duration) -> Self {
        self.pending
            .push(Pending::Duration(FaultKind::Timeout, duration));
        self
    }

    /// The clock that decides when a remembered value has expired, for `stale` and `replay`
    /// (default the system clock, the one envelopes are stamped with).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// How many recently written (key, value) pairs `swap` picks from (default 1024; at least 1).
    pub fn swap_pool(mut self, pairs: usize) -> Self {
        self.swap_pool = pairs.max(1);
        self
    }

    /// The history `stale` and `replay` pick from: the last `depth` values written under each
    /// key (default 4; at least 1), for the first `keys` keys written (default 2^20; later keys
    /// are not remembered). Kept only when `stale` or `replay` has a rate above 0.
    pub fn history(mut self, depth: usize, keys: usize) -> Self {
        self.history_depth = depth.max(1);
        self.history_keys = keys;
        self
    }

    /// Calls `observer` with the key read and the kind of every fault injected, as it is
    /// counted (before the answer reaches the caller), e.g. so that a harness can tell which
    /// keys' reads were refused. It runs on the reading task: keep it short, and do not call
    /// the store from it.
    pub fn on_fault(mut self, observer: impl Fn(&[u8], FaultKind) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// Calls `observer` with the key read, the key whose stored value a `swap` or `confuse`
    /// handed out instead, and the kind, as each such fault is made: the ground truth of which
    /// owner's data was offered to which (the value is what the inner store holds for, or was
    /// last given under, that key). Like [`on_fault`](Self::on_fault) it runs on the reading
    /// task: keep it short, and do not call the store from it.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use scoped_cache::store::{MemoryStore, RemoteStore};
    /// use scoped_cache::testing::{FaultKind, FaultyStore};
    /// use std::sync::{Arc, Mutex};
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// let store = FaultyStore::builder(MemoryStore::default())
    ///     .rate(FaultKind::Swap, 1.0)
    ///     .on_misdirected(move |read, source, kind| log.lock().unwrap().push((read.to_vec(), source.to_vec(), kind)))
    ///     .build()?;
    /// store.set(b"a", "a's value".into(), None).await?;
    /// store.set(b"b", "b's value".into(), None).await?;
    /// assert_eq!(store.get(b"b").await?.as_deref(), Some(&b"a's value"[..]));
    /// assert_eq!(*seen.lock().unwrap(), [(b"b".to_vec(), b"a".to_vec(), FaultKind::Swap)]);
    /// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
    /// ```
    pub fn on_misdirected(
        mut self,
        observer: impl Fn(&[u8], &[u8], FaultKind) + Send + Sync + 'static,
    ) -> Self {
        self.misdirected = Some(Arc::new(observer));
        self
    }

    /// Faults only reads of the keys `targets` accepts (default: every key), and hands out
    /// only their values: e.g. a cache's values but not the revocation markers a
    /// [coherent](crate::Policy::Coherent) cache reads beside them, whose faults make misses
    /// rather than refusals.
    pub fn targets(mut self, targets: impl Fn(&[u8]) -> bool + Send + Sync + 'static) -> Self {
        self.targets = Some(Arc::new(targets));
        self
    }

    /// Builds the store.
    ///
    /// # Errors
    ///
    /// [`FaultRatesError`] when a rate given with [`rate`](Self::rate) is outside `[0, 1]` or
    /// the rates add up to more than 1.
    pub fn build(mut self) -> Result<FaultyStore<S>, FaultRatesError> {
        let mut rates = self.rates;
        for pending in std::mem::take(&mut self.pending) {
            rates = match pending {
                Pending::Rate(kind, rate) => rates.with(kind, rate)?,
                Pending::Duration(kind, duration) => rates.with_duration(kind, duration)?,
            };
        }
        Ok(self.assemble(rates))
    }

    fn assemble(self, rates: FaultRates) -> FaultyStore<S> {
        let remembers = rates.get(FaultKind::Stale) > 0.0 || rates.get(FaultKind::Replay) > 0.0;
        FaultyStore {
            inner: self.inner,
            rates,
            rng: SharedRng::new(self.seed),
            clock: self.clock,
            // Written pairs are remembered only when they may be handed out.
            recent: (rates.get(FaultKind::Swap) > 0.0)
                .then(|| Mutex::new(Recent::new(self.swap_pool))),
            history: remembers.then(|| History::new(self.history_depth, self.history_keys)),
            observer: self.observer,
            misdirected: self.misdirected,
            targets: self.targets,
            reads: AtomicU64::new(0),
            injected: Default::default(),
        }
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

    /// The first (key, value), scanning from `start` and wrapping, whose key is not `key`.
    fn other_than(&self, key: &[u8], start: usize) -> Option<(Bytes, Bytes)> {
        let (before, after) = self.pairs.split_at(start.min(self.pairs.len()));
        after
            .iter()
            .chain(before)
            .find(|(other, _)| other.as_ref() != key)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

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
    fn corrupt_flips_one_byte() {
        block_on(async {
            let store = store(FaultKind::Corrupt, 1.0);
            let value = Bytes::from_static(b"a value of some length");
            store.set(b"k", value.clone(), None).await.ok();
            store.set(b"empty", Bytes::new(), None).await.ok();
            for _ in 0..500 {
                let got = store.get(b"k").await.ok().flatten().unwrap_or_default();
                let differing = got.iter().zip(&value).filter(|(a, b)| a != b).count();
                assert_eq!(got.len(), value.len(), "corrupt changed the length");
                assert_eq!(differing, 1, "corrupt must change exactly one byte");
            }
            assert_eq!(store.get(b"empty").await.ok().flatten(), Some(Bytes::new()));
            assert_eq!(store.get(b"absent").await.ok().flatten(), None);
            assert_eq!(store.injected().get(FaultKind::Corrupt), 500);
            assert_eq!(store.injected().total(), 500, "only corrupt was injected");
        });
    }

    #[test]
    fn truncate_returns_a_strict_prefix() {
        block_on(async {
            let store = store(FaultKind::Truncate, 1.0);
            let value = Bytes::from_static(b"a value of some length");
            store.set(b"k", value.clone(), None).await.ok();
            store.set(b"empty", Bytes::new(), None).await.ok();
            let mut lengths = std::collections::BTreeSet::new();
            for _ in 0..500 {
                let got = store.get(b"k").await.ok().flatten().unwrap_or_default();
                assert!(got.len() < value.len(), "truncate must shorten");
                assert!(value.starts_with(&got), "truncate must keep a prefix");
                lengths.insert(got.len());
            }
            assert!(lengths.len() > 10, "cut at varied lengths: {lengths:?}");
            assert_eq!(store.get(b"empty").await.ok().flatten(), Some(Bytes::new()));
            assert_eq!(store.get(b"absent").await.ok().flatten(), None);
            assert_eq!(store.injected().get(FaultKind::Truncate), 500);
        });
    }

    #[test]
    fn stale_replays_an_expired_value_of_the_same_key() {
        block_on(async {
            let manual = crate::clock::ManualClock::new(1_000_000);
            let store = FaultyStore::builder(MemoryStore::with_clock(1 << 20, manual.clock()))
                .seed(3)
                .rate(FaultKind::Stale, 1.0)
                .clock(manual.clock())
                .build()
                .unwrap_or_else(|error| unreachable!("{error}"));
            let ttl = Some(Duration::from_secs(10));
            store.set(b"k", Bytes::from_static(b"old"), ttl).await.ok();
            store
                .set(b"other", Bytes::from_static(b"theirs"), ttl)
                .await
                .ok();
            // Nothing expired yet: truthful answers, not counted.
            assert_eq!(
                store.get(b"k").await.ok().flatten().as_deref(),
                Some(&b"old"[..])
            );
            manual.advance(Duration::from_secs(10));
            // The inner store dropped it; the stale fault hands it back.
            assert_eq!(store.inner().get(b"k").await.ok().flatten(), None);
            store.set(b"k", Bytes::from_static(b"new"), ttl).await.ok();
            store.delete(b"k").await.ok();
            for _ in 0..20 {
                assert_eq!(
                    store.get(b"k").await.ok().flatten().as_deref(),
                    Some(&b"old"[..])
                );
            }
            assert_eq!(store.injected().get(FaultKind::Stale), 20);
            // A key never written has no history: no fault.
            assert_eq!(store.get(b"absent").await.ok().flatten(), None);
            assert_eq!(store.injected().get(FaultKind::Stale), 20);
        });
    }

    #[test]
    fn replay_returns_an_earlier_unexpired_value_of_the_same_key() {
        block_on(async {
            let store = store(FaultKind::Replay, 1.0);
            let ttl = Some(Duration::from_secs(600));
            store.set(b"k", Bytes::from_static(b"v1"), ttl).await.ok();
            assert_eq!(
                store.get(b"k").await.ok().flatten().as_deref(),
                Some(&b"v1"[..])
            );
            assert_eq!(
                store.injected().get(FaultKind::Replay),
                0,
                "no earlier value"
            );
            store.set(b"k", Bytes::from_static(b"v2"), ttl).await.ok();
            store.set(b"j", Bytes::from_static(b"j1"), ttl).await.ok();
            for _ in 0..20 {
                assert_eq!(
                    store.get(b"k").await.ok().flatten().as_deref(),
                    Some(&b"v1"[..])
                );
            }
            assert_eq!(store.injected().get(FaultKind::Replay), 20);
        });
    }

    #[test]
    fn drop_and_timeout_fail_the_read_and_are_counted() {
        block_on(async {
            let store = store(FaultKind::Drop, 1.0);
            store.set(b"k", Bytes::from_static(b"v"), None).await.ok();
            let dropped = store.get(b"k").await;
            assert!(
                matches!(dropped, Err(StoreError::Unavailable(_))),
                "{dropped:?}"
            );
            let many = store.get_many(&[b"k".to_vec(), b"k".to_vec()]).await;
            assert!(many.is_err(), "get_many fails with its first key");
            assert_eq!(store.injected().get(FaultKind::Drop), 2);

            let store = FaultyStore::builder(MemoryStore::default())
                .rate(FaultKind::Timeout, 1.0)
                .timeout(Duration::from_millis(15))
                .build()
                .unwrap_or_else(|error| unreachable!("{error}"));
            let started = std::time::Instant::now();
            let timed_out = store.get(b"k").await;
            assert!(
                matches!(timed_out, Err(StoreError::Timeout(after)) if after == Duration::from_millis(15)),
                "{timed_out:?}"
            );
            assert!(
                started.elapsed() >= Duration::from_millis(15),
                "timed out early"
            );
            assert_eq!(store.injected().get(FaultKind::Timeout), 1);
        });
    }

    #[test]
    fn delay_answers_truthfully_but_late() {
        // A runtime without a time driver: the fault must not need one.
        block_on(async {
            let store = FaultyStore::builder(MemoryStore::default())
                .rates("delay=1@20ms".parse().unwrap_or_default())
                .build()
                .unwrap_or_else(|error| unreachable!("{error}"));
            store.set(b"k", Bytes::from_static(b"v"), None).await.ok();
            let started = std::time::Instant::now();
            assert_eq!(
                store.get(b"k").await.ok().flatten().as_deref(),
                Some(&b"v"[..])
            );
            assert!(
                started.elapsed() >= Duration::from_millis(20),
                "not delayed"
            );
            assert_eq!(store.injected().get(FaultKind::Delay), 1);
        });
    }

    #[test]
    fn the_observer_sees_each_injected_fault_with_its_key() {
        block_on(async {
            let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
            let log = Arc::clone(&seen);
            let store = FaultyStore::builder(MemoryStore::default())
                .seed(9)
                .rate(FaultKind::Truncate, 0.5)
                .on_fault(move |key, kind| {
                    if let Ok(mut log) = log.lock() {
                        log.push((key.to_vec(), kind));
                    }
                })
                .build()
                .unwrap_or_else(|error| unreachable!("{error}"));
            store
                .set(b"k", Bytes::from_static(b"value"), None)
                .await
                .ok();
            for _ in 0..100 {
                let _ = store.get(b"k").await;
                let _ = store.get(b"absent").await; // never injectable
            }
            let seen = seen.lock().map(|seen| seen.clone()).unwrap_or_default();
            let injected = store.injected().get(FaultKind::Truncate);
            assert!(
                (20..80).contains(&injected),
                "{injected} of 100 at rate 0.5"
            );
            assert_eq!(seen.len() as u64, injected);
            assert!(
                seen.iter()
                    .all(|(key, kind)| key == b"k" && *kind == FaultKind::Truncate)
            );
        });
    }

    #[test]
    fn every_kind_at_once_never_panics_and_counts_add_up() {
        block_on(async {
            let rates: FaultRates = FaultKind::ALL
                .iter()
                .map(|kind| format!("{kind}=0.1"))
                .collect::<Vec<_>>()
                .join(",")
                .parse()
                .unwrap_or_default();
            let rates = rates
                .with_duration(FaultKind::Delay, Duration::from_micros(50))
                .and_then(|rates| rates.with_duration(FaultKind::Timeout, Duration::ZERO))
                .unwrap_or_default();
            let store = FaultyStore::new(MemoryStore::default(), rates, 5);
            // Pairs of keys with tenant and device exchanged, and two that are no keys at all.
            let keys: Vec<Vec<u8>> = (0..4)
                .flat_map(|i| [key(i, i + 1), key(i + 1, i)])
                .chain([Vec::new(), b"\xff\x00".to_vec()])
                .collect();
            for (i, key) in keys.iter().enumerate() {
                // An expired value, an earlier unexpired one, the latest (empty for the first).
                let short = Some(Duration::from_millis(1));
                store.set(key, Bytes::from(vec![1; i]), short).await.ok();
                store.set(key, Bytes::from(vec![2; i]), None).await.ok();
                store.set(key, Bytes::from(vec![3; i]), None).await.ok();
            }
            std::thread::sleep(Duration::from_millis(5));
            for round in 0..300 {
                let key = &keys[round % keys.len()];
                let _ = store.get(key).await;
            }
            let injected = store.injected();
            assert_eq!(store.reads(), 300);
            assert!(injected.total() <= 300);
            for kind in FaultKind::ALL {
                assert!(
                    injected.get(kind) > 0,
                    "{kind} never injected: {injected:?}"
                );
            }
        });
    }

    #[test]
    fn the_swap_pool_is_bounded() {
        let mut recent = Recent::new(3);
        for i in 0..10u8 {
            recent.push(Bytes::from(vec![i]), Bytes::from(vec![i]));
        }
        assert_eq!(recent.len(), 3);
        assert_eq!(
            recent.other_than(&[9], 100),
            Some((Bytes::from(vec![7]), Bytes::from(vec![7])))
        );
        assert_eq!(Recent::new(0).other_than(b"x", 0), None);
    }
}
