//! Caller deadlines and origin protection: a caller that stops waiting never cancels the load
//! others want, a full load queue fails fast, and a queued load nobody waits for any more never
//! reaches the origin.

mod support;

use bytes::Bytes;
use scoped_cache::{Cache, LoadError, StaleReason};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::fixture::{Fixture, TTL, Thumbs, key, truth};
use tokio::sync::Notify;

/// A loader of `key`'s own value that counts its calls and holds until `release` is notified.
fn held(
    calls: &Arc<AtomicUsize>,
    release: &Arc<Notify>,
    value: Bytes,
) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Result<Bytes, std::io::Error>> + Send>>
+ Send
+ 'static {
    let (calls, release) = (Arc::clone(calls), Arc::clone(release));
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            release.notified().await;
            Ok(value)
        })
    }
}

/// Key (1, 2, 3)'s held load, started in a task and given the time to take its place.
async fn running_load(
    cache: &Cache<Thumbs>,
    calls: &Arc<AtomicUsize>,
    release: &Arc<Notify>,
) -> tokio::task::JoinHandle<Result<scoped_cache::Fetched<Bytes>, LoadError>> {
    let running = tokio::spawn({
        let cache = cache.clone();
        let load = held(calls, release, truth(&key(1, 2, 3)));
        async move { cache.get_or_refresh(&key(1, 2, 3), load).await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    running
}

fn limited_cache(fixture: &Fixture, in_flight: usize, queued: usize) -> Cache<Thumbs> {
    fixture
        .client
        .cache::<Thumbs>()
        .ttl(TTL)
        .max_loads(in_flight, queued)
        .build()
        .expect("valid cache")
}

#[tokio::test(start_paused = true)]
async fn callers_past_their_deadline_leave_and_the_load_goes_on_for_the_next_caller() {
    let fixture = Fixture::new();
    let cache = fixture
        .client
        .cache::<Thumbs>()
        .ttl(TTL)
        .max_wait(Duration::from_millis(100))
        .build()
        .unwrap();
    let (calls, release) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
    let mine = key(1, 2, 3);
    // The leader and a waiter both give up at their deadline.
    let leader = cache.get_or_refresh(&mine, held(&calls, &release, truth(&mine)));
    let waiter = cache.get_or_refresh(&mine, held(&calls, &release, truth(&mine)));
    let (leader, waiter) = tokio::join!(leader, waiter);
    assert!(
        matches!(leader, Err(LoadError::DeadlineExceeded(_))),
        "{leader:?}"
    );
    assert!(
        matches!(waiter, Err(LoadError::DeadlineExceeded(_))),
        "{waiter:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one load for both");
    assert_eq!(cache.stats().deadline_exceeded, 2);
    // The next caller joins the load still running instead of starting another.
    let next = tokio::spawn({
        let (cache, mine) = (cache.clone(), mine.clone());
        let load = held(&calls, &release, Bytes::from_static(b"a second load"));
        async move {
            cache
                .get_or_refresh_within(&mine, Duration::from_secs(60), load)
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    release.notify_waiters();
    let next = next.await.unwrap().unwrap();
    assert_eq!(next.value, truth(&mine));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "never a load beside the first"
    );
    assert_eq!(
        cache.get(&mine).await,
        Some(truth(&mine)),
        "and it was stored"
    );
}

#[tokio::test(start_paused = true)]
async fn at_its_deadline_a_caller_with_a_stale_value_is_answered_with_it() {
    let fixture = Fixture::new();
    let cache = fixture
        .client
        .cache::<Thumbs>()
        .ttl(TTL)
        .stale_for(Duration::from_secs(60))
        .max_wait(Duration::from_millis(100))
        .build()
        .unwrap();
    let mine = key(1, 2, 3);
    cache.insert(&mine, truth(&mine)).await.unwrap();
    fixture.clock.advance(TTL * 2);
    let (calls, release) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
    let fetched = cache.get_or_refresh(&mine, held(&calls, &release, truth(&mine)));
    let fetched = fetched.await.unwrap();
    assert_eq!(fetched.value, truth(&mine));
    assert!(matches!(fetched.stale, Some(StaleReason::LoadSlow(_))));
    assert_eq!(cache.stats().deadline_exceeded, 0);
}

#[tokio::test(start_paused = true)]
async fn a_full_load_queue_fails_fast_without_calling_the_loader() {
    let fixture = Fixture::new();
    let cache = limited_cache(&fixture, 1, 0);
    let (calls, release) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
    let running = running_load(&cache, &calls, &release).await;
    let refused = cache
        .get_or_refresh(&key(4, 5, 6), held(&calls, &release, truth(&key(4, 5, 6))))
        .await;
    assert!(matches!(refused, Err(LoadError::Overloaded)), "{refused:?}");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the refused loader was not called"
    );
    assert_eq!(cache.stats().overloaded, 1);
    // `get_or_load` is protected the same way.
    let refused = cache
        .get_or_load(&key(4, 5, 6), || async {
            Ok::<_, std::io::Error>(Bytes::new())
        })
        .await;
    assert!(matches!(refused, Err(LoadError::Overloaded)), "{refused:?}");
    release.notify_waiters();
    assert_eq!(running.await.unwrap().unwrap().value, truth(&key(1, 2, 3)));
}

#[tokio::test(start_paused = true)]
async fn a_queued_load_nobody_waits_for_never_reaches_the_origin() {
    let fixture = Fixture::new();
    let cache = limited_cache(&fixture, 1, 8);
    let (calls, release) = (Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
    let running = running_load(&cache, &calls, &release).await;
    // Queued behind the running load; its caller gives up first.
    let queued = Arc::new(AtomicUsize::new(0));
    let impatient = cache
        .get_or_refresh_within(
            &key(4, 5, 6),
            Duration::from_millis(50),
            held(&queued, &release, truth(&key(4, 5, 6))),
        )
        .await;
    assert!(matches!(impatient, Err(LoadError::DeadlineExceeded(_))));
    tokio::time::sleep(Duration::from_millis(100)).await;
    release.notify_waiters();
    running.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        queued.load(Ordering::SeqCst),
        0,
        "the abandoned load reached the origin"
    );
    let stats = cache.stats();
    assert_eq!((stats.loads_abandoned, stats.loads), (1, 1), "{stats:?}");
}
