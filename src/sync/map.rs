//! Under loom: a `Mutex<HashMap>` with the part of `DashMap`'s API the crate uses, so that loom
//! sees every access to the map as a synchronisation point it can interleave.

use super::imp::{Mutex, MutexGuard};
use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

pub(crate) struct ConcurrentMap<K, V, S> {
    map: Mutex<HashMap<K, V, S>>,
    hasher: S,
}

impl<K: Hash + Eq, V, S: BuildHasher + Clone> ConcurrentMap<K, V, S> {
    pub(crate) fn with_hasher(hasher: S) -> Self {
        Self {
            map: Mutex::new(HashMap::with_hasher(hasher.clone())),
            hasher,
        }
    }

    /// Like `with_hasher`: the shim has one lock, whatever the shard count.
    pub(crate) fn with_hasher_and_shard_amount(hasher: S, _shards: usize) -> Self {
        Self::with_hasher(hasher)
    }

    pub(crate) fn hasher(&self) -> &S {
        &self.hasher
    }

    pub(crate) fn view<Q, R>(&self, key: &Q, f: impl FnOnce(&K, &V) -> R) -> Option<R>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let map = super::lock(&self.map);
        map.get_key_value(key).map(|(k, v)| f(k, v))
    }

    /// Like `DashMap::get`: the entry, read under the lock for as long as the guard lives.
    pub(crate) fn get<'a, 'q, Q>(&'a self, key: &'q Q) -> Option<Ref<'a, 'q, K, V, S, Q>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let map = super::lock(&self.map);
        map.contains_key(key).then_some(Ref { map, key })
    }

    /// Like `DashMap::entry`: the key's entry, occupied or vacant, under the lock for as long
    /// as it lives.
    pub(crate) fn entry(&self, key: K) -> Entry<'_, K, V, S> {
        let map = super::lock(&self.map);
        if map.contains_key(&key) {
            Entry::Occupied(OccupiedEntry { map, key })
        } else {
            Entry::Vacant(VacantEntry { map, key })
        }
    }

    pub(crate) fn insert(&self, key: K, value: V) -> Option<V> {
        super::lock(&self.map).insert(key, value)
    }

    pub(crate) fn remove_if<Q>(&self, key: &Q, f: impl FnOnce(&K, &V) -> bool) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut map = super::lock(&self.map);
        let (k, v) = map.get_key_value(key)?;
        if f(k, v) { map.remove_entry(key) } else { None }
    }

    pub(crate) fn clear(&self) {
        super::lock(&self.map).clear();
    }

    /// The keys of the entries whose value satisfies `matches` (`DashMap::iter`, filtered).
    pub(crate) fn keys_where(&self, matches: impl Fn(&V) -> bool) -> Vec<K>
    where
        K: Clone,
    {
        let map = super::lock(&self.map);
        map.iter()
            .filter(|(_, v)| matches(v))
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        super::lock(&self.map).len()
    }
}

/// The guard `ConcurrentMap::get` returns: the map stays locked while it lives.
pub(crate) struct Ref<'a, 'q, K, V, S, Q: ?Sized> {
    map: MutexGuard<'a, HashMap<K, V, S>>,
    key: &'q Q,
}

impl<K: Hash + Eq + Borrow<Q>, V, S: BuildHasher, Q: Hash + Eq + ?Sized> Ref<'_, '_, K, V, S, Q> {
    pub(crate) fn value(&self) -> &V {
        // Present: `get` checked it under this same lock, which is still held.
        &self.map[self.key]
    }
}

/// What `ConcurrentMap::entry` returns, with the part of `DashMap`'s `Entry` the crate uses.
pub(crate) enum Entry<'a, K, V, S> {
    Occupied(OccupiedEntry<'a, K, V, S>),
    Vacant(VacantEntry<'a, K, V, S>),
}

impl<K, V, S> Entry<'_, K, V, S> {
    pub(crate) fn key(&self) -> &K {
        match self {
            Entry::Occupied(entry) => &entry.key,
            Entry::Vacant(entry) => &entry.key,
        }
    }
}

pub(crate) struct OccupiedEntry<'a, K, V, S> {
    map: MutexGuard<'a, HashMap<K, V, S>>,
    key: K,
}

impl<K: Hash + Eq, V, S: BuildHasher> OccupiedEntry<'_, K, V, S> {
    pub(crate) fn get(&self) -> &V {
        // Present: `entry` checked it under this same lock, which is still held.
        &self.map[&self.key]
    }

    pub(crate) fn get_mut(&mut self) -> &mut V {
        self.map
            .get_mut(&self.key)
            .expect("checked under the held lock")
    }

    /// Replaces the value; returns the old one.
    pub(crate) fn insert(&mut self, value: V) -> V {
        std::mem::replace(self.get_mut(), value)
    }
}

pub(crate) struct VacantEntry<'a, K, V, S> {
    map: MutexGuard<'a, HashMap<K, V, S>>,
    key: K,
}

impl<K: Hash + Eq, V, S: BuildHasher> VacantEntry<'_, K, V, S> {
    pub(crate) fn insert(mut self, value: V) {
        self.map.insert(self.key, value);
    }
}
