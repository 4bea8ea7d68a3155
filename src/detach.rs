//! A future that its caller drives, and that finishes as a task of its own if the caller stops
//! waiting: a load runs on the caller's thread as `get_or_load`'s does (no hop through a busy
//! scheduler's queue), yet a caller that is answered early or cancelled never cancels it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

/// Polled in place; dropped unfinished, the rest of it is spawned on the current Tokio runtime.
pub(crate) struct Detachable<T: Send + 'static> {
    future: Option<Pin<Box<dyn Future<Output = T> + Send>>>,
    attached: Attached,
}

/// Whether a [`Detachable`]'s caller still waits for it: what the future can ask.
#[derive(Debug, Clone)]
pub(crate) struct Attached(Arc<AtomicBool>);

impl Attached {
    pub(crate) fn new() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }

    pub(crate) fn is_attached(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl<T: Send + 'static> Detachable<T> {
    /// `future`, which learns from `attached` whether its caller still waits.
    pub(crate) fn new(
        attached: Attached,
        future: impl Future<Output = T> + Send + 'static,
    ) -> Self {
        Self {
            future: Some(Box::pin(future)),
            attached,
        }
    }
}

impl<T: Send + 'static> Future for Detachable<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let Some(future) = self.future.as_mut() else {
            unreachable!("a Detachable is awaited once, never polled after it finished");
        };
        let output = std::task::ready!(future.as_mut().poll(cx));
        self.future = None;
        Poll::Ready(output)
    }
}

impl<T: Send + 'static> Drop for Detachable<T> {
    fn drop(&mut self) {
        self.attached.0.store(false, Ordering::Release);
        // Outside a runtime (it is being shut down) the future is dropped: a load then hands
        // its flight over, as a cancelled one does.
        if let (Some(future), Ok(runtime)) =
            (self.future.take(), tokio::runtime::Handle::try_current())
        {
            runtime.spawn(future);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn it_finishes_in_place_or_as_a_task_once_dropped() {
        let value = Detachable::new(Attached::new(), async { 7 }).await;
        assert_eq!(value, 7);

        let (finished, release) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(tokio::sync::Notify::new()),
        );
        let attached = Attached::new();
        let held = Detachable::new(attached.clone(), {
            let (finished, release) = (Arc::clone(&finished), Arc::clone(&release));
            async move {
                release.notified().await;
                finished.store(true, Ordering::SeqCst);
            }
        });
        let gave_up = tokio::time::timeout(Duration::from_millis(10), held).await;
        assert!(gave_up.is_err());
        assert!(!attached.is_attached(), "detached when dropped");
        release.notify_one();
        for _ in 0..1_000 {
            if finished.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(
            finished.load(Ordering::SeqCst),
            "the dropped future was not finished"
        );
    }
}
