//! Fail-safe answers and refresh-ahead: [`Cache::get_or_refresh`] answers with the key's own
//! last value when its load fails or is slow, and reloads a value in the background before it
//! goes stale. One load per key at a time; a caller that gives up never stops a load that others
//! (or the cache) still want: it goes on as a task of its own.

use super::{Cache, Policy, Reach};
use crate::detach::Detachable;
use crate::error::{BuildError, LoadError};
use crate::found::Found;
use crate::key::Key;
use crate::load::{self, Joined, LoadLeader, Source, Wait};
use crate::namespace::Namespace;
use crate::observe::{Op, OpKind, Outcome};
use crate::single_flight::{Flights, Role, Ticket};
use crate::stats::Event;
use std::future::Future;
use std::time::Duration;

/// A namespace's fail-safe settings (see [`CacheBuilder::stale_for`](super::CacheBuilder::stale_for)).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct FailSafe {
    pub(super) stale_for: Option<Duration>,
    pub(super) refresh_after: Option<Duration>,
    pub(super) soft_timeout: Option<Duration>,
}

impl FailSafe {
    /// Refuses settings that cannot work together.
    pub(super) fn validate(
        &self,
        ttl: Option<Duration>,
        load_timeout: Option<Duration>,
        policy: Policy,
    ) -> Result<(), BuildError> {
        let set =
            self.stale_for.is_some() || self.refresh_after.is_some() || self.soft_timeout.is_some();
        let refuse = |reason| Err(BuildError::FailSafe(reason));
        if set && policy == Policy::Bypass {
            return refuse(
                "Policy::Bypass caches nothing, so nothing can be served stale or refreshed",
            );
        }
        let Some(ttl) = ttl.filter(|_| set) else {
            return match set {
                true => refuse("without a TTL a value never goes stale: set a ttl"),
                false => Ok(()),
            };
        };
        if self.stale_for.is_some_and(|stale_for| stale_for.is_zero()) {
            return refuse("stale_for must be positive");
        }
        if self
            .refresh_after
            .is_some_and(|after| after.is_zero() || after >= ttl)
        {
            return refuse("refresh_after must be positive and shorter than the TTL");
        }
        if let Some(soft) = self.soft_timeout {
            if self.stale_for.is_none() {
                return refuse("soft_load_timeout needs stale_for: it answers with a stale value");
            }
            if soft.is_zero() || load_timeout.is_some_and(|hard| soft >= hard) {
                return refuse(
                    "soft_load_timeout must be positive and shorter than the load timeout",
                );
            }
        }
        Ok(())
    }
}

/// What [`Cache::get_or_refresh`] returns: the key's own verified value, its age, and whether it
/// is stale.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Fetched<V> {
    /// The value.
    pub value: V,
    /// How long ago it was written, by the writer's clock (zero for a value this call loaded or
    /// waited for): what an HTTP `Age` header reports.
    pub age: Duration,
    /// Why a value past its TTL was served; `None` for a fresh value.
    pub stale: Option<StaleReason>,
}

impl<V> Fetched<V> {
    /// Whether the value is past its TTL (a fail-safe answer).
    pub fn is_stale(&self) -> bool {
        self.stale.is_some()
    }

    /// The value.
    pub fn into_value(self) -> V {
        self.value
    }

    fn loaded(value: V) -> Self {
        Self {
            value,
            age: Duration::ZERO,
            stale: None,
        }
    }
}

/// Why [`Cache::get_or_refresh`] served a stale value.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StaleReason {
    /// The load failed (or passed the load timeout) with this error.
    LoadFailed(LoadError),
    /// The load had not finished within the soft load timeout; it goes on in the background
    /// and refreshes the cache when it ends.
    LoadSlow(Duration),
}

impl<N: Namespace> Cache<N> {
    /// The value for `key` from the cache, or else from `load`; with the namespace's fail-safe
    /// settings, a stale value of the key when the load fails or is slow, and loads ahead of
    /// expiry.
    ///
    /// Like [`get_or_load`](Cache::get_or_load) (one load per full key at a time, the value
    /// stored in both tiers), except that:
    ///
    /// - a caller that stops waiting for the load it runs (answered stale, or dropped) does
    ///   not stop it: it goes on as a task of its own and stores its value for the next caller;
    /// - with [`stale_for`](super::CacheBuilder::stale_for), when the load fails, or has not
    ///   finished within the [soft load timeout](super::CacheBuilder::soft_load_timeout), the
    ///   key's last value is returned if it is within its stale time *when it is returned*,
    ///   marked [`stale`](Fetched::stale). It is the key's own value, verified like any other;
    ///   never one that was invalidated, sealed under another `SCHEMA`, or past TTL +
    ///   `stale_for`. Without one, the load's error is returned;
    /// - with [`refresh_after`](super::CacheBuilder::refresh_after), a fresh value older than
    ///   that is returned at once and one load of the key starts in the background (none if one
    ///   is already running).
    ///
    /// With [`Policy::Bypass`] it runs `load` and returns its value.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use scoped_cache::{Client, DeviceId, Key, ManualClock, Namespace, RawBytes, TenantId};
    /// use std::time::Duration;
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let clock = ManualClock::new(1_700_000_000_000);
    /// let client = Client::builder().clock(clock.clock()).build()?;
    /// let thumbs = client
    ///     .cache::<Thumbnails>()
    ///     .ttl(Duration::from_secs(60))
    ///     .stale_for(Duration::from_secs(3600))
    ///     .build()?;
    /// let key = Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    ///
    /// let fetched = thumbs.get_or_refresh(&key, || async { Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"jpeg")) }).await?;
    /// assert!(!fetched.is_stale());
    ///
    /// clock.advance(Duration::from_secs(90)); // past the TTL; the origin is down
    /// let outage = || async { Err::<bytes::Bytes, _>(std::io::Error::other("origin down")) };
    /// let fetched = thumbs.get_or_refresh(&key, outage).await?;
    /// assert!(fetched.is_stale());
    /// assert_eq!((fetched.value, fetched.age), (bytes::Bytes::from_static(b"jpeg"), Duration::from_secs(90)));
    /// assert_eq!(thumbs.get(&key).await, None); // a plain read serves only fresh values
    ///
    /// clock.advance(Duration::from_secs(3600)); // past TTL + stale_for: nothing to fall back on
    /// assert!(thumbs.get_or_refresh(&key, outage).await.is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get_or_load`](Cache::get_or_load), when there is no stale value to answer with.
    ///
    /// # Panics
    ///
    /// It must run inside a Tokio runtime (background loads are tasks), with the time driver
    /// enabled for the load timeouts. A panic of the loader this call runs propagates to it; a
    /// panic in a background load ends that load only (the flight is handed over, and the next
    /// caller loads again).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a dropped call stops waiting; the load it started or joined goes on.
    pub async fn get_or_refresh<F, Fut, E>(
        &self,
        key: &Key<N>,
        load: F,
    ) -> Result<Fetched<N::Value>, LoadError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<N::Value, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let get_or_refresh = self.get_or_refresh_observed(key, load);
        Op::start(N::NAME, OpKind::GetOrRefresh)
            .run(get_or_refresh)
            .await
    }

    async fn get_or_refresh_observed<F, Fut, E>(
        &self,
        key: &Key<N>,
        load: F,
    ) -> (Result<Fetched<N::Value>, LoadError>, Outcome)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<N::Value, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let inner = &*self.inner;
        let reach = self.reach();
        if reach == Reach::Nothing {
            inner.counters.record(Event::Miss);
            let outcome = load::run_load(&inner.counters, key, self.timed(load)).await;
            return (
                outcome.clone().map(Fetched::loaded),
                Outcome::Bypass.unless_err(&outcome),
            );
        }
        let ticket = inner.flights.ticket(key);
        let found = self.find(key, reach).await;
        let now_ms = inner.shared.clock.now_ms();
        let has_stale = match found {
            Some((found, tier)) if found.fresh => {
                if self.refresh_due(&found, now_ms) {
                    self.refresh_ahead(key, reach, load);
                }
                let fetched = Fetched {
                    age: found.age(now_ms),
                    value: found.value,
                    stale: None,
                };
                return (Ok(fetched), Outcome::read(Some(tier)));
            }
            found => found.is_some(),
        };
        let mut loading = std::pin::pin!(self.load_detachable(key, ticket, reach, load));
        let loaded = match (has_stale, inner.fail_safe.soft_timeout) {
            (true, Some(limit)) => tokio::time::timeout(limit, loading.as_mut())
                .await
                .map_err(|_| StaleReason::LoadSlow(limit)),
            _ => Ok(loading.as_mut().await),
        };
        let reason = match loaded {
            Ok((Ok(value), source)) => return (Ok(Fetched::loaded(value)), observed(source)),
            Ok((Err(error), _)) => StaleReason::LoadFailed(error),
            Err(slow) => slow,
        };
        // Looked up again: the value found before the load may have expired while it ran.
        match self.stale(key, reach).await {
            Some(stale) => {
                inner.counters.record(Event::ServedStale);
                let age = stale.age(inner.shared.clock.now_ms());
                let fetched = Fetched {
                    value: stale.value,
                    age,
                    stale: Some(reason),
                };
                (Ok(fetched), Outcome::Stale)
            }
            None => match reason {
                StaleReason::LoadFailed(error) => (Err(error), Outcome::Error),
                // The stale value expired while the load ran: wait for the load after all.
                StaleReason::LoadSlow(_) => {
                    let (outcome, source) = loading.await;
                    let observed = observed(source).unless_err(&outcome);
                    (outcome.map(Fetched::loaded), observed)
                }
            },
        }
    }

    /// The key's verified value from the tiers `reach` allows, fresh or stale, uncounted.
    async fn stale(&self, key: &Key<N>, reach: Reach) -> Option<Found<N::Value>> {
        match reach {
            Reach::Both(_) => self.lookup(key).await.map(|(found, _)| found),
            Reach::Local | Reach::Nothing => self.readable_local()?.find(key),
        }
    }

    /// Whether a fresh value is old enough to be reloaded ahead of its expiry.
    fn refresh_due(&self, found: &Found<N::Value>, now_ms: u64) -> bool {
        (self.inner.fail_safe.refresh_after).is_some_and(|after| found.age(now_ms) >= after)
    }

    /// Starts one background refresh of `key`, unless one is already waiting to run.
    ///
    /// The task joins the key's flight only when it runs: a caller that misses while it waits
    /// (the value expired first) loads at once rather than waiting behind a task still queued.
    fn refresh_ahead<F, Fut, E>(&self, key: &Key<N>, reach: Reach, load: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<N::Value, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        // Read first: every hit on a due key comes here until its refresh ends.
        let refreshes = &self.inner.refreshes;
        if refreshes.get(key).is_some() || refreshes.insert(key.clone(), ()).is_some() {
            return;
        }
        let (cache, key) = (self.clone(), key.clone());
        tokio::spawn(async move {
            let _pending = PendingRefresh {
                cache: &cache,
                key: &key,
            };
            let ticket = cache.inner.flights.ticket(&key);
            // Another caller may have reloaded it while this task waited to run.
            let found = cache.stale(&key, reach).await;
            let now_ms = cache.inner.shared.clock.now_ms();
            if found.is_some_and(|found| found.fresh && !cache.refresh_due(&found, now_ms)) {
                return;
            }
            if let Role::Leader(leader) = Flights::join(&cache.inner.flights, &key) {
                let refresh =
                    cache
                        .clone()
                        .lead(leader, key.clone(), ticket, reach, load, Lead::Refresh);
                // A failed refresh leaves the value as it is (counted in `load_errors`).
                let _ = refresh.await;
            }
        });
    }

    /// Joins `key`'s flight and waits for its outcome; a caller that comes to lead runs the load
    /// itself, and if it stops waiting (answered stale, or dropped) the load goes on as a task.
    async fn load_detachable<F, Fut, E>(
        &self,
        key: &Key<N>,
        ticket: Ticket,
        reach: Reach,
        load: F,
    ) -> (Result<N::Value, LoadError>, Source)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<N::Value, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let inner = &*self.inner;
        let leader = match load::join(&inner.flights, &inner.counters, key, Wait::Yield).await {
            Joined::Shared(outcome) => return (outcome, Source::Coalesced),
            Joined::Lead(leader) => leader,
        };
        let lead = self
            .clone()
            .lead(leader, key.clone(), ticket, reach, load, Lead::Miss);
        Detachable::new(lead).await
    }

    /// The leader's part, owned so that it can run as a task: re-check, load, store.
    async fn lead<F, Fut, E>(
        self,
        leader: LoadLeader<N>,
        key: Key<N>,
        ticket: Ticket,
        reach: Reach,
        load: F,
        kind: Lead,
    ) -> (Result<N::Value, LoadError>, Source)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<N::Value, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let (cache, key) = (&self, &key);
        // A load that ended since the caller looked may have stored what it needs: any fresh
        // value for a miss; for a refresh, one that is not itself due.
        let recheck = || async move {
            let found = cache.stale(key, reach).await.filter(|found| found.fresh)?;
            let due = cache.refresh_due(&found, cache.inner.shared.clock.now_ms());
            (kind == Lead::Miss || !due).then_some(found.value)
        };
        let store = |value| async move {
            let _ = cache.write(key, value).await;
        };
        let counters = &self.inner.counters;
        let (outcome, source) = load::lead(
            leader,
            counters,
            key,
            ticket,
            recheck,
            || self.timed(load),
            store,
        )
        .await;
        if kind == Lead::Refresh && source == Source::Loaded {
            counters.record(Event::Refresh);
        }
        (outcome, source)
    }
}

/// A refresh waiting to run or running: removed when it ends, however it ends.
struct PendingRefresh<'a, N: Namespace> {
    cache: &'a Cache<N>,
    key: &'a Key<N>,
}

impl<N: Namespace> Drop for PendingRefresh<'_, N> {
    fn drop(&mut self) {
        self.cache.inner.refreshes.remove_if(self.key, |_, _| true);
    }
}

/// Why a leader loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lead {
    /// A caller found no fresh value.
    Miss,
    /// A fresh value is due for refresh-ahead.
    Refresh,
}

/// The outcome of a `get_or_refresh` that got a loaded value.
fn observed(source: Source) -> Outcome {
    match source {
        Source::Loaded => Outcome::Loaded,
        Source::Coalesced | Source::Cached => Outcome::Coalesced,
    }
}
