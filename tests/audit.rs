//! `scoped-cache-audit` against a real `redis-server`: it lists exactly the entries that are
//! mis-filed, forged, damaged, expired or of another ring, with the right kinds and owners;
//! `--delete` leaves exactly the valid ones (and what is not ours); a wrong secret deletes
//! nothing; keys in the owner-affine layout are audited for the key behind their hash tag. And
//! `report` over a violation log names exactly the pairs of owners a faulty store mixed up.

mod support;

use bytes::Bytes;
use redis::AsyncCommands as _;
use scoped_cache::envelope::{Envelope, Escaped};
use scoped_cache::store::{KeyLayout, MemoryStore};
use scoped_cache::testing::{FaultKind, FaultyStore};
use scoped_cache::{
    Client, Key, KeyId, KeyRing, Namespace, Owner, RawBytes, RedisStore, ViolationLog,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use support::RedisServer;
use support::fixture::{SECRET, Thumbs, key, ring};
use support::harness::{self, trials};

/// libtest-mimic (`harness = false`): without `redis-server` the server tests are reported as
/// ignored, not passed (see `support::harness`).
fn main() -> std::process::ExitCode {
    harness::run(trials![
        redis_test(the_audit_lists_exactly_the_refused_entries_and_delete_leaves_the_valid_ones),
        redis_test(a_wrong_secret_is_named_and_nothing_is_deleted),
        redis_test(owner_affine_keys_are_audited_for_the_key_behind_their_hash_tag),
        test(bad_flags_a_bad_secret_file_and_an_unreachable_server_exit_non_zero),
        tokio_test(the_report_over_a_violation_log_names_exactly_the_owners_mixed_up),
    ])
}

const PREFIX: &str = "svc:";
/// Every payload carries it: it must never appear in anything the audit prints or writes.
const PAYLOAD_MARK: &str = "PAYLOAD-NEVER-SHOWN";

struct Events;
impl Namespace for Events {
    const NAME: &'static str = "events";
    const SCHEMA: u16 = 1;
    type Item = u64;
    type Value = Bytes;
    type Codec = RawBytes;
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn payload(n: u64) -> Bytes {
    Bytes::from(format!("{PAYLOAD_MARK} thumbnail {n}"))
}

/// A ring file holding `secret` under key id `id`.
fn ring_file(dir: &Path, name: &str, id: u32, secret: &[u8]) -> std::path::PathBuf {
    use base64::Engine as _;
    let path = dir.join(name);
    let encoded = base64::engine::general_purpose::STANDARD.encode(secret);
    std::fs::write(
        &path,
        format!("# the fleet's ring\n{id} base64:{encoded}\n"),
    )
    .unwrap();
    path
}

fn audit(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_scoped-cache-audit"))
        .args(args)
        .output()
        .expect("run scoped-cache-audit");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    println!("$ scoped-cache-audit {}\n{stdout}{stderr}", args.join(" "));
    assert!(
        !stdout.contains(PAYLOAD_MARK) && !stderr.contains(PAYLOAD_MARK),
        "payload printed"
    );
    output
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(!text.contains(PAYLOAD_MARK), "payload written to {path:?}");
    serde_json::from_str(&text).unwrap()
}

fn store_key(key: &[u8]) -> String {
    Escaped(&[PREFIX.as_bytes(), key].concat()).to_string()
}

/// An owner as the audit's JSON and the violation log write it (numbered ids).
fn owner_json(tenant: u64, device: u64) -> Value {
    json!({"tenant": tenant, "device": device})
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn keys_in(server: &RedisServer) -> BTreeSet<String> {
    let keys: Vec<Vec<u8>> = raw(server).await.keys("*").await.unwrap();
    keys.iter().map(|key| Escaped(key).to_string()).collect()
}

/// What the audit must say of one refused entry: (store key, kind, found owner as JSON text).
type Expected = (String, String, Option<String>);

async fn the_audit_lists_exactly_the_refused_entries_and_delete_leaves_the_valid_ones(
    server: RedisServer,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        RedisStore::builder(server.url())
            .key_prefix(PREFIX)
            .connect()
            .await
            .unwrap(),
    );
    let client = Client::builder()
        .key_ring(ring())
        .remote_shared(store.clone())
        .build()
        .unwrap();
    let thumbs = client.cache::<Thumbs>().local_capacity(0).build().unwrap();
    let events = client.cache::<Events>().local_capacity(0).build().unwrap();

    // N valid entries, written through the library: 6 x 5 thumbnails, 10 events.
    let mut valid = BTreeSet::new();
    for tenant in 1..=6 {
        for item in 0..5 {
            let key = key(tenant, tenant + 100, item);
            thumbs.insert(&key, payload(item)).await.unwrap();
            valid.insert(store_key(&key.encode()));
        }
    }
    for item in 0..10 {
        let key = Key::<Events>::new(
            scoped_cache::TenantId::from_u64(1),
            scoped_cache::DeviceId::from_u64(101),
            item,
        );
        events.insert(&key, payload(item)).await.unwrap();
        valid.insert(store_key(&key.encode()));
    }

    // M entries that are not what their key says, written behind the library's back.
    let envelope = Envelope::default();
    let now = now_ms();
    let sealed = |key: &Key<Thumbs>, ring: &KeyRing, expires: u64| {
        envelope
            .seal(key, &payload(0), now - 1_000, expires, ring)
            .unwrap()
    };
    let later = now + 600_000;
    let forger = KeyRing::new(KeyId(1), &[0x66; 32]).unwrap();
    let other_ring = KeyRing::new(KeyId(9), &[0x77; 32]).unwrap();
    let mut flipped = sealed(&key(2, 102, 7), &ring(), later).to_vec();
    let payload_byte = flipped.len() - 33;
    flipped[payload_byte] ^= 0x20;
    let truncated = sealed(&key(2, 102, 8), &ring(), later).slice(..60);
    let events_value = envelope
        .seal(
            &Key::<Events>::new(
                scoped_cache::TenantId::from_u64(3),
                scoped_cache::DeviceId::from_u64(103),
                1,
            ),
            &payload(1),
            now,
            later,
            &ring(),
        )
        .unwrap();
    let bad: Vec<(Key<Thumbs>, Bytes, &'static str, Option<Value>)> = vec![
        // Alice's (1, 101) thumbnail filed under bob's (2, 102) key.
        (
            key(2, 102, 20),
            sealed(&key(1, 101, 0), &ring(), later),
            "owner_mismatch",
            Some(owner_json(1, 101)),
        ),
        // Tenant and device exchanged: (103, 3)'s value under (3, 103).
        (
            key(3, 103, 9),
            sealed(&key(103, 3, 9), &ring(), later),
            "owner_mismatch",
            Some(owner_json(103, 3)),
        ),
        // The same owner's other item.
        (
            key(4, 104, 9),
            sealed(&key(4, 104, 1), &ring(), later),
            "item_mismatch",
            Some(owner_json(4, 104)),
        ),
        // Another namespace's value of another owner.
        (
            key(3, 103, 10),
            events_value,
            "namespace_mismatch",
            Some(owner_json(3, 103)),
        ),
        // Forged: sealed by someone without the secret, under the fleet's key id.
        (
            key(5, 105, 9),
            sealed(&key(5, 105, 9), &forger, later),
            "bad_tag",
            None,
        ),
        // One payload bit flipped.
        (key(2, 102, 7), Bytes::from(flipped), "bad_tag", None),
        // Cut short.
        (key(2, 102, 8), truncated, "malformed", None),
        // Not an envelope at all.
        (
            key(6, 106, 9),
            Bytes::from(format!("{PAYLOAD_MARK} raw jpeg")),
            "malformed",
            None,
        ),
        // Authentic and filed right, but expired and kept by the store.
        (
            key(1, 101, 9),
            sealed(&key(1, 101, 9), &ring(), now - 500),
            "expired",
            Some(owner_json(1, 101)),
        ),
    ];
    // Kept by --delete: another ring's value, and a key that is not a scoped-cache key.
    let other_rings = key(6, 106, 10);
    let not_a_key = format!("{PREFIX}sc1:not-a-key");
    let mut raw = raw(&server).await;
    let mut expected: BTreeSet<Expected> = BTreeSet::new();
    for (key, value, kind, found) in &bad {
        let () = raw
            .set([PREFIX.as_bytes(), &key.encode()].concat(), value.as_ref())
            .await
            .unwrap();
        expected.insert((
            store_key(&key.encode()),
            kind.to_string(),
            found.as_ref().map(Value::to_string),
        ));
    }
    let () = raw
        .set(
            [PREFIX.as_bytes(), &other_rings.encode()].concat(),
            sealed(&other_rings, &other_ring, later).as_ref(),
        )
        .await
        .unwrap();
    let () = raw.set(&not_a_key, "x").await.unwrap();
    // Outside the prefix: not scanned.
    let () = raw.set("elsewhere:sc1:thumb", "x").await.unwrap();
    let mut kept = valid.clone();
    kept.insert(store_key(&other_rings.encode()));
    kept.insert(not_a_key.clone());
    expected.insert((store_key(&other_rings.encode()), "unknown_key".into(), None));
    expected.insert((not_a_key.clone(), "not_a_key".into(), None));

    let ring_path = ring_file(dir.path(), "ring.txt", 1, &SECRET);
    let json_path = dir.path().join("audit.json");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "--redis",
            &server.url(),
            "--secret-file",
            ring_path.to_str().unwrap(),
            "--key-prefix",
            PREFIX,
            "--rate",
            "unlimited",
            "--batch",
            "7",
            "--json",
            json_path.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run = |extra: &[&str]| {
        let args = args(extra);
        audit(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    let output = run(&[]);
    assert_eq!(output.status.code(), Some(1), "integrity failures exit 1");
    let report = read_json(&json_path);
    let listed: BTreeSet<Expected> = report["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let found = match &entry["found"] {
                Value::Null => None,
                found => {
                    Some(json!({"tenant": found["tenant"], "device": found["device"]}).to_string())
                }
            };
            (
                entry["store_key"].as_str().unwrap().to_owned(),
                entry["kind"].as_str().unwrap().to_owned(),
                found,
            )
        })
        .collect();
    assert_eq!(
        listed, expected,
        "the audit lists exactly the refused entries"
    );
    assert_eq!(
        report["refused"].as_array().unwrap().len(),
        expected.len(),
        "each once"
    );
    assert_eq!(report["namespaces"]["thumb"]["valid"], 30);
    assert_eq!(report["namespaces"]["events"]["valid"], 10);
    assert_eq!(
        report["namespaces"]["thumb"]["refused"]["owner_mismatch"],
        2
    );
    assert_eq!(report["integrity_failures"], 8);
    assert_eq!(
        report["scanned"],
        40 + 9 + 2,
        "the key outside the prefix is not scanned"
    );
    let namespace_mismatch = report["refused"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["kind"] == "namespace_mismatch")
        .unwrap();
    assert_eq!(namespace_mismatch["found"]["namespace"], "events");
    assert_eq!(namespace_mismatch["stored_under"]["namespace"], "thumb");
    assert_eq!(
        namespace_mismatch["stored_under"]["item"],
        "000000000000000a"
    );
    assert!(
        keys_in(&server).await.len() > kept.len(),
        "nothing deleted without --delete"
    );

    let output = run(&["--delete"]);
    assert_eq!(output.status.code(), Some(1));
    let report = read_json(&json_path);
    assert_eq!(
        report["deleted"], 9,
        "integrity failures and the expired entry"
    );
    let mut left = keys_in(&server).await;
    assert!(left.remove("elsewhere:sc1:thumb"));
    assert_eq!(
        left, kept,
        "--delete leaves exactly the valid entries and what is not ours"
    );

    let output = run(&[]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "nothing refused for integrity is left"
    );
    assert_eq!(
        read_json(&json_path)["refused"].as_array().unwrap().len(),
        2
    );
}

async fn a_wrong_secret_is_named_and_nothing_is_deleted(server: RedisServer) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedisStore::connect(&server.url()).await.unwrap());
    let client = Client::builder()
        .key_ring(ring())
        .remote_shared(store)
        .build()
        .unwrap();
    let thumbs = client.cache::<Thumbs>().local_capacity(0).build().unwrap();
    for item in 0..20 {
        thumbs
            .insert(&key(1, 2, item), payload(item))
            .await
            .unwrap();
    }
    let before = keys_in(&server).await;
    for (name, id, secret) in [("wrong.txt", 1, [0x13; 32]), ("other-id.txt", 5, SECRET)] {
        let ring_path = ring_file(dir.path(), name, id, &secret);
        let output = audit(&[
            "--redis",
            &server.url(),
            "--secret-file",
            ring_path.to_str().unwrap(),
            "--delete",
        ]);
        assert_eq!(output.status.code(), Some(4), "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("the secret does not match"), "{stderr}");
        assert!(stderr.contains("Nothing was deleted"), "{stderr}");
        assert_eq!(keys_in(&server).await, before, "{name}: nothing deleted");
    }
}

/// Keys in the owner-affine layout (`sc1:thumb:{tag}T…`, as `RedisClusterStore` writes them
/// with `KeyLayout::OwnerAffine`) are found by the same `SCAN`, opened for the key behind their
/// tag, and deleted under their own store key; a tag that is not its key's owner's is not a key.
async fn owner_affine_keys_are_audited_for_the_key_behind_their_hash_tag(server: RedisServer) {
    let dir = tempfile::tempdir().unwrap();
    let mut raw = raw(&server).await;
    let (envelope, now) = (Envelope::default(), now_ms());
    let affine = |key: &Key<Thumbs>| {
        [
            PREFIX.as_bytes(),
            &KeyLayout::OwnerAffine.store_key(&key.encode()),
        ]
        .concat()
    };
    let sealed = |key: &Key<Thumbs>| {
        envelope
            .seal(key, &payload(0), now, now + 600_000, &ring())
            .unwrap()
    };
    for item in 0..10 {
        let () = raw
            .set(
                affine(&key(1, 101, item)),
                sealed(&key(1, 101, item)).as_ref(),
            )
            .await
            .unwrap();
    }
    // Alice's (1, 101) value under bob's (2, 102) owner-affine key.
    let swapped = affine(&key(2, 102, 0));
    let () = raw
        .set(&swapped, sealed(&key(1, 101, 0)).as_ref())
        .await
        .unwrap();
    // Alice's own value and key behind bob's tag: no store writes or reads it.
    let mut mistagged = affine(&key(1, 101, 11));
    let tag = PREFIX.len() + "sc1:thumb:{".len();
    mistagged[tag..tag + 8].copy_from_slice(&swapped[tag..tag + 8]);
    let () = raw
        .set(&mistagged, sealed(&key(1, 101, 11)).as_ref())
        .await
        .unwrap();

    let ring_path = ring_file(dir.path(), "ring.txt", 1, &SECRET);
    let json_path = dir.path().join("audit.json");
    let output = audit(&[
        "--redis",
        &server.url(),
        "--secret-file",
        ring_path.to_str().unwrap(),
        "--key-prefix",
        PREFIX,
        "--delete",
        "--json",
        json_path.to_str().unwrap(),
    ]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "an integrity failure exits 1"
    );
    let report = read_json(&json_path);
    assert_eq!(report["scanned"], 12);
    assert_eq!(report["namespaces"]["thumb"]["valid"], 10);
    assert_eq!(
        report["namespaces"]["thumb"]["refused"]["owner_mismatch"],
        1
    );
    assert_eq!(report["not_keys"], 1, "{report}");
    let refused = report["refused"].as_array().unwrap();
    let listed = |kind: &str| {
        refused
            .iter()
            .find(|entry| entry["kind"] == kind)
            .unwrap_or_else(|| panic!("{kind} listed: {report}"))
    };
    assert_eq!(
        listed("owner_mismatch")["store_key"],
        Escaped(&swapped).to_string()
    );
    assert_eq!(listed("owner_mismatch")["found"]["device"], 101);
    assert_eq!(listed("owner_mismatch")["deleted"], true);
    assert_eq!(
        listed("not_a_key")["store_key"],
        Escaped(&mistagged).to_string()
    );
    let left = keys_in(&server).await;
    assert_eq!(
        left.len(),
        11,
        "the swapped value is deleted under its own key"
    );
    assert!(!left.contains(&Escaped(&swapped).to_string()));
}

fn bad_flags_a_bad_secret_file_and_an_unreachable_server_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let ring_path = ring_file(dir.path(), "ring.txt", 1, &SECRET);
    let ring_arg = ring_path.to_str().unwrap();
    let short = dir.path().join("short.txt");
    std::fs::write(&short, "1 text:too short\n").unwrap();
    for (args, status, says) in [
        (vec!["--redis", "redis://127.0.0.1:1"], 2, "--secret-file"),
        (
            vec![
                "--redis",
                "redis://h",
                "--secret-file",
                ring_arg,
                "--rate",
                "0",
            ],
            2,
            "--rate",
        ),
        (
            vec![
                "--redis",
                "redis://h",
                "--secret-file",
                short.to_str().unwrap(),
            ],
            2,
            "line 1",
        ),
        (
            vec!["--redis", "redis://h", "--secret-file", "/nonexistent"],
            2,
            "cannot read",
        ),
        (
            vec![
                "--redis",
                "redis://127.0.0.1:1",
                "--secret-file",
                ring_arg,
                "--timeout",
                "500ms",
            ],
            3,
            "cannot reach",
        ),
        (
            vec!["--redis", "mongodb://h", "--secret-file", ring_arg],
            3,
            "redis url",
        ),
        (vec!["report", "/nonexistent.jsonl"], 3, "cannot open"),
    ] {
        let output = audit(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(status), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("too short"),
            "the secret is never repeated"
        );
    }
}

/// A cache over a store that swaps and confuses values writes a violation log; `report` over
/// it names exactly the (expected, found) owner pairs the store injected, with their counts.
async fn the_report_over_a_violation_log_names_exactly_the_owners_mixed_up() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("violations.jsonl");
    let log = ViolationLog::open(&log_path).unwrap();
    type Pairs = BTreeMap<(Owner, Owner), u64>;
    let truth: Arc<Mutex<Pairs>> = Arc::default();
    let recorded = truth.clone();
    let store = FaultyStore::builder(MemoryStore::default())
        .seed(7)
        .rate(FaultKind::Swap, 0.15)
        .rate(FaultKind::Confuse, 0.15)
        .on_misdirected(move |read, source, _| {
            let owner = |key: &[u8]| scoped_cache::envelope::RawKey::decode(key).unwrap().owner;
            *recorded
                .lock()
                .unwrap()
                .entry((owner(read), owner(source)))
                .or_default() += 1;
        })
        .build()
        .unwrap();
    let client = Client::builder()
        .key_ring(ring())
        .remote(store)
        .on_violation(log.sink())
        .build()
        .unwrap();
    let thumbs = client.cache::<Thumbs>().local_capacity(0).build().unwrap();
    // Symmetric owners, so that `confuse` finds the exchanged key populated.
    let owners: Vec<(u64, u64)> = (0..8)
        .flat_map(|t| (0..8).filter(move |d| *d != t).map(move |d| (t, d)))
        .collect();
    for round in 0..6 {
        for &(tenant, device) in &owners {
            let key = key(tenant, device, round % 2);
            let value = thumbs
                .get_or_load(&key, || async move {
                    Ok::<_, std::io::Error>(payload(tenant * 100 + device))
                })
                .await
                .unwrap();
            assert_eq!(
                value,
                payload(tenant * 100 + device),
                "never another owner's value"
            );
        }
    }
    log.flush().unwrap();
    assert_eq!(log.stats().dropped_queue_full, 0);
    let json_path = dir.path().join("report.json");
    let output = audit(&[
        "report",
        log_path.to_str().unwrap(),
        "--json",
        json_path.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Served to the wrong owner: nothing"));
    let report = read_json(&json_path);

    let truth = truth.lock().unwrap();
    assert!(
        truth.len() > 10,
        "the store mixed up enough owners: {}",
        truth.len()
    );
    let owner_value =
        |owner: &Owner| json!({"tenant": owner.tenant.as_u64(), "device": owner.device.as_u64()});
    let other_owners: BTreeSet<(String, String, u64)> = truth
        .iter()
        .filter(|((read, source), _)| read != source)
        .map(|((read, source), count)| {
            (
                owner_value(read).to_string(),
                owner_value(source).to_string(),
                *count,
            )
        })
        .collect();
    let own: u64 = truth
        .iter()
        .filter(|((read, source), _)| read == source)
        .map(|(_, n)| n)
        .sum();
    let reported: BTreeSet<(String, String, u64)> = report["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            (
                pair["expected"].to_string(),
                pair["found"].to_string(),
                pair["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reported, other_owners,
        "the report's pairs are the injected ones"
    );
    assert_eq!(report["own_data_refused"], own);
    assert_eq!(report["unattributed"], 0);
    let injected: u64 = truth.values().sum();
    assert_eq!(report["violations"], injected);
    let distinct: BTreeSet<&String> = other_owners
        .iter()
        .map(|(expected, _, _)| expected)
        .collect();
    assert_eq!(report["owners_offered_others_data"], distinct.len());
}
