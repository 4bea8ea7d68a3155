//! Envelope benchmarks: `Envelope::seal` and `Envelope::open` by payload size (64 B to 1 MiB),
//! and the MAC candidates on their own (HMAC-SHA256 as `src/mac.rs` uses it, keyed BLAKE3,
//! PMAC-AES128).
//!
//! Run with `cargo bench --bench envelope`; results are in `BENCHMARKS.md`. Throughput is in
//! payload bytes. Under `cargo test` each benchmark runs once, as a smoke test.

mod common;

use aes::Aes128;
use common::{BenchKey, SECRET, config, random_bytes};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use pmac::Pmac;
use scoped_cache::envelope::{Envelope, NEVER};
use scoped_cache::{DeviceId, KeyId, KeyRing, TenantId};
use sha2::Sha256;
use std::hint::black_box;
use std::time::Duration;

/// Payload sizes: a small record, ~1 KiB metadata, thumbnail sizes, and 1 MiB.
const PAYLOAD_SIZES: [usize; 5] = [64, 1 << 10, 16 << 10, 256 << 10, 1 << 20];

/// Sealing and opening an envelope, per payload size.
fn envelope(c: &mut Criterion) {
    let mut rng = common::rng();
    let ring = KeyRing::new(KeyId(1), &SECRET).expect("valid key ring");
    let key = BenchKey::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    let envelope = Envelope::default();
    let (created_ms, now_ms) = (1_700_000_000_000, 1_700_000_001_000);
    let mut group = c.benchmark_group("envelope");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for size in PAYLOAD_SIZES {
        let payload = random_bytes(&mut rng, size);
        let sealed = envelope
            .seal(&key, &payload, created_ms, NEVER, &ring)
            .expect("payload within limits");
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("seal", size), &payload, |b, payload| {
            b.iter(|| {
                envelope.seal(
                    black_box(&key),
                    black_box(payload),
                    created_ms,
                    NEVER,
                    &ring,
                )
            });
        });
        group.bench_with_input(BenchmarkId::new("open", size), &sealed, |b, sealed| {
            b.iter(|| {
                envelope
                    .open(black_box(sealed), black_box(&key), now_ms, &ring)
                    .expect("opens for its own key")
            });
        });
    }
    group.finish();
}

/// The MAC candidates on their own: HMAC-SHA256 (pre-keyed state, cloned per message, as
/// `src/mac.rs` does) vs keyed BLAKE3 vs PMAC-AES128 (AES-NI, blocks in parallel; the fastest
/// deterministic alternative measured at 1 KiB).
fn mac(c: &mut Criterion) {
    let mut rng = common::rng();
    let hmac_key = Hmac::<Sha256>::new_from_slice(&SECRET).expect("HMAC takes any key length");
    let pmac_key =
        <Pmac<Aes128> as pmac::KeyInit>::new_from_slice(&SECRET[..16]).expect("a 128-bit AES key");
    let mut group = c.benchmark_group("mac");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for size in PAYLOAD_SIZES {
        let message = random_bytes(&mut rng, size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("hmac_sha256", size),
            &message,
            |b, message| {
                b.iter(|| {
                    let mut mac = hmac_key.clone();
                    mac.update(black_box(message));
                    mac.finalize().into_bytes()
                });
            },
        );
        group.bench_with_input(
            BenchmarkId::new("blake3_keyed", size),
            &message,
            |b, message| b.iter(|| blake3::keyed_hash(&SECRET, black_box(message))),
        );
        group.bench_with_input(
            BenchmarkId::new("pmac_aes128", size),
            &message,
            |b, message| {
                b.iter(|| {
                    let mut mac = pmac_key.clone();
                    pmac::Mac::update(&mut mac, black_box(message));
                    pmac::Mac::finalize(mac).into_bytes()
                });
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = envelope, mac
}
criterion_main!(benches);
