//! The experiment store behind the HTTP commands: a projection of `experiments.events`
//! (read committed, to the end, before every decision) and the one writer of the site.
//! Writes are Kafka transactions under a `transactional.id` per site, so when two API
//! instances write, the newer fences the older; a fenced writer re-registers, reads the
//! log to the end again and decides again, so no decision rests on stale state.

use labstream_bus::{KafkaConfig, LogReader, TransactionalProducer};
use labstream_schemas::Codec;
use labstream_schemas::Timestamp;
use labstream_schemas::experiment::{
    Command, CommandContext, ExperimentEvent, Rejection, SiteState, decide,
};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// `[experiments]` settings the store needs.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub site_id: String,
    pub topic: String,
    /// How far in the past recordings may start or stop (the enrichment lateness).
    pub max_backdate: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("the event log (Kafka) is unavailable: {0}; retry in a moment")]
    Unavailable(String),
}

/// What the API serves: the folded state and each aggregate's events.
#[derive(Debug, Default)]
pub struct Projection {
    pub site: SiteState,
    pub history: HashMap<String, Vec<ExperimentEvent>>,
}

struct Writer {
    reader: LogReader,
    producer: Option<TransactionalProducer>,
}

#[derive(Clone)]
pub struct ExperimentStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: StoreConfig,
    kafka: KafkaConfig,
    codec: Codec,
    projection: RwLock<Projection>,
    writer: tokio::sync::Mutex<Writer>,
}

const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a writer looks again for the event it has just committed.
const READ_BACK_CHECK: Duration = Duration::from_millis(2);

impl ExperimentStore {
    /// Reads the whole log (the topic must exist) and returns the store.
    pub async fn open(kafka: &KafkaConfig, config: StoreConfig) -> Result<Self, StoreError> {
        let reader = LogReader::new(kafka, &config.topic)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let store = Self {
            inner: Arc::new(Inner {
                config,
                kafka: kafka.clone(),
                codec: Codec::new(),
                projection: RwLock::new(Projection::default()),
                writer: tokio::sync::Mutex::new(Writer {
                    reader,
                    producer: None,
                }),
            }),
        };
        store.refresh().await?;
        Ok(store)
    }

    pub fn site_id(&self) -> &str {
        &self.inner.config.site_id
    }

    /// Reads what other writers appended since the last read.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let writer = self.inner.writer.lock().await;
        self.catch_up(&writer).await
    }

    /// Runs `f` on the current projection.
    pub fn read<T>(&self, f: impl FnOnce(&Projection) -> T) -> T {
        f(&self.inner.projection.read().expect("not poisoned"))
    }

    async fn catch_up(&self, writer: &Writer) -> Result<(), StoreError> {
        let records = writer
            .reader
            .read_to_end(READ_TIMEOUT)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        if records.is_empty() {
            return Ok(());
        }
        let mut projection = self.inner.projection.write().expect("not poisoned");
        for record in records {
            let Some(payload) = record.payload.as_deref() else {
                continue;
            };
            let event: ExperimentEvent = match self.inner.codec.decode(payload) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(offset = record.offset, error = %e, "undecodable record in the experiment log, skipped");
                    continue;
                }
            };
            if event.site_id != self.inner.config.site_id {
                continue;
            }
            projection.site.apply(&event);
            projection
                .history
                .entry(event.aggregate_id.clone())
                .or_default()
                .push(event);
        }
        Ok(())
    }

    /// Reads the log until `event` (just committed by this writer) is folded into the
    /// projection. The brokers write a transaction's commit markers after the commit
    /// has returned to the producer, so a read committed read that starts at once may
    /// still end before the event; an answer built from that projection would not show
    /// the change it reports (a new recording answered with 404).
    async fn read_back(&self, writer: &Writer, event: &ExperimentEvent) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
        loop {
            self.catch_up(writer).await?;
            let folded = self.read(|p| {
                p.history
                    .get(&event.aggregate_id)
                    .is_some_and(|h| h.iter().rev().any(|e| e.event_id == event.event_id))
            });
            if folded {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::Unavailable(format!(
                    "event {} is committed but could not be read back within {} s; read the {} again in a moment",
                    event.event_id,
                    READ_TIMEOUT.as_secs(),
                    event.aggregate_id
                )));
            }
            tokio::time::sleep(READ_BACK_CHECK).await;
        }
    }

    /// Decides `command` against the current state and appends its event; answers once
    /// the event is committed and folded into the projection.
    pub async fn execute(
        &self,
        command: Command,
        actor: &str,
        expected_version: Option<i64>,
    ) -> Result<ExperimentEvent, StoreError> {
        let mut writer = self.inner.writer.lock().await;
        let mut attempts = 0;
        loop {
            attempts += 1;
            if writer.producer.is_none() {
                let kafka = self.inner.kafka.clone();
                let id = format!(
                    "{}labstream-experiments-{}",
                    kafka.topic_prefix, self.inner.config.site_id
                );
                let producer =
                    tokio::task::spawn_blocking(move || TransactionalProducer::new(&kafka, &id))
                        .await
                        .map_err(|e| StoreError::Unavailable(e.to_string()))?
                        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                writer.producer = Some(producer);
            }
            // Everything committed before this point (by any instance) is now folded.
            self.catch_up(&writer).await?;
            let ctx = CommandContext {
                site_id: self.inner.config.site_id.clone(),
                actor: actor.to_owned(),
                now: Timestamp::now(),
                event_id: uuid::Uuid::new_v4().to_string(),
                expected_version,
                max_backdate: self.inner.config.max_backdate,
            };
            let event = {
                let projection = self.inner.projection.read().expect("not poisoned");
                decide(&projection.site, command.clone(), &ctx)?
            };
            let bytes = self
                .inner
                .codec
                .encode(&event)
                .map_err(|e| StoreError::Unavailable(format!("encoding the event: {e}")))?;
            let producer = writer.producer.clone().expect("created above");
            let topic = self.inner.config.topic.clone();
            let key = self.inner.config.site_id.clone();
            let committed = tokio::task::spawn_blocking(move || {
                producer.transact(|p| {
                    p.send(&topic, key.as_bytes(), &bytes)?;
                    p.commit_without_offsets()
                })
            })
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            match committed {
                Ok(()) => {
                    self.read_back(&writer, &event).await?;
                    return Ok(event);
                }
                Err(labstream_bus::Error::Fenced(e)) if attempts < 3 => {
                    // Another instance wrote in the meantime: re-register and decide again
                    // on the state that includes its events.
                    tracing::info!(error = %e, "experiment writer fenced by another instance; retrying");
                    writer.producer = None;
                }
                Err(e) => {
                    writer.producer = None;
                    return Err(StoreError::Unavailable(e.to_string()));
                }
            }
        }
    }
}
