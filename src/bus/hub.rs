//! The client's end of the bus: it seals what this instance publishes, and decides what every
//! received message, connect and disconnect means for the coherent caches of the client.

use super::message::{self, Message, Scope};
use super::{BusReceiver, BusStats, BusTransport};
use crate::clock::Clock;
use crate::keyring::KeyRing;
use crate::store::StoreError;
use std::collections::HashMap;
// The crate's primitives, so that a loom model sees the bus's side of the fail-closed rule.
use crate::sync::{AtomicBool, AtomicU64, Mutex, Ordering, lock};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// A coherent cache, as the hub sees it.
pub(crate) trait CoherentTier: Send + Sync {
    fn namespace(&self) -> &'static str;
    /// Drops what `scope` names from the in-process tier, and remembers it was revoked.
    fn apply(&self, scope: &Scope);
    /// Drops the whole in-process tier.
    fn flush(&self);
}

#[derive(Default)]
struct Listening {
    /// Whether the transport says it is subscribed.
    connected: bool,
    /// When the current subscription started (client clock, ms).
    since_ms: u64,
    /// The index of the next invalidation expected of each publisher heard since then.
    peers: HashMap<u64, u64>,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    applied: AtomicU64,
    refused_forged: AtomicU64,
    refused_replayed: AtomicU64,
    gaps: AtomicU64,
    disconnects: AtomicU64,
    flushes: AtomicU64,
    publish_errors: AtomicU64,
}

pub(crate) struct Hub {
    transport: Arc<dyn BusTransport>,
    ring: KeyRing,
    clock: Clock,
    /// How far another instance's clock may be from this one's.
    skew_allowance_ms: u64,
    /// This instance's publisher id, random per client.
    publisher: u64,
    /// Invalidations published so far: the next one's index.
    seq: AtomicU64,
    /// Held from numbering a message until the transport has sent it, so that one instance's
    /// messages leave in the order of their numbers and a receiver sees no false gap.
    publishing: tokio::sync::Mutex<()>,
    heartbeat: Option<Duration>,
    listening: Mutex<Listening>,
    /// Whether in-process entries of coherent caches may be served: subscribed, and (with
    /// heartbeats) sure of it.
    serving: AtomicBool,
    /// With heartbeats: until when the last own heartbeat received vouches for the subscription.
    lease_until_ms: AtomicU64,
    tiers: Mutex<Vec<Weak<dyn CoherentTier>>>,
    counters: Counters,
}

/// How many heartbeat intervals one received heartbeat vouches for the subscription.
const LEASE_HEARTBEATS: u32 = 3;

impl Hub {
    pub(crate) fn start(
        transport: Arc<dyn BusTransport>,
        ring: KeyRing,
        clock: Clock,
        skew_allowance_ms: u64,
    ) -> Result<Arc<Self>, crate::error::BuildError> {
        let heartbeat = transport.heartbeat();
        let runtime = match heartbeat {
            Some(_) => Some(
                tokio::runtime::Handle::try_current()
                    .map_err(|_| crate::error::BuildError::BusNeedsRuntime)?,
            ),
            None => None,
        };
        let hub = Arc::new(Self {
            transport,
            ring,
            clock,
            skew_allowance_ms,
            publisher: random_id(),
            seq: AtomicU64::new(0),
            publishing: tokio::sync::Mutex::new(()),
            heartbeat,
            listening: Mutex::new(Listening::default()),
            serving: AtomicBool::new(false),
            lease_until_ms: AtomicU64::new(0),
            tiers: Mutex::new(Vec::new()),
            counters: Counters::default(),
        });
        let receiver: Arc<dyn BusReceiver> = Arc::new(Receiver(Arc::downgrade(&hub)));
        hub.transport.subscribe(receiver);
        if let (Some(every), Some(runtime)) = (heartbeat, runtime) {
            let weak = Arc::downgrade(&hub);
            runtime.spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let Some(hub) = weak.upgrade() else { return };
                    let _ = hub.publish(None).await;
                }
            });
        }
        Ok(hub)
    }

    pub(crate) fn register(&self, tier: Weak<dyn CoherentTier>) {
        let mut tiers = lock(&self.tiers);
        tiers.retain(|tier| tier.strong_count() > 0);
        tiers.push(tier);
    }

    /// Whether coherent caches may serve in-process entries now.
    #[inline]
    pub(crate) fn is_serving(&self) -> bool {
        if !self.serving.load(Ordering::Acquire) {
            return false;
        }
        match self.heartbeat {
            None => true,
            Some(_) => self.clock.now_ms() < self.lease_until_ms.load(Ordering::Acquire),
        }
    }

    /// Publishes `scope` (a heartbeat for `None`) to every instance but this one, which applies
    /// it itself before calling this.
    pub(crate) async fn publish(&self, scope: Option<&Scope>) -> Result<(), StoreError> {
        let _order = self.publishing.lock().await;
        let seq = match scope {
            Some(_) => self.seq.fetch_add(1, Ordering::AcqRel),
            None => self.seq.load(Ordering::Acquire),
        };
        let sealed = message::seal(&self.ring, self.publisher, seq, self.clock.now_ms(), scope);
        let sent = self.transport.publish(bytes::Bytes::from(sealed)).await;
        match &sent {
            Ok(()) => self.counters.published.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.counters.publish_errors.fetch_add(1, Ordering::Relaxed),
        };
        sent
    }

    /// Applies `scope` to this instance's coherent caches of its namespace.
    pub(crate) fn apply_local(&self, scope: &Scope) {
        let Some(namespace) = scope.namespace() else {
            return;
        };
        for tier in self.tiers() {
            if tier.namespace() == namespace {
                tier.apply(scope);
            }
        }
    }

    fn tiers(&self) -> Vec<Arc<dyn CoherentTier>> {
        lock(&self.tiers).iter().filter_map(Weak::upgrade).collect()
    }

    /// How many times the coherent caches' in-process tiers were dropped: a value read before
    /// a change of it may predate a revocation this instance missed.
    pub(crate) fn generation(&self) -> u64 {
        self.counters.flushes.load(Ordering::Acquire)
    }

    fn flush_all(&self) {
        // Counted before the tiers are dropped, each under its lock: see `local_insert`.
        self.counters.flushes.fetch_add(1, Ordering::AcqRel);
        for tier in self.tiers() {
            tier.flush();
        }
    }

    fn connected(&self) {
        let mut listening = lock(&self.listening);
        listening.connected = true;
        listening.since_ms = self.clock.now_ms();
        listening.peers.clear();
        // Anything may have been missed before: start from an empty in-process tier.
        self.flush_all();
        if self.heartbeat.is_none() {
            self.serving.store(true, Ordering::Release);
        }
        // With heartbeats, serving starts when this instance hears its own heartbeat.
    }

    fn disconnected(&self) {
        self.serving.store(false, Ordering::Release);
        let mut listening = lock(&self.listening);
        if listening.connected {
            self.counters.disconnects.fetch_add(1, Ordering::Relaxed);
        }
        listening.connected = false;
        self.flush_all();
    }

    fn received(&self, bytes: &[u8]) {
        let message = match message::open(&self.ring, bytes) {
            Ok(message) => message,
            Err(_) => {
                self.counters.refused_forged.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let mut listening = lock(&self.listening);
        if !listening.connected {
            return;
        }
        let Message {
            publisher,
            seq,
            sent_ms,
            scope,
        } = message;
        // An invalidation's `seq` is its index among its publisher's invalidations; a
        // heartbeat's is how many that publisher had sent before it. So a lost heartbeat is
        // harmless, and a lost invalidation shows in the next message of either kind.
        let next = match scope {
            Some(_) => seq.saturating_add(1),
            None => seq,
        };
        let gap = match listening.peers.get(&publisher) {
            Some(&expected) if seq < expected => {
                self.counters
                    .refused_replayed
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            Some(&expected) => seq > expected,
            // First heard of since subscribing: a message sent before then (by the publisher's
            // clock, which may be off by the skew allowance) was already in the store's state
            // when this subscription began, or is a replay; either way it has nothing to drop.
            // One sent since, after invalidations of its publisher, may follow lost ones.
            None if sent_ms.saturating_add(self.skew_allowance_ms) < listening.since_ms => {
                self.counters
                    .refused_replayed
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
            None => seq > 0,
        };
        listening.peers.insert(publisher, next);
        if gap {
            self.counters.gaps.fetch_add(1, Ordering::Relaxed);
            self.flush_all();
        }
        match scope {
            None if publisher == self.publisher => {
                if !self.is_serving() {
                    // Back after a lapse or a (re)subscription: whatever was missed is dropped.
                    self.flush_all();
                }
                // Counted from when it was sent: a heartbeat that arrives late, or is replayed,
                // vouches only for the time since then.
                let every = self.heartbeat.unwrap_or_default() * LEASE_HEARTBEATS;
                let until = sent_ms.saturating_add(every.as_millis() as u64);
                self.lease_until_ms.store(until, Ordering::Release);
                self.serving.store(true, Ordering::Release);
            }
            None => {}
            Some(_) if publisher == self.publisher => {} // applied when published
            Some(scope) => {
                drop(listening);
                self.counters.applied.fetch_add(1, Ordering::Relaxed);
                self.apply_local(&scope);
            }
        }
    }

    pub(crate) fn stats(&self) -> BusStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let counters = &self.counters;
        BusStats {
            serving: self.is_serving(),
            published: get(&counters.published),
            applied: get(&counters.applied),
            refused_forged: get(&counters.refused_forged),
            refused_replayed: get(&counters.refused_replayed),
            gaps: get(&counters.gaps),
            disconnects: get(&counters.disconnects),
            flushes: get(&counters.flushes),
            publish_errors: get(&counters.publish_errors),
        }
    }
}

/// What a transport calls: a weak handle, so a transport's task ends with its client.
struct Receiver(Weak<Hub>);

impl BusReceiver for Receiver {
    fn connected(&self) {
        if let Some(hub) = self.0.upgrade() {
            hub.connected();
        }
    }

    fn message(&self, bytes: &[u8]) {
        if let Some(hub) = self.0.upgrade() {
            hub.received(bytes);
        }
    }

    fn disconnected(&self) {
        if let Some(hub) = self.0.upgrade() {
            hub.disconnected();
        }
    }

    fn is_closed(&self) -> bool {
        self.0.strong_count() == 0
    }
}

/// A publisher id: random enough that two instances never share one.
fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = ahash::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}
