//! The remote tier of a `Cache`: values are sealed on the way in and opened for the requested
//! key on the way out; every call goes through the client's store breaker.

use super::coherent::Markers;
use super::{Cache, Read};
use crate::clock::{NEVER, deadline, expiry_margin};
use crate::codec::Codec;
use crate::error::Error;
use crate::found::Found;
use crate::key::Key;
use crate::namespace::Namespace;
use crate::observe;
use crate::owned;
use crate::refusal::{Disposal, Refusal};
use crate::stats::Event;
use crate::violation::{Tier, Violation};
use bytes::Bytes;
use std::time::Duration;

impl<N: Namespace> Cache<N> {
    /// The verified value for `key` from the store, or `None`. It is promoted to the in-process
    /// tier when fresh, or stale and `promote_stale` (the tier holds no copy of the key that it
    /// would replace).
    pub(super) async fn remote_get(
        &self,
        key: &Key<N>,
        promote_stale: bool,
    ) -> Option<Found<N::Value>> {
        if self.inner.coherence.is_some() {
            return self.coherent_remote_get(key, promote_stale).await;
        }
        let inner = &*self.inner;
        let remote = inner.shared.remote.as_ref()?;
        let encoded = key.encode();
        let call = remote.store.get(&encoded);
        let sealed = inner
            .shared
            .call_store(N::NAME, &inner.counters, call)
            .await
            .ok()??;
        let read = self.read_now();
        self.accept(key, &encoded, &sealed, promote_stale, (0, read))
            .await
    }

    /// Fills `values[i]` for each `i` in `missing` from the store, in one batch. Each value is
    /// matched to its key by position *and* opened for that key; a batch of the wrong length is
    /// refused whole (a remote error).
    pub(super) async fn remote_get_many(
        &self,
        keys: &[Key<N>],
        missing: &[usize],
        values: &mut [Option<N::Value>],
    ) {
        let inner = &*self.inner;
        let Some(remote) = &inner.shared.remote else {
            return;
        };
        // A coherent cache reads each key's revocation markers in the same batch, after the keys.
        let markers = match inner.coherence {
            Some(_) => Markers::of(missing.iter().map(|&i| &keys[i])),
            None => Markers::default(),
        };
        let mut batch: Vec<Vec<u8>> = Vec::with_capacity(missing.len() + markers.keys.len());
        batch.extend(missing.iter().map(|&i| keys[i].encode()));
        batch.extend(markers.keys.iter().cloned());
        let read = self.read_now();
        let call = remote.store.get_many(&batch);
        match inner
            .shared
            .call_store(N::NAME, &inner.counters, call)
            .await
        {
            Ok(mut found) if found.len() == batch.len() => {
                let revoked = markers.open(&remote.ring, found.split_off(missing.len()));
                for (n, ((&i, encoded), sealed)) in
                    missing.iter().zip(&batch).zip(found).enumerate()
                {
                    if let Some(sealed) = sealed {
                        let revoked_before = revoked(n);
                        let found =
                            self.accept(&keys[i], encoded, &sealed, false, (revoked_before, read));
                        let found = found.await;
                        values[i] = found.and_then(Found::fresh);
                        if values[i].is_some() {
                            inner.counters.record(Event::HitRemote);
                        }
                    }
                }
            }
            Ok(_) => inner.counters.record(Event::RemoteError),
            Err(_) => {} // counted by `call_store`
        }
        // One remote lookup per key asked for, as `get` counts them.
        for &i in missing {
            observe::lookup(N::NAME, Tier::Remote, values[i].is_some());
        }
    }

    /// Opens a remote value for `key` and decodes it (promoting it to the in-process tier when it
    /// is fresh, or stale and `promote_stale`), or refuses it. A value sealed before
    /// `revoked_before_ms` (a coherent cache's revocation marker; 0 for none) is a miss; `read`
    /// is when the store was asked.
    pub(super) async fn accept(
        &self,
        key: &Key<N>,
        encoded: &[u8],
        sealed: &Bytes,
        promote_stale: bool,
        (revoked_before_ms, read): (u64, Read),
    ) -> Option<Found<N::Value>> {
        let inner = &*self.inner;
        let remote = inner.shared.remote.as_ref()?;
        let now_ms = inner.shared.clock.now_ms();
        let opened = remote
            .envelope
            .open_encoded(sealed, key, encoded, now_ms, &remote.ring);
        let decoded = opened.and_then(|opened| {
            let value = N::Codec::decode(opened.payload)
                .map_err(|_| Refusal::Violation(Violation::Undecodable))?;
            owned::check_read(key, &value)?;
            Ok((value, opened.created_ms, opened.expires_ms))
        });
        match decoded {
            Ok((_, created_ms, _)) if created_ms < revoked_before_ms => None,
            Ok((value, created_ms, expires_ms)) => {
                let fresh = inner.fresh_for.is_fresh(created_ms, || now_ms);
                // A stale value is promoted only where it replaces nothing: the in-process tier
                // may hold a younger stale copy.
                if let (Some(local), true) = (&inner.local, fresh || promote_stale) {
                    // Kept in-process no longer than the store keeps it (the writer's expiry
                    // margin before its sealed expiry) nor than this cache's own keep time.
                    let kept_until = match expires_ms {
                        NEVER => NEVER,
                        expires_ms => {
                            let ttl = Duration::from_millis(expires_ms.saturating_sub(created_ms));
                            let margin = expiry_margin(ttl, remote.skew_allowance_ms);
                            expires_ms.saturating_sub(margin.as_millis() as u64)
                        }
                    };
                    let until = kept_until.min(deadline(now_ms, inner.keep_for));
                    let read = Read {
                        at_ms: created_ms,
                        ..read
                    };
                    self.local_insert(local, key, value.clone(), read, until);
                }
                Some(Found {
                    value,
                    created_ms,
                    fresh,
                })
            }
            Err(refusal) => {
                self.refuse(key, encoded, sealed, refusal).await;
                None
            }
        }
    }

    /// Hands a refused remote value to the namespace's refusals; an integrity failure is then
    /// deleted if the store still holds exactly `refused`: a value spoiled on its way, or replaced
    /// since, is not the stored one, and deleting the key would drop a good value and send its
    /// readers to the loader (during a reconnect storm, all at once).
    async fn refuse(&self, key: &Key<N>, encoded: &[u8], refused: &Bytes, refusal: Refusal) {
        let inner = &*self.inner;
        let disposal = inner
            .refusals
            .refuse(&inner.counters, Tier::Remote, key, refusal);
        if let (Disposal::Delete, Some(remote)) = (disposal, &inner.shared.remote) {
            let call = remote.store.delete_if(encoded, refused);
            let _ = inner
                .shared
                .call_store(N::NAME, &inner.counters, call)
                .await;
        }
    }

    /// `value` sealed for `key` at `now_ms` with its store key, if the cache has a remote tier.
    ///
    /// The envelope expires at the TTL; the store is given the shorter keep time, so no reader
    /// within the clock-skew allowance finds a value the store still holds expired.
    pub(super) fn remote_seal(
        &self,
        key: &Key<N>,
        value: &N::Value,
        now_ms: u64,
    ) -> Result<Option<(Vec<u8>, Bytes)>, Error> {
        let inner = &*self.inner;
        let Some(remote) = &inner.shared.remote else {
            return Ok(None);
        };
        let payload = N::Codec::encode(value)?;
        let encoded = key.encode();
        let expires_ms = deadline(now_ms, inner.lifetime);
        let sealed = remote.envelope.with_sealing(inner.sealing).seal_encoded(
            N::SCHEMA,
            &encoded,
            &payload,
            now_ms,
            expires_ms,
            &remote.ring,
        )?;
        Ok(Some((encoded, sealed)))
    }

    /// Writes a sealed value under its store key, with the cache's TTL.
    pub(super) async fn remote_set(&self, encoded: &[u8], sealed: Bytes) -> Result<(), Error> {
        let inner = &*self.inner;
        let Some(remote) = &inner.shared.remote else {
            return Ok(());
        };
        let call = remote.store.set(encoded, sealed, inner.keep_for);
        inner
            .shared
            .call_store(N::NAME, &inner.counters, call)
            .await?;
        Ok(())
    }

    /// Deletes `key`'s remote value, if the cache has a remote tier.
    pub(super) async fn remote_delete(&self, key: &Key<N>) -> Result<(), Error> {
        let inner = &*self.inner;
        let Some(remote) = &inner.shared.remote else {
            return Ok(());
        };
        let encoded = key.encode();
        let call = remote.store.delete(&encoded);
        inner
            .shared
            .call_store(N::NAME, &inner.counters, call)
            .await?;
        Ok(())
    }
}
