use crate::backoff::Backoff;
use crate::dlq::DeadLetters;
use crate::error::Result;
use crate::metrics::SinkMetrics;
use crate::mongo::document::to_document;
use labstream_bus::{BatchConsumer, Record};
use labstream_schemas::{Codec, Sample};
use mongodb::bson::{Document, doc};
use mongodb::error::ErrorKind;
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const DUPLICATE_KEY: i32 = 11000;
/// How often the consumer lag gauge is refreshed.
const LAG_EVERY: Duration = Duration::from_secs(10);

/// `[sinks.mongo]` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MongoSinkConfig {
    /// Run this sink inside `labstream serve`.
    pub enabled: bool,
    /// Kafka consumer group; members share the partitions of `samples.raw`.
    pub group_id: String,
    /// Most records written in one bulk insert.
    pub batch_max_records: usize,
    /// Longest wait to fill a batch.
    #[serde(with = "humantime_serde")]
    pub batch_max_wait: Duration,
    /// Longest pause between retries while MongoDB is unreachable.
    #[serde(with = "humantime_serde")]
    pub retry_backoff_max: Duration,
}

impl Default for MongoSinkConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            group_id: "labstream-sink-mongo".into(),
            batch_max_records: 5000,
            batch_max_wait: Duration::from_millis(250),
            retry_backoff_max: Duration::from_secs(30),
        }
    }
}

pub struct MongoSink {
    consumer: BatchConsumer,
    db: Database,
    codec: Codec,
    dead_letters: DeadLetters,
    config: MongoSinkConfig,
    indexed: HashSet<String>,
    metrics: SinkMetrics,
}

impl MongoSink {
    pub fn new(
        consumer: BatchConsumer,
        db: Database,
        codec: Codec,
        dead_letters: DeadLetters,
        config: MongoSinkConfig,
        metrics: SinkMetrics,
    ) -> Self {
        Self {
            consumer,
            db,
            codec,
            dead_letters,
            config,
            indexed: HashSet::new(),
            metrics,
        }
    }

    /// Runs until `cancel`; a batch being written is finished and committed first.
    pub async fn run(mut self, cancel: CancellationToken) -> Result<()> {
        tracing::info!(group = self.consumer.group_id(), "mongo sink started");
        let mut backoff = Backoff::new(self.config.retry_backoff_max);
        let mut lag_sampled = Instant::now();
        while !cancel.is_cancelled() {
            if lag_sampled.elapsed() >= LAG_EVERY {
                lag_sampled = Instant::now();
                if let Ok(lag) = self.consumer.lag(Duration::from_secs(5)).await {
                    self.metrics.lag.set(lag);
                }
            }
            let batch = match self
                .consumer
                .next_batch(
                    self.config.batch_max_records,
                    self.config.batch_max_wait,
                    &cancel,
                )
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "mongo sink: consume failed; retrying");
                    backoff.wait(&cancel).await;
                    continue;
                }
            };
            if batch.is_empty() {
                continue;
            }
            self.metrics.consumed.inc_by(batch.len() as u64);
            let started = Instant::now();
            // The batch is retried until written: its offsets are not committed before.
            loop {
                match self.write(&batch).await {
                    Ok(()) => break,
                    Err(e) if e.is_retryable() => {
                        tracing::warn!(error = %e, records = batch.len(), "mongo sink: write failed; retrying the batch");
                        if !backoff.wait(&cancel).await {
                            tracing::info!(
                                "mongo sink stopping with an unwritten batch; it will be re-read"
                            );
                            return Ok(());
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            backoff.reset();
            self.metrics
                .write_seconds
                .observe(started.elapsed().as_secs_f64());
            if let Err(e) = self.consumer.commit(&batch).await {
                // Harmless for correctness: the batch is re-read and deduplicated.
                tracing::warn!(error = %e, "mongo sink: commit failed");
            }
        }
        tracing::info!("mongo sink stopped");
        Ok(())
    }

    async fn write(&mut self, batch: &[Record]) -> Result<()> {
        let mut by_collection: BTreeMap<String, Vec<Document>> = BTreeMap::new();
        for record in batch {
            let decoded = match record.payload.as_deref() {
                None => Err("the record has no value".to_owned()),
                Some(bytes) => self
                    .codec
                    .decode::<Sample>(bytes)
                    .map_err(|e| e.to_string()),
            };
            match decoded {
                Ok(sample) => by_collection
                    .entry(format!("samples_{}", sample.sensor_type))
                    .or_default()
                    .push(to_document(&sample)),
                Err(reason) => {
                    self.dead_letters.send(record, &reason).await?;
                    self.metrics.dead_letters.inc();
                }
            }
        }
        let mut inserted = 0usize;
        let mut duplicates = 0usize;
        for (collection, docs) in by_collection {
            self.ensure_index(&collection).await?;
            let total = docs.len();
            let coll = self.db.collection::<Document>(&collection);
            match coll.insert_many(docs).ordered(false).await {
                Ok(r) => inserted += r.inserted_ids.len(),
                Err(e) => {
                    let Some(dups) = duplicate_only(&e) else {
                        return Err(e.into());
                    };
                    duplicates += dups;
                    inserted += total - dups;
                }
            }
        }
        self.metrics.written.inc_by(inserted as u64);
        self.metrics.duplicates.inc_by(duplicates as u64);
        tracing::debug!(inserted, duplicates, "mongo sink wrote a batch");
        Ok(())
    }

    async fn ensure_index(&mut self, collection: &str) -> Result<()> {
        if self.indexed.contains(collection) {
            return Ok(());
        }
        let index = IndexModel::builder()
            .keys(doc! { "sensor_id": 1, "ts_us": 1, "seq": 1 })
            .options(
                IndexOptions::builder()
                    .unique(true)
                    .name("dedupe_key".to_owned())
                    .build(),
            )
            .build();
        self.db
            .collection::<Document>(collection)
            .create_index(index)
            .await?;
        self.indexed.insert(collection.to_owned());
        Ok(())
    }
}

/// `Some(n)` when every error of an unordered insert is a duplicate key (n of them).
fn duplicate_only(e: &mongodb::error::Error) -> Option<usize> {
    match e.kind.as_ref() {
        ErrorKind::InsertMany(m) if m.write_concern_error.is_none() => {
            let errors = m.write_errors.as_ref()?;
            errors
                .iter()
                .all(|w| w.code == DUPLICATE_KEY)
                .then_some(errors.len())
        }
        _ => None,
    }
}
