//! The alert feed behind the SSE and WebSocket streams: ONE Kafka consumer per API
//! process reads every `alerts.<name>` topic (read_committed, so only transitions the
//! processor committed), starting `window` ago, and keeps the events of that window
//! in memory. A subscriber gets the buffered events after its `Last-Event-ID` (or of
//! the last minutes it asked for) and then every new one, with no gap and no repeat:
//! the backlog and the live subscription are taken under the same lock the feed holds
//! to append.

use labstream_bus::{KafkaConfig, Tail, TopicWatch};
use labstream_schemas::{AlertEvent, Codec, Timestamp};
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How often the feed looks for new `alerts.<name>` topics.
const TOPIC_REFRESH: Duration = Duration::from_secs(1);

/// `[alerts]` settings of the feed.
#[derive(Clone, Debug)]
pub struct FeedConfig {
    /// The topic prefix (`alerts.<name>` topics are `<prefix>alerts.<name>`).
    pub topic_prefix: String,
    /// How far back the feed reads at start, and how long it keeps events for
    /// resuming subscribers.
    pub window: Duration,
    /// Most events kept in memory.
    pub max_events: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("alert feed: {0}")]
pub struct FeedError(String);

/// One alert as subscribers get it: the event and its JSON.
#[derive(Debug)]
pub struct FeedItem {
    pub event: AlertEvent,
    pub json: String,
}

#[derive(Clone)]
pub struct AlertFeed {
    inner: Arc<Inner>,
}

struct Inner {
    config: FeedConfig,
    buffer: Mutex<VecDeque<Arc<FeedItem>>>,
    live: broadcast::Sender<Arc<FeedItem>>,
}

/// Where a subscriber starts.
#[derive(Clone, Debug, PartialEq)]
pub enum Start {
    /// Only events that arrive from now on.
    Now,
    /// The buffered events emitted in the last `Duration`, then new ones.
    Since(Duration),
    /// The buffered events after this event id (all buffered ones when it is not
    /// buffered any more), then new ones.
    After(String),
}

/// A subscription: the backlog to send first, then `live`.
pub struct Subscription {
    pub backlog: Vec<Arc<FeedItem>>,
    /// `Start::After` named an event the feed no longer holds: some events may be lost.
    pub resumed_from_unknown: bool,
    pub live: broadcast::Receiver<Arc<FeedItem>>,
}

impl AlertFeed {
    pub fn new(config: FeedConfig) -> Self {
        let (live, _) = broadcast::channel(4096);
        Self {
            inner: Arc::new(Inner {
                config,
                buffer: Mutex::new(VecDeque::new()),
                live,
            }),
        }
    }

    pub fn subscribe(&self, start: &Start) -> Subscription {
        let buffer = self.inner.buffer.lock().expect("not poisoned");
        let live = self.inner.live.subscribe();
        let (backlog, resumed_from_unknown) = match start {
            Start::Now => (Vec::new(), false),
            Start::Since(d) => {
                let from = Timestamp::now().as_micros() - micros(*d);
                (
                    buffer
                        .iter()
                        .filter(|i| i.event.emitted_at.as_micros() >= from)
                        .cloned()
                        .collect(),
                    false,
                )
            }
            Start::After(id) => match buffer.iter().position(|i| i.event.event_id == *id) {
                Some(at) => (buffer.iter().skip(at + 1).cloned().collect(), false),
                None => (buffer.iter().cloned().collect(), true),
            },
        };
        Subscription {
            backlog,
            resumed_from_unknown,
            live,
        }
    }

    fn push(&self, item: FeedItem) {
        let item = Arc::new(item);
        let mut buffer = self.inner.buffer.lock().expect("not poisoned");
        let oldest = Timestamp::now().as_micros() - micros(self.inner.config.window);
        while buffer.len() >= self.inner.config.max_events.max(1)
            || buffer
                .front()
                .is_some_and(|f| f.event.emitted_at.as_micros() < oldest)
        {
            buffer.pop_front();
        }
        buffer.push_back(item.clone());
        // No receiver is fine: nobody is subscribed.
        let _ = self.inner.live.send(item);
    }

    /// Reads the alert topics until `cancel`, following topics as rules create them.
    pub async fn run(self, kafka: KafkaConfig, cancel: CancellationToken) -> Result<(), FeedError> {
        let tail = Tail::new(&kafka, "alert-feed")
            .map_err(|e| FeedError(format!("creating the consumer: {e}")))?;
        let topics = TopicWatch::alert_topics(&kafka, cancel.clone())
            .map_err(|e| FeedError(format!("creating the metadata client: {e}")))?;
        let codec = Codec::new();
        let mut assigned: BTreeSet<String> = BTreeSet::new();
        let mut look = tokio::time::interval(TOPIC_REFRESH);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = look.tick() => {
                    let added: Vec<String> = topics.current().difference(&assigned).cloned().collect();
                    if added.is_empty() {
                        continue;
                    }
                    let from_ms = (Timestamp::now().as_micros() - micros(self.inner.config.window)) / 1000;
                    match tail.add_from_time(&added, from_ms).await {
                        Ok(()) => {
                            for topic in added {
                                tracing::info!(topic, "alert feed: following");
                                assigned.insert(topic);
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "alert feed: following new alert topics failed; retrying"),
                    }
                }
                received = tail.recv() => match received {
                    Ok(record) => {
                        let Some(bytes) = record.payload.as_deref() else { continue };
                        match codec.decode::<AlertEvent>(bytes) {
                            Ok(event) => {
                                let json = serde_json::to_string(&event).unwrap_or_default();
                                self.push(FeedItem { event, json });
                            }
                            Err(e) => tracing::warn!(topic = %record.topic, offset = record.offset, error = %e, "alert feed: undecodable event skipped"),
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "alert feed: consume failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
