use crate::backoff::Backoff;
use crate::dlq::DeadLetters;
use crate::error::{Error, Result};
use crate::metrics::SinkMetrics;
use crate::mongo::document::to_document;
use labstream_bus::{BatchConsumer, Positions, Record};
use labstream_schemas::{Codec, Sample};
use mongodb::bson::{Document, doc};
use mongodb::error::ErrorKind;
use mongodb::options::IndexOptions;
use mongodb::{Database, IndexModel};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
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
    codec: Codec,
    dead_letters: DeadLetters,
    config: MongoSinkConfig,
    writer: Option<Writer>,
    metrics: SinkMetrics,
}

/// A consumed batch, decoded and grouped per collection, with the offsets its write
/// allows to commit.
struct Prepared {
    by_collection: BTreeMap<String, Vec<Document>>,
    positions: Positions,
    records: usize,
}

/// An insert running in its own task while the sink reads and decodes the next batch.
struct InFlight {
    task: JoinHandle<(Writer, Result<Option<Written>>)>,
    positions: Positions,
    records: usize,
    started: Instant,
}

struct Written {
    inserted: usize,
    duplicates: usize,
}

/// The part of the sink that talks to MongoDB. It moves into the insert task and comes
/// back with the outcome, so one batch at most is being written at any time.
struct Writer {
    db: Database,
    indexed: HashSet<String>,
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
            codec,
            dead_letters,
            config,
            writer: Some(Writer {
                db,
                indexed: HashSet::new(),
            }),
            metrics,
        }
    }

    /// Runs until `cancel`; a batch being written is finished and committed first.
    ///
    /// Pipelined: while batch N is being inserted, batch N+1 is consumed and decoded, so
    /// MongoDB never waits for the sink. Batch N's offsets are committed once its insert
    /// succeeded and before batch N+1's insert starts, so commits stay in order and never
    /// cover an unwritten record. Re-reading (after a crash or a rebalance) only meets the
    /// unique index, so overlapping reads with writes cannot duplicate anything.
    pub async fn run(mut self, cancel: CancellationToken) -> Result<()> {
        tracing::info!(group = self.consumer.group_id(), "mongo sink started");
        let mut backoff = Backoff::new(self.config.retry_backoff_max);
        let mut lag_sampled = Instant::now();
        let mut in_flight: Option<InFlight> = None;
        loop {
            if lag_sampled.elapsed() >= LAG_EVERY {
                lag_sampled = Instant::now();
                if let Ok(lag) = self.consumer.lag(Duration::from_secs(5)).await {
                    self.metrics.lag.set(lag);
                }
            }
            let stopping = cancel.is_cancelled();
            let batch = if stopping {
                Vec::new()
            } else {
                match self
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
                        Vec::new()
                    }
                }
            };
            let prepared = if batch.is_empty() {
                None
            } else {
                self.metrics.consumed.inc_by(batch.len() as u64);
                match self.prepare(&batch, &cancel).await {
                    Some(p) => Some(p),
                    // Stopped while the dead-letter queue was unreachable: this batch is
                    // not committed and will be re-read; the one in flight still is.
                    None => {
                        if let Some(f) = in_flight.take() {
                            self.finish(f).await?;
                        }
                        tracing::info!(
                            "mongo sink stopping with an unwritten batch; it will be re-read"
                        );
                        return Ok(());
                    }
                }
            };
            if let Some(f) = in_flight.take()
                && !self.finish(f).await?
            {
                tracing::info!("mongo sink stopping with an unwritten batch; it will be re-read");
                return Ok(());
            }
            match prepared {
                Some(p) => in_flight = Some(self.start_write(p, &cancel)?),
                None if stopping => break,
                None => {}
            }
        }
        tracing::info!("mongo sink stopped");
        Ok(())
    }

    /// Decodes `batch` into documents per collection; undecodable records go to the
    /// dead-letter queue (retried while it is unreachable). `None` when cancelled then.
    async fn prepare(&self, batch: &[Record], cancel: &CancellationToken) -> Option<Prepared> {
        let mut by_collection: BTreeMap<String, Vec<Document>> = BTreeMap::new();
        let mut positions = Positions::default();
        let mut backoff = Backoff::new(self.config.retry_backoff_max);
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
                    // Kept in the DLQ before its offset can be committed.
                    while let Err(e) = self.dead_letters.send(record, &reason).await {
                        tracing::warn!(error = %e, "mongo sink: dead-letter write failed; retrying");
                        if !backoff.wait(cancel).await {
                            return None;
                        }
                    }
                    self.metrics.dead_letters.inc();
                }
            }
            positions.advance(record);
        }
        Some(Prepared {
            by_collection,
            positions,
            records: batch.len(),
        })
    }

    /// Starts inserting `prepared` in a task of its own.
    fn start_write(&mut self, prepared: Prepared, cancel: &CancellationToken) -> Result<InFlight> {
        let mut writer = self
            .writer
            .take()
            .ok_or_else(|| Error::Internal("mongo writer missing".into()))?;
        let cancel = cancel.clone();
        let backoff_max = self.config.retry_backoff_max;
        let Prepared {
            by_collection,
            positions,
            records,
        } = prepared;
        let task = tokio::spawn(async move {
            let r = writer
                .write_until_done(&by_collection, records, backoff_max, &cancel)
                .await;
            // The documents are freed here, off the consume loop.
            drop(by_collection);
            (writer, r)
        });
        Ok(InFlight {
            task,
            positions,
            records,
            started: Instant::now(),
        })
    }

    /// Waits for the write in flight and commits its offsets. False when the sink was
    /// stopped before the write succeeded (nothing committed: it will be re-read).
    async fn finish(&mut self, f: InFlight) -> Result<bool> {
        let (writer, result) = f
            .task
            .await
            .map_err(|e| Error::Internal(format!("mongo insert task failed: {e}")))?;
        self.writer = Some(writer);
        let Some(written) = result? else {
            return Ok(false);
        };
        self.metrics.written.inc_by(written.inserted as u64);
        self.metrics.duplicates.inc_by(written.duplicates as u64);
        self.metrics
            .write_seconds
            .observe(f.started.elapsed().as_secs_f64());
        tracing::debug!(
            records = f.records,
            inserted = written.inserted,
            duplicates = written.duplicates,
            "mongo sink wrote a batch"
        );
        labstream_schemas::crash_point("mongo.written_before_commit");
        if let Err(e) = self.consumer.commit_positions(&f.positions).await {
            // Harmless for correctness: the batch is re-read and deduplicated.
            tracing::warn!(error = %e, "mongo sink: commit failed");
        }
        Ok(true)
    }
}

impl Writer {
    /// Inserts every document, retrying with backoff while MongoDB fails retryably.
    /// `None` when cancelled before it succeeded.
    async fn write_until_done(
        &mut self,
        by_collection: &BTreeMap<String, Vec<Document>>,
        records: usize,
        backoff_max: Duration,
        cancel: &CancellationToken,
    ) -> Result<Option<Written>> {
        let mut backoff = Backoff::new(backoff_max);
        loop {
            match self.write(by_collection).await {
                Ok(w) => return Ok(Some(w)),
                Err(e) if e.kind().is_retryable() => {
                    tracing::warn!(error = %e, records, "mongo sink: write failed; retrying the batch");
                    if !backoff.wait(cancel).await {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn write(&mut self, by_collection: &BTreeMap<String, Vec<Document>>) -> Result<Written> {
        labstream_schemas::crash_point("mongo.before_write");
        let mut inserted = 0usize;
        let mut duplicates = 0usize;
        for (collection, docs) in by_collection {
            self.ensure_index(collection).await?;
            let total = docs.len();
            let coll = self.db.collection::<Document>(collection);
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
        Ok(Written {
            inserted,
            duplicates,
        })
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
