//! Reads a whole topic from its start, outside any consumer group, committed records
//! only: how a process rebuilds a projection (experiment state, recordings) from the
//! event log and then keeps it current.

use crate::client::{Logged, Role};
use crate::config::KafkaConfig;
use crate::consumer::Record;
use crate::error::{Error, Result};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;

pub struct LogReader {
    inner: Arc<StreamConsumer<Logged>>,
    topic: String,
    partitions: Vec<i32>,
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("topic", &self.topic)
            .finish()
    }
}

/// How long a read to the end waits for more records before deciding it is at the end
/// even though the broker's end offset is ahead (transaction markers and aborted
/// records take offsets but are never delivered).
const SETTLE: Duration = Duration::from_millis(50);

impl LogReader {
    /// Assigns every partition of `topic` (which must exist) from the beginning.
    pub async fn new(config: &KafkaConfig, topic: &str) -> Result<Self> {
        let consumer: StreamConsumer<Logged> = config
            .client(Role::Reader("log-reader"), &[])
            .create_with_context(Logged)
            .map_err(Error::Config)?;
        let consumer = Arc::new(consumer);
        let c = consumer.clone();
        let t = topic.to_owned();
        let partitions = tokio::task::spawn_blocking(move || -> Result<Vec<i32>> {
            // A topic created a moment ago may not be in every broker's metadata yet.
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            let partitions = loop {
                let metadata = c
                    .fetch_metadata(Some(&t), Duration::from_secs(10))
                    .map_err(Error::Consume)?;
                let partitions: Vec<i32> = metadata
                    .topics()
                    .iter()
                    .filter(|m| m.name() == t && m.error().is_none())
                    .flat_map(|m| m.partitions().iter().map(|p| p.id()))
                    .collect();
                // ... nor have a leader yet (NotLeaderForPartition right after creation).
                let led = !partitions.is_empty()
                    && partitions
                        .iter()
                        .all(|p| c.fetch_watermarks(&t, *p, Duration::from_secs(5)).is_ok());
                if led {
                    break partitions;
                }
                if std::time::Instant::now() >= deadline {
                    return Err(Error::Admin(format!(
                        "topic {t} does not exist or has no leader"
                    )));
                }
                std::thread::sleep(Duration::from_millis(200));
            };
            let mut tpl = TopicPartitionList::new();
            for p in &partitions {
                tpl.add_partition_offset(&t, *p, Offset::Beginning)
                    .map_err(Error::Consume)?;
            }
            c.assign(&tpl).map_err(Error::Consume)?;
            Ok(partitions)
        })
        .await
        .map_err(|e| Error::Admin(format!("log reader task failed: {e}")))??;
        Ok(Self {
            inner: consumer,
            topic: topic.to_owned(),
            partitions,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Returns every committed record appended since the last call, once the reader has
    /// reached the end offsets the brokers reported when the call began: whatever was
    /// committed before this call started is in the answer (or an earlier one).
    pub async fn read_to_end(&self, timeout: Duration) -> Result<Vec<Record>> {
        let ends = self.end_offsets(timeout).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut out = Vec::new();
        let mut next: Vec<i64> = self.positions().await?;
        loop {
            if next.iter().zip(&ends).all(|(n, e)| n >= e) {
                return Ok(out);
            }
            match tokio::time::timeout(SETTLE, self.inner.recv()).await {
                Ok(Ok(m)) => {
                    if let Some(i) = self.partitions.iter().position(|p| *p == m.partition()) {
                        next[i] = next[i].max(m.offset() + 1);
                    }
                    out.push(Record::of(&m));
                }
                Ok(Err(e)) => return Err(Error::Consume(e)),
                Err(_idle) => {
                    // Nothing more is deliverable: what remains up to the end offsets
                    // are transaction markers or aborted records, or the consumer's
                    // position moved past them.
                    next = self.positions().await?;
                    if next.iter().zip(&ends).all(|(n, e)| n >= e) {
                        return Ok(out);
                    }
                    if tokio::time::Instant::now() >= deadline {
                        tracing::debug!(topic = %self.topic, ?next, ?ends, "log end not reached");
                        return Ok(out);
                    }
                }
            }
        }
    }

    async fn end_offsets(&self, timeout: Duration) -> Result<Vec<i64>> {
        let c = self.inner.clone();
        let topic = self.topic.clone();
        let partitions = self.partitions.clone();
        tokio::task::spawn_blocking(move || {
            partitions
                .iter()
                .map(|p| {
                    c.fetch_watermarks(&topic, *p, timeout)
                        .map(|(_, high)| high)
                        .map_err(Error::Consume)
                })
                .collect()
        })
        .await
        .map_err(|e| Error::Admin(format!("log reader task failed: {e}")))?
    }

    async fn positions(&self) -> Result<Vec<i64>> {
        let tpl = self.inner.position().map_err(Error::Consume)?;
        Ok(self
            .partitions
            .iter()
            .map(
                |p| match tpl.find_partition(&self.topic, *p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => 0,
                },
            )
            .collect())
    }
}
