//! `RedisStore` against a real `redis-server`: round trips through `Cache`, values poisoned from
//! outside, degraded mode, typed errors.

mod support;

use bytes::Bytes;
use redis::AsyncCommands as _;
use scoped_cache::envelope::Envelope;
use scoped_cache::store::{RemoteStore, StoreError};
use scoped_cache::{
    BreakerState, Client, DeviceId, FreshnessKind, Key, KeyId, KeyRing, Namespace, Owner, RawBytes,
    RedisStore, TenantId, ViolationKind,
};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::RedisServer;
use support::fixture::{Relations, Reports, Thumbs, client, remote_only_cache, ring};
use support::harness::{self, trials};

/// libtest-mimic (`harness = false`): without `redis-server` the server tests are reported as
/// ignored, not passed (see `support::harness`).
fn main() -> std::process::ExitCode {
    harness::run(trials![
        redis_test(round_trip_through_cache_without_local_tier),
        redis_test(store_round_trip_get_many_and_binary_keys),
        redis_test(delete_if_deletes_only_the_value_it_names),
        redis_test(poisoned_values_are_refused_counted_reported_and_deleted),
        redis_test(server_down_reads_miss_within_the_timeout_and_counts_remote_errors),
        redis_test(connect_errors_are_typed_and_bounded),
        test(connect_lazy_outside_a_tokio_runtime_is_a_config_error),
    ])
}

/// Every test body runs under this limit.
const TEST_LIMIT: Duration = Duration::from_secs(20);
const PREFIX: &str = "t:";

struct Events;
impl Namespace for Events {
    const NAME: &'static str = "event";
    const SCHEMA: u16 = 3;
    type Item = String;
    type Value = Bytes;
    type Codec = RawBytes;
}

fn key<N: Namespace>(tenant: &str, device: &str, item: N::Item) -> Key<N> {
    Key::new(
        TenantId::new(tenant).unwrap(),
        DeviceId::new(device).unwrap(),
        item,
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn store(server: &RedisServer) -> RedisStore {
    RedisStore::builder(server.url())
        .key_prefix(PREFIX)
        .connect()
        .await
        .unwrap()
}

/// A raw connection that bypasses everything scoped-cache does.
async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn redis_key<N: Namespace>(key: &Key<N>) -> Vec<u8> {
    [PREFIX.as_bytes(), &key.encode()].concat()
}

async fn within<F: std::future::Future>(body: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, body)
        .await
        .expect("test exceeded its time limit")
}

async fn round_trip_through_cache_without_local_tier(server: RedisServer) {
    within(async {
        let client = client(Arc::new(store(&server).await));
        let thumbs = client.cache::<Thumbs>().local_capacity(0).build().unwrap();
        let events = client.cache::<Events>().local_capacity(0).build().unwrap();
        let relations = client
            .cache::<Relations>()
            .local_capacity(0)
            .build()
            .unwrap();

        let tenants = ["alice", "bob", "carol", "0", "a:b"];
        let devices = ["cam-1", "cam-2", "alice"];
        for tenant in tenants {
            for device in devices {
                for item in 0..3u64 {
                    let value = Bytes::from(format!("thumb {tenant}/{device}/{item}"));
                    thumbs
                        .insert(&key(tenant, device, item), value)
                        .await
                        .unwrap();
                }
                let event = Bytes::from(format!("event {tenant}/{device}"));
                events
                    .insert(&key(tenant, device, format!("e-{device}")), event)
                    .await
                    .unwrap();
                relations
                    .insert(&key(tenant, device, ()), Bytes::from_static(b"owns"))
                    .await
                    .unwrap();
            }
        }
        for tenant in tenants {
            for device in devices {
                for item in 0..3u64 {
                    let expected = format!("thumb {tenant}/{device}/{item}");
                    let found = thumbs.get(&key(tenant, device, item)).await;
                    assert_eq!(found.as_deref(), Some(expected.as_bytes()));
                }
                let found = events
                    .get(&key(tenant, device, format!("e-{device}")))
                    .await;
                assert_eq!(
                    found.as_deref(),
                    Some(format!("event {tenant}/{device}").as_bytes())
                );
                assert_eq!(
                    relations.get(&key(tenant, device, ())).await.as_deref(),
                    Some(&b"owns"[..])
                );
            }
        }
        // Absent keys miss; invalidate removes.
        assert_eq!(thumbs.get(&key("alice", "cam-1", 99)).await, None);
        thumbs.invalidate(&key("alice", "cam-1", 0)).await.unwrap();
        assert_eq!(thumbs.get(&key("alice", "cam-1", 0)).await, None);

        let stats = thumbs.stats();
        assert_eq!(stats.hits_local, 0, "the local tier is disabled");
        assert_eq!(stats.hits_remote, 45);
        assert_eq!(stats.misses, 2);
        assert_eq!(stats.remote_errors, 0);
        assert_eq!(stats.violations.total(), 0);
        assert_eq!(events.stats().hits_remote, 15);
        assert_eq!(relations.stats().hits_remote, 15);

        // The values really are in Redis under the prefix, sealed, with the cache's TTL.
        let mut raw = raw(&server).await;
        let k = key::<Thumbs>("bob", "cam-2", 1);
        let sealed: Vec<u8> = raw.get(redis_key(&k)).await.unwrap();
        assert!(sealed.starts_with(&scoped_cache::envelope::MAGIC));
        let ttl: i64 = raw.pttl(redis_key(&k)).await.unwrap();
        assert!(ttl > 590_000 && ttl <= 600_000, "ttl {ttl} ms");
    })
    .await;
}

async fn store_round_trip_get_many_and_binary_keys(server: RedisServer) {
    within(async {
        let store = store(&server).await;
        let keys: Vec<Vec<u8>> = (0..200u32)
            .map(|i| [&b"k\0\r\n "[..], &i.to_be_bytes()].concat())
            .collect();
        for (i, key) in keys.iter().enumerate() {
            if i % 3 != 0 {
                store
                    .set(
                        key,
                        Bytes::from(key.repeat(3)),
                        Some(Duration::from_secs(60)),
                    )
                    .await
                    .unwrap();
            }
        }
        let values = store.get_many(&keys).await.unwrap();
        assert_eq!(values.len(), keys.len());
        for (i, (key, value)) in keys.iter().zip(&values).enumerate() {
            if i % 3 == 0 {
                assert_eq!(value, &None);
            } else {
                assert_eq!(value.as_deref(), Some(&key.repeat(3)[..]));
            }
        }
        assert_eq!(
            store.get_many(&[]).await.unwrap(),
            Vec::<Option<Bytes>>::new()
        );
        store.delete(&keys[1]).await.unwrap();
        store.delete(&keys[0]).await.unwrap();
        assert_eq!(store.get(&keys[1]).await.unwrap(), None);
        // No TTL: the key persists; a sub-millisecond TTL is rounded up, not refused.
        store
            .set(b"forever", Bytes::from_static(b"v"), None)
            .await
            .unwrap();
        store
            .set(
                b"brief",
                Bytes::from_static(b"v"),
                Some(Duration::from_micros(10)),
            )
            .await
            .unwrap();
        let mut raw = raw(&server).await;
        let ttl: i64 = raw.pttl("t:forever").await.unwrap();
        assert_eq!(ttl, -1);
        assert_eq!(store.connections_replaced(), 0);
    })
    .await;
}

/// `delete_if` deletes a key only while it holds the given bytes, in one step on the server.
async fn delete_if_deletes_only_the_value_it_names(server: RedisServer) {
    within(async {
        let store = store(&server).await;
        let (old, new) = (
            Bytes::from_static(b"old\0value"),
            Bytes::from_static(b"new\0value"),
        );
        store.set(b"k", new.clone(), None).await.unwrap();
        // A refused read's bytes that the store no longer (or never) held: nothing is deleted.
        store.delete_if(b"k", &old).await.unwrap();
        assert_eq!(store.get(b"k").await.unwrap(), Some(new.clone()));
        store.delete_if(b"absent", &old).await.unwrap();
        // The bytes the store holds: deleted.
        store.delete_if(b"k", &new).await.unwrap();
        assert_eq!(store.get(b"k").await.unwrap(), None);
        assert_eq!(store.connections_replaced(), 0);

        // A user whose ACL refuses scripts: `delete_if` falls back to an unconditional DEL.
        let mut raw = raw(&server).await;
        let _: () = redis::cmd("ACL")
            .arg(
                &[
                    "SETUSER",
                    "noscript",
                    "on",
                    "nopass",
                    "~*",
                    "+@all",
                    "-@scripting",
                ][..],
            )
            .query_async(&mut raw)
            .await
            .unwrap();
        let restricted = RedisStore::builder(format!("{}?user=noscript&pass=any", server.url()))
            .key_prefix(PREFIX)
            .connect()
            .await
            .unwrap();
        restricted.set(b"k", new.clone(), None).await.unwrap();
        restricted.delete_if(b"k", &old).await.unwrap();
        assert_eq!(
            restricted.get(b"k").await.unwrap(),
            None,
            "fell back to DEL"
        );
    })
    .await;
}

async fn poisoned_values_are_refused_counted_reported_and_deleted(server: RedisServer) {
    within(async {
        let reports = Reports::default();
        let client = Client::builder()
            .key_ring(ring())
            .remote(store(&server).await)
            .on_violation(reports.sink())
            .build()
            .unwrap();
        let thumbs = client.cache::<Thumbs>().local_capacity(0).build().unwrap();
        let events = client.cache::<Events>().local_capacity(0).build().unwrap();
        let mut raw = raw(&server).await;

        let victim = key::<Thumbs>("alice", "cam-1", 7);
        let other_tenant = key::<Thumbs>("mallory", "cam-1", 7);
        let swapped = key::<Thumbs>("cam-1", "alice", 7);
        let other_item = key::<Thumbs>("alice", "cam-1", 8);
        for (k, v) in [
            (&victim, "alice's"),
            (&other_tenant, "mallory's"),
            (&swapped, "swapped"),
            (&other_item, "item 8"),
        ] {
            thumbs.insert(k, Bytes::from(v)).await.unwrap();
        }
        events
            .insert(
                &key("alice", "cam-1", "7".into()),
                Bytes::from_static(b"event"),
            )
            .await
            .unwrap();
        let reader = raw.clone();
        let sealed = move |k: &[u8]| {
            let k = k.to_vec();
            let mut raw = reader.clone();
            async move {
                let value: Vec<u8> = raw.get(k).await.unwrap();
                value
            }
        };
        let own = sealed(&redis_key(&victim)).await;
        let now = now_ms();
        let foreign_ring = KeyRing::new(KeyId(1), b"another secret, not in the ring!!").unwrap();
        let unknown_ring = KeyRing::new(KeyId(9), b"another secret, not in the ring!!").unwrap();
        let expired = Envelope::default()
            .seal(&victim, b"stale", now - 7_200_000, now - 3_600_000, &ring())
            .unwrap();
        let mut flipped = own.clone();
        let at = flipped.len() - 33; // the last payload byte (the tag is the last 32)
        flipped[at] ^= 0x01;

        let cases: Vec<(&str, Vec<u8>, ViolationKind)> = vec![
            (
                "another tenant's sealed value",
                sealed(&redis_key(&other_tenant)).await,
                ViolationKind::OwnerMismatch,
            ),
            (
                "tenant and device swapped",
                sealed(&redis_key(&swapped)).await,
                ViolationKind::OwnerMismatch,
            ),
            (
                "another item of the same owner",
                sealed(&redis_key(&other_item)).await,
                ViolationKind::ItemMismatch,
            ),
            (
                "another namespace",
                sealed(&redis_key(&key::<Events>("alice", "cam-1", "7".into()))).await,
                ViolationKind::NamespaceMismatch,
            ),
            ("one flipped byte", flipped, ViolationKind::BadTag),
            (
                "truncated",
                own[..own.len() - 1].to_vec(),
                ViolationKind::Malformed,
            ),
            (
                "sealed with a secret not in the ring",
                Envelope::default()
                    .seal(&victim, b"forged", now, now + 60_000, &foreign_ring)
                    .unwrap()
                    .to_vec(),
                ViolationKind::BadTag,
            ),
            (
                "plain unsealed string",
                b"{\"thumbnail\": \"someone else's\"}".to_vec(),
                ViolationKind::Malformed,
            ),
        ];
        for (case, bytes, kind) in cases {
            let _: () = redis::cmd("SET")
                .arg(redis_key(&victim))
                .arg(&bytes)
                .arg("EX")
                .arg(86_400)
                .query_async(&mut raw)
                .await
                .unwrap();
            let before = thumbs.stats().violations;
            assert_eq!(
                thumbs.get(&victim).await,
                None,
                "{case}: must read as a miss"
            );
            let after = thumbs.stats().violations;
            assert_eq!(
                after.get(kind),
                before.get(kind) + 1,
                "{case}: counted as {kind:?}"
            );
            assert_eq!(after.total(), before.total() + 1, "{case}: counted once");
            let exists: bool = raw.exists(redis_key(&victim)).await.unwrap();
            assert!(!exists, "{case}: deleted from redis");
            let report = reports.take();
            assert_eq!(report.len(), 1, "{case}: reported once");
            assert_eq!(report[0].violation.kind(), kind, "{case}");
            assert_eq!(report[0].expected, victim.owner().clone(), "{case}");
            assert_eq!(report[0].namespace, "thumb", "{case}");
        }
        // Freshness misses: read as misses and counted, never reported, and left in place (the
        // store's TTL removes them; another instance may still read them).
        let freshness_cases: Vec<(&str, Vec<u8>, FreshnessKind)> = vec![
            (
                "sealed with a key id not in the ring",
                Envelope::default()
                    .seal(&victim, b"forged", now, now + 60_000, &unknown_ring)
                    .unwrap()
                    .to_vec(),
                FreshnessKind::UnknownKey,
            ),
            (
                "expired envelope with a long redis ttl",
                expired.to_vec(),
                FreshnessKind::Expired,
            ),
        ];
        for (case, bytes, kind) in freshness_cases {
            let _: () = redis::cmd("SET")
                .arg(redis_key(&victim))
                .arg(&bytes)
                .arg("EX")
                .arg(86_400)
                .query_async(&mut raw)
                .await
                .unwrap();
            let before = thumbs.stats();
            assert_eq!(thumbs.get(&victim).await, None, "{case}: a miss");
            let after = thumbs.stats();
            assert_eq!(
                after.freshness_misses.get(kind),
                before.freshness_misses.get(kind) + 1,
                "{case}: counted as {kind:?}"
            );
            assert_eq!(after.violations, before.violations, "{case}: no violation");
            assert!(reports.take().is_empty(), "{case}: not reported");
            let exists: bool = raw.exists(redis_key(&victim)).await.unwrap();
            assert!(exists, "{case}: left in redis");
        }
        // The owner-mismatch reports name the authenticated owner that was found.
        let _: () = redis::cmd("SET")
            .arg(redis_key(&victim))
            .arg(sealed(&redis_key(&swapped)).await)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(thumbs.get(&victim).await, None);
        let report = reports.take();
        match &report[0].violation {
            scoped_cache::Violation::OwnerMismatch { expected, found } => {
                assert_eq!(expected, victim.owner());
                assert_eq!(
                    found,
                    &Owner::new(
                        TenantId::new("cam-1").unwrap(),
                        DeviceId::new("alice").unwrap()
                    )
                );
            }
            other => panic!("expected an owner mismatch, got {other:?}"),
        }
        // Untouched keys still read; the cache never returned a poisoned value.
        assert_eq!(
            thumbs.get(&other_tenant).await.as_deref(),
            Some(&b"mallory's"[..])
        );
        assert_eq!(thumbs.stats().hits_remote, 1);
        assert_eq!(thumbs.stats().remote_errors, 0);
    })
    .await;
}

/// How far past its timeout a call may return on a loaded 2-core CI machine. These checks prove
/// that calls are bounded by their timeout rather than hanging (a dead server would otherwise
/// hold them for the OS's TCP timeouts), not how fast they are.
const SCHEDULING_SLACK: Duration = Duration::from_secs(1);

async fn server_down_reads_miss_within_the_timeout_and_counts_remote_errors(
    mut server: RedisServer,
) {
    within(async {
        let timeout = Duration::from_millis(300);
        let store = RedisStore::builder(server.url())
            .response_timeout(timeout)
            .connect()
            .await
            .unwrap();
        let thumbs = remote_only_cache::<Thumbs>(Arc::new(store));
        let k = key::<Thumbs>("alice", "cam-1", 1);
        thumbs.insert(&k, Bytes::from_static(b"v")).await.unwrap();

        server.kill();
        for _ in 0..20 {
            let started = Instant::now();
            assert_eq!(thumbs.get(&k).await, None);
            assert!(
                started.elapsed() < timeout + SCHEDULING_SLACK,
                "a read took {:?}",
                started.elapsed()
            );
        }
        let started = Instant::now();
        assert!(thumbs.insert(&k, Bytes::from_static(b"v")).await.is_err());
        assert!(started.elapsed() < timeout + SCHEDULING_SLACK);
        let stats = thumbs.stats();
        // Five failures in a row open the store breaker (the default): the other calls skip
        // the store instead of waiting for it.
        assert_eq!(stats.remote_errors, 5);
        assert_eq!(stats.remote_skipped, 16);
        assert_eq!(stats.store_breaker_trips, 1);
        assert_eq!(stats.store_breaker_state, BreakerState::Open);
        assert_eq!(stats.misses, 20);
        // The next read does not wait for the store at all: it is skipped, not failed.
        assert_eq!(thumbs.get(&k).await, None);
        let skipped = thumbs.stats();
        assert_eq!(
            (skipped.remote_errors, skipped.remote_skipped),
            (5, 17),
            "a read while the store breaker is open is skipped"
        );

        // get_or_load goes to the loader: the read and the write of the loaded value skip the
        // store (or, once the breaker probes, fail within the timeout).
        let started = Instant::now();
        let load = || async { Ok::<_, std::io::Error>(Bytes::from_static(b"from the origin")) };
        let loaded = thumbs.get_or_load(&k, load).await.unwrap();
        assert_eq!(loaded, Bytes::from_static(b"from the origin"));
        assert!(started.elapsed() < 2 * timeout + SCHEDULING_SLACK);
        assert_eq!(thumbs.stats().loads, 1);

        // Back up (empty): the client reconnects by itself.
        server.restart();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if thumbs.insert(&k, Bytes::from_static(b"back")).await.is_ok()
                && thumbs.get(&k).await.is_some()
            {
                break;
            }
            assert!(Instant::now() < deadline, "the client did not reconnect");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(thumbs.get(&k).await.as_deref(), Some(&b"back"[..]));
    })
    .await;
}

async fn connect_errors_are_typed_and_bounded(server: RedisServer) {
    within(async {
        // Nothing listening on the socket.
        let missing = format!("redis+unix://{}.missing", server.socket().display());
        let started = Instant::now();
        let err = RedisStore::builder(missing)
            .connect_timeout(Duration::from_millis(300))
            .connect()
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Unavailable(_) | StoreError::Timeout(_)),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(300) + SCHEDULING_SLACK);

        // A database that does not exist is refused by the server.
        let err = RedisStore::builder(format!("{}?db=9999", server.url()))
            .connect()
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Server(_)), "{err:?}");

        // A lazy store starts without a server and fails each call within its timeout.
        let lazy = RedisStore::builder(format!(
            "redis+unix://{}.missing",
            server.socket().display()
        ))
        .response_timeout(Duration::from_millis(200))
        .connect_lazy()
        .unwrap();
        let started = Instant::now();
        assert!(lazy.get(b"k").await.is_err());
        assert!(started.elapsed() < Duration::from_millis(200) + SCHEDULING_SLACK);

        // A key holding a non-string is a server error, not a panic or a value.
        let mut raw = raw(&server).await;
        let _: usize = raw.lpush("list", "x").await.unwrap();
        let store = RedisStore::connect(&server.url()).await.unwrap();
        assert!(matches!(
            store.get(b"list").await,
            Err(StoreError::Server(_))
        ));
    })
    .await;
}

/// No server and no runtime needed: outside a Tokio runtime the builder refuses with a
/// configuration error instead of panicking where redis-rs spawns its connection tasks.
fn connect_lazy_outside_a_tokio_runtime_is_a_config_error() {
    let built = RedisStore::builder("redis://127.0.0.1:1").connect_lazy();
    match built {
        Err(StoreError::Config(message)) => {
            assert!(message.contains("Tokio runtime"), "{message}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}
