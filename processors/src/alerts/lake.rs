//! The `alerts` table of the lake: a consumer group over the `alerts.<name>` topics
//! (read_committed) writes the events to
//! `<lake>/alerts/date=YYYY-MM-DD/part-<topic>-p<partition>-<first>-<last>.parquet`
//! (the date the first event of the file was emitted), each file to a temporary name,
//! synced and renamed, and commits offsets only after that. A file is named by the
//! offsets it holds, and at start the writer skips offsets already in the lake, so a
//! crash or a replay never writes an event twice.

use crate::alerts::error::{Error, Result};
use crate::alerts::topics::alert_topics;
use labstream_bus::KafkaConfig;
use labstream_bus::rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use labstream_bus::rdkafka::message::Message;
use labstream_bus::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use labstream_schemas::lake_layout::PartFile;
use labstream_schemas::lake_tables::{ALERTS_DIR, alerts_batch};
use labstream_schemas::{AlertEvent, Codec};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const TOPIC_REFRESH: Duration = Duration::from_secs(2);

/// `[processors.alerts_lake]` settings.
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
                "processors.alerts_lake.flush_events must be at least 1".into(),
            ));
        }
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &kafka.brokers)
            .set("client.id", &kafka.client_id)
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "2000");
        for (k, v) in &kafka.librdkafka {
            client.set(k, v);
        }
        let consumer: StreamConsumer = client
            .create()
            .map_err(|e| Error::Kafka(labstream_bus::Error::Config(e)))?;
        Ok(AlertsLake {
            config: self.clone(),
            prefix: format!("{}alerts.", kafka.topic_prefix),
            root: lake.join(ALERTS_DIR),
            consumer,
            codec: Codec::new(),
        })
    }
}

pub struct AlertsLake {
    config: AlertsLakeConfig,
    prefix: String,
    root: PathBuf,
    consumer: StreamConsumer,
    codec: Codec,
}

/// Events read and not written yet, per topic-partition: (offset, event).
type Pending = BTreeMap<(String, i32), Vec<(i64, AlertEvent)>>;

impl AlertsLake {
    /// Runs until `cancel`; what is buffered then is written before it returns.
    pub async fn run(self, cancel: CancellationToken) -> Result<()> {
        let mut written = written_offsets(&self.root)?;
        let mut subscribed = BTreeSet::new();
        let mut pending: Pending = BTreeMap::new();
        let mut count = 0usize;
        let mut refresh = tokio::time::interval(TOPIC_REFRESH);
        let mut flush = tokio::time::interval(self.config.flush_interval);
        tracing::info!(lake = %self.root.display(), "alerts lake writer started");
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = refresh.tick() => {
                    match alert_topics(&self.consumer, &self.prefix) {
                        Ok(now) if now != subscribed && !now.is_empty() => {
                            let list: Vec<&str> = now.iter().map(String::as_str).collect();
                            if let Err(e) = self.consumer.subscribe(&list) {
                                tracing::warn!(error = %e, "alerts lake: subscribing failed; retrying");
                            } else {
                                subscribed = now;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "alerts lake: listing the alert topics failed; retrying"),
                    }
                }
                _ = flush.tick() => {
                    if count > 0 {
                        self.flush(&mut pending, &mut written).await?;
                        count = 0;
                    }
                }
                received = self.consumer.recv(), if !subscribed.is_empty() => {
                    let m = match received {
                        Ok(m) => m.detach(),
                        Err(e) => {
                            tracing::warn!(error = %e, "alerts lake: consume failed; retrying");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            continue;
                        }
                    };
                    let key = (m.topic().to_owned(), m.partition());
                    if written.get(&key).is_some_and(|w| m.offset() <= *w) {
                        continue; // already in the lake
                    }
                    let Some(bytes) = m.payload() else { continue };
                    match self.codec.decode::<AlertEvent>(bytes) {
                        Ok(event) => {
                            pending.entry(key).or_default().push((m.offset(), event));
                            count += 1;
                        }
                        Err(e) => tracing::warn!(topic = m.topic(), offset = m.offset(), error = %e, "alerts lake: undecodable event skipped"),
                    }
                    if count >= self.config.flush_events {
                        self.flush(&mut pending, &mut written).await?;
                        count = 0;
                    }
                }
            }
        }
        if count > 0 {
            self.flush(&mut pending, &mut written).await?;
        }
        tracing::info!("alerts lake writer stopped");
        Ok(())
    }

    /// Writes one file per topic-partition, then commits the offsets after them.
    async fn flush(
        &self,
        pending: &mut Pending,
        written: &mut BTreeMap<(String, i32), i64>,
    ) -> Result<()> {
        let batches = std::mem::take(pending);
        let root = self.root.clone();
        let files = tokio::task::spawn_blocking(move || -> Result<Vec<((String, i32), i64)>> {
            let mut done = Vec::new();
            for ((topic, partition), events) in batches {
                let (Some(first), Some(last)) = (events.first(), events.last()) else {
                    continue;
                };
                let part = PartFile {
                    topic: topic.clone(),
                    partition,
                    first_offset: first.0,
                    last_offset: last.0,
                };
                let date = first
                    .1
                    .emitted_at
                    .to_datetime()
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .unwrap_or_else(|| "1970-01-01".into());
                let dir = root.join(format!("date={date}"));
                let batch = alerts_batch(events.iter().map(|(_, e)| (topic.as_str(), e)))
                    .map_err(|e| Error::Lake(format!("building the rows: {e}")))?;
                write_file(&dir, &part.file_name(), &batch)?;
                done.push(((topic, partition), last.0));
            }
            Ok(done)
        })
        .await
        .map_err(|e| Error::Config(format!("alerts lake task failed: {e}")))??;
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), last) in files {
            let _ = tpl.add_partition_offset(&topic, partition, Offset::Offset(last + 1));
            written.insert((topic, partition), last);
        }
        if tpl.count() > 0
            && let Err(e) = self.consumer.commit(&tpl, CommitMode::Sync)
        {
            // The files are there: a restart skips their offsets.
            tracing::warn!(error = %e, "alerts lake: committing offsets failed");
        }
        Ok(())
    }
}

/// Highest offset in the lake per topic-partition, from the file names.
fn written_offsets(root: &Path) -> Result<BTreeMap<(String, i32), i64>> {
    let mut out: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let Ok(dates) = std::fs::read_dir(root) else {
        return Ok(out);
    };
    for dir in dates.flatten() {
        let Ok(files) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for f in files.flatten() {
            if let Some(part) = PartFile::parse(&f.file_name().to_string_lossy()) {
                let e = out.entry((part.topic, part.partition)).or_insert(-1);
                *e = (*e).max(part.last_offset);
            }
        }
    }
    Ok(out)
}

fn write_file(dir: &Path, name: &str, batch: &arrow::record_batch::RecordBatch) -> Result<()> {
    let path = dir.join(name);
    let fail = |e: String| Error::Lake(format!("{}: {e}", path.display()));
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let file = std::fs::File::create(&tmp).map_err(|e| fail(e.to_string()))?;
    let mut writer =
        ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(|e| fail(e.to_string()))?;
    writer.write(batch).map_err(|e| fail(e.to_string()))?;
    let file = writer.into_inner().map_err(|e| fail(e.to_string()))?;
    file.sync_all().map_err(|e| fail(e.to_string()))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(|e| fail(e.to_string()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_already_in_the_lake_are_read_from_the_file_names() {
        let lake = tempfile::tempdir().unwrap();
        let root = lake.path().join(ALERTS_DIR);
        assert!(written_offsets(&root).unwrap().is_empty());
        for (date, part) in [
            ("2026-11-22", ("p.alerts.freezers", 0, 0, 9)),
            ("2026-11-23", ("p.alerts.freezers", 0, 10, 14)),
            ("2026-11-23", ("p.alerts.freezers", 1, 0, 3)),
        ] {
            let dir = root.join(format!("date={date}"));
            std::fs::create_dir_all(&dir).unwrap();
            let name = PartFile {
                topic: part.0.into(),
                partition: part.1,
                first_offset: part.2,
                last_offset: part.3,
            }
            .file_name();
            std::fs::write(dir.join(&name), b"").unwrap();
            // A temporary file of a write that did not finish counts for nothing.
            std::fs::write(dir.join(format!(".{name}.tmp")), b"").unwrap();
        }
        std::fs::write(
            root.join("date=2026-11-23").join(
                ".part-p.alerts.freezers-p1-00000000000000000004-00000000000000000099.parquet.tmp",
            ),
            b"",
        )
        .unwrap();
        let written = written_offsets(&root).unwrap();
        assert_eq!(written[&("p.alerts.freezers".to_owned(), 0)], 14);
        assert_eq!(written[&("p.alerts.freezers".to_owned(), 1)], 3);
    }
}
