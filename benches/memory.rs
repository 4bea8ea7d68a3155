//! Memory per cached entry: `LocalCache` (L1) and `MemoryStore` (the in-process shared tier)
//! against moka and quick_cache, holding the same keys and values.
//!
//! Run with `cargo bench --bench memory`; the table and how to read it are in `BENCHMARKS.md`.
//! Under `cargo test` it runs once on a few entries, as a smoke test.
//!
//! **How it measures.** The binary's global allocator counts every byte requested and freed
//! (`stats_alloc`). For each contender and value size: the count is taken, the cache is built
//! with room for `ENTRIES` entries (so pre-sized tables count), `ENTRIES` distinct keys with
//! values of that size are made and inserted (moka's pending maintenance is then run), and the
//! count is taken again. Bytes per entry = (bytes allocated − bytes freed) ÷ `ENTRIES`: what the
//! cache holds on to, the value's own bytes included, keys and values made and dropped on the way
//! excluded. These are bytes *requested* from the allocator; the allocator's own rounding and
//! headers (glibc malloc: 8–16 bytes per allocation) come on top, so the allocations per entry
//! are printed too.
//!
//! **What is compared.** Every contender maps a `Key<Thumbs>` (a u64 tenant, a u64 device and a
//! u64 item: `size_of` 56 bytes, no heap) to a `Bytes` value of 100 bytes or 10 KiB, with no
//! TTL, aHash and no eviction (capacity = entries).
//! `LocalCache` also keeps each entry's owner and verification data. `MemoryStore` holds what a
//! `Cache` with no in-process tier writes to it: the key's byte encoding and the *sealed*
//! envelope (header, owner, timestamps, MAC tag and the value), so its figure includes the
//! envelope's bytes; moka and quick_cache are measured with the plain value, as an
//! application would use them.

mod common;

use bytes::Bytes;
use common::contenders::{local_cache, moka, quick_cache};
use common::{BenchKey, SECRET, Thumbs, measuring, random_bytes, random_key, rng};
use scoped_cache::{Client, KeyId, KeyRing, MemoryStore};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::sync::Arc;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Value sizes measured: a small thumbnail's metadata, and a thumbnail.
const VALUE_LENS: [usize; 2] = [100, 10 * 1024];

/// What one contender held after its fill.
struct Held {
    bytes_per_entry: f64,
    allocations_per_entry: f64,
}

/// Builds a cache with `build`, fills it with `entries` keys and `value_len`-byte values through
/// `fill`, and returns what it still holds per entry, the cache itself and everything it
/// allocated included. The cache is dropped after the count.
fn held<C>(
    entries: usize,
    value_len: usize,
    build: impl FnOnce(usize) -> C,
    fill: impl Fn(&C, BenchKey, Bytes),
    settle: impl FnOnce(&C),
) -> Held {
    let mut rng = rng();
    let region = Region::new(GLOBAL);
    let cache = build(entries);
    for _ in 0..entries {
        let key = random_key(&mut rng);
        let value = Bytes::from(random_bytes(&mut rng, value_len));
        fill(&cache, key, value);
    }
    settle(&cache);
    let change = region.change();
    drop(cache);
    // stats_alloc already counts a reallocation's growth in `bytes_allocated` (and a shrink in
    // `bytes_deallocated`); `bytes_reallocated` is the same change again, not to be added.
    let held = change.bytes_allocated as f64 - change.bytes_deallocated as f64;
    let allocations = change.allocations as f64 - change.deallocations as f64;
    Held {
        bytes_per_entry: held / entries as f64,
        allocations_per_entry: allocations / entries as f64,
    }
}

/// A `Cache` with no in-process tier over a `MemoryStore` large enough to evict nothing: every
/// insert seals the value and writes it to the store.
fn store_cache(entries: usize, value_len: usize) -> scoped_cache::Cache<Thumbs> {
    let room = (entries * (value_len + 1024)) as u64;
    let ring = KeyRing::new(KeyId(1), &SECRET).expect("a valid key ring");
    let client = Client::builder()
        .key_ring(ring)
        .remote_shared(Arc::new(MemoryStore::new(room)))
        .build()
        .expect("a valid client");
    client
        .cache::<Thumbs>()
        .local_capacity(0)
        .build()
        .expect("a valid cache")
}

fn main() {
    let entries = if measuring() { 100_000 } else { 1_000 };
    println!(
        "bytes held per entry: {entries} entries, key Key<Thumbs> ({} bytes, no heap), \
         no eviction, no TTL",
        std::mem::size_of::<BenchKey>()
    );
    println!(
        "{:<14} {:>8} {:>12} {:>12} {:>14} {:>9} {:>9}",
        "contender", "value", "bytes/entry", "overhead", "allocs/entry", "÷ quick", "÷ moka"
    );
    for value_len in VALUE_LENS {
        let quick = held(
            entries,
            value_len,
            quick_cache,
            |cache, key, value| cache.insert(key, value),
            |_| {},
        );
        let moka = held(
            entries,
            value_len,
            |capacity| moka(capacity, None),
            |cache, key, value| cache.insert(key, value),
            |cache| cache.run_pending_tasks(),
        );
        let local = held(
            entries,
            value_len,
            |capacity| local_cache(capacity, None),
            |cache, key, value| {
                cache.insert(&key, value);
            },
            |_| {},
        );
        let store = held(
            entries,
            value_len,
            |entries| store_cache(entries, value_len),
            |cache, key, value| {
                pollster::block_on(cache.insert(&key, value)).expect("an in-memory insert");
            },
            |_| {},
        );
        for (name, held) in [
            ("LocalCache", &local),
            ("MemoryStore", &store),
            ("quick_cache", &quick),
            ("moka", &moka),
        ] {
            println!(
                "{:<14} {:>8} {:>12.0} {:>12.0} {:>14.2} {:>9.2} {:>9.2}",
                name,
                value_len,
                held.bytes_per_entry,
                held.bytes_per_entry - value_len as f64,
                held.allocations_per_entry,
                held.bytes_per_entry / quick.bytes_per_entry,
                held.bytes_per_entry / moka.bytes_per_entry,
            );
        }
    }
}
