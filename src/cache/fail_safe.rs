//! Fail-safe answers and refresh-ahead: [`Cache::get_or_refresh`] answers with the key's own
//! last value when its load fails or is slow, and reloads a value in the background before it
//! goes stale. One load per key at a time; a caller that gives up never stops a load that others
//! (or the cache) still want: it goes on as a task of its own.

use super::{Cache, LoadStart, Policy, Reach};
use crate::detach::{Attached, Detachable};
use crate::error::{BuildError, LoadError};
use crate::found::Found;
use crate::key::Key;
use crate::load::{self, Joined, LoadLeader, Loads, Source, Wait};
use crate::namespace::Namespace;
use crate::observe::{Op, OpKind, Outcome};
use crate::single_flight::{Flights, Role, Ticket};
use crate::stats::Event;
use std::future::Future;
use std::time::Duration;

/// A namespace's fail-safe settings (see [`CacheBuilder::stale_for`](super::CacheBuilder::stale_for)).
#[derive(Debug, Clone, Copy)]
pub(super) struct FailSafe {
    pub(super) stale_for: Option<Duration>,
    pub(super) refresh_after: Option<Duration>,
    pub(super) soft_timeout: Option<Duration>,
    /// After a load fails, how long its key is answered stale without another load.
    pub(super) throttle: Option<Duration>,
}

/// The fail-safe throttle unless set otherwise: one load attempt per key per second while the
/// origin fails.
pub(super) const DEFAULT_FAIL_SAFE_THROTTLE: Duration = Duration::from_secs(1);

impl Default for FailSafe {
    fn default() -> Self {
        Self {
            stale_for: None,
            refresh_after: None,
            soft_timeout: None,
            throttle: Some(DEFAULT_FAIL_SAFE_THROTTLE),
        }
    }
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
    /// The load had not finished within the time this call would wait (the soft load timeout,
    /// or the caller's deadline), given here; it goes on in the background and refreshes the
    /// cache when it ends.
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
    ///   `stale_for`. Without one, the load's error is returned. After a failed load, calls
    ///   for that key within the [fail-safe
    ///   throttle](super::CacheBuilder::fail_safe_throttle) (1 s by default) are answered
    ///   stale without another load, so a failing origin is asked about each key once a
    ///   throttle, not once a request;
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
        let get_or_refresh = self.get_or_refresh_observed(key, self.inner.max_wait, load);
        Op::start(N::NAME, OpKind::GetOrRefresh)
            .run(get_or_refresh)
            .await
    }

    /// [`get_or_refresh`](Cache::get_or_refresh) that waits at most `wait` for a value,
    /// instead of the namespace's [`max_wait`](super::CacheBuilder::max_wait).
    ///
    /// When `wait` passes, it answers with the key's stale value if it has one (marked
    /// [`StaleReason::LoadSlow`]), else fails with [`LoadError::DeadlineExceeded`] at once. The
    /// load goes on and fills the cache for the next caller, who joins it rather than starting
    /// another.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use scoped_cache::{Client, DeviceId, Key, LoadError, Namespace, RawBytes, TenantId};
    /// use std::time::Duration;
    /// # struct Thumbnails;
    /// # impl Namespace for Thumbnails {
    /// #     const NAME: &'static str = "thumb";
    /// #     const SCHEMA: u16 = 1;
    /// #     type Item = u64;
    /// #     type Value = bytes::Bytes;
    /// #     type Codec = RawBytes;
    /// # }
    /// let thumbs = Client::builder().build()?.cache::<Thumbnails>().build()?;
    /// let key = Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    /// let slow = || async {
    ///     tokio::time::sleep(Duration::from_millis(200)).await;
    ///     Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"jpeg"))
    /// };
    /// let impatient = thumbs.get_or_refresh_within(&key, Duration::from_millis(10), slow).await;
    /// assert!(matches!(impatient, Err(LoadError::DeadlineExceeded(_))));
    /// tokio::time::sleep(Duration::from_millis(300)).await; // the load went on and stored it
    /// assert_eq!(thumbs.get(&key).await.as_deref(), Some(&b"jpeg"[..]));
    /// assert_eq!(thumbs.stats().loads, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get_or_refresh`](Cache::get_or_refresh), and [`LoadError::DeadlineExceeded`].
    pub async fn get_or_refresh_within<F, Fut, E>(
        &self,
        key: &Key<N>,
        wait: Duration,
        load: F,
    ) -> Result<Fetched<N::Value>, LoadError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<N::Value, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let get_or_refresh = self.get_or_refresh_observed(key, Some(wait), load);
        Op::start(N::NAME, OpKind::GetOrRefresh)
            .run(get_or_refresh)
            .await
    }

    async fn get_or_refresh_observed<F, Fut, E>(
        &self,
        key: &Key<N>,
        wait: Option<Duration>,
        load: F,
    ) -> (Result<Fetched<N::Value>, LoadError>, Outcome)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<N::Value, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let inner = &*self.inner;
        let deadline = Deadline::after(wait);
        let reach = self.reach();
        if reach == Reach::Nothing {
            inner.counters.record(Event::Miss);
            return self.load_alone_within(key, deadline, load).await;
        }
        let ticket = inner.flights.ticket(key);
        let Ok(found) = deadline.bound(self.find(key, reach)).await else {
            return self.deadline_exceeded(deadline);
        };
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
            Some((stale, _)) => {
                // Its last load failed a moment ago: answer stale without asking the origin.
                if let Some(error) = self.throttled(key, now_ms) {
                    return self.serve_stale(stale, StaleReason::LoadFailed(error));
                }
                true
            }
            None => false,
        };
        // A coherent key revoked moments ago, or since its load in flight began, is loaded by
        // this caller alone and not stored.
        if self.must_load_alone(key) {
            return self.load_alone_within(key, deadline, load).await;
        }
        let mut loading = std::pin::pin!(self.load_detachable(key, ticket, reach, load));
        // With a stale value to fall back on, wait no longer than the soft timeout.
        let soft = match has_stale {
            true => Deadline::after(inner.fail_safe.soft_timeout),
            false => Deadline::NONE,
        };
        let patience = deadline.earlier(soft);
        let reason = match patience.bound(loading.as_mut()).await {
            Ok((Ok(value), source)) => {
                if inner.fail_safe.stale_for.is_some() {
                    inner.failed_loads.remove_if(key, |_, _| true);
                }
                return (Ok(Fetched::loaded(value)), observed(source));
            }
            Ok((Err(error), _)) => StaleReason::LoadFailed(error),
            Err(waited) => StaleReason::LoadSlow(waited),
        };
        if !has_stale && matches!(reason, StaleReason::LoadSlow(_)) {
            return self.deadline_exceeded(deadline);
        }
        // Looked up again: the value found before the load may have expired while it ran.
        let Ok(stale) = deadline.bound(self.stale(key, reach)).await else {
            return self.deadline_exceeded(deadline);
        };
        match stale {
            Some(stale) => {
                if let (StaleReason::LoadFailed(error), Some(throttle)) =
                    (&reason, inner.fail_safe.throttle)
                {
                    let until_ms = now_ms.saturating_add(throttle.as_millis() as u64);
                    let failed = (until_ms, error.clone());
                    inner.failed_loads.insert(key.clone(), failed);
                }
                self.serve_stale(stale, reason)
            }
            None => match reason {
                StaleReason::LoadFailed(error) => (Err(error), Outcome::Error),
                // The stale value expired while the load ran: wait for the load after all.
                StaleReason::LoadSlow(_) => match deadline.bound(loading).await {
                    Ok((outcome, source)) => {
                        let observed = observed(source).unless_err(&outcome);
                        (outcome.map(Fetched::loaded), observed)
                    }
                    Err(_) => self.deadline_exceeded(deadline),
                },
            },
        }
    }

    /// The answer of a call whose wait ran out with nothing to serve, counted.
    fn deadline_exceeded(
        &self,
        deadline: Deadline,
    ) -> (Result<Fetched<N::Value>, LoadError>, Outcome) {
        self.inner.counters.record(Event::DeadlineExceeded);
        let error = LoadError::DeadlineExceeded(deadline.wait.unwrap_or_default());
        (Err(error), Outcome::Error)
    }

    /// A stale value as this call's answer, counted.
    fn serve_stale(
        &self,
        stale: Found<N::Value>,
        reason: StaleReason,
    ) -> (Result<Fetched<N::Value>, LoadError>, Outcome) {
        self.inner.counters.record(Event::ServedStale);
        let fetched = Fetched {
            age: stale.age(self.inner.shared.clock.now_ms()),
            value: stale.value,
            stale: Some(reason),
        };
        (Ok(fetched), Outcome::Stale)
    }

    /// The error of `key`'s last load, if it failed within the fail-safe throttle.
    fn throttled(&self, key: &Key<N>, now_ms: u64) -> Option<LoadError> {
        let failed_loads = &self.inner.failed_loads;
        let (until_ms, error) =
            failed_loads.view(key, |_, (until_ms, error)| (*until_ms, error.clone()))?;
        if now_ms < until_ms {
            return Some(error);
        }
        failed_loads.remove_if(key, |_, (until, _)| *until == until_ms);
        None
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

    /// Loads `key` for this caller only (no flight joined, nothing stored), within `deadline`.
    async fn load_alone_within<F, Fut, E>(
        &self,
        key: &Key<N>,
        deadline: Deadline,
        load: F,
    ) -> (Result<Fetched<N::Value>, LoadError>, Outcome)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<N::Value, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Ok((outcome, observed)) = deadline.bound(self.load_alone(key, load)).await else {
            return self.deadline_exceeded(deadline);
        };
        (outcome.map(Fetched::loaded), observed)
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
        let attached = Attached::new();
        let kind = Lead::Miss(attached.clone());
        let lead = self
            .clone()
            .lead(leader, key.clone(), ticket, reach, load, kind);
        Detachable::new(attached, lead).await
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
        let (cache, key, kind) = (&self, &key, &kind);
        // A load that ended since the caller looked may have stored what it needs: any fresh
        // value for a miss; for a refresh, one that is not itself due.
        let recheck = || async move {
            let found = cache.stale(key, reach).await.filter(|found| found.fresh)?;
            let due = cache.refresh_due(&found, cache.inner.shared.clock.now_ms());
            (matches!(kind, Lead::Miss(_)) || !due).then_some(found.value)
        };
        let began = &LoadStart::default();
        let store = |value| async move {
            let _ = cache.write(key, value, began.read()).await;
        };
        let counters = &self.inner.counters;
        // A refresh has no caller waiting; a miss's caller may stop waiting (detach).
        let attached = || match &kind {
            Lead::Miss(attached) => attached.is_attached(),
            Lead::Refresh => false,
        };
        let loads = Loads {
            counters,
            limiter: self.inner.limiter.as_ref(),
            attached: &attached,
        };
        let (outcome, source) = load::lead(
            leader,
            loads,
            key,
            ticket,
            recheck,
            || self.timed_from(began, load),
            store,
        )
        .await;
        if matches!(kind, Lead::Refresh) && source == Source::Loaded {
            counters.record(Event::Refresh);
        }
        (outcome, source)
    }
}

/// How long a call may wait, from when it started; `NONE` for no limit.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    wait: Option<Duration>,
    at: Option<tokio::time::Instant>,
}

impl Deadline {
    const NONE: Self = Self {
        wait: None,
        at: None,
    };

    fn after(wait: Option<Duration>) -> Self {
        Self {
            wait,
            at: wait.map(|wait| tokio::time::Instant::now() + wait),
        }
    }

    /// Whichever of the two passes first.
    fn earlier(self, other: Self) -> Self {
        match (self.at, other.at) {
            (Some(mine), Some(theirs)) if theirs < mine => other,
            (None, Some(_)) => other,
            _ => self,
        }
    }

    /// `future`'s output, or how long it was waited for when the deadline passed first. The
    /// future is dropped then (polled through `&mut`, it is not).
    async fn bound<F: Future>(self, future: F) -> Result<F::Output, Duration> {
        match self.at {
            Some(at) => tokio::time::timeout_at(at, future)
                .await
                .map_err(|_| self.wait.unwrap_or_default()),
            None => Ok(future.await),
        }
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
#[derive(Debug)]
enum Lead {
    /// A caller found no fresh value; it may stop waiting (see [`Attached`]).
    Miss(Attached),
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
