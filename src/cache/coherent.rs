//! The coherent policy of a `Cache`: in-process entries that the bus drops on every instance,
//! served only while the bus is listening, and revocation markers in the shared store that
//! refuse every value of a revoked key, device or tenant sealed before the revocation.

use super::{Cache, Inner, Read};
use crate::bus::message::{self, Scope};
use crate::bus::{CoherentTier, Hub};
use crate::clock::deadline;
use crate::error::Error;
use crate::found::Found;
use crate::id::{DeviceId, TenantId};
use crate::key::{Key, Owner};
use crate::keyring::KeyRing;
use crate::local::LocalCache;
use crate::namespace::Namespace;
use crate::observe::{Op, OpKind, Outcome};
use crate::stats::Event;
use crate::sync::{Mutex, lock};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A coherent cache's link to the client's bus.
pub(super) struct Coherence {
    pub(super) hub: Arc<Hub>,
    /// The longest an in-process entry lives.
    pub(super) l1_ttl: Duration,
    /// How long after a revocation a value of its scope is still treated as revoked: the
    /// client's clock-skew allowance (at least 1 ms).
    window_ms: u64,
    /// How long a revocation is remembered here: the window and the longest a load may run, so
    /// that a load that read the source of truth before it cannot store what it read.
    remember_ms: u64,
    /// Scopes revoked within `remember_ms`, and when. In-process writes and revocations take
    /// this lock, so a write checks and inserts with no revocation in between.
    recent: Mutex<HashMap<Scope, u64>>,
}

impl Coherence {
    pub(super) fn new(
        hub: Arc<Hub>,
        l1_ttl: Duration,
        skew_allowance_ms: u64,
        longest_load: Duration,
    ) -> Self {
        let window_ms = skew_allowance_ms.max(1);
        Self {
            hub,
            l1_ttl,
            window_ms,
            remember_ms: window_ms.saturating_add(longest_load.as_millis() as u64),
            recent: Mutex::new(HashMap::new()),
        }
    }
}

/// The scopes a key falls under, narrowest first.
fn scopes_of<N: Namespace>(key: &Key<N>) -> [Scope; 3] {
    let owner = key.owner();
    [
        Scope::Key(key.encode()),
        Scope::Device {
            namespace: N::NAME.to_owned(),
            owner: owner.clone(),
        },
        Scope::Tenant {
            namespace: N::NAME.to_owned(),
            tenant: owner.tenant.clone(),
        },
    ]
}

impl<N: Namespace> Cache<N> {
    /// The in-process tier for a read: none while a coherent cache's bus is not listening.
    #[inline]
    pub(super) fn readable_local(&self) -> Option<&LocalCache<N>> {
        match &self.inner.coherence {
            Some(coherence) if !coherence.hub.is_serving() => None,
            _ => self.inner.local.as_ref(),
        }
    }

    /// Inserts a value `read` from its source into the in-process tier, kept until `until`.
    /// A coherent cache keeps it at most its `l1_ttl`, and skips it while the bus is not
    /// listening, when the bus dropped the tier since the read (a revocation may have been
    /// missed meanwhile), or when its key, device or tenant was revoked after the read, less
    /// the clock-skew allowance: the value may predate the revocation.
    pub(super) fn local_insert(
        &self,
        local: &LocalCache<N>,
        key: &Key<N>,
        value: N::Value,
        read: Read,
        until: u64,
    ) {
        let created_ms = read.at_ms;
        let Some(coherence) = &self.inner.coherence else {
            local.insert_until(key, value, created_ms, until);
            return;
        };
        let now_ms = self.inner.shared.clock.now_ms();
        let until = until.min(deadline(now_ms, Some(coherence.l1_ttl)));
        // Under the lock that the bus's flush of this tier takes: either the flush comes after
        // this insert and drops it, or this insert sees the flush's new generation.
        let recent = lock(&coherence.recent);
        let revoked = revoked_after(&recent, key, created_ms, coherence.window_ms);
        let hub = &coherence.hub;
        if !hub.is_serving() || hub.generation() != read.generation || revoked {
            return;
        }
        local.insert_until(key, value, created_ms, until);
    }

    /// The bus's flush generation now (0 without a bus): see [`Read`].
    pub(super) fn bus_generation(&self) -> u64 {
        self.inner
            .coherence
            .as_ref()
            .map_or(0, |coherence| coherence.hub.generation())
    }

    /// Whether a caller of `key` must load alone, joining no flight and storing nothing: the
    /// bus is not listening (nothing in-process is shared then, loads in flight included), its
    /// key, device or tenant was revoked here within the clock-skew allowance, or its flight in
    /// progress began before a revocation or a flush of the tier. A load in flight may have
    /// read the source of truth before the revocation.
    pub(super) fn must_load_alone(&self, key: &Key<N>) -> bool {
        let Some(coherence) = &self.inner.coherence else {
            return false;
        };
        if !coherence.hub.is_serving() || self.inner.flights.is_stale(key) {
            return true;
        }
        let recent = lock(&coherence.recent);
        let now_ms = self.inner.shared.clock.now_ms();
        let since = now_ms.saturating_sub(coherence.window_ms);
        revoked_after(&recent, key, since, 0)
    }

    /// Removes every value of `tenant` in this namespace, on every instance: see
    /// [`invalidate_device`](Cache::invalidate_device), which this is for all of the tenant's
    /// devices.
    ///
    /// # Errors
    ///
    /// As [`invalidate_device`](Cache::invalidate_device).
    ///
    /// # Cancel safety
    ///
    /// As [`invalidate_device`](Cache::invalidate_device).
    pub async fn invalidate_owner(&self, tenant: &TenantId) -> Result<(), Error> {
        let scope = Scope::Tenant {
            namespace: N::NAME.to_owned(),
            tenant: tenant.clone(),
        };
        let revoke = async {
            let revoked = self.revoke(scope, None).await;
            let outcome = Outcome::Invalidated.unless_err(&revoked);
            (revoked, outcome)
        };
        Op::start(N::NAME, OpKind::Invalidate).run(revoke).await
    }

    /// Removes every value of `tenant`'s `device` in this namespace (a camera transferred to
    /// another account, a share revoked), on every instance.
    ///
    /// Its cost does not grow with the keyspace, nor with how many values the device has: this
    /// instance drops the device's in-process entries (a walk of its own in-process tier), writes
    /// one *revocation marker* to the shared store, and, in a coherent cache, publishes one
    /// message on the bus, on which every other instance drops the device's in-process entries.
    /// Every remote read of a coherent cache reads the markers of its key, device and tenant
    /// in the same batch and refuses (as a miss) a value sealed before the revocation time,
    /// which is the time of the call plus the client's clock-skew allowance, so that a value
    /// written by an instance whose clock runs ahead is refused too. A loaded value is sealed
    /// as of when its load began, so one whose load began before the call is refused however
    /// late it is stored. Markers live as long as the namespace's values. A namespace that is not coherent has no markers to read: there it removes the
    /// device's entries from this instance's in-process tier only.
    ///
    /// When it returns (in a coherent cache), no instance serves a value of the device stored
    /// before the call, except an instance still receiving the bus message (see
    /// [`Policy::Coherent`](crate::Policy::Coherent) for the bound).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use scoped_cache::{Client, DeviceId, Key, KeyId, KeyRing, MemoryBus, MemoryStore, Namespace, Policy, RawBytes, TenantId};
    /// use std::time::Duration;
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let client = Client::builder()
    ///     .key_ring(KeyRing::new(KeyId(1), &[42; 32])?)
    ///     .remote(MemoryStore::default())
    ///     .bus(MemoryBus::new())
    ///     .build()?;
    /// let thumbs = client.cache::<Thumbnails>().policy(Policy::Coherent { l1_ttl: Duration::from_secs(5) }).build()?;
    /// let (alice, cam) = (TenantId::new("alice")?, DeviceId::new("cam-7")?);
    /// for item in 0..3 {
    ///     thumbs.insert(&Key::new(alice.clone(), cam.clone(), item), bytes::Bytes::from_static(b"jpeg")).await?;
    /// }
    /// thumbs.invalidate_device(&alice, &cam).await?;
    /// assert_eq!(thumbs.get(&Key::new(alice, cam, 1)).await, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Remote`] when writing the marker or publishing failed: the device's values may
    /// still be served by other instances (until their TTL); retry.
    ///
    /// # Cancel safety
    ///
    /// Once polled, this instance's entries are gone; dropped later, the marker and the message
    /// may or may not have been sent, as after an error.
    pub async fn invalidate_device(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
    ) -> Result<(), Error> {
        let scope = Scope::Device {
            namespace: N::NAME.to_owned(),
            owner: Owner::new(tenant.clone(), device.clone()),
        };
        let revoke = async {
            let revoked = self.revoke(scope, None).await;
            let outcome = Outcome::Invalidated.unless_err(&revoked);
            (revoked, outcome)
        };
        Op::start(N::NAME, OpKind::Invalidate).run(revoke).await
    }

    /// A coherent cache's part of [`Cache::invalidate`], after its local removal and remote
    /// delete: the key's marker, then the message.
    pub(super) async fn revoke_key(&self, key: &Key<N>) -> Result<(), Error> {
        if self.inner.coherence.is_none() {
            return Ok(());
        }
        self.revoke(Scope::Key(key.encode()), Some(key)).await
    }

    /// Applies `scope` here, writes its marker, publishes it.
    async fn revoke(&self, scope: Scope, key: Option<&Key<N>>) -> Result<(), Error> {
        let inner = &*self.inner;
        match key {
            Some(key) => {
                if let Some(local) = &inner.local {
                    local.remove(key);
                }
            }
            None => inner.apply(&scope),
        }
        let Some(coherence) = &inner.coherence else {
            return Ok(());
        };
        if key.is_some() {
            inner.apply(&scope);
        }
        let marked = self.write_marker(&scope).await;
        let published = coherence.hub.publish(Some(&scope)).await;
        marked.and(published.map_err(Error::Remote))
    }

    async fn write_marker(&self, scope: &Scope) -> Result<(), Error> {
        let inner = &*self.inner;
        let Some(remote) = &inner.shared.remote else {
            return Ok(());
        };
        let marker_key = message::marker_key(scope);
        let revoked_before = inner.shared.clock.now_ms() + remote.skew_allowance_ms.max(1);
        let marker = message::seal_marker(&remote.ring, &marker_key, revoked_before);
        let ttl = inner
            .keep_for
            .map(|keep| keep + Duration::from_millis(remote.skew_allowance_ms));
        let call = remote.store.set(&marker_key, marker.into(), ttl);
        inner
            .shared
            .call_store(N::NAME, &inner.counters, call)
            .await?;
        Ok(())
    }

    /// A coherent cache's remote read: the value and the markers of its key, device and tenant
    /// in one batch; a value sealed before the latest marker is a miss.
    pub(super) async fn coherent_remote_get(
        &self,
        key: &Key<N>,
        promote_stale: bool,
    ) -> Option<Found<N::Value>> {
        let inner = &*self.inner;
        let remote = inner.shared.remote.as_ref()?;
        let encoded = key.encode();
        let markers = Markers::of(std::iter::once(key));
        let mut batch = Vec::with_capacity(1 + markers.keys.len());
        batch.push(encoded.clone());
        batch.extend(markers.keys.iter().cloned());
        let read = self.read_now();
        let call = remote.store.get_many(&batch);
        let mut found = inner
            .shared
            .call_store(N::NAME, &inner.counters, call)
            .await
            .ok()?;
        if found.len() != batch.len() {
            inner.counters.record(Event::RemoteError);
            return None;
        }
        let revoked = markers.open(&remote.ring, found.split_off(1));
        let sealed = found.pop().flatten()?;
        let unrevoked = (revoked(0), read);
        self.accept(key, &encoded, &sealed, promote_stale, unrevoked)
            .await
    }
}

/// The revocation markers a batch of keys reads beside the values: each distinct marker once,
/// and for each key (by its place in the batch) where its key's, device's and tenant's are.
#[derive(Default)]
pub(super) struct Markers {
    /// The markers' store keys, to append to the batch.
    pub(super) keys: Vec<Vec<u8>>,
    of_key: Vec<[usize; 3]>,
}

impl Markers {
    pub(super) fn of<'a, N: Namespace + 'a>(keys: impl Iterator<Item = &'a Key<N>>) -> Self {
        let mut markers = Self::default();
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        for key in keys {
            let places = scopes_of(key).map(|scope| {
                let marker_key = message::marker_key(&scope);
                *index.entry(marker_key).or_insert_with_key(|marker_key| {
                    markers.keys.push(marker_key.clone());
                    markers.keys.len() - 1
                })
            });
            markers.of_key.push(places);
        }
        markers
    }

    /// From what the store answered for `keys`: for the `n`-th key, the time before which a
    /// value of it is revoked (0 for none). A marker that does not verify revokes everything:
    /// it can only cause misses.
    pub(super) fn open(self, ring: &KeyRing, found: Vec<Option<Bytes>>) -> impl Fn(usize) -> u64 {
        let revoked: Vec<u64> = self
            .keys
            .iter()
            .zip(&found)
            .map(|(marker_key, marker)| match marker {
                None => 0,
                Some(marker) => message::open_marker(ring, marker_key, marker).unwrap_or(u64::MAX),
            })
            .collect();
        let of_key = self.of_key;
        move |n| {
            of_key.get(n).map_or(0, |places| {
                places
                    .iter()
                    .map(|&place| revoked.get(place).copied().unwrap_or(u64::MAX))
                    .max()
                    .unwrap_or(0)
            })
        }
    }
}

/// Whether a scope of `key` was revoked later than `window_ms` before `since_ms`.
fn revoked_after<N: Namespace>(
    recent: &HashMap<Scope, u64>,
    key: &Key<N>,
    since_ms: u64,
    window_ms: u64,
) -> bool {
    !recent.is_empty()
        && scopes_of(key).iter().any(|scope| {
            recent
                .get(scope)
                .is_some_and(|&revoked_ms| since_ms < revoked_ms.saturating_add(window_ms))
        })
}

impl<N: Namespace> CoherentTier for Inner<N> {
    fn namespace(&self) -> &'static str {
        N::NAME
    }

    fn apply(&self, scope: &Scope) {
        let Some(coherence) = &self.coherence else {
            return;
        };
        let now_ms = self.shared.clock.now_ms();
        let mut recent = lock(&coherence.recent);
        let remember_ms = coherence.remember_ms;
        recent.retain(|_, revoked_ms| now_ms < revoked_ms.saturating_add(remember_ms));
        recent.insert(scope.clone(), now_ms);
        match scope {
            Scope::Key(encoded) => {
                if let Ok(key) = Key::<N>::decode(encoded) {
                    // A load in flight must not store what it read before the revocation.
                    drop(self.flights.invalidate(&key));
                    if let Some(local) = &self.local {
                        local.remove(&key);
                    }
                }
            }
            Scope::Device { owner, .. } => {
                self.flights.invalidate_where(|key| key.owner() == owner);
                if let Some(local) = &self.local {
                    local.remove_owner(&owner.tenant, Some(&owner.device));
                }
            }
            Scope::Tenant { tenant, .. } => {
                self.flights
                    .invalidate_where(|key| key.owner().tenant == *tenant);
                if let Some(local) = &self.local {
                    local.remove_owner(tenant, None);
                }
            }
        }
    }

    fn flush(&self) {
        let Some(coherence) = &self.coherence else {
            return;
        };
        let _recent = lock(&coherence.recent);
        // Loads in flight may have read what a missed revocation changed.
        self.flights.invalidate_where(|_| true);
        if let Some(local) = &self.local {
            local.clear();
        }
    }
}

/// Loom models: `RUSTFLAGS="--cfg scoped_cache_loom" cargo test --release --lib loom_`.
#[cfg(all(test, scoped_cache_loom))]
mod loom_models {
    use crate::bus::MemoryBus;
    use crate::{Client, DeviceId, Key, KeyId, KeyRing, Namespace, Policy, RawBytes, TenantId};
    use bytes::Bytes;
    use std::time::Duration;

    struct Relations;
    impl Namespace for Relations {
        const NAME: &'static str = "rel";
        const SCHEMA: u16 = 1;
        type Item = ();
        type Value = Bytes;
        type Codec = RawBytes;
    }

    /// A value read before its instance's subscription dropped and came back is inserted
    /// in-process while that happens: whichever way they interleave, the tier does not keep
    /// it (the flush drops it, or the insert sees that the tier was flushed since the read).
    #[test]
    fn loom_a_value_read_before_a_reconnect_is_not_kept_in_process() {
        loom::model(|| {
            let bus = MemoryBus::new();
            let ring = KeyRing::new(KeyId(1), &[7; 32]).unwrap_or_else(|_| unreachable!());
            let client = Client::builder()
                .key_ring(ring)
                .bus(bus.clone())
                .build()
                .unwrap_or_else(|_| unreachable!());
            let coherent = Policy::Coherent {
                l1_ttl: Duration::from_secs(60),
            };
            let cache = client
                .cache::<Relations>()
                .policy(coherent)
                .build()
                .unwrap_or_else(|_| unreachable!());
            let key = Key::new(TenantId::from_u64(1), DeviceId::from_u64(7), ());
            let read = cache.read_now();
            let reconnect = loom::thread::spawn(move || {
                bus.disconnect(0);
                bus.reconnect(0);
            });
            let local = cache.inner.local.as_ref().unwrap_or_else(|| unreachable!());
            cache.local_insert(local, &key, Bytes::from_static(b"yes"), read, u64::MAX);
            reconnect.join().unwrap_or_else(|_| unreachable!());
            assert!(local.get(&key).is_none(), "kept across the reconnect");
        });
    }
}
