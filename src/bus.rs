//! The invalidation bus: what tells every instance of a service to forget a key, a device or a
//! tenant of a [coherent](crate::Policy::Coherent) namespace, and how an instance knows whether
//! it may have missed such a message.
//!
//! A [`BusTransport`] carries opaque messages between the instances that share a store:
//! [`MemoryBus`] in-process (for [`MemoryStore`](crate::MemoryStore), tests and the embedded
//! storm), [`RedisBus`] (feature `redis`) over Redis pub/sub. Give one to
//! [`ClientBuilder::bus`](crate::ClientBuilder::bus); the client seals what it publishes and
//! opens what it receives under its [`KeyRing`](crate::KeyRing).
//!
//! # What a message is trusted for
//!
//! Every message carries the publishing instance's random id, a sequence number, the time it
//! was sent and an HMAC-SHA256 tag under the key ring. An invalidation's number is its index
//! among its publisher's invalidations; a heartbeat's is how many invalidations its publisher
//! had sent before it, so a lost heartbeat costs nothing. A message that does not verify is
//! refused and counted ([`BusStats::refused_forged`]); it changes nothing, so whoever can write
//! to the channel but lacks the ring cannot flush anything. An authentic message seen again (a
//! replay: a number below the one expected next from its publisher, or a message sent before
//! this subscription began) is refused and counted ([`BusStats::refused_replayed`]). An
//! authentic message whose number skips ahead means an invalidation of that publisher was lost
//! (it shows in the publisher's next heartbeat at the latest): the instance drops every
//! in-process entry of its coherent caches. Replaying captured messages can therefore at worst
//! cause misses (never a stale or foreign value), and only once per publisher id not yet seen
//! since this instance subscribed.
//!
//! # When in-process entries are served
//!
//! A coherent cache serves in-process entries only while the bus is *listening*: the transport
//! reports a live subscription, and, for a transport with heartbeats (Redis), this instance has
//! heard its own heartbeat within the last three heartbeat intervals (default 3 × 100 ms). On a
//! disconnect, a lapse, a resubscription or a lost message, every coherent in-process entry is
//! dropped, and reads go to the shared store (where revocations are written before they are
//! published) until the instance is listening again.

mod hub;
mod memory;
pub(crate) mod message;
#[cfg(feature = "redis")]
mod redis;

pub(crate) use hub::{CoherentTier, Hub};
pub use memory::MemoryBus;
#[cfg(feature = "redis")]
pub use redis::{RedisBus, RedisBusBuilder};

use crate::store::StoreFuture;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// Carries the bus's messages between the instances of a service; implement it for another
/// broker. The client calls [`subscribe`](BusTransport::subscribe) once when it is built.
///
/// A transport must deliver every message published after a subscription is confirmed with
/// [`BusReceiver::connected`] to that subscription, in the order each publisher sent them (a
/// publisher sends one message at a time), including the subscriber's own messages; and it
/// must call [`BusReceiver::disconnected`] as soon as it knows that it may not have: a dropped
/// connection, a failed read. It need not be reliable: a lost message is detected by its
/// successor's number, and a silent failure by the heartbeat lease.
pub trait BusTransport: Send + Sync + 'static {
    /// Sends `message` to every subscriber.
    ///
    /// # Errors
    ///
    /// A [`StoreError`](crate::store::StoreError) when the message may not have been sent.
    fn publish(&self, message: Bytes) -> StoreFuture<'_, ()>;

    /// Starts delivering to `receiver`, and keeps the subscription up (resubscribing after a
    /// failure) until [`BusReceiver::is_closed`].
    fn subscribe(&self, receiver: Arc<dyn BusReceiver>);

    /// How often the client should publish a heartbeat to itself (`None`, the default: the
    /// transport reports every loss of its subscription synchronously, as an in-process one
    /// can). With heartbeats, an instance serves coherent in-process entries only within three
    /// intervals of hearing its own last heartbeat, which bounds how long a silent failure can
    /// go unnoticed.
    fn heartbeat(&self) -> Option<Duration> {
        None
    }
}

/// A shared transport is a transport: one chosen at run time (`Arc<dyn BusTransport>`) can be
/// given to [`ClientBuilder::bus`](crate::ClientBuilder::bus).
impl<T: BusTransport + ?Sized> BusTransport for Arc<T> {
    fn publish(&self, message: Bytes) -> StoreFuture<'_, ()> {
        (**self).publish(message)
    }

    fn subscribe(&self, receiver: Arc<dyn BusReceiver>) {
        (**self).subscribe(receiver);
    }

    fn heartbeat(&self) -> Option<Duration> {
        (**self).heartbeat()
    }
}

/// Where a [`BusTransport`] delivers: the client's end of the subscription.
pub trait BusReceiver: Send + Sync {
    /// The subscription is live: messages published from now on will be delivered.
    fn connected(&self);
    /// One message, as published.
    fn message(&self, message: &[u8]);
    /// The subscription is down, or may have lost messages.
    fn disconnected(&self);
    /// The client is gone: the transport may stop delivering.
    fn is_closed(&self) -> bool;
}

/// Whether `message` is an invalidation rather than a heartbeat, read without verifying it:
/// for transports and test harnesses that observe the bus.
pub fn is_invalidation(message: &[u8]) -> bool {
    message::is_invalidation(message)
}

/// Counters of a client's bus, from [`Client::bus_stats`](crate::Client::bus_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusStats {
    /// Whether coherent caches may serve in-process entries now.
    pub serving: bool,
    /// Messages this instance published (invalidations and heartbeats).
    pub published: u64,
    /// Invalidations of other instances applied here.
    pub applied: u64,
    /// Messages refused because they do not verify under the key ring: forged, corrupt, or
    /// sealed with a key this ring lacks. Zero in normal operation.
    pub refused_forged: u64,
    /// Authentic messages refused as replays: already seen, or sent before this subscription.
    pub refused_replayed: u64,
    /// Lost invalidations detected by a skipped sequence number (each dropped the coherent caches'
    /// in-process entries).
    pub gaps: u64,
    /// Times the subscription went down.
    pub disconnects: u64,
    /// Times every coherent in-process entry was dropped (subscribing, disconnects, lapses,
    /// gaps).
    pub flushes: u64,
    /// Publishes that failed (the invalidation's store writes still happened).
    pub publish_errors: u64,
}

/// Locks a std mutex, ignoring poisoning (every critical section here leaves its data whole).
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
