//! Instruction counts under callgrind (gungraun): the speed comparison CI can gate on.
//!
//! Six library benchmarks, each measured once under valgrind; fixtures are built by gungraun's
//! `setup` functions and dropped after the benchmark function returns, so neither is counted:
//!
//! - `local_hit`: [`GETS`] verified hits `LocalCache::get` over distinct keys of a cache filled
//!   with [`ENTRIES`] entries (seeded `ahash::RandomState`, no TTL, capacity 2 × entries);
//! - `dashmap_get`: the same keys, values, hasher and order in a raw
//!   `DashMap<Key<N>, Bytes, ahash::RandomState>`, `get(..).map(|v| v.clone())`;
//! - `local_insert_full`: [`INSERTS`] `LocalCache::insert`s of new keys into a cache of
//!   [`ENTRIES`] entries already full of other keys (capacity [`ENTRIES`], no TTL, no reads; filled,
//!   then every entry replaced once by more new keys, so the policy's queues and ghost are at their
//!   steady size), so every insert admits its key and evicts one;
//! - `quick_cache_insert_full`: the same keys, values, hasher and order into a
//!   `quick_cache::sync::Cache<Key<N>, Bytes, _, ahash::RandomState>` of the same capacity, filled
//!   the same way;
//! - `envelope_open`: one `Envelope::open` of a sealed [`PAYLOAD_LEN`]-byte value for its key;
//! - `hmac_sha256`: its irreducible part, the MAC the open verifies: a pre-keyed HMAC-SHA256
//!   state cloned, fed the same bytes the envelope's tag covers (everything but the tag: header,
//!   encoded key, payload length, payload) and compared with the tag in constant time, as the
//!   crate's `src/mac.rs` does, under the key format 2 derives for it;
//! - `envelope_open.payload_16k` and `blake3_keyed.payload_16k`: the same at [`PAYLOAD_16K`]
//!   bytes, whose MAC input is in format 2's keyed BLAKE3 class: one `Envelope::open`, and keyed
//!   BLAKE3 of the bytes the tag covers under the derived key, compared with the tag.
//!
//! This file belongs to the `icount/` package, which depends on `scoped-cache` (`..`) with its
//! default features, so what is measured is the build users ship. `.ci/icount` runs it with
//! `--save-summary=json`; `icount-ratios` (`icount/src/main.rs`) reads each benchmark's
//! instruction count (Ir) from gungraun's `summary.json` and fails when `local_hit ÷ dashmap_get`,
//! `local_insert_full ÷ quick_cache_insert_full`, `envelope_open ÷ hmac_sha256` (1 KiB) or
//! `envelope_open ÷ blake3_keyed` (16 KiB) passes its
//! budget. Every benchmark returns what it read
//! (values, fixture), so a get is counted from the call to the value in hand: dropping the values
//! is not counted, on either side. Results and budgets: the repository's `BENCHMARKS.md`,
//! "Instruction counts (CI check)".
//!
//! `ICOUNT_DEMO_EXTRA_HASHES=n` (read in setup, outside the measurement) makes `local_hit` hash
//! its key `n` more times per get with the cache's hasher: a stand-in regression that shows the
//! check failing without touching the crate's `src/`. Unset, it costs one branch per batch.

// gungraun's macros expand to public modules and constants without docs.
#![allow(missing_docs)]

use bytes::Bytes;
use dashmap::DashMap;
use gungraun::{LibraryBenchmarkConfig, library_benchmark, library_benchmark_group, main};
use hmac::{Hmac, KeyInit, Mac};
use scoped_cache::envelope::{Envelope, NEVER};
use scoped_cache::{DeviceId, Key, KeyId, KeyRing, LocalCache, Namespace, RawBytes, TenantId};
use sha2::Sha256;
use std::hint::black_box;

/// The namespace every benchmark keys into (as in the root's `benches/hot_path.rs`).
struct Thumbs;

impl Namespace for Thumbs {
    const NAME: &'static str = "thumb";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = Bytes;
    type Codec = RawBytes;
}

type BenchKey = Key<Thumbs>;

/// Entries in the cache and the map.
const ENTRIES: usize = 1_000;
/// Gets per benchmark call: every key once, in a seeded random order. `.ci/icount` passes it to
/// `icount-ratios`, which divides by it.
const GETS: usize = ENTRIES;
/// Inserts of new keys per insert benchmark call, each into a full cache. `.ci/icount` passes
/// it to `icount-ratios` as well.
const INSERTS: usize = ENTRIES;
/// Size of each in-process value.
const VALUE_LEN: usize = 64;
/// Payload of the envelope benchmark.
const PAYLOAD_LEN: usize = 1024;
/// Payload of the envelope benchmark in the keyed BLAKE3 class: a thumbnail.
const PAYLOAD_16K: usize = 16 << 10;
/// `docs/ENVELOPE.md` §3: the derived MAC keys of format 2.
const HMAC_CONTEXT: &str = "scoped-cache 2026-12-02 envelope v2 HMAC-SHA256 key";
const BLAKE3_CONTEXT: &str = "scoped-cache 2026-12-02 envelope v2 keyed BLAKE3 key";
/// Seeds of the keys, values and order, and of aHash.
const SEED: u64 = 0x5eed_cafe;
const HASH_SEEDS: [u64; 4] = [1, 2, 3, 4];
const SECRET: [u8; 32] = [0x42; 32];
/// The demo knob described in the crate docs above.
const EXTRA_HASHES_ENV: &str = "ICOUNT_DEMO_EXTRA_HASHES";

/// SplitMix64, kept here rather than rand's: this package builds scoped-cache without `testing`,
/// and the counted workload must not change with a rand release.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Keys (random u64 tenant, device and item), their values, and the order they are read in.
struct Workload {
    keys: Vec<BenchKey>,
    values: Vec<Bytes>,
    /// A permutation of `0..ENTRIES` (Fisher–Yates): each key read once per call.
    order: Vec<usize>,
}

impl Workload {
    fn new() -> Self {
        let mut rng = SplitMix64(SEED);
        let keys = (0..ENTRIES)
            .map(|_| {
                Key::new(
                    TenantId::from_u64(rng.next()),
                    DeviceId::from_u64(rng.next()),
                    rng.next(),
                )
            })
            .collect();
        let values = (0..ENTRIES)
            .map(|_| Bytes::from(rng.bytes(VALUE_LEN)))
            .collect();
        let mut order: Vec<usize> = (0..GETS).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        Self {
            keys,
            values,
            order,
        }
    }
}

fn hasher() -> ahash::RandomState {
    let [a, b, c, d] = HASH_SEEDS;
    ahash::RandomState::with_seeds(a, b, c, d)
}

struct LocalFixture {
    cache: LocalCache<Thumbs>,
    workload: Workload,
    extra_hashes: usize,
}

/// A filled `LocalCache`; every key checked to hit before measuring.
fn local_fixture() -> LocalFixture {
    let workload = Workload::new();
    let cache = LocalCache::<Thumbs>::builder()
        .max_entries(2 * ENTRIES as u64)
        .hasher(hasher())
        .build()
        .expect("valid cache");
    for (key, value) in workload.keys.iter().zip(&workload.values) {
        assert!(cache.insert(key, value.clone()), "insert fits");
    }
    for (key, value) in workload.keys.iter().zip(&workload.values) {
        assert_eq!(cache.get(key).as_ref(), Some(value), "every read hits");
    }
    let extra_hashes = std::env::var(EXTRA_HASHES_ENV)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    LocalFixture {
        cache,
        workload,
        extra_hashes,
    }
}

struct DashMapFixture {
    map: DashMap<BenchKey, Bytes, ahash::RandomState>,
    workload: Workload,
}

/// The same keys and values in a raw `DashMap` with the same hasher.
fn dashmap_fixture() -> DashMapFixture {
    let workload = Workload::new();
    let map = DashMap::with_capacity_and_hasher(2 * ENTRIES, hasher());
    for (key, value) in workload.keys.iter().zip(&workload.values) {
        map.insert(key.clone(), value.clone());
    }
    for (key, value) in workload.keys.iter().zip(&workload.values) {
        assert_eq!(map.get(key).as_deref(), Some(value), "every read hits");
    }
    DashMapFixture { map, workload }
}

// `GETS` verified hits. Returns the fixture and the values so that dropping them is not counted.
#[library_benchmark]
#[bench::gets_1000(setup = local_fixture)]
fn local_hit(fixture: LocalFixture) -> (LocalFixture, Vec<Option<Bytes>>) {
    let mut out = Vec::with_capacity(GETS);
    let keys = &fixture.workload.keys;
    if fixture.extra_hashes == 0 {
        for &i in &fixture.workload.order {
            out.push(fixture.cache.get(black_box(&keys[i])));
        }
    } else {
        let hasher = hasher();
        for &i in &fixture.workload.order {
            let key = black_box(&keys[i]);
            for _ in 0..fixture.extra_hashes {
                black_box(hasher.hash_one(key));
            }
            out.push(fixture.cache.get(key));
        }
    }
    (fixture, out)
}

// `GETS` raw `DashMap` gets plus a clone of the value, the floor `local_hit` is compared with.
#[library_benchmark]
#[bench::gets_1000(setup = dashmap_fixture)]
fn dashmap_get(fixture: DashMapFixture) -> (DashMapFixture, Vec<Option<Bytes>>) {
    let mut out = Vec::with_capacity(GETS);
    let keys = &fixture.workload.keys;
    for &i in &fixture.workload.order {
        out.push(fixture.map.get(black_box(&keys[i])).map(|v| v.clone()));
    }
    (fixture, out)
}

/// The keys of a full cache in its steady state: `resident` fill it, `warm_up` then replace them
/// (so the policy's queues and ghost have reached their size), and `new_keys` are the measured
/// inserts. All distinct (random 64-bit tenant, device and item), with their values.
struct InsertWorkload {
    resident: Workload,
    warm_up: Vec<(BenchKey, Bytes)>,
    new_keys: Vec<(BenchKey, Bytes)>,
}

impl InsertWorkload {
    fn new() -> Self {
        let resident = Workload::new();
        let mut rng = SplitMix64(!SEED);
        let mut entry = || {
            let key = Key::new(
                TenantId::from_u64(rng.next()),
                DeviceId::from_u64(rng.next()),
                rng.next(),
            );
            let value = Bytes::from(rng.bytes(VALUE_LEN));
            // A `Bytes` made from a `Vec` allocates on its first clone; clone it here, so that
            // the measured clone only counts a reference, on both sides alike.
            drop(value.clone());
            (key, value)
        };
        let warm_up = (0..ENTRIES).map(|_| entry()).collect();
        let new_keys = (0..INSERTS).map(|_| entry()).collect();
        Self {
            resident,
            warm_up,
            new_keys,
        }
    }
}

struct LocalFullFixture {
    cache: LocalCache<Thumbs>,
    workload: InsertWorkload,
}

/// A `LocalCache` of `ENTRIES` entries, full.
fn local_full_fixture() -> LocalFullFixture {
    let workload = InsertWorkload::new();
    let cache = LocalCache::<Thumbs>::builder()
        .max_entries(ENTRIES as u64)
        .hasher(hasher())
        .build()
        .expect("valid cache");
    let resident = &workload.resident;
    for (key, value) in resident.keys.iter().zip(&resident.values) {
        assert!(cache.insert(key, value.clone()), "insert fits");
    }
    assert_eq!(cache.len(), ENTRIES, "full");
    for (key, value) in &workload.warm_up {
        assert!(cache.insert(key, value.clone()), "insert fits");
    }
    LocalFullFixture { cache, workload }
}

type QuickCache = quick_cache::sync::Cache<
    BenchKey,
    Bytes,
    quick_cache::UnitWeighter,
    ahash::RandomState,
    quick_cache::sync::DefaultLifecycle<BenchKey, Bytes>,
>;

struct QuickFullFixture {
    cache: QuickCache,
    workload: InsertWorkload,
}

/// A quick_cache cache of `ENTRIES` entries, full of the same keys.
fn quick_full_fixture() -> QuickFullFixture {
    let workload = InsertWorkload::new();
    let cache = QuickCache::with(
        ENTRIES,
        ENTRIES as u64,
        quick_cache::UnitWeighter,
        hasher(),
        quick_cache::sync::DefaultLifecycle::default(),
    );
    let resident = &workload.resident;
    for (key, value) in resident.keys.iter().zip(&resident.values) {
        cache.insert(key.clone(), value.clone());
    }
    // quick_cache splits its capacity into shards, each full once it holds its share: some
    // evict before the whole cache holds `ENTRIES`.
    assert!(cache.len() > ENTRIES * 9 / 10, "full");
    for (key, value) in &workload.warm_up {
        cache.insert(key.clone(), value.clone());
    }
    QuickFullFixture { cache, workload }
}

// `INSERTS` inserts of new keys into a full `LocalCache`: admission, eviction, ghost.
#[library_benchmark]
#[bench::inserts_1000(setup = local_full_fixture)]
fn local_insert_full(fixture: LocalFullFixture) -> (LocalFullFixture, usize) {
    let workload = &fixture.workload;
    let mut stored = 0;
    for (key, value) in &workload.new_keys {
        stored += usize::from(fixture.cache.insert(black_box(key), value.clone()));
    }
    (fixture, stored)
}

// The same inserts into a full quick_cache cache, the floor `local_insert_full` is compared with.
#[library_benchmark]
#[bench::inserts_1000(setup = quick_full_fixture)]
fn quick_cache_insert_full(fixture: QuickFullFixture) -> QuickFullFixture {
    let workload = &fixture.workload;
    for (key, value) in &workload.new_keys {
        fixture.cache.insert(black_box(key).clone(), value.clone());
    }
    fixture
}

struct EnvelopeFixture {
    envelope: Envelope,
    ring: KeyRing,
    key: BenchKey,
    sealed: Bytes,
    now_ms: u64,
    /// Pre-keyed HMAC state, as the crate's `src/mac.rs` keeps it, for the reference benchmark.
    hmac: Hmac<Sha256>,
    /// The keyed BLAKE3 key, for the reference benchmark of the 16 KiB class.
    blake3_key: [u8; 32],
}

/// A `PAYLOAD_LEN`-byte random payload sealed for its key, checked to open.
fn envelope_fixture() -> EnvelopeFixture {
    envelope_fixture_of(PAYLOAD_LEN)
}

/// A `PAYLOAD_16K`-byte random payload sealed for its key, checked to open.
fn envelope_fixture_16k() -> EnvelopeFixture {
    envelope_fixture_of(PAYLOAD_16K)
}

fn envelope_fixture_of(payload_len: usize) -> EnvelopeFixture {
    let mut rng = SplitMix64(SEED);
    let ring = KeyRing::new(KeyId(1), &SECRET).expect("valid key ring");
    let key = BenchKey::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    let envelope = Envelope::default();
    let (created_ms, now_ms) = (1_700_000_000_000, 1_700_000_001_000);
    let payload = rng.bytes(payload_len);
    let sealed = envelope
        .seal(&key, &payload, created_ms, NEVER, &ring)
        .expect("payload within limits");
    assert_eq!(
        envelope.open(&sealed, &key, now_ms, &ring).as_deref(),
        Ok(&payload[..]),
        "opens for its own key"
    );
    let hmac = Hmac::<Sha256>::new_from_slice(&blake3::derive_key(HMAC_CONTEXT, &SECRET))
        .expect("HMAC takes any key length");
    EnvelopeFixture {
        envelope,
        ring,
        key,
        sealed,
        now_ms,
        hmac,
        blake3_key: blake3::derive_key(BLAKE3_CONTEXT, &SECRET),
    }
}

// One `Envelope::open` (parse, MAC check, key, schema and expiry checks, payload slice).
#[library_benchmark]
#[bench::payload_1k(setup = envelope_fixture)]
#[bench::payload_16k(setup = envelope_fixture_16k)]
fn envelope_open(fixture: EnvelopeFixture) -> (EnvelopeFixture, Option<Bytes>) {
    let opened = fixture
        .envelope
        .open(
            black_box(&fixture.sealed),
            black_box(&fixture.key),
            fixture.now_ms,
            &fixture.ring,
        )
        .ok();
    (fixture, opened)
}

// HMAC-SHA256 verification of exactly the bytes `envelope_open` authenticates.
#[library_benchmark]
#[bench::payload_1k(setup = envelope_fixture)]
fn hmac_sha256(fixture: EnvelopeFixture) -> (EnvelopeFixture, bool) {
    let sealed = black_box(&fixture.sealed[..]);
    let (signed, tag) = sealed.split_at(sealed.len() - 32);
    let mut mac = fixture.hmac.clone();
    mac.update(signed);
    let valid = mac.verify_slice(tag).is_ok();
    (fixture, valid)
}

// Keyed BLAKE3 verification of exactly the bytes `envelope_open.payload_16k` authenticates.
#[library_benchmark]
#[bench::payload_16k(setup = envelope_fixture_16k)]
fn blake3_keyed(fixture: EnvelopeFixture) -> (EnvelopeFixture, bool) {
    let sealed = black_box(&fixture.sealed[..]);
    let (signed, tag) = sealed.split_at(sealed.len() - 32);
    let tag: [u8; 32] = tag.try_into().expect("a 32-byte tag");
    let valid = blake3::keyed_hash(&fixture.blake3_key, signed) == blake3::Hash::from_bytes(tag);
    (fixture, valid)
}

library_benchmark_group!(
    name = icount;
    benchmarks = local_hit, dashmap_get, local_insert_full, quick_cache_insert_full, envelope_open,
        hmac_sha256, blake3_keyed
);

main!(
    config = LibraryBenchmarkConfig::default().pass_through_env(EXTRA_HASHES_ENV);
    library_benchmark_groups = icount
);
