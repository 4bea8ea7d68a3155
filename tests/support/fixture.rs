//! The fixture the tests share: the namespaces most tests cache in, keys and owners by number,
//! one key ring, values that name their key, a plain client, and [`Fixture`] (a client over an
//! in-process `MemoryStore` on a manual clock that records every violation report).
//!
//! A test that is *about* another namespace (another `SCHEMA`, `Item` or `Value` type, an
//! `Owned` value) declares that namespace itself, next to the test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use scoped_cache::store::RemoteStore;
use scoped_cache::{
    Cache, Client, DeviceId, Key, KeyId, KeyRing, ManualClock, MemoryStore, Namespace, Owner,
    Policy, RawBytes, StoreBreaker, TenantId, ViolationReport,
};

/// Thumbnails: one per (tenant, device, numbered item), as bytes.
#[derive(Debug)]
pub struct Thumbs;
impl Namespace for Thumbs {
    const NAME: &'static str = "thumb";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = Bytes;
    type Codec = RawBytes;
}

/// User↔device relations: one per (tenant, device), no item.
#[derive(Debug)]
pub struct Relations;
impl Namespace for Relations {
    const NAME: &'static str = "rel";
    const SCHEMA: u16 = 1;
    type Item = ();
    type Value = Bytes;
    type Codec = RawBytes;
}

/// The secret of [`ring`].
pub const SECRET: [u8; 32] = [0x42; 32];

/// Where a [`Fixture`]'s clock starts, in ms since the Unix epoch.
pub const START_MS: u64 = 1_700_000_000_000;

/// The time to live of a [`Fixture`]'s caches: short, so that a test expires values by
/// advancing the clock.
pub const TTL: Duration = Duration::from_secs(1);

/// The key ring of every client here: [`SECRET`] under key id 1.
pub fn ring() -> KeyRing {
    KeyRing::new(KeyId(1), &SECRET).expect("valid secret")
}

/// The thumbnail `item` of tenant `tenant`'s device `device`. Tenants and devices share numbers
/// on purpose: `key(1, 2, 3)` and `key(2, 1, 3)` have different owners.
pub fn key(tenant: u64, device: u64, item: u64) -> Key<Thumbs> {
    key_in(tenant, device, item)
}

/// Like [`key`], in another namespace with numbered items.
pub fn key_in<N: Namespace<Item = u64>>(tenant: u64, device: u64, item: u64) -> Key<N> {
    Key::new(TenantId::from_u64(tenant), DeviceId::from_u64(device), item)
}

/// The owner (tenant, device) by number.
pub fn owner(tenant: u64, device: u64) -> Owner {
    Owner::new(TenantId::from_u64(tenant), DeviceId::from_u64(device))
}

/// What the source of truth holds for `key`: its own ids, so a value of any other key is seen.
pub fn truth(key: &Key<Thumbs>) -> Bytes {
    let owner = key.owner();
    Bytes::from(format!("{}/{}/{}", owner.tenant, owner.device, key.item()))
}

/// (tenant, device, item) of a thumbnail, as the storms draw them.
pub type Ids = (u64, u64, u64);

/// The thumbnail key of `ids`.
pub fn key_of((tenant, device, item): Ids) -> Key<Thumbs> {
    key(tenant, device, item)
}

/// Version `version` of the value stored for `ids`: it names its owner and item, so that
/// [`belongs`] sees a value of any other key, whatever its version.
pub fn versioned((tenant, device, item): Ids, version: u64) -> Bytes {
    Bytes::from(format!("{tenant}|{device}|{item}|{version}"))
}

/// Whether `found` is a version of the value of `ids` (see [`versioned`]).
pub fn belongs((tenant, device, item): Ids, found: &[u8]) -> bool {
    found.starts_with(format!("{tenant}|{device}|{item}|").as_bytes())
}

/// A client with [`ring`] over `remote`, and nothing else configured.
pub fn client(remote: Arc<dyn RemoteStore>) -> Client {
    Client::builder()
        .key_ring(ring())
        .remote_shared(remote)
        .build()
        .expect("valid client")
}

/// A cache of `N` over `remote` alone, without the in-process tier, whose client's store breaker
/// probes again after `cool_down` (on a test's time scale rather than the default second).
pub fn remote_only_cache_probing_after<N: Namespace>(
    remote: Arc<dyn RemoteStore>,
    cool_down: Duration,
) -> Cache<N> {
    Client::builder()
        .key_ring(ring())
        .remote_shared(remote)
        .store_breaker(Some(StoreBreaker::new(5, cool_down)))
        .build()
        .expect("valid client")
        .cache()
        .local_capacity(0)
        .build()
        .expect("valid cache")
}

/// A cache of `N` over `remote` alone, without the in-process tier: every read reaches the store.
pub fn remote_only_cache<N: Namespace>(remote: Arc<dyn RemoteStore>) -> Cache<N> {
    client(remote)
        .cache()
        .local_capacity(0)
        .build()
        .expect("valid cache")
}

/// Every violation report a sink was given, in order.
#[derive(Clone, Default)]
pub struct Reports(Arc<Mutex<Vec<ViolationReport>>>);

impl Reports {
    /// A violation sink (`on_violation`) that records into these reports.
    pub fn sink(&self) -> impl Fn(&ViolationReport) + Send + Sync + 'static {
        let reports = self.clone();
        move |report| reports.0.lock().expect("reports lock").push(report.clone())
    }

    /// The reports so far.
    pub fn all(&self) -> Vec<ViolationReport> {
        self.0.lock().expect("reports lock").clone()
    }

    /// The reports so far, forgotten here.
    pub fn take(&self) -> Vec<ViolationReport> {
        std::mem::take(&mut *self.0.lock().expect("reports lock"))
    }
}

/// A client over a shared in-process `MemoryStore`, a manual clock and a sink that records
/// every violation report.
pub struct Fixture {
    /// The clock of the client and the store; starts at [`START_MS`].
    pub clock: ManualClock,
    /// The store underneath the client (which may reach it through a transport: [`Fixture::behind`]).
    pub store: Arc<MemoryStore>,
    /// Every report of the client's violation sink.
    pub reports: Reports,
    /// The client: [`ring`], the store, the clock, the sink.
    pub client: Client,
}

impl Fixture {
    pub fn new() -> Self {
        Self::behind(|store| store)
    }

    /// A fixture whose client has no store: the in-process tier alone, on the manual clock
    /// (`store` is a `MemoryStore` nothing reaches).
    pub fn without_store() -> Self {
        let clock = ManualClock::new(START_MS);
        let reports = Reports::default();
        let client = Client::builder()
            .clock(clock.clock())
            .on_violation(reports.sink())
            .build()
            .expect("valid client");
        Self {
            store: Arc::new(MemoryStore::with_clock(1 << 20, clock.clock())),
            clock,
            reports,
            client,
        }
    }

    /// A fixture whose client reaches its `MemoryStore` through `transport`, given that store.
    pub fn behind(transport: impl FnOnce(Arc<MemoryStore>) -> Arc<dyn RemoteStore>) -> Self {
        let clock = ManualClock::new(START_MS);
        let store = Arc::new(MemoryStore::with_clock(1 << 20, clock.clock()));
        let remote = transport(store.clone());
        Self::over(clock, store, remote)
    }

    /// Another client over the same store, clock and secret, with reports of its own: another
    /// process of the same service (or another deploy of it).
    pub fn peer(&self) -> Self {
        Self::over(self.clock.clone(), self.store.clone(), self.store.clone())
    }

    /// A fixture whose client talks to `remote`; `store` is the `MemoryStore` underneath it.
    fn over(clock: ManualClock, store: Arc<MemoryStore>, remote: Arc<dyn RemoteStore>) -> Self {
        let reports = Reports::default();
        let client = Client::builder()
            .key_ring(ring())
            .remote_shared(remote)
            .clock(clock.clock())
            .on_violation(reports.sink())
            .build()
            .expect("valid client");
        Self {
            clock,
            store,
            reports,
            client,
        }
    }

    /// A cache of both tiers, values living [`TTL`].
    pub fn cache<N: Namespace>(&self) -> Cache<N> {
        self.client.cache().ttl(TTL).build().expect("valid cache")
    }

    /// Like [`Fixture::cache`], without the in-process tier: every read reaches the store.
    pub fn remote_only_cache<N: Namespace>(&self) -> Cache<N> {
        self.client
            .cache()
            .local_capacity(0)
            .ttl(TTL)
            .build()
            .expect("valid cache")
    }

    /// A cache with `Policy::Bypass`: it never reads or writes either tier.
    pub fn bypass_cache<N: Namespace>(&self) -> Cache<N> {
        self.client
            .cache()
            .policy(Policy::Bypass)
            .build()
            .expect("valid cache")
    }

    /// A cache over this fixture's store, from another client that seals and opens payloads of at
    /// most `limit` bytes.
    pub fn cache_with_max_payload<N: Namespace>(&self, limit: usize) -> Cache<N> {
        Client::builder()
            .key_ring(ring())
            .remote_shared(self.store.clone())
            .clock(self.clock.clock())
            .max_payload(limit)
            .build()
            .expect("valid client")
            .cache()
            .build()
            .expect("valid cache")
    }

    /// The client's violation reports so far.
    pub fn reports(&self) -> Vec<ViolationReport> {
        self.reports.all()
    }

    /// Writes raw bytes where the remote tier keeps `key`'s value, as a faulty store would.
    pub async fn poison<N: Namespace>(&self, key: &Key<N>, bytes: Bytes) {
        self.store
            .set(&key.encode(), bytes, None)
            .await
            .expect("memory store write");
    }

    /// What the store holds under `key`.
    pub async fn stored<N: Namespace>(&self, key: &Key<N>) -> Option<Bytes> {
        self.store
            .get(&key.encode())
            .await
            .expect("memory store read")
    }
}

/// Calls `get_or_load` once per entry of `keys`, all at once, each with a loader that takes
/// 20 ms (so callers of one key overlap) and returns its key's [`truth`]. Every caller must get
/// its own key's value; returns how many times a loader ran.
pub async fn concurrent_loads(
    cache: &Cache<Thumbs>,
    keys: impl IntoIterator<Item = Key<Thumbs>>,
) -> usize {
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = keys
        .into_iter()
        .map(|k| {
            let (cache, calls) = (cache.clone(), Arc::clone(&calls));
            tokio::spawn(async move {
                let load = || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, std::io::Error>(truth(&k))
                };
                (cache.get_or_load(&k, load).await, k)
            })
        })
        .collect();
    for task in tasks {
        let (value, k) = task.await.expect("a caller panicked");
        assert_eq!(
            value.expect("the load succeeds"),
            truth(&k),
            "{k:?} got another key's value"
        );
    }
    calls.load(Ordering::SeqCst)
}
