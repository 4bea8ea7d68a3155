//! Key benchmarks: building ids (`TenantId`/`DeviceId` from short and long text, from a u64 and
//! from a UUID), building a `Key`, and a key's wire form (`Key::encode`, which every remote read
//! and write and every envelope uses, and `Key::decode`).
//!
//! Run with `cargo bench --bench keys`; results are in `BENCHMARKS.md`. Each benchmark's time
//! includes dropping what it built. Under `cargo test` each benchmark runs once, as a smoke test.

mod common;

use common::{BenchKey, config};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use scoped_cache::{DeviceId, Key, TenantId};
use std::hint::black_box;
use std::time::Duration;

/// Text that fits an id's inline storage (up to 16 bytes).
const SHORT_TENANT: &str = "user-42";
const SHORT_DEVICE: &str = "cam-7";
/// Text stored behind an `Arc` (over 16 bytes): a prefixed UUID, as many services use.
const LONG_TENANT: &str = "user-7f3a9c2e-5b1d-4e8f-a6c0-2d9b8e1f4a73";
const LONG_DEVICE: &str = "cam-0c4e8a1f-9d2b-4f7e-b3a5-6e1c9d0b2f84";
const UUID: [u8; 16] = [
    0x7f, 0x3a, 0x9c, 0x2e, 0x5b, 0x1d, 0x4e, 0x8f, 0xa6, 0xc0, 0x2d, 0x9b, 0x8e, 0x1f, 0x4a, 0x73,
];

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(50)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1500))
        .throughput(Throughput::Elements(1));
    group
}

/// The three kinds of owner a key can have, as (label, tenant, device).
fn owners() -> [(&'static str, TenantId, DeviceId); 3] {
    [
        ("u64", TenantId::from_u64(42), DeviceId::from_u64(7)),
        (
            "short_text",
            TenantId::new(SHORT_TENANT).expect("valid id"),
            DeviceId::new(SHORT_DEVICE).expect("valid id"),
        ),
        (
            "long_text",
            TenantId::new(LONG_TENANT).expect("valid id"),
            DeviceId::new(LONG_DEVICE).expect("valid id"),
        ),
    ]
}

/// Building ids: validating text (and, over 16 bytes, allocating its `Arc`), numbers, UUIDs.
fn ids(c: &mut Criterion) {
    let mut group = group(c, "ids");
    for (label, text) in [("short_7B", SHORT_TENANT), ("long_41B", LONG_TENANT)] {
        group.bench_with_input(BenchmarkId::new("tenant_new", label), text, |b, text| {
            b.iter(|| TenantId::new(black_box(text)).expect("valid id"));
        });
    }
    for (label, text) in [("short_5B", SHORT_DEVICE), ("long_40B", LONG_DEVICE)] {
        group.bench_with_input(BenchmarkId::new("device_new", label), text, |b, text| {
            b.iter(|| DeviceId::new(black_box(text)).expect("valid id"));
        });
    }
    group.bench_function("tenant_from_u64", |b| {
        b.iter(|| TenantId::from_u64(black_box(42)));
    });
    group.bench_function("tenant_from_uuid", |b| {
        b.iter(|| TenantId::from_uuid(black_box(UUID)));
    });
    group.finish();
}

/// `Key::new` from ready ids (cloned in: a copy, or an `Arc` increment for long text), and a
/// key's wire form both ways.
fn key(c: &mut Criterion) {
    let mut group = group(c, "key");
    for (label, tenant, device) in owners() {
        group.bench_function(BenchmarkId::new("new", label), |b| {
            b.iter(|| {
                BenchKey::new(
                    black_box(&tenant).clone(),
                    black_box(&device).clone(),
                    black_box(9),
                )
            });
        });
        let key = Key::new(tenant, device, 9);
        group.bench_function(BenchmarkId::new("encode", label), |b| {
            b.iter(|| black_box(&key).encode());
        });
        let encoded = key.encode();
        assert_eq!(
            BenchKey::decode(&encoded).expect("decodes its own encoding"),
            key,
            "{label}: decode(encode(key)) == key"
        );
        group.bench_function(BenchmarkId::new("decode", label), |b| {
            b.iter(|| BenchKey::decode(black_box(&encoded)).expect("valid encoding"));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = ids, key
}
criterion_main!(benches);
