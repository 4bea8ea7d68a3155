//! What every cache of a client shares: the remote tier (store, key ring, store breaker), the
//! sinks, the clock, and the namespace names already taken.

use crate::breaker::{Admission, Breaker, BreakerEvent, BreakerScope, Transition};
use crate::clock::Clock;
use crate::envelope::Envelope;
use crate::error::BuildError;
use crate::keyring::KeyRing;
use crate::namespace::Namespace;
use crate::observe;
use crate::stats::{Counters, Event};
use crate::store::{RemoteStore, StoreError, StoreFuture};
use crate::violation::ViolationReport;
use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A callback that receives every breaker state change.
pub type BreakerSink = Arc<dyn Fn(&BreakerEvent) + Send + Sync>;

pub(crate) struct Shared {
    pub(crate) remote: Option<Remote>,
    pub(crate) sink: Option<crate::violation::ViolationSink>,
    pub(crate) breaker_sink: Option<BreakerSink>,
    pub(crate) clock: Clock,
    /// Which namespace type holds each `NAME` on this client.
    namespaces: Mutex<HashMap<&'static str, TypeId>>,
    /// The invalidation bus, if the client has one.
    pub(crate) bus: Option<Arc<crate::bus::Hub>>,
}

/// A remote store and what goes with it: the key ring that seals its values, the envelope
/// limits, the expiry margin, and the breaker that skips it while it keeps failing.
pub(crate) struct Remote {
    pub(crate) store: Arc<dyn RemoteStore>,
    pub(crate) ring: KeyRing,
    pub(crate) envelope: Envelope,
    /// How far apart instances' clocks may be, in ms: the tiers drop values this much (at most
    /// a quarter of the TTL) before their sealed expiry.
    pub(crate) skew_allowance_ms: u64,
    pub(crate) breaker: Option<Breaker>,
}

impl Shared {
    pub(crate) fn new(
        remote: Option<Remote>,
        sink: Option<crate::violation::ViolationSink>,
        breaker_sink: Option<BreakerSink>,
        clock: Clock,
    ) -> Self {
        Self {
            remote,
            sink,
            breaker_sink,
            clock,
            namespaces: Mutex::new(HashMap::new()),
            bus: None,
        }
    }

    /// The client's invalidation bus.
    pub(crate) fn with_bus(mut self, bus: Option<Arc<crate::bus::Hub>>) -> Self {
        self.bus = bus;
        self
    }

    /// Hands a violation to the sink and, with a breaker, counts it there.
    pub(crate) fn report_violation(&self, report: &ViolationReport, breaker: Option<&Breaker>) {
        if let Some(sink) = &self.sink {
            sink(report);
        }
        if let Some(breaker) = breaker {
            let transition = breaker.record_fault(self.clock.now_ms());
            self.breaker_event(report.namespace, transition);
        }
    }

    /// The one path for a breaker state change, whatever noticed it (an admission, a probe, a
    /// fault): the breaker gauge follows it, then the breaker sink gets it.
    pub(crate) fn breaker_event(&self, namespace: &'static str, transition: Option<Transition>) {
        let Some(transition) = transition else { return };
        match transition.scope {
            BreakerScope::Namespace => observe::breaker(namespace, transition.to),
            BreakerScope::Store => observe::store_breaker(transition.to),
        }
        if let Some(sink) = &self.breaker_sink {
            sink(&transition.event(namespace));
        }
    }

    /// Claims `N::NAME` for `N` on this client.
    ///
    /// # Errors
    ///
    /// [`BuildError::NamespaceNameTaken`] when another namespace type already holds the name.
    pub(crate) fn claim_namespace<N: Namespace>(&self) -> Result<(), BuildError> {
        let mut names = self
            .namespaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let holder = *names.entry(N::NAME).or_insert_with(TypeId::of::<N>);
        if holder == TypeId::of::<N>() {
            Ok(())
        } else {
            Err(BuildError::NamespaceNameTaken { name: N::NAME })
        }
    }

    /// Makes `call` on the remote store, unless the store breaker is open; the outcome feeds the
    /// breaker, and failures and skips are counted in `counters`. `call` is not polled when
    /// skipped.
    pub(crate) async fn call_store<T>(
        &self,
        namespace: &'static str,
        counters: &Counters,
        call: StoreFuture<'_, T>,
    ) -> Result<T, StoreError> {
        let breaker = self
            .remote
            .as_ref()
            .and_then(|remote| remote.breaker.as_ref());
        let admission = match breaker {
            Some(breaker) => {
                let (admission, transition) = breaker.admit(|| self.clock.now_ms());
                self.breaker_event(namespace, transition);
                admission
            }
            None => Admission::Use,
        };
        if admission == Admission::Bypass {
            counters.record(Event::RemoteSkipped);
            // A skipped call returns at once: it spends the task's budget as the store call
            // would have, so a caller looping over skipped calls still lets other tasks (the
            // store's own reconnection among them) run.
            tokio::task::consume_budget().await;
            return Err(StoreError::Skipped);
        }
        let outcome = call.await;
        if outcome.is_err() {
            counters.record(Event::RemoteError);
        }
        if let Some(breaker) = breaker {
            match &outcome {
                Ok(_) => {
                    breaker.record_success();
                    if admission == Admission::Probe {
                        self.breaker_event(namespace, breaker.record_clean_probe());
                    }
                }
                Err(_) => {
                    let transition = breaker.record_fault(self.clock.now_ms());
                    self.breaker_event(namespace, transition);
                }
            }
        }
        outcome
    }
}
