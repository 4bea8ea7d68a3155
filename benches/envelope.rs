//! Envelope benchmarks: sealing and opening at 64 B, 1 KiB, 16 KiB and 64 KiB, in format 1
//! (open only: this build no longer writes it), format 2 authenticated and format 2 encrypted,
//! each next to its bare primitive on the same bytes in the same run; and the MAC candidates on
//! their own across the sizes where the format 2 MAC changes class.
//!
//! Run with `cargo bench --bench envelope`; `python3 scripts/envelope_ratios.py` then prints
//! every ratio from criterion's estimates. Results are in `BENCHMARKS.md`. Throughput is in
//! payload bytes. Under `cargo test` each benchmark runs once, as a smoke test.
//!
//! Criterion measures one benchmark after another, so on a shared machine a ratio of two rows
//! also measures how the load changed between them. After criterion, the same operations run
//! again in [`ROUNDS`] **interleaved rounds** (every operation once per round, in a rotating
//! order, a batch of ~0.1 ms each), and the table printed at the end divides each operation's median
//! time over the rounds by its floor's, and (in brackets) their 10th percentiles, the rounds
//! least disturbed by other work: the figures `BENCHMARKS.md` quotes.
//!
//! In the `envelope/<size>` groups (ids are what `scripts/envelope_ratios.py` pairs):
//! - `v1_open` ÷ `v1_hmac`: HMAC-SHA256 keyed with the secret, verifying the envelope's bytes.
//! - `v2_open`, `v2_seal` ÷ `v2_mac`: the format 2 MAC of the envelope's MAC input (HMAC-SHA256
//!   under 2048 bytes, keyed BLAKE3 from there), computed and compared.
//! - `enc_open` ÷ `aead_decrypt` and `enc_seal` ÷ `aead_encrypt`: XChaCha20-Poly1305 over the
//!   payload with the key header as associated data, in a buffer allocated once, built as the
//!   crate builds it (HChaCha20, then ring's ChaCha20-Poly1305). `rustcrypto_decrypt` and
//!   `rustcrypto_encrypt` are RustCrypto's `XChaCha20Poly1305` on the same bytes, for scale.

mod common;

use bytes::Bytes;
use chacha20poly1305::{AeadInOut, XChaCha20Poly1305, XNonce};
use common::{BenchKey, SECRET, config, random_bytes};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use hmac::{Hmac, KeyInit, Mac};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use scoped_cache::envelope::{Envelope, NEVER, Sealing};
use scoped_cache::{DeviceId, KeyId, KeyRing, TenantId};
use sha2::Sha256;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Payload sizes: a small record, ~1 KiB metadata, thumbnail sizes.
const PAYLOAD_SIZES: [usize; 4] = [64, 1 << 10, 16 << 10, 64 << 10];
/// Message sizes for the MAC candidates: small values, around the class split (2048) and up to
/// 64 KiB.
const MAC_SIZES: [usize; 10] = [
    64,
    128,
    256,
    384,
    512,
    1 << 10,
    2 << 10,
    4 << 10,
    16 << 10,
    64 << 10,
];

/// `docs/ENVELOPE.md` §3: the derived keys of format 2.
const HMAC_CONTEXT: &str = "scoped-cache 2026-12-02 envelope v2 HMAC-SHA256 key";
const BLAKE3_CONTEXT: &str = "scoped-cache 2026-12-02 envelope v2 keyed BLAKE3 key";
const AEAD_CONTEXT: &str = "scoped-cache 2026-12-02 envelope v2 XChaCha20-Poly1305 key";
const BLAKE3_FROM: usize = 2048;
const TAG_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const AEAD_TAG_LEN: usize = 16;

/// A format 1 envelope of `sealed_v2`'s contents: the same bytes with version 1 and
/// HMAC-SHA256 under the secret itself (`docs/ENVELOPE.md` §1, §3).
fn as_version_1(sealed_v2: &[u8]) -> Bytes {
    let mut v1 = sealed_v2[..sealed_v2.len() - TAG_LEN].to_vec();
    v1[4] = 1;
    let mut mac = Hmac::<Sha256>::new_from_slice(&SECRET).expect("any key length");
    mac.update(&v1);
    v1.extend_from_slice(&mac.finalize().into_bytes());
    Bytes::from(v1)
}

/// What the bare AEAD takes: the associated data (the key header), the nonce, the ciphertext and
/// the tag.
type AeadParts<'a> = (&'a [u8], XNonce, &'a [u8], chacha20poly1305::Tag);

/// An encrypted envelope of a `size`-byte payload cut into [`AeadParts`].
fn aead_parts(sealed: &[u8], size: usize) -> AeadParts<'_> {
    let header_len = sealed.len() - NONCE_LEN - size - AEAD_TAG_LEN;
    let nonce = XNonce::try_from(&sealed[header_len..header_len + NONCE_LEN]).expect("24 bytes");
    let ciphertext = &sealed[header_len + NONCE_LEN..sealed.len() - AEAD_TAG_LEN];
    let tag =
        chacha20poly1305::Tag::try_from(&sealed[sealed.len() - AEAD_TAG_LEN..]).expect("16 bytes");
    (&sealed[..header_len], nonce, ciphertext, tag)
}

/// The bare AEAD as the crate builds it (`src/mac/xchacha.rs`): the HChaCha20 subkey of the
/// key and the nonce's first 16 bytes seals with ring's ChaCha20-Poly1305 under the last 8.
fn bare_aead(key: &[u8; 32], nonce: &XNonce) -> (LessSafeKey, Nonce) {
    let prefix: &[u8; 16] = nonce[..16].try_into().expect("16 bytes");
    let subkey = chacha20::hchacha::<chacha20::R20>(&(*key).into(), &(*prefix).into());
    let mut short_nonce = [0; 12];
    short_nonce[4..].copy_from_slice(&nonce[16..]);
    (
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &subkey).expect("32 bytes")),
        Nonce::assume_unique_for_key(short_nonce),
    )
}

/// [`bare_aead`]'s decryption of the ciphertext into `buffer` (of the same length).
fn bare_decrypt(key: &[u8; 32], parts: &AeadParts<'_>, buffer: &mut [u8]) {
    let (associated, nonce, ciphertext, tag) = black_box(parts);
    let (aead, nonce) = bare_aead(key, nonce);
    buffer.copy_from_slice(ciphertext);
    let tag = ring::aead::Tag::from(<[u8; AEAD_TAG_LEN]>::from(*tag));
    aead.open_in_place_separate_tag(nonce, Aad::from(associated), tag, buffer, 0..)
        .expect("authentic");
}

/// [`bare_aead`]'s encryption of `buffer` in place, under the nonce and associated data of
/// `parts`.
fn bare_encrypt(key: &[u8; 32], parts: &AeadParts<'_>, buffer: &mut [u8]) {
    let (associated, nonce, ..) = black_box(parts);
    let (aead, nonce) = bare_aead(key, nonce);
    let tag = aead.seal_in_place_separate_tag(nonce, Aad::from(associated), buffer);
    let _ = black_box(tag.expect("encrypts"));
}

/// RustCrypto's decryption of the same parts into `buffer`, for scale.
fn rustcrypto_decrypt(aead: &XChaCha20Poly1305, parts: &AeadParts<'_>, buffer: &mut [u8]) {
    let (associated, nonce, ciphertext, tag) = black_box(parts);
    let inout =
        chacha20poly1305::aead::inout::InOutBuf::new(ciphertext, buffer).expect("equal lengths");
    aead.decrypt_inout_detached(nonce, associated, inout, tag)
        .expect("authentic");
}

/// RustCrypto's encryption of `buffer` in place, for scale.
fn rustcrypto_encrypt(aead: &XChaCha20Poly1305, parts: &AeadParts<'_>, buffer: &mut [u8]) {
    let (associated, nonce, ..) = black_box(parts);
    let tag = aead.encrypt_inout_detached(nonce, associated, buffer.into());
    black_box(tag.expect("encrypts"));
}

fn envelope(c: &mut Criterion) {
    let mut rng = common::rng();
    let ring = KeyRing::new(KeyId(1), &SECRET).expect("valid key ring");
    let key = BenchKey::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    let authenticated = Envelope::default();
    let encrypted = Envelope::default().with_sealing(Sealing::Encrypted);
    let (created_ms, now_ms) = (1_700_000_000_000, 1_700_000_001_000);
    let v1_hmac = Hmac::<Sha256>::new_from_slice(&SECRET).expect("any key length");
    let v2_hmac = Hmac::<Sha256>::new_from_slice(&blake3::derive_key(HMAC_CONTEXT, &SECRET))
        .expect("any key length");
    let v2_blake3 = blake3::derive_key(BLAKE3_CONTEXT, &SECRET);
    let aead_key = blake3::derive_key(AEAD_CONTEXT, &SECRET);
    let rustcrypto = XChaCha20Poly1305::new_from_slice(&aead_key).expect("a 32-byte key");
    for size in PAYLOAD_SIZES {
        let mut group = c.benchmark_group(format!("envelope/{size}"));
        group
            .sample_size(50)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .throughput(Throughput::Bytes(size as u64));
        let payload = random_bytes(&mut rng, size);
        let v2 = authenticated
            .seal(&key, &payload, created_ms, NEVER, &ring)
            .expect("payload within limits");
        let v1 = as_version_1(&v2);
        let sealed_encrypted = encrypted
            .seal(&key, &payload, created_ms, NEVER, &ring)
            .expect("payload within limits");
        let (mac_input, tag) = v2.split_at(v2.len() - TAG_LEN);

        group.bench_function("v1_open", |b| {
            b.iter(|| authenticated.open(black_box(&v1), black_box(&key), now_ms, &ring))
        });
        group.bench_function("v1_hmac", |b| {
            b.iter(|| {
                let mut mac = v1_hmac.clone();
                mac.update(black_box(mac_input));
                mac.verify_slice(black_box(tag)).is_ok()
            })
        });

        group.bench_function("v2_open", |b| {
            b.iter(|| authenticated.open(black_box(&v2), black_box(&key), now_ms, &ring))
        });
        group.bench_function("v2_seal", |b| {
            b.iter(|| {
                authenticated.seal(
                    black_box(&key),
                    black_box(&payload),
                    created_ms,
                    NEVER,
                    &ring,
                )
            })
        });
        group.bench_function("v2_mac", |b| {
            b.iter(|| {
                let message = black_box(mac_input);
                if message.len() < BLAKE3_FROM {
                    let mut mac = v2_hmac.clone();
                    mac.update(message);
                    mac.verify_slice(black_box(tag)).is_ok()
                } else {
                    let expected: [u8; TAG_LEN] = black_box(tag).try_into().expect("32 bytes");
                    blake3::keyed_hash(&v2_blake3, message) == blake3::Hash::from_bytes(expected)
                }
            })
        });

        group.bench_function("enc_open", |b| {
            b.iter(|| encrypted.open(black_box(&sealed_encrypted), black_box(&key), now_ms, &ring))
        });
        group.bench_function("enc_seal", |b| {
            b.iter(|| {
                encrypted.seal(
                    black_box(&key),
                    black_box(&payload),
                    created_ms,
                    NEVER,
                    &ring,
                )
            })
        });
        // The primitive alone: the same associated data, nonce, ciphertext and tag.
        let parts = aead_parts(&sealed_encrypted, size);
        let mut buffer = vec![0; size];
        group.bench_function("aead_decrypt", |b| {
            b.iter(|| bare_decrypt(&aead_key, &parts, &mut buffer))
        });
        group.bench_function("rustcrypto_decrypt", |b| {
            b.iter(|| rustcrypto_decrypt(&rustcrypto, &parts, &mut buffer))
        });
        let mut buffer = payload.clone();
        group.bench_function("aead_encrypt", |b| {
            b.iter(|| bare_encrypt(&aead_key, &parts, &mut buffer))
        });
        group.bench_function("rustcrypto_encrypt", |b| {
            b.iter(|| rustcrypto_encrypt(&rustcrypto, &parts, &mut buffer))
        });
        group.finish();
    }
}

/// The MAC candidates on their own, by message size: HMAC-SHA256 (pre-keyed state, cloned per
/// message, as `src/mac.rs` does) and keyed BLAKE3. Where they cross is the format 2 class split.
fn mac(c: &mut Criterion) {
    let mut rng = common::rng();
    let hmac_key = Hmac::<Sha256>::new_from_slice(&SECRET).expect("HMAC takes any key length");
    let mut group = c.benchmark_group("mac");
    group
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for size in MAC_SIZES {
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
    }
    group.finish();
}

/// Interleaved rounds per size.
const ROUNDS: usize = 301;
/// Each operation's batch in a round lasts about this long.
const BATCH: Duration = Duration::from_micros(100);

/// The operations of one size, by name, ready to run once each.
type Ops<'a> = Vec<(&'static str, Box<dyn FnMut() + 'a>)>;

/// The pairs reported: (operation, what it is divided by).
const PAIRS: [(&str, &str); 6] = [
    ("v1_open", "v1_hmac"),
    ("v2_open", "v2_mac"),
    ("v2_seal", "v2_mac"),
    ("enc_open", "aead_decrypt"),
    ("enc_seal", "aead_encrypt"),
    ("v2_open", "v1_open"),
];

/// The interleaved rounds: per size, every operation of [`envelope`] once per round.
fn rounds() {
    let measuring = common::measuring();
    let rounds = if measuring { ROUNDS } else { 1 };
    let ring = KeyRing::new(KeyId(1), &SECRET).expect("valid key ring");
    let key = BenchKey::new(TenantId::from_u64(42), DeviceId::from_u64(7), 9);
    let authenticated = Envelope::default();
    let encrypted = Envelope::default().with_sealing(Sealing::Encrypted);
    let (created_ms, now_ms) = (1_700_000_000_000, 1_700_000_001_000);
    let v1_hmac = Hmac::<Sha256>::new_from_slice(&SECRET).expect("any key length");
    let v2_hmac = Hmac::<Sha256>::new_from_slice(&blake3::derive_key(HMAC_CONTEXT, &SECRET))
        .expect("any key length");
    let v2_blake3 = blake3::derive_key(BLAKE3_CONTEXT, &SECRET);
    let aead_key = blake3::derive_key(AEAD_CONTEXT, &SECRET);
    let rustcrypto = XChaCha20Poly1305::new_from_slice(&aead_key).expect("a 32-byte key");
    let mut rng = common::rng();
    println!(
        "\nenvelope rounds: {rounds} interleaved round(s) per size; ratio of the median times \
         over the rounds [ratio of their 10th percentiles]\n"
    );
    let header: Vec<String> = PAIRS.iter().map(|(a, b)| format!("{a} ÷ {b}")).collect();
    println!("| payload | {} |", header.join(" | "));
    println!("|---|{}", "---:|".repeat(PAIRS.len()));
    for size in PAYLOAD_SIZES {
        let payload = random_bytes(&mut rng, size);
        let v2 = authenticated
            .seal(&key, &payload, created_ms, NEVER, &ring)
            .expect("payload within limits");
        let v1 = as_version_1(&v2);
        let sealed_encrypted = encrypted
            .seal(&key, &payload, created_ms, NEVER, &ring)
            .expect("payload within limits");
        let (mac_input, tag) = v2.split_at(v2.len() - TAG_LEN);
        let parts = aead_parts(&sealed_encrypted, size);
        let (mut decrypted, mut decrypted_rc) = (vec![0; size], vec![0; size]);
        let (mut encrypting, mut encrypting_rc) = (payload.clone(), payload.clone());
        let mut ops: Ops<'_> = vec![
            (
                "v1_open",
                Box::new(|| {
                    black_box(authenticated.open(black_box(&v1), black_box(&key), now_ms, &ring))
                        .expect("opens");
                }),
            ),
            (
                "v1_hmac",
                Box::new(|| {
                    let mut mac = v1_hmac.clone();
                    mac.update(black_box(&v1[..v1.len() - TAG_LEN]));
                    assert!(
                        mac.verify_slice(black_box(&v1[v1.len() - TAG_LEN..]))
                            .is_ok()
                    );
                }),
            ),
            (
                "v2_open",
                Box::new(|| {
                    black_box(authenticated.open(black_box(&v2), black_box(&key), now_ms, &ring))
                        .expect("opens");
                }),
            ),
            (
                "v2_seal",
                Box::new(|| {
                    black_box(authenticated.seal(
                        black_box(&key),
                        black_box(&payload),
                        created_ms,
                        NEVER,
                        &ring,
                    ))
                    .expect("seals");
                }),
            ),
            (
                "v2_mac",
                Box::new(|| {
                    let message = black_box(mac_input);
                    let valid = if message.len() < BLAKE3_FROM {
                        let mut mac = v2_hmac.clone();
                        mac.update(message);
                        mac.verify_slice(black_box(tag)).is_ok()
                    } else {
                        let expected: [u8; TAG_LEN] = black_box(tag).try_into().expect("32 bytes");
                        blake3::keyed_hash(&v2_blake3, message)
                            == blake3::Hash::from_bytes(expected)
                    };
                    assert!(valid);
                }),
            ),
            (
                "enc_open",
                Box::new(|| {
                    black_box(encrypted.open(
                        black_box(&sealed_encrypted),
                        black_box(&key),
                        now_ms,
                        &ring,
                    ))
                    .expect("opens");
                }),
            ),
            (
                "enc_seal",
                Box::new(|| {
                    black_box(encrypted.seal(
                        black_box(&key),
                        black_box(&payload),
                        created_ms,
                        NEVER,
                        &ring,
                    ))
                    .expect("seals");
                }),
            ),
            (
                "aead_decrypt",
                Box::new(|| bare_decrypt(&aead_key, &parts, &mut decrypted)),
            ),
            (
                "aead_encrypt",
                Box::new(|| bare_encrypt(&aead_key, &parts, &mut encrypting)),
            ),
            (
                "rustcrypto_decrypt",
                Box::new(|| rustcrypto_decrypt(&rustcrypto, &parts, &mut decrypted_rc)),
            ),
            (
                "rustcrypto_encrypt",
                Box::new(|| rustcrypto_encrypt(&rustcrypto, &parts, &mut encrypting_rc)),
            ),
        ];
        // Batch sizes from a short calibration, so each batch lasts about `BATCH`.
        let iterations: Vec<u32> = ops
            .iter_mut()
            .map(|(_, op)| {
                let start = Instant::now();
                for _ in 0..16 {
                    op();
                }
                let each = start.elapsed() / 16;
                (BATCH.as_nanos() / each.as_nanos().max(1)).clamp(1, 100_000) as u32
            })
            .map(|n| if measuring { n } else { 1 })
            .collect();
        let mut per_op = vec![Vec::with_capacity(rounds); ops.len()];
        for round in 0..rounds {
            for k in 0..ops.len() {
                let i = (k + round) % ops.len();
                let start = Instant::now();
                for _ in 0..iterations[i] {
                    (ops[i].1)();
                }
                per_op[i].push(start.elapsed().as_nanos() as f64 / f64::from(iterations[i]));
            }
        }
        let index = |name: &str| {
            ops.iter()
                .position(|(n, _)| *n == name)
                .expect("an operation")
        };
        for times in &mut per_op {
            times.sort_by(f64::total_cmp);
        }
        let quantile =
            |times: &[f64], f: f64| times[((times.len() - 1) as f64 * f).round() as usize];
        let cells: Vec<String> = PAIRS
            .iter()
            .map(|(a, b)| {
                let (a, b) = (&per_op[index(a)], &per_op[index(b)]);
                format!(
                    "{:.2} [{:.2}]",
                    quantile(a, 0.5) / quantile(b, 0.5),
                    quantile(a, 0.1) / quantile(b, 0.1)
                )
            })
            .collect();
        println!("| {} | {} |", size_label(size), cells.join(" | "));
        let medians: Vec<String> = ops
            .iter()
            .zip(&per_op)
            .map(|((name, _), times)| format!("{name} {:.0}", quantile(times, 0.5)))
            .collect();
        eprintln!("  {} median ns: {}", size_label(size), medians.join(", "));
    }
}

fn size_label(size: usize) -> String {
    if size >= 1024 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

criterion_group! {
    name = benches;
    config = config();
    targets = envelope, mac
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    rounds();
}
