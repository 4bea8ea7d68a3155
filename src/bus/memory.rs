//! `MemoryBus`: the in-process bus, for clients that share a `MemoryStore`.

use super::{BusReceiver, BusTransport, lock};
use crate::store::StoreFuture;
use bytes::Bytes;
use std::fmt;
use std::sync::{Arc, Mutex};

struct Subscriber {
    receiver: Arc<dyn BusReceiver>,
    listening: bool,
    /// Messages still to lose on purpose (a test fault).
    to_lose: u64,
}

/// An in-process [`BusTransport`]: every client built with a clone of it hears every other.
///
/// Delivery is synchronous: when a publish returns, every listening subscriber has applied the
/// message. [`disconnect`](MemoryBus::disconnect), [`reconnect`](MemoryBus::reconnect) and
/// [`lose_next`](MemoryBus::lose_next) inject the faults a network bus has, for tests.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use scoped_cache::{Client, DeviceId, Key, KeyId, KeyRing, MemoryBus, MemoryStore, Namespace, Policy, RawBytes, TenantId};
/// use std::sync::Arc;
/// use std::time::Duration;
/// # struct Relations;
/// # impl Namespace for Relations {
/// #     const NAME: &'static str = "may-view";
/// #     const SCHEMA: u16 = 1;
/// #     type Item = ();
/// #     type Value = bytes::Bytes;
/// #     type Codec = RawBytes;
/// # }
/// let (store, bus) = (Arc::new(MemoryStore::default()), MemoryBus::new());
/// let instance = || {
///     let client = Client::builder()
///         .key_ring(KeyRing::new(KeyId(1), &[42; 32])?)
///         .remote_shared(store.clone())
///         .bus(bus.clone())
///         .build()?;
///     let coherent = Policy::Coherent { l1_ttl: Duration::from_secs(5) };
///     Ok::<_, Box<dyn std::error::Error>>(client.cache::<Relations>().policy(coherent).build()?)
/// };
/// let (a, b) = (instance()?, instance()?);
/// let key = Key::new(TenantId::from_u64(42), DeviceId::from_u64(7), ());
/// a.insert(&key, bytes::Bytes::from_static(b"yes")).await?;
/// assert!(b.get(&key).await.is_some()); // now in b's in-process tier too
/// a.invalidate_device(&TenantId::from_u64(42), &DeviceId::from_u64(7)).await?;
/// assert_eq!(b.get(&key).await, None); // b dropped it when the call returned
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Clone, Default)]
pub struct MemoryBus {
    subscribers: Arc<Mutex<Vec<Subscriber>>>,
}

impl MemoryBus {
    /// A bus with no subscribers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many clients subscribed, in the order they were built (the index the fault methods
    /// take).
    pub fn subscribers(&self) -> usize {
        lock(&self.subscribers).len()
    }

    /// Drops subscriber `index`'s subscription: it hears nothing until
    /// [`reconnect`](Self::reconnect), and is told so at once.
    pub fn disconnect(&self, index: usize) {
        let receiver = self.set_listening(index, false);
        if let Some(receiver) = receiver {
            receiver.disconnected();
        }
    }

    /// Restores subscriber `index`'s subscription.
    pub fn reconnect(&self, index: usize) {
        let receiver = self.set_listening(index, true);
        if let Some(receiver) = receiver {
            receiver.connected();
        }
    }

    /// Loses the next `count` messages to subscriber `index` without telling it (as a broker
    /// that drops messages would).
    pub fn lose_next(&self, index: usize, count: u64) {
        if let Some(subscriber) = lock(&self.subscribers).get_mut(index) {
            subscriber.to_lose += count;
        }
    }

    fn set_listening(&self, index: usize, listening: bool) -> Option<Arc<dyn BusReceiver>> {
        let mut subscribers = lock(&self.subscribers);
        let subscriber = subscribers.get_mut(index)?;
        (subscriber.listening != listening).then(|| {
            subscriber.listening = listening;
            Arc::clone(&subscriber.receiver)
        })
    }
}

impl BusTransport for MemoryBus {
    fn publish(&self, message: Bytes) -> StoreFuture<'_, ()> {
        // Receivers run outside the lock: one may publish or reconnect in turn.
        let receivers: Vec<Arc<dyn BusReceiver>> = {
            let mut subscribers = lock(&self.subscribers);
            subscribers.retain(|subscriber| !subscriber.receiver.is_closed());
            subscribers
                .iter_mut()
                .filter(|subscriber| subscriber.listening)
                .filter_map(|subscriber| match subscriber.to_lose {
                    0 => Some(Arc::clone(&subscriber.receiver)),
                    _ => {
                        subscriber.to_lose -= 1;
                        None
                    }
                })
                .collect()
        };
        for receiver in receivers {
            receiver.message(&message);
        }
        Box::pin(async { Ok(()) })
    }

    fn subscribe(&self, receiver: Arc<dyn BusReceiver>) {
        lock(&self.subscribers).push(Subscriber {
            receiver: Arc::clone(&receiver),
            listening: true,
            to_lose: 0,
        });
        receiver.connected();
    }
}

impl fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBus")
            .field("subscribers", &self.subscribers())
            .finish()
    }
}
