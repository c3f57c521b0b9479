//! The enrichment processor: `samples.raw` x recordings -> `samples.enriched`, exactly
//! once. Each batch's outputs and its consumer offsets commit in one Kafka transaction,
//! and everything it reads is committed data (read_committed).
//!
//! A sample may arrive before the `RecordingStarted` event that covers it has been read
//! (the operator pressed start while the sensor was already sending). So a sample is
//! held until the recording log has been read to its end at a moment at least
//! `lateness` after the sample's time (`min(ts, received_at)`): any recording covering
//! it must have been written by then (the API refuses start/stop times further back).
//! Samples leave in offset order per partition, so the committed offset is always "the
//! first sample not yet written", and a restart re-reads exactly the held ones.

use super::index::RecordingIndex;
use crate::error::{Error, Result};
use labstream_bus::{
    BatchConsumer, KafkaConfig, LogReader, Positions, Record, TransactionalProducer,
};
use labstream_schemas::experiment::{EnrichedSample, ExperimentEvent, SiteState};
use labstream_schemas::{Codec, Sample, Timestamp, Topics};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `[processors.enrichment]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichmentConfig {
    /// Run the enrichment processor in `serve`.
    pub enabled: bool,
    /// Consumer group (all instances share it and split the partitions).
    pub group_id: String,
    /// How long after a sample's time a recording covering it may still be started or
    /// stopped; samples wait this long before they are written. Also the most a
    /// recording's start or stop may be backdated.
    #[serde(with = "humantime_serde")]
    pub lateness: Duration,
    /// Most records read per batch (one transaction per batch at most). Large: a
    /// transaction's commit costs a few broker round trips whatever its size.
    pub max_batch: usize,
    /// Most samples held in memory waiting for their lateness; reading pauses beyond.
    pub max_held: usize,
}

impl Default for EnrichmentConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            group_id: "labstream-enrichment".into(),
            lateness: Duration::from_secs(5),
            max_batch: 50_000,
            max_held: 200_000,
        }
    }
}

/// Counters of a running enrichment processor (shared; read them any time).
#[derive(Debug, Default)]
pub struct EnrichmentStats {
    /// Samples whose enriched record (or dead letter) and offset were committed.
    pub committed: std::sync::atomic::AtomicU64,
    /// Of those, the ones that belong to a recording.
    pub in_recording: std::sync::atomic::AtomicU64,
    /// Transactions committed.
    pub transactions: std::sync::atomic::AtomicU64,
    /// Whether the consumer group has assigned partitions to this instance.
    pub assigned: std::sync::atomic::AtomicBool,
}

struct Held {
    record: Record,
    sample: Option<Sample>,
    error: Option<String>,
    release_at: Timestamp,
}

pub struct Enrichment {
    kafka: KafkaConfig,
    topics: Topics,
    site_id: String,
    /// Stable per process across restarts, unique among running instances: the
    /// successor of a crashed instance aborts what it left open.
    instance_id: String,
    config: EnrichmentConfig,
    codec: Codec,
    stats: std::sync::Arc<EnrichmentStats>,
}

impl Enrichment {
    pub fn new(
        kafka: KafkaConfig,
        topics: Topics,
        site_id: String,
        instance_id: String,
        config: EnrichmentConfig,
    ) -> Self {
        Self {
            kafka,
            topics,
            site_id,
            instance_id,
            config,
            codec: Codec::new(),
            stats: Default::default(),
        }
    }

    pub fn stats(&self) -> std::sync::Arc<EnrichmentStats> {
        self.stats.clone()
    }

    /// Runs until `cancel`; a broker outage or a fenced producer restarts the session
    /// (new consumer and producer, from the committed offsets) after a pause.
    pub async fn run(self, cancel: CancellationToken) -> Result<()> {
        let mut pause = Duration::from_millis(500);
        while !cancel.is_cancelled() {
            match self.session(&cancel).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?pause, "enrichment session failed; restarting from the committed offsets");
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
        Ok(())
    }

    async fn session(&self, cancel: &CancellationToken) -> Result<()> {
        let raw = self.topics.samples_raw();
        let enriched = self.topics.samples_enriched();
        let dlq = self.topics.samples_dlq();
        let consumer = BatchConsumer::new(&self.kafka, &self.config.group_id, &[&raw])?;
        let kafka = self.kafka.clone();
        let txn_id = format!(
            "{}labstream-enrichment-{}",
            self.kafka.topic_prefix, self.instance_id
        );
        let producer =
            tokio::task::spawn_blocking(move || TransactionalProducer::new(&kafka, &txn_id))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??;
        let events = LogReader::new(&self.kafka, &self.topics.experiments_events()).await?;
        let mut site = SiteState::default();
        let mut index = RecordingIndex::default();
        let mut held: BTreeMap<(String, i32), VecDeque<Held>> = BTreeMap::new();
        let mut held_count = 0usize;
        let mut generation = consumer.assignment_generation();
        let lateness = i64::try_from(self.config.lateness.as_micros()).unwrap_or(i64::MAX);
        tracing::info!(group = %self.config.group_id, lateness = ?self.config.lateness, "enrichment started");

        while !cancel.is_cancelled() {
            // 1. Recordings: everything committed before `read_at` is in `index` after this.
            let read_at = Timestamp::now();
            let new_events = events.read_to_end(Duration::from_secs(10)).await?;
            if !new_events.is_empty() {
                for r in &new_events {
                    let Some(payload) = r.payload.as_deref() else {
                        continue;
                    };
                    match self.codec.decode::<ExperimentEvent>(payload) {
                        Ok(e) if e.site_id == self.site_id => {
                            site.apply(&e);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(offset = r.offset, error = %e, "undecodable experiment event skipped")
                        }
                    }
                }
                index = RecordingIndex::build(&site);
                tracing::debug!(recordings = index.len(), "recordings updated");
            }

            // 2. More samples, unless enough are waiting already.
            let wait = Duration::from_millis(100);
            if held_count < self.config.max_held {
                let batch = consumer
                    .next_batch(self.config.max_batch, wait, cancel)
                    .await?;
                if consumer.assignment_generation() != generation {
                    // Partitions moved: forget what is held and start again from the
                    // committed offsets of what this member owns now.
                    generation = consumer.assignment_generation();
                    self.stats.assigned.store(
                        !consumer.assigned().is_empty(),
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    held.clear();
                    held_count = 0;
                    consumer
                        .rewind_to_committed(Duration::from_secs(10))
                        .await?;
                    continue;
                }
                for record in batch {
                    let (sample, error) = match record
                        .payload
                        .as_deref()
                        .map(|p| self.codec.decode::<Sample>(p))
                    {
                        Some(Ok(s)) => (Some(s), None),
                        Some(Err(e)) => (None, Some(e.to_string())),
                        None => (None, Some("empty record".to_owned())),
                    };
                    let release_at = match &sample {
                        Some(s) => Timestamp::from_micros(
                            s.ts.min(s.received_at).as_micros().saturating_add(lateness),
                        ),
                        None => Timestamp::from_micros(i64::MIN),
                    };
                    held.entry((record.topic.clone(), record.partition))
                        .or_default()
                        .push_back(Held {
                            record,
                            sample,
                            error,
                            release_at,
                        });
                    held_count += 1;
                }
            } else {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }

            // 3. Release, per partition in offset order, what the recordings now cover.
            let mut positions = Positions::default();
            let mut outputs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            let mut dead: Vec<(Record, String)> = Vec::new();
            let mut released = 0u64;
            let mut tagged = 0u64;
            for queue in held.values_mut() {
                while queue.front().is_some_and(|h| h.release_at <= read_at) {
                    let h = queue.pop_front().expect("checked");
                    held_count -= 1;
                    released += 1;
                    positions.advance(&h.record);
                    match h.sample {
                        Some(sample) => {
                            let context = index.lookup(&sample.sensor_id, sample.ts).cloned();
                            tagged += u64::from(context.is_some());
                            let key =
                                h.record.key.clone().unwrap_or_else(|| {
                                    sample.sensor_id.as_str().as_bytes().to_vec()
                                });
                            let bytes = self.codec.encode(&EnrichedSample { sample, context })?;
                            outputs.push((key, bytes));
                        }
                        None => dead.push((h.record, h.error.unwrap_or_default())),
                    }
                }
            }
            if positions.is_empty() {
                continue;
            }
            let producer = producer.clone();
            let consumer_for_commit = consumer.clone();
            let enriched = enriched.clone();
            let dlq = dlq.clone();
            let count = outputs.len();
            tokio::task::spawn_blocking(move || -> Result<()> {
                let sent = producer.transact(|producer| {
                    for (key, bytes) in &outputs {
                        producer.send(&enriched, key, bytes)?;
                    }
                    for (record, reason) in &dead {
                        producer.send_with_headers(
                            &dlq,
                            record.key.as_deref().unwrap_or_default(),
                            record.payload.as_deref().unwrap_or_default(),
                            &[
                                ("labstream.reason", reason.as_bytes()),
                                ("labstream.stage", b"enrichment"),
                                (
                                    "labstream.source",
                                    format!(
                                        "{}/{}/{}",
                                        record.topic, record.partition, record.offset
                                    )
                                    .as_bytes(),
                                ),
                            ],
                        )?;
                    }
                    producer.commit(&positions, &consumer_for_commit)
                });
                Ok(sent?)
            })
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
            use std::sync::atomic::Ordering::Relaxed;
            self.stats.committed.fetch_add(released, Relaxed);
            self.stats.in_recording.fetch_add(tagged, Relaxed);
            self.stats.transactions.fetch_add(1, Relaxed);
            tracing::debug!(
                samples = count,
                held = held_count,
                "enriched batch committed"
            );
        }
        Ok(())
    }
}
