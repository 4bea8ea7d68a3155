//! The one load path of both `get_or_load`s: coalesce per full key, re-check, load, store.

use crate::error::LoadError;
use crate::key::Key;
use crate::limiter::LoadLimiter;
use crate::namespace::Namespace;
use crate::observe;
use crate::owned;
use crate::single_flight::{Flights, Leader, Role, Ticket};
use crate::stats::{Counters, Event};
use crate::sync::Arc;
use std::future::Future;

/// The flights of one cache: at most one load per full key.
pub(crate) type LoadFlights<N> = Flights<Key<N>, Result<<N as Namespace>::Value, LoadError>>;

/// The leader of one load.
pub(crate) type LoadLeader<N> = Leader<Key<N>, Result<<N as Namespace>::Value, LoadError>>;

/// How a caller waits for another caller's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Yields to the async runtime ([`Cache`](crate::Cache)).
    Yield,
    /// Blocks the thread ([`LocalCache`](crate::LocalCache), which is synchronous).
    Block,
}

/// Where a `get_or_load` caller's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Another caller's load of the same key.
    Coalesced,
    /// The cache, filled by a load that ended between this caller's miss and its lead.
    Cached,
    /// This caller's own load.
    Loaded,
}

/// Gets the value of `key` for a caller who found none in the cache: [`join`]s the key's flight,
/// then [`lead`]s if no other caller's load gave it an outcome.
#[allow(clippy::too_many_arguments)] // one path for two callers: each argument is what differs
pub(crate) async fn get_or_load<N, R, RFut, L, Fut, S, SFut>(
    flights: &Arc<LoadFlights<N>>,
    counters: &Counters,
    limiter: Option<&LoadLimiter>,
    key: &Key<N>,
    ticket: Ticket,
    wait: Wait,
    recheck: R,
    load: L,
    store: S,
) -> (Result<N::Value, LoadError>, Source)
where
    N: Namespace,
    R: FnOnce() -> RFut,
    RFut: Future<Output = Option<N::Value>>,
    L: FnOnce() -> Fut,
    Fut: Future<Output = Result<N::Value, LoadError>>,
    S: FnOnce(N::Value) -> SFut,
    SFut: Future<Output = ()>,
{
    match join(flights, counters, key, wait).await {
        Joined::Shared(outcome) => (outcome, Source::Coalesced),
        Joined::Lead(leader) => {
            let loads = Loads {
                counters,
                limiter,
                attached: &|| true,
            };
            lead(leader, loads, key, ticket, recheck, load, store).await
        }
    }
}

/// What [`join`] gives a caller.
pub(crate) enum Joined<N: Namespace> {
    /// This caller leads the key's flight: it must [`lead`] (or drop the leader to hand over).
    Lead(LoadLeader<N>),
    /// The outcome of another caller's load of the same full key.
    Shared(Result<N::Value, LoadError>),
}

/// Waits on other callers' loads of the same full key until one finishes, and shares its
/// outcome; or leads: at once when no load is in flight, or when the one it waited for was
/// given up (its leader cancelled or panicked).
///
/// Cancel safe: a dropped waiter only stops waiting.
pub(crate) async fn join<N: Namespace>(
    flights: &Arc<LoadFlights<N>>,
    counters: &Counters,
    key: &Key<N>,
    wait: Wait,
) -> Joined<N> {
    loop {
        match Flights::join(flights, key) {
            Role::Leader(leader) => return Joined::Lead(leader),
            Role::Waiter(flight) => {
                counters.record(Event::Coalesced);
                let outcome = match wait {
                    Wait::Yield => flight.wait().await,
                    Wait::Block => flight.wait_blocking(),
                };
                if let Some(outcome) = outcome {
                    return Joined::Shared(outcome);
                }
                // The leader gave up; try to lead with our own loader.
            }
        }
    }
}

/// The leader's part. `ticket` is what the caller noted before it looked in the cache
/// ([`Flights::ticket`](crate::single_flight::Flights::ticket)): if a load ended since then it
/// looks in the cache again (`recheck`), else (or if that misses) it calls `load` and, when the
/// value is the key's own ([`Owned`](crate::Owned)) and the key was not invalidated meanwhile,
/// `store`s it before the flight ends, so later callers find it. `load` is called only by a
/// leader, so a load timeout inside it starts when the load does. Dropping the future (or a
/// panic in `load`) hands the flight over to a waiter.
pub(crate) async fn lead<N, R, RFut, L, Fut, S, SFut>(
    leader: LoadLeader<N>,
    loads: Loads<'_>,
    key: &Key<N>,
    ticket: Ticket,
    recheck: R,
    load: L,
    store: S,
) -> (Result<N::Value, LoadError>, Source)
where
    N: Namespace,
    R: FnOnce() -> RFut,
    RFut: Future<Output = Option<N::Value>>,
    L: FnOnce() -> Fut,
    Fut: Future<Output = Result<N::Value, LoadError>>,
    S: FnOnce(N::Value) -> SFut,
    SFut: Future<Output = ()>,
{
    if leader.ended_since(ticket)
        && let Some(value) = recheck().await
    {
        leader.finish(Ok(value.clone()));
        return (Ok(value), Source::Cached);
    }
    let wanted = || leader.has_waiters() || (loads.attached)();
    let outcome = run_load(loads.counters, loads.limiter, &wanted, key, load).await;
    if outcome.is_ok() && !wanted() {
        loads.counters.record(Event::LoadUnclaimed);
    }
    // Not stored when the key was invalidated while loading: the value may predate the change
    // the invalidation announced.
    if let Ok(value) = &outcome
        && leader.may_store()
    {
        store(value.clone()).await;
    }
    leader.finish(outcome.clone());
    (outcome, Source::Loaded)
}

/// Where a leader's load is counted and admitted.
#[derive(Clone, Copy)]
pub(crate) struct Loads<'a> {
    pub(crate) counters: &'a Counters,
    /// The namespace's limit on loads in flight, if it has one.
    pub(crate) limiter: Option<&'a LoadLimiter>,
    /// Whether the caller that leads still waits (a detached load's caller may not).
    pub(crate) attached: &'a (dyn Fn() -> bool + Sync),
}

/// Runs one load of `key` once the limiter admits it (while `wanted`), counted and observed; a
/// value of another owner ([`Owned`](crate::Owned)) is an error, not a value.
pub(crate) async fn run_load<N, L, Fut>(
    counters: &Counters,
    limiter: Option<&LoadLimiter>,
    wanted: &(dyn Fn() -> bool + Sync),
    key: &Key<N>,
    load: L,
) -> Result<N::Value, LoadError>
where
    N: Namespace,
    L: FnOnce() -> Fut,
    Fut: Future<Output = Result<N::Value, LoadError>>,
{
    let _admitted = match limiter {
        Some(limiter) => match limiter.admit(wanted).await {
            Ok(permit) => Some(permit),
            Err(refused) => {
                counters.record(match refused {
                    LoadError::Abandoned => Event::LoadAbandoned,
                    _ => Event::Overloaded,
                });
                observe::load_error(N::NAME, &refused);
                return Err(refused);
            }
        },
        None => None,
    };
    counters.record(Event::Load);
    observe::load(N::NAME);
    let outcome = load()
        .await
        .and_then(|value| owned::check_loaded(key, value));
    if let Err(error) = &outcome {
        counters.record(Event::LoadError);
        observe::load_error(N::NAME, error);
    }
    outcome
}
