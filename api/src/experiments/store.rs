//! The experiment store behind the HTTP commands: a projection of `experiments.events`
//! (read committed, to the end, before every decision) and the one writer of the site.
//! Writes are Kafka transactions under a `transactional.id` per site, so when two API
//! instances write, the newer fences the older; a fenced writer re-registers, reads the
//! log to the end again and decides again, so no decision rests on stale state.

use labstream_bus::{Append, Decision, Fold, KafkaConfig, LogStore, Record};
use labstream_schemas::Codec;
use labstream_schemas::Timestamp;
use labstream_schemas::experiment::{
    Command, CommandContext, ExperimentEvent, Rejection, SiteState, decide,
};
use std::collections::HashMap;
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

/// The projection of one site's events in the log.
struct SiteLog {
    site_id: String,
    codec: Codec,
    projection: Projection,
}

impl Fold for SiteLog {
    fn apply(&mut self, record: &Record) {
        let Some(payload) = record.payload.as_deref() else {
            return;
        };
        let event: ExperimentEvent = match self.codec.decode(payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(offset = record.offset, error = %e, "undecodable record in the experiment log, skipped");
                return;
            }
        };
        if event.site_id != self.site_id {
            return;
        }
        self.projection.site.apply(&event);
        self.projection
            .history
            .entry(event.aggregate_id.clone())
            .or_default()
            .push(event);
    }
}

#[derive(Clone)]
pub struct ExperimentStore {
    log: LogStore<SiteLog>,
    config: StoreConfig,
    codec: Codec,
}

fn unavailable(e: labstream_bus::StoreError<StoreError>) -> StoreError {
    e.or_unavailable(StoreError::Unavailable)
}

impl ExperimentStore {
    /// Reads the whole log (the topic must exist) and returns the store.
    pub async fn open(kafka: &KafkaConfig, config: StoreConfig) -> Result<Self, StoreError> {
        let codec = Codec::new();
        let log = LogStore::open(
            kafka,
            &config.topic,
            format!(
                "{}labstream-experiments-{}",
                kafka.topic_prefix, config.site_id
            ),
            SiteLog {
                site_id: config.site_id.clone(),
                codec: codec.clone(),
                projection: Projection::default(),
            },
        )
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Self { log, config, codec })
    }

    pub fn site_id(&self) -> &str {
        &self.config.site_id
    }

    /// Reads what other writers appended since the last read.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        self.log
            .refresh()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Refreshes every `every` until `cancel` (picks up what other API instances wrote;
    /// this instance's own writes are read at once).
    pub async fn refresh_every(
        &self,
        every: Duration,
        cancel: tokio_util::sync::CancellationToken,
    ) {
        self.log.refresh_every(every, cancel).await;
    }

    /// Runs `f` on the current projection.
    pub fn read<T>(&self, f: impl FnOnce(&Projection) -> T) -> T {
        self.log.read(|log| f(&log.projection))
    }

    /// Decides `command` against the current state and appends its event; answers once
    /// the event is committed and folded into the projection.
    pub async fn execute(
        &self,
        command: Command,
        actor: &str,
        expected_version: Option<i64>,
    ) -> Result<ExperimentEvent, StoreError> {
        self.log
            .execute(|log: &SiteLog| {
                let ctx = CommandContext {
                    site_id: self.config.site_id.clone(),
                    actor: actor.to_owned(),
                    now: Timestamp::now(),
                    event_id: uuid::Uuid::new_v4().to_string(),
                    expected_version,
                    max_backdate: self.config.max_backdate,
                };
                let event = decide(&log.projection.site, command.clone(), &ctx)?;
                let bytes = self
                    .codec
                    .encode(&event)
                    .map_err(|e| StoreError::Unavailable(format!("encoding the event: {e}")))?;
                let (aggregate, id) = (event.aggregate_id.clone(), event.event_id.clone());
                Ok(Decision::append(
                    vec![Append::record(self.config.site_id.clone(), bytes)],
                    event,
                    move |log: &SiteLog| {
                        log.projection
                            .history
                            .get(&aggregate)
                            .is_some_and(|h| h.iter().rev().any(|e| e.event_id == id))
                    },
                ))
            })
            .await
            .map_err(unavailable)
    }
}
