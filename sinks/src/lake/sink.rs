//! The consume loop of the lake sink: decode, buffer, flush by rows, bytes or time,
//! then commit. Nothing is committed that is not in a renamed, synced file.

use crate::backoff::Backoff;
use crate::dlq::DeadLetters;
use crate::error::{Error, Result};
use crate::metrics::SinkMetrics;
use labstream_bus::{BatchConsumer, Positions, Record, WriteInProgress};
use labstream_lake::{Added, LakeWriter, LogPosition, PendingFlush};
use labstream_schemas::experiment::EnrichedSample;
use labstream_schemas::{Codec, Registry, Sample};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};
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
    /// Three stages overlap: a task fetches the next batch from Kafka (`fetch`) while
    /// this one reads the previous batch into the writer's buffers, and a flush writes
    /// its files on a blocking thread meanwhile. At most one flush is in flight; its
    /// offsets are committed once its files are in place. A revocation waits for it
    /// (`BatchConsumer::write_in_progress_at`), so a partition's next owner finds its
    /// files and does not write their records again; a fetched batch's records of a
    /// partition revoked since it was fetched are left out (they are read again).
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
        // One batch waits while the previous one is read: fetching overlaps reading.
        let (batches, mut fetched) = tokio::sync::mpsc::channel::<Fetched>(1);
        let fetching = cancel.child_token();
        let fetcher = tokio::spawn(fetch(
            self.consumer.clone(),
            poll,
            self.config.retry_backoff_max,
            fetching.clone(),
            batches,
        ));
        let _stop_fetching = fetching.clone().drop_guard();
        loop {
            if lag_sampled.elapsed() >= Duration::from_secs(10) {
                lag_sampled = Instant::now();
                if let Ok(lag) = self.consumer.lag(Duration::from_secs(5)).await {
                    self.metrics.lag.set(lag);
                }
            }
            if in_flight.as_ref().is_some_and(InFlight::is_finished) {
                let done = in_flight.take().expect("checked");
                self.finish_flush(done, &owned).await?;
            }
            let stopping = cancel.is_cancelled();
            let batch = if stopping {
                None
            } else {
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => None,
                    next = tokio::time::timeout(poll, fetched.recv()) => match next {
                        Ok(Some(batch)) => Some(batch),
                        // The fetch task ends by itself only when cancelled.
                        Ok(None) if cancel.is_cancelled() => None,
                        Ok(None) => {
                            let ended = match fetcher.await {
                                Ok(()) => "ended".to_owned(),
                                Err(e) => e.to_string(),
                            };
                            return Err(Error::Internal(format!("lake sink: fetch task {ended}")));
                        }
                        Err(_idle) => None,
                    },
                }
            };
            // Partitions moved (a member joined, left or died): drop what was buffered
            // of every revoked partition (a partition assigned again is read anew from
            // its committed offset) and re-read what other members may have written.
            let now = self.consumer.assignment_generation();
            if now != generation {
                let revoked = self.consumer.revoked_since(generation);
                generation = now;
                owned.clear();
                for (topic, partition) in self.consumer.assigned() {
                    owned.entry(topic).or_default().insert(partition);
                }
                let keep =
                    |t: &str, p: i32| owns(&owned, t, p) && !revoked.contains(&(t.to_owned(), p));
                self.writer_mut().retain_partitions(keep);
                positions.retain(keep);
                // The revocation waited for a flush in flight: its files are in place;
                // its offsets are committed only for what is kept.
                if let Some(done) = in_flight.take() {
                    self.finish_flush(done, &owned).await?;
                }
                while let Err(e) = self.writer_mut().reload_high_water() {
                    tracing::warn!(error = %e, "lake sink: reading the lake failed; retrying");
                    if !backoff.wait(&cancel).await {
                        return Ok(());
                    }
                }
                backoff.reset();
            }
            if let Some(Fetched {
                records,
                generation: fetched_at,
            }) = batch
            {
                self.metrics.consumed.inc_by(records.len() as u64);
                // Fetched before the last change of partitions: what was revoked since
                // is read again, by whichever member owns it now.
                let stale = if fetched_at == generation {
                    BTreeSet::new()
                } else {
                    self.consumer.revoked_since(fetched_at)
                };
                // Records come in runs of one partition: decided once per run.
                let mut run: Option<(&str, i32, bool)> = None;
                let mut already_in_lake = 0u64;
                for record in &records {
                    let keep = match run {
                        Some((t, p, keep)) if p == record.partition && t == record.topic => keep,
                        _ => {
                            let keep = owns(&owned, &record.topic, record.partition)
                                && (stale.is_empty()
                                    || !stale.contains(&(record.topic.clone(), record.partition)));
                            run = Some((record.topic.as_str(), record.partition, keep));
                            keep
                        }
                    };
                    if !keep {
                        continue;
                    }
                    let writer = self.writer.as_mut().expect("writer is present");
                    let at = LogPosition {
                        topic: &record.topic,
                        partition: record.partition,
                        offset: record.offset,
                    };
                    let outcome = match record.payload.as_deref() {
                        None => Added::Rejected("the record has no value".to_owned()),
                        // The current schemas are read in place; others decoded.
                        Some(bytes) => match self.codec.decode_view(bytes) {
                            Some(Ok(view)) => writer.add_view(at, &view),
                            Some(Err(e)) => Added::Rejected(e.to_string()),
                            None => match decode(&self.codec, bytes) {
                                Ok(sample) => writer.add(at, sample),
                                Err(reason) => Added::Rejected(reason),
                            },
                        },
                    };
                    if outcome == Added::AlreadyInLake {
                        self.metrics.duplicates.inc();
                        already_in_lake += 1;
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
                        backoff.reset();
                    }
                    positions.advance(record);
                }
                if already_in_lake > 0 {
                    tracing::info!(
                        records = already_in_lake,
                        "lake sink: skipped records already in the lake (delivered again)"
                    );
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
                    self.finish_flush(done, &owned).await?;
                }
                // Taken only if the partitions have not moved since this batch; from
                // then on a revocation waits for the write.
                let Some(hold) = self.consumer.write_in_progress_at(generation) else {
                    // Handle the move first (when stopping, what is buffered is read
                    // again by the next run).
                    if stopping {
                        break;
                    }
                    continue;
                };
                let pending = self.writer_mut().take_pending();
                let task = spawn_write(
                    pending,
                    hold,
                    self.metrics.clone(),
                    self.config.retry_backoff_max,
                    cancel.clone(),
                );
                in_flight = Some(InFlight {
                    task,
                    positions: std::mem::take(&mut positions),
                    generation,
                });
                last_flush = Instant::now();
            } else if due {
                last_flush = Instant::now();
            }
            if stopping {
                if let Some(done) = in_flight.take() {
                    self.finish_flush(done, &owned).await?;
                }
                break;
            }
        }
        fetching.cancel();
        drop(fetched);
        if let Err(e) = fetcher.await {
            tracing::warn!(error = %e, "lake sink: fetch task failed");
        }
        tracing::info!("lake sink stopped");
        Ok(())
    }

    fn writer_mut(&mut self) -> &mut LakeWriter {
        self.writer
            .as_mut()
            .expect("writer is present between flushes")
    }

    /// Waits for a flush (which retries on its thread what it could not write yet),
    /// then commits the offsets of the partitions this member has kept since the flush
    /// began.
    async fn finish_flush(
        &mut self,
        done: InFlight,
        owned: &HashMap<String, HashSet<i32>>,
    ) -> Result<()> {
        let InFlight {
            task,
            positions,
            generation,
        } = done;
        let (mut pending, result) = task
            .await
            .map_err(|e| Error::Internal(format!("flush task failed: {e}")))?;
        let paths = self.writer_mut().apply(&mut pending);
        if !paths.is_empty() {
            tracing::debug!(files = paths.len(), "lake sink wrote files");
        }
        result?;
        labstream_schemas::crash_point("lake.renamed_before_commit");
        let revoked = self.consumer.revoked_since(generation);
        let mut positions = positions;
        positions.retain(|t, p| owns(owned, t, p) && !revoked.contains(&(t.to_owned(), p)));
        if let Err(e) = self.consumer.commit_positions(&positions).await {
            tracing::warn!(error = %e, "lake sink: commit failed; the files already hold the records");
        }
        Ok(())
    }
}

/// A batch with the assignment generation it was fetched under.
struct Fetched {
    records: Vec<Record>,
    generation: u64,
}

/// Fetches batches until cancelled (or the sink stops receiving); retries a failing
/// consume with backoff. Rebalance callbacks run in here, inside `next_batch`.
async fn fetch(
    consumer: BatchConsumer,
    poll: Duration,
    backoff_max: Duration,
    cancel: CancellationToken,
    batches: tokio::sync::mpsc::Sender<Fetched>,
) {
    let mut backoff = Backoff::new(backoff_max);
    while !cancel.is_cancelled() {
        match consumer.next_batch(10_000, poll, &cancel).await {
            Ok(records) if records.is_empty() => {}
            Ok(records) => {
                backoff.reset();
                let generation = consumer.assignment_generation();
                if batches
                    .send(Fetched {
                        records,
                        generation,
                    })
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "lake sink: consume failed; retrying");
                if !backoff.wait(&cancel).await {
                    break;
                }
            }
        }
    }
}

/// Writes what `pending` has left on a blocking thread, retrying with backoff while the
/// lake cannot be written (until `cancel`), holding `hold` (a revocation waits for it)
/// until done; once all of it is in place its rows count as written, at once, so the
/// metric is not behind the files readers already see.
fn spawn_write(
    mut pending: PendingFlush,
    hold: WriteInProgress,
    metrics: SinkMetrics,
    backoff_max: Duration,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<(PendingFlush, Result<()>)> {
    let started = std::time::Instant::now();
    tokio::task::spawn_blocking(move || {
        let mut backoff = Backoff::new(backoff_max);
        let result = loop {
            match pending.write().map_err(Error::from) {
                Ok(()) => {
                    metrics.written.inc_by(pending.rows() as u64);
                    metrics
                        .write_seconds
                        .observe(started.elapsed().as_secs_f64());
                    break Ok(());
                }
                Err(e) if e.kind().is_retryable() && !cancel.is_cancelled() => {
                    tracing::warn!(error = %e, "lake sink: flush failed; retrying");
                    if !backoff.wait_blocking(&cancel) {
                        break Err(e);
                    }
                }
                Err(e) => break Err(e),
            }
        };
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
