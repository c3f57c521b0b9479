//! Dead-letter queue: a record a sink cannot decode goes to `samples.dlq` with its
//! original key and bytes and the reason in headers, so it is kept, not lost, and the
//! sink moves on.

use crate::error::Result;
use labstream_bus::{Producer, Record};

#[derive(Clone)]
pub struct DeadLetters {
    producer: Producer,
    topic: String,
    sink: &'static str,
}

impl DeadLetters {
    pub fn new(producer: Producer, topic: String, sink: &'static str) -> Self {
        Self {
            producer,
            topic,
            sink,
        }
    }

    pub async fn send(&self, record: &Record, reason: &str) -> Result<()> {
        tracing::warn!(
            sink = self.sink,
            topic = %record.topic,
            partition = record.partition,
            offset = record.offset,
            %reason,
            "poison record sent to the dead-letter queue"
        );
        let partition = record.partition.to_string();
        let offset = record.offset.to_string();
        self.producer
            .send_with_headers(
                &self.topic,
                record.key.as_deref(),
                record.payload.as_deref().unwrap_or_default(),
                &[
                    ("labstream.reason", reason.as_bytes()),
                    ("labstream.sink", self.sink.as_bytes()),
                    ("labstream.source.topic", record.topic.as_bytes()),
                    ("labstream.source.partition", partition.as_bytes()),
                    ("labstream.source.offset", offset.as_bytes()),
                ],
            )
            .await?;
        Ok(())
    }
}
