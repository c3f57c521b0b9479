//! The consume loop of the lake sink: decode, buffer, flush by rows, bytes or time,
//! then commit. Nothing is committed that is not in a renamed, synced file.

use crate::backoff::Backoff;
use crate::dlq::DeadLetters;
use crate::error::{Error, Result};
use crate::lake::writer::{Added, LakeWriter};
use crate::metrics::SinkMetrics;
use labstream_bus::{BatchConsumer, Positions, Record};
use labstream_schemas::experiment::EnrichedSample;
use labstream_schemas::{Codec, Registry, Sample};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// `[sinks.lake]` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LakeSinkConfig {
    /// Run this sink inside `labstream serve`.
    pub enabled: bool,
    /// Kafka consumer group.
    pub group_id: String,
    /// Topic the lake is written from: `enriched` (samples with their recording, the
    /// usual) or `raw` (no recording columns; for deployments without enrichment).
    pub source: LakeSource,
    /// Flush once this many rows are buffered (over all open files).
    pub flush_rows: usize,
    /// Flush once the buffered samples take about this many bytes.
    pub flush_bytes: usize,
    /// Flush at least this often while data is buffered: the most a query lags ingest.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Longest pause between retries while the lake cannot be written.
    #[serde(with = "humantime_serde")]
    pub retry_backoff_max: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LakeSource {
    Enriched,
    Raw,
}

impl Default for LakeSinkConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            group_id: "labstream-sink-lake".into(),
            source: LakeSource::Enriched,
            flush_rows: 200_000,
            flush_bytes: 64 * 1024 * 1024,
            flush_interval: Duration::from_secs(5),
            retry_backoff_max: Duration::from_secs(30),
        }
    }
}

pub struct LakeSink {
    consumer: BatchConsumer,
    codec: Codec,
    dead_letters: DeadLetters,
    config: LakeSinkConfig,
    writer: Option<LakeWriter>,
    metrics: SinkMetrics,
}

impl LakeSink {
    pub fn new(
        consumer: BatchConsumer,
        lake_path: PathBuf,
        registry: Arc<Registry>,
        codec: Codec,
        dead_letters: DeadLetters,
        config: LakeSinkConfig,
        metrics: SinkMetrics,
    ) -> Result<Self> {
        let writer = LakeWriter::open(&lake_path, registry)?;
        Ok(Self {
            consumer,
            codec,
            dead_letters,
            config,
            writer: Some(writer),
            metrics,
        })
    }

    /// Runs until `cancel`; what is buffered then is flushed and committed first.
    pub async fn run(mut self, cancel: CancellationToken) -> Result<()> {
        tracing::info!(group = self.consumer.group_id(), "lake sink started");
        let mut positions = Positions::default();
        let mut last_flush = Instant::now();
        let mut backoff = Backoff::new(self.config.retry_backoff_max);
        let poll = self.config.flush_interval.min(Duration::from_millis(500));
        let mut lag_sampled = Instant::now();
        let mut generation = 0u64;
        // topic -> owned partitions; looked up per record without allocating.
        let mut owned: HashMap<String, HashSet<i32>> = HashMap::new();
        loop {
            if lag_sampled.elapsed() >= Duration::from_secs(10) {
                lag_sampled = Instant::now();
                if let Ok(lag) = self.consumer.lag(Duration::from_secs(5)).await {
                    self.metrics.lag.set(lag);
                }
            }
            let stopping = cancel.is_cancelled();
            if !stopping {
                match self.consumer.next_batch(10_000, poll, &cancel).await {
                    Ok(batch) => {
                        // Partitions moved (a member joined, left or died): drop what
                        // was buffered of every revoked partition (a partition assigned
                        // again is read anew from its committed offset) and re-read what
                        // other members may have written.
                        let now = self.consumer.assignment_generation();
                        if now != generation {
                            let revoked = self.consumer.revoked_since(generation);
                            generation = now;
                            owned.clear();
                            for (topic, partition) in self.consumer.assigned() {
                                owned.entry(topic).or_default().insert(partition);
                            }
                            let keep = |t: &str, p: i32| {
                                owns(&owned, t, p) && !revoked.contains(&(t.to_owned(), p))
                            };
                            self.writer_mut().retain_partitions(keep);
                            positions.retain(keep);
                            while let Err(e) = self.writer_mut().reload_high_water() {
                                tracing::warn!(error = %e, "lake sink: reading the lake failed; retrying");
                                if !backoff.wait(&cancel).await {
                                    return Ok(());
                                }
                            }
                        }
                        self.metrics.consumed.inc_by(batch.len() as u64);
                        let decoded = decode_batch(&self.codec, batch).await?;
                        for (record, decoded) in decoded {
                            let record = &record;
                            if !owns(&owned, &record.topic, record.partition) {
                                continue;
                            }
                            let outcome = match decoded {
                                Ok(sample) => self.writer_mut().add(record, sample),
                                Err(reason) => Added::Rejected(reason),
                            };
                            if outcome == Added::AlreadyInLake {
                                self.metrics.duplicates.inc();
                            }
                            if let Added::Rejected(reason) = outcome {
                                self.metrics.dead_letters.inc();
                                // Kept in the DLQ before its offset can be committed.
                                while let Err(e) = self.dead_letters.send(record, &reason).await {
                                    tracing::warn!(error = %e, "lake sink: dead-letter write failed; retrying");
                                    if !backoff.wait(&cancel).await {
                                        return Ok(());
                                    }
                                }
                            }
                            positions.advance(record);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "lake sink: consume failed; retrying");
                        backoff.wait(&cancel).await;
                        continue;
                    }
                }
            }
            let (flush_rows, flush_bytes) = (self.config.flush_rows, self.config.flush_bytes);
            let writer = self.writer_mut();
            let due = writer.buffered_rows() >= flush_rows
                || writer.buffered_bytes() >= flush_bytes
                || last_flush.elapsed() >= self.config.flush_interval
                || stopping;
            if due && !positions.is_empty() {
                loop {
                    match self.flush().await {
                        Ok(()) => break,
                        Err(e) if e.is_retryable() && !cancel.is_cancelled() => {
                            tracing::warn!(error = %e, "lake sink: flush failed; retrying");
                            backoff.wait(&cancel).await;
                        }
                        Err(e) => return Err(e),
                    }
                }
                backoff.reset();
                if let Err(e) = self.consumer.commit_positions(&positions).await {
                    tracing::warn!(error = %e, "lake sink: commit failed; the files already hold the records");
                }
                positions.clear();
                last_flush = Instant::now();
            } else if due {
                last_flush = Instant::now();
            }
            if stopping {
                break;
            }
        }
        tracing::info!("lake sink stopped");
        Ok(())
    }

    fn writer_mut(&mut self) -> &mut LakeWriter {
        self.writer
            .as_mut()
            .expect("writer is present between flushes")
    }

    async fn flush(&mut self) -> Result<()> {
        let mut writer = self
            .writer
            .take()
            .ok_or_else(|| Error::Internal("writer missing".into()))?;
        let rows = writer.buffered_rows();
        let started = std::time::Instant::now();
        let (writer, result) = tokio::task::spawn_blocking(move || {
            let r = writer.flush();
            (writer, r)
        })
        .await
        .map_err(|e| Error::Internal(format!("flush task failed: {e}")))?;
        self.writer = Some(writer);
        let files = result?;
        self.metrics.written.inc_by(rows as u64);
        self.metrics
            .write_seconds
            .observe(started.elapsed().as_secs_f64());
        if !files.is_empty() {
            tracing::debug!(files = files.len(), "lake sink wrote files");
        }
        Ok(())
    }
}

fn owns(owned: &HashMap<String, HashSet<i32>>, topic: &str, partition: i32) -> bool {
    owned.get(topic).is_some_and(|p| p.contains(&partition))
}

/// Below this many records a batch is decoded on the consume loop's thread alone.
const PARALLEL_DECODE_MIN: usize = 2_000;

/// Decodes every record of `batch`, in order: the second half on a blocking thread
/// while this one decodes the first, so decoding takes two cores when it has them.
async fn decode_batch(
    codec: &Codec,
    mut batch: Vec<Record>,
) -> Result<Vec<(Record, std::result::Result<EnrichedSample, String>)>> {
    fn decode_all(
        codec: &Codec,
        records: Vec<Record>,
    ) -> Vec<(Record, std::result::Result<EnrichedSample, String>)> {
        records
            .into_iter()
            .map(|r| {
                let d = match r.payload.as_deref() {
                    None => Err("the record has no value".to_owned()),
                    Some(b) => decode(codec, b),
                };
                (r, d)
            })
            .collect()
    }
    if batch.len() < PARALLEL_DECODE_MIN {
        return Ok(decode_all(codec, batch));
    }
    let tail = batch.split_off(batch.len() / 2);
    let tail_codec = codec.clone();
    let tail = tokio::task::spawn_blocking(move || decode_all(&tail_codec, tail));
    let mut decoded = decode_all(codec, batch);
    decoded.extend(
        tail.await
            .map_err(|e| Error::Internal(format!("decode task failed: {e}")))?,
    );
    Ok(decoded)
}

/// Enriched samples (the lake's usual source), or raw ones (no recording context) when
/// the lake reads `samples.raw`.
fn decode(codec: &Codec, bytes: &[u8]) -> std::result::Result<EnrichedSample, String> {
    let result = match codec.record_name(bytes) {
        Ok(<Sample as labstream_schemas::AvroRecord>::NAME) => {
            codec.decode::<Sample>(bytes).map(|sample| EnrichedSample {
                sample,
                context: None,
            })
        }
        _ => codec.decode::<EnrichedSample>(bytes),
    };
    result.map_err(|e| e.to_string())
}
