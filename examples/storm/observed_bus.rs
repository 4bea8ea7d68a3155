//! The fleet's bus, observed: when each invalidation was published and when each instance
//! received it, for the invalidation lag and for judging what an instance served after a
//! transfer; and cut (`--bus-cuts`): an instance's subscription drops for a while, as a
//! network bus's does, and the instance is told so.

use bytes::Bytes;
use scoped_cache::bus::{self, BusReceiver, BusTransport};
use scoped_cache::store::StoreFuture;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What every instance's [`ObservedBus`] saw.
#[derive(Default)]
pub struct BusLog {
    inner: Mutex<Log>,
    /// Each instance's end of the bus, by instance.
    receivers: Mutex<Vec<Arc<ObservedReceiver>>>,
}

#[derive(Default)]
struct Log {
    /// Invalidations in the order they were published: when, and their bytes' fingerprint.
    published: Vec<(Instant, u64)>,
    /// Per fingerprint, when each instance received it.
    received: HashMap<u64, Vec<(usize, Instant)>>,
}

/// Invalidation `index` of the log: when it was published, and when each instance got it.
pub struct Delivery {
    pub published: Instant,
    pub received: Vec<(usize, Instant)>,
}

impl BusLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many invalidations were published so far.
    pub fn published(&self) -> usize {
        self.lock().published.len()
    }

    /// Cuts instance `instance`'s subscription for `length`: it is told at once, hears nothing
    /// meanwhile, then is told it is subscribed again.
    pub async fn cut(&self, instance: usize, length: Duration) {
        let receiver = {
            let receivers = self.receivers.lock().unwrap_or_else(|e| e.into_inner());
            receivers.iter().find(|r| r.instance == instance).cloned()
        };
        let Some(receiver) = receiver else {
            return;
        };
        receiver.down.store(true, Ordering::SeqCst);
        receiver.inner.disconnected();
        tokio::time::sleep(length).await;
        receiver.down.store(false, Ordering::SeqCst);
        receiver.inner.connected();
    }

    /// Invalidation `index` (in publishing order).
    pub fn delivery(&self, index: usize) -> Option<Delivery> {
        let log = self.lock();
        let &(published, fingerprint) = log.published.get(index)?;
        let received = log.received.get(&fingerprint).cloned().unwrap_or_default();
        Some(Delivery {
            published,
            received,
        })
    }
}

/// Instance `instance`'s transport: the fleet's shared bus, with every invalidation it
/// publishes and receives written to the log.
pub struct ObservedBus {
    pub inner: Arc<dyn BusTransport>,
    pub instance: usize,
    pub log: Arc<BusLog>,
}

fn fingerprint(message: &[u8]) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(message)
}

impl BusTransport for ObservedBus {
    fn publish(&self, message: Bytes) -> StoreFuture<'_, ()> {
        if bus::is_invalidation(&message) {
            let mut log = self.log.lock();
            log.published.push((Instant::now(), fingerprint(&message)));
        }
        self.inner.publish(message)
    }

    fn subscribe(&self, receiver: Arc<dyn BusReceiver>) {
        let observed = Arc::new(ObservedReceiver {
            inner: receiver,
            instance: self.instance,
            log: Arc::clone(&self.log),
            down: AtomicBool::new(false),
        });
        let mut receivers = self.log.receivers.lock().unwrap_or_else(|e| e.into_inner());
        receivers.push(Arc::clone(&observed));
        drop(receivers);
        self.inner.subscribe(observed);
    }

    fn heartbeat(&self) -> Option<std::time::Duration> {
        self.inner.heartbeat()
    }
}

struct ObservedReceiver {
    inner: Arc<dyn BusReceiver>,
    instance: usize,
    log: Arc<BusLog>,
    /// Cut: what arrives is lost.
    down: AtomicBool,
}

impl BusReceiver for ObservedReceiver {
    fn connected(&self) {
        if !self.down.load(Ordering::SeqCst) {
            self.inner.connected();
        }
    }

    fn message(&self, message: &[u8]) {
        if self.down.load(Ordering::SeqCst) {
            return;
        }
        self.inner.message(message);
        // Received once the instance has applied it.
        if bus::is_invalidation(message) {
            let at = Instant::now();
            let mut log = self.log.lock();
            let received = log.received.entry(fingerprint(message)).or_default();
            received.push((self.instance, at));
        }
    }

    fn disconnected(&self) {
        self.inner.disconnected();
    }

    fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
}
