//! The consume loop of the lake sink: decode, buffer, flush by rows, bytes or time,
//! then commit. Nothing is committed that is not in a renamed, synced file.

use crate::backoff::Backoff;
use crate::dlq::DeadLetters;
use crate::error::{Error, Result};
use crate::lake::writer::{Added, LakeWriter, PendingFlush};
use crate::metrics::SinkMetrics;
use labstream_bus::{BatchConsumer, Positions, WriteInProgress};
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
    ///
    /// A flush writes its files on another thread while consuming goes on; at most one
    /// is in flight, and its offsets are committed once its files are in place. A
    /// revocation waits for it (`BatchConsumer::write_in_progress`), so a partition's
    /// next owner finds its files and does not write their records again.
    pub async fn run(mut self, cancel: CancellationToken) -> Result<()> {
        tracing::info!(group = self.consumer.group_id(), "lake sink started");
        let mut positions = Positions::default();
        let mut last_flush = Instant::now();
        let mut backoff = Backoff::new(self.config.retry_backoff_max);
        let poll = self.config.flush_interval.min(Duration::from_millis(500));
        let mut lag_sampled = Instant::now();
        let mut generation = 0u64;
        let mut in_flight: Option<InFlight> = None;
        // topic -> owned partitions; looked up per record without allocating.
        let mut owned: HashMap<String, HashSet<i32>> = HashMap::new();
        loop {
            if lag_sampled.elapsed() >= Duration::from_secs(10) {
                lag_sampled = Instant::now();
                if let Ok(lag) = self.consumer.lag(Duration::from_secs(5)).await {
                    self.metrics.lag.set(lag);
                }
            }
            if in_flight.as_ref().is_some_and(InFlight::is_finished) {
                let done = in_flight.take().expect("checked");
                self.finish_flush(done, &owned, &mut backoff, &cancel)
                    .await?;
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
                            // The revocation waited for a flush in flight: its files are
                            // in place; its offsets are committed only for what is kept.
                            if let Some(done) = in_flight.take() {
                                self.finish_flush(done, &owned, &mut backoff, &cancel)
                                    .await?;
                            }
                            while let Err(e) = self.writer_mut().reload_high_water() {
                                tracing::warn!(error = %e, "lake sink: reading the lake failed; retrying");
                                if !backoff.wait(&cancel).await {
                                    return Ok(());
                                }
                            }
                        }
                        self.metrics.consumed.inc_by(batch.len() as u64);
                        for record in &batch {
                            if !owns(&owned, &record.topic, record.partition) {
                                continue;
                            }
                            let writer = self.writer.as_mut().expect("writer is present");
                            let outcome = match record.payload.as_deref() {
                                None => Added::Rejected("the record has no value".to_owned()),
                                // The current schemas are read in place; others decoded.
                                Some(bytes) => match self.codec.decode_view(bytes) {
                                    Some(Ok(view)) => writer.add_view(record, &view),
                                    Some(Err(e)) => Added::Rejected(e.to_string()),
                                    None => match decode(&self.codec, bytes) {
                                        Ok(sample) => writer.add(record, sample),
                                        Err(reason) => Added::Rejected(reason),
                                    },
                                },
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
                // One flush in flight at a time: memory stays within two flushes' worth.
                if let Some(done) = in_flight.take() {
                    self.finish_flush(done, &owned, &mut backoff, &cancel)
                        .await?;
                }
                // Held from before the check: a revocation from now on waits for it.
                let hold = self.consumer.write_in_progress();
                if self.consumer.assignment_generation() != generation {
                    // Partitions moved since this batch: handle that before writing
                    // (when stopping, what is buffered is read again by the next run).
                    drop(hold);
                    if stopping {
                        break;
                    }
                    continue;
                }
                let pending = self.writer_mut().take_pending();
                let started = std::time::Instant::now();
                let task = spawn_write(pending, hold, self.metrics.clone(), started);
                in_flight = Some(InFlight {
                    task,
                    positions: std::mem::take(&mut positions),
                    generation,
                    started,
                });
                last_flush = Instant::now();
                if stopping {
                    let done = in_flight.take().expect("just set");
                    self.finish_flush(done, &owned, &mut backoff, &cancel)
                        .await?;
                }
            } else if due {
                last_flush = Instant::now();
            }
            if stopping {
                if let Some(done) = in_flight.take() {
                    self.finish_flush(done, &owned, &mut backoff, &cancel)
                        .await?;
                }
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

    /// Waits for a flush, writes again what it could not (here, not consuming meanwhile,
    /// so no revocation can pass it), then commits the offsets of the partitions this
    /// member has kept since the flush began.
    async fn finish_flush(
        &mut self,
        done: InFlight,
        owned: &HashMap<String, HashSet<i32>>,
        backoff: &mut Backoff,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let InFlight {
            task,
            positions,
            generation,
            started,
        } = done;
        let (mut pending, mut result) = task
            .await
            .map_err(|e| Error::Internal(format!("flush task failed: {e}")))?;
        loop {
            let paths = self.writer_mut().apply(&mut pending);
            if !paths.is_empty() {
                tracing::debug!(files = paths.len(), "lake sink wrote files");
            }
            match result {
                Ok(()) => break,
                Err(e) if e.is_retryable() && !cancel.is_cancelled() => {
                    tracing::warn!(error = %e, "lake sink: flush failed; retrying");
                    backoff.wait(cancel).await;
                    let hold = self.consumer.write_in_progress();
                    let (back, r) = spawn_write(pending, hold, self.metrics.clone(), started)
                        .await
                        .map_err(|e| Error::Internal(format!("flush task failed: {e}")))?;
                    pending = back;
                    result = r;
                }
                Err(e) => return Err(e),
            }
        }
        backoff.reset();
        let revoked = self.consumer.revoked_since(generation);
        let mut positions = positions;
        positions.retain(|t, p| owns(owned, t, p) && !revoked.contains(&(t.to_owned(), p)));
        if let Err(e) = self.consumer.commit_positions(&positions).await {
            tracing::warn!(error = %e, "lake sink: commit failed; the files already hold the records");
        }
        Ok(())
    }
}

/// Writes what `pending` has left on a blocking thread, holding `hold` (a revocation
/// waits for it) until done; once all of it is in place its rows count as written, at
/// once, so the metric is not behind the files readers already see.
fn spawn_write(
    mut pending: PendingFlush,
    hold: WriteInProgress,
    metrics: SinkMetrics,
    started: std::time::Instant,
) -> tokio::task::JoinHandle<(PendingFlush, Result<()>)> {
    tokio::task::spawn_blocking(move || {
        let result = pending.write().map(|()| {
            metrics.written.inc_by(pending.rows() as u64);
            metrics
                .write_seconds
                .observe(started.elapsed().as_secs_f64());
        });
        drop(hold);
        (pending, result)
    })
}

/// A flush writing on a blocking thread, with the offsets its files complete.
struct InFlight {
    task: tokio::task::JoinHandle<(PendingFlush, Result<()>)>,
    positions: Positions,
    /// The assignment it was taken under.
    generation: u64,
    started: std::time::Instant,
}

impl InFlight {
    fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

fn owns(owned: &HashMap<String, HashSet<i32>>, topic: &str, partition: i32) -> bool {
    owned.get(topic).is_some_and(|p| p.contains(&partition))
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
