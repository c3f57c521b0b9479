//! Retry pacing shared by the sinks while a store is unreachable.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Exponential backoff, 100 ms doubling up to `max`, interrupted by cancellation.
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(max: Duration) -> Self {
        Self {
            next: Duration::from_millis(100),
            max,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.next = Duration::from_millis(100);
    }

    /// False when cancelled while waiting.
    pub(crate) async fn wait(&mut self, cancel: &CancellationToken) -> bool {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    /// `wait` for a blocking thread: sleeps in short steps, so a cancellation ends it
    /// within 50 ms. False when cancelled.
    pub(crate) fn wait_blocking(&mut self, cancel: &CancellationToken) -> bool {
        let until = std::time::Instant::now() + self.next;
        self.next = (self.next * 2).min(self.max);
        loop {
            if cancel.is_cancelled() {
                return false;
            }
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }
}
