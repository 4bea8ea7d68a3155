//! Instrumentation: with `tracing`, one span per `Cache` operation named after it, with fields
//! `namespace` and `outcome` only, and an `ERROR` event per violation (`namespace`, `tier`,
//! `kind`); with `metrics`, the documented counters, gauge and histogram with namespace, tier,
//! kind, op and outcome labels. Neither ever carries a tenant, device or item.
#![cfg(any(feature = "tracing", feature = "metrics"))]

mod support;

use bytes::Bytes;
use scoped_cache::store::RemoteStore;
use scoped_cache::{Cache, Client, DeviceId, Key, MemoryStore, Policy, TenantId};
use std::sync::Arc;
use support::fixture::{Thumbs, client, ring};

/// Marks every id so a test can search all recorded text for it.
const SECRET_MARK: &str = "confidential";

fn key(item: u64) -> Key<Thumbs> {
    Key::new(
        TenantId::new("tenant-confidential-42").expect("valid id"),
        DeviceId::new("cam-confidential-7").expect("valid id"),
        item,
    )
}

/// Tests here run one at a time: `tracing` caches each callsite's interest when it is first
/// hit, and a callsite first hit on a thread without a subscriber *while* another thread
/// installs its scoped one can stay disabled for the latter (a race in `with_default`).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// Every kind of operation and outcome, over one store: misses, both hit tiers, a load, a
/// coalesced-free second load, an invalidation, a bypass, a load error and a remote violation.
async fn workload(store: Arc<MemoryStore>) {
    let client = client(store.clone());
    let thumbs: Cache<Thumbs> = client.cache().build().expect("valid cache");
    let jpeg = Bytes::from_static(b"jpeg");

    assert_eq!(thumbs.get(&key(1)).await, None); // miss
    thumbs.insert(&key(1), jpeg.clone()).await.expect("insert"); // stored
    assert!(thumbs.get(&key(1)).await.is_some()); // hit_local
    thumbs.local().expect("local tier").clear();
    assert!(thumbs.get(&key(1)).await.is_some()); // hit_remote
    let load = || async { Ok::<_, std::io::Error>(Bytes::from_static(b"loaded")) };
    thumbs.get_or_load(&key(2), load).await.expect("load"); // loaded
    thumbs.get_or_load(&key(2), load).await.expect("cached"); // hit_local
    let fail = || async { Err::<Bytes, _>(std::io::Error::other("db down")) };
    assert!(thumbs.get_or_load(&key(3), fail).await.is_err()); // error
    thumbs.invalidate(&key(1)).await.expect("invalidate"); // invalidated

    // A remote value that is not an envelope: a `malformed` violation, then a miss.
    store
        .set(&key(4).encode(), Bytes::from_static(b"garbage"), None)
        .await
        .expect("store write");
    assert_eq!(thumbs.get(&key(4)).await, None);

    let bypassed: Cache<Thumbs> = client
        .cache()
        .policy(Policy::Bypass)
        .build()
        .expect("valid cache");
    assert_eq!(bypassed.get(&key(1)).await, None); // bypass
}

/// `get_many` batches: all missing in-process (two found remotely, one nowhere), all found
/// in-process, one found remotely, and one bypassed.
async fn batch_workload(store: Arc<MemoryStore>) {
    let client = client(store);
    let thumbs: Cache<Thumbs> = client.cache().build().expect("valid cache");
    for item in [1, 2] {
        thumbs
            .insert(&key(item), Bytes::from_static(b"jpeg"))
            .await
            .expect("insert");
    }
    let local = thumbs.local().expect("local tier");
    local.clear();
    let found = thumbs.get_many(&[key(1), key(2), key(3)]).await;
    assert_eq!(
        found.iter().map(Option::is_some).collect::<Vec<_>>(),
        [true, true, false]
    );
    let found = thumbs.get_many(&[key(1), key(2)]).await; // promoted: both in-process
    assert!(found.iter().all(Option::is_some));
    local.clear();
    assert!(thumbs.get_many(&[key(1)]).await[0].is_some()); // remote
    let bypassed: Cache<Thumbs> = client
        .cache()
        .policy(Policy::Bypass)
        .build()
        .expect("valid cache");
    assert_eq!(bypassed.get_many(&[key(1)]).await, [None]);
}

#[cfg(feature = "tracing")]
mod spans {
    use super::*;
    use std::collections::BTreeMap;
    use std::fmt;
    use std::sync::Mutex;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Subscriber};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
    use tracing_subscriber::registry::LookupSpan;

    type Fields = BTreeMap<String, String>;

    #[derive(Debug, Clone)]
    struct ClosedSpan {
        name: &'static str,
        target: String,
        level: Level,
        fields: Fields,
    }

    #[derive(Debug, Clone)]
    struct CapturedEvent {
        level: Level,
        target: String,
        parent: Option<&'static str>,
        fields: Fields,
    }

    #[derive(Default)]
    struct Captured {
        spans: Vec<ClosedSpan>,
        events: Vec<CapturedEvent>,
    }

    impl Captured {
        /// (name, outcome) of each closed span, in the order they closed.
        fn span_outcomes(&self) -> Vec<(&'static str, &str)> {
            self.spans
                .iter()
                .map(|span| {
                    let outcome = span.fields.get("outcome").map_or("-", String::as_str);
                    (span.name, outcome)
                })
                .collect()
        }

        /// Every span is a DEBUG span of target `scoped_cache` with exactly the fields
        /// `namespace` and `outcome` (no owner, key or tenant).
        fn assert_spans_carry_only_namespace_and_outcome(&self) {
            for span in &self.spans {
                assert_eq!(span.target, "scoped_cache", "{span:?}");
                assert_eq!(span.level, Level::DEBUG, "{span:?}");
                assert_eq!(
                    span.fields.keys().map(String::as_str).collect::<Vec<_>>(),
                    ["namespace", "outcome"],
                    "only these fields: {span:?}"
                );
            }
        }
    }

    /// Runs `workload` under a subscriber that records it, and returns the recording.
    fn capture(workload: impl std::future::Future<Output = ()>) -> Captured {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry().with(capture.clone());
        tracing::subscriber::with_default(subscriber, || runtime().block_on(workload));
        std::mem::take(&mut *capture.0.lock().expect("capture lock"))
    }

    /// Records closed spans with their final fields, and events.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Captured>>);

    struct Visitor<'a>(&'a mut Fields);

    impl Visit for Visitor<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().to_owned(), value.to_owned());
        }

        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.0.insert(field.name().to_owned(), format!("{value:?}"));
        }
    }

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            let mut fields = Fields::new();
            attrs.record(&mut Visitor(&mut fields));
            if let Some(span) = ctx.span(id) {
                span.extensions_mut().insert(fields);
            }
        }

        fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
            if let Some(span) = ctx.span(id)
                && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
            {
                values.record(&mut Visitor(fields));
            }
        }

        fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
            let mut fields = Fields::new();
            event.record(&mut Visitor(&mut fields));
            let parent = ctx.event_span(event).map(|span| span.name());
            self.0
                .lock()
                .expect("capture lock")
                .events
                .push(CapturedEvent {
                    level: *event.metadata().level(),
                    target: event.metadata().target().to_owned(),
                    parent,
                    fields,
                });
        }

        fn on_close(&self, id: Id, ctx: Context<'_, S>) {
            if let Some(span) = ctx.span(&id) {
                let fields = span.extensions_mut().remove::<Fields>().unwrap_or_default();
                self.0.lock().expect("capture lock").spans.push(ClosedSpan {
                    name: span.name(),
                    target: span.metadata().target().to_owned(),
                    level: *span.metadata().level(),
                    fields,
                });
            }
        }
    }

    #[test]
    fn get_many_has_a_span_with_the_batch_outcome() {
        let _serial = serial();
        let captured = capture(batch_workload(Arc::new(MemoryStore::default())));
        assert_eq!(
            captured.span_outcomes(),
            [
                ("insert", "stored"),
                ("insert", "stored"),
                ("get_many", "miss"),
                ("get_many", "hit_local"),
                ("get_many", "hit_remote"),
                ("get_many", "bypass"),
            ],
            "one span per batch, with the batch's outcome"
        );
        captured.assert_spans_carry_only_namespace_and_outcome();
    }

    #[test]
    fn every_operation_has_a_span_with_namespace_and_outcome_only() {
        let _serial = serial();
        let captured = capture(workload(Arc::new(MemoryStore::default())));
        assert_eq!(
            captured.span_outcomes(),
            [
                ("get", "miss"),
                ("insert", "stored"),
                ("get", "hit_local"),
                ("get", "hit_remote"),
                ("get_or_load", "loaded"),
                ("get_or_load", "hit_local"),
                ("get_or_load", "error"),
                ("invalidate", "invalidated"),
                ("get", "miss"),
                ("get", "bypass"),
            ],
            "one span per operation, in order, with its outcome"
        );
        captured.assert_spans_carry_only_namespace_and_outcome();
        for span in &captured.spans {
            assert_eq!(span.fields["namespace"], "thumb", "{span:?}");
        }

        let violations: Vec<&CapturedEvent> = captured
            .events
            .iter()
            .filter(|event| event.level == Level::ERROR)
            .collect();
        let [violation] = violations.as_slice() else {
            panic!("one error event expected: {:?}", captured.events);
        };
        assert_eq!(violation.target, "scoped_cache");
        assert_eq!(violation.parent, Some("get"), "inside the read's span");
        assert_eq!(
            violation
                .fields
                .iter()
                .filter(|(name, _)| name.as_str() != "message")
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect::<Vec<_>>(),
            [
                ("kind", "malformed"),
                ("namespace", "thumb"),
                ("tier", "remote")
            ],
            "kind, tier and namespace, no owners"
        );

        let all_text = format!("{:?} {:?}", captured.spans, captured.events);
        assert!(
            !all_text.contains(SECRET_MARK),
            "no tenant or device text in any span or event: {all_text}"
        );
    }
}

#[cfg(feature = "metrics")]
mod meters {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use metrics_util::{CompositeKey, MetricKind};
    use std::collections::BTreeMap;
    use std::time::Duration;

    type Labels = Vec<(String, String)>;

    /// Every metric recorded while `run` ran on this thread: (kind, name, sorted labels) → value.
    fn record(run: impl FnOnce()) -> BTreeMap<(MetricKind, String, Labels), DebugValue> {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, run);
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| (identify(&key), value))
            .collect()
    }

    fn identify(key: &CompositeKey) -> (MetricKind, String, Labels) {
        let mut labels: Labels = key
            .key()
            .labels()
            .map(|label| (label.key().to_owned(), label.value().to_owned()))
            .collect();
        labels.sort();
        (key.kind(), key.key().name().to_owned(), labels)
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        let mut labels: Labels = pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        labels.sort();
        labels
    }

    fn counter(
        metrics: &BTreeMap<(MetricKind, String, Labels), DebugValue>,
        name: &str,
        pairs: &[(&str, &str)],
    ) -> u64 {
        match metrics.get(&(MetricKind::Counter, name.to_owned(), labels(pairs))) {
            Some(DebugValue::Counter(value)) => *value,
            other => panic!("counter {name} {pairs:?}: {other:?} in {metrics:#?}"),
        }
    }

    #[test]
    fn counters_and_histogram_carry_namespace_tier_kind_and_outcome_only() {
        let _serial = serial();
        let metrics = record(|| runtime().block_on(workload(Arc::new(MemoryStore::default()))));
        let ns = ("namespace", "thumb");

        // Local lookups: get ×3 (miss, hit, miss after clear), get_or_load ×2 leader re-checks
        // and cache hits, …: assert the ones the workload pins down.
        assert_eq!(
            counter(
                &metrics,
                "scoped_cache_hits_total",
                &[ns, ("tier", "local")]
            ),
            2
        );
        assert_eq!(
            counter(
                &metrics,
                "scoped_cache_hits_total",
                &[ns, ("tier", "remote")]
            ),
            1
        );
        assert!(
            counter(
                &metrics,
                "scoped_cache_misses_total",
                &[ns, ("tier", "local")]
            ) >= 3
        );
        assert!(
            counter(
                &metrics,
                "scoped_cache_misses_total",
                &[ns, ("tier", "remote")]
            ) >= 3
        );
        assert_eq!(counter(&metrics, "scoped_cache_loads_total", &[ns]), 2);
        assert_eq!(
            counter(
                &metrics,
                "scoped_cache_load_errors_total",
                &[ns, ("reason", "loader")]
            ),
            1
        );
        assert_eq!(
            counter(
                &metrics,
                "scoped_cache_violations_total",
                &[ns, ("tier", "remote"), ("kind", "malformed")]
            ),
            1
        );

        for (op, outcome, count) in [
            ("get", "miss", 2),
            ("get", "hit_local", 1),
            ("get", "hit_remote", 1),
            ("get", "bypass", 1),
            ("insert", "stored", 1),
            ("get_or_load", "loaded", 1),
            ("get_or_load", "hit_local", 1),
            ("get_or_load", "error", 1),
            ("invalidate", "invalidated", 1),
        ] {
            let key = (
                MetricKind::Histogram,
                "scoped_cache_operation_duration_seconds".to_owned(),
                labels(&[ns, ("op", op), ("outcome", outcome)]),
            );
            match metrics.get(&key) {
                Some(DebugValue::Histogram(samples)) => {
                    assert_eq!(samples.len(), count, "{op}/{outcome} samples");
                    assert!(samples.iter().all(|s| s.into_inner() >= 0.0));
                }
                other => panic!("histogram {op}/{outcome}: {other:?}"),
            }
        }

        let allowed = ["namespace", "tier", "kind", "op", "outcome", "reason"];
        for (_, name, labels) in metrics.keys() {
            assert!(name.starts_with("scoped_cache_"), "{name}");
            for (key, value) in labels {
                assert!(allowed.contains(&key.as_str()), "{name}: label {key}");
                assert!(!value.contains(SECRET_MARK), "{name}: {key}={value}");
            }
        }
    }

    #[test]
    fn get_many_counts_lookups_per_tier_and_records_its_latency() {
        let _serial = serial();
        let metrics =
            record(|| runtime().block_on(batch_workload(Arc::new(MemoryStore::default()))));
        let ns = ("namespace", "thumb");
        for (name, tier, count) in [
            ("scoped_cache_hits_total", "local", 2),
            ("scoped_cache_misses_total", "local", 4),
            ("scoped_cache_hits_total", "remote", 3),
            ("scoped_cache_misses_total", "remote", 1),
        ] {
            assert_eq!(
                counter(&metrics, name, &[ns, ("tier", tier)]),
                count,
                "{name} {tier}"
            );
        }
        for outcome in ["miss", "hit_local", "hit_remote", "bypass"] {
            let key = (
                MetricKind::Histogram,
                "scoped_cache_operation_duration_seconds".to_owned(),
                labels(&[ns, ("op", "get_many"), ("outcome", outcome)]),
            );
            match metrics.get(&key) {
                Some(DebugValue::Histogram(samples)) => {
                    assert_eq!(samples.len(), 1, "get_many/{outcome} samples");
                }
                other => panic!("histogram get_many/{outcome}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_breaker_gauge_follows_the_breaker() {
        let _serial = serial();
        let store = Arc::new(MemoryStore::default());
        let metrics = record(|| {
            runtime().block_on(async {
                let thumbs: Cache<Thumbs> = client(store.clone())
                    .cache()
                    .policy(Policy::AutoBypass {
                        threshold: 2,
                        window: Duration::from_secs(60),
                        cool_down: Duration::from_secs(60),
                    })
                    .build()
                    .expect("valid cache");
                for item in 0..2 {
                    store
                        .set(&key(item).encode(), Bytes::from_static(b"bad"), None)
                        .await
                        .expect("store write");
                    assert_eq!(thumbs.get(&key(item)).await, None);
                }
                assert_eq!(thumbs.get(&key(0)).await, None, "bypassed while open");
            })
        });
        let gauge = metrics.get(&(
            MetricKind::Gauge,
            "scoped_cache_breaker_state".to_owned(),
            labels(&[("namespace", "thumb")]),
        ));
        assert!(
            matches!(gauge, Some(DebugValue::Gauge(value)) if value.into_inner() == 1.0),
            "open is 1: {gauge:?}"
        );
        assert_eq!(
            counter(
                &metrics,
                "scoped_cache_violations_total",
                &[
                    ("namespace", "thumb"),
                    ("tier", "remote"),
                    ("kind", "malformed")
                ]
            ),
            2
        );
    }

    /// The breaker gauge of `metrics`, or a panic naming what was recorded.
    fn breaker_gauge(metrics: &BTreeMap<(MetricKind, String, Labels), DebugValue>) -> f64 {
        match metrics.get(&(
            MetricKind::Gauge,
            "scoped_cache_breaker_state".to_owned(),
            labels(&[("namespace", "thumb")]),
        )) {
            Some(DebugValue::Gauge(value)) => value.into_inner(),
            other => panic!("breaker gauge: {other:?}"),
        }
    }

    /// Every read path that moves the breaker moves the gauge with it, and the breaker sink sees
    /// the same transitions: here `get_many` probes close it.
    #[test]
    fn get_many_probes_that_close_the_breaker_update_the_gauge() {
        let _serial = serial();
        let store = Arc::new(MemoryStore::default());
        let clock = scoped_cache::ManualClock::new(1_000_000);
        let events = Arc::new(std::sync::Mutex::new(Vec::new()));
        let metrics = record(|| {
            runtime().block_on(async {
                let thumbs: Cache<Thumbs> = Client::builder()
                    .key_ring(ring())
                    .remote_shared(store.clone())
                    .clock(clock.clock())
                    .on_breaker({
                        let events = Arc::clone(&events);
                        move |event| events.lock().expect("events").push(event.to)
                    })
                    .build()
                    .expect("valid client")
                    .cache()
                    .policy(Policy::AutoBypass {
                        threshold: 1,
                        window: Duration::from_secs(60),
                        cool_down: Duration::from_secs(30),
                    })
                    .build()
                    .expect("valid cache");
                store
                    .set(&key(0).encode(), Bytes::from_static(b"bad"), None)
                    .await
                    .expect("store write");
                assert_eq!(thumbs.get(&key(0)).await, None, "refused: opens");
                clock.advance(Duration::from_secs(31));
                for _ in 0..3 {
                    assert_eq!(thumbs.get_many(&[key(1), key(2)]).await, [None, None]);
                }
                assert_eq!(
                    thumbs.stats().breaker_state,
                    scoped_cache::BreakerState::Closed,
                    "three clean probes close it"
                );
            })
        });
        use scoped_cache::BreakerState::{Closed, HalfOpen, Open};
        assert_eq!(*events.lock().expect("events"), [Open, HalfOpen, Closed]);
        assert_eq!(breaker_gauge(&metrics), 0.0, "closed is 0");
    }
}
