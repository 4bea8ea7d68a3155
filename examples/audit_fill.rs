//! audit_fill: fills a Redis server with sealed thumbnail entries, some of them mis-filed or
//! forged, to measure `scoped-cache-audit` on a keyspace of a given size.
//!
//! ```text
//! redis-server --save '' --appendonly no --port 6399 &
//! cargo run --release --features redis --example audit_fill -- --redis redis://127.0.0.1:6399 --keys 1000000
//! printf '1 text:%s\n' 'audit_fill: a demo secret, not for production' > /tmp/fill-ring.txt
//! cargo run --release --features audit --bin scoped-cache-audit -- \
//!     --redis redis://127.0.0.1:6399 --secret-file /tmp/fill-ring.txt --rate unlimited
//! ```
//!
//! Every entry is a thumbnail of 64..=511 bytes sealed for its own key with the secret above
//! (key id 1); one in `--bad-every` is instead another owner's value (a mis-filed entry) or
//! a flipped byte (a forged one), alternately.

use bytes::Bytes;
use clap::Parser;
use scoped_cache::envelope::Envelope;
use scoped_cache::{DeviceId, Key, KeyId, KeyRing, Namespace, RawBytes, TenantId};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Fills a Redis server with sealed entries for the audit to scan.
#[derive(Debug, Parser)]
struct Flags {
    /// The server
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// Entries to write
    #[arg(long, default_value = "1000000")]
    keys: u64,
    /// Every N-th entry is mis-filed or forged (0: none)
    #[arg(long, default_value = "10000")]
    bad_every: u64,
    /// Prepended to every key (the services' RedisStore::key_prefix)
    #[arg(long, default_value = "")]
    key_prefix: String,
}

struct Thumbnails;
impl Namespace for Thumbnails {
    const NAME: &'static str = "thumb";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = Bytes;
    type Codec = RawBytes;
}

const SECRET: &[u8] = b"audit_fill: a demo secret, not for production";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let flags = Flags::parse();
    let ring = KeyRing::new(KeyId(1), SECRET)?;
    let envelope = Envelope::default();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let mut connection = redis::Client::open(flags.redis.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let key =
        |n: u64| Key::<Thumbnails>::new(TenantId::from_u64(n / 64), DeviceId::from_u64(n % 64), n);
    let started = Instant::now();
    let mut bad = 0;
    for batch in (0..flags.keys).collect::<Vec<_>>().chunks(1000) {
        let mut pipeline = redis::pipe();
        for &n in batch {
            let payload: Vec<u8> = (0..64 + n % 448).map(|i| (n ^ i) as u8).collect();
            let stored_under = key(n);
            let mut value = envelope
                .seal(&stored_under, &payload, now, now + 3_600_000, &ring)?
                .to_vec();
            if flags.bad_every > 0 && n % flags.bad_every == flags.bad_every - 1 {
                bad += 1;
                if bad % 2 == 0 {
                    let last = value.len() - 1;
                    value[last] ^= 1;
                } else {
                    value = envelope
                        .seal(&key(n + 64), &payload, now, now + 3_600_000, &ring)?
                        .to_vec();
                }
            }
            let mut redis_key = flags.key_prefix.as_bytes().to_vec();
            redis_key.extend_from_slice(&stored_under.encode());
            pipeline
                .cmd("SET")
                .arg(redis_key)
                .arg(value)
                .arg("PX")
                .arg(3_600_000)
                .ignore();
        }
        let () = pipeline.query_async(&mut connection).await?;
    }
    println!(
        "wrote {} entries ({bad} mis-filed or forged) in {:.1} s; key ring line: 1 text:{}",
        flags.keys,
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(SECRET)
    );
    Ok(())
}
