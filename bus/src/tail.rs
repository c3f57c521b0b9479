//! Reading topics from a point in time on, outside any consumer group (nothing is
//! committed): how a process keeps a recent window of a topic family in memory, such
//! as the alert feed behind the SSE and WebSocket streams. Committed records only.

use crate::client::{Logged, Role};
use crate::config::KafkaConfig;
use crate::consumer::Record;
use crate::error::{Error, Result};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// A reader outside any group to which topics are added as they appear.
#[derive(Clone)]
pub struct Tail {
    inner: Arc<StreamConsumer<Logged>>,
}

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tail").finish_non_exhaustive()
    }
}

impl Tail {
    /// `name` tells this reader's (never committing) group id apart.
    pub fn new(config: &KafkaConfig, name: &str) -> Result<Self> {
        let consumer: StreamConsumer<Logged> = config
            .client(Role::Reader(name), &[])
            .create_with_context(Logged)
            .map_err(Error::Config)?;
        Ok(Self {
            inner: Arc::new(consumer),
        })
    }

    /// Starts reading every partition of `topics` at the first record at or after
    /// `since_ms` (milliseconds since the epoch), or at its end when none is that recent.
    /// Partitions already read are left as they are.
    pub async fn add_from_time(&self, topics: &[String], since_ms: i64) -> Result<()> {
        let (consumer, topics) = (self.inner.clone(), topics.to_vec());
        tokio::task::spawn_blocking(move || {
            let mut wanted = TopicPartitionList::new();
            for topic in &topics {
                let metadata = consumer
                    .fetch_metadata(Some(topic), METADATA_TIMEOUT)
                    .map_err(Error::Consume)?;
                for t in metadata.topics().iter().filter(|t| t.name() == topic) {
                    for p in t.partitions() {
                        wanted
                            .add_partition_offset(topic, p.id(), Offset::Offset(since_ms))
                            .map_err(Error::Consume)?;
                    }
                }
            }
            if wanted.count() == 0 {
                return Ok(());
            }
            // Offsets by time: the first offset at or after the time; the end when
            // nothing is that recent.
            let found = consumer
                .offsets_for_times(wanted, METADATA_TIMEOUT)
                .map_err(Error::Consume)?;
            let mut start = TopicPartitionList::new();
            for e in found.elements() {
                let offset = match e.offset() {
                    Offset::Offset(o) if o >= 0 => Offset::Offset(o),
                    _ => Offset::End,
                };
                start
                    .add_partition_offset(e.topic(), e.partition(), offset)
                    .map_err(Error::Consume)?;
            }
            consumer.incremental_assign(&start).map_err(Error::Consume)
        })
        .await
        .map_err(|e| Error::Admin(format!("tail task failed: {e}")))?
    }

    /// The next committed record of the topics added so far.
    pub async fn recv(&self) -> Result<Record> {
        let m = self.inner.recv().await.map_err(Error::Consume)?;
        Ok(Record::of(&m))
    }
}
