//! The alerts sink: a consumer group over the `alerts.<name>` topics (read_committed)
//! writes the events to the lake's `alerts` table (`labstream_lake::alerts`), one file
//! per topic-partition named by the offsets it holds, and commits offsets only after
//! the files are in place. At start it skips offsets already in the lake, so a crash or
//! a replay never writes an event twice.

use crate::error::{Error, Result};
use labstream_bus::{BatchConsumer, KafkaConfig, Positions, Record, TopicWatch};
use labstream_lake::alerts::{write_events, written_offsets};
use labstream_lake::tables::ALERTS_DIR;
use labstream_schemas::{AlertEvent, Codec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// `[sinks.alerts]` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsLakeConfig {
    /// Write alert events to the lake's `alerts` table inside `labstream serve`.
    pub enabled: bool,
    /// Consumer group over the alert topics.
    pub group_id: String,
    /// Longest an event waits before its file is written (and queryable).
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Events that make a file be written at once.
    pub flush_events: usize,
}

impl Default for AlertsLakeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            group_id: "labstream-alerts-lake".into(),
            flush_interval: Duration::from_secs(5),
            flush_events: 10_000,
        }
    }
}

impl AlertsLakeConfig {
    pub fn build(&self, kafka: &KafkaConfig, lake: PathBuf) -> Result<AlertsLake> {
        if self.flush_events == 0 {
            return Err(Error::Config(
                "sinks.alerts.flush_events must be at least 1".into(),
            ));
        }
        Ok(AlertsLake {
            config: self.clone(),
            root: lake.join(ALERTS_DIR),
            kafka: kafka.clone(),
            codec: Codec::new(),
        })
    }
}

pub struct AlertsLake {
    config: AlertsLakeConfig,
    root: PathBuf,
    kafka: KafkaConfig,
    codec: Codec,
}

/// Events read and not written yet, per topic-partition: (offset, event).
type Pending = BTreeMap<(String, i32), Vec<(i64, AlertEvent)>>;

impl AlertsLake {
    /// Runs until `cancel`; what is buffered then is written before it returns.
    pub async fn run(self, cancel: CancellationToken) -> Result<()> {
        let mut written = written_offsets(&self.root)?;
        let topics = TopicWatch::alert_topics(&self.kafka, cancel.clone())?;
        let consumer = BatchConsumer::following(&self.kafka, &self.config.group_id, topics)?;
        let mut pending: Pending = BTreeMap::new();
        let mut positions = Positions::default();
        let mut count = 0usize;
        let mut generation = consumer.assignment_generation();
        let mut next_flush = Instant::now() + self.config.flush_interval;
        tracing::info!(lake = %self.root.display(), "alerts lake writer started");
        while !cancel.is_cancelled() {
            let wait = next_flush
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10));
            let records = match consumer
                .next_batch(self.config.flush_events - count, wait, &cancel)
                .await
            {
                Ok(records) => records,
                Err(e) => {
                    tracing::warn!(error = %e, "alerts lake: consume failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            // Partitions moved: what was read of revoked ones is read again by their
            // new owner, and files it wrote meanwhile are in the lake.
            let now = consumer.assignment_generation();
            if now != generation {
                let revoked = consumer.revoked_since(generation);
                pending.retain(|tp, _| !revoked.contains(tp));
                positions.retain(|t, p| !revoked.contains(&(t.to_owned(), p)));
                count = pending.values().map(Vec::len).sum();
                written = written_offsets(&self.root)?;
                generation = now;
            }
            for record in &records {
                positions.advance(record);
                if self.take(record, &written, &mut pending) {
                    count += 1;
                }
            }
            if count >= self.config.flush_events || Instant::now() >= next_flush {
                self.flush(
                    &consumer,
                    &mut pending,
                    &mut positions,
                    &mut written,
                    generation,
                )
                .await?;
                count = 0;
                next_flush = Instant::now() + self.config.flush_interval;
            }
        }
        self.flush(
            &consumer,
            &mut pending,
            &mut positions,
            &mut written,
            generation,
        )
        .await?;
        tracing::info!("alerts lake writer stopped");
        Ok(())
    }

    /// Buffers `record`'s event unless it is in the lake already; true when buffered.
    fn take(
        &self,
        record: &Record,
        written: &BTreeMap<(String, i32), i64>,
        pending: &mut Pending,
    ) -> bool {
        let key = (record.topic.clone(), record.partition);
        if written.get(&key).is_some_and(|w| record.offset <= *w) {
            return false; // already in the lake
        }
        let Some(bytes) = record.payload.as_deref() else {
            return false;
        };
        match self.codec.decode::<AlertEvent>(bytes) {
            Ok(event) => {
                pending.entry(key).or_default().push((record.offset, event));
                true
            }
            Err(e) => {
                tracing::warn!(topic = %record.topic, offset = record.offset, error = %e, "alerts lake: undecodable event skipped");
                false
            }
        }
    }

    /// Writes one file per topic-partition, then commits the offsets read so far.
    async fn flush(
        &self,
        consumer: &BatchConsumer,
        pending: &mut Pending,
        positions: &mut Positions,
        written: &mut BTreeMap<(String, i32), i64>,
        generation: u64,
    ) -> Result<()> {
        if positions.is_empty() {
            return Ok(());
        }
        // A revocation waits for this write; none may begin once partitions moved.
        let Some(hold) = consumer.write_in_progress_at(generation) else {
            return Ok(());
        };
        let batches = std::mem::take(pending);
        let root = self.root.clone();
        let files = tokio::task::spawn_blocking(move || -> Result<Vec<((String, i32), i64)>> {
            let mut done = Vec::new();
            for ((topic, partition), events) in batches {
                if let Some(last) = write_events(&root, &topic, partition, &events)? {
                    done.push(((topic, partition), last));
                }
            }
            Ok(done)
        })
        .await
        .map_err(|e| Error::Internal(format!("alerts lake task failed: {e}")))??;
        drop(hold);
        for (tp, last) in files {
            written.insert(tp, last);
        }
        // The files are there: should the commit fail, a restart skips their offsets.
        if let Err(e) = consumer.commit_positions(positions).await {
            tracing::warn!(error = %e, "alerts lake: committing offsets failed");
        }
        positions.clear();
        Ok(())
    }
}
